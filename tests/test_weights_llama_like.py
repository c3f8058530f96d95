"""Parameter counts of the families in kvcalc/sources/weights_llama_like.py, two ways.

1. By hand: small configs (h 64, 4 query / 2 KV heads of 16, MLP 96, 2 layers, vocab 100 unless said) and
   three released configs, the expected total written out as arithmetic from the fields.
2. Against transformers, when installed: each type's class-defaults config, and the same with each switch its
   modelling file reads turned, built on the meta device (tests/test_hf_config_weights.transformers_count).

SOURCES of the released configs below (tests/fixtures/configs/README.md lists them too):
- EXAONE_3_0_7_8B: LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct's ExaoneConfig as printed after loading it, in a public
  notes file (code search stored file id 46001266965); "_name_or_path" is the loader's, not config.json's.
- INTERNLM3_8B: internlm/internlm3-8b-instruct's config.json as a public Swift test transcribes it
  (`realConfigJSON`, code search id 55463440875), its architecture keys only.
- OLMO_1B_HF: allenai/OLMo-1B-hf's config.json, "byte-for-byte the arch block" per the public Rust test that
  embeds it (`REAL_CONFIG`, code search id 60615877156).
"""

from __future__ import annotations

import pytest
from test_hf_config_weights import transformers_count
from weights_checks import class_defaults, meta_count, skip_note, spec_of, total

from kvcalc.capacity.params import parameter_count
from kvcalc.errors import PresetError
from kvcalc.sources import weights_llama_like

EXAONE_3_0_7_8B = {
    "_name_or_path": "LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct", "activation_function": "silu",
    "architectures": ["ExaoneForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "embed_dropout": 0.0,
    "eos_token_id": 361, "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "layer_norm_epsilon": 1e-05, "max_position_embeddings": 4096, "model_type": "exaone", "num_attention_heads": 32,
    "num_key_value_heads": 8, "num_layers": 32, "pad_token_id": 0, "rope_scaling": None, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.45.2", "use_cache": True,
    "vocab_size": 102400,
}
INTERNLM3_8B = {
    "architectures": ["InternLM3ForCausalLM"], "bias": False, "head_dim": 128, "hidden_size": 4096,
    "intermediate_size": 10240, "max_position_embeddings": 32768, "model_type": "internlm3",
    "num_attention_heads": 32, "num_hidden_layers": 48, "num_key_value_heads": 2, "qkv_bias": False,
    "rms_norm_eps": 0.00001, "rope_scaling": {"factor": 6.0, "rope_type": "dynamic"}, "rope_theta": 50000000,
    "tie_word_embeddings": False, "vocab_size": 128512,
}
OLMO_1B_HF = {
    "architectures": ["OlmoForCausalLM"], "attention_bias": False, "clip_qkv": None, "hidden_act": "silu",
    "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 2048, "model_type": "olmo",
    "num_attention_heads": 16, "num_hidden_layers": 16, "num_key_value_heads": 16, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "vocab_size": 50304,
}

H, HEADS, KV, D, INNER, LAYERS, VOCAB = 64, 4, 2, 16, 96, 2, 100
ATTENTION = H * HEADS * D + 2 * H * KV * D + HEADS * D * H  # q, k, v, o without biases
GATED, PLAIN = 3 * H * INNER, 2 * H * INNER


def small(model_type: str, **fields) -> dict:
    return {
        "model_type": model_type, "vocab_size": VOCAB, "hidden_size": H, "intermediate_size": INNER,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": D,
        "max_position_embeddings": 4096, "torch_dtype": "bfloat16", **fields,
    }


def untied(per_layer: int, final_norm: int = H, layers: int = LAYERS) -> int:
    return 2 * VOCAB * H + layers * per_layer + final_norm


# ---------------------------------------------------------------- 1. by hand


def test_released_llama_shaped_configs():
    # EXAONE-3.0-7.8B (num_layers is the layer count): 32 query / 8 KV heads of 128, SwiGLU 14336, untied
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096
    assert total(EXAONE_3_0_7_8B) == 2 * 102400 * 4096 + 32 * per_layer + 4096 == 7_818_448_896  # card: 7.8B
    # InternLM3-8B: 32 query / 2 KV heads of 128, SwiGLU 10240, qkv_bias and bias false, untied
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 2 * 128 + 3 * 4096 * 10240 + 2 * 4096
    assert total(INTERNLM3_8B) == 2 * 128512 * 4096 + 48 * per_layer + 4096
    # qkv_bias (transformers: attention_bias) puts biases on q, k, v and o; bias (mlp_bias) on the MLP
    biased = INTERNLM3_8B | {"qkv_bias": True, "bias": True}
    assert total(biased) - total(INTERNLM3_8B) == 48 * ((32 + 2 + 2) * 128 + 4096 + 2 * 10240 + 4096)
    # OLMo-1B: weightless LayerNorms (none counted, not even the final one), tied head
    per_layer = 4 * 2048 * 2048 + 3 * 2048 * 8192
    assert total(OLMO_1B_HF) == 50304 * 2048 + 16 * per_layer == 1_176_764_416  # OLMo-1B's published count


def test_plain_llama_rows():
    for model_type in ("ministral", "ministral3", "iquestcoder", "emu3_text_model", "vaultgemma"):
        tied = model_type == "vaultgemma"  # VaultGemmaConfig ties by default
        expected = untied(ATTENTION + GATED + 2 * H) - (VOCAB * H if tied else 0)
        assert total(small(model_type)) == expected, model_type
    # Hunyuan-V1-Dense: per-head query_layernorm and key_layernorm
    assert total(small("hunyuan_v1_dense")) == untied(ATTENTION + 2 * D + GATED + 2 * H)


def test_apertus_xielu_and_plain_mlp():
    # q/k norms of head_dim, up/down only, two norms, and xIELU's alpha_p, alpha_n, beta, eps per layer
    per_layer = ATTENTION + 2 * D + PLAIN + 2 * H
    assert total(small("apertus")) == untied(per_layer + 4)
    assert total(small("apertus", hidden_act="relu2")) == untied(per_layer)
    assert total(small("apertus1p5_text")) == untied(per_layer + 4)
    # a pruned head: the embeddings keep VOCAB rows, lm_head 50 (and 130 rows: the head the larger)
    assert total(small("apertus1p5_text", output_vocab_size=50)) == VOCAB * H + 50 * H + LAYERS * (per_layer + 4) + H
    assert total(small("apertus1p5_text", output_vocab_size=130)) == VOCAB * H + 130 * H + LAYERS * (per_layer + 4) + H
    assert "tie cannot hold" in skip_note(small("apertus1p5_text", output_vocab_size=50, tie_word_embeddings=True))


def test_bitnet_sub_norms():
    # attn_sub_norm (hidden) and ffn_sub_norm (intermediate) besides the two norms
    assert total(small("bitnet")) == untied(ATTENTION + GATED + 3 * H + INNER)


def test_diffllama_lambdas():
    assert total(small("diffllama")) == untied(ATTENTION + GATED + 2 * H + 4 * D)


def test_doge_residuals_and_dt_proj():
    # A (KV) and dt_proj (KV x D -> KV), q/k norms, two norms and two residual scales of H
    per_layer = ATTENTION + 2 * D + KV + KV * D * KV + GATED + 4 * H
    assert total(small("doge")) == untied(per_layer)
    biased = small("doge", attention_bias=True, mlp_bias=True)
    assert total(biased) - untied(per_layer) == LAYERS * ((HEADS + 2 * KV) * D + H + KV + 2 * INNER + H)
    # CDMoE: the same MLP, router_gate H x 2 floor(sqrt(10)) = H x 6, down_embed and up_embed 10 x H each
    assert total(small("doge", is_moe=True, num_experts=10)) == untied(per_layer + H * 2 * 3 + 2 * 10 * H)


def test_hyperclovax_post_norms():
    assert total(small("hyperclovax")) == untied(ATTENTION + GATED + 4 * H)  # use_post_norm defaults to true
    assert total(small("hyperclovax", use_post_norm=False)) == untied(ATTENTION + GATED + 2 * H)


def test_layernorm_families():
    # Nemotron: LayerNorm1P (weight and bias) twice per layer and at the end, relu2 up/down
    assert total(small("nemotron")) == untied(ATTENTION + PLAIN + 2 * 2 * H, final_norm=2 * H)
    # Jais-2: biases everywhere by default (q/k/v/o and up/down), LayerNorms
    biases = (HEADS + 2 * KV) * D + H + INNER + H
    assert total(small("jais2")) == untied(ATTENTION + PLAIN + biases + 2 * 2 * H, final_norm=2 * H)


def test_persimmon_and_fuyu():
    # query_key_value 3 x H (MHA) with a bias, dense with a bias, q/k LayerNorms of D (weight and bias),
    # plain MLP with biases, two LayerNorms, untied head
    mha = small("persimmon", num_key_value_heads=HEADS)
    per_layer = 3 * H * H + 3 * H + H * H + H + 4 * D + PLAIN + INNER + H + 2 * 2 * H
    assert total(mha) == untied(per_layer, final_norm=2 * H)
    assert total(mha | {"qk_layernorm": False}) == untied(per_layer - 4 * D, final_norm=2 * H)
    # Fuyu: the same language model in text_config and vision_embed_tokens (30 x 30 x 3 -> H, with a bias)
    fuyu = {"model_type": "fuyu", "patch_size": 30, "num_channels": 3, "text_config": mha}
    assert total(fuyu) == untied(per_layer, final_norm=2 * H) + 2700 * H + H


def test_granite_swa_sinks_and_granitemoe_shared():
    sliding = {"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 8}
    # Granite-SWA: tied by default, one sink per query head in every layer
    assert total(small("granite_swa", **sliding)) == VOCAB * H + LAYERS * (ATTENTION + HEADS + GATED + 2 * H) + H
    # GraniteMoE-Shared: 4 experts of INNER (top 2), a router, a gated shared MLP of 32 without a gate
    moe = {"num_local_experts": 4, "num_experts_per_tok": 2}
    experts = 4 * GATED + H * 4
    shared = small("granitemoeshared", shared_intermediate_size=32, **moe)
    assert total(shared) == untied(ATTENTION + experts + 3 * H * 32 + 2 * H)
    assert total(small("granitemoeshared", **moe)) == untied(ATTENTION + experts + 2 * H)
    assert total(small("granitemoe_swa", **moe, **sliding)) == untied(ATTENTION + HEADS + experts + 2 * H)


def test_flex_olmo_norms_over_all_heads():
    moe = {"num_experts": 4, "num_experts_per_tok": 2}
    per_layer = ATTENTION + (HEADS + KV) * D + 4 * GATED + H * 4 + 2 * H
    assert total(small("flex_olmo", **moe)) == untied(per_layer)


def test_mellum_dense_and_sparse_layers():
    moe = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
    attention = ATTENTION + 2 * D + 2 * H
    experts = 4 * 3 * H * 32 + H * 4
    assert total(small("mellum", **moe)) == untied(attention + experts)  # every layer sparse by default
    mixed = small("mellum", mlp_layer_types=["dense", "sparse"], **moe)
    assert total(mixed) == 2 * VOCAB * H + 2 * attention + GATED + experts + H
    assert parameter_count(spec_of(mixed)).active == total(mixed) - (4 - 2) * 3 * H * 32


def test_kolibri1_and_solar_open_shared_experts_with_router_bias():
    # Kolibri-1: 4 norms, q/k norms, 4 experts of 32 (top 2), router + e_score_correction_bias, shared of 48
    kolibri = small("kolibri1", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                    shared_expert_intermediate_size=48)
    per_layer = ATTENTION + 2 * D + 4 * 3 * H * 32 + H * 4 + 4 + 3 * H * 48 + 4 * H
    assert total(kolibri) == untied(per_layer)
    # Solar-Open: q/k/v biases (attention_bias), o without; shared MLP of 32 x n_shared_experts
    solar = small("solar_open", n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                  n_shared_experts=2, attention_bias=True)
    per_layer = ATTENTION + (HEADS + 2 * KV) * D + 4 * 3 * H * 32 + H * 4 + 4 + 3 * H * 64 + 2 * H
    assert total(solar) == untied(per_layer)


def test_lara_mini_deltanet_and_shared_expert():
    # one Gated DeltaNet layer (2 key heads of 8, 4 value heads of 8, kernel 4) and one full-attention layer;
    # each with 4 experts of 32 (top 2), a router, a shared expert of 48 without a gate; tied by default
    data = small("lara_mini", layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                 linear_key_head_dim=8, linear_num_value_heads=4, linear_value_head_dim=8, linear_conv_kernel_dim=4,
                 num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48)
    conv = 2 * 2 * 8 + 4 * 8
    deltanet = H * conv + H * 32 + 2 * H * 4 + conv * 4 + 2 * 4 + 8 + 32 * H
    moe = 4 * 3 * H * 32 + H * 4 + 3 * H * 48
    assert total(data) == VOCAB * H + deltanet + ATTENTION + 2 * D + 2 * (moe + 2 * H) + H


def test_youtu_mla_with_a_dense_mlp():
    mla = {"q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8}
    data = small("youtu", **mla)
    q = H * 24 + 24 + 24 * HEADS * 12  # q_a, its norm, q_b
    kv = H * (16 + 4) + 16 + 16 * HEADS * (8 + 8)  # kv_a_proj_with_mqa, its norm, kv_b
    o = HEADS * 8 * H
    assert total(data) == VOCAB * H + LAYERS * (q + kv + o + GATED + 2 * H) + H  # tied by default
    # attention_bias: q_a_proj (24), kv_a_proj_with_mqa (16 + 4) and o_proj (H) biases
    assert total(data | {"attention_bias": True}) == total(data) + LAYERS * (24 + 16 + 4 + H)


def test_hrm_text_stacks_once_not_per_cache_slot():
    # 2 layers per stack, H_cycles 2, L_cycles 1: 2 x 2 x 2 = 8 cache slots, 2 x 2 = 4 real layers
    data = small("hrm_text", num_hidden_layers=8, num_layers_per_stack=2, H_cycles=2, L_cycles=1,
                 num_key_value_heads=HEADS)
    layer = 5 * H * HEADS * D + GATED  # q, k, v, gate_proj and o_proj (all heads wide), the MLP; weightless norms
    assert total(data) == 2 * VOCAB * H + 4 * layer + H  # and z_L_init
    biased = data | {"attention_bias": True, "mlp_bias": True}
    assert total(biased) == total(data) + 4 * (4 * HEADS * D + H + 2 * INNER + H)
    with pytest.raises(PresetError, match="not num_layers_per_stack"):  # a pair that disagrees: the KV reader refuses
        total(data | {"num_hidden_layers": 2})
    legacy = {k: v for k, v in data.items() if k != "num_layers_per_stack"} | {"num_hidden_layers": 2}
    assert total(legacy) == total(data)  # an older config: num_hidden_layers is the per-stack count


def test_types_not_counted_say_why():
    # Emu3's VQ-VAE is counted (tests/test_weights_last.py); a vq_config it cannot read is refused by name
    emu3 = {"model_type": "emu3", "text_config": small("emu3_text_model"),
            "vq_config": {"embed_dim": 4, "channel_multiplier": "wide"}}
    assert "vq_config.channel_multiplier" in skip_note(emu3)


# ---------------------------------------------------------------- 2. transformers, if installed

# model_type -> (fields a class-defaults config needs before transformers can build it, switches to turn)
CASES = {
    "apertus": ({}, [{"attention_bias": True, "hidden_act": "gelu"}]),
    "apertus1p5_text": ({}, [{"tie_word_embeddings": True}, {"output_vocab_size": 130000}]),
    "bitnet": ({}, [{"attention_bias": True}]),
    "diffllama": ({}, [{"attention_bias": True}]),
    "doge": ({}, [{"attention_bias": True, "mlp_bias": True}, {"is_moe": True, "num_experts": 1000}]),
    "hrm_text": ({}, [{"attention_bias": True, "mlp_bias": True}]),
    "exaone": ({}, [{"attention_bias": True, "mlp_bias": True}]),
    "flex_olmo": ({}, [{"attention_bias": True}]),
    "fuyu": ({}, []),
    "granite_swa": ({}, [{"attention_bias": True, "mlp_bias": True}]),
    "granitemoe_swa": ({}, [{"attention_bias": True, "shared_intermediate_size": 1024}]),
    "granitemoeshared": ({}, [{"shared_intermediate_size": 1024}]),
    # HunYuanDenseV1Config, MinistralConfig and NemotronConfig leave a size None that their models need
    "hunyuan_v1_dense": ({"head_dim": 128}, [{"attention_bias": True}]),
    "hyperclovax": ({}, [{"use_post_norm": False, "attention_bias": True, "mlp_bias": True}]),
    "internlm3": ({}, [{"attention_bias": True, "mlp_bias": True}]),
    "iquestcoder": ({}, [{"attention_bias": True, "mlp_bias": True}]),
    "jais2": ({}, [{"attention_bias": False, "mlp_bias": False}]),
    "kolibri1": ({}, []),
    "lara_mini": ({}, [{"attention_bias": True}]),
    "mellum": ({}, [{"mlp_layer_types": ["dense"] * 2 + ["sparse"] * 26}]),
    "ministral": ({"head_dim": 128}, []),
    "ministral3": ({}, []),
    "nemotron": ({"num_key_value_heads": 8}, [{"attention_bias": True, "mlp_bias": True}]),
    "olmo": ({}, [{"attention_bias": True}]),
    "persimmon": ({}, [{"qk_layernorm": False}]),
    "solar_open": ({}, [{"attention_bias": True, "n_shared_experts": 2}]),
    "vaultgemma": ({}, [{"attention_bias": True, "tie_word_embeddings": False}]),
    "youtu": ({}, [{"q_lora_rank": None}, {"attention_bias": True}, {"attention_bias": True, "q_lora_rank": None}]),
}


def cases():
    out = []
    for model_type, (needed, switches) in CASES.items():
        out.append(pytest.param(model_type, needed, id=model_type))
        for switch in switches:
            out.append(pytest.param(model_type, needed | switch, id=f"{model_type}+" + "+".join(switch)))
    return out


@pytest.mark.parametrize(("model_type", "change"), cases())
def test_count_matches_the_model_transformers_builds(model_type, change):
    data = class_defaults(model_type) | change
    assert total(data) == transformers_count(data)
    if set(change) - set(CASES[model_type][0]):  # a switch: it changes the count, so the check tests it
        assert total(data) != total(class_defaults(model_type) | CASES[model_type][0])


@pytest.mark.parametrize("change", [{}, {"attention_bias": True, "mlp_bias": True}])
def test_emu3_text_model_as_transformers_builds_it(change):
    """Emu3ForCausalLM is built from Emu3TextConfig, which the causal-LM auto class does not map."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.emu3 import Emu3ForCausalLM, Emu3TextConfig

    cfg = Emu3TextConfig(**change)
    built = meta_count(lambda: Emu3ForCausalLM(cfg))
    assert total(cfg.to_dict()) == built
    if change:  # the switches reach the count (Emu3TextConfig keeps them as class attributes)
        assert built != total(Emu3TextConfig().to_dict())
    assert transformers.__version__


def test_defaults_are_the_class_defaults():
    transformers = pytest.importorskip("transformers")
    for model_type, defaults in weights_llama_like.DEFAULTS.items():
        config = transformers.AutoConfig.for_model(model_type)  # Emu3TextConfig's biases are class attributes
        for key, value in defaults.items():
            assert getattr(config, key) == value, (model_type, key)
