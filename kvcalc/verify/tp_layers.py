"""One tensor-parallel rank's shard of an attention layer, as Megatron-style TP splits it.

Column-parallel in: the rank's query heads (``wq``, MLA's ``wq_b`` or ``wq`` and ``wkv_b``) and
the KV heads they read (``wk``, ``wv``). Row-parallel out: the rows of ``wo`` for its query
heads, so the layer returns this rank's part of the output and the caller all-reduces the
parts. MLA's down-projections (``wq_a``, ``wkv_a``) and its latent cache are whole on every
rank. The layers are ``DenseLayer`` and ``MLALayer`` themselves, given the local head counts and
weight slices: a shard attends exactly as the single-device layer does.

Weights are slices of one global weight per name (``WeightSlices``): each rank builds only its
slice, and the slices are exactly those of the weight a single process builds whole, so the
tests can compare a sharded run with the single-process layer.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import nn

from kvcalc.spec import DenseAttention, MLAAttention
from kvcalc.verify.layers import DenseLayer, MLALayer, _Attention
from kvcalc.verify.tp_plan import kv_heads_read, query_heads

_TABLE = 65521  # a prime, as in layers.make_weight: a tiled table never lines up with a row
_GATHER = 1 << 24  # elements gathered per block while filling a slice


class WeightSlices:
    """Slices of global weights: W[i, j] = table[(i * cols + j) % len(table)], with one table
    per weight name drawn from (seed, name), uniform in +-sqrt(3 / rows) like make_weight."""

    def __init__(self, seed: int, prefix: str, dtype, device):
        self.seed, self.prefix, self.dtype, self.device = seed, prefix, dtype, device

    def __call__(self, name: str, full: tuple[int, int], rows: range | None = None,
                 cols: range | None = None) -> nn.Parameter:
        n_rows, n_cols = full
        rows = rows if rows is not None else range(n_rows)
        cols = cols if cols is not None else range(n_cols)
        key = f"{self.prefix}.{name}"
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(key.encode()))
        size = min(_TABLE, n_rows * n_cols)
        bound = math.sqrt(3.0 / n_rows)
        table = torch.empty(size, dtype=torch.float64).uniform_(-bound, bound, generator=generator)
        width = len(cols)
        # row i of the slice is the table's run from (i * n_cols + cols.start) % size, width long,
        # wrapping: an extended table seen as overlapping windows gives each row by one index
        ext = table.repeat(-(-(size + width) // size))[: size + width].to(self.device, self.dtype)
        windows = ext.unfold(0, width, 1)  # (size + 1, width), a view
        out = torch.empty(len(rows), width, dtype=self.dtype, device=self.device)
        step = max(1, _GATHER // max(1, width))
        for r0 in range(0, len(rows), step):
            r = torch.arange(rows.start + r0, min(rows.stop, rows.start + r0 + step), device=self.device)
            out[r0: r0 + r.numel()] = windows[(r * n_cols + cols.start) % size]
        return nn.Parameter(out, requires_grad=False)


def _span(heads: range, width: int) -> range:
    """The columns (or rows) of ``heads`` in a weight laid out head by head, ``width`` each."""
    return range(heads.start * width, heads.stop * width)


class DenseShard(DenseLayer):
    """A rank's query heads of an MHA/MQA/GQA layer and the KV heads they read."""

    def __init__(self, a: DenseAttention, hidden: int, tp: int, tp_rank: int, weights: WeightSlices,
                 window: int | None = None, chunk: int | None = None):
        _Attention.__init__(self, window, chunk)
        q = query_heads(a.heads, tp, tp_rank)
        kv = kv_heads_read(a.heads, a.kv_heads, q)
        d, dv = a.head_dim, a.v_dim
        self.q_heads, self.kv_range = q, kv
        self.heads, self.kv_heads, self.head_dim, self.v_dim = len(q), len(kv), d, dv
        self.wq = weights("wq", (hidden, a.heads * d), cols=_span(q, d))  # column-parallel
        self.wk = weights("wk", (hidden, a.kv_heads * d), cols=_span(kv, d))
        self.wv = weights("wv", (hidden, a.kv_heads * dv), cols=_span(kv, dv))
        self.wo = weights("wo", (a.heads * dv, hidden), rows=_span(q, dv))  # row-parallel
        if len(q) % len(kv):  # fit's check_shape refuses such a TP before any rank starts
            raise ValueError(f"query heads {q.start}-{q.stop - 1} do not share KV heads {kv.start}-{kv.stop - 1} "
                             "evenly")


def mla_shard(a: MLAAttention, hidden: int, tp: int, tp_rank: int, weights: WeightSlices, layout: str,
              window: int | None = None, chunk: int | None = None) -> MLALayer:
    """A rank's query heads of an MLA layer; the down-projections and the latent stay whole."""
    q = query_heads(a.heads, tp, tp_rank)
    H, nope, rope, dv = a.heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
    full = {
        "wq_a": ((hidden, a.q_lora_rank or 0), None, None),
        "wq_b": ((a.q_lora_rank or 0, H * (nope + rope)), None, _span(q, nope + rope)),
        "wq": ((hidden, H * (nope + rope)), None, _span(q, nope + rope)),
        "wkv_a": ((hidden, a.kv_lora_rank + rope), None, None),
        "wkv_b": ((a.kv_lora_rank, H * (nope + dv)), None, _span(q, nope + dv)),
        "wo": ((H * dv, hidden), _span(q, dv), None),  # row-parallel
    }

    def make(name: str, shape: tuple[int, ...]) -> nn.Parameter:
        shape_full, rows, cols = full[name]
        return weights(name, shape_full, rows=rows, cols=cols)

    local = a.model_copy(update={"heads": len(q)})
    layer = MLALayer(local, hidden, weights.dtype, weights.device, None, layout=layout, window=window,
                     chunk=chunk, make=make)
    layer.q_heads = q
    return layer


def build_shard(a: DenseAttention | MLAAttention, hidden: int, tp: int, tp_rank: int, weights: WeightSlices,
                layout: str = "latent", window: int | None = None, chunk: int | None = None):
    if isinstance(a, DenseAttention):
        return DenseShard(a, hidden, tp, tp_rank, weights, window=window, chunk=chunk)
    return mla_shard(a, hidden, tp, tp_rank, weights, layout, window=window, chunk=chunk)


def full_layer(a: DenseAttention | MLAAttention, hidden: int, weights: WeightSlices, layout: str = "latent",
               window: int | None = None, chunk: int | None = None):
    """The single-process layer with the same global weights (the tests' reference)."""
    if isinstance(a, DenseAttention):
        return DenseLayer(a, hidden, weights.dtype, weights.device, None, window=window, chunk=chunk,
                          make=lambda name, shape: weights(name, shape))
    return MLALayer(a, hidden, weights.dtype, weights.device, None, layout=layout, window=window, chunk=chunk,
                    make=lambda name, shape: weights(name, shape))
