"""kvcalc bench: the decode layers compute real attention, bytes read are the tensors', and the
command reports, guards memory and refuses bad input as a user runs it."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

import kvcalc  # noqa: E402
from kvcalc.bench.runner import DenseStep, LatentStep, bench  # noqa: E402
from kvcalc.spec import DenseAttention, MLAAttention  # noqa: E402


def reference(q, k, v, scale):
    """softmax(q k^T) v with K and V repeated per query head, in float64. q (B, H, dk)."""
    B, H, _ = q.shape
    Hk = k.shape[1]
    k = k.repeat_interleave(H // Hk, dim=1)
    v = v.repeat_interleave(H // Hk, dim=1)
    scores = torch.einsum("bhd,bhsd->bhs", q, k) * scale
    return torch.einsum("bhs,bhsd->bhd", torch.softmax(scores, -1), v)


@pytest.mark.parametrize("kernel", ["grouped", "sdpa"])
@pytest.mark.parametrize("kv_heads", [8, 2, 1])
def test_dense_step_is_attention_over_the_cache(kernel, kv_heads):
    a = DenseAttention(kind="gqa" if 1 < kv_heads < 8 else "mha" if kv_heads == 8 else "mqa", heads=8,
                       kv_heads=kv_heads, head_dim=16)
    gen = torch.Generator().manual_seed(1)
    layer = DenseStep(a, 64, 2, 40, torch.float64, torch.device("cpu"), gen, kernel)
    x = torch.randn(2, 64, dtype=torch.float64, generator=gen)
    out = layer(x, 7)
    q = (x @ layer.weights[0]).view(2, 8, 16)
    k_new, v_new = (x @ layer.weights[1]).view(2, 2, kv_heads, 16).unbind(1)
    assert torch.equal(layer.k[:, :, 7], k_new) and torch.equal(layer.v[:, :, 7], v_new)
    expected = reference(q, layer.k, layer.v, 1 / math.sqrt(16)).reshape(2, 128) @ layer.weights[2]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("kernel", ["grouped", "sdpa"])
def test_latent_step_equals_expanded_mla(kernel):
    a = MLAAttention(kind="mla", heads=4, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
                     q_lora_rank=24)
    gen = torch.Generator().manual_seed(2)
    layer = LatentStep(a, 64, 1, 30, torch.float64, torch.device("cpu"), gen, kernel)
    x = torch.randn(1, 64, dtype=torch.float64, generator=gen)
    out = layer(x, 29)
    # expand the cached latent into per-head K and V and attend directly
    w_b = layer.wkv_b.view(32, 4, 32)
    c, rope = layer.cache[:, 0, :, :32], layer.cache[:, 0, :, 32:]  # (1, S, rank), (1, S, rope)
    k = torch.cat((torch.einsum("bsr,rhn->bhsn", c, w_b[..., :16]), rope[:, None].expand(1, 4, 30, 8)), dim=-1)
    v = torch.einsum("bsr,rhv->bhsv", c, w_b[..., 16:])
    q = (x @ layer.wq[0] @ layer.wq[1]).view(1, 4, 24)
    expected = reference(q, k, v, 1 / math.sqrt(24)).reshape(1, 64) @ layer.wo
    torch.testing.assert_close(out, expected)


def test_bench_bytes_are_the_tensors_and_speedups_are_reported():
    spec = kvcalc.load_preset("gpt2")
    r = bench(spec, ["mha", "gqa-4", "mqa"], context=256, batch=2, steps=3, warmup=1)
    by_name = {v.variant: v for v in r.variants}
    # one layer: q and o 768 x 768, k and v 768 x (kv_heads x 64), fp32; cache 2 x 256 x 2 x kv_heads x 64 x 4
    for name, kv in (("mha", 12), ("gqa-4", 4), ("mqa", 1)):
        layer = 768 * (2 * 768 + 2 * kv * 64) * 4 + 2 * 256 * 2 * kv * 64 * 4
        assert by_name[name].kinds[0].bytes_read == layer
        assert by_name[name].bytes_read == 12 * layer
        assert by_name[name].predicted_speedup == by_name["mha"].bytes_read / by_name[name].bytes_read
        assert by_name[name].measured_speedup > 0 and by_name[name].model_attention_s > 0
    assert by_name["mha"].measured_speedup == 1
    assert r.peak_source == "measured copy" and r.peak_bytes_per_s > 0
    assert "grouped" in r.kernel


def test_bench_windows_hold_only_the_window():
    r = bench(kvcalc.load_preset("mistral-7b-v0.1"), context=8192, steps=2, warmup=0)
    assert r.variants[0].kinds[0].tokens == 4096


def test_cli_bench(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["bench", "gpt2", "-c", "128", "--steps", "2", "--variants", "mha,mqa",
                                        "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [v["variant"] for v in data["variants"]] == ["mha", "mqa"]
    assert data["context"] == 128 and data["device"] == "cpu"
    result = runner.invoke(kvcalc_app, ["bench", "gpt2", "-c", "128", "--steps", "2"])
    assert result.exit_code == 0 and "achieved" in result.stdout
    assert runner.invoke(kvcalc_app, ["bench", "gpt2", "--variants", "gqa-5"]).exit_code == 2
    result = runner.invoke(kvcalc_app, ["bench", "bert-base"])
    assert result.exit_code == 1 and "encoder" in result.stderr
    result = runner.invoke(kvcalc_app, ["bench", "llama-3-70b", "-c", "100M", "-b", "64"])
    assert result.exit_code == 1 and "bench needs about" in result.stderr and "Traceback" not in result.output


def test_mla_expanded_and_latent_read_the_same_weights():
    # both layouts project queries through the low-rank pair (q_lora_rank) and share kv_a, kv_b and o
    a = MLAAttention(kind="mla", heads=4, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
                     q_lora_rank=24)
    cpu, gen = torch.device("cpu"), torch.Generator().manual_seed(3)
    expanded = DenseStep(a, 64, 1, 10, torch.float64, cpu, gen, "grouped")
    latent = LatentStep(a, 64, 1, 10, torch.float64, cpu, gen, "grouped")
    weights = 64 * 24 + 24 * 4 * 24 + 64 * (32 + 8) + 32 * 4 * 32 + 4 * 16 * 64  # q_a, q_b, kv_a, kv_b, o
    for layer in (expanded, latent):
        assert sum(w.numel() for w in layer.weights) == weights
    out = expanded(torch.randn(1, 64, dtype=torch.float64, generator=gen), 3)
    assert out.shape == (1, 64)


def test_a_variant_named_twice_is_timed_once():
    r = bench(kvcalc.load_preset("gpt2"), ["mha", "mha", "mqa"], context=64, steps=2, warmup=0)
    assert [v.variant for v in r.variants] == ["mha", "mqa"]
    mqa = r.variants[1]
    assert mqa.model_predicted_speedup is not None and mqa.model_predicted_speedup > 1
