"""Layers that hold a KV cache and a Mamba2 state together: Falcon-H1 (attention and a Mamba2 mixer side by
side in every layer) and Zamba2 (Mamba2 layers, some of which first run a shared attention block).

transformers 5.24 keeps both in one cache layer (cache_utils.LinearAttentionAndFullAttentionLayer, layer type
"hybrid"): keys and values over the whole context, plus the Mamba2 conv and recurrent states. kvcalc reads such
a layer as a full layer with a ``state`` (spec.FullLayer.state).

No verbatim released config.json of either family was found in the search corpora, so the fields are
written out here, each from where it was seen:
- FALCON_H1_0_5B: tiiuae/Falcon-H1-0.5B's fields as NVIDIA-NeMo/Megatron-Bridge's unit test
  tests/unit_tests/models/falcon_h1/test_falconh1_bridge.py transcribes them (FALCON_H1_500M_CONFIG, code
  search id 54893243323). That copy leaves mamba_d_ssm out; FalconH1Config requires mamba_n_heads x
  mamba_d_head = mamba_d_ssm, and transformers' FalconH1 docs table gives H1-0.5B 24 Mamba heads of 64, so
  1536 is written here (an inference, said).
- ZAMBA2_2_7B: Zamba2Config's class defaults in transformers 5.24 (configuration_zamba2.py, "Initializing a
  Zamba2-2.7B style configuration"), with the derived fields a saved config.json carries (kv_channels,
  attention_head_dim, mamba_headdim).
Every expected number is worked by hand below.
"""

from __future__ import annotations

import pytest

from kvcalc.errors import KvcalcError, PresetError
from kvcalc.estimate import estimate
from kvcalc.sources.config_json import preset_yaml, spec_from_config
from kvcalc.sources.presets import load_file
from kvcalc.spec import FullLayer, NoKVLayer

FALCON_H1_0_5B = {
    "architectures": ["FalconH1ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "attention_in_multiplier": 1.0, "attention_out_multiplier": 0.9375, "attn_layer_indices": None,
    "embedding_multiplier": 5.656854249492381, "head_dim": 64, "hidden_act": "silu", "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 2048, "key_multiplier": 0.39062499999999994,
    "lm_head_multiplier": 0.0390625, "mamba_chunk_size": 128, "mamba_conv_bias": True, "mamba_d_conv": 4,
    "mamba_d_head": 64, "mamba_d_ssm": 1536, "mamba_d_state": 128, "mamba_expand": 2, "mamba_n_groups": 1,
    "mamba_n_heads": 24, "mamba_norm_before_gate": False, "mamba_proj_bias": False, "mamba_rms_norm": False,
    "mamba_use_mlp": True, "max_position_embeddings": 16384, "mlp_bias": False,
    "mlp_multipliers": [0.8838834764831844, 0.5859375], "model_type": "falcon_h1", "num_attention_heads": 8,
    "num_hidden_layers": 36, "num_key_value_heads": 2, "projectors_bias": False, "rms_norm_eps": 1e-5,
    "rope_scaling": None, "rope_theta": 100000000000.0, "ssm_in_multiplier": 1.25,
    "ssm_multipliers": [0.3535533905932738, 0.25, 0.3535533905932738, 0.5, 0.3535533905932738],
    "ssm_out_multiplier": 0.23570226039551587, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "vocab_size": 32784,
}
# Zamba2Config's default layers_block_type: 54 layers, 9 of them hybrid
ZAMBA2_LAYERS = (["mamba"] + (["mamba"] * 5 + ["hybrid"]) * 7 + ["mamba"] * 4 + ["hybrid"] + ["mamba"] * 3
                 + ["hybrid"] + ["mamba"] * 2)
ZAMBA2_2_7B = {
    "architectures": ["Zamba2ForCausalLM"], "model_type": "zamba2", "vocab_size": 32000,
    "max_position_embeddings": 4096, "hidden_size": 2560, "num_hidden_layers": 54,
    "layers_block_type": ZAMBA2_LAYERS, "mamba_d_state": 64, "mamba_d_conv": 4, "mamba_expand": 2,
    "mamba_ngroups": 1, "n_mamba_heads": 8, "mamba_headdim": 640, "use_conv_bias": True, "chunk_size": 256,
    "add_bias_linear": False, "intermediate_size": 10240, "hidden_act": "gelu", "num_attention_heads": 32,
    "num_key_value_heads": 32, "attention_head_dim": 160, "attention_hidden_size": 5120, "kv_channels": 80,
    "num_query_groups": 32, "num_mem_blocks": 1, "use_shared_attention_adapter": False, "adapter_rank": 128,
    "use_mem_rope": False, "rms_norm_eps": 1e-5, "use_cache": True, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}


def spec_of(data: dict):
    return spec_from_config(data, "test/config.json")


def test_falcon_h1_every_layer_holds_kv_and_a_mamba2_state():
    spec = spec_of(FALCON_H1_0_5B)
    assert spec.layers.order() == ["hybrid"] * 36
    kind = spec.layers.kinds["hybrid"]
    assert isinstance(kind, FullLayer) and kind.state.mixer == "mamba2"
    assert (spec.attention.heads, spec.attention.kv_heads, spec.attention.head_dim) == (8, 2, 64)
    # per layer: the SSM state 24 heads x 64 x 128, the conv state (1536 + 2 x 1 x 128) channels x kernel 4
    assert kind.state.state_elements == 24 * 64 * 128 + (1536 + 2 * 128) * 4 == 203_776
    e = estimate(spec, context=8192)
    assert e.bytes_per_token == 36 * 2 * 2 * 64 * 2 == 18_432  # K and V, 2 KV heads of 64, bf16
    assert e.total_bytes == 18_432 * 8192
    assert e.state_bytes == 36 * 203_776 * 2 == 14_671_872  # bf16 (no mamba_ssm_dtype: vLLM's auto)
    assert not [n for n in spec.notes if n.startswith("unread:")], spec.notes  # the muP multipliers explained
    # batch 4: both parts scale with it
    four = estimate(spec, context=8192, batch=4)
    assert (four.total_bytes, four.state_bytes) == (4 * e.total_bytes, 4 * e.state_bytes)


def test_falcon_h1_mixer_width_follows_falcon_h1_config():
    # mamba_d_head "auto": mamba_d_ssm / mamba_n_heads
    spec = spec_of(FALCON_H1_0_5B | {"mamba_d_head": "auto"})
    assert spec.layers.kinds["hybrid"].state.state_elements == 24 * 64 * 128 + (1536 + 2 * 128) * 4
    # mamba_d_ssm null: mamba_expand x hidden_size = 2048, so 24 heads cannot hold 64 each
    with pytest.raises(PresetError, match=r"mamba_n_heads x mamba_d_head \(24 x 64\) must equal the mixer width 2048"):
        spec_of(FALCON_H1_0_5B | {"mamba_d_ssm": None})
    with pytest.raises(PresetError, match="must equal the mixer width 1536"):
        spec_of(FALCON_H1_0_5B | {"mamba_d_head": 32})


def test_zamba2_hybrid_layers_keep_kv_beside_every_mamba2_state():
    spec = spec_of(ZAMBA2_2_7B)
    order = spec.layers.order()
    assert order.count("hybrid") == 9 and order.count("mamba2") == 45
    # attention over 2 x hidden: heads of 2 x 2560 / 32 = 160, not kv_channels 80
    assert (spec.attention.heads, spec.attention.kv_heads, spec.attention.head_dim) == (32, 32, 160)
    assert any(n.startswith("ignored: kv_channels 80") for n in spec.notes)
    hybrid, mamba = spec.layers.kinds["hybrid"], spec.layers.kinds["mamba2"]
    assert isinstance(hybrid, FullLayer) and isinstance(mamba, NoKVLayer)
    # Mamba2: 8 heads of 2 x 2560 / 8 = 640, state 64; conv (5120 + 2 x 1 x 64) x 4
    state = 8 * 640 * 64 + (5120 + 2 * 64) * 4
    assert hybrid.state == mamba and mamba.state_elements == state == 348_672
    e = estimate(spec, context=4096)
    assert e.bytes_per_token == 9 * 2 * 32 * 160 * 2 == 184_320
    assert e.total_bytes == 184_320 * 4096
    assert e.state_bytes == 54 * state * 2 == 37_656_576  # every layer, hybrid or not, keeps a Mamba2 state
    assert not [n for n in spec.notes if n.startswith("unread:")], spec.notes


def test_zamba2_legacy_and_current_layer_names_read_alike():
    current = ["linear_attention" if t == "mamba" else t for t in ZAMBA2_LAYERS]
    assert spec_of(ZAMBA2_2_7B | {"layers_block_type": current}).layers.order() == spec_of(ZAMBA2_2_7B).layers.order()


def test_a_hybrid_layer_survives_kvcalc_import(tmp_path):
    for data in (FALCON_H1_0_5B, ZAMBA2_2_7B):
        spec = spec_of(data)
        out = tmp_path / f"{data['model_type']}.yaml"
        out.write_text(preset_yaml(spec))
        again = load_file(out)
        assert again.layers.order() == spec.layers.order() and again.layers.kinds == spec.layers.kinds
        assert estimate(again, context=1000) == estimate(spec, context=1000)


def test_fit_refuses_hybrid_layers_by_name():
    from kvcalc.capacity import engines
    from kvcalc.capacity.layers import layer_types

    spec = spec_of(FALCON_H1_0_5B)
    with pytest.raises(KvcalcError, match="holds a KV cache and a Mamba state together"):
        layer_types(spec, range(spec.layers.count), 1, engines.get("vllm"), "bf16")


# --------------------------------------------------------------------------- transformers' own cache


@pytest.mark.parametrize("data", [FALCON_H1_0_5B, ZAMBA2_2_7B], ids=["falcon-h1-0.5b", "zamba2-2.7b"])
def test_transformers_holds_the_same_kv_and_state(data):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from kvcalc.verify.reference import compare, hold

    # a float32 model: every tensor transformers keeps is float32, as kvcalc counts: equal bytes, kind by kind
    fp32_data = data | {"torch_dtype": "float32"}
    fp32 = compare(spec_of(fp32_data), hold(fp32_data, 64), 64)
    assert [r.difference for r in fp32.rows] == [0] * len(fp32.rows)
    spec = spec_of(data)
    assert {r.name for r in fp32.rows} == set(spec.layers.kinds)
    # in bf16 transformers keeps the recurrent state in float32, a convention named for both families
    bf16 = compare(spec, hold(data, 64), 64)
    assert bf16.ok
    hybrid = next(r for r in bf16.rows if r.name == "hybrid")
    state = spec.layers.kinds["hybrid"].state
    recurrent = state.state_elements - state.conv_channels * state.conv_kernel
    assert hybrid.rule == "dtype" and hybrid.difference == spec.layers.order().count("hybrid") * recurrent * 2
