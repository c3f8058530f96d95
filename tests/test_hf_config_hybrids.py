"""Hybrid, per-layer and local/global configs read from real released config.json files
(kvcalc.sources.config_layers): Nemotron-H's hybrid_override_pattern and Mamba2 state,
Nemotron-NAS block_configs, MiMo-V2's hybrid_layer_pattern with swa_* heads.

Every expected number is worked by hand from the config's own fields, written out below.

SOURCES of the fixtures (tests/fixtures/configs/<folder>/config.json):
- nemotron-h-8b-base-8k: https://huggingface.co/nvidia/Nemotron-H-8B-Base-8K/blob/main/config.json,
  as copied in NVIDIA-NeMo/Megatron-Bridge tests/unit_tests/models/nemotronh/test_nemotron_h_bridge.py
  (the two keys that test adds for its mocks, hidden_act and n_routed_experts, left out).
- nemotron-3-nano-30b-a3b: https://huggingface.co/nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16/blob/main/config.json,
  verbatim copy in a public bring-up brief (code search corpus, "Verbatim config.json").
- llama-3.3-nemotron-super-49b-v1: https://huggingface.co/nvidia/Llama-3_3-Nemotron-Super-49B-v1/blob/main/config.json,
  as copied ("Config copy from ...") in an NVIDIA test module holding the Super-49B and Ultra-253B
  configs; rewritten with json.dumps(indent=2), the same sorted keys and values, 80 blocks.
- mimo-v2.5: https://huggingface.co/XiaomiMiMo/MiMo-V2.5/blob/main/config.json, verbatim in a public
  model report (code search corpus). MiMo-V2-Flash uses the same swa_* and hybrid_layer_pattern fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvcalc.errors import PresetError
from kvcalc.estimate import estimate
from kvcalc.sources.config_fields import unread_keys
from kvcalc.sources.config_json import load_config_path, spec_from_config

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
FOLDERS = ("nemotron-h-8b-base-8k", "nemotron-3-nano-30b-a3b", "llama-3.3-nemotron-super-49b-v1", "mimo-v2.5")
# model types these tests check against real configs (for model_types.CHECKED_TYPES)
TESTED_TYPES = ("nemotron_h", "nemotron-nas", "mimo_v2")


def config(folder: str):
    return load_config_path(CONFIGS / folder)


def raw(folder: str) -> dict:
    return json.loads((CONFIGS / folder / "config.json").read_text())


def from_dict(data: dict):
    return spec_from_config(data, origin="test/config.json")


def groups(spec, context: int) -> dict:
    return {g.name: g for g in estimate(spec, context=context).groups}


# ---------------------------------------------------------------- every fixture


@pytest.mark.parametrize("folder", FOLDERS)
def test_fixture_reads_with_no_unread_key(folder):
    spec = config(folder)
    assert unread_keys(spec.notes) == [], spec.notes
    assert not [n for n in spec.notes if n.startswith("unread:")]


# ---------------------------------------------------------------- Nemotron-H


def test_nemotron_h_8b_by_hand():
    spec = config("nemotron-h-8b-base-8k")
    pattern = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"
    assert len(pattern) == 52 and pattern.count("*") == 4 and pattern.count("M") == 24
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [7, 18, 29, 40]
    assert order.count("mamba2") == 24 and order.count("ffn") == 24
    e = estimate(spec, context=8192)
    # 4 attention layers x 8 KV heads x (128 + 128) x 2 bytes; head_dim from attention_head_dim
    assert e.bytes_per_token == 4 * 8 * (128 + 128) * 2 == 16_384
    assert e.total_bytes == 16_384 * 8192
    # Mamba2: SSM 128 heads x 64 x 128 in float32 (NemotronHConfig's mamba_ssm_cache_dtype default,
    # which vLLM reads too) + conv (128 x 64 + 2 x 8 x 128) x 4 in bf16, 24 layers
    ssm, conv = 128 * 64 * 128, (128 * 64 + 2 * 8 * 128) * 4
    assert ssm + conv == 1_089_536
    assert e.state_bytes == 24 * (ssm * 4 + conv * 2) == 102_629_376
    assert any("mamba_ssm_cache_dtype float32 (NemotronHConfig's default" in n for n in spec.notes)


def test_nemotron_3_nano_by_hand_with_fp32_ssm_state():
    spec = config("nemotron-3-nano-30b-a3b")
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [5, 12, 19, 26, 33, 42]
    assert order.count("mamba2") == 23 and order.count("ffn") == 23
    e = estimate(spec, context=4096)
    assert e.bytes_per_token == 6 * 2 * (128 + 128) * 2 == 6_144
    # mamba_ssm_cache_dtype float32: SSM 64 x 64 x 128 in fp32, conv (64 x 64 + 2 x 8 x 128) x 4 in bf16;
    # the Mamba2 width is heads x head_dim = 4096, not expand x hidden = 5376
    per_layer = 64 * 64 * 128 * 4 + (64 * 64 + 2 * 8 * 128) * 4 * 2
    assert e.state_bytes == 23 * per_layer == 49_364_992
    assert any("ignored: expand 2" in n for n in spec.notes)
    # the fixed fp32 state does not follow --kv-dtype; the KV cache does
    fp8 = estimate(spec, context=4096, kv_dtype="fp8")
    assert fp8.state_bytes == 49_364_992 and fp8.bytes_per_token == 6 * 2 * 256 * 1


def test_nemotron_h_layers_block_type_list_reads_like_the_pattern():
    data = raw("nemotron-3-nano-30b-a3b")
    names = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
    data["layers_block_type"] = [names[c] for c in data.pop("hybrid_override_pattern")]
    assert from_dict(data).layers == config("nemotron-3-nano-30b-a3b").layers


def test_nemotron_h_conv_convention_is_said():
    spec = config("nemotron-h-8b-base-8k")
    assert any("vLLM keeps conv_kernel - 1 (3)" in n for n in spec.notes)


@pytest.mark.parametrize("pattern, words", [
    ("M-M-X" + "-" * 49, "'X'"),
    ("M*" * 25, "has 50 layers, but num_hidden_layers is 52"),
    (7, "must be a string"),
])
def test_nemotron_h_bad_pattern_is_one_line(pattern, words):
    data = raw("nemotron-h-8b-base-8k")
    data["hybrid_override_pattern"] = pattern
    with pytest.raises(PresetError, match=words) as err:
        from_dict(data)
    assert "\n" not in str(err.value)


def test_mamba2_without_state_size_fails_naming_it():
    data = raw("nemotron-h-8b-base-8k")
    del data["ssm_state_size"]
    with pytest.raises(PresetError, match="ssm_state_size"):
        from_dict(data)


# ---------------------------------------------------------------- Nemotron-NAS block_configs


def test_nemotron_super_49b_by_hand():
    spec = config("llama-3.3-nemotron-super-49b-v1")
    blocks = raw("llama-3.3-nemotron-super-49b-v1")["block_configs"]
    attending = [i for i, b in enumerate(blocks) if not b["attention"]["no_op"]]
    assert len(blocks) == 80 and len(attending) == 49
    assert all(blocks[i]["attention"]["n_heads_in_group"] == 8 for i in attending)
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full_kv8"] == attending
    assert order.count("no_attention") == 31
    kind = spec.layers.kinds["full_kv8"]
    assert (kind.attention.kv_heads, kind.attention.head_dim) == (64 // 8, 8192 // 64)
    e = estimate(spec, context=131072)
    # 49 attention layers x (64 / 8 = 8 KV heads) x (128 + 128) x 2 bytes; no-op blocks keep nothing
    assert e.bytes_per_token == 49 * 8 * (128 + 128) * 2 == 200_704
    assert e.total_bytes == 200_704 * 131072 and e.state_bytes == 0
    # the model-wide label follows the blocks (64 / 8), not an MHA guess from the missing field
    assert (spec.attention.kind, spec.attention.kv_heads) == ("gqa", 8)
    assert not any(note.startswith("inferred: MHA") for note in spec.notes)


def block_config(**attention) -> dict:
    base = {"n_heads_in_group": 8, "no_op": False, "replace_with_linear": False, "window_length": None}
    return {"attention": {**base, **attention}, "ffn": {"ffn_mult": 1.0, "no_op": False}}


def nas(blocks: list[dict]) -> dict:
    data = raw("llama-3.3-nemotron-super-49b-v1")
    data.update(block_configs=blocks, num_hidden_layers=len(blocks))
    return data


def test_block_configs_linear_window_and_group_sizes():
    spec = from_dict(nas([
        block_config(), block_config(n_heads_in_group=16),
        block_config(replace_with_linear=True, n_heads_in_group=None),
        block_config(window_length=4096), block_config(no_op=True, n_heads_in_group=None),
    ]))
    assert spec.layers.order() == ["full_kv8", "full_kv4", "linear_replaced", "sliding_kv8_w4096", "no_attention"]
    g = groups(spec, 8192)
    assert g["full_kv8"].bytes == 8 * 256 * 2 * 8192
    assert g["full_kv4"].bytes == 4 * 256 * 2 * 8192
    assert g["sliding_kv8_w4096"].bytes == 8 * 256 * 2 * 4096
    assert g["linear_replaced"].bytes == 0 and g["no_attention"].bytes == 0


@pytest.mark.parametrize("attention, words", [
    ({"num_sink_tokens": 4}, "num_sink_tokens 4"),
    ({"n_heads_in_group": 7}, r"block_configs\[0\].attention.n_heads_in_group"),
    ({"n_heads_in_group": None}, "n_heads_in_group"),
])
def test_block_configs_refusals_are_one_line(attention, words):
    with pytest.raises(PresetError, match=words) as err:
        from_dict(nas([block_config(**attention), block_config()]))
    assert "\n" not in str(err.value)


def test_block_configs_count_must_match_layers():
    data = nas([block_config(), block_config()])
    data["num_hidden_layers"] = 3
    with pytest.raises(PresetError, match="one block per layer"):
        from_dict(data)


def test_block_configs_unknown_attention_key_is_unread():
    spec = from_dict(nas([block_config(kv_shared_from=3), block_config()]))
    assert unread_keys(spec.notes) == ["block_configs[].attention.kv_shared_from"]


# ---------------------------------------------------------------- MiMo-V2 local / global heads


def test_mimo_v2_5_by_hand():
    spec = config("mimo-v2.5")
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [0, 5, 11, 17, 23, 29, 35, 41, 47]
    full, sliding = spec.layers.kinds["full"], spec.layers.kinds["sliding"]
    assert (full.attention.kv_heads, full.attention.head_dim, full.attention.v_dim) == (4, 192, 128)
    assert (sliding.attention.kv_heads, sliding.attention.head_dim, sliding.attention.v_dim) == (8, 192, 128)
    assert sliding.window == 128
    g = groups(spec, 8192)
    # global: 9 layers x 4 KV heads x (192 + 128) x 2 bytes x 8192 tokens
    assert g["full"].bytes == 9 * 4 * (192 + 128) * 2 * 8192 == 188_743_680
    # local: 39 layers x 8 KV heads x (192 + 128) x 2 bytes x 128 tokens (the window)
    assert g["sliding"].bytes == 39 * 8 * (192 + 128) * 2 * 128 == 25_559_040
    assert estimate(spec, context=100).bytes_per_token == 9 * 4 * 320 * 2 + 39 * 8 * 320 * 2
    # attention_chunk_size 128 is not Llama-4 chunking here
    assert "chunked" not in {k.type for k in spec.layers.kinds.values()}
    assert any(n.startswith("ignored: attention_chunk_size 128") for n in spec.notes)
    assert any("(129)" in n for n in spec.notes)


def test_global_head_fields_give_full_layers_their_own_shape():
    data = raw("gemma-3-1b-it")  # a real layer_types config, with Gemma-4-style global fields added
    data.update(num_global_key_value_heads=2, global_head_dim=512)
    spec = from_dict(data)
    full = spec.layers.kinds["full"]
    assert (full.attention.kv_heads, full.attention.head_dim) == (2, 512)
    assert spec.layers.kinds["sliding"].attention.kv_heads == raw("gemma-3-1b-it")["num_key_value_heads"]
    assert unread_keys(spec.notes) == []


def test_hybrid_layer_pattern_of_the_wrong_length_fails():
    data = raw("mimo-v2.5")
    data["hybrid_layer_pattern"] = data["hybrid_layer_pattern"][:-1]
    with pytest.raises(PresetError, match="hybrid_layer_pattern must list 0"):
        from_dict(data)


# ---------------------------------------------------------------- refused


def test_parallel_hybrid_fields_outside_falcon_h1_and_zamba2_are_refused():
    # Falcon-H1 and Zamba2 are read (tests/test_hf_config_parallel_hybrids.py); the same fields under another
    # model_type are not guessed at
    data = raw("nemotron-h-8b-base-8k")
    del data["hybrid_override_pattern"]
    data.update(model_type="someones_hybrid", mamba_d_ssm=1536)
    with pytest.raises(PresetError, match="mamba_d_ssm: .* reads for model_type falcon_h1 only"):
        from_dict(data)
    data = raw("nemotron-h-8b-base-8k")
    del data["hybrid_override_pattern"]
    data["layers_block_type"] = ["mamba", "hybrid"] * 26
    with pytest.raises(PresetError, match=r'layers_block_type\[1\] is "hybrid": .* zamba2 and falcon_h1 only'):
        from_dict(data)


# ---------------------------------------------------------------- transformers cross-check


def test_transformers_builds_the_same_nemotron_h_layers_and_state():
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers import DynamicCache, NemotronHConfig
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

    for folder in ("nemotron-h-8b-base-8k", "nemotron-3-nano-30b-a3b"):
        data = raw(folder)
        hf = NemotronHConfig(**{k: v for k, v in data.items() if k not in ("model_type", "auto_map", "architectures")})
        kinds = {"full_attention": "full", "linear_attention": "mamba2", "moe": "ffn", "mlp": "ffn"}
        assert [kinds[t] for t in hf.layers_block_type] == config(folder).layers.order()
        cache = DynamicCache(config=hf)
        # a K/V cache for attention, a state for Mamba2, nothing (a dummy) for MLP and MoE layers
        held = {"DynamicLayer": "full", "LinearAttentionLayer": "mamba2", "DummyLayer": "ffn"}
        assert [held[type(layer).__name__] for layer in cache.layers] == config(folder).layers.order()
        with torch.device("meta"):
            mixer = NemotronHMamba2Mixer(hf, layer_idx=0)
        conv_channels, _, kernel = mixer.conv1d.weight.shape
        state = mixer.num_heads * mixer.head_dim * mixer.ssm_state_size + conv_channels * kernel
        mamba = config(folder).layers.kinds["mamba2"]
        ssm = mixer.num_heads * mixer.head_dim * mixer.ssm_state_size
        assert mamba.state_elements == state  # the SSM state and the full conv kernel, as transformers holds them
        assert (mamba.conv_channels, mamba.conv_kernel, mamba.mixer) == (conv_channels, kernel, "mamba2")
        assert state - mamba.conv_channels * mamba.conv_kernel == ssm


def test_transformers_builds_the_same_mimo_heads_and_windows():
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers import MiMoV2FlashConfig
    from transformers.models.mimo_v2_flash.modeling_mimo_v2_flash import MiMoV2FlashAttention

    data = raw("mimo-v2.5")
    hf = MiMoV2FlashConfig(**{k: v for k, v in data.items() if k not in ("model_type", "auto_map", "architectures")})
    spec = config("mimo-v2.5")
    names = {"full_attention": "full", "sliding_attention": "sliding"}
    assert [names[t] for t in hf.layer_types] == spec.layers.order()
    assert hf.sliding_window == spec.layers.kinds["sliding"].window + 1  # the note's 129
    for index in (0, 1):
        with torch.device("meta"):
            attn = MiMoV2FlashAttention(hf, index)
        kind = spec.layers.kinds[spec.layers.order()[index]]
        a = kind.attention
        assert (attn.k_proj.out_features, attn.v_proj.out_features) == (a.kv_heads * a.head_dim, a.kv_heads * a.v_dim)

