"""kvcalc's engine arithmetic against real start-up logs (tests/fixtures/engine_logs/, INDEX.yaml
cites each thread). A log rounds its GiB figures, so each check holds for every budget the
printed figure could stand for, and fails if kvcalc's bytes per token or its pages were wrong.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from fitting import fit_with as fit

import kvcalc

LOGS = Path(__file__).parent / "fixtures" / "engine_logs"
GiB = 1024**3


def figures(name: str) -> dict[str, str]:
    text = (LOGS / name).read_text()
    found = {}
    for key, pattern in {
        "available_gib": r"Available KV cache memory: ([0-9.]+) GiB",
        "kv_tokens": r"GPU KV cache size: ([0-9,]+) tokens",
        "concurrency": r"Maximum concurrency for ([0-9,]+) tokens per request: ([0-9.]+)x",
        "sglang": r"KV Cache is allocated\. #tokens: ([0-9]+), K size: ([0-9.]+) GB, V size: ([0-9.]+) GB",
    }.items():
        match = re.search(pattern, text)
        if match:
            found[key] = match.groups() if len(match.groups()) > 1 else match.group(1)
    return found


def test_index_names_every_log_with_its_source():
    import yaml

    index = yaml.safe_load((LOGS / "INDEX.yaml").read_text())
    entries = index if isinstance(index, list) else index["logs"]
    assert {e["file"] for e in entries} == {p.name for p in LOGS.glob("*.log")}
    assert all(e["source"].startswith("http") for e in entries)


def test_vllm_qwen3_14b_pool_from_its_logged_budget():
    # LMCache#1739: "Available KV cache memory: 6.51 GiB", "GPU KV cache size: 42,656 tokens",
    # "Maximum concurrency for 32,768 tokens per request: 1.30x"; Qwen3-14B, TP 1, bf16
    seen = figures("vllm-lmcache1739-qwen3-14b-tp1.log")
    assert seen["available_gib"] == "6.51" and seen["kv_tokens"] == "42,656"
    spec = kvcalc.load_preset("qwen3-14b")
    weights = 10**9  # any: the budget is what the log states
    held = set()
    # every budget that prints as 6.51 GiB (round to 2 decimals), at its ends
    for budget in (int(Fraction(6505, 1000) * GiB) + 1, int(Fraction(6515, 1000) * GiB) - 1):
        r = fit(spec, weights + budget, context=32768, weights_bytes=weights, reserve=0, gpu_util=Fraction(1),
                version="0.20.0")
        assert r.kv_bytes_per_token_per_gpu == 40 * 2 * 8 * 128 * 2  # 163,840 B
        held.add(r.kv_blocks_per_gpu)
    blocks = 42656 // 16  # 2,666 pages of 16 tokens, as the log's token count says
    assert min(held) <= blocks <= max(held)
    # at a budget of exactly those pages kvcalc predicts both log lines
    r = fit(spec, weights + blocks * 16 * 163_840, context=32768, weights_bytes=weights, reserve=0,
            gpu_util=Fraction(1), version="0.20.0")
    assert r.engine_log_kv_tokens == 42_656 and f"{r.engine_log_max_concurrency:.2f}" == seen["concurrency"][1]


def test_sglang_qwen3_235b_tp4_buffers_from_its_logged_tokens():
    # vllm#21348: "KV Cache is allocated. #tokens: 367404, K size: 8.23 GB, V size: 8.23 GB" on 4 x H100.
    # SGLang's K buffer is (tokens + page_size) rows x layers x KV heads per GPU x head_dim x 2 B, in GiB.
    tokens, k_size, v_size = figures("sglang-21348-qwen3-235b-a22b-fp8-h100-tp4.log")["sglang"]
    spec = kvcalc.load_preset("qwen3-235b-a22b")
    r = fit(spec, 85_045_477_376, tp=4, context=8192, engine="sglang", reserve=0, weights_bytes=4 * 60 * 10**9,
            gpu_util=Fraction(93, 100))
    per_token = r.kv_bytes_per_token_per_gpu
    assert per_token == 94 * 2 * (4 // 4) * 128 * 2  # 48,128 B: one of 4 KV heads per GPU, K and V
    k_bytes = (int(tokens) + 1) * per_token // 2
    assert f"{k_bytes / GiB:.2f}" == k_size == v_size

