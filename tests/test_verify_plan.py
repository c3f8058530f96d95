"""What verify instantiates and the analytic numbers it compares with: torch-free.

Expected bytes are written out by hand from the preset facts (layers, KV heads, head_dim).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.estimate import estimate
from kvcalc.sources.presets import load_file
from kvcalc.verify.plan import make_plan, reduced_spec, run_needs, weight_elements

PRESETS = Path(__file__).parent.parent / "model_presets"


def spec(name):
    return load_file(PRESETS / f"{name}.yaml")


def test_default_is_one_layer_of_each_kind_in_model_order():
    plan = make_plan(spec("gemma-3-27b"), context=64)
    assert plan.layer_names == ("local", "global")
    assert plan.layer_indices == (0, 5)
    assert plan.reduced.layers.count == 2
    # one sliding layer (64 < window 1024) and one full layer, 16 KV heads x 128, bf16
    assert plan.analytic.total_bytes == 2 * 64 * 2 * 16 * 128 * 2


def test_layers_n_takes_the_first_n_layers():
    plan = make_plan(spec("gemma-3-27b"), context=2048, layers=6)
    assert plan.layer_names == ("local",) * 5 + ("global",)
    # 5 local layers hold the 1024 window, the global one all 2048 tokens
    assert plan.analytic.total_bytes == (5 * 1024 + 2048) * 2 * 16 * 128 * 2


def test_analytic_is_estimate_of_the_reduced_spec():
    s = spec("llama-4-scout")
    plan = make_plan(s, context=9000, batch=2, layers=5, kv_dtype="fp8")
    reduced = reduced_spec(s, list(s.layers.order()[:5]))
    assert plan.analytic == estimate(reduced, context=9000, batch=2, kv_dtype="fp8")
    # layers 0-4 are chunked x3, global, chunked: 4 chunked layers hold 8192, the global one
    # 9000; 8 KV heads x 128, fp8, batch 2
    assert plan.analytic.total_bytes == (4 * 8192 + 9000) * 2 * 8 * 128 * 1 * 2
    assert plan.full_model.total_bytes == estimate(s, context=9000, batch=2, kv_dtype="fp8").total_bytes


def test_no_kv_layers_count_zero():
    plan = make_plan(spec("jamba-v0.1"), context=100)
    assert plan.layer_names == ("mamba", "attention")
    assert [g.bytes for g in plan.analytic.groups] == [0, 100 * 2 * 8 * 128 * 2]


def test_paged_rounds_each_layer_to_whole_blocks():
    # mistral: a 4096 window; 50 tokens -> 4 blocks of 16 = 64 tokens per sequence
    plan = make_plan(spec("mistral-7b-v0.1"), context=50, batch=2, cache="paged")
    assert plan.analytic.total_bytes == 50 * 2 * 2 * 8 * 128 * 2
    assert plan.expected_bytes == 64 * 2 * 2 * 8 * 128 * 2


def test_paged_window_rounds_up_not_the_context():
    data = spec("gemma-3-27b").model_dump()
    data["layers"]["kinds"]["local"]["window"] = 20  # a window that is not whole blocks
    from kvcalc.spec import ModelSpec

    plan = make_plan(ModelSpec.model_validate(data), context=100, cache="paged")
    per_token = 2 * 16 * 128 * 2
    assert plan.analytic.total_bytes == (20 + 100) * per_token
    assert plan.expected_bytes == (32 + 112) * per_token  # ceil16(20), ceil16(100)


def test_default_context_is_short():
    assert make_plan(spec("llama-3-8b")).context == 256
    assert make_plan(spec("llama-3-8b")).prefill == 252
    assert make_plan(spec("llama-3-8b"), context=1).decode_steps == 0


def test_too_many_layers_is_an_error():
    with pytest.raises(KvcalcError, match="more than llama-3-8b's 32 layers"):
        make_plan(spec("llama-3-8b"), layers=33)


def test_needs_grow_with_the_request():
    small = run_needs(make_plan(spec("llama-3.1-405b"), context=256), 4)
    huge = run_needs(make_plan(spec("llama-3.1-405b"), context=2**20, batch=4096), 4)
    assert small.cache == 256 * 2 * 8 * 128 * 2
    assert huge.cache == 2**20 * 4096 * 2 * 8 * 128 * 2
    # wq and wo 16384 x 16384, wk and wv 16384 x 1024, float32
    assert small.weights == (2 * 16384 * 16384 + 2 * 16384 * 1024) * 4
    assert huge.total > 16 * 2**40


def test_dynamic_cache_bound_covers_growth_and_trimming():
    per_token = 2 * 8 * 128 * 2  # K and V x 8 KV heads x 128, bf16
    # a full layer: the old tensor and the grown one, under twice the final context
    full = make_plan(spec("llama-3-8b"), context=8192, cache="dynamic")
    assert run_needs(full, 4).cache == 2 * 8192 * per_token
    # mistral trims to its 4096 window: up to the context at the prefill, plus 2 windows
    windowed = make_plan(spec("mistral-7b-v0.1"), context=16384, batch=2, cache="dynamic")
    assert windowed.expected_bytes == 4096 * per_token * 2
    assert run_needs(windowed, 4).cache == (16384 + 2 * 4096) * per_token * 2
    # below the window nothing is trimmed
    assert run_needs(make_plan(spec("mistral-7b-v0.1"), context=100, cache="dynamic"), 4).cache == 200 * per_token
    # a static cache is allocated once at its final size
    assert run_needs(make_plan(spec("mistral-7b-v0.1"), context=16384), 4).cache == 4096 * per_token


def test_weight_count_of_deepseek_v3_mla():
    a = spec("deepseek-v3").attention
    expected = (
        7168 * 1536 + 1536 + 1536 * 128 * (128 + 64)  # wq_a, q_norm, wq_b
        + 7168 * (512 + 64) + 512  # wkv_a, kv_norm
        + 512 * 128 * (128 + 128)  # wkv_b
        + 128 * 128 * 7168  # wo
    )
    assert weight_elements(a, 7168) == expected


def test_plan_and_report_do_not_import_torch():
    code = (
        "import sys, kvcalc.verify, kvcalc.verify.plan, kvcalc.verify.report\n"
        "print('TORCH' if 'torch' in sys.modules else 'CLEAN')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "CLEAN"


def test_verify_all_runs_short_unless_a_window_is_shorter_than_the_default():
    import kvcalc
    from kvcalc.verify.plan import DEFAULT_CONTEXT, SHORT_CONTEXT, all_context

    assert (DEFAULT_CONTEXT, SHORT_CONTEXT) == (256, 32)
    llama = kvcalc.load_preset("llama-3-8b")  # full attention only: the layers are the same at any length
    assert all_context(llama) == 32
    gemma2 = kvcalc.load_preset("gemma-2-9b")  # sliding window 4096: not exercised at 256 either
    assert all_context(gemma2) == 32
    short = llama.model_copy(update={"layers": llama.layers.model_copy(update={"kinds": {
        "full": llama.layers.kinds["full"],
        "local": kvcalc.spec.SlidingLayer(type="sliding", window=128)}, "pattern": ["local", "full"] * 16})})
    assert all_context(short) == 256  # a 128-token window is exercised at the default context
