"""config.json keys kvcalc does not read, and the families added after the first reader:
BLOOM and MPT (ALiBi, no position table), ChatGLM/GLM-4 (multi_query_group_num, kv_channels).

Expected numbers are arithmetic on the config's own facts (layers, KV heads, head width,
bytes per element: 4 for fp32, 2 for fp16/bf16), never computed by kvcalc. The fixtures'
sources are in tests/fixtures/configs/README.md.
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
FOLDERS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def raw(name: str) -> dict:
    return json.loads((CONFIGS / name / "config.json").read_text())


def spec_of(data: dict):
    return spec_from_config(data, "test/config.json")


def written(tmp_path, data: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def has_note(spec, *words: str) -> bool:
    return any(all(w in note for w in words) for note in spec.notes)


# ---------------------------------------------------------------- 1. keys kvcalc does not read


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_fixture_warns_or_fails_strict(folder, runner, kvcalc_app):
    # Every real config's KV-path keys are read or explained by config_fields.IGNORED.
    spec = load_config_path(CONFIGS / folder)
    assert unread_keys(spec.notes) == [], spec.notes
    assert not any(note.startswith(("unread:", "untested:")) for note in spec.notes)
    result = runner.invoke(kvcalc_app, ["estimate", str(CONFIGS / folder), "-c", "512", "--strict"])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr


def test_at_least_the_27_original_fixtures_and_the_3_new_ones():
    assert len(FOLDERS) >= 30
    assert {"bloom-560m", "mpt-7b-instruct", "chatglm3-6b"} <= set(FOLDERS)


ODD = {"num_kv_groups_per_layer": [2] * 32}


def test_an_unknown_kv_key_is_a_note_and_a_json_warning():
    spec = spec_of(raw("llama-3-8b") | ODD)
    assert unread_keys(spec.notes) == ["num_kv_groups_per_layer"]
    result = estimate(spec, context=8192)
    assert any(w.startswith("unread: num_kv_groups_per_layer") for w in result.warnings)
    # still computed: Llama-3-8B's own fields, 2 x 32 layers x 8 KV heads x 128 x 2 bytes
    assert result.bytes_per_token == 2 * 32 * 8 * 128 * 2


def test_cli_warns_on_stderr_and_in_json(runner, kvcalc_app, tmp_path):
    path = written(tmp_path, raw("llama-3-8b") | ODD)
    result = runner.invoke(kvcalc_app, ["estimate", path, "-c", "8k", "--json"])
    assert result.exit_code == 0
    assert "warning: unread: num_kv_groups_per_layer" in result.stderr
    data = json.loads(result.stdout)
    assert any("num_kv_groups_per_layer" in w for w in data["warnings"])


@pytest.mark.parametrize("command", [
    ["estimate", "{path}", "-c", "8k", "--strict"],
    ["compare", "{path}", "llama-3-8b", "-c", "8k", "--strict"],
    ["fit", "{path}", "--gpu", "h100", "-c", "8k", "--strict"],
])
def test_strict_fails_naming_the_keys(command, runner, kvcalc_app, tmp_path):
    path = written(tmp_path, raw("llama-3-8b") | ODD | {"kv_sharing_groups": 4})
    result = runner.invoke(kvcalc_app, [path if part == "{path}" else part for part in command])
    assert result.exit_code == 1
    assert "--strict" in result.stderr
    assert "num_kv_groups_per_layer, kv_sharing_groups" in result.stderr
    assert result.stdout == ""


def test_compare_and_fit_warn_without_strict(runner, kvcalc_app, tmp_path):
    path = written(tmp_path, raw("llama-3-8b") | ODD)
    for args in (["compare", path, "-c", "8k"], ["fit", path, "--gpu", "h100", "-c", "8k"]):
        result = runner.invoke(kvcalc_app, args)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("warning: unread: num_kv_groups_per_layer") == 1, args


def test_keys_read_ignored_or_off_the_kv_path_do_not_warn():
    data = raw("llama-3-8b") | {
        "sliding_window": None,  # read (explicit null: no window)
        "attention_dropout": 0.1,  # IGNORED: training only
        "rope_local_base_freq": 10000.0,  # IGNORED: position-encoding frequency
        "pad_token_id": 0,  # no KV word
        "kv_quant": None,  # null: nothing said
    }
    assert unread_keys(spec_of(data).notes) == []


def test_a_key_inside_mpt_attn_config_is_checked_too():
    data = raw("mpt-7b-instruct")
    data["attn_config"] = data["attn_config"] | {"sliding_window_size": 512}
    assert unread_keys(spec_of(data).notes) == ["attn_config.sliding_window_size"]


def test_a_second_alias_that_disagrees_is_noted():
    spec = spec_of(raw("llama-3-8b") | {"n_layer": 24})
    assert spec.layers.count == 32
    assert "ignored: n_layer 24 (num_hidden_layers 32 wins)" in spec.notes
    assert not has_note(spec_of(raw("llama-3-8b") | {"n_layer": 32}), "n_layer")


def test_an_untested_model_type_says_so_in_one_warning(runner, kvcalc_app, tmp_path):
    path = written(tmp_path, raw("llama-3-8b") | {"model_type": "someones_llama"})
    result = runner.invoke(kvcalc_app, ["estimate", path, "-c", "8k"])
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert lines == ["warning: untested: model_type 'someones_llama' has not been tested with kvcalc; it was "
                     "read by field names alone, check the notes"]
    # untested is a warning, not a --strict failure: nothing was left unread
    assert runner.invoke(kvcalc_app, ["estimate", path, "-c", "8k", "--strict"]).exit_code == 0


# ---------------------------------------------------------------- 2. ALiBi: BLOOM and MPT


def test_bloom_560m_by_hand():
    spec = load_config_path(CONFIGS / "bloom-560m")
    # n_layer 24, n_head 16, hidden_size 1024 -> head_dim 64, MHA; no torch_dtype: fp32
    assert (spec.layers.count, spec.attention.heads, spec.attention.kv_heads) == (24, 16, 16)
    assert spec.attention.head_dim == 1024 // 16
    assert estimate(spec, context=1, kv_dtype="fp32").bytes_per_token == 2 * 24 * 16 * 64 * 4
    assert estimate(spec, context=1, kv_dtype="bf16").bytes_per_token == 2 * 24 * 16 * 64 * 2
    # no --kv-dtype: the float32 checkpoint as engines serve it, in bf16
    assert estimate(spec, context=1).bytes_per_token == 2 * 24 * 16 * 64 * 2
    assert estimate(spec, context=8192, kv_dtype="fp32").total_bytes == 2 * 24 * 16 * 64 * 4 * 8192


def test_bloom_has_no_length_field_so_the_limit_is_unknown():
    spec = load_config_path(CONFIGS / "bloom-560m")
    assert spec.max_context == 2048  # vLLM's assumption, a placeholder
    assert has_note(spec, "max context unknown", "vLLM assumes 2048")
    default = estimate(spec)
    assert default.context == 2048
    assert any(w.startswith("max context unknown") for w in default.warnings)
    # with a context given: no warning, and none for being "beyond" a limit nobody stated
    assert estimate(spec, context=65536).warnings == ()


def test_cli_bloom_with_and_without_context(runner, kvcalc_app):
    folder = str(CONFIGS / "bloom-560m")
    given = runner.invoke(kvcalc_app, ["estimate", folder, "-c", "64k", "--kv-dtype", "fp32", "--json"])
    assert given.exit_code == 0 and given.stderr == ""
    assert json.loads(given.stdout)["total_bytes"] == 2 * 24 * 16 * 64 * 4 * 65536
    served = runner.invoke(kvcalc_app, ["estimate", folder, "-c", "64k", "--json"])
    assert served.exit_code == 0 and served.stderr == ""
    out = json.loads(served.stdout)
    assert out["total_bytes"] == 2 * 24 * 16 * 64 * 2 * 65536 and out["kv_dtype"] == "bf16"
    assert any("--kv-dtype fp32 gives the float32 figure" in c for c in out["conventions"])
    missing = runner.invoke(kvcalc_app, ["estimate", folder, "--json"])
    assert missing.exit_code == 0
    assert "warning: max context unknown" in missing.stderr
    assert any("max context unknown" in w for w in json.loads(missing.stdout)["warnings"])


def test_mpt_7b_by_hand():
    spec = load_config_path(CONFIGS / "mpt-7b-instruct")
    # n_layers 32, n_heads 32, d_model 4096 -> head_dim 128; multihead_attention; bf16
    assert spec.max_context == 2048  # max_seq_len
    assert spec.attention.kind == "mha"
    assert estimate(spec, context=1).bytes_per_token == 2 * 32 * 32 * 128 * 2
    assert has_note(spec, "inferred: MHA, 32 KV heads (attn_config.attn_type multihead_attention)")


@pytest.mark.parametrize(("attn", "kv_heads"), [
    ({"attn_type": "multiquery_attention"}, 1),
    ({"attn_type": "grouped_query_attention", "kv_n_heads": 8}, 8),
    ({}, 32),  # no attn_type: MPT's default, multihead
])
def test_mpt_attn_types(attn, kv_heads):
    data = raw("mpt-7b-instruct")
    data["attn_config"] = {k: v for k, v in data["attn_config"].items() if k != "attn_type"} | attn
    assert estimate(spec_of(data), context=1).bytes_per_token == 2 * 32 * kv_heads * 128 * 2


def test_mpt_unknown_attn_type_or_bad_group_count_fails():
    data = raw("mpt-7b-instruct")
    data["attn_config"] = data["attn_config"] | {"attn_type": "ring_attention"}
    with pytest.raises(PresetError, match="attn_config.attn_type \"ring_attention\" is not one kvcalc knows"):
        spec_of(data)
    data["attn_config"] = data["attn_config"] | {"attn_type": "grouped_query_attention", "kv_n_heads": 0}
    with pytest.raises(PresetError, match="kv_n_heads must be a whole number from 1 to 32"):
        spec_of(data)


# ---------------------------------------------------------------- 3. ChatGLM / GLM-4


def test_chatglm3_6b_by_hand():
    spec = load_config_path(CONFIGS / "chatglm3-6b")
    # num_layers 28, multi_query_group_num 2 KV heads, kv_channels 128, float16
    assert (spec.layers.count, spec.attention.heads, spec.attention.kv_heads) == (28, 32, 2)
    assert spec.attention.head_dim == 128
    assert spec.max_context == 8192  # seq_length
    assert spec.dtype == "fp16"
    assert estimate(spec, context=1).bytes_per_token == 2 * 28 * 2 * 128 * 2
    assert estimate(spec).total_bytes == 2 * 28 * 2 * 128 * 2 * 8192


def test_glm4_9b_shape():
    # THUDM/glm-4-9b-chat's remote-code config: the same fields, 40 layers, 128k, bf16
    data = raw("chatglm3-6b") | {"num_layers": 40, "seq_length": 131072, "torch_dtype": "bfloat16",
                                  "_name_or_path": "THUDM/glm-4-9b-chat"}
    assert estimate(spec_of(data), context=1).bytes_per_token == 2 * 40 * 2 * 128 * 2


def test_chatglm_without_multi_query_is_mha_and_says_so():
    spec = spec_of(raw("chatglm3-6b") | {"multi_query_attention": False})
    assert estimate(spec, context=1).bytes_per_token == 2 * 28 * 32 * 128 * 2
    assert "ignored: multi_query_group_num 2 because multi_query_attention is false" in spec.notes


def test_chatglm_kv_channels_is_the_head_width_even_when_hidden_over_heads_differs():
    spec = spec_of(raw("chatglm3-6b") | {"kv_channels": 64})
    assert estimate(spec, context=1).bytes_per_token == 2 * 28 * 2 * 64 * 2


def test_chatglm_multi_query_without_group_count_fails():
    data = {k: v for k, v in raw("chatglm3-6b").items() if k != "multi_query_group_num"}
    with pytest.raises(PresetError, match="multi_query_attention is true, but multi_query_group_num is missing"):
        spec_of(data)


def test_chatglm_multi_query_attention_must_be_a_boolean():
    with pytest.raises(PresetError, match="multi_query_attention must be true or false"):
        spec_of(raw("chatglm3-6b") | {"multi_query_attention": "yes"})


def test_fit_json_and_variants_and_plot_carry_the_warnings(runner, kvcalc_app, tmp_path):
    path = written(tmp_path, raw("llama-3-8b") | ODD)
    data = json.loads(runner.invoke(kvcalc_app, ["fit", path, "--gpu", "h100", "-c", "8k", "--json"]).stdout)
    assert any("num_kv_groups_per_layer" in w for w in data["warnings"])
    for args in (["variants", path, "-c", "8k"], ["plot", path, "-r", "1k..8k"]):
        result = runner.invoke(kvcalc_app, args)
        assert result.exit_code == 0 and "warning: unread: num_kv_groups_per_layer" in result.stderr, args
