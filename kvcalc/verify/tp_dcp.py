"""Decode context parallelism on verify's ranks: vLLM's interleaved KV and its log-sum-exp merge.

``verify --tp T --dcp C`` (vLLM 0.33.0, its file:line in docs/engines/parallel.md):

- groups: the DCP ranks are C consecutive ranks of the TP group (with PCP 1,
  distributed/parallel_state.py 2248-2258 reshapes the TP ranks into rows of C), so DCP rank
  ``tp_rank % C`` in group ``tp_rank // C``; they read the same KV heads (config/model.py
  1578-1606 asks for C <= tp / kv_heads, a KV head held by at least C ranks) or the whole latent.
- cache: token t of a request is stored on DCP rank ``t % C`` only (cp_kv_cache_interleave_size
  1: config/parallel.py 423-428, v1/attention/backends/utils.py 1166-1210), each rank's pages
  holding block tokens of its own (kv_cache_interface.py 610-648: a request needs
  cdiv(tokens, block x C) pages per rank).
- attention: each rank all-gathers the query heads of its DCP group (flash_attn.py 1516;
  MLA: the absorbed query, mla_attention.py 1116-1128), attends over the tokens it holds and
  returns the log-sum-exp with the output (flash_attn.py 1516-1610; MLA forward_mqa, 1133).
- merge: ``cp_lse_ag_out_rs`` (v1/attention/ops/dcp.py 438-500): all-gather the LSEs over the
  DCP group, total = logsumexp of them, each output times exp(lse - total) (0 where that is not
  a number: a rank holding none of a query's visible tokens, dcp.py 174-217), then
  reduce-scatter over the heads, so each rank gets back its own query heads, summed.
"""

from __future__ import annotations

import math

import torch

from kvcalc.verify.caches import LayerCache, PagedCache, StaticCache
from kvcalc.verify.layers import DenseLayer, MLALayer, apply_rope, rope_angles
from kvcalc.verify.plan import SCORE_BLOCK_BYTES
from kvcalc.verify.tp_layers import DenseShard


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def held_positions(context: int, dcp: int, dcp_rank: int) -> range:
    """The positions of a ``context``-token request one DCP rank stores: t % dcp == dcp_rank."""
    return range(dcp_rank, context, dcp)


class DCPGroup:
    """The DCP ranks of one TP group, as a process group (gloo or NCCL)."""

    def __init__(self, group, size: int, rank: int):
        self.group, self.size, self.rank = group, size, rank

    def gather_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, H, d) on each rank -> (B, T, size x H, d): the group's query heads, rank by rank."""
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(self.size)]
        self.group.allgather([parts], [t]).wait()
        return torch.cat(parts, dim=2)

    def merge(self, out: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        """out (B, T, size x H, dv) and lse (B, T, size x H) over this rank's tokens -> (B, T, H, dv),
        this rank's heads attended over every token of the group (cp_lse_ag_out_rs)."""
        lse = lse.contiguous()
        lses = [torch.empty_like(lse) for _ in range(self.size)]
        self.group.allgather([lses], [lse]).wait()
        total = torch.logsumexp(torch.stack(lses), dim=0)  # -inf only where no rank holds a visible token
        factor = torch.exp(lse - total)
        factor = torch.where(torch.isnan(factor), torch.zeros_like(factor), factor)
        out = (out * factor[..., None].to(out.dtype)).contiguous()
        heads = out.shape[2] // self.size
        mine = torch.empty_like(out[:, :, :heads]).contiguous()
        chunks = [c.contiguous() for c in out.split(heads, dim=2)]
        self.group.reduce_scatter([mine], [chunks]).wait()
        return mine


def attend_lse(qs: list[torch.Tensor], ks: list[torch.Tensor], v: torch.Tensor, mask: torch.Tensor,
               scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``layers.attend`` that also returns each query's log-sum-exp of its scores, (B, T, Hq):
    -inf (and a zero output) where this rank holds none of the keys a query may see."""
    B, T, Hq, _ = qs[0].shape
    S, Hk, dv = v.shape[1], v.shape[2], v.shape[3]
    g = Hq // Hk
    half = v.dtype in (torch.float16, torch.bfloat16)
    work = torch.float32 if half else v.dtype
    out = v.new_zeros(B, Hk, g, T, dv)
    lse = torch.full((B, Hk, g, T), float("-inf"), dtype=work, device=v.device)
    if S:
        qs = [q.reshape(B, T, Hk, g, q.shape[-1]).permute(0, 2, 3, 1, 4) for q in qs]  # (B, Hk, g, T, d)
        ks = [k.permute(0, 2, 3, 1) for k in ks]  # (B, Hk, d, S)
        vt = v.transpose(1, 2)  # (B, Hk, S, dv)
        rows = max(1, SCORE_BLOCK_BYTES // max(1, B * Hq * S * 4))
        for t0 in range(0, T, rows):
            t1 = min(T, t0 + rows)
            tb = t1 - t0
            scores = sum(q[:, :, :, t0:t1].reshape(B, Hk, g * tb, -1) @ k for q, k in zip(qs, ks))
            scores = (scores.view(B, Hk, g, tb, S) * scale).to(work).masked_fill(~mask[t0:t1], float("-inf"))
            block = torch.logsumexp(scores, dim=-1)  # (B, Hk, g, tb)
            probs = torch.exp(scores - block[..., None])
            probs = torch.where(torch.isnan(probs), torch.zeros_like(probs), probs).to(v.dtype)
            out[:, :, :, t0:t1] = (probs.view(B, Hk, g * tb, S) @ vt).view(B, Hk, g, tb, dv)
            lse[:, :, :, t0:t1] = block
    return out.permute(0, 3, 1, 2, 4).reshape(B, T, Hq, dv), lse.permute(0, 3, 1, 2).reshape(B, T, Hq)


class InterleavedCache(LayerCache):
    """One DCP rank's share of a layer's cache: of each request, the tokens t with t % dcp == rank,
    token t in slot t // dcp of a static or paged cache sized for cdiv(context, dcp) tokens."""

    def __init__(self, inner: StaticCache, dcp: int, dcp_rank: int):
        super().__init__(inner.codec, inner.batch, inner.feats, inner.device)
        self.inner, self.dcp, self.dcp_rank = inner, dcp, dcp_rank
        self.capacity = inner.capacity * dcp

    def update(self, parts, pos):
        mine = pos % self.dcp == self.dcp_rank
        if bool(mine.any()):
            local = pos[mine] // self.dcp
            self.inner._write([p[:, mine] for p in parts], local)
            self.inner.length = int(local[-1]) + 1
        self.length = int(pos[-1]) + 1  # the request's tokens so far, whichever rank holds them
        return self.inner._read(), self.positions()

    def positions(self):
        return self.inner.positions() * self.dcp + self.dcp_rank

    def data_tensors(self):
        return self.inner.data_tensors()

    def scale_tensors(self):
        return self.inner.scale_tensors()

    def index_tensors(self):
        return self.inner.index_tensors()


def interleaved_cache(cache: str, codec, batch: int, feats, device, context: int, dcp: int, dcp_rank: int,
                      generator: torch.Generator) -> InterleavedCache:
    """Every DCP rank allocates the same slots, cdiv(context, dcp) per request (paged: in 16-token
    blocks, cdiv(context, 16 x dcp) of them, vLLM's pages per rank)."""
    tokens = cdiv(context, dcp)
    if cache == "paged":
        inner = PagedCache(codec, batch, feats, device, tokens=tokens, generator=generator)
    else:
        inner = StaticCache(codec, batch, feats, device, capacity=tokens)
    return InterleavedCache(inner, dcp, dcp_rank)


def dcp_token_problems(layer_indices, caches, context: int, dcp: int, dcp_rank: int) -> tuple[str, ...]:
    """A DCP rank's caches must hold exactly its interleaved positions of the whole context."""
    want = torch.tensor(held_positions(context, dcp, dcp_rank), dtype=torch.int64)
    problems = []
    for index, (name, cache) in zip(layer_indices, caches):
        if cache is None:
            continue
        held = cache.positions().cpu().sort().values
        if cache.length != context or not torch.equal(held, want):
            problems.append(f"layer {index} ({name}) on DCP rank {dcp_rank} does not hold exactly positions "
                            f"t % {dcp} == {dcp_rank} of 0-{context - 1:,}")
    return tuple(problems)


class DenseDCP:
    """A DenseShard's forward with decode context parallelism."""

    dcp: DCPGroup

    def forward(self: DenseLayer, x: torch.Tensor, pos: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hk, d, dv = self.heads, self.kv_heads, self.head_dim, self.v_dim
        cos, sin = rope_angles(pos, d, x.dtype)
        q = apply_rope((x @ self.wq).view(B, T, H, d), cos, sin)
        k = apply_rope((x @ self.wk).view(B, T, Hk, d), cos, sin)
        v = (x @ self.wv).view(B, T, Hk, dv)
        (keys, values), kpos = cache.update([k, v], pos)  # this rank's tokens only
        group_q = self.dcp.gather_heads(q)  # the DCP group's query heads, all reading these KV heads
        out, lse = attend_lse([group_q], [keys], values, self.mask(pos, kpos), 1.0 / math.sqrt(d))
        out = self.dcp.merge(out, lse)  # (B, T, H, dv): this rank's heads over every token
        return out.reshape(B, T, H * dv) @ self.wo


class MLADCP:
    """An MLA shard's forward (latent layout) with decode context parallelism."""

    dcp: DCPGroup

    def forward(self: MLALayer, x: torch.Tensor, pos: torch.Tensor, cache: LayerCache,
                index_cache: LayerCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        a = self.a
        H, nope, rope = a.heads, a.qk_nope_head_dim, a.qk_rope_head_dim
        cos, sin = rope_angles(pos, rope, x.dtype)
        q = self.queries(x)
        q_nope, q_rope = q[..., :nope], apply_rope(q[..., nope:], cos, sin)
        c_kv, k_rope = self.latent(x)
        k_rope = apply_rope(k_rope[:, :, None], cos, sin)
        w_uk, w_uv = self.up_weights()
        (c_all, r_all), kpos = cache.update([c_kv, k_rope[:, :, 0]], pos)  # this rank's tokens only
        q_lat = torch.einsum("bthn,rhn->bthr", q_nope, w_uk)  # W_UK absorbed, as vLLM's decode does
        q_lat, q_rope = self.dcp.gather_heads(q_lat), self.dcp.gather_heads(q_rope)
        c_heads = c_all[:, :, None]
        o_lat, lse = attend_lse([q_lat, q_rope], [c_heads, r_all[:, :, None]], c_heads, self.mask(pos, kpos),
                                1.0 / math.sqrt(nope + rope))
        o_lat = self.dcp.merge(o_lat, lse)  # (B, T, H, rank): this rank's heads
        out = torch.einsum("bthr,rhv->bthv", o_lat, w_uv)
        return out.reshape(B, T, H * a.v_head_dim) @ self.wo


class DenseDCPShard(DenseDCP, DenseShard):
    """A DenseShard (its heads and weight slices) attending as a DCP rank."""


class MLADCPShard(MLADCP, MLALayer):
    """An MLA shard attending as a DCP rank."""


def with_dcp(layer: DenseShard | MLALayer, group: DCPGroup):
    """The shard built by ``build_shard``, attending as a DCP rank of ``group``: the same module
    and weights, its forward DCP's (the class changes, nothing is copied)."""
    layer.__class__ = MLADCPShard if isinstance(layer, MLALayer) else DenseDCPShard
    layer.dcp = group
    return layer
