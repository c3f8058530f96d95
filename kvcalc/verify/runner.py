"""Build a model's layers, run a prefill and decode steps through real caches, measure them.

The steps: plan what to instantiate (torch-free), refuse if it cannot fit, build the layers,
make one cache per layer, prefill ``context - decode_steps`` tokens in one step, decode the
rest one token at a time, then read the bytes of every cache storage the layers wrote into and
compare them with estimate() for exactly those layers.
"""

from __future__ import annotations

import gc
import time

import torch

from kvcalc.errors import KvcalcError
from kvcalc.spec import ChunkedLayer, DenseAttention, ModelSpec, NoKVLayer, SlidingLayer
from kvcalc.verify.caches import (
    BlockScaleCodec,
    Codec,
    DynamicCache,
    LayerCache,
    PagedCache,
    PeakTracker,
    StaticCache,
    indexer_codec,
)
from kvcalc.verify.device import check_fits, out_of_memory_as_error, resolve_device
from kvcalc.verify.layers import DenseLayer, MLALayer, rms_norm
from kvcalc.verify.measure import (
    CudaCounters,
    cuda_block_bytes,
    rounded_bytes,
    storage_bytes,
    storage_count,
)
from kvcalc.verify.plan import Plan, hidden_size, make_plan, run_needs
from kvcalc.verify.report import Allocator, GroupCheck, VerifyResult

MODEL_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def compute_dtype(model_dtype: str, device: torch.device) -> torch.dtype:
    """The model's dtype, except half types on CPU: many CPUs have no fast bf16/fp16 matmul
    (0.2 GFLOP/s here against 47 in fp32), and the cache keeps the KV dtype either way."""
    dtype = MODEL_DTYPES.get(model_dtype, torch.bfloat16)
    return torch.float32 if device.type == "cpu" else dtype


def cache_tokens(kind, context: int) -> int:
    """Slots a preallocated cache gives one sequence: the context, or a rolling buffer of the
    window (chunk) when that is shorter. This is the cache's design, not read from estimate."""
    if isinstance(kind, SlidingLayer):
        return min(context, kind.window)
    if isinstance(kind, ChunkedLayer):
        return min(context, kind.chunk)
    return context


def build_layer(spec: ModelSpec, name: str, plan: Plan, dtype, device, generator):
    """One attention layer of kind ``name``; None for a no-KV layer, which is skipped."""
    kind = plan.reduced.layers.kinds[name]
    if isinstance(kind, NoKVLayer):
        return None
    attention = spec.attention_of(name)
    window = kind.window if isinstance(kind, SlidingLayer) else None
    chunk = kind.chunk if isinstance(kind, ChunkedLayer) else None
    hidden = hidden_size(spec)
    if isinstance(attention, DenseAttention):
        return DenseLayer(attention, hidden, dtype, device, generator, window=window, chunk=chunk)
    return MLALayer(attention, hidden, dtype, device, generator, layout=plan.mla_layout,
                    window=window, chunk=chunk)


def make_cache(plan: Plan, name: str, layer, codec: Codec, device, tracker: PeakTracker,
               generator: torch.Generator) -> LayerCache:
    """The layer's cache (``layer``: anything with cache_feats(), an attention layer or its indexer)."""
    kind = plan.reduced.layers.kinds[name]
    tokens = cache_tokens(kind, plan.context)
    feats = layer.cache_feats()
    if plan.cache == "dynamic":
        keep = tokens if isinstance(kind, (SlidingLayer, ChunkedLayer)) else None
        return DynamicCache(codec, plan.batch, feats, device, keep=keep, tracker=tracker)
    if plan.cache == "paged":
        return PagedCache(codec, plan.batch, feats, device, tokens=tokens, generator=generator)
    return StaticCache(codec, plan.batch, feats, device, capacity=tokens)


def run_steps(plan: Plan) -> list[tuple[int, int]]:
    """(start, end) of each step: one prefill, then single-token decode steps to the context."""
    return [(0, plan.prefill)] + [(t, t + 1) for t in range(plan.prefill, plan.context)]


def first_kv_layer(spec: ModelSpec) -> int | None:
    """Index of the model's first layer that keeps a KV cache; None if none does."""
    kinds = spec.layers.kinds
    return next((i for i, name in enumerate(spec.layers.order()) if not isinstance(kinds[name], NoKVLayer)),
                None)


def config_notes(spec: ModelSpec) -> list[str]:
    """What kvcalc inferred or ignored reading a config.json: the numbers rest on it."""
    return [f"note: {n}" for n in spec.notes if n.startswith(("inferred:", "ignored:"))]


def token_problems(plan: Plan, caches, what: str = "") -> tuple[str, ...]:
    """Caches not written with every token of the run, or not holding the tokens the plan says.

    Bytes alone cannot show this: a static cache counts all its slots, written or not.
    A layer must hold the last min(context, tokens) positions, where tokens is the
    plan's (block-rounded for a paged cache, whose ring is whole blocks).
    """
    tokens = {g.name: g.tokens for g in (plan.paged or plan.analytic).groups}
    problems = []
    label = f" {what}" if what else ""
    for index, (name, cache) in zip(plan.layer_indices, caches):  # caches: (kind name, cache) per layer
        if cache is None:
            continue
        if cache.length != plan.context:
            problems.append(f"layer {index} ({name}){label} was written with {cache.length:,} of "
                            f"{plan.context:,} tokens")
            continue
        want = min(plan.context, tokens[name])
        held = cache.positions().cpu().sort().values
        if not torch.equal(held, torch.arange(plan.context - want, plan.context)):
            first, last = plan.context - want, plan.context - 1
            problems.append(f"layer {index} ({name}){label} does not hold exactly the last {want:,} positions "
                            f"({first:,}-{last:,})")
    return tuple(problems)


def verify(
    spec: ModelSpec,
    device: str = "cpu",
    context: int | None = None,
    batch: int = 1,
    layers: int | None = None,
    cache: str = "static",
    kv_dtype: str | None = None,
    mla_layout: str = "latent",
    seed: int = 0,
) -> VerifyResult:
    """Verify ``spec``'s analytic KV bytes on real tensors. Raises KvcalcError for bad input."""
    plan = make_plan(spec, context=context, batch=batch, layers=layers, cache=cache,
                     kv_dtype=kv_dtype, mla_layout=mla_layout)
    if spec.is_encoder:
        return _encoder_result(plan, device)
    dev = resolve_device(device)
    if dev.type == "mps" and plan.kv_dtype == "fp8":
        raise KvcalcError("fp8 KV needs float8 tensors, which MPS does not have; try --kv-dtype int8")
    dtype = compute_dtype(spec.dtype, dev)
    needs = run_needs(plan, dtype.itemsize)
    check_fits(needs, dev)
    started = time.perf_counter()
    try:
        with out_of_memory_as_error(needs, dev), torch.inference_mode():
            return _run(plan, dev, dtype, started, seed)
    finally:
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _run(plan: Plan, device: torch.device, dtype, started: float, seed: int) -> VerifyResult:
    spec = plan.spec
    generator = torch.Generator().manual_seed(seed)
    built = [(name, build_layer(spec, name, plan, dtype, device, generator)) for name in plan.layer_names]
    codec = Codec(plan.kv_dtype, dtype)
    hidden = hidden_size(spec)
    # every step's input, made before the counters start: a real model's token embeddings
    inputs = torch.randn(plan.batch, plan.context, hidden, generator=generator).to(device, dtype)
    counters = CudaCounters(device) if device.type == "cuda" else None
    if counters is not None:
        _warm_up(built, codec, device)
        counters.start()

    tracker = PeakTracker()
    caches = [
        (name, make_cache(plan, name, layer, codec, device, tracker, generator) if layer else None)
        for name, layer in built
    ]
    # DeepSeek-V3.2: each MLA layer's indexer keys, a cache of their own beside the latent
    index_caches = [
        (name, make_cache(plan, name, layer.indexer, _indexer_codec(layer, plan, dtype), device, tracker, generator)
         if getattr(layer, "indexer", None) is not None else None)
        for name, layer in built
    ]
    for start, end in run_steps(plan):
        pos = torch.arange(start, end, device=device)
        x = inputs[:, start:end]  # (B, T, C)
        for (_, layer), (_, cache), (_, keys) in zip(built, caches, index_caches):
            if layer is None:
                continue  # no-KV layers (Mamba, linear attention) keep no KV cache
            x = x + (layer(rms_norm(x), pos, cache) if keys is None else layer(rms_norm(x), pos, cache, keys))
        del x, pos  # nothing but the caches may stay allocated when the counters stop
    if counters is not None:
        counters.stop()

    live = [c for _, c in caches + index_caches if c is not None]
    data = [t for c in live for t in cache_data(c)]
    scales = [t for c in live if not isinstance(c.codec, BlockScaleCodec) for t in c.scale_tensors()]
    index = [t for c in live for t in c.index_tensors()]
    groups = _groups(plan, caches, index_caches)
    allocator = None
    if counters is not None:
        everything = data + scales + index
        rounded = rounded_bytes(everything)
        blocks = cuda_block_bytes(everything, device)
        allocator = Allocator(
            delta=counters.delta,
            peak=counters.peak,
            tensors=storage_count(everything),
            rounding=rounded - storage_bytes(everything),
            whole_blocks=None if blocks is None else blocks - rounded,
            other=counters.delta - (rounded if blocks is None else blocks),
        )
    notes = []
    if device.type == "cpu" and plan.spec.dtype in ("bf16", "fp16"):
        notes.append(f"note: the model's {plan.spec.dtype} weights run as float32 on CPU "
                     "(no fast half-precision matmul); the cache keeps the KV dtype")
    for w in plan.analytic.warnings:
        notes.append(f"note: {w}")
    notes += [f"note: {c}; verify stores it so, key and scales measured together" for c in plan.analytic.conventions]
    notes += config_notes(spec)
    return VerifyResult(
        model=spec.name,
        device=str(device),
        cache=plan.cache,
        layers=len(plan.layer_names),
        layer_indices=plan.layer_indices,
        context=plan.context,
        batch=plan.batch,
        kv_dtype=plan.kv_dtype,
        mla_layout=plan.analytic.mla_layout,
        compute_dtype=str(dtype).removeprefix("torch."),
        analytic_bytes=plan.analytic.total_bytes,
        block_rounded_bytes=plan.paged.total_bytes if plan.paged else None,
        measured_bytes=storage_bytes(data),
        scale_bytes=storage_bytes(scales),
        index_bytes=storage_bytes(index),
        cache_peak_bytes=tracker.peak if plan.cache == "dynamic" else None,
        allocator=allocator,
        full_model_bytes=plan.full_model.total_bytes,
        full_model_layers=plan.spec.layers.count,
        groups=groups,
        token_problems=token_problems(plan, caches) + token_problems(plan, index_caches, "indexer keys"),
        first_kv_layer=first_kv_layer(spec),
        prefill=plan.prefill,
        decode_steps=plan.decode_steps,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _indexer_codec(layer, plan: Plan, dtype) -> Codec:
    return indexer_codec(layer.a.indexer, plan.kv_dtype, dtype)


def cache_data(cache: LayerCache) -> list[torch.Tensor]:
    """The tensors a cache's analytic bytes count: its data, and block scales where the convention
    counts them (the indexer's fp32 scale per 128 fp8 values); int8/int4 row scales are apart."""
    block = isinstance(cache.codec, BlockScaleCodec)
    return cache.data_tensors() + (cache.scale_tensors() if block else [])


def _groups(plan: Plan, caches, index_caches=()) -> tuple[GroupCheck, ...]:
    expected = {g.name: g for g in (plan.paged or plan.analytic).groups}
    out = []
    for g in plan.analytic.groups:
        if g.of is not None:  # an indexer group: the key caches of its kind's layers
            tensors = [t for name, c in index_caches if name == g.of and c is not None for t in cache_data(c)]
        else:
            tensors = [t for name, c in caches if name == g.name and c is not None for t in c.data_tensors()]
        out.append(GroupCheck(
            name=g.name, kind=g.kind, attention=g.attention, layers=g.layers, window=g.window,
            tokens=g.tokens, analytic_bytes=g.bytes, expected_bytes=expected[g.name].bytes,
            measured_bytes=storage_bytes(tensors),
        ))
    return tuple(out)


def _warm_up(built, codec: Codec, device) -> None:
    """One tiny step per layer before the baseline, so cuBLAS workspaces (which the caching
    allocator keeps for good) are not counted as cache."""
    x = None
    for _, layer in built:
        if layer is None:
            continue
        cache = StaticCache(codec, 1, layer.cache_feats(), device, capacity=3)
        keys = () if getattr(layer, "indexer", None) is None else (
            StaticCache(indexer_codec(layer.a.indexer, codec.kv_dtype, codec.compute), 1,
                        layer.indexer.cache_feats(), device, capacity=3),)
        hidden = layer.wo.shape[1]
        x = torch.zeros(1, 2, hidden, dtype=layer.wo.dtype, device=device)
        layer(x, torch.arange(2, device=device), cache, *keys)
        layer(x[:, :1], torch.arange(2, 3, device=device), cache, *keys)
    del x
    torch.cuda.synchronize(device)


def _encoder_result(plan: Plan, device: str) -> VerifyResult:
    return VerifyResult(
        model=plan.spec.name, device=device, cache=plan.cache, layers=0, layer_indices=(),
        context=plan.context, batch=plan.batch, kv_dtype=plan.kv_dtype, mla_layout=None,
        compute_dtype="-", analytic_bytes=0, block_rounded_bytes=None, measured_bytes=0,
        scale_bytes=0, index_bytes=0, cache_peak_bytes=None, allocator=None,
        full_model_bytes=plan.full_model.total_bytes, full_model_layers=plan.spec.layers.count,
        groups=(), prefill=0, decode_steps=0, seconds=0.0, encoder=True,
        notes=("encoder-only: it attends over its whole input at once and keeps no KV cache",
               *config_notes(plan.spec)),
    )
