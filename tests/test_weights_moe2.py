"""Parameter counts of the second round of weights_moe and weights_llama_like families (DBRX, Hunyuan-MoE, JetMoE,
LFM3, Laguna's per-layer head counts), two ways.

1. By hand, from small configs written out below: each expected total is arithmetic from the config's own fields
   (h the hidden size; an RMSNorm h, a gated MLP 3 h I), and the same config built by transformers when installed.
2. Against transformers 5.24 for each type's class defaults (AutoConfig.for_model(type)), built on the meta device,
   and variants that switch on the parts the defaults leave off.

DBRX_INSTRUCT below is databricks/dbrx-instruct's config.json as recalled (not fetched: no stored copy was found);
what transformers builds from it, 131,596,523,520, is DBRX's published 132B total (tests/fixtures/configs/README.md).
"""

from __future__ import annotations

import copy

import pytest
from test_hf_config_weights import transformers_count
from weights_checks import checked, skip_note, spec_of, total

from kvcalc.capacity.params import parameter_count

h, V = 64, 100  # hidden size and vocabulary of the small configs

DBRX_INSTRUCT = {
    "architectures": ["DbrxForCausalLM"], "attn_config": {"clip_qkv": 8, "kv_n_heads": 8, "rope_theta": 500000},
    "d_model": 6144, "emb_pdrop": 0.0, "initializer_range": 0.02, "max_seq_len": 32768, "model_type": "dbrx",
    "ffn_config": {"ffn_hidden_size": 10752, "moe_jitter_eps": 0.01, "moe_loss_weight": 0.05, "moe_num_experts": 16,
                   "moe_top_k": 4},
    "n_heads": 48, "n_layers": 40, "output_router_logits": False, "resid_pdrop": 0.0, "router_aux_loss_coef": 0.05,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 100352,
}


# ---------------------------------------------------------------- 1. by hand, small configs


def test_dbrx_fused_wqkv_and_experts_by_hand():
    data = {"model_type": "dbrx", "d_model": h, "n_heads": 4, "n_layers": 2, "vocab_size": V, "max_seq_len": 128,
            "attn_config": {"kv_n_heads": 4, "rope_theta": 10000.0},
            "ffn_config": {"ffn_hidden_size": 32, "moe_num_experts": 4, "moe_top_k": 2}}
    attention = h * (h + 2 * 4 * 16) + h * h  # Wqkv d_model x (d_model + 2 kv x head_dim 64/4), out_proj
    ffn = 4 * 3 * h * 32 + h * 4  # w1, v1, w2 per expert; the router
    checked(data, 2 * V * h + 2 * (attention + 2 * h + ffn) + h)  # LayerNorms without a bias: h each


def test_dbrx_released_config_counts_with_its_kv_n_heads():
    # the KV reader takes attn_config.kv_n_heads 8 (DbrxAttention, modeling_dbrx.py 181), so Wqkv is
    # d_model x (d_model + 2 x 8 x 128) wide and the released config is counted, not refused
    d, layers, kv, head = 6144, 40, 8, 6144 // 48
    attention = d * (d + 2 * kv * head) + d * d  # Wqkv, out_proj
    ffn = 16 * 3 * d * 10752 + d * 16  # 16 experts' w1, v1, w2; the router
    expected = 2 * 100352 * d + layers * (attention + 2 * d + ffn) + d  # untied; LayerNorms without a bias
    assert expected == 131_596_523_520  # DBRX's published 132B, and what transformers builds (below)
    checked(DBRX_INSTRUCT, expected)
    mha = copy.deepcopy(DBRX_INSTRUCT)
    mha["attn_config"]["kv_n_heads"] = 48
    expected = 2 * 100352 * d + layers * (d * 3 * d + d * d + 2 * d + ffn) + d
    checked(mha, expected)


def test_dbrx_released_config_as_transformers_builds_it():
    pytest.importorskip("transformers")
    assert transformers_count(DBRX_INSTRUCT) == 131_596_523_520  # DBRX's published 132B


def test_hunyuan_moe_shared_mlp_and_experts_by_hand():
    data = {"model_type": "hunyuan_v1_moe", "vocab_size": V, "hidden_size": h, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "num_experts": 4, "moe_topk": [2, 2], "max_position_embeddings": 512}
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 2 * 16  # q, k, v, o; query/key_layernorm
    moe = h * 4 + 4 * 3 * h * 96 + 3 * h * 96  # float32 router, 4 experts, the shared MLP, all of intermediate_size
    checked(data, 2 * V * h + 2 * (attention + moe + 2 * h) + h)
    assert "head_dim" in skip_note({k: v for k, v in data.items() if k != "head_dim"})
    assert "differs between layers" in skip_note(data | {"moe_topk": [2, 1]})
    assert "num_shared_expert" in skip_note(data | {"num_shared_expert": [2, 2]})
    assert "num_experts" in skip_note(data | {"num_experts": [4, 4]})


def test_jetmoe_attention_experts_by_hand():
    data = {"model_type": "jetmoe", "vocab_size": V, "hidden_size": h, "num_hidden_layers": 2,
            "num_key_value_heads": 2, "kv_channels": 16, "num_experts_per_tok": 2, "num_attention_heads": 4,
            "num_local_experts": 4, "intermediate_size": 32, "max_position_embeddings": 512}
    p = 2 * 16  # num_key_value_heads x kv_channels
    moa = h * 2 * p + 4 * (h * p + p * h) + h + h * 4  # kv_proj, 4 experts' in and out, bias, router
    moe = 4 * (h * 2 * 32 + 32 * h) + h + h * 4  # 4 experts' input_linear (2 I) and output_linear, bias, router
    checked(data, V * h + 2 * (moa + moe + 2 * h) + h)  # tied
    count = parameter_count(spec_of(data))
    # the MLP experts and the attention experts a token does not run (2 of 4 each, in 2 layers)
    assert count.active == count.total - 2 * (4 - 2) * 3 * h * 32 - 2 * (4 - 2) * (h * p + p * h)


def test_lfm3_short_conv_sandwich_norms_and_gate_by_hand():
    data = {"model_type": "lfm3", "vocab_size": V, "hidden_size": h, "intermediate_size": 96, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "conv_L_cache": 3, "sliding_window": 8,
            "layer_types": ["conv", "full_attention", "sliding_attention", "conv"], "max_position_embeddings": 512,
            "pad_token_id": 0}
    conv = h * 3 * h + h * 3 + h * h  # in_proj, depthwise conv (kernel conv_L_cache), out_proj
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 2 * 16 + h * 4  # q, k, v, o, q/k norms, g_proj
    every = 3 * h * 96 + 4 * h  # the MLP; operator, ffn and the two sandwich norms
    checked(data, V * h + 2 * conv + 2 * attention + 4 * every + h)  # tied; embedding_norm
    plain = data | {"use_sandwich_norm": False, "use_attention_gate": False, "conv_bias": True}
    checked(plain, V * h + 2 * (conv + 5 * h) + 2 * (attention - h * 4) + 4 * (every - 2 * h) + h)


def test_laguna_per_layer_heads_by_hand():
    data = {"model_type": "laguna", "vocab_size": V, "hidden_size": h, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "num_attention_heads_per_layer": [4, 8], "layer_types": ["full_attention"] * 2,
            "mlp_layer_types": ["dense", "dense"], "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "max_position_embeddings": 512}

    def layer(heads: int) -> int:  # q, k, v, o, q/k norms, g_proj (per head), the dense MLP, two norms
        return h * heads * 16 + 2 * h * 2 * 16 + heads * 16 * h + 2 * 16 + h * heads + 3 * h * 96 + 2 * h

    checked(data, 2 * V * h + layer(4) + layer(8) + h)
    assert "fewer heads" in skip_note(data | {"num_attention_heads_per_layer": [4, 2]})


# ---------------------------------------------------------------- 2. transformers' class defaults

# type -> changes: None the class defaults alone; each dict a variant built too
DEFAULT_CASES = {
    # JetMoeConfig derives num_attention_heads = num_key_value_heads x num_experts_per_tok (configuration 72)
    "jetmoe": [None, {"num_local_experts": 16, "num_experts_per_tok": 4, "num_attention_heads": 64}],
    "lfm3": [None, {"use_sandwich_norm": False, "attention_bias": True, "conv_bias": True}],
    # HunYuanMoEV1Config leaves head_dim None, and transformers cannot build that
    "hunyuan_v1_moe": [{"head_dim": 128, "num_experts": 8, "moe_topk": 2},
                       {"head_dim": 64, "num_experts": 8, "moe_topk": 2, "attention_bias": True}],
    "laguna": [{"num_attention_heads_per_layer": [48, 64] * 20, "attention_bias": True},
               {"num_attention_heads_per_layer": [64, 48] * 20, "gating": "per-element"}],
}


def test_dbrx_class_defaults_with_a_rope_theta():
    # DbrxAttentionConfig has no rope_theta, which DbrxAttention reads (modeling_dbrx.py 184): the class defaults
    # build once attn_config states one; their to_dict carries num_key_value_heads 1, which the KV reader reads
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model("dbrx").to_dict()
    data["attn_config"] = data["attn_config"] | {"rope_theta": 10000.0}
    assert total(data) == transformers_count(data)


def default_cases():
    return [pytest.param(t, change, id=t + ("" if change is None else "+" + "+".join(change)))
            for t, changes in DEFAULT_CASES.items() for change in changes]


@pytest.mark.parametrize(("model_type", "change"), default_cases())
def test_class_defaults_count_as_transformers_builds_them(model_type, change):
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model(model_type).to_dict() | (change or {})
    assert total(data) == transformers_count(data)


def test_class_defaults_left_uncounted_say_why():
    transformers = pytest.importorskip("transformers")
    for model_type, words in (("hunyuan_v1_moe", "head_dim"),):  # axk2 is counted: tests/test_weights_last.py
        assert words in skip_note(transformers.AutoConfig.for_model(model_type).to_dict()), model_type
