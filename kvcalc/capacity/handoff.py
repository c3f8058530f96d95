"""The prefill -> decode handoff of disaggregated serving: what one request's KV weighs on the wire.

A decode GPU receives what it will hold for the request: every layer's tokens (a sliding layer
only its window) in whole pages of the engine's block size, in the layout it keeps (its KV
heads under the decode TP, MLA's whole latent on every GPU, fp8 layouts with their scales) and
each constant state. Each decode GPU pulls its own share, so heads replicated past the head
count and MLA's latent are sent once per decode GPU that holds them. vLLM's NIXL connector
and SGLang's Mooncake/NIXL backends move pages this way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kvcalc.capacity.deployment import check_shape
from kvcalc.capacity.layers import cdiv, layer_types, serving_dtype
from kvcalc.estimate import estimate
from kvcalc.spec import ModelSpec


@dataclass(frozen=True)
class Handoff:
    model: str
    engine: str
    context: int
    prefill_tp: int
    decode_tp: int
    kv_dtype: str
    block_size: int
    bytes_per_decode_gpu: int
    bytes_moved: int  # summed over the decode GPUs
    bytes_once: int  # the request's KV stored once (estimate's figure, no pages, no replication)
    streams: int  # prefill rank -> decode rank pairs that carry data
    link_bytes_per_s: int
    seconds_one_link: float  # everything over one link
    seconds_parallel: float  # each decode GPU on its own link, in parallel
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def handoff(spec: ModelSpec, engine, context: int, prefill_tp: int, decode_tp: int, kv_dtype: str | None,
            link: int, block_size: int | None = None) -> Handoff:
    """One request of ``context`` prompt tokens handed from prefill (TP ``prefill_tp``) to decode
    (TP ``decode_tp``) by ``engine``'s layout, at ``link`` bytes per second."""
    check_shape(spec, prefill_tp, 1)
    check_shape(spec, decode_tp, 1)
    kv_dtype = kv_dtype or serving_dtype(spec.dtype)
    block = block_size or engine.block_size
    per_gpu_bits = 0
    state = 0
    for t in layer_types(spec, range(spec.layers.count), decode_tp, engine, kv_dtype):
        if t.attends:
            per_gpu_bits += t.layers * cdiv(t.held(context), block) * block * t.token_bits
        else:
            state += t.layers * t.state_bytes
    per_gpu = cdiv(per_gpu_bits, 8) + state
    moved = per_gpu * decode_tp
    stored = estimate(spec, context=context, kv_dtype=kv_dtype)
    once = stored.total_bytes + stored.state_bytes
    notes = []
    if moved > once:
        notes.append(f"{moved - once:,} B more than the KV stored once: whole pages of {block} tokens, and heads or "
                     "an MLA latent that several decode GPUs each hold")
    if prefill_tp != decode_tp:
        notes.append(f"TP {prefill_tp} -> TP {decode_tp}: each decode GPU reads its heads from "
                     f"{max(1, prefill_tp // decode_tp)} prefill GPU(s); the bytes a decode GPU holds do not change")
    return Handoff(
        model=spec.name, engine=engine.name, context=context, prefill_tp=prefill_tp, decode_tp=decode_tp,
        kv_dtype=kv_dtype, block_size=block, bytes_per_decode_gpu=per_gpu, bytes_moved=moved, bytes_once=once,
        streams=max(prefill_tp, decode_tp), link_bytes_per_s=link, seconds_one_link=moved / link,
        seconds_parallel=per_gpu / link, notes=tuple(notes),
    )
