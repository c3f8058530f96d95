"""Verify verdicts from result objects alone: torch-free, so every way to fail is cheap to state."""

from __future__ import annotations

from dataclasses import replace

from kvcalc.verify.report import Allocator, GroupCheck, VerifyResult, summary_table, verdict

PER_TOKEN = 2 * 8 * 128 * 2  # K and V x 8 KV heads x 128 x bf16
BYTES = 64 * PER_TOKEN


def result(**changes) -> VerifyResult:
    """One full-attention layer of 64 tokens whose measured bytes equal the analytic bytes."""
    group = GroupCheck(name="full", kind="full", attention="gqa", layers=1, window=None, tokens=64,
                       analytic_bytes=BYTES, expected_bytes=BYTES, measured_bytes=BYTES)
    base = VerifyResult(
        model="m", device="cuda:0", cache="static", layers=1, layer_indices=(0,), context=64, batch=1,
        kv_dtype="bf16", mla_layout=None, compute_dtype="bfloat16", analytic_bytes=BYTES,
        block_rounded_bytes=None, measured_bytes=BYTES, scale_bytes=0, index_bytes=512,
        cache_peak_bytes=None, allocator=None, full_model_bytes=32 * BYTES, full_model_layers=32,
        groups=(group,), prefill=60, decode_steps=4, seconds=0.1, first_kv_layer=0,
    )
    return replace(base, **changes)


def allocator(other: int) -> Allocator:
    return Allocator(delta=BYTES + 512 + other, peak=2 * BYTES, tensors=3, rounding=0, whole_blocks=0,
                     other=other)


def test_the_allocator_agreeing_is_a_match():
    r = result(allocator=allocator(0))
    assert r.match
    assert verdict(r).startswith("MATCH") and "the CUDA allocator agrees" in verdict(r)


def test_unexplained_allocator_bytes_fail_the_verdict():
    r = result(allocator=allocator(4096))
    assert r.measured_bytes == r.expected_bytes  # the cache storages alone agree
    assert not r.match
    assert verdict(r) == "MISMATCH: the CUDA allocator grew by +4,096 B that no cache tensor explains."
    assert r.to_dict()["match"] is False and r.to_dict()["allocator"]["other"] == 4096


def test_token_problems_fail_the_verdict():
    r = result(token_problems=("layer 0 (full) was written with 63 of 64 tokens",))
    assert not r.match
    assert verdict(r) == "MISMATCH: the bytes agree, but layer 0 (full) was written with 63 of 64 tokens."


def test_only_no_kv_layers_is_nothing_to_verify():
    mamba = GroupCheck(name="mamba", kind="none", attention=None, layers=2, window=None, tokens=0,
                       analytic_bytes=0, expected_bytes=0, measured_bytes=0)
    r = result(layers=2, layer_indices=(0, 1), groups=(mamba,), analytic_bytes=0, measured_bytes=0,
               first_kv_layer=4)
    assert r.no_kv_layer and r.match and r.to_dict()["no_kv_layer"] is True
    assert "MATCH" not in verdict(r)
    assert verdict(r).startswith("Nothing to verify: no KV layer among those built (layers 0, 1)")
    assert "try --layers 5 to reach layer 4" in verdict(r)
    assert "has no layer with a KV cache" in verdict(replace(r, first_kv_layer=None))
    assert not result().no_kv_layer


def test_summary_counts_no_kv_runs_apart():
    mamba = GroupCheck(name="mamba", kind="none", attention=None, layers=1, window=None, tokens=0,
                       analytic_bytes=0, expected_bytes=0, measured_bytes=0)
    rows = [("a", result(), None), ("b", result(groups=(mamba,), analytic_bytes=0, measured_bytes=0), None)]
    grid = summary_table(rows, 1.0)
    assert grid.title.startswith("kvcalc verify --all: 2 of 2 passed (1 with no KV layer built: nothing to verify)")
    assert [str(row[6]) for row in grid.rows] == ["match", "no KV layer"]


def test_scales_are_said_to_be_outside_the_comparison():
    r = result(kv_dtype="int8", scale_bytes=2048, analytic_bytes=BYTES // 2, measured_bytes=BYTES // 2)
    r = replace(r, groups=(replace(r.groups[0], analytic_bytes=BYTES // 2, expected_bytes=BYTES // 2,
                                   measured_bytes=BYTES // 2),))
    assert r.match
    assert verdict(r).endswith("int8 scales (2,048 B) are reported apart, not part of this comparison.")
    wrong = replace(r, measured_bytes=BYTES)
    assert verdict(wrong).startswith("MISMATCH") and "reported apart" in verdict(wrong)
    assert "scales" not in verdict(result())
