"""Decode ceilings (fit/variants --speed): bytes a step reads over bandwidth, derived by hand.

Weights read per step: every layer matrix, norm and the untied head once; of an untied input
embedding only the batch's rows; routed experts: those the batch touches (all chosen ones at
batch 1). KV read: every layer's held tokens for every sequence. Facts: model_facts.yaml.
"""

from __future__ import annotations

import json
from fractions import Fraction

import kvcalc
from kvcalc.capacity.speed import decode_speed, distinct_experts

BW = 3_350_000_000_000  # H100 SXM datasheet, bytes/s


def cdiv(a, b):
    return -(-a // b)


def test_llama_3_8b_batch_1():
    spec = kvcalc.load_preset("llama-3-8b")
    d = decode_speed(spec, BW, context=4096, batch=1)
    embedding = 128256 * 4096
    weights = 2 * (8_030_261_248 - embedding + 4096)  # bf16; one row of the input embedding
    kv = 32 * 4096 * (2 * 8 * 128 * 2)
    assert d.weights_bytes_read_per_step == weights
    assert d.kv_bytes_read_per_step == kv == 536_870_912
    assert d.tokens_per_s_per_sequence == BW / (weights + kv)
    assert d.dominant == "weights"
    # KV would overtake the weights at cdiv(weights, 131,072 B per token) = 114,517 tokens, past the
    # model's 8,192: never within its max context
    assert d.crossover_context is None
    longer = decode_speed(kvcalc.load_preset("llama-3.1-8b"), BW, context=4096, batch=1)  # same shapes, 128K
    assert longer.crossover_context == cdiv(weights, 32 * 2 * 8 * 128 * 2) == 114_517


def test_batch_multiplies_kv_and_tensor_parallelism_divides_it():
    spec = kvcalc.load_preset("llama-3-70b")
    d = decode_speed(spec, BW, context=32768, batch=16, tp=4)
    weights = cdiv(2 * (70_553_706_496 - 128256 * 8192 + 16 * 8192), 4)
    kv = 16 * 80 * 32768 * (2 * 2 * 128 * 2)  # 2 of 8 KV heads per GPU
    assert (d.weights_bytes_read_per_step, d.kv_bytes_read_per_step) == (weights, kv)
    assert d.tokens_per_s == 16 * BW / (weights + kv)
    assert d.dominant == "kv"


def test_moe_reads_the_experts_the_batch_touches():
    spec = kvcalc.load_preset("mixtral-8x7b")
    assert distinct_experts(8, 2, 1) == 2
    assert distinct_experts(8, 2, 4) == 8 * (1 - Fraction(6, 8) ** 4)
    d = decode_speed(spec, BW, context=1024, batch=1)
    embedding = 32000 * 4096
    assert d.weights_bytes_read_per_step == 2 * (12_879_925_248 - embedding + 4096)  # active at batch 1
    assert d.experts_read == 2
    d4 = decode_speed(spec, BW, context=1024, batch=4)
    expert = 3 * 4096 * 14336
    unread = 32 * (8 - 8 * (1 - Fraction(6, 8) ** 4)) * expert
    assert d4.weights_bytes_read_per_step == 2 * round(46_702_792_704 - embedding + 4 * 4096 - unread)


def test_windows_cap_the_kv_read():
    spec = kvcalc.load_preset("mistral-7b-v0.1")
    d = decode_speed(spec, BW, context=32768, batch=1)
    assert d.kv_bytes_read_per_step == 32 * 4096 * (2 * 8 * 128 * 2)  # the 4096-token window
    assert d.crossover_context is None  # 512 MiB of window never reaches 14 GB of weights


def test_mla_reads_the_latent_under_tp():
    spec = kvcalc.load_preset("deepseek-v3")
    d = decode_speed(spec, BW, context=8192, batch=1, tp=8)
    assert d.kv_bytes_read_per_step == 61 * 8192 * 576 * 2  # the whole latent on every GPU
    assert d.weights_dtype == "fp8"


def test_variants_speed_json(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["variants", "llama-3-8b", "-c", "32k", "-b", "8", "--speed", "--gpu",
                                        "h100", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r["speed"] for r in json.loads(result.stdout)}
    # MHA's K and V projections are 4x GQA-8's: 2 x 32 layers x 4096 x (4096 - 1024) more weights
    gqa_weights = 2 * (8_030_261_248 - 128256 * 4096 + 8 * 4096)
    mha_weights = gqa_weights + 2 * (2 * 32 * 4096 * 3072)
    kv_gqa = 8 * 32 * 32768 * (2 * 8 * 128 * 2)
    kv_mha = 4 * kv_gqa
    assert rows["gqa-8"]["bytes_read_per_step"] == gqa_weights + kv_gqa
    assert rows["mha"]["bytes_read_per_step"] == mha_weights + kv_mha
    assert abs(rows["gqa-8"]["speedup_vs_mha"] - (mha_weights + kv_mha) / (gqa_weights + kv_gqa)) < 1e-12
    result = runner.invoke(kvcalc_app, ["variants", "llama-3-8b", "--speed"])
    assert result.exit_code == 2 and "bandwidth" in result.output


def test_fit_speed_lines(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "32k",
                                        "--speed", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["speed"]["batch"]["batch"] == 1
    assert data["speed"]["full"]["batch"] == data["max_concurrency"]
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "32k",
                                        "--speed"])
    assert "Decode ceiling at one request" in result.stdout and "KV reads overtake the weights' from" in result.stdout
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu-memory", "24GiB", "--speed",
                                        "--bandwidth", "1TB/s", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["speed"]["batch"]["bandwidth_bytes_per_s"] == 10**12


def test_compare_speed_column(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-8b", "bert-base", "-c", "4k", "--gpu", "h100", "--speed",
                                        "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    weights = 2 * (8_030_261_248 - 128256 * 4096 + 4096)
    assert rows[0]["speed"]["bytes_read_per_step"] == weights + 32 * 4096 * 4096
    assert rows[1]["speed"] is None  # an encoder does not decode
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-8b", "-c", "4k", "--gpu", "h100", "--speed"])
    assert "tok/s/seq" in result.stdout


def test_plot_speed_names_the_crossing(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["plot", "llama-3.1-8b", "mistral-7b-v0.1", "--speed", "-b", "8",
                                        "-r", "1k..256k"])
    assert result.exit_code == 0, result.output
    weights = 2 * (8_030_261_248 - 128256 * 4096 + 8 * 4096)
    at = cdiv(weights, 8 * 32 * 2 * 8 * 128 * 2)  # batch 8 x 32 layers x K,V x 8 heads x 128 x bf16
    assert f"llama-3.1-8b: KV reads overtake the weights' from {at:,} tokens" in result.stdout
    assert "mistral-7b-v0.1: KV reads never reach" in result.stdout
