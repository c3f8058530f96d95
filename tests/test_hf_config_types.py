"""Config layouts transformers 5.24 writes for types kvcalc first met in its survey of every
causal-LM type (benchmarks/model_types.py, docs/model-types.md): read right, or refused naming
the field. Expected bytes are arithmetic from the config values written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvcalc.errors import PresetError
from kvcalc.estimate import estimate
from kvcalc.sources.config_json import spec_from_config

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def raw(name: str) -> dict:
    return json.loads((CONFIGS / name / "config.json").read_text())


def read(data: dict):
    return spec_from_config(data, "config.json")


def test_indexed_attention_layers_are_mla_with_their_indexer():
    # DeepSeek-V3.2-Exp as transformers 5.24 saves it: layer_types "indexed_attention" on all 61 layers
    data = raw("deepseek-v3.2-exp")
    data["layer_types"] = ["indexed_attention"] * 61
    data["indexer_types"] = ["full"] * 61
    e = estimate(read(data), context=1)
    # per layer: latent 512 + rope 64 in bf16, and the indexer's fp8 key of 128 plus one fp32 scale
    assert e.bytes_per_token == 61 * (512 + 64) * 2 + 61 * (128 + 4)


def test_shared_indexer_layers_are_refused_naming_the_field():
    data = raw("deepseek-v3.2-exp")
    data["layer_types"] = ["indexed_attention"] * 61
    data["indexer_types"] = ["full", "shared", "shared", "shared"] * 15 + ["full"]
    with pytest.raises(PresetError, match=r"indexer_types gives \[\"full\", \"shared\"\] layers"):
        read(data)
    del data["layer_types"], data["indexer_types"]  # the DeepSeek-V3.2 fields alone, as GLM's DSA writes them
    with pytest.raises(PresetError, match="index_topk_pattern gives"):
        read(data | {"index_topk_pattern": "FSSS" * 15 + "F"})
    # GlmMoeDsaConfig: layer i runs its own indexer iff max(i - offset + 1, 0) % freq == 0
    with pytest.raises(PresetError, match="index_topk_freq 4 gives"):
        read(data | {"index_topk_freq": 4})
    spec = read(data | {"index_topk_freq": 1})  # every layer its own: read, and said
    assert any("index_topk_freq 1: every layer runs its own indexer" in n for n in spec.notes)


def test_indexed_attention_without_mla_is_refused():
    data = raw("llama-3-8b")
    data["layer_types"] = ["indexed_attention"] * data["num_hidden_layers"]
    with pytest.raises(PresetError, match="indexed_attention"):
        read(data)


def mimo_v2_flash_defaults() -> dict:
    # transformers 5.24's MiMoV2FlashConfig defaults: no swa_* fields; layer 0 and every sixth
    # layer full, the rest sliding; its attention doubles num_key_value_heads on sliding layers
    return {
        "model_type": "mimo_v2_flash", "num_hidden_layers": 48, "num_attention_heads": 64,
        "num_key_value_heads": 4, "head_dim": 192, "v_head_dim": 128, "hidden_size": 4096,
        "sliding_window": 129, "max_position_embeddings": 262144, "dtype": "bfloat16",
        "layer_types": [
            "full_attention" if i == 0 or (i + 1) % 6 == 0 else "sliding_attention" for i in range(48)
        ],
    }


def test_mimo_v2_flash_without_swa_fields_doubles_sliding_kv_heads():
    spec = read(mimo_v2_flash_defaults())
    e = estimate(spec, context=1)
    full, sliding = 9, 39  # layers 0, 5, 11, ..., 47 are full
    assert e.bytes_per_token == full * 4 * (192 + 128) * 2 + sliding * 8 * (192 + 128) * 2
    assert any("2 x num_key_value_heads = 8" in note for note in spec.notes)
    # past the window the sliding layers stop growing: 129 tokens each
    e = estimate(spec, context=4096)
    assert e.total_bytes == full * 4096 * 4 * 320 * 2 + sliding * 129 * 8 * 320 * 2


def test_mimo_v2_flash_with_swa_fields_reads_them():
    data = mimo_v2_flash_defaults() | {"swa_num_key_value_heads": 16}
    e = estimate(read(data), context=1)
    assert e.bytes_per_token == 9 * 4 * 320 * 2 + 39 * 16 * 320 * 2


def test_nemotron_h_without_a_layer_count_takes_the_pattern_length():
    data = raw("nemotron-h-8b-base-8k")
    with_count = estimate(read(data), context=8192)
    del data["num_hidden_layers"]
    spec = read(data)
    assert spec.layers.count == 52
    assert any("one per entry of hybrid_override_pattern" in note for note in spec.notes)
    # 4 attention layers x 8 KV heads x (128 + 128) x 2 bytes per token, plus the same Mamba2 states
    e = estimate(spec, context=8192)
    assert e.bytes_per_token == 4 * 8 * 256 * 2
    assert e.total_bytes == with_count.total_bytes


def test_xglm_names_its_heads_attention_heads():
    # facebook/xglm-564M's config: d_model 1024, attention_heads 16, num_layers 24, float32
    data = {
        "model_type": "xglm", "d_model": 1024, "attention_heads": 16, "num_layers": 24,
        "max_position_embeddings": 2048, "torch_dtype": "float32",
    }
    e = estimate(read(data), context=1, kv_dtype="fp32")
    assert e.bytes_per_token == 2 * 24 * 16 * (1024 // 16) * 4


def test_a_token_index_is_not_an_unread_kv_key():
    data = raw("llama-3-8b") | {"image_token_index": 128256, "for_llm_compressor": False}
    assert not [note for note in read(data).notes if note.startswith("unread:")]
    data["kv_compression_ratio"] = 4  # a made-up key with KV words stays a warning
    assert any(note.startswith("unread: kv_compression_ratio") for note in read(data).notes)


LFM2_LIKE = {  # an LFM2-shaped config (layer_types as transformers' Lfm2Config writes them)
    "model_type": "lfm2", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "conv_L_cache": 3, "conv_bias": False, "max_position_embeddings": 128000,
    "dtype": "bfloat16", "vocab_size": 65536, "intermediate_size": 8192,
    "layer_types": ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv",
                    "full_attention", "conv", "full_attention", "conv", "full_attention", "conv",
                    "full_attention", "conv"],
}


def test_lfm2_conv_layers_hold_a_conv_state():
    spec = read(LFM2_LIKE)
    e = estimate(spec, context=64)
    # 6 attention layers x 8 KV heads x (64 + 64) x 2 bytes; 10 conv layers x 2048 x 3 x 2 bytes
    assert e.bytes_per_token == 6 * 8 * 128 * 2
    assert e.state_bytes == 10 * 2048 * 3 * 2
    assert any("vLLM keeps conv_L_cache - 1" in note for note in spec.notes)


def test_lfm2_conv_state_is_what_transformers_holds(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from kvcalc.cli import app

    path = tmp_path / "config.json"
    path.write_text(json.dumps(LFM2_LIKE))
    result = CliRunner().invoke(app, ["verify", str(path), "--reference", "transformers", "-c", "16", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["difference"] == 0
    # 6 x 16 tokens x 8 heads x 128 x 2 bytes of K/V, and 10 conv states of 2048 x 3 x 2 bytes
    assert data["kvcalc_bytes"] == data["transformers_bytes"] == 6 * 16 * 8 * 128 * 2 + 10 * 2048 * 3 * 2


def gemma4_text(**fields) -> dict:
    # Gemma4TextConfig's defaults as transformers 5.24 writes them (30 layers, every sixth full),
    # without the per_layer_config it derives, so kvcalc applies the class rules itself
    data = {
        "model_type": "gemma4_text", "num_hidden_layers": 30, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 512, "hidden_size": 2304,
        "max_position_embeddings": 131072, "attention_k_eq_v": False, "num_kv_shared_layers": 0,
        "dtype": "bfloat16",
        "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(30)],
    }
    return data | fields


def test_gemma4_full_layers_take_global_head_dim_512_by_default():
    spec = read(gemma4_text())
    e = estimate(spec, context=1)
    # 25 sliding layers x 4 KV heads x (256 + 256) x 2 B; 5 full layers x 4 x (512 + 512) x 2 B
    assert e.bytes_per_token == 25 * 4 * 512 * 2 + 5 * 4 * 1024 * 2
    assert any(note.startswith("inferred: global_head_dim = 512") for note in spec.notes)


def test_gemma4_global_kv_heads_count_only_with_k_eq_v():
    shaped = {"num_attention_heads": 16, "num_key_value_heads": 8, "global_head_dim": 512,
              "num_global_key_value_heads": 2}
    with_k_eq_v = estimate(read(gemma4_text(attention_k_eq_v=True, **shaped)), context=1)
    assert with_k_eq_v.bytes_per_token == 25 * 8 * 512 * 2 + 5 * 2 * 1024 * 2
    spec = read(gemma4_text(**shaped))  # attention_k_eq_v false: transformers keeps 8 KV heads there
    assert estimate(spec, context=1).bytes_per_token == 25 * 8 * 512 * 2 + 5 * 8 * 1024 * 2
    assert any(note.startswith("ignored: num_global_key_value_heads 2") for note in spec.notes)


def test_per_layer_config_decides_each_layer():
    table = {f"{i:02d}": {"head_dim": 512, "num_key_value_heads": 1} for i in (5, 11, 17, 23, 29)}
    spec = read(gemma4_text(per_layer_config=table, global_head_dim=128))
    assert estimate(spec, context=1).bytes_per_token == 25 * 4 * 512 * 2 + 5 * 1 * 1024 * 2
    with pytest.raises(PresetError, match=r"per_layer_config\[05\] sets sliding_window"):
        read(gemma4_text(per_layer_config={"05": {"sliding_window": 8}}))


def test_gemma4_kv_shared_layers_are_refused():
    with pytest.raises(PresetError, match="num_kv_shared_layers 10"):
        read(gemma4_text(num_kv_shared_layers=10))


def test_gemma4_global_layers_are_what_transformers_holds(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from kvcalc.cli import app

    path = tmp_path / "config.json"
    path.write_text(json.dumps(gemma4_text(attention_k_eq_v=True, num_attention_heads=16, num_key_value_heads=8,
                                           global_head_dim=512, num_global_key_value_heads=2)))
    result = CliRunner().invoke(app, ["verify", str(path), "--reference", "transformers", "-c", "600", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["rows"]}
    # full layers: 5 x 600 tokens x 2 KV heads x 1024 x 2 B, equal; sliding layers: transformers keeps 511
    full = rows["full_kv2_d512"]
    assert full["kvcalc_bytes"] == full["transformers_bytes"] == 5 * 600 * 2 * 1024 * 2
    assert rows["sliding"]["transformers_bytes"] == 25 * 511 * 8 * 512 * 2


def test_a_wrapper_of_a_refused_type_is_refused():
    # mllama nests its text model (model_type mllama_text_model) inside the refused wrapper type
    data = {"model_type": "mllama", "text_config": {"model_type": "mllama_text_model", "num_hidden_layers": 40,
                                                     "num_attention_heads": 32, "num_key_value_heads": 8,
                                                     "hidden_size": 4096}}
    with pytest.raises(PresetError, match="model_type 'mllama' is not supported: cross-attention"):
        read(data)


def test_gemma4_without_layer_types_builds_transformers_pattern():
    # Gemma4TextConfig without layer_types: every sixth layer full, and the last layer forced full;
    # 32 layers: full at 5, 11, 17, 23, 29 and 31 (6 full, 26 sliding)
    data = gemma4_text(num_hidden_layers=32)
    del data["layer_types"], data["sliding_window"]  # the class default window, 512, applies
    spec = read(data)
    order = spec.layers.order()
    assert [i for i, kind in enumerate(order) if kind.startswith("full")] == [5, 11, 17, 23, 29, 31]
    e = estimate(spec, context=1024)
    # sliding: 26 layers x 512 tokens x 4 KV heads x (256 + 256) x 2 B; full: 6 x 1024 x 4 x (512 + 512) x 2 B
    assert e.total_bytes == 26 * 512 * 4 * 512 * 2 + 6 * 1024 * 4 * 1024 * 2


def test_gemma4_layer_types_ending_in_sliding_gets_a_full_last_layer():
    data = gemma4_text()
    data["layer_types"][-1] = "sliding_attention"
    spec = read(data)
    assert spec.layers.order()[-1].startswith("full")
    assert any("the last layer is full attention" in note for note in spec.notes)


def test_mimo_v2_sliding_window_size_alone_is_the_window_plus_one():
    data = raw("mimo-v2.5")
    del data["sliding_window"]
    spec = read(data)
    windows = {kind.window for kind in spec.layers.kinds.values() if kind.type == "sliding"}
    assert windows == {data["sliding_window_size"] + 1}
    assert not any("hold the whole context" in note for note in spec.notes)


def test_layers_block_type_must_match_the_layer_count():
    data = raw("nemotron-h-8b-base-8k")
    kinds = {"M": "mamba", "*": "attention", "-": "mlp"}
    data["layers_block_type"] = [kinds[c] for c in data.pop("hybrid_override_pattern")]
    data["num_hidden_layers"] = 30
    with pytest.raises(PresetError, match="layers_block_type has 52 layers, but num_hidden_layers is 30"):
        read(data)


def test_multi_token_prediction_fields_are_not_unread_kv_keys():
    data = raw("nemotron-h-8b-base-8k") | {"mtp_layers_block_type": ["attention"], "num_nextn_predict_layers": 0}
    assert not [note for note in read(data).notes if note.startswith("unread:")]


def test_nemotron_h_state_dtype_is_what_transformers_holds():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from kvcalc.cli import app

    folder = str(CONFIGS / "nemotron-h-8b-base-8k")
    result = CliRunner().invoke(app, ["verify", folder, "--reference", "transformers", "-c", "16", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {row["name"]: row for row in data["rows"]}
    # 24 Mamba2 layers: SSM 128 x 64 x 128 in float32, conv (8192 + 2 x 8 x 128) x 4 in bf16
    assert rows["mamba2"]["transformers_bytes"] == rows["mamba2"]["kvcalc_bytes"] == 24 * (
        128 * 64 * 128 * 4 + 10240 * 4 * 2)
    assert data["ok"] and data["difference"] == 0
