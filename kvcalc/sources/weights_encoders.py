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
import math

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
    "moshi": {"tie_word_embeddings": False, "num_codebooks": 8, "ffn_dim": 22528},  # MoshiConfig (148-151)
}
DECODERS: dict[str, Decoder] = {}
NOT_DERIVED: dict[str, str] = {}


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
    if f.model_type != "bert-generation" and f.data.get("is_decoder", f.outer.get("is_decoder")) is True:
        raise Skip(f"is_decoder true: {family}'s causal-LM class (no pooler, a masked-LM head) is not counted")
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


# MoshiDepthConfig (configuration_moshi.py 56-69; vocab_size, audio_vocab_size, input_size and num_codebooks come
# from MoshiConfig, 172-180) and MimiConfig (configuration_mimi.py), transformers 5.24
_MOSHI_DEPTH = {"hidden_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 16, "ffn_dim": 5632}
_MIMI = {"sampling_rate": 24000, "audio_channels": 1, "hidden_size": 512, "num_filters": 64, "num_residual_layers": 1,
         "kernel_size": 7, "last_kernel_size": 3, "residual_kernel_size": 3, "compress": 2, "codebook_size": 2048,
         "num_quantizers": 32, "use_conv_shortcut": False, "vector_quantization_hidden_dimension": 256,
         "num_semantic_quantizers": 1, "upsample_groups": 512, "num_hidden_layers": 8, "intermediate_size": 2048,
         "num_attention_heads": 8, "attention_bias": False}


def _sub_fields(f: Fields, key: str, defaults: dict, notes: list[str], owner: str) -> dict:
    """The whole-number and flag fields of the sub-config ``key``, its class defaults where left out."""
    sub = f.data.get(key)
    if not isinstance(sub, dict):
        raise Skip(f"no {key} object in config.json (MoshiConfig passes the sizes the model needs only into a "
                   f"{key} it is given)")
    values, defaulted = {}, []
    for name, default in defaults.items():
        value = sub.get(name)
        if value is None:
            value = default
            defaulted.append(f"{name} {json.dumps(default)}")
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, int) \
                or (not isinstance(value, bool) and value < 1):
            raise Skip(f"{key}.{name} is {json.dumps(value)[:40]}, not what {owner} takes")
        values[name] = value
    if defaulted:
        notes.append(f"inferred: {key} uses {owner}'s defaults for {', '.join(defaulted)}")
    return values


def _moshi(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Moshi's MoshiForConditionalGeneration, the whole checkpoint (modeling_moshi.py 898-907):
    - the text decoder MoshiForCausalLM (737-750, 814-818): embed_tokens (vocab_size + 1) x hidden, per layer
      q/k/v/o without biases (434-445), MoshiGatingMLP fc1 hidden -> ffn_dim and fc2 ffn_dim / 2 -> hidden
      (347-357; a gated MLP of ffn_dim / 2) and two RMSNorms (509-510), a final norm, lm_head hidden x vocab_size,
      never tied (no _tied_weights_keys; the embedding's extra row goes in extra_parameters);
    - 2 x num_codebooks audio embeddings (audio_vocab_size + 1) x hidden (901-903);
    - the depth decoder MoshiDepthDecoder (584-603): text_embed_tokens (vocab_size + 1) x d, num_codebooks - 1
      audio embeddings (audio_vocab_size + 1) x d, input_projections, per layer q/k/v/o and fc1/fc2 as
      MoshiFlexibleLinear (209-213: one weight per codebook) and two RMSNorms of d, lm_heads per codebook;
    - the Mimi codec (AutoModel of audio_encoder_config, _mimi)."""
    if attention["kind"] == "mla":
        raise Skip("Moshi attention that is MLA")
    mimi = f.data.get("audio_encoder_config")
    if isinstance(mimi, dict) and mimi.get("model_type", "mimi") != "mimi":
        raise Skip(f"audio_encoder_config model_type {mimi.get('model_type')!r} is not mimi")
    depth = _sub_fields(f, "depth_decoder_config", _MOSHI_DEPTH, notes, "MoshiDepthConfig")
    codec = _sub_fields(f, "audio_encoder_config", _MIMI, notes, "MimiConfig")
    vocab, books, ffn = f.integer("vocab_size"), f.integer("num_codebooks"), f.integer("ffn_dim")
    audio_vocab = f.integer("audio_vocab_size") if f.present("audio_vocab_size") else codec["codebook_size"]
    if ffn % 2 or books > codec["num_quantizers"]:
        raise Skip(f"ffn_dim {ffn} is odd, or num_codebooks {books} is more than Mimi's num_quantizers: MoshiConfig "
                   "refuses it (configuration_moshi.py 197-204)")
    block = base(f, "rms", 2)
    block.update(tied_embeddings=False, mlp={"kind": "gated", "intermediate_size": ffn // 2})
    if f.flag("tie_word_embeddings"):
        notes.append("inferred: the lm_head is not tied (MoshiForCausalLM has no _tied_weights_keys, so "
                     "tie_word_embeddings ties nothing)")
    d, layers, heads = depth["hidden_size"], depth["num_hidden_layers"], depth["num_attention_heads"]
    sub = f.data["depth_decoder_config"]
    kv = sub["num_key_value_heads"] if sub.get("num_key_value_heads") is not None else heads  # 78-81
    head_dim = sub.get("head_dim") or d // heads
    if depth["ffn_dim"] % 2:
        raise Skip(f"depth_decoder_config.ffn_dim {depth['ffn_dim']} is odd (MoshiDepthConfig refuses it)")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (kv, head_dim)):
        raise Skip("depth_decoder_config's num_key_value_heads or head_dim is not a whole number")
    depth_layer = books * (2 * d * heads * head_dim + 2 * d * kv * head_dim + 3 * d * (depth["ffn_dim"] // 2)) + 2 * d
    depth_total = ((vocab + 1) * d + (books - 1) * (audio_vocab + 1) * d + books * hidden * d
                   + layers * depth_layer + books * d * audio_vocab)
    audio = 2 * books * (audio_vocab + 1) * hidden
    codec_total = _mimi(f, codec, notes)
    block["extra_parameters"] = hidden + audio + depth_total + codec_total
    notes.append(f"inferred: extra_parameters {block['extra_parameters']} = the text embedding's extra row {hidden} "
                 f"+ {2 * books} audio embeddings {audio} + the depth decoder {depth_total} (hidden {d}, {layers} "
                 f"layers, per-codebook weights for {books} codebooks) + the Mimi codec {codec_total}")
    return block


def _mimi(f: Fields, c: dict, notes: list[str]) -> int:
    """Mimi (MimiModel, modeling_mimi.py 1349-1353), its parameters and persistent buffers:
    - the encoder half (1153-1171) where encoder_config is not null: the SEANet encoder (489-517; every conv a
      Conv1d with a bias, 276): audio_channels -> num_filters (kernel_size); per ratio of reversed
      upsampling_ratios num_residual_layers resnet blocks (447-468: dim -> dim // compress, residual_kernel_size,
      then -> dim, 1; a 1x1 shortcut with use_conv_shortcut) and a downsampling conv to twice the width
      (kernel 2 x ratio); a last conv to hidden_size (last_kernel_size); the encoder transformer; a downsample
      Conv1d hidden square of kernel 2 x latent_stride without a bias where frame_rate differs from
      encodec_frame_rate;
    - the decoder half (1285-1302) where decoder_config is not null: the upsample ConvTranspose1d (groups
      upsample_groups, no bias) on the same condition, the decoder transformer, the SEANet decoder (891-915:
      the mirror, ConvTranspose1d upsampling with biases);
    - each transformer (802-816): per layer q/k/v/o (biases on attention_bias, 709-712), fc1 and fc2 without
      biases (635-636), two LayerNorms with biases (766-767) and two layer scales of hidden_size (768-769);
    - the split residual quantizer (1044-1057): num_quantizers codebooks, each the buffers initialized (1),
      cluster_usage (codebook_size) and embed_sum (codebook_size x codebook_dim) (924-935), and in both halves
      input_proj and output_proj 1x1 convs without biases where vector_quantization_hidden_dimension differs
      from hidden_size (1002-1008)."""
    raw = f.data["audio_encoder_config"]
    h, filters, ratios = c["hidden_size"], c["num_filters"], raw.get("upsampling_ratios") or [8, 6, 5, 4]
    if not isinstance(ratios, list) or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ratios):
        raise Skip("audio_encoder_config.upsampling_ratios is not a list of whole numbers")
    halves = {}
    for half in ("encoder", "decoder"):  # a dropped half is saved as null (configuration_mimi.py 220-226)
        if f"{half}_config" in raw and raw[f"{half}_config"] is not None:
            raise Skip(f"audio_encoder_config.{half}_config is not null: MimiConfig derives it, so only null is taken")
        halves[half] = f"{half}_config" not in raw
    heads, inner = c["num_attention_heads"], c["intermediate_size"]
    kv = raw.get("num_key_value_heads", 8)  # MimiConfig's defaults (configuration_mimi.py 87, 96)
    head_dim = raw.get("head_dim") or h // heads  # configuration_mimi.py 133
    codebook_dim = raw.get("codebook_dim", 256)  # an int field: null is refused by the strict config class
    for name, value in (("num_key_value_heads", kv), ("head_dim", head_dim), ("codebook_dim", codebook_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Skip(f"audio_encoder_config.{name} is {json.dumps(value)[:40]}, not a whole number")

    def conv(i: int, o: int, k: int, bias: bool = True) -> int:
        return i * o * k + (o if bias else 0)

    compress, rk, shortcut = c["compress"], c["residual_kernel_size"], c["use_conv_shortcut"]

    def resnet(dim: int) -> int:
        return conv(dim, dim // compress, rk) + conv(dim // compress, dim, 1) + (conv(dim, dim, 1) if shortcut else 0)

    res = c["num_residual_layers"]
    encoder = conv(c["audio_channels"], filters, c["kernel_size"])
    scaling = 1
    for ratio in reversed(ratios):
        width = scaling * filters
        encoder += res * resnet(width) + conv(width, 2 * width, 2 * ratio)
        scaling *= 2
    encoder += conv(scaling * filters, h, c["last_kernel_size"])
    scaling = 2 ** len(ratios)
    decoder = conv(h, scaling * filters, c["kernel_size"])
    for ratio in ratios:
        width = scaling * filters
        decoder += conv(width, width // 2, 2 * ratio) + res * resnet(width // 2)  # ConvTranspose1d: in x out x k
        scaling //= 2
    decoder += conv(filters, c["audio_channels"], c["last_kernel_size"])
    bias = c["attention_bias"]
    layer = (2 * h * heads * head_dim + 2 * h * kv * head_dim  # q, o and k, v
             + (heads * head_dim + 2 * kv * head_dim + h if bias else 0)
             + 2 * h * inner + 2 * 2 * h + 2 * h)  # fc1, fc2, two LayerNorms, two layer scales
    transformer = c["num_hidden_layers"] * layer
    # frame_rate as MimiConfig computes it (configuration_mimi.py 151-187): a stated frame_rate (a saved
    # "_frame_rate", even null, takes its place) or sampling_rate / frame_size, frame_size = prod(ratios) x 2
    frame = raw["_frame_rate"] if "_frame_rate" in raw else raw.get("frame_rate")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int | float) or frame <= 0):
        raise Skip(f"audio_encoder_config.frame_rate is {json.dumps(frame)[:40]}, not a positive number")
    rate = c["sampling_rate"]
    frame = rate / (math.prod(ratios) * 2) if frame is None else frame
    encodec = math.ceil(rate / math.prod(ratios))
    down = up = 0
    if frame != encodec:  # encoder 1158-1170, decoder 1287-1298
        stride = int(encodec / frame)  # latent_stride (configuration_mimi.py 161-163)
        if stride < 1 or h % c["upsample_groups"]:
            raise Skip("Mimi's latent_stride is 0, or hidden_size is not a multiple of upsample_groups")
        down = h * h * 2 * stride  # the downsample Conv1d
        up = h * (h // c["upsample_groups"]) * 2 * stride  # the upsample ConvTranspose1d, its weight divided by groups
    semantic = c["num_semantic_quantizers"]
    if semantic >= c["num_quantizers"] or c["codebook_size"] & (c["codebook_size"] - 1):
        raise Skip("Mimi's num_semantic_quantizers is not below num_quantizers, or codebook_size is not a power of 2 "
                   "(MimiConfig refuses it)")
    quantizer = c["num_quantizers"] * (1 + c["codebook_size"] + c["codebook_size"] * codebook_dim)
    vq = c["vector_quantization_hidden_dimension"]
    if vq != h:
        quantizer += 2 * 2 * h * vq
    encoder += transformer + down
    decoder += transformer + up
    total = quantizer + (encoder if halves["encoder"] else 0) + (decoder if halves["decoder"] else 0)
    notes.append(f"inferred: the Mimi codec {total} = "
                 + (f"encoder {encoder} (SEANet, {c['num_hidden_layers']}-layer transformer"
                    + (", downsample" if down else "") + ") + " if halves["encoder"] else "")
                 + (f"decoder {decoder} + " if halves["decoder"] else "")
                 + f"quantizer {quantizer} ({c['num_quantizers']} codebooks of {c['codebook_size']} x {codebook_dim}, "
                 "kept as buffers)")
    return total


BUILDERS = {
    "bert": _roberta,  # BertModel and its pooler (modeling_bert.py), the shape the others here repeat
    "roberta": _roberta, "camembert": _roberta, "xlm-roberta": _roberta, "data2vec-text": _roberta,
    "ernie": _ernie, "big_bird": _big_bird, "electra": _electra, "rembert": _rembert, "roformer": _roformer,
    "xmod": _xmod, "roc_bert": _roc_bert,
    "roberta-prelayernorm": _pre_norm, "xlm-roberta-xl": _pre_norm, "megatron-bert": _pre_norm,
    "bert-generation": _bert_generation, "biogpt": _biogpt, "ctrl": _ctrl, "openai-gpt": _openai_gpt,
    "xglm": _xglm, "gpt_neox_japanese": _gpt_neox_japanese, "git": _git,
    "modernbert-decoder": _modernbert_decoder, "moshi": _moshi,
}
