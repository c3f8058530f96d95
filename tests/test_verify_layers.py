"""The caches are real: cached decode equals recomputing attention over the whole prefix.

Tiny dimensions in float64, so every comparison is exact to rounding. References are
written here from the weights, as plain masked softmax attention with K/V repeated per
query head, independent of kvcalc's grouped ``attend``.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from kvcalc.spec import DenseAttention, MLAAttention  # noqa: E402
from kvcalc.verify.caches import (  # noqa: E402
    Codec,
    DynamicCache,
    PagedCache,
    PeakTracker,
    StaticCache,
)
from kvcalc.verify.layers import DenseLayer, MLALayer, apply_rope, rope_angles  # noqa: E402
from kvcalc.verify.measure import cuda_block_bytes, storage_bytes  # noqa: E402

F64 = torch.float64
HIDDEN = 32
B = 2


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def dense(heads=4, kv_heads=2, head_dim=8, **kw):
    kind = "mha" if kv_heads == heads else "mqa" if kv_heads == 1 else "gqa"
    a = DenseAttention(kind=kind, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    return DenseLayer(a, HIDDEN, F64, "cpu", gen(), **kw)


def mla(layout, q_lora_rank=12, **kw):
    a = MLAAttention(kind="mla", heads=4, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=6,
                     v_head_dim=5, q_lora_rank=q_lora_rank)
    return MLALayer(a, HIDDEN, F64, "cpu", gen(), layout=layout, **kw)


def make_cache(kind, layer, tokens, batch=B, kv_dtype="fp64"):
    codec = Codec(kv_dtype if kv_dtype != "fp64" else "fp32", F64)
    if kv_dtype == "fp64":  # keep float64 storage: exact comparisons
        codec.storage = F64
    feats = layer.cache_feats()
    if kind == "static":
        return StaticCache(codec, batch, feats, "cpu", capacity=tokens)
    if kind == "paged":
        return PagedCache(codec, batch, feats, "cpu", tokens=tokens, generator=gen(1))
    return DynamicCache(codec, batch, feats, "cpu", keep=tokens if (layer.window or layer.chunk) else None,
                        tracker=PeakTracker())


def inputs(T, batch=B, seed=3):
    return torch.randn(batch, T, HIDDEN, generator=gen(seed), dtype=F64)


def run_cached(layer, cache, x, prefill):
    """Prefill ``prefill`` tokens in one step, then decode the rest one token at a time."""
    T = x.shape[1]
    outs = [layer(x[:, :prefill], torch.arange(prefill), cache)]
    for t in range(prefill, T):
        outs.append(layer(x[:, t:t + 1], torch.arange(t, t + 1), cache))
    return torch.cat(outs, dim=1)


def naive_attention(q, k, v, window=None, chunk=None):
    """q (B, T, H, d), k and v (B, T, H, d*) with one K/V per query head; causal, windowed."""
    T = q.shape[1]
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    ok = j <= i
    if window:
        ok &= i - j < window
    if chunk:
        ok &= i // chunk == j // chunk
    probs = torch.softmax(scores.masked_fill(~ok, float("-inf")), dim=-1)
    return torch.einsum("bhts,bshd->bthd", probs, v)


def dense_reference(layer, x, window=None, chunk=None):
    B_, T, _ = x.shape
    H, Hk, d = layer.heads, layer.kv_heads, layer.head_dim
    cos, sin = rope_angles(torch.arange(T), d, F64)
    q = apply_rope((x @ layer.wq).view(B_, T, H, d), cos, sin)
    k = apply_rope((x @ layer.wk).view(B_, T, Hk, d), cos, sin)
    v = (x @ layer.wv).view(B_, T, Hk, d)
    rep = H // Hk  # query head h uses KV head h // rep
    k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    return naive_attention(q, k, v, window, chunk).reshape(B_, T, H * d) @ layer.wo


def mla_reference(layer, x, window=None, chunk=None):
    """DeepSeek MLA computed directly: every head's K and V decompressed from the latent."""
    a = layer.a
    B_, T, _ = x.shape
    nope, rope = a.qk_nope_head_dim, a.qk_rope_head_dim
    cos, sin = rope_angles(torch.arange(T), rope, F64)
    q = layer.queries(x)
    q = torch.cat((q[..., :nope], apply_rope(q[..., nope:], cos, sin)), dim=-1)
    c_kv, k_rope = layer.latent(x)
    w = layer.wkv_b.view(a.kv_lora_rank, a.heads, nope + a.v_head_dim)
    kv = torch.einsum("btr,rhe->bthe", c_kv, w)
    k_rope = apply_rope(k_rope[:, :, None], cos, sin).expand(B_, T, a.heads, rope)
    k = torch.cat((kv[..., :nope], k_rope), dim=-1)
    out = naive_attention(q, k, kv[..., nope:], window, chunk)
    return out.reshape(B_, T, a.heads * a.v_head_dim) @ layer.wo


CACHES = ["static", "dynamic", "paged"]


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_cached_decode_equals_recompute(cache, kv_heads):
    layer = dense(kv_heads=kv_heads)
    x = inputs(12)
    cached = run_cached(layer, make_cache(cache, layer, 12), x, prefill=7)
    whole = layer(x, torch.arange(12), make_cache(cache, layer, 12))  # one step over the whole prefix
    torch.testing.assert_close(cached, whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(cached, dense_reference(layer, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["gqa", "mqa"])
def test_grouped_equals_mha_with_kv_heads_repeated(kv_heads):
    grouped = dense(kv_heads=kv_heads)
    full = dense(kv_heads=4)
    rep, d = 4 // kv_heads, grouped.head_dim
    with torch.no_grad():
        full.wq.copy_(grouped.wq)
        full.wo.copy_(grouped.wo)
        # MHA head h gets the weights of the KV head GQA query head h reads from
        full.wk.copy_(grouped.wk.view(HIDDEN, kv_heads, d).repeat_interleave(rep, dim=1).view(HIDDEN, 4 * d))
        full.wv.copy_(grouped.wv.view(HIDDEN, kv_heads, d).repeat_interleave(rep, dim=1).view(HIDDEN, 4 * d))
    x = inputs(10)
    out_g = run_cached(grouped, make_cache("static", grouped, 10), x, prefill=6)
    out_m = run_cached(full, make_cache("static", full, 10), x, prefill=6)
    torch.testing.assert_close(out_g, out_m, rtol=0, atol=1e-12)


@pytest.mark.parametrize("q_lora_rank", [12, None], ids=["q-lora", "q-direct"])
@pytest.mark.parametrize("cache", CACHES)
def test_mla_latent_equals_expanded_equals_direct(cache, q_lora_rank):
    latent, expanded = mla("latent", q_lora_rank), mla("expanded", q_lora_rank)
    x = inputs(11)
    out_latent = run_cached(latent, make_cache(cache, latent, 11), x, prefill=7)
    out_expanded = run_cached(expanded, make_cache(cache, expanded, 11), x, prefill=7)
    direct = mla_reference(latent, x)
    torch.testing.assert_close(out_latent, direct, rtol=0, atol=1e-12)
    torch.testing.assert_close(out_expanded, direct, rtol=0, atol=1e-12)


def test_mla_latent_caches_only_the_latent():
    layer = mla("latent")
    cache = make_cache("static", layer, 9)
    run_cached(layer, cache, inputs(9), prefill=5)
    shapes = [tuple(t.shape) for t in cache.data_tensors()]
    assert shapes == [(B, 9, 16), (B, 9, 4)]  # c_kv (kv_lora_rank) and the rope key, no heads


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("prefill", [3, 13], ids=["prefill-within-window", "prefill-past-window"])
def test_rolling_window_equals_full_attention_with_window_mask(cache, prefill):
    window, T = 5, 20
    layer = dense(window=window)
    c = make_cache(cache, layer, window)  # W slots, not T
    out = run_cached(layer, c, inputs(T), prefill=prefill)
    torch.testing.assert_close(out, dense_reference(layer, inputs(T), window=window), rtol=0, atol=1e-12)
    if cache == "static":
        assert c.data_tensors()[0].shape[1] == window
        # position i lives in slot i mod W: the last W positions fill the ring
        assert sorted(c.slot_pos.tolist()) == list(range(T - window, T))
        assert all(c.slot_pos[p % window].item() == p for p in range(T - window, T))


def run_steps(layer, cache, x, sizes):
    """Feed x through the cache in steps of ``sizes`` tokens (a chunked prefill)."""
    outs, start = [], 0
    for size in sizes:
        outs.append(layer(x[:, start:start + size], torch.arange(start, start + size), cache))
        start += size
    assert start == x.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("kv_dtype, atol", [("fp64", 1e-12), ("fp32", 1e-6)],
                         ids=["storage-is-compute-dtype", "fp32-storage"])
@pytest.mark.parametrize("mask", [{"window": 5}, {"chunk": 4}], ids=["window", "chunk"])
def test_multi_token_steps_into_a_ring_that_holds_tokens(cache, kv_dtype, atol, mask):
    # steps of several tokens arrive while the ring already holds tokens: 3 then 4 wraps a
    # 5-slot ring, 6 is longer than the ring, 9 wraps a paged ring of one 16-token block
    sizes, T = (3, 4, 1, 6, 2, 9, 15), 40
    layer = dense(**mask)
    c = make_cache(cache, layer, mask.get("window") or mask.get("chunk"), kv_dtype=kv_dtype)
    out = run_steps(layer, c, inputs(T), sizes)
    torch.testing.assert_close(out, dense_reference(layer, inputs(T), **mask), rtol=0, atol=atol)


@pytest.mark.parametrize("cache", CACHES)
def test_chunked_layer_equals_chunk_mask(cache):
    chunk, T = 4, 14
    layer = dense(chunk=chunk)
    out = run_cached(layer, make_cache(cache, layer, chunk), inputs(T), prefill=6)
    torch.testing.assert_close(out, dense_reference(layer, inputs(T), chunk=chunk), rtol=0, atol=1e-12)


def test_mla_with_window():
    layer = mla("latent", window=4)
    out = run_cached(layer, make_cache("static", layer, 4), inputs(12), prefill=6)
    torch.testing.assert_close(out, mla_reference(layer, inputs(12), window=4), rtol=0, atol=1e-12)


def test_paged_cache_goes_through_a_shuffled_block_table():
    layer = dense()
    cache = make_cache("paged", layer, 40, batch=3)
    assert cache.block_table.shape == (3, 3)  # ceil(40 / 16) blocks per sequence
    assert sorted(cache.block_table.flatten().tolist()) == list(range(9))
    assert cache.block_table.flatten().tolist() != list(range(9))  # not laid out in order
    assert cache.data_tensors()[0].shape[0] == 9 * 16
    out = run_cached(layer, cache, inputs(40, batch=3), prefill=30)
    torch.testing.assert_close(out, dense_reference(layer, inputs(40, batch=3)), rtol=0, atol=1e-12)


def test_measured_bytes_by_hand():
    layer = dense(kv_heads=2, head_dim=8)
    codec = Codec("fp32", F64)
    cache = StaticCache(codec, 3, layer.cache_feats(), "cpu", capacity=12)
    run_cached(layer, cache, inputs(12, batch=3), prefill=8)
    # K and V x 2 KV heads x head_dim 8 x 12 tokens x batch 3 x 4 bytes
    assert storage_bytes(cache.data_tensors()) == 2 * 2 * 8 * 12 * 3 * 4
    # a view of the same storage is not counted twice
    assert storage_bytes(cache.data_tensors() + [cache.data_tensors()[0][:, :3]]) == 2 * 2 * 8 * 12 * 3 * 4


def fake_snapshot(first: torch.Tensor, second: torch.Tensor) -> list[dict]:
    """Allocator segments as torch.cuda.memory_snapshot() lists them, around two tensors.

    The first segment's blocks carry no address (older PyTorch): each starts where the one
    before it ends. The second's do. A third, on another device, also starts at ``second``.
    """
    a, b = first.data_ptr(), second.data_ptr()
    return [
        {"device": 0, "address": a - 1024, "total_size": 1024 + 4096 + 2048, "blocks": [
            {"size": 1024, "state": "inactive"},
            {"size": 4096, "state": "active_allocated"},  # first's block, larger than its request
            # free: an active block here could be where the allocator put a later tensor
            # (``missing`` below), which would make that tensor look found
            {"size": 2048, "state": "inactive"},
        ]},
        {"device": 0, "address": b, "total_size": 1536, "blocks": [
            {"address": b, "size": 512, "state": "active_allocated"},  # second's block
            {"address": b + 512, "size": 1024, "state": "inactive"},
        ]},
        {"device": 1, "address": b, "total_size": 8192, "blocks": [
            {"address": b, "size": 8192, "state": "active_allocated"},
        ]},
    ]


def test_cuda_block_bytes_reads_the_allocator_snapshot(monkeypatch):
    first, second, missing = torch.empty(1000), torch.empty(100), torch.empty(10)
    snapshot = fake_snapshot(first, second)
    monkeypatch.setattr(torch.cuda, "memory_snapshot", lambda: snapshot)
    cuda0 = torch.device("cuda", 0)
    assert cuda_block_bytes([first, second], cuda0) == 4096 + 512
    assert cuda_block_bytes([first, first[10:]], cuda0) == 4096  # one storage, one block
    assert cuda_block_bytes([first, missing], cuda0) is None  # a tensor whose block is not there
    assert cuda_block_bytes([first, second], torch.device("cuda", 1)) is None  # only second's is


def test_cuda_block_bytes_skips_blocks_not_in_use(monkeypatch):
    first, second = torch.empty(1000), torch.empty(100)
    snapshot = fake_snapshot(first, second)
    snapshot[1]["blocks"][0]["state"] = "inactive"  # second's block was freed
    monkeypatch.setattr(torch.cuda, "memory_snapshot", lambda: snapshot)
    assert cuda_block_bytes([first, second], torch.device("cuda", 0)) is None


def test_cuda_block_bytes_without_a_snapshot(monkeypatch):
    def unsupported():
        raise RuntimeError("memory_snapshot is not supported with cudaMallocAsync")

    monkeypatch.setattr(torch.cuda, "memory_snapshot", unsupported)
    assert cuda_block_bytes([torch.empty(10)], torch.device("cuda", 0)) is None


def test_dynamic_peak_by_hand():
    layer = dense(kv_heads=2, head_dim=8)
    tracker = PeakTracker()
    cache = DynamicCache(Codec("fp32", F64), 1, layer.cache_feats(), "cpu", keep=None, tracker=tracker)
    run_cached(layer, cache, inputs(10, batch=1), prefill=6)
    per_token = 2 * 2 * 8 * 4  # K and V, 2 heads x 8, fp32
    assert storage_bytes(cache.data_tensors()) == 10 * per_token
    # the last step: the old 9 tokens and the grown 10 both alive
    assert tracker.peak == (9 + 10) * per_token


@pytest.mark.parametrize("kv_dtype, bound", [("int8", 1 / 127), ("int4", 1 / 7), ("fp8", 1 / 16)])
def test_quantized_cache_round_trip(kv_dtype, bound):
    codec = Codec(kv_dtype, torch.float32)
    x = torch.randn(2, 5, 3, 8, generator=gen())  # (B, T, heads, head_dim)
    data, scale = codec.encode(x)
    back = codec.decode(data, scale)
    # each value within half a step (int) or a relative 2^-4 (fp8 e4m3 has 3 mantissa bits)
    if scale is None:
        assert (back - x).abs().max() <= bound * x.abs().max()
    else:
        assert ((back - x).abs() <= scale.unsqueeze(-1) * 0.5 + 1e-6).all()
        assert scale.shape == (2, 5, 3)  # one fp32 scale per token and head
    assert data.element_size() == 1
    assert data.shape[-1] == (4 if kv_dtype == "int4" else 8)  # int4: two values per byte


@pytest.mark.parametrize("kv_dtype", ["int8", "int4", "fp8", "bf16"])
def test_quantized_cache_still_attends(kv_dtype):
    layer = DenseLayer(DenseAttention(kind="gqa", heads=4, kv_heads=2, head_dim=8), HIDDEN,
                       torch.float32, "cpu", gen())
    cache = StaticCache(Codec(kv_dtype, torch.float32), B, layer.cache_feats(), "cpu", capacity=10)
    x = inputs(10).float()
    out = run_cached(layer, cache, x, prefill=6)
    exact = dense_reference(layer.double(), x.double()).float()
    assert (out - exact).abs().max() < 0.3 * exact.abs().max()


def test_rope_depends_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 8, dtype=F64), torch.randn(1, 1, 1, 8, dtype=F64)

    def rotated(x, p):
        cos, sin = rope_angles(torch.tensor([p]), 8, F64)
        return apply_rope(x, cos, sin)

    torch.testing.assert_close(rotated(q, 3).norm(), q.norm())
    dot = (rotated(q, 7) * rotated(k, 3)).sum()
    torch.testing.assert_close(dot, (rotated(q, 104) * rotated(k, 100)).sum())
    assert not torch.isclose(dot, (rotated(q, 7) * rotated(k, 6)).sum())
