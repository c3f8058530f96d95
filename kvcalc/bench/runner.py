"""Time decode steps through real attention layers and full caches, per attention variant.

Each variant of the model (``kvcalc.variants``) gets one layer of each attention kind, at
its real width, with a cache already holding ``context`` tokens (a window's worth for a
sliding layer); then single-token decode steps are timed: project q, k and v, write the new
token into the cache, attend over every cached token, project out. Bytes read per step are
the projection weights and the batch's cache, counted from the tensors themselves.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

from kvcalc.bench.report import BenchResult, KindTiming, VariantBench
from kvcalc.errors import KvcalcError
from kvcalc.spec import DenseAttention, MLAAttention, ModelSpec, NoKVLayer, head_widths
from kvcalc.units import format_bytes
from kvcalc.variants import actual_name, build_variant
from kvcalc.verify.device import free_memory, resolve_device
from kvcalc.verify.layers import make_weight

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COPY_BYTES = 256 * 2**20


def fill_(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random-looking values without a full-size random draw: a small table, tiled."""
    table = torch.empty(65521, dtype=torch.float32).uniform_(-1, 1, generator=generator).to(t.device, t.dtype)
    flat = t.view(-1)
    whole = flat.numel() // table.numel()
    if whole:
        flat[: whole * table.numel()].view(whole, -1).copy_(table.expand(whole, -1))
    rest = flat.numel() - whole * table.numel()
    flat[flat.numel() - rest:].copy_(table[:rest])
    return t


def _attend(q, k, v, scale: float, kernel: str) -> torch.Tensor:
    """q (B, Hq, 1, dk), k (B, Hk, S, dk), v (B, Hk, S, dv) -> (B, Hq, 1, dv)."""
    if kernel == "sdpa":
        grouped = q.shape[1] != k.shape[1]
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=grouped)
    B, Hq, _, dk = q.shape
    Hk = k.shape[1]
    qg = q.view(B, Hk, Hq // Hk, dk)  # query heads grouped by the KV head they share
    probs = torch.softmax((qg @ k.transpose(-1, -2)).float() * scale, dim=-1).to(v.dtype)  # (B, Hk, g, S)
    return (probs @ v).view(B, Hq, 1, v.shape[-1])


class DenseStep:
    """MHA/GQA/MQA, or MLA's expanded layout (per-head K of nope+rope, V of v_head_dim)."""

    def __init__(self, a, hidden: int, batch: int, tokens: int, dtype, device, gen, kernel: str):
        self.kernel = kernel
        if isinstance(a, MLAAttention):  # expanded: K and V made from the latent, cached per head
            self.heads = self.kv_heads = a.heads
            self.dk, self.dv = a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
            self.mla = a
            # queries as the model makes them: through the low-rank pair when it has one
            self.wq = ([make_weight((hidden, a.q_lora_rank), dtype, device, gen),
                        make_weight((a.q_lora_rank, a.heads * self.dk), dtype, device, gen)] if a.q_lora_rank
                       else [make_weight((hidden, a.heads * self.dk), dtype, device, gen)])
            self.weights = [*self.wq,
                            make_weight((hidden, a.kv_lora_rank + a.qk_rope_head_dim), dtype, device, gen),
                            make_weight((a.kv_lora_rank, a.heads * (a.qk_nope_head_dim + a.v_head_dim)), dtype,
                                        device, gen),
                            make_weight((a.heads * self.dv, hidden), dtype, device, gen)]
        else:
            self.heads, self.kv_heads, self.dk, self.dv, self.mla = a.heads, a.kv_heads, a.head_dim, a.v_dim, None
            self.weights = [make_weight((hidden, a.heads * a.head_dim), dtype, device, gen),
                            make_weight((hidden, a.kv_heads * (a.head_dim + a.v_dim)), dtype, device, gen),
                            make_weight((a.heads * a.v_dim, hidden), dtype, device, gen)]
        self.k = fill_(torch.empty(batch, self.kv_heads, tokens, self.dk, dtype=dtype, device=device), gen)
        self.v = fill_(torch.empty(batch, self.kv_heads, tokens, self.dv, dtype=dtype, device=device), gen)
        self.caches = [self.k, self.v]
        self.scale = 1.0 / math.sqrt(self.dk)

    def __call__(self, x: torch.Tensor, slot: int) -> torch.Tensor:
        B = x.shape[0]
        H, Hk = self.heads, self.kv_heads
        if self.mla is None:
            q = (x @ self.weights[0]).view(B, H, 1, self.dk)
            k, v = (x @ self.weights[1]).split([Hk * self.dk, Hk * self.dv], dim=-1)
            k, v = k.view(B, Hk, self.dk), v.view(B, Hk, self.dv)  # (B, Hk, dk), (B, Hk, dv)
            wo = self.weights[2]
        else:
            a = self.mla
            q = x
            for w in self.wq:
                q = q @ w
            q = q.view(B, H, 1, self.dk)
            w_kv_a, w_kv_b, wo = self.weights[len(self.wq):]
            c = x @ w_kv_a  # (B, rank + rope)
            kv = (c[:, : a.kv_lora_rank] @ w_kv_b).view(B, H, a.qk_nope_head_dim + a.v_head_dim)
            rope = c[:, None, a.kv_lora_rank:].expand(B, H, a.qk_rope_head_dim)
            k = torch.cat((kv[..., : a.qk_nope_head_dim], rope), dim=-1)  # (B, H, nope + rope)
            v = kv[..., a.qk_nope_head_dim:]  # (B, H, v)
        self.k[:, :, slot] = k
        self.v[:, :, slot] = v
        out = _attend(q, self.k, self.v, self.scale, self.kernel)  # (B, H, 1, dv)
        return out.reshape(B, H * self.dv) @ wo


class LatentStep:
    """MLA with the latent cached (c_kv and the rope key in one row per token) and the
    up-projections absorbed into the query and the output."""

    def __init__(self, a: MLAAttention, hidden: int, batch: int, tokens: int, dtype, device, gen, kernel: str):
        self.a, self.kernel = a, kernel
        width = a.kv_lora_rank + a.qk_rope_head_dim
        q_width = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
        if a.q_lora_rank:
            self.wq = [make_weight((hidden, a.q_lora_rank), dtype, device, gen),
                       make_weight((a.q_lora_rank, q_width), dtype, device, gen)]
        else:
            self.wq = [make_weight((hidden, q_width), dtype, device, gen)]
        self.wkv_a = make_weight((hidden, width), dtype, device, gen)
        self.wkv_b = make_weight((a.kv_lora_rank, a.heads * (a.qk_nope_head_dim + a.v_head_dim)), dtype, device,
                                 gen)
        self.wo = make_weight((a.heads * a.v_head_dim, hidden), dtype, device, gen)
        self.weights = [*self.wq, self.wkv_a, self.wkv_b, self.wo]
        self.cache = fill_(torch.empty(batch, 1, tokens, width, dtype=dtype, device=device), gen)
        self.caches = [self.cache]
        self.scale = 1.0 / math.sqrt(a.qk_nope_head_dim + a.qk_rope_head_dim)

    def __call__(self, x: torch.Tensor, slot: int) -> torch.Tensor:
        a, B = self.a, x.shape[0]
        H, nope, r = a.heads, a.qk_nope_head_dim, a.kv_lora_rank
        q = x
        for w in self.wq:
            q = q @ w
        q = q.view(B, H, nope + a.qk_rope_head_dim)
        w_b = self.wkv_b.view(r, H, nope + a.v_head_dim)
        q_lat = torch.einsum("bhn,rhn->bhr", q[..., :nope], w_b[..., :nope])  # (B, H, rank): W_UK absorbed
        query = torch.cat((q_lat, q[..., nope:]), dim=-1).view(B, H, 1, r + a.qk_rope_head_dim)
        self.cache[:, 0, slot] = x @ self.wkv_a  # the new token's latent and rope key
        o_lat = _attend(query, self.cache, self.cache[..., :r], self.scale, self.kernel)  # (B, H, 1, rank)
        out = torch.einsum("bhr,rhv->bhv", o_lat.view(B, H, r), w_b[..., nope:])  # W_UV absorbed after
        return out.reshape(B, H * a.v_head_dim) @ self.wo


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[int], object], steps: int, warmup: int, device: torch.device, slots: int) -> list[float]:
    """Seconds per step, each step timed alone (CUDA events on a GPU, the wall clock elsewhere)."""
    for i in range(warmup):
        step(i % slots)
    _sync(device)
    times = []
    for i in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step((warmup + i) % slots)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step((warmup + i) % slots)
            times.append(time.perf_counter() - t0)
    return times


def copy_bandwidth(device: torch.device, dtype) -> float:
    """Bytes per second of a large device-to-device copy, counting bytes read and written."""
    src = torch.empty(COPY_BYTES // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = _time(lambda _: dst.copy_(src), 7, 2, device, 1)
    return 2 * COPY_BYTES / statistics.median(times)


def _attention_kinds(spec: ModelSpec) -> dict[str, tuple[object, int, int | None]]:
    """kind name -> (attention, layers, span) for every attention kind of the spec."""
    order = spec.layers.order()
    found = {}
    for name, kind in spec.layers.kinds.items():
        if isinstance(kind, NoKVLayer):
            continue
        found[name] = (spec.attention_of(name), order.count(name), getattr(kind, "span", None))
    return found


def _weight_elements(attention, hidden: int) -> int:
    if isinstance(attention, DenseAttention):
        a = attention  # wq, wk, wv, wo: q and k head_dim wide, v and o's input v_dim
        return hidden * ((a.heads + a.kv_heads) * a.head_dim + (a.kv_heads + a.heads) * a.v_dim)
    a = attention
    q_width = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
    q = hidden * a.q_lora_rank + a.q_lora_rank * q_width if a.q_lora_rank else hidden * q_width
    return (q + hidden * (a.kv_lora_rank + a.qk_rope_head_dim)
            + a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_head_dim) + a.heads * a.v_head_dim * hidden)


def _needs(spec, hidden, batch, context, elem) -> int:
    """An upper bound on one variant's memory: weights and caches of one layer per kind, scores, copies."""
    total = 2 * COPY_BYTES
    for attention, _, span in _attention_kinds(spec).values():
        tokens = min(context, span) if span else context
        cache = batch * tokens * max(attention.kv_elements_per_token("latent"),
                                     attention.kv_elements_per_token("expanded"))
        scores = 3 * batch * attention.heads * tokens * 4
        total += (_weight_elements(attention, hidden) + cache) * elem + scores
    return total


def bench(
    spec: ModelSpec,
    variants: list[str] | None = None,
    context: int = 4096,
    batch: int = 1,
    device: str = "cpu",
    dtype: str | None = None,
    steps: int = 20,
    warmup: int = 3,
    kernel: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    if spec.is_encoder:
        raise KvcalcError(f"{spec.name} is an encoder: it does not decode token by token")
    where = resolve_device(device)
    dtype = dtype or ("fp32" if where.type == "cpu" else "bf16")
    kernel = ("sdpa" if where.type == "cuda" else "grouped") if kernel == "auto" else kernel
    names = list(dict.fromkeys(variants or [actual_name(spec)]))  # each variant once
    built = {name: build_variant(spec, name) for name in names}
    hidden = spec.hidden_size or spec.attention.heads * getattr(spec.attention, "head_dim", 128)
    elem = torch.tensor([], dtype=DTYPES[dtype]).element_size()
    need = max(_needs(v.spec, hidden, batch, context, elem) for v in built.values())
    free = free_memory(where)
    if need > free:
        raise KvcalcError(f"bench needs about {format_bytes(need)} on {where} (one layer per kind, its cache and "
                          f"scores) but {format_bytes(free)} is free; try a shorter --context or a smaller --batch")
    notes = []
    peak, source = _peak(where)
    copy = copy_bandwidth(where, DTYPES[dtype])
    if source == "measured copy":
        peak = copy
    else:
        notes.append(f"measured device copy bandwidth: {copy / 1e9:,.1f} GB/s")
    gen = torch.Generator().manual_seed(0)
    results = []
    for name, variant in built.items():
        timings = []
        for kind_name, (attention, layers, span) in _attention_kinds(variant.spec).items():
            if progress:
                progress(f"{name} {kind_name}")
            tokens = min(context, span) if span else context
            if isinstance(attention, MLAAttention) and variant.mla_layout == "latent":
                layer = LatentStep(attention, hidden, batch, tokens, DTYPES[dtype], where, gen, kernel)
            else:
                layer = DenseStep(attention, hidden, batch, tokens, DTYPES[dtype], where, gen, kernel)
            x = fill_(torch.empty(batch, hidden, dtype=DTYPES[dtype], device=where), gen) * 0.01
            with torch.inference_mode():
                times = _time(lambda slot, layer=layer, x=x: layer(x, slot), steps, warmup, where, tokens)
            q = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
            timings.append(KindTiming(kind_name, layers, tokens, statistics.median(times), q[0], q[-1],
                                      _tensor_bytes(layer.weights) + _tensor_bytes(layer.caches)))
            del layer, x
            if where.type == "cuda":
                torch.cuda.empty_cache()
        main = max(timings, key=lambda k: k.layers)
        total_s = sum(k.layers * k.median_s for k in timings)
        total_bytes = sum(k.layers * k.bytes_read for k in timings)
        label = _label(variant.spec.attention, variant.mla_layout)
        results.append(VariantBench(name, label, tuple(timings), main.median_s, total_s, total_bytes,
                                    total_bytes / total_s, total_bytes / total_s / peak))
    results = _speedups(spec, results, names, built, peak, context, batch, dtype)
    if where.type == "cpu":
        notes.append(f"CPU: weights and cache in {dtype} (half-precision matmuls are slow on many CPUs); "
                     f"{torch.get_num_threads()} threads")
    if kernel == "grouped":
        notes.append("attention as grouped matmuls (query heads that share a KV head in one product; K and V "
                     "read as stored): PyTorch's CPU scaled_dot_product_attention repeats K and V for GQA")
    notes.append("no RoPE, norms or MLP: a decode step through the attention projections and the cache only")
    return BenchResult(
        model=spec.name, device=str(where), dtype=dtype, context=context, batch=batch, steps=steps, warmup=warmup,
        kernel=_kernel_label(kernel, where), peak_bytes_per_s=peak, peak_source=source, variants=tuple(results),
        notes=tuple(notes),
    )


def _peak(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        from kvcalc.capacity.gpus import UnknownGPUError, find_gpu

        name = torch.cuda.get_device_name(device)
        try:
            gpu = find_gpu(name)
            if gpu.bandwidth_bytes_per_s:
                return float(gpu.bandwidth_bytes_per_s), f"{gpu.key} datasheet"
        except UnknownGPUError:
            pass
    return 0.0, "measured copy"


def _kernel_label(kernel: str, device: torch.device) -> str:
    if kernel == "sdpa":
        text = "torch scaled_dot_product_attention (enable_gqa)"
        if device.type == "cuda":
            from torch.backends import cuda as backends

            switches = (("flash", backends.flash_sdp_enabled()),
                        ("mem-efficient", backends.mem_efficient_sdp_enabled()),
                        ("cudnn", backends.cudnn_sdp_enabled()), ("math", backends.math_sdp_enabled()))
            allowed = [name for name, on in switches if on]
            text += f", backends allowed: {', '.join(allowed)}"
        return text
    return "grouped matmuls (K and V as stored)"


def _label(attention, layout: str) -> str:
    if isinstance(attention, MLAAttention):
        a = attention
        if layout == "latent":
            return f"latent {a.kv_lora_rank}+{a.qk_rope_head_dim}"
        return f"{a.heads} heads x {a.qk_nope_head_dim + a.qk_rope_head_dim}+{a.v_head_dim}"
    return f"{attention.kv_heads} KV x {head_widths(attention)}"


def _speedups(spec, results, names, built, peak, context, batch, dtype) -> list[VariantBench]:
    """Measured and predicted speed-ups against MHA, when MHA was among the variants."""
    if "mha" not in names:
        return results
    from dataclasses import replace

    from kvcalc.capacity.speed import decode_speed

    base = results[names.index("mha")]
    model_speed = {}
    for name, variant in built.items():
        try:
            d = decode_speed(variant.spec, max(int(peak), 1), context=context, batch=batch, kv_dtype=dtype,
                             weights_dtype=dtype, mla_layout=variant.mla_layout)
            model_speed[name] = d.tokens_per_s
        except KvcalcError:
            pass
    out = []
    for name, r in zip(names, results):
        model = (model_speed[name] / model_speed["mha"]) if name in model_speed and "mha" in model_speed else None
        out.append(replace(r, predicted_speedup=base.bytes_read / r.bytes_read,
                           measured_speedup=base.model_attention_s / r.model_attention_s,
                           model_predicted_speedup=model))
    return out
