"""KV-cache bytes by exact integer arithmetic. No torch, no terminal.

Per token and layer, MHA/MQA/GQA cache ``2 * kv_heads * head_dim`` elements and MLA caches
``kv_lora_rank + qk_rope_head_dim`` (latent) or ``heads * (nope + rope + v)`` (expanded).
A layer holds ``context`` tokens, ``min(context, window)`` when sliding and
``min(context, chunk)`` when chunked; no-KV layers hold none and report a constant state.
Sizes are counted in bits so int4 (half a byte) stays exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from kvcalc.dtypes import DTYPE_BITS
from kvcalc.spec import ChunkedLayer, ModelSpec, NoKVLayer, SlidingLayer

MLALayout = Literal["latent", "expanded"]
MLA_LAYOUTS: tuple[str, ...] = ("latent", "expanded")
# A spec note that starts so (sources/config_json writes it) says max_context is a placeholder, not the model's.
UNKNOWN_CONTEXT_NOTE = "max context unknown"


def _bytes(bits: int) -> int:
    return -(-bits // 8)  # whole bytes, rounding a trailing half byte up


@dataclass(frozen=True)
class GroupEstimate:
    """All layers of one kind: how many, how many tokens each holds, what they cost."""

    name: str  # the kind's name in the preset: "full", "local", "global", "mamba"
    kind: str  # full | sliding | chunked | none
    attention: str | None  # mha | mqa | gqa | mla, None for no-KV layers
    layers: int
    window: int | None  # sliding window or chunk size in tokens
    tokens: int  # tokens each layer holds for one sequence
    bytes_per_token: int  # what one more token costs in this group (all its layers, batch 1)
    bytes: int  # the group's cache at this context and batch
    state_bytes: int  # constant state of no-KV layers at this batch


@dataclass(frozen=True)
class Estimate:
    model: str
    context: int
    batch: int
    kv_dtype: str
    mla_layout: str | None  # None when the model has no MLA layer
    max_context: int
    encoder: bool
    total_bytes: int  # KV cache only; state_bytes is reported apart
    bytes_per_token: int  # one more token, batch 1, no window saturated
    state_bytes: int
    groups: tuple[GroupEstimate, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["groups"] = [asdict(g) for g in self.groups]
        data["warnings"] = list(self.warnings)
        return data


def tokens_held(kind, context: int) -> int:
    """Tokens one layer of this kind keeps for a sequence of ``context`` tokens."""
    if isinstance(kind, SlidingLayer | ChunkedLayer):
        return min(context, kind.span)
    if isinstance(kind, NoKVLayer):
        return 0
    return context


def estimate(
    spec: ModelSpec,
    context: int | None = None,
    batch: int = 1,
    kv_dtype: str | None = None,
    mla_layout: MLALayout = "latent",
) -> Estimate:
    """The KV cache of ``batch`` sequences of ``context`` tokens each."""
    warnings = spec_warnings(spec, context_given=context is not None)
    context = spec.max_context if context is None else context
    kv_dtype = kv_dtype or spec.dtype
    if context < 1 or batch < 1:
        raise ValueError("context and batch must be at least 1")
    if kv_dtype not in DTYPE_BITS:
        raise ValueError(f"unknown KV dtype {kv_dtype!r}")
    if mla_layout not in MLA_LAYOUTS:
        raise ValueError(f"unknown MLA layout {mla_layout!r}")
    bits = DTYPE_BITS[kv_dtype]

    order = spec.layers.order()
    groups = []
    for name, kind in spec.layers.kinds.items():
        layers = order.count(name)
        if spec.is_encoder:
            groups.append(_empty_group(name, kind, layers))
        elif isinstance(kind, NoKVLayer):
            state_bits = kind.state_elements * DTYPE_BITS[kind.state_dtype or spec.dtype]
            groups.append(
                GroupEstimate(name, "none", None, layers, None, 0, 0, 0,
                              _bytes(state_bits * layers * batch))
            )
        else:
            attention = spec.attention_of(name)
            per_token_bits = attention.kv_elements_per_token(mla_layout) * bits * layers
            held = tokens_held(kind, context)
            groups.append(
                GroupEstimate(
                    name=name,
                    kind=kind.type,
                    attention=attention.kind,
                    layers=layers,
                    window=getattr(kind, "span", None),
                    tokens=held,
                    bytes_per_token=_bytes(per_token_bits),
                    bytes=_bytes(per_token_bits * held * batch),
                    state_bytes=0,
                )
            )

    if context > spec.max_context and not _context_unknown(spec):
        warnings.append(
            f"context {context} is beyond {spec.name}'s max context {spec.max_context}; computed anyway"
        )
    has_mla = any(g.attention == "mla" for g in groups)
    return Estimate(
        model=spec.name,
        context=context,
        batch=batch,
        kv_dtype=kv_dtype,
        mla_layout=mla_layout if has_mla else None,
        max_context=spec.max_context,
        encoder=spec.is_encoder,
        total_bytes=sum(g.bytes for g in groups),
        bytes_per_token=sum(g.bytes_per_token for g in groups),
        state_bytes=sum(g.state_bytes for g in groups),
        groups=tuple(groups),
        warnings=tuple(warnings),
    )


def spec_warnings(spec: ModelSpec, context_given: bool) -> list[str]:
    """What a spec read from a config.json asks to be warned about, from its notes: keys on the
    KV path kvcalc did not read, a model_type it has not been tested on, and, when no context
    was given, a max context the config does not state."""
    prefixes = ("unread:", "untested:") + (() if context_given else (UNKNOWN_CONTEXT_NOTE,))
    return [note for note in spec.notes if note.startswith(prefixes)]


def _context_unknown(spec: ModelSpec) -> bool:
    return any(note.startswith(UNKNOWN_CONTEXT_NOTE) for note in spec.notes)


def _empty_group(name: str, kind, layers: int) -> GroupEstimate:
    """An encoder's layers: attention over the input, nothing kept between steps."""
    return GroupEstimate(name, kind.type, None, layers, None, 0, 0, 0, 0)
