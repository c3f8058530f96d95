"""Parameter counts of Gemma-4 (kvcalc/sources/weights_gemma4.py): gemma4_text, gemma4_unified_text and the
multimodal gemma4 / gemma4_unified checkpoints with their vision and audio parts.

1. Each type's class-defaults config, variants that switch each optional part, and a Gemma-4 26B-A4B config
   against the model transformers builds on the meta device (tests/test_hf_config_weights.py
   transformers_count), skipped without transformers and torch.
2. By hand: the text decoder, the MoE with attention_k_eq_v, the towers and the unified embedders, each total
   written out as arithmetic from the config's fields.
"""

from __future__ import annotations

import pytest

from kvcalc.capacity.params import parameter_count
from kvcalc.sources.config_json import spec_from_config
from kvcalc.sources.config_weights import SKIP

# Gemma-4 26B-A4B (google/gemma-4-26B-A4B-it): its text_config and vision_config fields as quoted verbatim by
# public code that validates the released config.json (tests/fixtures/configs/README.md cites them)
TEXT_26B = {
    "model_type": "gemma4_text", "vocab_size": 262144, "num_hidden_layers": 30, "hidden_size": 2816,
    "intermediate_size": 2112, "moe_intermediate_size": 704, "num_experts": 128, "top_k_experts": 8,
    "enable_moe_block": True, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
    "global_head_dim": 512, "num_global_key_value_heads": 2, "sliding_window": 1024,
    "hidden_activation": "gelu_pytorch_tanh", "attention_k_eq_v": True, "tie_word_embeddings": True,
    "use_bidirectional_attention": "vision", "hidden_size_per_layer_input": 0, "num_kv_shared_layers": 0,
    "use_double_wide_mlp": False, "final_logit_softcapping": 30.0, "rms_norm_eps": 1e-06,
    "max_position_embeddings": 262144, "attention_bias": False, "dtype": "bfloat16",
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 5,
}
VISION_26B = {
    "model_type": "gemma4_vision", "num_hidden_layers": 27, "hidden_size": 1152, "intermediate_size": 4304,
    "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 72, "global_head_dim": 72, "patch_size": 16,
    "position_embedding_size": 10240, "pooling_kernel_size": 3, "default_output_length": 280,
    "hidden_activation": "gelu_pytorch_tanh", "standardize": True, "rms_norm_eps": 1e-06, "dtype": "bfloat16",
}
GEMMA4_26B = {"model_type": "gemma4", "text_config": TEXT_26B, "vision_config": VISION_26B, "audio_config": None,
              "tie_word_embeddings": True, "architectures": ["Gemma4ForConditionalGeneration"]}

SMALL_TEXT = {  # a small Gemma-4 text model to switch parts on
    "model_type": "gemma4_text", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "global_head_dim": 32, "sliding_window": 128, "max_position_embeddings": 4096,
    "vocab_size_per_layer_input": 500, "hidden_size_per_layer_input": 8,
}

# case -> (type whose class defaults it starts from, or None for a whole config; changes; text_config changes)
CASES = {
    "gemma4_text": ("gemma4_text", {}, {}),
    "gemma4_unified_text": ("gemma4_unified_text", {}, {}),
    "gemma4": ("gemma4", {}, {}),
    "gemma4_unified": ("gemma4_unified", {}, {}),
    "gemma4_text-untied-bias": ("gemma4_text", {"tie_word_embeddings": False, "attention_bias": True}, {}),
    "gemma4_text-no-ple": ("gemma4_text", {"hidden_size_per_layer_input": 0}, {}),
    "gemma4_text-k_eq_v": ("gemma4_text", {"attention_k_eq_v": True, "num_global_key_value_heads": 1,
                                           "per_layer_config": None}, {}),
    "gemma4_text-k_eq_v-bias": ("gemma4_text", {"attention_k_eq_v": True, "attention_bias": True,
                                                "per_layer_config": None}, {}),
    "gemma4_text-globals-ignored": ("gemma4_text", {"num_global_key_value_heads": 1, "global_head_dim": 128,
                                                    "per_layer_config": None}, {}),
    "gemma4_text-no-layer-types": ("gemma4_text", {"layer_types": None, "per_layer_config": None,
                                                   "num_hidden_layers": 10}, {}),
    "small-moe": (None, {**SMALL_TEXT, "enable_moe_block": True, "num_experts": 8, "top_k_experts": 2,
                         "moe_intermediate_size": 24, "attention_k_eq_v": True, "num_global_key_value_heads": 1,
                         "layer_types": ["sliding_attention", "full_attention", "sliding_attention",
                                         "sliding_attention", "full_attention", "sliding_attention"]}, {}),
    # transformers needs each layer type's layers alike (its rotary embedding reads one per type)
    "small-per-layer-config": (None, {**SMALL_TEXT, "attention_k_eq_v": True, "num_global_key_value_heads": 2,
                                      "per_layer_config": {**{f"0{i}": {"num_key_value_heads": 1} for i in range(5)},
                                                           "05": {"head_dim": 32, "num_key_value_heads": 4}}}, {}),
    "gemma4-towers": ("gemma4", {"vision_config": {}, "audio_config": {}}, {}),
    "gemma4-towers-switched": ("gemma4", {
        "vision_config": {"use_clipped_linears": True, "standardize": True, "hidden_size": 96, "head_dim": 24,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 3,
                          "intermediate_size": 160, "patch_size": 14, "position_embedding_size": 300},
        "audio_config": {"use_clipped_linears": False, "hidden_size": 96, "num_attention_heads": 5,
                         "num_hidden_layers": 2, "subsampling_conv_channels": [30, 12], "conv_kernel_size": 3,
                         "output_proj_dims": 80},
        "tie_word_embeddings": False}, {"tie_word_embeddings": False, "hidden_size_per_layer_input": 0}),
    "gemma4-untied-wrapper": ("gemma4", {"tie_word_embeddings": False}, {"tie_word_embeddings": True}),
    "gemma4_unified-tied-wrapper": ("gemma4_unified", {"tie_word_embeddings": True}, {"tie_word_embeddings": False}),
    "gemma4_unified-embedders": ("gemma4_unified", {"vision_config": {}, "audio_config": {}}, {}),
    "gemma4_unified-embedders-sized": ("gemma4_unified", {
        "vision_config": {"patch_size": 8, "pooling_kernel_size": 2, "mm_embed_dim": 200, "mm_posemb_size": 50,
                          "output_proj_dims": 200},
        "audio_config": {"audio_embed_dim": 320}}, {"attention_k_eq_v": True, "num_global_key_value_heads": 2}),
    "gemma4-26b-a4b": (None, GEMMA4_26B, {}),
}


def defaults(model_type: str) -> dict:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return transformers.AutoConfig.for_model(model_type).to_dict()


def config(case: str) -> dict:
    start, change, text_change = CASES[case]
    data = defaults(start) if start else {}
    data.update(change)
    data = {k: v for k, v in data.items() if not (k in change and v is None and start and k != "audio_config")}
    if text_change:
        text = {**data["text_config"], **text_change}
        text = {k: v for k, v in text.items() if not (k in text_change and v is None)}
        data["text_config"] = text
        if "per_layer_config" in text and "num_global_key_value_heads" in text_change:
            del text["per_layer_config"]
    return data


def total_of(data: dict) -> int:
    spec = spec_from_config(data, origin="gemma4 test")
    count = parameter_count(spec)
    assert count is not None, [n for n in spec.notes if n.startswith(SKIP)]
    return count.total


@pytest.mark.parametrize("case", sorted(CASES))
def test_count_equals_the_model_transformers_builds(case):
    from test_hf_config_weights import transformers_count

    data = config(case)
    assert total_of(data) == transformers_count(data)


def test_the_last_layer_is_full_as_transformers_forces_it():
    from test_hf_config_weights import transformers_count

    data = {**SMALL_TEXT, "attention_k_eq_v": True, "layer_types": ["sliding_attention"] * 6}
    assert total_of(data) == transformers_count(data)


def test_a_null_per_layer_input_width_switches_them_off():
    """transformers 5.24 refuses null (an int field), its modelling code tests it for truth (G 1345, 1566):
    kvcalc counts null as 0, as the code reads it."""
    data = defaults("gemma4_text")
    assert total_of({**data, "hidden_size_per_layer_input": None}) == total_of(
        {**data, "hidden_size_per_layer_input": 0})


# ---------------------------------------------------------------- 2. by hand


def test_gemma4_text_defaults_by_hand():
    data = defaults("gemma4_text")
    # 30 layers, every 6th full: 25 sliding (8 heads, 4 KV heads of 256), 5 full (heads of 512); hidden 2304
    sliding = 2304 * 8 * 256 + 2 * 2304 * 4 * 256 + 8 * 256 * 2304 + 2 * 256  # q, k and v, o; q and k norms
    full = 2304 * 8 * 512 + 2 * 2304 * 4 * 512 + 8 * 512 * 2304 + 2 * 512
    # gated MLP 9216, five RMSNorms (one after the per-layer input), per-layer gate and projection 256, layer_scalar
    layer = 3 * 2304 * 9216 + 5 * 2304 + 2 * 2304 * 256 + 1
    per_layer_inputs = 262144 * 30 * 256 + 2304 * 30 * 256 + 256  # embedding, model projection, its norm
    expected = 262144 * 2304 + 25 * sliding + 5 * full + 30 * layer + per_layer_inputs + 2304  # tied head
    assert total_of(data) == expected == 5_077_177_886


def test_moe_with_k_eq_v_by_hand():
    data = config("small-moe")
    # hidden 64, 4 heads; sliding layers 2 KV heads of 16, full ones (1, 4 and 5: the last is made full) 1 KV
    # head of 32 and no v_proj
    sliding = 64 * 4 * 16 + 2 * 64 * 2 * 16 + 4 * 16 * 64 + 2 * 16
    full = 64 * 4 * 32 + 64 * 1 * 32 + 4 * 32 * 64 + 2 * 32
    moe = 8 * 3 * 64 * 24 + 64 * 8 + 8 + 64  # experts gate_up and down, router proj, per_expert_scale, scale
    layer = 3 * 64 * 96 + moe + (4 + 3 + 1) * 64 + 2 * 64 * 8 + 1  # dense MLP, 8 norms, per-layer gate/proj
    per_layer_inputs = 500 * 6 * 8 + 64 * 6 * 8 + 8
    assert total_of(data) == 1000 * 64 + 3 * sliding + 3 * full + 6 * layer + per_layer_inputs + 64
    spec = spec_from_config(data, origin="small-moe")
    count = parameter_count(spec)
    assert count.total - count.active == 6 * (8 - 2) * 3 * 64 * 24  # the routed experts not chosen


def test_towers_by_hand():
    text = defaults("gemma4")
    towers = config("gemma4-towers")
    # vision: hidden 768, 16 layers, 12 heads (12 KV) of 64, MLP 3072, patch 16, 10240 positions per axis
    vision_layer = 4 * 768 * 768 + 2 * 64 + 3 * 768 * 3072 + 4 * 768
    vision = 3 * 16 * 16 * 768 + 2 * 10240 * 768 + 16 * vision_layer + 768 * 2304  # + projection to the text
    # audio: hidden 1024, 12 layers of 8 heads, convolutions 1 -> 128 -> 32, kernel 5, output 1536, clipped linears
    subsample = 9 * 128 + 128 + 9 * 128 * 32 + 32 + (128 // 4) * 32 * 1024
    audio_layer = (2 * (8 * 1024 * 1024 + 2 * 1024) + 5 * 1024 * 1024 + 128  # feed-forwards, attention, scale
                   + 3 * 1024 * 1024 + 1024 * 5 + 2 * 1024 + 3 * 1024 + 10 * 4)  # light conv, norms, clip buffers
    audio = subsample + 12 * audio_layer + 1024 * 1536 + 1536 + 1536 * 2304
    assert total_of(towers) - total_of(text) == vision + audio


def test_unified_embedders_by_hand():
    text = defaults("gemma4_unified")
    data = config("gemma4_unified-embedders")
    patch = (16 * 3) ** 2 * 3  # 48 x 48 pixels, three channels
    vision = 2 * patch + patch * 3840 + 3840 + 2 * 3840 + 1120 * 2 * 3840 + 2 * 3840 + 3840 * 2304
    assert total_of(data) - total_of(text) == vision + 640 * 2304


def test_kv_sharing_is_refused_by_the_kv_reader():
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="num_kv_shared_layers"):
        spec_from_config({**SMALL_TEXT, "num_kv_shared_layers": 2}, origin="shared")
