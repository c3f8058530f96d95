"""`kvcalc explain LOG` and `kvcalc fit --from-log LOG` on real start-up logs (tests/fixtures/
engine_logs/, INDEX.yaml cites each thread). Expected figures come from the log's own lines and
the model facts, derived by hand."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from kvcalc.logs.explain import preset_for
from kvcalc.sources.presets import available, preset_dirs

LOGS = Path(__file__).parent / "fixtures" / "engine_logs"
GiB = 1024**3


def explain(runner, app, name: str, *args: str) -> dict:
    result = runner.invoke(app, ["explain", str(LOGS / name), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def verdicts(data: dict) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in data["checks"]}


def test_vllm_qwen3_14b_log_is_reproduced_from_its_budget(runner, kvcalc_app):
    data = explain(runner, kvcalc_app, "vllm-lmcache1739-qwen3-14b-tp1.log", "--model", "qwen3-14b")
    assert data["engine"] == "vllm"
    # 42,656 = int(1.30 x 32,768) within the printed concurrency's rounding, and 6.51 GiB of
    # 163,840-byte tokens (40 layers x 2 x 8 heads x 128 x 2 B) in 16-token blocks gives 2,664..2,668
    # blocks, 2,666 of which are the logged 42,656 tokens
    assert verdicts(data) == {"kv_cache_tokens_is_concurrency_x_length": "equal", "kv_pool_from_budget": "equal"}
    pool = next(c for c in data["checks"] if c["name"] == "kv_pool_from_budget")
    page = 16 * 163_840  # every layer's 16-token page
    assert f"budgets from {2666 * page:,} to {2667 * page - 1:,} B reproduce" in pool["why"]
    facts = data["log"]["facts"]
    assert facts["available_kv_gib"][0]["printed"] == "6.51" and facts["available_kv_gib"][0]["line"] == 1
    assert {f["name"] for f in data["figures"]} >= {"available_kv_gib", "kv_cache_tokens", "max_concurrency"}


def test_sglang_buffers_are_reproduced_from_its_tokens(runner, kvcalc_app):
    data = explain(runner, kvcalc_app, "sglang-21348-qwen3-235b-a22b-fp8-h100-tp4.log", "--model", "qwen3-235b-a22b",
                   "--tp", "4")
    # (367,404 + 1) x 94 layers x 1 KV head x 128 x 2 B = 8.23 GiB of K
    assert verdicts(data) == {"kv_buffers_from_tokens": "equal"}
    assert round((367_404 + 1) * 94 * 128 * 2 / GiB, 2) == 8.23


def test_a_log_kvcalc_cannot_reproduce_says_why(runner, kvcalc_app):
    # vllm#21348: one worker's 8.11 GiB holds 11,301..11,315 blocks of 48,128 B x 16 (94 layers, 1 of
    # 4 KV heads per GPU), but the log says 178,880 tokens = 11,180 blocks: another rank's smaller
    # budget decided, which this excerpt does not show
    data = explain(runner, kvcalc_app, "vllm-21348-qwen3-235b-a22b-fp8-h100-tp4.log", "--model", "qwen3-235b-a22b",
                   "--tp", "4")
    check = next(c for c in data["checks"] if c["name"] == "kv_pool_from_budget")
    assert check["verdict"] == "differs" and "smallest wins" in check["why"]
    assert int(Decimal("8.115") * GiB) // (16 * 48_128) < 178_880 // 16 + 150


def test_without_the_model_only_model_free_checks_run(runner, kvcalc_app):
    data = explain(runner, kvcalc_app, "vllm-lmcache1739-qwen3-14b-tp1.log")
    assert verdicts(data)["kv_pool_from_budget"] == "not checked"
    assert any("give --model" in n for n in data["notes"])


def test_log_model_names_match_presets_by_name():
    names = available(preset_dirs(()))
    assert preset_for("Qwen/Qwen3-235B-A22B-FP8", names) == "qwen3-235b-a22b"
    assert preset_for("meta-llama/Meta-Llama-3-8B-Instruct", names) == "llama-3-8b"
    assert preset_for("/models/Qwen3-14B/", names) == "qwen3-14b"
    assert preset_for("someone/not-a-model", names) is None


def test_bad_logs_are_one_line(runner, kvcalc_app, tmp_path):
    not_a_log = Path(__file__).parent.parent / "pyproject.toml"
    result = runner.invoke(kvcalc_app, ["explain", str(not_a_log)])
    assert result.exit_code == 1 and "no vLLM or SGLang start-up lines" in result.stderr
    log = tmp_path / "cut.log"
    log.write_text("(APIServer pid=1) INFO 04-18 20:22:57 [utils.py:299] version 0.19.0\n"
                   "(APIServer pid=1) INFO 04-18 20:22:57 [utils.py:233] non-default args: {'model': 'x/y', "
                   "'max_model_len': 4096}\n")
    result = runner.invoke(kvcalc_app, ["explain", str(log)])
    assert result.exit_code == 1 and "no memory or KV-cache lines" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(kvcalc_app, ["explain", str(tmp_path / "missing.log")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1


def test_explain_reads_stdin(runner, kvcalc_app):
    text = (LOGS / "vllm-lmcache1739-qwen3-14b-tp1.log").read_bytes()
    result = runner.invoke(kvcalc_app, ["explain", "-", "--model", "qwen3-14b"], input=text)
    assert result.exit_code == 0, result.output
    assert "equal" in result.stdout and "kv_pool_from_budget" in result.stdout


def test_fit_from_log_takes_the_measured_memory(runner, kvcalc_app):
    # myoceane.fr, vLLM 0.19.0, gpt-oss-20b on an A100 80GB at --gpu-memory-utilization 0.65:
    # "Model loading took 13.72 GiB", "Available KV cache memory: 36.56 GiB"
    from kvcalc.capacity.gpus import find_gpu

    memory = find_gpu("a100-80gb").memory_bytes
    log = str(LOGS / "vllm-page-myoceane-gptoss20b-a100.log")
    weights = int(Decimal("13.72") * GiB)
    rest = -(-memory * 65 // 100) - weights - int(Decimal("36.56") * GiB)  # what vLLM kept besides weights and KV
    result = runner.invoke(kvcalc_app, ["fit", "gpt-oss-20b", "--from-log", log, "--gpu", "a100-80gb", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine_version"] == "0.19.0" and data["gpu_util"] == 0.65 and data["context"] == 131072
    assert data["weights_bytes_per_gpu"] == weights and data["reserve_bytes_per_gpu"] == rest
    assert data["kv_budget_bytes_per_gpu"] == int(Decimal("36.56") * GiB)  # the log's own budget, back
    # what if the same deployment ran at 0.9 with 32K requests
    result = runner.invoke(kvcalc_app, ["fit", "gpt-oss-20b", "--from-log", log, "--gpu", "a100-80gb", "--gpu-util",
                                        "0.9", "-c", "32k", "--json"])
    data = json.loads(result.stdout)
    assert data["kv_budget_bytes_per_gpu"] == -(-memory * 9 // 10) - weights - rest
    assert data["context"] == 32768 and any("from the log" in n for n in data["notes"])
    result = runner.invoke(kvcalc_app, ["fit", "gpt-oss-20b", "--from-log", log, "--gpu", "a100-80gb",
                                        "--engine", "sglang"])
    assert result.exit_code == 2 and "the log is vllm's" in result.stderr


def test_fit_from_an_sglang_log(runner, kvcalc_app, tmp_path):
    # No public excerpt has both "Load weight begin" and "Load weight end", so this log is written
    # from SGLang 0.5.23's own format strings (model_runner.py 1273-1379, scheduler.py 1264-1276,
    # docs/engines/sglang.md section 6) with figures for llama-3-8b on one H100 at f = 0.83.
    log = tmp_path / "sglang.log"
    log.write_text(
        "[2026-12-06 10:00:00] server_args=ServerArgs(model_path='meta-llama/Meta-Llama-3-8B', tp_size=1, "
        "mem_fraction_static=0.83, context_length=8192, chunked_prefill_size=8192, page_size=1)\n"
        "[2026-12-06 10:00:01 TP0] Load weight begin. avail mem=78.50 GB\n"
        "[2026-12-06 10:00:09 TP0] Load weight end. elapsed=8.00 s, type=LlamaForCausalLM, avail mem=63.54 GB, "
        "mem usage=14.96 GB.\n"
        "[2026-12-06 10:00:10 TP0] KV Cache is allocated. #tokens: 411197, K size: 25.10 GB, V size: 25.10 GB\n")
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--from-log", str(log), "--gpu", "h100", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    memory = 85_045_477_376  # the catalog's H100 (CUDA total)
    weights = int(Decimal("14.96") * GiB)
    held_before = memory - int(Decimal("78.50") * GiB)  # what the runtime held before the weights loaded
    assert data["engine"] == "sglang" and data["gpu_util"] == 0.83 and data["context"] == 8192
    assert data["weights_bytes_per_gpu"] == weights and data["reserve_bytes_per_gpu"] == held_before
    # SGLang's budget, A - P x (1 - f) = f x P - weights, with P = 78.50 GiB
    budget = (memory - held_before) * 83 // 100 - weights
    assert data["kv_budget_bytes_per_gpu"] == budget
    assert data["max_total_num_tokens"] == budget // (32 * 2 * 8 * 128 * 2)
    assert abs(data["max_total_num_tokens"] - 411_197) <= 411_197 // 1000  # the logged pool, within its rounding
