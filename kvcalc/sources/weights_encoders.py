"""Weights builders for BERT-shaped encoders and the older LayerNorm decoders (see weights_parts for the
building blocks).

Each family module states, for its own model types, transformers' class defaults of the fields
it reads (DEFAULTS), pre-norm decoder rows (DECODERS), builders for the rest (BUILDERS), and why a
type it reads has no count (NOT_DERIVED); config_weights merges them, and a type may appear in one
module only.

What is counted is what benchmarks/model_types.py ``meta_parameters`` builds on the meta device with
transformers 5.24: the base model (``AutoModel``, with its pooler where it has one) for an encoder
(kvcalc/sources/model_types.py ENCODER_TYPES), the causal-LM class for a decoder. Line numbers cite
``transformers/models/<type>/modeling_<type>.py`` of transformers 5.24. Buffers those classes
register (position_ids, token_type_ids, sinusoidal tables, rotary inv_freq, causal masks) are all
``persistent=False``: not in the checkpoint, not counted.
"""

from __future__ import annotations

import json

from kvcalc.sources.weights_parts import Decoder, Fields, Skip, base, gated, mha_width, plain

_TIED = {"tie_word_embeddings": True}
_BERT = {"type_vocab_size": 2, "add_cross_attention": False}  # the BERT-shaped config classes' defaults
DEFAULTS: dict[str, dict[str, object]] = {
    "roberta": _BERT, "camembert": _BERT, "xlm-roberta": _BERT, "data2vec-text": _BERT,
    "roberta-prelayernorm": _BERT, "megatron-bert": _BERT,
    "xlm-roberta-xl": {**_BERT, "type_vocab_size": 1},  # XLMRobertaXLConfig
    "ernie": {**_BERT, "use_task_id": False, "task_type_vocab_size": 3},  # ErnieConfig
    "big_bird": {**_BERT, "use_bias": True},  # BigBirdConfig
    "electra": {**_BERT, "embedding_size": 128},  # ElectraConfig
    "rembert": {**_BERT, "input_embedding_size": 256},  # RemBertConfig
    "roformer": _BERT,  # RoFormerConfig: embedding_size None means hidden_size (configuration_roformer.py 69)
    "xmod": {**_BERT, "pre_norm": False, "adapter_reduction_factor": 2, "adapter_layer_norm": False,
             "languages": ["en_XX"]},  # XmodConfig
    "roc_bert": {**_BERT, "enable_pronunciation": True, "enable_shape": True, "concat_input": True},  # RoCBertConfig
    # decoders: the causal-LM classes
    "bert-generation": {**_TIED, "add_cross_attention": False},
    "biogpt": _TIED, "ctrl": _TIED, "openai-gpt": _TIED,
    "xglm": {**_TIED, "add_cross_attention": False},
    "gpt_neox_japanese": {**_TIED, "intermediate_multiple_size": 4},
    "git": {"tie_word_embeddings": False},  # GitConfig
    "modernbert-decoder": {**_TIED, "norm_bias": False, "attention_bias": False, "mlp_bias": False,
                           "classifier_bias": False, "decoder_bias": True},  # ModernBertDecoderConfig
}
DECODERS: dict[str, Decoder] = {}
NOT_DERIVED: dict[str, str] = {
    # modeling_moshi.py: MoshiForConditionalGeneration (the released checkpoints' class; transformers builds it on
    # meta, 7,783,880,545 for the class defaults) holds beside the text decoder 2 x num_codebooks audio embeddings,
    # the depth decoder (per-codebook MoshiFlexibleLinear weights) and the Mimi codec (audio_encoder_config)
    "moshi": "a Moshi checkpoint holds the Mimi codec (SEANet convolutional encoder and decoder, their transformers, "
             "the split residual quantizer with its codebook buffers), the depth decoder with per-codebook weights and "
             "the audio embeddings beside the text decoder; kvcalc does not count them yet, and the text decoder "
             "alone would understate it",
}


def _pooler(hidden: int, name: str, notes: list[str]) -> int:
    notes.append(f"inferred: weights count {name} with its pooler ({hidden} x {hidden} + {hidden}); "
                 "pretraining or task heads are not counted")
    return hidden * hidden + hidden


def _bert_stack(f: Fields, attention: dict, hidden: int, family: str, *, embedding_norm: bool = True,
                final_norm: bool = False, token_types: bool = True, positions: bool = True,
                qkv_bias: bool = True) -> dict:
    """The BERT-shaped stack every type here shares: word (+ learned position, + token-type) embeddings of
    hidden width, query/key/value and an output dense of hidden x hidden (q/k/v biases as said, the
    output's always), a plain MLP intermediate_size wide with biases, two LayerNorms (weight and bias) per
    layer (post-norm after attention and MLP, or pre-norm before them), no head (the embeddings are
    "tied": an encoder has none, a decoder adds its own)."""
    mha_width(attention, hidden, family)
    kind = f.data.get("position_embedding_type", "absolute")
    if kind != "absolute":  # transformers 5.24 builds no distance embeddings; checkpoints of older ones hold them
        raise Skip(f"position_embedding_type {kind!r}: relative distance embeddings are not counted")
    if "add_cross_attention" in f.defaults and f.flag("add_cross_attention"):
        raise Skip("add_cross_attention true: cross-attention blocks are not counted")
    return {
        "vocab_size": f.integer("vocab_size"), "tied_embeddings": True,
        "position_embeddings": f.integer("max_position_embeddings") if positions else 0,
        "token_type_embeddings": f.integer("type_vocab_size") if token_types else 0,
        "embedding_norm": embedding_norm, "norm": "layer", "norms_per_layer": 2, "final_norm": final_norm,
        "qkv_bias": qkv_bias, "output_bias": True, "mlp": plain(f.integer("intermediate_size"), True),
    }


# --------------------------------------------------------------------------- encoders (AutoModel)


def _roberta(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """RoBERTa, CamemBERT, XLM-RoBERTa, Data2VecText: BertModel's shape (modeling_roberta.py 61-73 embeddings
    with a LayerNorm, 406-420 a post-norm layer, 525-528 and 567 the pooler; the same lines, shifted, in
    modeling_camembert.py, modeling_xlm_roberta.py, modeling_data2vec_text.py)."""
    block = _bert_stack(f, attention, hidden, f.model_type)
    block["extra_parameters"] = _pooler(hidden, f"the {f.model_type} base model", notes)
    return block


def _ernie(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """ERNIE: BertModel's shape, and with use_task_id a task-type embedding task_type_vocab_size x hidden
    (modeling_ernie.py 63-75), counted with the token-type embeddings; the pooler (574)."""
    block = _bert_stack(f, attention, hidden, "ERNIE")
    if f.flag("use_task_id"):
        block["token_type_embeddings"] += f.integer("task_type_vocab_size")
    block["extra_parameters"] = _pooler(hidden, "ErnieModel", notes)
    return block


def _big_bird(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """BigBird: BertModel's shape with q/k/v biases switched by use_bias (modeling_big_bird.py 144-146,
    230-232; the output dense keeps its bias, 1052) and a pooler that is a bare Linear (1496-1497). Block-
    sparse attention has no weights of its own."""
    block = _bert_stack(f, attention, hidden, "BigBird", qkv_bias=f.flag("use_bias"))
    block["extra_parameters"] = _pooler(hidden, "BigBirdModel", notes)
    return block


def _pre_norm(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Pre-norm BERTs, a LayerNorm before attention and MLP and one after the last layer, and the pooler:
    - RoBERTa-PreLayerNorm keeps the embedding LayerNorm (modeling_roberta_prelayernorm.py 61, 347, 375,
      578, 580);
    - XLM-RoBERTa-XL (modeling_xlm_roberta_xl.py 67-75 no embedding norm, 351, 421, 475, 574) and
      Megatron-BERT (modeling_megatron_bert.py 56-61, its embedding LayerNorm commented out; 212, 281,
      343, 574) have none."""
    block = _bert_stack(f, attention, hidden, f.model_type, final_norm=True,
                        embedding_norm=f.model_type == "roberta-prelayernorm")
    block["extra_parameters"] = _pooler(hidden, f"the {f.model_type} base model", notes)
    return block


def _electra(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """ELECTRA's ElectraModel: BERT's word, position and token-type embeddings and their LayerNorm, all
    embedding_size wide (modeling_electra.py 62-66), embeddings_project embedding_size -> hidden_size with a
    bias only when the widths differ (554-555: ELECTRA-small, the class defaults 128 and 256), post-norm
    layers, no pooler."""
    block = _bert_stack(f, attention, hidden, "ELECTRA")
    width = f.integer("embedding_size")
    if width != hidden:
        block.update(embedding_size=width, embedding_projection=True)
        notes.append(f"inferred: the embeddings are embedding_size {width} wide, projected to hidden_size {hidden} "
                     "(embeddings_project)")
    notes.append("inferred: weights count ElectraModel (no pooler); the discriminator or generator head is not "
                 "counted")
    return block


def _rembert(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """RemBERT's RemBertModel: word, position and token-type embeddings and their LayerNorm, all
    input_embedding_size wide (modeling_rembert.py 53-59), then the encoder's embedding_hidden_mapping_in
    input_embedding_size -> hidden_size with a bias, built whatever the widths (350); BERT-shaped post-norm
    layers (127-129 q/k/v, 208-209, 251, 267-268) and the pooler (102, 507). output_embedding_size sizes only
    the masked-LM head (447-450), which RemBertModel has not."""
    block = _bert_stack(f, attention, hidden, "RemBERT")
    width = f.integer("input_embedding_size")
    block.update(embedding_size=width, embedding_projection=True,
                 extra_parameters=_pooler(hidden, "RemBertModel", notes))
    notes.append(f"inferred: the embeddings are input_embedding_size {width} wide, mapped to hidden_size {hidden} "
                 "(embedding_hidden_mapping_in); output_embedding_size belongs to the LM head, not counted")
    return block


def _roformer(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """RoFormer's RoFormerModel: word and token-type embeddings with a LayerNorm, embedding_size wide
    (modeling_roformer.py 88-91; embedding_size null means hidden_size, configuration_roformer.py 69), no
    learned positions; the encoder's sinusoidal table is a frozen nn.Embedding, a parameter of
    max_position_embeddings x (hidden_size // num_attention_heads) (50-54, 397-399) that the state dict
    holds; post-norm layers, no pooler. An embedding_size narrower than hidden_size adds embeddings_project
    embedding_size -> hidden_size with a bias (654-655)."""
    block = _bert_stack(f, attention, hidden, "RoFormer", positions=False)
    width = f.integer("embedding_size") if f.present("embedding_size") else hidden
    if width != hidden:
        block.update(embedding_size=width, embedding_projection=True)
        notes.append(f"inferred: the embeddings are embedding_size {width} wide, projected to hidden_size {hidden} "
                     "(embeddings_project)")
    table = f.integer("max_position_embeddings") * (hidden // f.integer("num_attention_heads"))
    block["extra_parameters"] = table
    notes.append(f"inferred: extra_parameters {table}: RoFormer's sinusoidal position table, a frozen parameter "
                 "of max_position_embeddings x head width; weights count RoFormerModel (no pooler), no head")
    return block


def _xmod(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """X-MOD: BertModel's shape and pooler (modeling_xmod.py 57-67, 677), a final LayerNorm when pre_norm
    (545), and in every layer's output one adapter per language, dense1 hidden -> b and dense2 b -> hidden
    with biases, b = hidden_size // adapter_reduction_factor (398-402, 425-426; an nn.ModuleDict keyed by
    the language's name, so a repeated name is one adapter), and a LayerNorm when adapter_layer_norm
    (422-423)."""
    block = _bert_stack(f, attention, hidden, "X-MOD", final_norm=f.flag("pre_norm"))
    languages = f._get("languages")
    if not isinstance(languages, list | tuple) or not languages:
        raise Skip(f"languages is {json.dumps(languages)[:60]}, not a list of language names")
    names = len({str(language) for language in languages})
    bottleneck = hidden // f.integer("adapter_reduction_factor")
    adapter = 2 * hidden * bottleneck + bottleneck + hidden
    per_layer = names * adapter + (2 * hidden if f.flag("adapter_layer_norm") else 0)
    block["extra_parameters"] = count * per_layer + _pooler(hidden, "XmodModel", notes)
    notes.append(f"inferred: extra_parameters has {count * per_layer} for {names} language adapter(s) of "
                 f"{bottleneck} in each of {count} layers")
    return block


def _roc_bert(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """RoCBert: BertModel's shape and pooler (modeling_roc_bert.py 639), and beside the word embeddings a
    pronunciation embedding pronunciation_vocab_size x pronunciation_embed_dim and a shape embedding
    shape_vocab_size x shape_embed_dim, always built (56-64); with concat_input, map_inputs_layer from
    hidden_size (+ each enabled embedding's width) to hidden_size with a bias (69-77)."""
    block = _bert_stack(f, attention, hidden, "RoCBert")
    pron, shape = f.integer("pronunciation_embed_dim"), f.integer("shape_embed_dim")
    side = f.integer("pronunciation_vocab_size") * pron + f.integer("shape_vocab_size") * shape
    if f.flag("concat_input"):
        wide = hidden + (pron if f.flag("enable_pronunciation") else 0) + (shape if f.flag("enable_shape") else 0)
        side += wide * hidden + hidden
    block["extra_parameters"] = side + _pooler(hidden, "RoCBertModel", notes)
    notes.append(f"inferred: extra_parameters has {side} for the pronunciation and shape embeddings and the "
                 "layer mapping the joined embeddings to hidden_size")
    return block


# --------------------------------------------------------------------------- decoders (causal LM)


def _bert_generation(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """BertGenerationDecoder: word and position embeddings with a LayerNorm, no token types
    (modeling_bert_generation.py 403-409), post-norm BERT layers, no pooler; the head decoder.weight tied to
    the word embeddings by tie_word_embeddings, and a bias of vocab_size (597-598), which the decoder's own
    bias shares when tied (611-614) and does not when untied (then two biases).
    With is_decoder false (the default) the config reader reads it as an encoder (config_json), and the count is
    BertGenerationEncoder's, the base model, without the head."""
    block = _bert_stack(f, attention, hidden, "BertGeneration", token_types=False)
    if not f.data.get("is_decoder", f.outer.get("is_decoder", False)):  # as config_json._bert_generation_encoder
        return block
    block["tied_embeddings"] = f.flag("tie_word_embeddings", outer=True)
    biases = block["vocab_size"] * (1 if block["tied_embeddings"] else 2)
    block["extra_parameters"] = biases
    notes.append(f"inferred: extra_parameters {biases}: the lm_head's bias" + (
        "" if block["tied_embeddings"] else " and the untied decoder's own"))
    return block


def _biogpt(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """BioGPT: max_position_embeddings + 2 learned positions (modeling_biogpt.py 52-60, an offset of 2), pre-
    norm layers of two LayerNorms, q/k/v/out with biases (130, 158-161), a plain MLP with biases (257-261),
    a final LayerNorm (340); output_projection tied by tie_word_embeddings, no bias (425, 431)."""
    mha_width(attention, hidden, "BioGPT")
    block = base(f, "layer", 2)
    positions = f.integer("max_position_embeddings")
    notes.append(f"inferred: {positions} + 2 learned positions (BioGPT offsets position ids by 2)")
    block.update(position_embeddings=positions + 2, qkv_bias=True, output_bias=True,
                 mlp=plain(f.integer("intermediate_size"), True))
    return block


def _ctrl(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """CTRL: sinusoidal positions in a buffer not saved (modeling_ctrl.py 230-232), Wq/Wk/Wv/dense with
    biases (107-111), a plain MLP dff wide with biases (152), two LayerNorms per layer (162-163) and a
    final one (228); lm_head tied by tie_word_embeddings with a bias of vocab_size (349, 354)."""
    mha_width(attention, hidden, "CTRL")
    block = base(f, "layer", 2)
    block.update(qkv_bias=True, output_bias=True, mlp=plain(f.integer("dff"), True),
                 extra_parameters=block["vocab_size"])
    notes.append(f"inferred: extra_parameters {block['vocab_size']}: the lm_head's bias")
    return block


def _openai_gpt(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """GPT-1: learned positions n_positions (modeling_openai.py 301-302), c_attn and c_proj with biases
    (60-61), a plain MLP of 4 x n_embd with biases (120-121, 137), two LayerNorms per layer (136, 138) and no
    final one; lm_head tied by tie_word_embeddings, no bias (413, 418). The causal mask is a buffer not
    saved (53)."""
    mha_width(attention, hidden, "GPT-1")
    block = base(f, "layer", 2)
    block.update(position_embeddings=f.integer("n_positions"), final_norm=False, qkv_bias=True, output_bias=True,
                 mlp=plain(4 * hidden, True))
    notes.append(f"inferred: MLP width 4 x n_embd = {4 * hidden} (GPT-1's MLP)")
    return block


def _xglm(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """XGLM: sinusoidal positions in a buffer not saved (modeling_xglm.py 71), q/k/v/out with biases
    (117, 135-138), a plain MLP ffn_dim wide with biases, two LayerNorms per layer (278-281) and a final
    one (389); lm_head tied by tie_word_embeddings, no bias (501, 506). Cross-attention (268-276) is refused."""
    mha_width(attention, hidden, "XGLM")
    if f.flag("add_cross_attention"):
        raise Skip("add_cross_attention true: cross-attention blocks are not counted")
    block = base(f, "layer", 2)
    block.update(qkv_bias=True, output_bias=True, mlp=plain(f.integer("ffn_dim"), True))
    return block


def _gpt_neox_japanese(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """GPT-NeoX-Japanese: query_key_value and dense without biases, and a dense_bias of hidden_size on the last
    layer alone (modeling_gpt_neox_japanese.py 153-157, 314-316), a plain MLP of hidden_size x
    intermediate_multiple_size without biases (296-298), two LayerNorms per layer (312-313) and a final one
    (372); embed_out tied by tie_word_embeddings, no bias (488, 495)."""
    mha_width(attention, hidden, "GPT-NeoX-Japanese")
    block = base(f, "layer", 2)
    block.update(mlp=plain(hidden * f.integer("intermediate_multiple_size"), False), extra_parameters=hidden)
    notes.append(f"inferred: extra_parameters {hidden}: the last layer's attention dense_bias")
    return block


_GIT_VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_channels": 3,
               "image_size": 224, "patch_size": 16}  # GitVisionConfig (configuration_git.py 47-53)


def _git(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """GIT's GitForCausalLM, the whole checkpoint: word and position embeddings with a LayerNorm
    (modeling_git.py 79-82), post-norm BERT layers, no pooler; output with a bias of vocab_size, its weight
    tied by tie_word_embeddings (887, 893); the CLIP image encoder, the visual projection and any temporal
    embeddings (_git_vision)."""
    block = _bert_stack(f, attention, hidden, "GIT", token_types=False)
    block["tied_embeddings"] = f.flag("tie_word_embeddings", outer=True)
    vision = _git_vision(f, hidden, notes)
    block["extra_parameters"] = block["vocab_size"] + vision
    notes.append(f"inferred: extra_parameters has {block['vocab_size']} for the output layer's bias")
    return block


def _git_vision(f: Fields, text_hidden: int, notes: list[str]) -> int:
    """GIT's image encoder (GitVisionModel) and projection: a patch convolution without a bias, a class
    embedding, (image / patch)^2 + 1 learned positions (modeling_git.py 355-367), LayerNorms before and after
    (602, 604), per layer q/k/v/out with biases (487-490), an MLP fc1/fc2 with biases (435-436) and two
    LayerNorms (532, 534); the visual projection, a Linear vision hidden -> hidden with a bias and a LayerNorm
    (698-699); with num_image_with_embedding, that many temporal embeddings of the vision width (727-731)."""
    v = f.data.get("vision_config") or {}
    if not isinstance(v, dict):
        raise Skip("vision_config is not a JSON object")
    values, defaulted = {}, []
    for key, default in _GIT_VISION.items():
        value = v.get(key)
        if value is None:
            value = default
            defaulted.append(f"{key} {default}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Skip(f"vision_config.{key} is {json.dumps(value)[:40]}, not a whole number >= 1")
        values[key] = value
    h, inner, layers, channels, image, patch = (values[k] for k in _GIT_VISION)
    tower = (channels * patch * patch * h + h + ((image // patch) ** 2 + 1) * h + 2 * 2 * h
             + layers * (4 * (h * h + h) + h * inner + inner + inner * h + h + 2 * 2 * h))
    projection = h * text_hidden + text_hidden + 2 * text_hidden
    frames = f.data.get("num_image_with_embedding")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 0):
        raise Skip(f"num_image_with_embedding is {json.dumps(frames)[:40]}, not a whole number")
    temporal = (frames or 0) * h
    if defaulted:
        notes.append(f"inferred: vision tower uses GitVisionConfig defaults for {', '.join(defaulted)} (not in "
                     "vision_config)")
    notes.append(f"inferred: extra_parameters has {tower + projection + temporal} = image encoder {tower} (hidden "
                 f"{h}, {layers} layers, MLP {inner}, {image}px in {patch}px patches) + visual projection "
                 f"{projection}" + (f" + {frames} temporal embeddings {temporal}" if temporal else ""))
    return tower + projection + temporal


def _modernbert_decoder(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """ModernBERT-decoder's ModernBertDecoderForCausalLM: word embeddings and a norm (modeling_modernbert_decoder.py
    57-58), q/k/v and Wo with biases when attention_bias (239-243), a GLU MLP Wi hidden -> 2 x
    intermediate_size and Wo back, biases when mlp_bias (81-84), a norm before attention on every layer but
    the first (296-300) and one before the MLP (302), a final norm (428); the head: dense hidden x hidden
    (a bias when classifier_bias) and a norm (342-344), then decoder tied by tie_word_embeddings with a bias
    when decoder_bias (514, 521). Every norm is a LayerNorm whose bias norm_bias switches."""
    if attention["kind"] == "mla":
        raise Skip("ModernBERT-decoder attention that is MLA")
    norm_bias, bias = f.flag("norm_bias"), f.flag("attention_bias")
    block = base(f, "layer" if norm_bias else "rms", 1)  # a LayerNorm without a bias counts as an RMSNorm
    norm = hidden * (2 if norm_bias else 1)
    mlp = gated(f)
    mlp["bias"] = f.flag("mlp_bias")
    head = hidden * hidden + (hidden if f.flag("classifier_bias") else 0) + norm
    decoder_bias = block["vocab_size"] if f.flag("decoder_bias") else 0
    attn_norms = (count - 1) * norm
    block.update(embedding_norm=True, qkv_bias=bias, output_bias=bias, mlp=mlp,
                 extra_parameters=attn_norms + head + decoder_bias)
    notes.append(f"inferred: extra_parameters {attn_norms + head + decoder_bias} = the attention norms of "
                 f"layers 1 to {count - 1} ({attn_norms}; layer 0 has none) + the prediction head's dense and "
                 f"norm ({head})" + (f" + the decoder's bias ({decoder_bias})" if decoder_bias else ""))
    return block


BUILDERS = {
    "roberta": _roberta, "camembert": _roberta, "xlm-roberta": _roberta, "data2vec-text": _roberta,
    "ernie": _ernie, "big_bird": _big_bird, "electra": _electra, "rembert": _rembert, "roformer": _roformer,
    "xmod": _xmod, "roc_bert": _roc_bert,
    "roberta-prelayernorm": _pre_norm, "xlm-roberta-xl": _pre_norm, "megatron-bert": _pre_norm,
    "bert-generation": _bert_generation, "biogpt": _biogpt, "ctrl": _ctrl, "openai-gpt": _openai_gpt,
    "xglm": _xglm, "gpt_neox_japanese": _gpt_neox_japanese, "git": _git,
    "modernbert-decoder": _modernbert_decoder,
}
