"""Pure state-space models (issue 19): Mamba, Falcon-Mamba, Mamba2 keep no KV cache, only a
constant state per sequence in every layer; estimate, compare and fit say so, and requests are
bounded by state slots.

Every expected number is worked by hand from the config's own fields, written out below.

SOURCES of the fixtures (tests/fixtures/configs/<folder>/config.json; README.md there):
- falcon-mamba-7b: https://huggingface.co/tiiuae/falcon-mamba-7b/blob/main/config.json, as copied in
  public test-model helpers that cite that URL (code search stored file ids 32332034728, 20337672980;
  the same 31 keys and values in each).
- mamba-130m-hf: https://huggingface.co/state-spaces/mamba-130m-hf config.json, as copied in a public
  unit test (code search stored file id 20308477880; its first keys, _name_or_path and architectures,
  as a second copy gives them, id 19888451571).
No verbatim copy of Mamba-Codestral-7B-v0.1's config.json was found; its shape is transformers'
Mamba2Config default (128 heads x 64, hidden 4096, state 128, 8 groups, 64 layers), used below
as a dict, not as a fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kvcalc.estimate import estimate
from kvcalc.sources.config_fields import unread_keys
from kvcalc.sources.config_json import load_config_path, spec_from_config
from kvcalc.spec import ModelSpec

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def raw(folder: str) -> dict:
    return json.loads((CONFIGS / folder / "config.json").read_text())


CODESTRAL_SHAPE = {
    "model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"], "hidden_size": 4096, "num_heads": 128,
    "head_dim": 64, "state_size": 128, "n_groups": 8, "conv_kernel": 4, "expand": 2, "num_hidden_layers": 64,
    "vocab_size": 32768, "torch_dtype": "bfloat16", "chunk_size": 256,
}


def test_falcon_mamba_7b_by_hand():
    spec = load_config_path(CONFIGS / "falcon-mamba-7b")
    assert unread_keys(spec.notes) == [], spec.notes
    assert spec.attention.kind == "none" and not spec.attends and spec.name == "falcon-mamba-7b"
    # intermediate_size 8192 is stated, and transformers keeps it (expand 16 would say 65,536)
    assert any(n.startswith("ignored: expand 16: intermediate_size 8192 is stated") for n in spec.notes)
    e = estimate(spec, context=32768)
    assert e.total_bytes == 0 and e.bytes_per_token == 0
    # 64 layers x (SSM 8192 x 16 + conv 8192 x 4) elements x 2 bytes (bf16)
    assert e.state_bytes == 64 * (8192 * 16 + 8192 * 4) * 2 == 20_971_520
    assert estimate(spec, context=32768, batch=3).state_bytes == 3 * 20_971_520  # per sequence, constant
    assert estimate(spec, context=1).state_bytes == 20_971_520


def test_mamba_130m_float32_served_in_bf16():
    spec = load_config_path(CONFIGS / "mamba-130m-hf")
    assert unread_keys(spec.notes) == [], spec.notes
    assert spec.dtype == "fp32" and spec.layers.count == 24
    # 24 layers x (1536 x 16 + 1536 x 4) elements; served in bf16 (2 bytes), fp32 on request (4 bytes)
    served = estimate(spec, context=2048)
    assert served.state_bytes == 24 * (1536 * 16 + 1536 * 4) * 2 == 1_474_560
    assert "float32" in served.conventions[0]
    assert estimate(spec, context=2048, kv_dtype="fp32").state_bytes == 24 * (1536 * 16 + 1536 * 4) * 4


def test_mamba_without_intermediate_size_takes_expand():
    data = raw("mamba-130m-hf")
    for key in ("intermediate_size", "d_inner"):
        data.pop(key)
    data["expand"] = 3
    spec = spec_from_config(data, "test/config.json")
    assert any("intermediate_size = expand x hidden_size = 3 x 768 = 2304" in n for n in spec.notes)
    assert estimate(spec, context=64, kv_dtype="fp32").state_bytes == 24 * (2304 * 16 + 2304 * 4) * 4


def test_mamba2_codestral_shape_by_hand():
    spec = spec_from_config(dict(CODESTRAL_SHAPE), "test/config.json")
    assert unread_keys(spec.notes) == [], spec.notes
    # SSM 128 heads x 64 x 128 = 1,048,576; conv (128 x 64 + 2 x 8 x 128) x 4 = 10,240 x 4 = 40,960; bf16; 64 layers
    assert estimate(spec, context=256_000).state_bytes == 64 * (128 * 64 * 128 + (8192 + 2 * 8 * 128) * 4) * 2
    assert estimate(spec, context=256_000).state_bytes == 139_460_608
    f32 = spec_from_config(CODESTRAL_SHAPE | {"mamba_ssm_dtype": "float32"}, "test/config.json")
    # the SSM part in fp32 (4 bytes), the conv part in bf16
    assert estimate(f32, context=64).state_bytes == 64 * (128 * 64 * 128 * 4 + 10240 * 4 * 2)


@pytest.mark.parametrize("change, words", [
    ({"expand": 3}, "num_heads x head_dim = 128 x 64 = 8192 must equal expand x hidden_size = 3 x 4096"),
    ({"ssm_cfg": {"d_state": 64}}, "ssm_cfg"),
    ({"state_size": 0}, "state_size, a positive whole number"),
])
def test_an_impossible_ssm_config_is_one_line(change, words, runner, kvcalc_app, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CODESTRAL_SHAPE | change))
    result = runner.invoke(kvcalc_app, ["estimate", str(path), "-c", "1k"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_no_attention_means_every_layer_keeps_a_state():
    with pytest.raises(ValidationError, match="attention kind none, but layer kinds full attend"):
        ModelSpec.model_validate({
            "name": "x", "source": "test", "parameters": "1", "max_context": 8, "dtype": "bf16",
            "attention": {"kind": "none"}, "layers": {"count": 2},
        })


def test_estimate_and_compare_through_the_cli(runner, kvcalc_app):
    folder = str(CONFIGS / "falcon-mamba-7b")
    result = runner.invoke(kvcalc_app, ["estimate", folder, "-c", "8k", "--strict", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["total_bytes"] == 0 and out["state_bytes"] == 20_971_520
    table = runner.invoke(kvcalc_app, ["estimate", folder, "-c", "8k"])
    assert table.exit_code == 0 and "no attention: a constant state per sequence" in table.stdout
    compared = runner.invoke(kvcalc_app, ["compare", folder, "llama-3-8b", "-c", "8k", "--json"])
    assert compared.exit_code == 0, compared.output
    rows = {r["model"]: r for r in json.loads(compared.stdout)}
    assert rows["falcon-mamba-7b"]["total_bytes"] == 0
    assert rows["llama-3-8b"]["total_bytes"] == 32 * 8 * (128 + 128) * 2 * 8192
    shown = runner.invoke(kvcalc_app, ["compare", folder, "llama-3-8b", "-c", "8k"])
    assert shown.exit_code == 0 and "none (state)" in shown.stdout


def test_variants_refuse_by_name(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["variants", str(CONFIGS / "falcon-mamba-7b"), "-c", "8k"])
    assert result.exit_code == 1
    assert "has no attention" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_fit_bounds_requests_by_state_slots(runner, kvcalc_app):
    folder = str(CONFIGS / "falcon-mamba-7b")
    result = runner.invoke(kvcalc_app, ["fit", folder, "--gpu", "h100", "-c", "8k", "--weights-bytes", "14G",
                                        "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["kv_bytes_per_token_per_gpu"] == 0
    # vLLM keeps conv_kernel - 1 = 3 conv columns: 64 x (8192 x 16 + 8192 x 3) x 2 bytes
    assert r["state_bytes_per_request_per_gpu"] == 64 * (8192 * 16 + 8192 * 3) * 2 == 19_922_944
    # every page one state (pages are the state's size); 'align' mode charges two pages per request
    assert r["kv_budget_bytes_per_gpu"] // 19_922_944 == r["kv_blocks_per_gpu"]
    assert r["max_concurrency"] == r["kv_blocks_per_gpu"] // 2
    assert any("state slots bound the requests" in n for n in r["notes"])
    assert r["engine_log_kv_tokens"] is None  # no log line predicted for a model without attention
    shown = runner.invoke(kvcalc_app, ["fit", folder, "--gpu", "h100", "-c", "8k", "--weights-bytes", "14G"])
    assert "state pages per GPU (no KV cache)" in shown.stdout and "MLA" not in shown.stdout


def test_fit_with_another_engine_refuses_by_name(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", str(CONFIGS / "falcon-mamba-7b"), "--gpu", "h100", "-c", "8k",
                                        "--weights-bytes", "14G", "--engine", "sglang"])
    assert result.exit_code == 1
    assert "has no attention" in result.stderr and "--engine vllm" in result.stderr


def test_the_state_matches_the_cache_transformers_builds():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from kvcalc.verify.reference import compare, hold

    data = raw("mamba-130m-hf")
    result = compare(load_config_path(CONFIGS / "mamba-130m-hf"), hold(data, 64), 64)
    assert result.ok and all(r.difference == 0 for r in result.rows), result.rows
    # transformers builds it in float32, with the whole conv kernel: 24 x (1536 x 16 + 1536 x 4) x 4
    assert sum(r.transformers_bytes for r in result.rows) == 24 * (1536 * 16 + 1536 * 4) * 4


def test_mamba_130m_parameters_by_hand():
    from kvcalc.capacity.params import parameter_count

    count = parameter_count(load_config_path(CONFIGS / "mamba-130m-hf"))
    # hidden 768, I 1536, N 16, conv_kernel 4, time_step_rank 48, vocab 50280, head tied (MambaConfig's default)
    mixer = (768 * 2 * 1536  # in_proj
             + 1536 * 4 + 1536  # conv1d weight and bias
             + 1536 * (48 + 2 * 16)  # x_proj
             + 48 * 1536 + 1536  # dt_proj weight and bias
             + 1536 * 16 + 1536  # A_log, D
             + 1536 * 768)  # out_proj
    assert mixer == 3_770_880
    norms = 24 * 768 + 768  # one RMSNorm per layer and the final one
    assert count.total == 50280 * 768 + 24 * mixer + norms == 129_135_360
    assert count.head == 0


def test_falcon_mamba_7b_parameters_by_hand():
    from kvcalc.capacity.params import parameter_count

    count = parameter_count(load_config_path(CONFIGS / "falcon-mamba-7b"))
    # hidden 4096, I 8192 (stated), N 16, kernel 4, time_step_rank 256, vocab 65024, head untied
    mixer = (4096 * 2 * 8192 + 8192 * 4 + 8192 + 8192 * (256 + 32) + 256 * 8192 + 8192 + 8192 * 16 + 8192
             + 8192 * 4096)
    assert count.total == 2 * 65024 * 4096 + 64 * mixer + 64 * 4096 + 4096 == 7_272_665_088


def test_mamba2_codestral_shape_parameters_by_hand_and_against_transformers():
    from kvcalc.capacity.params import parameter_count

    spec = spec_from_config(dict(CODESTRAL_SHAPE), "test/config.json")
    # in_proj 4096 x (2 x 8192 + 2 x 8 x 128 + 128), conv1d 10240 x 4 + 10240, dt_bias, A_log, D 128 each,
    # gated norm 8192, out_proj 8192 x 4096; 64 layers, one RMSNorm each and a final one; head untied
    mixer = 4096 * (2 * 8192 + 2 * 8 * 128 + 128) + 10240 * 4 + 10240 + 3 * 128 + 8192 + 8192 * 4096
    total = 2 * 32768 * 4096 + 64 * mixer + 64 * 4096 + 4096
    assert parameter_count(spec).total == total == 7_285_403_648
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_hf_config_weights import transformers_count

    assert transformers_count(dict(CODESTRAL_SHAPE)) == total


def test_fit_keeps_a_float32_models_state_in_the_served_dtype(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", str(CONFIGS / "mamba-130m-hf"), "--gpu", "h100", "-c", "2k", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    # float32 checkpoint served in bf16: 24 layers x (1536 x 16 + 1536 x (4 - 1)) x 2 bytes (vLLM: kernel - 1)
    assert r["state_bytes_per_request_per_gpu"] == 24 * (1536 * 16 + 1536 * 3) * 2 == 1_400_832
    assert r["kv_dtype"] == "bf16" and r["parameters"] == 129_135_360
