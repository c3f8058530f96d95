"""KV-cache bytes by exact integer arithmetic. No torch, no terminal.

Per token and layer, MHA/MQA/GQA cache ``2 * kv_heads * head_dim`` elements and MLA caches
``kv_lora_rank + qk_rope_head_dim`` (latent) or ``heads * (nope + rope + v)`` (expanded).
A layer holds ``context`` tokens, ``min(context, window)`` when sliding and
``min(context, chunk)`` when chunked; no-KV layers hold none and report a constant state, and a
full layer with a ``state`` (Falcon-H1, Zamba2's hybrid layers) holds both.
DeepSeek-V3.2's lightning indexer caches one key per token beside the MLA latent, a group of
its own (``indexer``) in the total.
Sizes are counted in bits so int4 (half a byte) stays exact.
Without a KV dtype the cache is counted as engines serve the model by default: a float32
checkpoint in bf16 (``dtypes.serving_dtype``), a convention the result names.
"""

from typing import Literal, NamedTuple

from kvcalc.dtypes import DTYPE_BITS, SERVED_FP32_NOTE, row_scale_bits, serving_dtype, state_dtype
from kvcalc.spec import ChunkedLayer, ModelSpec, NoKVLayer, SlidingLayer

MLALayout = Literal["latent", "expanded"]
MLA_LAYOUTS: tuple[str, ...] = ("latent", "expanded")
# A spec note that starts so (sources/config_json writes it) says max_context is a placeholder, not the model's.
UNKNOWN_CONTEXT_NOTE = "max context unknown"


def _bytes(bits: int) -> int:
    return -(-bits // 8)  # whole bytes, rounding a trailing half byte up


class GroupEstimate(NamedTuple):
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
    of: str | None = None  # an indexer group: the layer kind whose indexer it is (its layers are counted there)


class Estimate(NamedTuple):
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
    conventions: tuple[str, ...] = ()  # what a number rests on where engines differ (the indexer's key dtype)

    @property
    def layer_count(self) -> int:
        """Layers of the model; an indexer group's layers are those of its kind, not more."""
        return sum(g.layers for g in self.groups if g.of is None)

    def to_dict(self) -> dict:
        data = self._asdict()
        data["groups"] = [g._asdict() for g in self.groups]
        data["warnings"] = list(self.warnings)
        data["conventions"] = list(self.conventions)
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
    # no --kv-dtype: as engines serve the model by default (a float32 checkpoint in bf16, said in a note);
    # the model dtype a state without its own dtype is kept in follows the same rule
    served = kv_dtype is None and serving_dtype(spec.dtype) != spec.dtype and not spec.is_encoder
    # a state without its own dtype: the model dtype as served, float32 only when asked of a float32 model (as fit)
    model_dtype = spec.dtype if spec.is_encoder else state_dtype(spec.dtype, kv_dtype)
    kv_dtype = kv_dtype or model_dtype
    if context < 1 or batch < 1:
        raise ValueError("context and batch must be at least 1")
    if kv_dtype not in DTYPE_BITS:
        raise ValueError(f"unknown KV dtype {kv_dtype!r}")
    if mla_layout not in MLA_LAYOUTS:
        raise ValueError(f"unknown MLA layout {mla_layout!r}")
    bits = DTYPE_BITS[kv_dtype]

    order = spec.layers.order()
    groups = []
    indexers = []
    for name, kind in spec.layers.kinds.items():
        layers = order.count(name)
        if spec.is_encoder:
            groups.append(_empty_group(name, kind, layers))
        elif isinstance(kind, NoKVLayer):
            state_bits = kind.bits(model_dtype)
            groups.append(
                GroupEstimate(name, "none", None, layers, None, 0, 0, 0,
                              _bytes(state_bits * layers * batch))
            )
        else:
            attention = spec.attention_of(name)
            per_token_bits = layers * (attention.kv_elements_per_token(mla_layout) * bits + sum(
                rows * row_scale_bits(kv_dtype, width) for rows, width in attention.kv_rows_per_token(mla_layout)))
            held = tokens_held(kind, context)
            state = getattr(kind, "state", None)  # a hybrid layer's Mamba state beside its KV cache
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
                    state_bytes=_bytes(state.bits(model_dtype) * layers * batch) if state else 0,
                )
            )
            if getattr(attention, "indexer", None) is not None:
                indexers.append(_indexer_group(name, kind, attention.indexer, layers, held, batch, kv_dtype))
    if indexers:
        if len(indexers) == 1:
            indexers = [indexers[0]._replace(name="indexer")]
        groups.extend(indexers)

    if context > spec.max_context and not _context_unknown(spec):
        warnings.append(
            f"context {context} is beyond {spec.name}'s max context {spec.max_context}; computed anyway"
        )
    has_mla = any(g.attention == "mla" for g in groups)
    conventions = ([SERVED_FP32_NOTE] if served else []) + (indexer_notes(spec, kv_dtype) if indexers else [])
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
        conventions=tuple(conventions),
    )


def _indexer_group(name: str, kind, indexer, layers: int, held: int, batch: int, kv_dtype: str) -> GroupEstimate:
    """The indexer keys of kind ``name``'s layers: as many tokens as the layer holds."""
    per_token_bits = indexer.bits_per_token(kv_dtype) * layers
    return GroupEstimate(
        name=f"{name} indexer", kind="indexer", attention="mla", layers=layers,
        window=getattr(kind, "span", None), tokens=held, bytes_per_token=_bytes(per_token_bits),
        bytes=_bytes(per_token_bits * held * batch), state_bytes=0, of=name,
    )


def indexer_notes(spec: ModelSpec, kv_dtype: str) -> list[str]:
    """What each indexer group rests on: its cached key dtype and scales, and how engines differ."""
    seen = []
    for name, kind in spec.layers.kinds.items():
        indexer = None if isinstance(kind, NoKVLayer) else getattr(spec.attention_of(name), "indexer", None)
        if indexer is not None and indexer not in seen:
            seen.append(indexer)
    notes = []
    for ix in seen:
        scales = f" + a {ix.scale_bytes}-byte scale per {ix.scale_block} elements" if ix.scale_block else ", no scale"
        topk = f" {ix.topk:,}" if ix.topk else ""
        notes.append(
            f"indexer: one {ix.head_dim}-wide key per token and layer, shared by its {ix.heads} heads, cached in "
            f"{ix.key_dtype or kv_dtype}{scales} = {_bytes(ix.bits_per_token(kv_dtype)):,} B (DeepSeek's inference "
            "code, vLLM and SGLang: fp8 + fp32 scale, 132 B at width 128; transformers keeps it in the model "
            f"dtype with no scale); index_topk{topk} picks tokens and does not change the cache"
        )
    return notes


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
