"""Recurrent states in their real dtype (issue 19): the keys a hybrid's config.json names its
state dtype with (mamba_ssm_dtype, mamba_ssm_cache_dtype), and the model dtype when absent.

Every expected number is worked by hand from the config's own fields, written out below.

SOURCES of the fixtures (tests/fixtures/configs/<folder>/config.json; README.md there):
- qwen3.5-0.8b: https://huggingface.co/Qwen/Qwen3.5-0.8B/resolve/main/config.json, verbatim as a
  public agent transcript fetched it with curl (code search corpus, stored file id 54505217749).
- qwen3-next-80b-a3b, nemotron-3-nano-30b-a3b: see tests/fixtures/configs/README.md.
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


def raw(folder: str) -> dict:
    return json.loads((CONFIGS / folder / "config.json").read_text())


def groups(spec, context: int) -> dict:
    return {g.name: g for g in estimate(spec, context=context).groups}


# Qwen3.5-0.8B text_config: 24 layers, layer_types (linear x 3, full) x 6; Gated DeltaNet with
# 16 key heads and 16 value heads of 128 x 128, conv kernel 4; full layers 2 KV heads x head_dim 256;
# dtype bfloat16, mamba_ssm_dtype float32.
QWEN35_RECURRENT = 16 * 128 * 128  # value heads x key dim x value dim = 262,144 elements
QWEN35_CONV = (2 * 16 * 128 + 16 * 128) * 4  # (2 x key heads x key dim + value heads x value dim) x kernel = 24,576


def test_qwen35_state_in_float32_by_hand():
    spec = load_config_path(CONFIGS / "qwen3.5-0.8b")
    assert unread_keys(spec.notes) == [], spec.notes
    g = groups(spec, 4096)
    assert g["linear"].layers == 18 and g["full"].layers == 6
    # recurrent state in float32 (4 bytes), the conv state in bfloat16 (2 bytes), 18 layers
    per_layer = QWEN35_RECURRENT * 4 + QWEN35_CONV * 2
    assert per_layer == 1_048_576 + 49_152
    assert g["linear"].state_bytes == 18 * per_layer == 19_759_104
    # full layers: 2 KV heads x (256 + 256) x 2 bytes x 6 layers per token
    assert g["full"].bytes_per_token == 6 * 2 * (256 + 256) * 2 == 12_288
    assert g["full"].bytes == 12_288 * 4096
    assert "mamba_ssm_dtype" in spec.layers.kinds["linear"].description


def test_qwen35_bf16_state_is_half_the_recurrent_part():
    data = raw("qwen3.5-0.8b")
    data["text_config"]["mamba_ssm_dtype"] = "bfloat16"
    spec = spec_from_config(data, "test/config.json")
    # everything in bf16 now: (262,144 + 24,576) x 2 bytes per layer, 18 layers
    assert groups(spec, 64)["linear"].state_bytes == 18 * (QWEN35_RECURRENT + QWEN35_CONV) * 2 == 10_321_920


def test_state_dtype_stays_when_the_kv_dtype_changes():
    spec = load_config_path(CONFIGS / "qwen3.5-0.8b")
    fp8 = estimate(spec, context=1024, kv_dtype="fp8")
    assert fp8.state_bytes == 19_759_104  # the state keeps its own dtype
    assert fp8.total_bytes == 6 * 2 * (256 + 256) * 1 * 1024  # the KV cache halves


def test_without_a_state_dtype_key_the_model_dtype_and_a_note():
    spec = load_config_path(CONFIGS / "qwen3-next-80b-a3b")
    # Qwen3-Next-80B-A3B: 32 value heads x 128 x 128, conv (2 x 16 x 128 + 32 x 128) x 4, all bf16, 36 layers
    per_layer = (32 * 128 * 128 + (2 * 16 * 128 + 32 * 128) * 4) * 2
    assert groups(spec, 64)["linear"].state_bytes == 36 * per_layer == 40_108_032
    note = next(n for n in spec.notes if "recurrent state is kept in the model dtype" in n)
    assert "SGLang keeps it in float32" in note and "vLLM" in note


def test_mamba_ssm_dtype_on_a_mamba2_hybrid_overrides_nemotrons_default():
    data = raw("nemotron-3-nano-30b-a3b")
    assert data["mamba_ssm_cache_dtype"] == "float32"
    data.pop("mamba_ssm_cache_dtype")
    data["mamba_ssm_dtype"] = "bfloat16"
    spec = spec_from_config(data, "test/config.json")
    # 64 heads x 64 x 128 SSM + (64 x 64 + 2 x 8 x 128) x 4 conv, all in bf16 now, 23 Mamba2 layers
    ssm, conv = 64 * 64 * 128, (64 * 64 + 2 * 8 * 128) * 4
    assert groups(spec, 64)["mamba2"].state_bytes == 23 * (ssm + conv) * 2
    assert not any("NemotronHConfig's default" in n for n in spec.notes)


def test_two_state_keys_that_disagree_are_refused():
    data = raw("nemotron-3-nano-30b-a3b")
    data["mamba_ssm_dtype"] = "bfloat16"  # beside mamba_ssm_cache_dtype float32
    with pytest.raises(PresetError, match="mamba_ssm_dtype and mamba_ssm_cache_dtype name different state dtypes"):
        spec_from_config(data, "test/config.json")


def test_an_unknown_state_dtype_is_one_line(runner, kvcalc_app, tmp_path):
    data = raw("qwen3.5-0.8b")
    data["text_config"]["mamba_ssm_dtype"] = "float8"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(kvcalc_app, ["estimate", str(path), "-c", "1k"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'mamba_ssm_dtype "float8" is not a dtype kvcalc knows' in lines[0]
    assert "Traceback" not in result.output


def test_qwen35_is_strict_clean_and_an_interval_that_disagrees_is_said(runner, kvcalc_app, tmp_path):
    ok = runner.invoke(kvcalc_app, ["estimate", str(CONFIGS / "qwen3.5-0.8b"), "-c", "1k", "--strict"])
    assert ok.exit_code == 0, ok.output
    data = raw("qwen3.5-0.8b")
    data["text_config"]["full_attention_interval"] = 3  # layer_types says every 4th
    spec = spec_from_config(data, "test/config.json")
    assert any(n.startswith("ignored: full_attention_interval 3: layer_types decides") for n in spec.notes)
    assert groups(spec, 64)["full"].layers == 6


# Granite-4.0-H-350M's architecture fields, as an MLX port's test transcribes its config.json (code search
# stored file id 54665629904; its "quantization" block, the port's own, left out; it gives no torch_dtype).
# Not a verbatim released file, so a dict here rather than a fixture.
GRANITE_4_H_350M = {
    "model_type": "granitemoehybrid", "attention_bias": False, "attention_multiplier": 0.015625,
    "embedding_multiplier": 12, "eos_token_id": 100257, "hidden_size": 768, "intermediate_size": 2048,
    "logits_scaling": 3,
    "layer_types": ["mamba"] * 10 + ["attention"] + ["mamba"] * 2 + ["attention"] + ["mamba"] * 3 + ["attention"]
                   + ["mamba"] * 9 + ["attention"] + ["mamba"] * 4,
    "mamba_conv_bias": True, "mamba_d_conv": 4, "mamba_d_head": 32, "mamba_d_state": 128, "mamba_n_groups": 1,
    "mamba_n_heads": 48, "mamba_proj_bias": False, "max_position_embeddings": 32768, "num_attention_heads": 12,
    "num_experts_per_tok": 0, "num_hidden_layers": 32, "num_key_value_heads": 4, "num_local_experts": 0,
    "position_embedding_type": "nope", "residual_multiplier": 0.246, "rms_norm_eps": 1e-05, "rope_theta": 10000,
    "shared_intermediate_size": 2048, "tie_word_embeddings": True, "vocab_size": 100352,
}


def test_granite_4_h_350m_by_hand():
    assert len(GRANITE_4_H_350M["layer_types"]) == 32
    spec = spec_from_config(dict(GRANITE_4_H_350M), "test/config.json")
    assert unread_keys(spec.notes) == [], spec.notes
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [10, 13, 17, 27]
    e = estimate(spec, context=8192)
    # attention layers: 4 x 4 KV heads x (64 + 64) x 2 bytes (head_dim 768 / 12; no dtype given: float32, served bf16)
    assert e.bytes_per_token == 4 * 4 * (64 + 64) * 2 == 4096
    # 28 Mamba2 layers: SSM 48 heads x 32 x 128 + conv (48 x 32 + 2 x 1 x 128) x 4, in bf16
    assert e.state_bytes == 28 * (48 * 32 * 128 + (1536 + 256) * 4) * 2 == 11_411_456
    # a mamba_ssm_dtype float32 (as SGLang reads it) doubles the SSM part only
    f32 = spec_from_config(GRANITE_4_H_350M | {"mamba_ssm_dtype": "float32"}, "test/config.json")
    assert estimate(f32, context=8192).state_bytes == 28 * (48 * 32 * 128 * 4 + 1792 * 4 * 2)


# LFM2.5-2.6B's config fields as a public checkpoint audit transcribes "the official" config.json
# (code search stored file id 60802108935: its OFFICIAL dict and LAYER_TYPES list). Not a verbatim file.
LFM25_LAYER_TYPES = [
    "conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv", "conv", "full_attention",
    "conv", "conv", "conv", "full_attention", "conv", "conv", "conv", "full_attention", "conv", "conv", "conv",
    "full_attention", "conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv",
]
LFM25_2_6B = {
    "architectures": ["Lfm2ForCausalLM"], "model_type": "lfm2", "hidden_size": 2048, "intermediate_size": 10752,
    "num_hidden_layers": 30, "num_attention_heads": 32, "num_key_value_heads": 8, "conv_L_cache": 3,
    "conv_bias": False, "block_auto_adjust_ff_dim": False, "norm_eps": 1e-5, "max_position_embeddings": 131072,
    "vocab_size": 128000, "tie_word_embeddings": True, "layer_types": LFM25_LAYER_TYPES,
    "rope_parameters": {"rope_theta": 10000000.0, "rope_type": "default"}, "torch_dtype": "bfloat16",
}


def test_lfm2_5_2_6b_by_hand():
    spec = spec_from_config(dict(LFM25_2_6B), "test/config.json")
    assert unread_keys(spec.notes) == [], spec.notes
    assert LFM25_LAYER_TYPES.count("full_attention") == 8 and LFM25_LAYER_TYPES.count("conv") == 22
    e = estimate(spec, context=4096)
    # 8 attention layers x 8 KV heads x (64 + 64) x 2 bytes, head_dim 2048 / 32 = 64
    assert e.bytes_per_token == 8 * 8 * (64 + 64) * 2 == 16_384
    # 22 short-conv layers: hidden 2048 x conv_L_cache 3 columns (as transformers allocates) x 2 bytes
    assert e.state_bytes == 22 * 2048 * 3 * 2 == 270_336


def test_qwen35_parameters_by_hand():
    from kvcalc.capacity.params import parameter_count

    spec = load_config_path(CONFIGS / "qwen3.5-0.8b")
    # language model: hidden 1024, vocab 248320 (tied), 24 layers of two RMSNorms and a gated MLP of 3584
    embedding, norms, mlp = 248320 * 1024, 24 * 2 * 1024 + 1024, 24 * 3 * 1024 * 3584
    # 18 Gated DeltaNet mixers: in_proj_qkv 1024 x (2 x 16 x 128 + 16 x 128), in_proj_z 1024 x 2048, in_proj_b and
    # in_proj_a 1024 x 16 each, conv1d 6144 x 4, dt_bias and A_log 16 each, norm 128, out_proj 2048 x 1024
    deltanet = 1024 * 6144 + 1024 * 2048 + 2 * 1024 * 16 + 6144 * 4 + 2 * 16 + 128 + 2048 * 1024
    # 6 gated attention layers: q_proj 1024 x (2 x 8 x 256) (queries and gate), k and v 1024 x 512, o 2048 x 1024,
    # q_norm and k_norm 256 each
    attention = 1024 * 2 * 8 * 256 + 2 * 1024 * 512 + 2048 * 1024 + 2 * 256
    language = embedding + norms + mlp + 18 * deltanet + 6 * attention
    assert language == 752_393_024  # Qwen3_5ForCausalLM on the meta device
    # vision tower: patch conv 3 x 2 x 16 x 16 -> 768 (+ bias), 2304 positions, 12 blocks (two LayerNorms, qkv and
    # proj with biases, MLP 768 -> 3072 -> 768 with biases), merger LayerNorm 768, 3072 -> 3072 -> 1024 with biases
    block = 2 * 2 * 768 + 768 * 2304 + 2304 + 768 * 768 + 768 + 768 * 3072 + 3072 + 3072 * 768 + 768
    vision = 3 * 2 * 16 * 16 * 768 + 768 + 2304 * 768 + 12 * block + 2 * 768 + 3072 * 3072 + 3072 + 3072 * 1024 + 1024
    assert vision == 100_592_896
    assert parameter_count(spec).total == language + vision == 852_985_920
    assert any("1 multi-token-prediction layer(s) in the checkpoint are not counted" in n for n in spec.notes)


# Bamba-9B names its attention layers by index: "attn_layer_indices": [9, 18, 27] of 32, hidden 4096, 32 heads,
# mamba_d_state 128, as a public config probe's test transcribes ibm-ai-platform/Bamba-9B (code search stored
# file id 65760752905); the other fields are BambaConfig's defaults (8 KV heads, 128 Mamba heads, mamba_d_head
# "auto", 1 group, conv 4, expand 2). No verbatim config.json was found.
BAMBA_9B = {
    "model_type": "bamba", "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "hidden_size": 4096, "attn_layer_indices": [9, 18, 27], "mamba_n_heads": 128, "mamba_d_head": "auto",
    "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_d_conv": 4, "mamba_expand": 2, "torch_dtype": "bfloat16",
    "max_position_embeddings": 262144,
}


def test_bamba_reads_attn_layer_indices():
    spec = spec_from_config(dict(BAMBA_9B), "test/config.json")
    assert unread_keys(spec.notes) == [], spec.notes
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [9, 18, 27] and order.count("mamba2") == 29
    e = estimate(spec, context=4096)
    # 3 attention layers x 8 KV heads x (128 + 128) x 2 bytes
    assert e.bytes_per_token == 3 * 8 * (128 + 128) * 2 == 12_288
    # 29 Mamba2 layers: SSM 128 heads x (2 x 4096 / 128 = 64) x 128 + conv (8192 + 2 x 1 x 128) x 4, bf16
    assert e.state_bytes == 29 * (128 * 64 * 128 + (8192 + 256) * 4) * 2 == 62_777_344


@pytest.mark.parametrize("indices", [[32], [1, 1], "9,18"])
def test_bamba_bad_attn_layer_indices_are_one_line(indices):
    with pytest.raises(PresetError, match="attn_layer_indices must list distinct layer numbers below 32"):
        spec_from_config(BAMBA_9B | {"attn_layer_indices": indices}, "test/config.json")


def test_lfm2_full_attn_idxs_without_layer_types():
    data = {k: v for k, v in LFM25_2_6B.items() if k != "layer_types"}
    data["full_attn_idxs"] = [i for i, t in enumerate(LFM25_LAYER_TYPES) if t == "full_attention"]
    spec = spec_from_config(data, "test/config.json")
    assert unread_keys(spec.notes) == []
    e = estimate(spec, context=4096)
    assert e.bytes_per_token == 8 * 8 * (64 + 64) * 2 and e.state_bytes == 22 * 2048 * 3 * 2
    both = spec_from_config(LFM25_2_6B | {"full_attn_idxs": [0]}, "test/config.json")
    assert any(n.startswith("ignored: full_attn_idxs [0]: layer_types decides") for n in both.notes)
    assert estimate(both, context=4096).bytes_per_token == 16_384
