"""Parameter counts of the hybrid families (kvcalc/sources/weights_hybrids.py) and Gemma-3's pooling head.

1. Each counted type's class-defaults config (and variants that switch its options) against the model
   transformers builds on the meta device (tests/test_hf_config_weights.py transformers_count), skipped
   without transformers and torch.
2. By hand: one config per builder, its total written out as arithmetic from the config's fields.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kvcalc.capacity.params import parameter_count
from kvcalc.sources.config_json import load_config_path, spec_from_config
from kvcalc.sources.config_weights import SKIP

CONFIGS = Path(__file__).parent / "fixtures" / "configs"

# type -> changes over its class defaults ({}: the defaults themselves)
CASES = {
    "bamba": {},
    "bamba-attention-layers": {"model_type": "bamba", "attn_layer_indices": [3, 10, 17], "mamba_proj_bias": True,
                               "attention_bias": True, "mlp_bias": True},
    "granitemoehybrid": {},
    "granitemoehybrid-dense": {"model_type": "granitemoehybrid", "num_local_experts": 0,
                               "layer_types": ["mamba"] * 5 + ["attention"] + ["mamba"] * 26},
    "falcon_h1": {},
    "falcon_h1-options": {"model_type": "falcon_h1", "mamba_rms_norm": True, "projectors_bias": True,
                          "mamba_proj_bias": True, "attention_bias": True, "mlp_bias": True, "mamba_d_ssm": None,
                          "mamba_d_head": "auto"},
    "zamba2": {},
    "zamba2-two-blocks": {"model_type": "zamba2", "num_mem_blocks": 2, "use_shared_attention_adapter": True,
                          "add_bias_linear": True},
    "lfm2": {},
    "lfm2-conv": {"model_type": "lfm2", "layer_types": ["conv", "conv", "full_attention"] * 10 + ["conv", "conv"],
                  "conv_bias": True, "block_ffn_dim_multiplier": 1.3, "tie_embedding": False},
    "lfm2_moe": {"model_type": "lfm2_moe", "layer_types": ["conv", "conv", "full_attention"] * 10 + ["conv", "conv"]},
    "olmo_hybrid": {},
    "olmo_hybrid-layers": {"model_type": "olmo_hybrid", "layer_types": ["linear_attention", "full_attention"] * 16,
                           "attention_bias": True},
    "nemotron_h": {},
    "nemotron_h-pattern": {"model_type": "nemotron_h", "hybrid_override_pattern": "M-M*E-ME", "layers_block_type": None,
                           "num_hidden_layers": 8},
    "gemma3": {},
}


def defaults(model_type: str) -> dict:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return transformers.AutoConfig.for_model(model_type).to_dict()


@pytest.mark.parametrize("case", sorted(CASES))
def test_count_equals_the_model_transformers_builds(case):
    from test_hf_config_weights import transformers_count

    change = CASES[case]
    data = defaults(change.get("model_type", case))
    data.update(change)
    data = {k: v for k, v in data.items() if not (k in change and v is None and k != "mamba_d_ssm")}  # None: absent
    spec = spec_from_config(data, origin=case)
    count = parameter_count(spec)
    assert count is not None, [n for n in spec.notes if n.startswith(SKIP)]
    assert count.total == transformers_count(data)


# ---------------------------------------------------------------- 2. by hand (class defaults, written out)


def total_of(data: dict) -> int:
    count = parameter_count(spec_from_config(data, origin="by hand"))
    assert count is not None
    return count.total


def test_bamba_by_hand():
    data = defaults("bamba")
    # 32 Mamba2 layers (no attn_layer_indices): heads 128, I = 2 x 4096 = 8192, state 256, 1 group, kernel 4
    mixer = (4096 * (2 * 8192 + 2 * 256 + 128)  # in_proj
             + (8192 + 2 * 256) * 4 + (8192 + 2 * 256)  # conv1d and its bias
             + 3 * 128 + 8192 + 8192 * 4096)  # dt_bias, A_log, D; gated norm; out_proj
    layer = mixer + 3 * 4096 * 14336 + 2 * 4096  # gated MLP, two RMSNorms
    assert total_of(data) == 2 * 128000 * 4096 + 32 * layer + 4096 == 9_992_765_440


def test_granitemoehybrid_by_hand():
    data = defaults("granitemoehybrid")
    mixer = 4096 * (2 * 8192 + 2 * 256 + 128) + (8192 + 512) * 5 + 3 * 128 + 8192 + 8192 * 4096
    experts = 8 * 3 * 4096 * 11008 + 8 * 4096  # 8 gated experts and the router
    shared = 3 * 4096 * 1024  # input_linear hidden x 2 x 1024, output_linear
    layer = mixer + experts + shared + 2 * 4096
    assert total_of(data) == 2 * 32000 * 4096 + 32 * layer + 4096 == 38_601_064_448


def test_falcon_h1_by_hand():
    data = defaults("falcon_h1")
    # the mixer is mamba_d_ssm 1024 wide: 128 heads of 8; no gated norm (mamba_rms_norm false)
    mixer = 4096 * (2 * 1024 + 2 * 256 + 128) + (1024 + 512) * 5 + 3 * 128 + 1024 * 4096
    attention = 2 * 4096 * 32 * 128 + 2 * 4096 * 8 * 128
    layer = mixer + attention + 3 * 4096 * 14336 + 2 * 4096
    assert total_of(data) == 2 * 128000 * 4096 + 32 * layer + 4096 == 8_514_961_408


def test_zamba2_by_hand():
    data = defaults("zamba2")
    # 54 layers, 9 hybrid; each a Mamba2 block (8 heads, I = 5120, state 64, 1 group, conv bias) and its norm
    mixer = 2560 * (2 * 5120 + 2 * 64 + 8) + (5120 + 128) * 5 + 3 * 8 + 5120 + 5120 * 2560
    own = 54 * (mixer + 2560) + 9 * 2560 * 2560  # + each hybrid layer's linear
    # one shared block (num_mem_blocks 1): attention over 2 x 2560 (32 heads of 160), MLP 4 x 2560, two norms
    block = 3 * 5120 * 5120 + 5120 * 2560 + 2560 * 2 * 10240 + 10240 * 2560 + 5120 + 2560
    adapters = 9 * (2560 * 128 + 128 * 2 * 10240)  # gate_up adapters, one per hybrid layer
    assert total_of(data) == 32000 * 2560 + own + block + adapters + 2560 == 2_481_848_336


def test_lfm2_by_hand():
    data = defaults("lfm2") | {"layer_types": ["conv", "conv", "full_attention"] * 10 + ["conv", "conv"]}
    # MLP: int(2 x 12288 / 3) = 8192, x 1.0, a multiple of 256
    common = 3 * 2560 * 8192 + 2 * 2560
    attention = 2 * 2560 * 2560 + 2 * 2560 * 8 * 80 + 2 * 80  # q/out, k/v, per-head q and k norms
    conv = 2560 * 3 * 2560 + 2560 * 3 + 2560 * 2560  # in_proj, conv (L_cache 3), out_proj; no biases
    assert total_of(data) == 65536 * 2560 + 32 * common + 10 * attention + 22 * conv + 2560  # tied


def test_olmo_hybrid_by_hand():
    data = defaults("olmo_hybrid")
    # every 4th layer attention (8), 24 Gated DeltaNet layers: 30 key heads of 96, 30 value heads of 192
    linear = (2 * 3840 * 2880 + 2 * 3840 * 5760 + 2 * 3840 * 30 + 5760 * 3840  # q, k; v, g; a, b; o
              + (2 * 2880 + 5760) * 4 + 2 * 30 + 192)  # conv1d, A_log and dt_bias, o_norm
    attention = 4 * 3840 * 3840 + 2 * 3840  # 30 heads of 128; q_norm and k_norm over all heads
    common = 3 * 3840 * 11008 + 2 * 3840
    assert total_of(data) == 2 * 100352 * 3840 + 24 * linear + 8 * attention + 32 * common + 3840 == 7_430_870_688


def test_nemotron_h_layers_block_type_by_hand():
    data = defaults("nemotron_h")  # layers_block_type: linear_attention, moe, full_attention, mlp
    mamba = 4096 * (2 * 8192 + 2 * 8 * 128 + 128) + (8192 + 2 * 8 * 128) * 5 + 3 * 128 + 8192 + 8192 * 4096
    moe = 8 * 2 * 4096 * 7688 + 8 * 4096 + 8 + 2 * 4096 * 7688  # relu2 experts, router + bias, shared expert
    attention = 2 * 4096 * 4096 + 2 * 4096 * 1024
    mlp = 2 * 4096 * 21504
    assert total_of(data) == 2 * 131072 * 4096 + mamba + moe + attention + mlp + 4 * 4096 + 4096 == 1_968_355_720


def test_nemotron_super_49b_by_hand():
    spec = load_config_path(CONFIGS / "llama-3.3-nemotron-super-49b-v1")
    # 49 blocks attend (64 heads, 8 KV heads of 128), 31 have no attention and no input_layernorm; every block
    # has an MLP of int(2 x ffn_mult x 8192 / 3) rounded up to 256: 5.25 -> 28672 (49 blocks), 2.625 -> 14336 (6),
    # 1.3125 -> 7168 (10), 1.0 -> 5461 -> 5632 (8), 0.5 -> 2730 -> 2816 (6), 3.28125 -> 17920 (1)
    widths = 49 * 28672 + 6 * 14336 + 10 * 7168 + 8 * 5632 + 6 * 2816 + 1 * 17920
    expected = (2 * 128256 * 8192  # untied embedding and head
                + 49 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 8192)  # attention and its norm
                + 80 * 8192 + 3 * 8192 * widths  # post_attention_layernorm and the gated MLPs
                + 8192)
    assert parameter_count(spec).total == expected == 49_867_145_216  # NVIDIA publishes 49.9B


def test_nemotron_nas_linear_and_no_op_blocks():
    data = {
        "model_type": "nemotron-nas", "hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 3,
        "vocab_size": 1000, "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "block_configs": [
            {"attention": {"n_heads_in_group": 2}, "ffn": {"ffn_mult": 1.0}},
            {"attention": {"replace_with_linear": True}, "ffn": {"replace_with_linear": True}},
            {"attention": {"no_op": True}, "ffn": {"no_op": True}},
        ],
    }
    # block 0: attention (4 heads of 64, 2 KV heads) + gated MLP int(2 x 256 / 3) = 170 -> 256, two norms;
    # block 1: two linears 256 x 256 and two norms; block 2: nothing
    expected = (2 * 1000 * 256 + 2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 256 + 2 * 256
                + 2 * 256 * 256 + 2 * 256 + 256)
    assert total_of(data) == expected


def test_gemma3_counts_the_pooling_head_by_hand():
    data = defaults("gemma3")  # vision_use_head absent from the defaults' vision_config: SigLIP builds the head
    head = 768 + 3 * 768 * 768 + 3 * 768 + 768 * 768 + 768 + 2 * 768 + 2 * 768 * 3072 + 3072 + 768
    spec = spec_from_config(data, origin="gemma3")
    assert any("pooling head" in n for n in spec.notes)
    no_head = {**data, "vision_config": {**data["vision_config"], "vision_use_head": False}}
    assert total_of(data) - total_of(no_head) == head


def test_mimo_v2_is_refused_by_name():
    spec = load_config_path(CONFIGS / "mimo-v2.5")
    assert spec.weights is None
    assert any(n.startswith(SKIP) and "audio encoder" in n for n in spec.notes)
