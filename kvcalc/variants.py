"""The same model under each attention design: MHA, GQA-n, MQA, MLA latent and expanded.

A variant swaps the attention of every attention layer and keeps everything else
(layer count, windows, chunks, no-KV layers). For a model that is not MLA, the MLA rows
follow DeepSeek-V2's sizing (kv_lora_rank = 4 x head_dim, rope part = head_dim / 2,
nope part = head_dim, v part = the model's V width) unless a rank and rope size are given;
dense rows keep the model's K and V widths, and for an MLA model they use heads of
v_head_dim. Such rows are hypothetical and say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvcalc.errors import KvcalcError
from kvcalc.estimate import Estimate, estimate
from kvcalc.spec import (
    ChunkedLayer,
    DenseAttention,
    FullLayer,
    MLAAttention,
    ModelSpec,
    SlidingLayer,
    head_widths,
)

_NAME = re.compile(r"^(mha|mqa|mla-latent|mla-expanded|gqa-(\d+))$")


@dataclass(frozen=True)
class Variant:
    name: str  # mha | gqa-8 | mqa | mla-latent | mla-expanded
    spec: ModelSpec
    mla_layout: str  # the layout to estimate it with
    is_actual: bool  # the model's own design
    hypothetical: bool  # dimensions made up by a sizing rule, not the model's own


@dataclass(frozen=True)
class VariantRow:
    variant: str
    is_actual: bool
    hypothetical: bool
    attention: str  # "64 x 128 K/V heads", "latent 512+64"
    result: Estimate
    ratio_vs_mha: float
    ratio_vs_actual: float

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "is_actual": self.is_actual,
            "hypothetical": self.hypothetical,
            "attention": self.attention,
            "total_bytes": self.result.total_bytes,
            "bytes_per_token": self.result.bytes_per_token,
            "ratio_vs_mha": self.ratio_vs_mha,
            "ratio_vs_actual": self.ratio_vs_actual,
            "context": self.result.context,
            "batch": self.result.batch,
            "kv_dtype": self.result.kv_dtype,
        }


def actual_name(spec: ModelSpec, mla_layout: str = "latent") -> str:
    a = spec.attention
    if a.kind == "mla":
        return f"mla-{mla_layout}"
    if a.kind == "mha" or a.kv_heads == a.heads:
        return "mha"
    if a.kind == "mqa" or a.kv_heads == 1:
        return "mqa"
    return f"gqa-{a.kv_heads}"


def gqa_group_counts(heads: int) -> list[int]:
    """KV-head counts strictly between MQA (1) and MHA (heads) that divide the heads: the
    divisors found in pairs up to the square root, not by trying every count."""
    found = set()
    n = 1
    while n * n <= heads:
        if heads % n == 0:
            found.update((n, heads // n))
        n += 1
    return sorted(d for d in found if 1 < d < heads)


def _attends(spec: ModelSpec) -> None:
    if not spec.attends:
        raise KvcalcError(f"{spec.name} has no attention (a state-space model: a constant state per sequence, "
                          "no KV cache), so there are no attention variants to compare")


def check_groups(spec: ModelSpec, groups: list[int]) -> None:
    _attends(spec)
    heads = spec.attention.heads
    bad = [n for n in groups if n < 1 or heads % n]
    if bad:
        raise ValueError(
            f"group count {', '.join(map(str, bad))} does not divide {spec.name}'s {heads} heads "
            f"(divisors: {', '.join(map(str, [1, *gqa_group_counts(heads), heads]))})"
        )


def _dense_head_dims(spec: ModelSpec) -> tuple[int, int]:
    """(K, V) head widths for dense rows: the model's own, or v_head_dim for both when it is MLA."""
    a = spec.attention
    return (a.v_head_dim, a.v_head_dim) if isinstance(a, MLAAttention) else (a.head_dim, a.v_dim)


def _mla_dims(spec: ModelSpec, rank: int | None, rope: int | None) -> MLAAttention:
    a = spec.attention
    if isinstance(a, MLAAttention) and rank is None and rope is None:
        return a
    d, dv = _dense_head_dims(spec)
    base = a if isinstance(a, MLAAttention) else None
    return MLAAttention(
        kind="mla",
        heads=a.heads,
        kv_lora_rank=rank or (base.kv_lora_rank if base else 4 * d),
        qk_rope_head_dim=rope or (base.qk_rope_head_dim if base else max(1, d // 2)),
        qk_nope_head_dim=base.qk_nope_head_dim if base else d,
        v_head_dim=base.v_head_dim if base else dv,
        q_lora_rank=base.q_lora_rank if base else None,
    )


def with_attention(spec: ModelSpec, attention) -> ModelSpec:
    """``spec`` with every attention layer using ``attention`` (per-kind overrides dropped)."""
    kinds = {
        name: kind.model_copy(update={"attention": None}) if "attention" in type(kind).model_fields else kind
        for name, kind in spec.layers.kinds.items()
    }
    layers = spec.layers.model_copy(update={"kinds": kinds})
    return spec.model_copy(update={"attention": attention, "layers": layers})


def without_windows(spec: ModelSpec) -> ModelSpec:
    """``spec`` with sliding and chunked layers made full: what a cache that ignores windows holds."""
    kinds = {
        name: FullLayer(type="full", attention=kind.attention) if isinstance(kind, SlidingLayer | ChunkedLayer)
        else kind
        for name, kind in spec.layers.kinds.items()
    }
    layers = spec.layers.model_copy(update={"kinds": kinds})
    return spec.model_copy(update={"layers": layers})


def build_variant(
    spec: ModelSpec, name: str, mla_rank: int | None = None, rope_dim: int | None = None
) -> Variant:
    """One named variant: 'mha', 'gqa-8', 'mqa', 'mla-latent' or 'mla-expanded'."""
    _attends(spec)
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"unknown variant {name!r}: use mha, gqa-N, mqa, mla-latent or mla-expanded")
    heads = spec.attention.heads
    own_mla = isinstance(spec.attention, MLAAttention)
    if name.startswith("mla"):
        attention = _mla_dims(spec, mla_rank, rope_dim)
        layout = name.removeprefix("mla-")
        # the expanded layout does not depend on the rank, only on the rope part
        changed = rope_dim is not None or (layout == "latent" and mla_rank is not None)
        hypothetical = not own_mla or changed
    else:
        kv_heads = {"mha": heads, "mqa": 1}.get(name) or int(match.group(2))
        check_groups(spec, [kv_heads])
        kind = "mha" if kv_heads == heads else "mqa" if kv_heads == 1 else "gqa"
        k_dim, v_dim = _dense_head_dims(spec)
        attention = DenseAttention(kind=kind, heads=heads, kv_heads=kv_heads, head_dim=k_dim,
                                   v_head_dim=None if v_dim == k_dim else v_dim)
        layout = "latent"
        hypothetical = own_mla
    return Variant(
        name=name,
        spec=with_attention(spec, attention),
        mla_layout=layout,
        is_actual=name == actual_name(spec) and not hypothetical,
        hypothetical=hypothetical,
    )


def variant_names(spec: ModelSpec, groups: list[int] | None = None) -> list[str]:
    heads = spec.attention.heads
    counts = sorted(set(groups), reverse=True) if groups else gqa_group_counts(heads)[::-1]
    gqa = [f"gqa-{n}" for n in counts if 1 < n < heads]
    own = actual_name(spec)
    if own.startswith("gqa-") and own not in gqa:
        gqa = sorted([*gqa, own], key=lambda v: -int(v[4:]))
    return ["mha", *gqa, "mqa", "mla-latent", "mla-expanded"]


def _attention_label(attention, layout: str) -> str:
    if isinstance(attention, MLAAttention):
        if layout == "latent":
            return f"latent {attention.kv_lora_rank}+{attention.qk_rope_head_dim}"
        per_head = attention.qk_nope_head_dim + attention.qk_rope_head_dim + attention.v_head_dim
        return f"{attention.heads} heads x {per_head} (K+V)"
    return f"{attention.kv_heads} KV x {head_widths(attention)}"


def compare_variants(
    spec: ModelSpec,
    context: int | None = None,
    batch: int = 1,
    kv_dtype: str | None = None,
    groups: list[int] | None = None,
    mla_rank: int | None = None,
    rope_dim: int | None = None,
) -> list[VariantRow]:
    """Every variant's estimate with its ratio to MHA and to the model's own design."""
    _attends(spec)
    if groups:
        check_groups(spec, groups)
    variants = [build_variant(spec, n, mla_rank, rope_dim) for n in variant_names(spec, groups)]
    results = [
        estimate(v.spec, context=context, batch=batch, kv_dtype=kv_dtype, mla_layout=v.mla_layout)
        for v in variants
    ]
    mha = results[0].total_bytes
    actual = estimate(spec, context=context, batch=batch, kv_dtype=kv_dtype).total_bytes
    return [
        VariantRow(
            variant=v.name,
            is_actual=v.is_actual,
            hypothetical=v.hypothetical,
            attention=_attention_label(v.spec.attention, v.mla_layout),
            result=r,
            ratio_vs_mha=r.total_bytes / mha if mha else 0.0,
            ratio_vs_actual=r.total_bytes / actual if actual else 0.0,
        )
        for v, r in zip(variants, results)
    ]
