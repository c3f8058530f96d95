"""Parameter counts of the MoE families in kvcalc.sources.weights_moe, two ways.

1. By hand, from small configs written out below: each expected total is arithmetic from the config's own
   fields (h the hidden size; per layer attention h*H*d + 2*h*KV*d + H*d*h, a gated MLP 3*h*I, an RMSNorm h),
   one config for each builder shape; the same small config is then built by transformers when installed.
2. Against transformers 5.24 for each type's class defaults (AutoConfig.for_model(type)), built on the meta
   device, and a variant that switches on the parts the defaults leave off.
"""

from __future__ import annotations

import pytest
from test_hf_config_weights import transformers_count
from weights_checks import checked, skip_note, spec_of, total

from kvcalc.capacity.params import parameter_count

# ---------------------------------------------------------------- 1. by hand, small configs

SMALL = {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512, "torch_dtype": "bfloat16"}


def test_glm4_moe_lite_mla_with_shared_expert_by_hand():
    data = SMALL | {
        "model_type": "glm4_moe_lite", "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8,
        "n_shared_experts": 2, "num_experts_per_tok": 2, "q_lora_rank": 24, "kv_lora_rank": 16,
        "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "num_key_value_heads": 4,
        "mlp_layer_types": ["dense", "sparse", "dense", "sparse"],
    }
    del data["head_dim"]  # Glm4MoeLiteConfig reads head_dim as qk_rope_head_dim (its attribute_map)
    h = 64
    mla = (h * 24 + 24 + 24 * 4 * (8 + 4)  # q_a_proj, q_a_layernorm, q_b_proj
           + h * (16 + 4) + 16 + 16 * 4 * (8 + 8)  # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj
           + 4 * 8 * h)  # o_proj
    dense = 3 * h * 96
    # 8 experts of 32, a float32 router with its e_score_correction_bias, one shared MLP 2 x 32 wide
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 2 * 32
    expected = 2 * 1000 * h + 4 * (mla + 2 * h) + 2 * dense + 2 * moe + h
    checked(data, expected)


def test_exaone_moe_qk_norms_and_first_dense_layers_by_hand():
    data = SMALL | {"model_type": "exaone_moe", "intermediate_size": 96, "moe_intermediate_size": 32,
                    "num_experts": 8, "num_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
                    "sliding_window": 8, "layer_types": ["sliding_attention"] * 3 + ["full_attention"]}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 2 * 16  # q, k, v, o; q_norm and k_norm of head_dim
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 32
    expected = 2 * 1000 * h + 4 * (attention + 2 * h) + 3 * h * 96 + 3 * moe + h
    count = parameter_count(spec_of(data))
    assert count.active == expected - 3 * (8 - 2) * 3 * h * 32 and count.moe_layers == 3
    checked(data, expected)


def test_gpt_oss_sinks_and_expert_biases_by_hand():
    data = SMALL | {"model_type": "gpt_oss", "intermediate_size": 48, "num_local_experts": 4, "num_experts_per_tok": 2,
                    "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"] * 2}
    h = 64
    attention = (h * 4 * 16 + 4 * 16 + 2 * (h * 2 * 16 + 2 * 16) + 4 * 16 * h + h  # q, k, v, o with biases
                 + 4)  # one sink per head
    experts = 4 * (h * 2 * 48 + 2 * 48 + 48 * h + h)  # gate_up and down with their biases
    router = 4 * h + 4  # with a bias
    expected = 2 * 1000 * h + 4 * (attention + experts + router + 2 * h) + h
    checked(data, expected)


def test_ernie4_5_moe_layer_interval_and_biases_by_hand():
    data = SMALL | {"model_type": "ernie4_5_moe", "intermediate_size": 96, "moe_intermediate_size": 32,
                    "moe_num_experts": 8, "moe_k": 2, "moe_num_shared_experts": 2, "moe_layer_start_index": 1,
                    "moe_layer_end_index": -1, "moe_layer_interval": 2, "use_bias": True,
                    "tie_word_embeddings": True}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + (4 * 16 + 2 * 2 * 16 + h)  # biases on q, k, v, o
    dense = 3 * h * 96 + 2 * 96 + h
    # layers 1 and 3 ((i + 1) % 2 == 0): 8 experts without biases, the router and its 1 x 8 correction bias,
    # two shared experts as one MLP of 64 with biases
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 64 + 2 * 64 + h
    expected = 1000 * h + 1000 + 4 * (attention + 2 * h) + 2 * dense + 2 * moe + h  # tied; the head's bias
    checked(data, expected)


def test_phimoe_layer_norms_and_head_bias_by_hand():
    data = SMALL | {"model_type": "phimoe", "intermediate_size": 48, "num_local_experts": 4, "num_experts_per_tok": 2,
                    "attention_bias": True, "lm_head_bias": True}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 4 * 16 + 2 * 2 * 16 + h
    moe = 4 * 3 * h * 48 + 4 * h  # a router without a bias
    expected = 2 * 1000 * h + 1000 + 4 * (attention + moe + 2 * 2 * h) + 2 * h  # LayerNorms: weight and bias
    checked(data, expected)


def test_aria_text_shared_experts_by_hand():
    data = SMALL | {"model_type": "aria_text", "intermediate_size": 48, "moe_num_experts": 4, "moe_topk": 2,
                    "moe_num_shared_experts": 2, "mlp_bias": True}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h
    moe = 4 * 3 * h * 48 + 4 * h + 3 * h * 96 + 2 * 96 + h  # shared: one MLP of 2 x 48 with biases
    expected = 2 * 1000 * h + 4 * (attention + moe + 2 * h) + h
    checked(data, expected)


def test_flint_sinks_and_mlp_only_layers_by_hand():
    data = SMALL | {"model_type": "flint", "intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 8,
                    "num_experts_per_tok": 2, "shared_expert_intermediate_size": 48, "mlp_only_layers": [0],
                    "decoder_sparse_step": 1, "sliding_window": 8}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 2 * 16 + 4  # q/k norms; four sinks
    moe = 8 * 3 * h * 32 + 8 * h + 3 * h * 48  # a router without a bias, one ungated shared expert
    expected = 2 * 1000 * h + 4 * (attention + 2 * h) + 3 * h * 96 + 3 * moe + h
    checked(data, expected)


def test_laguna_output_gate_by_hand():
    data = SMALL | {"model_type": "laguna", "intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 8,
                    "num_experts_per_tok": 2, "shared_expert_intermediate_size": 48, "gating": True,
                    "sliding_window": 8}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 2 * 16 + h * 4  # g_proj: one gate per head
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 48
    expected = 2 * 1000 * h + 4 * (attention + 2 * h) + 3 * h * 96 + 3 * moe + h  # layer 0 dense
    checked(data, expected)
    heads = skip_note(data | {"num_attention_heads_per_layer": [4, 2, 4, 4]})
    assert "num_attention_heads_per_layer" in heads


def test_beam_and_afmoe_gated_attention_by_hand():
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 2 * 16 + h * 4 * 16  # and gate_proj h x H x d
    beam = SMALL | {"model_type": "beam", "intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 8,
                    "num_experts_per_tok": 2, "sliding_window": 8, "n_group": 1, "topk_group": 1}
    moe = 8 * 3 * h * 32 + 8 * h + 8  # no shared expert
    # three dense layers by default, four RMSNorms per layer, a gate bias per head
    expected = 2 * 1000 * h + 4 * (attention + 4 + 4 * h) + 3 * 3 * h * 96 + moe + h
    checked(beam, expected)
    afmoe = SMALL | {"model_type": "afmoe", "intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 8,
                     "num_experts_per_tok": 2, "num_shared_experts": 2, "num_dense_layers": 2, "sliding_window": 8}
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 64  # expert_bias; two shared experts as one MLP of 64
    checked(afmoe, 2 * 1000 * h + 4 * (attention + 4 * h) + 2 * 3 * h * 96 + 2 * moe + h)


def test_cohere2_moe_parallel_block_by_hand():
    data = SMALL | {"model_type": "cohere2_moe", "intermediate_size": 48, "num_experts": 4, "num_experts_per_tok": 2,
                    "num_shared_experts": 1, "prefix_dense_intermediate_size": 96, "sliding_window": 8,
                    "mlp_layer_types": ["dense", "sparse", "sparse", "sparse"]}
    h = 64
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h
    moe = 4 * 3 * h * 48 + 4 * h + 3 * h * 48
    expected = 1000 * h + 4 * (attention + h) + 3 * h * 96 + 3 * moe + h  # tied; one norm per layer
    checked(data, expected)


def test_mimo_v2_flash_sliding_layers_by_hand():
    data = SMALL | {"model_type": "mimo_v2_flash", "intermediate_size": 96, "moe_intermediate_size": 32,
                    "n_routed_experts": 8, "num_experts_per_tok": 2, "head_dim": 24, "v_head_dim": 16,
                    "sliding_window": 8, "n_group": 1, "topk_group": 1,
                    "layer_types": ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]}
    h = 64
    full = h * 4 * 24 + h * 2 * 24 + h * 2 * 16 + 4 * 16 * h
    sliding = h * 4 * 24 + h * 4 * 24 + h * 4 * 16 + 4 * 16 * h + 4  # twice the KV heads; a sink per head
    moe = 8 * 3 * h * 32 + 8 * h + 8
    expected = 2 * 1000 * h + 2 * full + 2 * sliding + 4 * 2 * h + 3 * h * 96 + 3 * moe + h
    checked(data, expected)


def test_axk1_post_mlp_norm_and_legacy_layer_rule_by_hand():
    data = SMALL | {
        "model_type": "axk1", "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "q_lora_rank": 24, "kv_lora_rank": 16,
        "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "num_key_value_heads": 4,
        "first_k_dense_replace": 1, "moe_layer_freq": 2, "n_group": 1, "topk_group": 1,
    }
    del data["head_dim"]
    h = 64
    mla = h * 24 + 24 + 24 * 4 * 12 + h * (16 + 4) + 16 + 16 * 4 * 16 + 4 * 8 * h
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 32 + h  # and post_mlp_layernorm
    # i >= 1 and i % 2 == 0: layer 2 alone is MoE
    expected = 2 * 1000 * h + 4 * (mla + 2 * h) + 3 * 3 * h * 96 + moe + h
    checked(data, expected)


# ---------------------------------------------------------------- 2. transformers' class defaults

# type -> a change switching on parts its defaults leave off (None: the defaults alone)
DEFAULT_CASES = {
    "deepseek_v3": None, "deepseek_v32": None, "qwen3_moe": {"num_local_experts": 64, "decoder_sparse_step": 2},
    "glm4_moe_lite": None, "glm_moe_dsa": None, "sarvam_mla": None,
    "sarvam_moe": {"attention_bias": True, "use_qk_norm": False}, "axk1": None, "exaone_moe": None,
    "hy_v3": {"attention_bias": True, "mlp_bias": True}, "minicpm3": {"mlp_bias": True},
    "gpt_oss": {"attention_bias": False}, "mimo_v2_flash": {"attention_bias": True},
    "ernie4_5_moe": {"use_bias": True, "moe_layer_interval": 2}, "phimoe": {"attention_bias": True},
    "aria_text": {"mlp_bias": True}, "flint": {"attention_bias": True}, "laguna": {"gating": "per-element"},
    "beam": {"attention_bias": True}, "afmoe": {"num_dense_layers": 3}, "cohere2_moe": {"attention_bias": True},
}
# class defaults that leave a size unset: counted once it is given
GIVEN = {
    "deepseek_v2": {"num_experts_per_tok": 6},  # DeepseekV2Config.num_experts_per_tok is None
    # Dots1Config leaves the experts None (transformers cannot build that)
    "dots1": {"n_routed_experts": 32, "n_shared_experts": 2, "num_experts_per_tok": 4, "first_k_dense_replace": 1},
}


def default_cases():
    cases = []
    for model_type, change in DEFAULT_CASES.items():
        cases.append(pytest.param(model_type, None, id=model_type))
        if change:
            cases.append(pytest.param(model_type, change, id=f"{model_type}+" + "+".join(change)))
    cases += [pytest.param(t, change, id=f"{t}+given") for t, change in GIVEN.items()]
    return cases


@pytest.mark.parametrize(("model_type", "change"), default_cases())
def test_class_defaults_count_as_transformers_builds_them(model_type, change):
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model(model_type).to_dict() | (change or {})
    assert total(data) == transformers_count(data)


def test_missing_sizes_and_unknown_parts_are_said():
    transformers = pytest.importorskip("transformers")
    v2 = transformers.AutoConfig.for_model("deepseek_v2").to_dict()
    assert "no num_experts_per_tok" in skip_note(v2)
    for model_type, words in (("hunyuan_v1_moe", "head_dim"),):  # axk2: tests/test_weights_last.py
        assert words in skip_note(transformers.AutoConfig.for_model(model_type).to_dict()), model_type


def test_deepseek_v32_mlp_layer_types_off_the_first_k_rule_is_refused():
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model("deepseek_v32").to_dict()
    data["mlp_layer_types"] = ["sparse"] + data["mlp_layer_types"][1:]
    assert "mlp_layer_types" in skip_note(data)


def test_attribute_map_aliases_are_read():
    # Sarvam's original config names (configuration_sarvam_moe.py attribute_map), Qwen3-MoE's num_local_experts
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model("sarvam_moe").to_dict()
    for key in ("n_routed_experts", "n_shared_experts", "attention_bias"):
        del data[key]
    data |= {"num_experts": 64, "num_shared_experts": 2, "use_qkv_bias": True}
    assert total(data) == transformers_count(data)
    assert total(data) != total(transformers.AutoConfig.for_model("sarvam_moe").to_dict())
