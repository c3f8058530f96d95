"""Weights of the parts round one refused: narrow embeddings with a projection (ELECTRA-small, RemBERT,
RoFormer), Moshi's whole checkpoint, and the towers of Phi-4-multimodal, GOT-OCR2 and
MOSS-Transcribe-Diarize (kvcalc/sources/weights_encoders.py, weights_hybrids.py).

1. Against transformers itself, where installed: the model benchmarks/model_types.py ``meta_parameters``
   builds on the meta device (``AutoModel`` for an encoder, the image-text class where the config has a
   vision tower, else the causal-LM class; Moshi: MoshiForConditionalGeneration, the whole checkpoint), its
   parameters and persistent buffers summed, for each type's class defaults and variants.
2. By hand: per builder shape, the expected total written out as arithmetic from the config's fields.
"""

from __future__ import annotations

import pytest
from weights_checks import class_defaults, meta_count, spec_of, total

from kvcalc.capacity.params import parameter_count

# ---------------------------------------------------------------- 2. by hand


def bert_layer(h: int, inner: int) -> int:
    """One BERT-shaped post-norm layer: q/k/v/o with biases, a plain MLP with biases, two LayerNorms."""
    return 4 * (h * h + h) + 2 * h * inner + inner + h + 2 * 2 * h


def test_electra_small_narrow_embeddings():
    # ElectraConfig's defaults are ELECTRA-small's: embedding_size 128 below hidden_size 256
    data = {"model_type": "electra", "vocab_size": 30522, "embedding_size": 128, "hidden_size": 256,
            "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 1024,
            "max_position_embeddings": 512, "type_vocab_size": 2}
    e, h = 128, 256
    # words, positions, token types and their LayerNorm e wide; embeddings_project e -> h with a bias; no pooler
    expected = (30522 + 512 + 2) * e + 2 * e + e * h + h + 12 * bert_layer(h, 1024)
    assert total(data) == expected
    assert round(expected / 1e6, 1) == 13.5  # ELECTRA-small's 14M in the paper (Table 1), 13.5M as built
    spec = spec_of(data)
    assert parameter_count(spec).embedding == (30522 + 512 + 2) * e + 2 * e
    # equal widths: no projection
    assert total(data | {"embedding_size": 256}) == (30522 + 512 + 2) * h + 2 * h + 12 * bert_layer(h, 1024)


def test_rembert_input_embeddings_and_mapping():
    # google/rembert's shape (RemBertConfig's defaults)
    data = {"model_type": "rembert", "vocab_size": 250300, "hidden_size": 1152, "input_embedding_size": 256,
            "output_embedding_size": 1664, "num_hidden_layers": 32, "num_attention_heads": 18,
            "intermediate_size": 4608, "max_position_embeddings": 512, "type_vocab_size": 2}
    e, h = 256, 1152
    # embeddings and LayerNorm e wide, embedding_hidden_mapping_in e -> h with a bias, 32 layers, the pooler;
    # output_embedding_size sizes only the LM head RemBertModel has not
    expected = (250300 + 512 + 2) * e + 2 * e + e * h + h + 32 * bert_layer(h, 4608) + h * h + h
    assert total(data) == expected
    assert total(data | {"output_embedding_size": 2048}) == expected
    # the mapping is built even when the widths agree
    assert total(data | {"input_embedding_size": h}) == (
        (250300 + 512 + 2) * h + 2 * h + h * h + h + 32 * bert_layer(h, 4608) + h * h + h)


def test_roformer_narrow_embeddings():
    data = {"model_type": "roformer", "vocab_size": 50000, "embedding_size": 384, "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "max_position_embeddings": 1536, "type_vocab_size": 2}
    e, h = 384, 768
    # words and token types + LayerNorm e wide, embeddings_project, the 1536 x 64 sinusoidal parameter
    expected = (50000 + 2) * e + 2 * e + e * h + h + 1536 * 64 + 12 * bert_layer(h, 3072)
    assert total(data) == expected


def qwen2_layer(h: int, heads: int, kv_heads: int, head_dim: int, inner: int) -> int:
    """q/k/v with biases, o without, a gated MLP, two RMSNorms."""
    q, kv = heads * head_dim, kv_heads * head_dim
    return h * (q + 2 * kv) + q + 2 * kv + q * h + 3 * h * inner + 2 * h


def test_got_ocr2_class_defaults_by_hand():
    # GotOcr2Config's defaults: the SAM-style vision tower (GotOcr2VisionConfig) and a Qwen2 text_config
    h, out, grid, window, head_dim, mlp = 768, 256, 1024 // 16, 14, 768 // 12, 3072
    layer = 2 * 2 * h + 3 * h * h + 3 * h + h * h + h + 2 * h * mlp + mlp + h  # norms, qkv, proj, lin1, lin2
    rel_local, rel_global = 2 * (2 * window - 1) * head_dim, 2 * (2 * grid - 1) * head_dim
    tower = (3 * 16 * 16 * h + h + grid * grid * h  # patch conv, absolute position grid
             + 8 * (layer + rel_local) + 4 * (layer + rel_global)  # layers 2, 5, 8, 11 attend globally
             + h * out + 2 * out + out * out * 9 + 2 * out)  # the neck: 1x1 conv, LayerNorm, 3x3 conv, LayerNorm
    text = 1024
    projector = out * 2 * out * 9 + 2 * out * text * 9 + text * text + text
    language = 151860 * text + 24 * qwen2_layer(text, 16, 16, 64, 2816) + text  # the head tied
    assert total(got_ocr2_defaults()) == tower + projector + language


def test_moss_transcribe_diarize_class_defaults_by_hand():
    d, layers, ffn, text = 1024, 24, 4096, 1024
    tower = (80 * d * 3 + d + d * d * 3 + d + 1500 * d  # conv1, conv2, the frozen position table
             + layers * (4 * d * d + 3 * d + 2 * 2 * d + 2 * d * ffn + ffn + d)  # k has no bias
             + 2 * d)
    projector = 4 * d * text + text + text * text + text + 2 * text  # linear_1 (4 frames merged), linear_2, norm
    q, kv = 16 * 128, 8 * 128
    qwen3_layer = text * (q + 2 * kv) + q * text + 2 * 128 + 3 * text * 3072 + 2 * text
    language = 151936 * text + 28 * qwen3_layer + text  # tied: MossTranscribeDiarizeConfig's tie, not text_config's
    assert total(moss_defaults()) == tower + projector + language
    untied = moss_defaults() | {"tie_word_embeddings": False, "projector_bias": False, "audio_merge_size": 2}
    assert total(untied) == tower + projector - 2 * d * text - 2 * text + language + 151936 * text


def got_ocr2_defaults() -> dict:
    """GotOcr2Config's defaults as to_dict() writes them (transformers 5.24), so no transformers is needed."""
    return {
        "model_type": "got_ocr2", "image_token_index": 151859, "image_seq_length": 576, "tie_word_embeddings": True,
        "vision_config": {"model_type": "got_ocr2_vision", "hidden_size": 768, "output_channels": 256,
                          "num_hidden_layers": 12, "num_attention_heads": 12, "num_channels": 3, "image_size": 1024,
                          "patch_size": 16, "hidden_act": "gelu", "layer_norm_eps": 1e-06, "qkv_bias": True,
                          "use_abs_pos": True, "use_rel_pos": True, "window_size": 14,
                          "global_attn_indexes": [2, 5, 8, 11], "mlp_dim": 3072},
        "text_config": {"model_type": "qwen2", "vocab_size": 151860, "hidden_size": 1024, "intermediate_size": 2816,
                        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
                        "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
                        "tie_word_embeddings": True,
                        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
                        "use_sliding_window": False, "sliding_window": None, "max_window_layers": 21,
                        "layer_types": ["full_attention"] * 24},
    }


def moss_defaults() -> dict:
    """MossTranscribeDiarizeConfig's defaults as to_dict() writes them (transformers 5.24)."""
    return {
        "model_type": "moss_transcribe_diarize", "audio_token_id": 151671, "projector_hidden_act": "silu",
        "projector_bias": True, "audio_merge_size": 4, "audio_chunk_size": 480000, "tie_word_embeddings": True,
        "audio_config": {"model_type": "moss_transcribe_diarize_audio", "num_mel_bins": 80, "num_hidden_layers": 24,
                         "num_attention_heads": 16, "intermediate_size": 4096, "activation_function": "gelu",
                         "hidden_size": 1024, "max_source_positions": 1500},
        "text_config": {"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
                        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                        "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-06,
                        "tie_word_embeddings": False, "attention_bias": False, "use_sliding_window": False,
                        "sliding_window": None, "max_window_layers": 28, "layer_types": ["full_attention"] * 28,
                        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}},
    }


# ---------------------------------------------------------------- 1. transformers on the meta device


def built(data: dict, encoder: bool, cls: str | None = None) -> int:
    """As benchmarks/model_types.py meta_parameters: parameters plus persistent buffers, on meta."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    cfg = transformers.AutoConfig.for_model(**data)
    auto = transformers.AutoModelForCausalLM
    if cls is not None:
        auto = getattr(transformers, cls)
    elif encoder:
        auto = transformers.AutoModel
    elif data.get("vision_config") and data["model_type"] in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        auto = transformers.AutoModelForImageTextToText
    return meta_count(lambda: auto.from_config(cfg) if hasattr(auto, "from_config") else auto(cfg))


def _vision(change: dict) -> dict:
    return {"vision_config": got_ocr2_defaults()["vision_config"] | change}


# type -> changes to its class defaults, each built once; {} is the defaults themselves
CASES = {
    "electra": [{}],  # ELECTRA-small: embedding_size 128, hidden_size 256
    "rembert": [{}],
    "roformer": [{"embedding_size": 384}],
    "got_ocr2": [{}, {"tie_word_embeddings": False,
                      **_vision({"qkv_bias": False, "use_rel_pos": False, "use_abs_pos": False, "window_size": 8,
                                 "global_attn_indexes": [1, 3], "num_hidden_layers": 4, "output_channels": 128})}],
    "moss_transcribe_diarize": [{}, {"tie_word_embeddings": False, "projector_bias": False, "audio_merge_size": 2}],
    "phi4_multimodal": [{}, {"tie_word_embeddings": True, "num_hidden_layers": 4,
                             "vision_config": {"num_hidden_layers": 3, "image_size": 224, "intermediate_size": 1000},
                             "audio_config": {"num_blocks": 3, "time_reduction": 4, "bias_symmetric": True,
                                              "depthwise_multiplier": 2, "ext_pw_out_channel": 512,
                                              "downsample_rate": 2, "input_size": 81}}],
}


@pytest.mark.parametrize(("model_type", "change"),
                         [pytest.param(t, c, id=f"{t}-{i}") for t, cs in CASES.items() for i, c in enumerate(cs)])
def test_count_equals_the_model_transformers_builds(model_type, change):
    data = class_defaults(model_type) | change
    spec = spec_of(data)
    count = parameter_count(spec)
    assert count is not None, spec.notes
    assert count.total == built(data, spec.is_encoder)


def test_the_hand_written_defaults_are_the_class_defaults():
    for model_type, written in (("got_ocr2", got_ocr2_defaults()), ("moss_transcribe_diarize", moss_defaults()),
                                ("phi4_multimodal", phi4_defaults())):
        defaults = class_defaults(model_type)
        for key, value in written.items():
            if isinstance(value, dict):
                assert {k: defaults[key][k] for k in value} == value, (model_type, key)
            else:
                assert defaults[key] == value, (model_type, key)


def test_phi4_multimodal_class_defaults_by_hand():
    # Phi4MultimodalConfig's defaults (microsoft/Phi-4-multimodal-instruct's shape), the whole checkpoint
    text, vocab, layers, heads, kv_heads, inner = 3072, 200064, 32, 32, 8, 8192
    head_dim = text // heads
    decoder_layer = (text * (heads + 2 * kv_heads) * head_dim + heads * head_dim * text  # qkv_proj, o_proj
                     + 3 * text * inner + 2 * text)  # gate_up_proj, down_proj, two RMSNorms
    language = 2 * vocab * text + layers * decoder_layer + text  # embeddings, untied lm_head, final norm
    # the image embedding: SigLIP (1152 wide, 27 layers, MLP 4304, 448px in 14px patches) with its pooling head
    h, mlp_inner = 1152, 4304
    mlp = 2 * h * mlp_inner + mlp_inner + h
    siglip = (3 * 14 * 14 * h + h + 32 * 32 * h + 27 * (4 * (h * h + h) + mlp + 4 * h) + 2 * h
              + h + 4 * h * h + 4 * h + 2 * h + mlp)  # probe, MultiheadAttention, LayerNorm, MLP
    image = siglip + h * text + text + text * text + text + 2 * h
    # the audio embedding: Conformer (1024 wide, 24 blocks, MLP 1536, 16 heads), NeMo subsampling by 8
    a, ai, c = 1024, 1536, 1024
    final = 10  # 80 mel bins halved three times, rounding up: 40, 20, 10
    subsampling = c * 9 + c + 2 * (c * 9 + c + c * c + c) + c * final * a + a
    conformer_block = (2 * (2 * a + 2 * a * ai + 2 * ai + ai * a + a) + 4 * (a * a + a)
                       + 2 * a + 2 * a * a + 2 * a + 2 * a + a * 3 + a + a * a + a + a * a + a + 4 * a)
    encoder = 2 * 80 + subsampling + 2000 * 16 + 24 * conformer_block
    audio = encoder + 2 * (a * text + text + text * text + text)
    assert total(phi4_defaults()) == language + image + audio


def phi4_defaults() -> dict:
    """Phi4MultimodalConfig's defaults as to_dict() writes them (transformers 5.24), the fields read."""
    return {
        "model_type": "phi4_multimodal", "vocab_size": 200064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "tie_word_embeddings": False,
        "vision_config": {"model_type": "phi4_multimodal_vision", "hidden_size": 1152, "intermediate_size": 4304,
                          "num_hidden_layers": 27, "num_attention_heads": 16, "num_channels": 3, "image_size": 448,
                          "patch_size": 14},
        "audio_config": {"model_type": "phi4_multimodal_audio", **PHI4_AUDIO},
    }


PHI4_AUDIO = {"hidden_size": 1024, "intermediate_size": 1536, "num_blocks": 24, "num_attention_heads": 16,
              "ext_pw_out_channel": 1024, "depthwise_separable_out_channel": 1024, "depthwise_multiplier": 1,
              "kernel_size": 3, "input_size": 80, "time_reduction": 8, "bias_max_distance": 1000,
              "bias_symmetric": False, "nemo_conv_channels": 1024, "downsample_rate": 1}
