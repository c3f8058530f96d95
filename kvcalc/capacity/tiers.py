"""A CPU or disk KV tier beside the GPU pool: the tokens it holds as each engine sizes it, what
reloading one request from it costs at the host link's bandwidth, and what recomputing that
request's prefill would cost at the GPU's peak instead.

Pure arithmetic. The engines' own sizing rules are in ``engines/<engine>.py`` (``tier_tokens``);
docs/fit.md section 9 states both formulas.
"""

from __future__ import annotations

from kvcalc.capacity.engines.base import TierAsk
from kvcalc.capacity.layers import cdiv
from kvcalc.spec import MLAAttention, ModelSpec, NoKVLayer

PCIE_GEN5_X16 = 64 * 10**9  # bytes per second one way: the default --host-bandwidth


def attention_flops(spec: ModelSpec, tokens: int) -> int:
    """Prefill attention over ``tokens`` prompt tokens: per attending layer 2 x T x held x heads x
    (K width + V width), QK^T and AV each 2 x T x held x heads x width; held is T, or a sliding or
    chunked layer's span when shorter. No causal halving: every query is counted against every
    held key, as the issue's formula 2 x layers x T^2 x heads x head_dim x 2 does."""
    total = 0
    for name in spec.layers.order():
        kind = spec.layers.kinds[name]
        if isinstance(kind, NoKVLayer):
            continue
        a = spec.attention_of(name)
        if isinstance(a, MLAAttention):  # prefill runs MLA expanded: per-head nope + rope keys and values
            width = a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim
        else:
            width = a.head_dim + a.v_dim
        span = getattr(kind, "span", None)
        held = tokens if span is None else min(tokens, span)
        total += 2 * tokens * held * a.heads * width
    return total


def prefill_flops(spec: ModelSpec, tokens: int, active_parameters: int) -> int:
    """2 x active parameters x T (every matmul once per token) + the attention term above."""
    return 2 * active_parameters * tokens + attention_flops(spec, tokens)


def tier(spec: ModelSpec, d, medium: str, size: int, backend: str, worst, context: int, active: int | None,
         weights_dtype: str, host_bandwidth: int, ratio=None, cpu_size: int = 0) -> dict:
    """A tier's tokens and requests, the reload time per GPU at ``host_bandwidth`` and the prefill
    recompute time on the TP group at the GPU's dense peak; ``note`` says it in one line."""
    mla = spec.attends and all(isinstance(spec.attention_of(n), MLAAttention) for n, k in spec.layers.kinds.items()
                               if not isinstance(k, NoKVLayer))
    ask = TierAsk(medium=medium, backend=backend, size=size, block=worst.block_size,
                  bytes_per_token=worst.per_token_bytes, world=d.tp * d.pp, mla=mla and d.pp == 1,
                  pool_tokens=worst.tokens, ratio=ratio, cpu_size=cpu_size,
                  hybrid=any(k.type != "full" for k in spec.layers.kinds.values()))
    tokens, sized, how = d.engine.tier_tokens(ask)
    if ask.hybrid:
        how += ("; this model has sliding, chunked or state layers, which the engine keeps in groups or pools "
                "of their own: counted as if every layer's bytes per token were one pool, an approximation")
    request = cdiv(context, worst.block_size) * worst.block_size
    reload = worst.per_token_bytes * request / host_bandwidth
    found = {"medium": medium, "bytes": sized, "backend": backend, "tokens": tokens,
             "requests": tokens // request if request else 0, "reload_seconds_per_request": reload,
             "host_bandwidth_bytes_per_s": host_bandwidth,
             "ratio": float(ratio) if ratio is not None and not size else None}  # SGLang's, when it sized the tier
    found.update(recompute(spec, d, context, active, weights_dtype))
    what = "CPU" if medium == "cpu" else "disk"
    line = (f"{what} KV tier of {sized:,} B ({how}): {tokens:,} tokens, {found['requests']:,} requests of "
            f"{context:,}; reloading one takes {reload * 1000:.1f} ms per GPU at {host_bandwidth / 10**9:g} GB/s "
            "(the link's peak" + ("; the disk's own read rate is not modelled" if medium == "disk" else "") + ")")
    if found["recompute_seconds_per_request"] is None:
        line += "; recomputing its prefill is not timed (" + found["recompute_why"] + ")"
    else:
        line += (f"; recomputing its prefill takes at least {found['recompute_seconds_per_request'] * 1000:.1f} ms "
                 f"({found['recompute_flops_per_request']:,} FLOPs over TP {d.tp} x "
                 f"{found['peak_flops_per_gpu'] / 10**12:g} TFLOP/s dense {found['peak_dtype']}: the GPU's peak, "
                 "no MFU factor, so a ceiling on its speed; real prefill is slower)")
    found["note"] = line
    return found


def recompute(spec: ModelSpec, d, context: int, active: int | None, weights_dtype: str) -> dict:
    """Recomputing one request's prefill instead of reloading it: FLOPs over the TP group's peak."""
    bf16, fp8 = d.dense_flops
    dtype = "fp8" if weights_dtype == "fp8" and fp8 else "bf16"
    peak = fp8 if dtype == "fp8" else bf16
    out = {"recompute_flops_per_request": None, "recompute_seconds_per_request": None, "peak_flops_per_gpu": peak,
           "peak_dtype": dtype, "recompute_why": None}
    if active is None:
        out["recompute_why"] = "the model's parameter count is not derived"
    elif peak is None:
        out["recompute_why"] = "the GPU catalog has no dense peak FLOP/s for this GPU"
    else:
        flops = prefill_flops(spec, context, active)
        out.update(recompute_flops_per_request=flops, recompute_seconds_per_request=flops / (d.tp * peak))
    return out
