"""Attention layers at a model's real dimensions, with RoPE, causal masks and a KV cache.

``DenseLayer`` covers MHA, MQA and GQA through ``kv_heads``; ``MLALayer`` follows
DeepSeek-V2/V3 (optional low-rank queries, a down-projection to ``kv_lora_rank``, a decoupled
rope key shared by all heads, up-projections) and caches either the latent (c_kv and the rope
key; attention absorbs the up-projections into the query and the output) or expanded
per-head K and V. Weights are never the point: they are created empty in the compute dtype
and filled cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from kvcalc.spec import DenseAttention, MLAAttention
from kvcalc.verify.caches import LayerCache
from kvcalc.verify.plan import SCORE_BLOCK_BYTES

ROPE_BASE = 10000.0
_TABLE = 65521  # a prime: tiled over a weight, the table never lines up with a row
_NORM_EPS = 1e-6


def make_weight(shape: tuple[int, ...], dtype, device, generator: torch.Generator) -> nn.Parameter:
    """An (in, out) weight without nn.Linear's costly init: a small random table, tiled.

    Uniform in +-sqrt(3/in) keeps activations near unit scale, so nothing overflows or NaNs.
    """
    weight = torch.empty(shape, dtype=dtype, device=device)
    n = weight.numel()
    bound = math.sqrt(3.0 / shape[0])
    table = torch.empty(min(n, _TABLE), dtype=torch.float64).uniform_(-bound, bound, generator=generator)
    table = table.to(device=device, dtype=dtype)
    flat, size = weight.view(-1), table.numel()
    whole = n // size
    flat[: whole * size].view(whole, size).copy_(table.expand(whole, size))
    flat[whole * size:].copy_(table[: n - whole * size])
    return nn.Parameter(weight, requires_grad=False)


WeightMaker = Callable[[str, tuple[int, ...]], nn.Parameter]
"""(name, shape) -> the layer's weight of that name: how a layer gets its weights."""


def _tiled(dtype, device, generator: torch.Generator) -> WeightMaker:
    return lambda name, shape: make_weight(shape, dtype, device, generator)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    x = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + _NORM_EPS)
    return x if weight is None else x * weight


def rope_angles(pos: torch.Tensor, dim: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (T, dim // 2), for positions ``pos`` (T,).

    Angles are computed in float64 on the CPU (MPS has no float64), then moved."""
    inv = ROPE_BASE ** (-torch.arange(0, dim // 2 * 2, 2, dtype=torch.float64) / dim)
    angles = pos.cpu().to(torch.float64)[:, None] * inv[None, :]  # (T, dim // 2)
    return angles.cos().to(pos.device, dtype), angles.sin().to(pos.device, dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, heads, d) pairwise (first half with second half), as Llama/NeoX do."""
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half: 2 * half], x[..., 2 * half:]  # rest: an odd last dim
    c, s = cos[None, :, None, :], sin[None, :, None, :]  # (1, T, 1, d/2)
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c, rest), dim=-1)


def allowed(qpos: torch.Tensor, kpos: torch.Tensor, window: int | None = None,
            chunk: int | None = None) -> torch.Tensor:
    """Which keys each query may see: (T, S) bools. Causal; within ``window`` tokens
    (the query itself included); or within the same aligned ``chunk``."""
    q, k = qpos[:, None], kpos[None, :]
    ok = k <= q
    if window is not None:
        ok = ok & (q - k < window)
    if chunk is not None:
        ok = ok & (q // chunk == k // chunk)
    return ok


def attend(qs: list[torch.Tensor], ks: list[torch.Tensor], v: torch.Tensor, mask: torch.Tensor,
           scale: float) -> torch.Tensor:
    """softmax(sum_i q_i k_i^T * scale, masked) @ v.

    qs: each (B, T, Hq, d_i); ks: each (B, S, Hk, d_i); v (B, S, Hk, dv); mask (T, S) or (B, T, S).
    Returns (B, T, Hq, dv). Query heads that share a KV head are grouped, so K and V are used
    as stored, never repeated per query head; queries go in blocks so scores stay bounded.
    """
    B, T, Hq, _ = qs[0].shape
    S, Hk, dv = v.shape[1], v.shape[2], v.shape[3]
    g = Hq // Hk
    qs = [q.reshape(B, T, Hk, g, q.shape[-1]).permute(0, 2, 3, 1, 4) for q in qs]  # (B, Hk, g, T, d)
    ks = [k.permute(0, 2, 3, 1) for k in ks]  # (B, Hk, d, S)
    vt = v.transpose(1, 2)  # (B, Hk, S, dv)
    half = v.dtype in (torch.float16, torch.bfloat16)
    out = v.new_empty(B, Hk, g, T, dv)
    rows = max(1, SCORE_BLOCK_BYTES // max(1, B * Hq * S * 4))
    for t0 in range(0, T, rows):
        t1 = min(T, t0 + rows)
        tb = t1 - t0
        scores = sum(q[:, :, :, t0:t1].reshape(B, Hk, g * tb, -1) @ k for q, k in zip(qs, ks))
        scores = scores.view(B, Hk, g, tb, S) * scale  # (B, Hk, g, tb, S)
        # mask (T, S), or (B, T, S) when each sequence keeps its own tokens (a sparse indexer's top-k)
        block = mask[t0:t1] if mask.dim() == 2 else mask[:, None, None, t0:t1]
        scores = scores.masked_fill(~block, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32 if half else None).to(v.dtype)
        out[:, :, :, t0:t1] = (probs.view(B, Hk, g * tb, S) @ vt).view(B, Hk, g, tb, dv)
    return out.permute(0, 3, 1, 2, 4).reshape(B, T, Hq, dv)


class _Attention(nn.Module):
    def __init__(self, window: int | None, chunk: int | None):
        super().__init__()
        self.window, self.chunk = window, chunk

    def mask(self, qpos: torch.Tensor, kpos: torch.Tensor) -> torch.Tensor:
        return allowed(qpos, kpos, self.window, self.chunk)

    def cache_feats(self) -> list[tuple[int, ...]]:
        """The per-token shape of each part this layer caches."""
        raise NotImplementedError


class DenseLayer(_Attention):
    """MHA (kv_heads == heads), MQA (kv_heads == 1) or GQA: caches K and V per KV head."""

    def __init__(self, a: DenseAttention, hidden: int, dtype, device, generator,
                 window: int | None = None, chunk: int | None = None, make: WeightMaker | None = None):
        super().__init__(window, chunk)
        self.heads, self.kv_heads, self.head_dim, self.v_dim = a.heads, a.kv_heads, a.head_dim, a.v_dim
        d, dv = a.head_dim, a.v_dim  # K (and Q) heads d wide, V heads dv (MiMo-V2-Flash: 192 and 128)
        make = make or _tiled(dtype, device, generator)
        self.wq = make("wq", (hidden, a.heads * d))
        self.wk = make("wk", (hidden, a.kv_heads * d))
        self.wv = make("wv", (hidden, a.kv_heads * dv))
        self.wo = make("wo", (a.heads * dv, hidden))

    def cache_feats(self):
        return [(self.kv_heads, self.head_dim), (self.kv_heads, self.v_dim)]  # K, V

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hk, d, dv = self.heads, self.kv_heads, self.head_dim, self.v_dim
        cos, sin = rope_angles(pos, d, x.dtype)
        q = apply_rope((x @ self.wq).view(B, T, H, d), cos, sin)  # (B, T, H, d)
        k = apply_rope((x @ self.wk).view(B, T, Hk, d), cos, sin)  # (B, T, Hk, d)
        v = (x @ self.wv).view(B, T, Hk, dv)  # (B, T, Hk, dv)
        (keys, values), kpos = cache.update([k, v], pos)  # (B, S, Hk, d) and (B, S, Hk, dv)
        out = attend([q], [keys], values, self.mask(pos, kpos), 1.0 / math.sqrt(d))  # (B, T, H, dv)
        return out.reshape(B, T, H * dv) @ self.wo


class IndexerKeys(nn.Module):
    """DeepSeek-V3.2's lightning indexer (deepseek-ai/DeepSeek-V3.2-Exp inference/model.py, class
    Indexer): per token one key of ``head_dim`` (``wk``, a LayerNorm, RoPE on the first rope
    dims), cached in its own cache; ``heads`` query heads (from the compressed query, ``wq_b``)
    score every cached key, ReLU, weighted per head (``weights_proj``), and each query keeps the
    ``topk`` best tokens. The Hadamard rotation and fp8 scoring kernel of the reference change
    precision, not what is cached, and are left out."""

    def __init__(self, a: MLAAttention, hidden: int, dtype, device, make: WeightMaker):
        super().__init__()
        ix = a.indexer
        self.heads, self.head_dim, self.rope = ix.heads, ix.head_dim, min(a.qk_rope_head_dim, ix.head_dim)
        self.topk = ix.topk
        self.wq_b = make("index.wq_b", (a.q_lora_rank or hidden, ix.heads * ix.head_dim))
        self.wk = make("index.wk", (hidden, ix.head_dim))
        self.k_norm = nn.Parameter(torch.ones(ix.head_dim, dtype=dtype, device=device), False)
        self.k_bias = nn.Parameter(torch.zeros(ix.head_dim, dtype=dtype, device=device), False)
        self.weights_proj = make("index.weights_proj", (hidden, ix.heads))

    def cache_feats(self) -> list[tuple[int, ...]]:
        return [(self.head_dim,)]  # one key per token, shared by the indexer's heads

    def _rope(self, x: torch.Tensor, cos, sin) -> torch.Tensor:
        return torch.cat((apply_rope(x[..., : self.rope], cos, sin), x[..., self.rope:]), dim=-1)

    def forward(self, x: torch.Tensor, q_in: torch.Tensor, pos: torch.Tensor, kpos: torch.Tensor,
                allowed_mask: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """The keys each query may attend to: allowed_mask (T, S) narrowed to its top-k, (B, T, S)."""
        B, T, _ = x.shape
        cos, sin = rope_angles(pos, self.rope, x.dtype)
        k = nn.functional.layer_norm(x @ self.wk, (self.head_dim,), self.k_norm, self.k_bias, _NORM_EPS)
        k = self._rope(k[:, :, None], cos, sin)[:, :, 0]  # (B, T, d)
        q = self._rope((q_in @ self.wq_b).view(B, T, self.heads, self.head_dim), cos, sin)  # (B, T, h, d)
        (keys,), held = cache.update([k], pos)  # (B, S, d): the cached keys, read back
        if not torch.equal(held, kpos):  # both caches hold the same tokens, in the same order
            raise ValueError("the indexer's key cache and the latent cache hold different positions")
        weights = (x @ self.weights_proj) * self.heads**-0.5  # (B, T, h)
        S = keys.shape[1]
        keep = torch.zeros(B, T, S, dtype=torch.bool, device=x.device)
        rows = max(1, SCORE_BLOCK_BYTES // max(1, B * self.heads * S * 4))
        for t0 in range(0, T, rows):  # query blocks, so the (B, tb, h, S) scores stay bounded
            t1 = min(T, t0 + rows)
            scores = torch.relu(torch.einsum("bthd,bsd->bths", q[:, t0:t1], keys)) * self.head_dim**-0.5
            index = torch.einsum("bths,bth->bts", scores, weights[:, t0:t1])  # (B, tb, S)
            index = index.masked_fill(~allowed_mask[t0:t1], float("-inf"))
            top = index.topk(min(self.topk or S, S), dim=-1).indices  # (B, tb, k)
            keep[:, t0:t1].scatter_(-1, top, True)
        return keep & allowed_mask  # a query never gains a key the causal mask or window denies


class MLALayer(_Attention):
    """DeepSeek's multi-head latent attention, caching the latent or expanded K and V; with an
    indexer (DeepSeek-V3.2), its keys in a second cache and attention limited to their top-k."""

    def __init__(self, a: MLAAttention, hidden: int, dtype, device, generator, layout: str = "latent",
                 window: int | None = None, chunk: int | None = None, make: WeightMaker | None = None):
        super().__init__(window, chunk)
        if layout not in ("latent", "expanded"):
            raise ValueError(f"unknown MLA layout {layout!r}")
        self.a, self.layout = a, layout
        H, nope, rope, dv = a.heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
        make = make or _tiled(dtype, device, generator)
        if a.q_lora_rank:
            self.wq_a = make("wq_a", (hidden, a.q_lora_rank))
            self.q_norm = nn.Parameter(torch.ones(a.q_lora_rank, dtype=dtype, device=device), False)
            self.wq_b = make("wq_b", (a.q_lora_rank, H * (nope + rope)))
        else:
            self.wq = make("wq", (hidden, H * (nope + rope)))
        self.wkv_a = make("wkv_a", (hidden, a.kv_lora_rank + rope))
        self.kv_norm = nn.Parameter(torch.ones(a.kv_lora_rank, dtype=dtype, device=device), False)
        self.wkv_b = make("wkv_b", (a.kv_lora_rank, H * (nope + dv)))
        self.wo = make("wo", (H * dv, hidden))
        self.indexer = IndexerKeys(a, hidden, dtype, device, make) if a.indexer is not None else None

    def cache_feats(self):
        a = self.a
        if self.layout == "latent":
            return [(a.kv_lora_rank,), (a.qk_rope_head_dim,)]  # c_kv, k_rope
        return [(a.heads, a.qk_nope_head_dim + a.qk_rope_head_dim), (a.heads, a.v_head_dim)]  # K, V

    def compressed_query(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised low-rank query (B, T, q_lora_rank), or x when queries are not compressed."""
        return rms_norm(x @ self.wq_a, self.q_norm) if self.a.q_lora_rank else x

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        a = self.a
        if a.q_lora_rank:
            q = self.compressed_query(x) @ self.wq_b
        else:
            q = x @ self.wq
        return q.view(B, T, a.heads, a.qk_nope_head_dim + a.qk_rope_head_dim)  # (B, T, H, nope+rope)

    def latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c_kv (B, T, rank), normalised as DeepSeek caches it, and the unrotated rope key (B, T, rope)."""
        c_kv, k_rope = (x @ self.wkv_a).split([self.a.kv_lora_rank, self.a.qk_rope_head_dim], dim=-1)
        return rms_norm(c_kv, self.kv_norm), k_rope

    def up_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK (rank, H, nope) and W_UV (rank, H, dv): the latent's up-projections."""
        a = self.a
        w = self.wkv_b.view(a.kv_lora_rank, a.heads, a.qk_nope_head_dim + a.v_head_dim)
        return w[..., : a.qk_nope_head_dim], w[..., a.qk_nope_head_dim:]

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cache: LayerCache,
                index_cache: LayerCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        a = self.a
        H, nope, rope = a.heads, a.qk_nope_head_dim, a.qk_rope_head_dim
        scale = 1.0 / math.sqrt(nope + rope)
        cos, sin = rope_angles(pos, rope, x.dtype)
        q = self.queries(x)
        q_nope, q_rope = q[..., :nope], apply_rope(q[..., nope:], cos, sin)  # (B, T, H, nope|rope)
        c_kv, k_rope = self.latent(x)
        k_rope = apply_rope(k_rope[:, :, None], cos, sin)  # (B, T, 1, rope): one key for all heads
        w_uk, w_uv = self.up_weights()
        if self.layout == "latent":
            (c_all, r_all), kpos = cache.update([c_kv, k_rope[:, :, 0]], pos)  # (B, S, rank), (B, S, rope)
            mask = self._mask(x, pos, kpos, index_cache)
            # absorb W_UK into the query: q_nope . (W_UK c) == (q_nope W_UK^T) . c, so the cached
            # latent is attended to directly and never expanded per head
            q_lat = torch.einsum("bthn,rhn->bthr", q_nope, w_uk)  # (B, T, H, rank)
            c_heads = c_all[:, :, None]  # (B, S, 1, rank): one latent "KV head" for all H
            o_lat = attend([q_lat, q_rope], [c_heads, r_all[:, :, None]], c_heads, mask, scale)  # (B, T, H, rank)
            out = torch.einsum("bthr,rhv->bthv", o_lat, w_uv)  # (B, T, H, dv); W_UV absorbed after
        else:
            k_nope = torch.einsum("btr,rhn->bthn", c_kv, w_uk)  # (B, T, H, nope)
            v = torch.einsum("btr,rhv->bthv", c_kv, w_uv)  # (B, T, H, dv)
            k = torch.cat((k_nope, k_rope.expand(B, T, H, rope)), dim=-1)  # (B, T, H, nope+rope)
            (keys, values), kpos = cache.update([k, v], pos)
            q_full = torch.cat((q_nope, q_rope), dim=-1)  # (B, T, H, nope+rope)
            out = attend([q_full], [keys], values, self._mask(x, pos, kpos, index_cache), scale)  # (B, T, H, dv)
        return out.reshape(B, T, H * a.v_head_dim) @ self.wo

    def _mask(self, x: torch.Tensor, pos: torch.Tensor, kpos: torch.Tensor,
              index_cache: LayerCache | None) -> torch.Tensor:
        """The causal (or windowed) mask, narrowed by the indexer's top-k when the layer has one."""
        mask = self.mask(pos, kpos)  # (T, S)
        if self.indexer is None:
            return mask
        if index_cache is None:
            raise ValueError("this MLA layer has an indexer: its key cache must be given")
        return self.indexer(x, self.compressed_query(x), pos, kpos, mask, index_cache)  # (B, T, S)
