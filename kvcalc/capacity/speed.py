"""The decode ceiling: bytes a decode step must read, over the GPU's bandwidth.

Decode is memory-bound: each step reads the weights the batch's tokens use once, and every
cached K and V (or latent, or state) of every sequence. So the fastest a step can be is
``bytes read / bandwidth``, and a smaller cache is faster only by its share of those bytes.
Per GPU in a tensor-parallel group, pipeline stages one after another. Pure arithmetic:
what is a model (uniform expert routing, whole-weights reads) is stated in ``notes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

from kvcalc.capacity import engines
from kvcalc.capacity.layers import cdiv, layer_types, serving_dtype, stage_layers
from kvcalc.capacity.params import ParamCount, parameter_count
from kvcalc.capacity.weights import weights_bytes
from kvcalc.errors import KvcalcError
from kvcalc.spec import ModelSpec


@dataclass(frozen=True)
class DecodeSpeed:
    model: str
    context: int
    batch: int
    tp: int
    pp: int
    bandwidth_bytes_per_s: int
    weights_dtype: str
    kv_dtype: str
    weights_bytes_read_per_step: int  # by one GPU of each stage, all stages together
    kv_bytes_read_per_step: int  # the same, for the batch's KV (windows capped) and states
    bytes_read_per_step: int
    step_seconds: float
    tokens_per_s_per_sequence: float
    tokens_per_s: float  # the batch on one replica
    kv_share: float  # of the bytes read
    dominant: str  # "weights" or "kv"
    crossover_context: int | None  # context per sequence where the batch's KV reads equal the weights'
    experts_read: float | None  # routed experts read per MoE layer at this batch (uniform routing)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def distinct_experts(experts: int, per_token: int, batch: int) -> Fraction:
    """Routed experts a batch touches in one MoE layer, expected under uniform routing:
    E x (1 - (1 - k/E)^batch); exactly k at batch 1. Exact up to a batch of 1,024; beyond,
    in floating point (the exact power would have millions of digits)."""
    miss = Fraction(experts - per_token, experts)
    if batch <= 1024:
        return experts * (1 - miss**batch)
    import math

    gone = math.exp(batch * math.log(float(miss))) if miss else 0.0
    return Fraction(experts) * (1 - Fraction(gone))


def weights_read(spec: ModelSpec, count: ParamCount, dtype: str, batch: int) -> tuple[int, Fraction | None]:
    """Bytes of weights one decode step of ``batch`` tokens reads: every layer matrix it uses
    (routed experts: those the batch touches), norms and the head; of an untied input
    embedding only the batch's rows."""
    w = spec.weights
    linear, other = Fraction(count.linear), Fraction(count.other + count.head)
    experts, routed = None, Fraction(count.routed)
    if w.moe is not None and count.moe_layers:
        experts = distinct_experts(w.moe.experts, w.moe.experts_per_token, batch)
        unread = count.moe_layers * (w.moe.experts - experts) * count.expert_parameters
        linear -= unread
        routed -= unread
    if w.tied_embeddings:
        other += count.embedding  # the head reads the whole shared matrix
    else:
        other += min(batch, w.vocab_size) * spec.hidden_size  # the batch's rows, at most every row
    read = ParamCount(total=round(linear + other), active=0, embedding=0, head=0, linear=round(linear),
                      other=round(other), moe_layers=0, expert_parameters=0, routed=round(routed))
    return weights_bytes(read, dtype), experts


def kv_read(spec: ModelSpec, context: int, batch: int, tp: int, pp: int, kv_dtype: str,
            engine: str = "vllm", mla_layout: str = "latent") -> int:
    """Bytes of KV (and constant states) one decode step reads for the batch, per GPU of each
    stage, stages summed: each layer reads the tokens it holds (windows and chunks capped)."""
    rules = engines.get(engine)
    total_bits = 0
    for layers in stage_layers(spec.layers.count, pp):
        for t in layer_types(spec, layers, tp, rules, kv_dtype, mla_layout):
            if t.kind == "none":
                total_bits += 8 * t.layers * t.state_bytes * batch
            else:
                held = min(context, t.span) if t.span else context
                total_bits += t.layers * held * t.token_bits * batch
    return cdiv(total_bits, 8)


def decode_speed(
    spec: ModelSpec,
    bandwidth: int,
    context: int | None = None,
    batch: int = 1,
    tp: int = 1,
    pp: int = 1,
    weights_dtype: str | None = None,
    kv_dtype: str | None = None,
    engine: str = "vllm",
    mla_layout: str = "latent",
    weights_total: int | None = None,
) -> DecodeSpeed:
    """The ceiling at ``batch`` sequences of ``context`` tokens. ``weights_total`` is the
    model's weight bytes when they are known otherwise (``--weights-bytes``, a checkpoint):
    the bytes read are then scaled from the parameter count's to that total."""
    if spec.is_encoder:
        raise KvcalcError(f"{spec.name} is an encoder: it does not decode token by token")
    count = parameter_count(spec)
    if count is None:
        raise KvcalcError(f"{spec.name}: its parameter count is not derived (see its notes), so the weights "
                          "a decode step reads are unknown")
    context = spec.max_context if context is None else context
    kv_dtype = kv_dtype or serving_dtype(spec.dtype)
    dtype = weights_dtype or spec.weights.dtype or serving_dtype(spec.dtype)
    full_weights, experts = weights_read(spec, count, dtype, batch)
    notes_weights = []
    if weights_total is not None:
        counted = weights_bytes(count, dtype)
        full_weights = full_weights * weights_total // counted
        notes_weights.append(f"weights read scaled to the {weights_total:,} B given or in the checkpoint "
                             f"(the parameter count gives {counted:,} B as {dtype})")
    weights = cdiv(full_weights, tp * pp) * pp  # one GPU per stage, stages in turn
    kv = kv_read(spec, context, batch, tp, pp, kv_dtype, engine, mla_layout)
    total = weights + kv
    seconds = total / bandwidth
    notes = ["a ceiling: bytes read / peak bandwidth, with no compute, launch or communication time",
             *notes_weights]
    if spec.weights.extra_parameters:
        notes.append(f"the {spec.weights.extra_parameters:,} parameters outside kvcalc's weights schema (towers, "
                     "lookup tables, shared blocks: see the model's notes) are counted as read every step, which "
                     "some of them are not (a vision tower, a per-layer embedding table): the speed is a lower bound")
    if experts is not None:
        notes.append(f"MoE: {float(experts):.2f} of {spec.weights.moe.experts} routed experts read per layer at "
                     f"batch {batch} (uniform routing; {spec.weights.moe.experts_per_token} per token)")
    crossover = _crossover(spec, weights, batch, tp, pp, kv_dtype, engine, mla_layout,
                           limit=max(spec.max_context, context))
    return DecodeSpeed(
        model=spec.name, context=context, batch=batch, tp=tp, pp=pp, bandwidth_bytes_per_s=bandwidth,
        weights_dtype=dtype, kv_dtype=kv_dtype, weights_bytes_read_per_step=weights, kv_bytes_read_per_step=kv,
        bytes_read_per_step=total, step_seconds=seconds, tokens_per_s_per_sequence=1 / seconds,
        tokens_per_s=batch / seconds, kv_share=kv / total, dominant="kv" if kv > weights else "weights",
        crossover_context=crossover, experts_read=float(experts) if experts is not None else None,
        notes=tuple(notes),
    )


def _crossover(spec, weights: int, batch: int, tp: int, pp: int, kv_dtype: str, engine: str,
               mla_layout: str, limit: int | None = None) -> int | None:
    """The smallest context whose KV reads for the batch reach the weights' reads; None if
    none up to ``limit`` (the model's max context, or the context asked for when longer)
    does: windows cap the KV below it, or the model stops first."""
    limit = limit or spec.max_context
    def reads(length: int) -> int:
        return kv_read(spec, length, batch, tp, pp, kv_dtype, engine, mla_layout)

    if reads(limit) < weights:
        return None
    low, high = 1, limit
    while low < high:
        mid = (low + high) // 2
        if reads(mid) >= weights:
            high = mid
        else:
            low = mid + 1
    return low


def variant_speeds(spec: ModelSpec, names: list[str], bandwidth: int, context: int | None = None, batch: int = 1,
                   tp: int = 1, kv_dtype: str | None = None, mla_rank: int | None = None,
                   rope_dim: int | None = None) -> list[DecodeSpeed]:
    """The decode ceiling of the model under each attention variant (its weights change with
    the projections: GQA's K and V shrink, MLA adds its latent projections)."""
    from kvcalc.variants import build_variant

    speeds = []
    for name in names:
        variant = build_variant(spec, name, mla_rank, rope_dim)
        tp_here = tp if variant.spec.attention.heads % tp == 0 else 1
        speeds.append(decode_speed(variant.spec, bandwidth, context=context, batch=batch, tp=tp_here,
                                   kv_dtype=kv_dtype, mla_layout=variant.mla_layout))
    return speeds
