"""What one verify run instantiates, the analytic numbers for exactly that, and what it needs.

No torch here: the CLI can refuse a run that would not fit before torch allocates anything.
The analytic numbers always come from ``kvcalc.estimate.estimate`` on a spec reduced to the
instantiated layers; nothing in verify repeats the KV formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from kvcalc.errors import KvcalcError
from kvcalc.estimate import Estimate, estimate
from kvcalc.spec import DenseAttention, MLAAttention, ModelSpec

CacheKind = Literal["static", "dynamic", "paged"]
CACHE_KINDS: tuple[str, ...] = get_args(CacheKind)

PAGE_TOKENS = 16  # vLLM's default block size
DEFAULT_CONTEXT = 256  # short enough that every preset verifies in seconds on a laptop CPU
SHORT_CONTEXT = 32  # verify --all where no window, chunk or top-k is shorter than DEFAULT_CONTEXT


def all_context(spec) -> int:
    """The context ``verify --all`` runs a preset at: the default where a sliding window, a
    chunk or an indexer's top-k is below it (so each is exercised), else a short one. The
    layers, their weights and the per-token cache are the same at any length; only the number
    of tokens and the matmuls' cost (hidden x hidden per token: 2.5 s for llama-3.1-405b at
    256 tokens on two cores) change."""
    spans = [getattr(kind, "span", None) for kind in spec.layers.kinds.values()]
    indexer = getattr(spec.attention, "indexer", None)
    spans.append(indexer.topk if indexer is not None else None)
    short = any(span is not None and span < DEFAULT_CONTEXT for span in spans)
    return min(spec.max_context, DEFAULT_CONTEXT if short else SHORT_CONTEXT)
DECODE_STEPS = 4  # single-token steps after the prefill, so the cache is written at decode too
SCORE_BLOCK_BYTES = 256 * 2**20  # attention scores are computed in query blocks of at most this


@dataclass(frozen=True)
class Plan:
    spec: ModelSpec  # the whole model
    reduced: ModelSpec  # exactly the layers instantiated
    layer_names: tuple[str, ...]  # kind name of each instantiated layer, in model order
    layer_indices: tuple[int, ...]  # where each sits in the whole model
    context: int
    batch: int
    kv_dtype: str
    mla_layout: str
    cache: str
    prefill: int  # tokens in the one prefill step
    decode_steps: int
    analytic: Estimate  # estimate() of the reduced spec
    full_model: Estimate  # estimate() of the whole model at the same settings
    paged: Estimate | None  # reduced spec with windows and context rounded up to whole pages

    @property
    def expected_bytes(self) -> int:
        """What the caches must hold: the analytic bytes, or whole pages for a paged cache."""
        return self.paged.total_bytes if self.paged is not None else self.analytic.total_bytes


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def reduced_spec(spec: ModelSpec, names: list[str]) -> ModelSpec:
    """The same model's cache cut down to ``names`` (one kind name per layer, in order). Its weights
    block is dropped: verify builds caches, and per-layer weights (MLP widths per block) would not
    describe the cut model."""
    data = spec.model_dump()
    data["weights"] = None
    kinds = data["layers"]["kinds"]
    data["layers"] = {
        "count": len(names),
        "kinds": {name: kinds[name] for name in dict.fromkeys(names)},
        "pattern": list(names),
    }
    return ModelSpec.model_validate(data)


def paged_spec(spec: ModelSpec) -> ModelSpec:
    """Windows and chunks rounded up to whole pages: a paged layer holds whole blocks.

    With the context rounded up too, estimate() then gives the block-rounded bytes, because
    rounding up commutes with min(): ceil16(min(context, W)) == min(ceil16(context), ceil16(W)).
    """
    data = spec.model_dump()
    for kind in data["layers"]["kinds"].values():
        for key in ("window", "chunk"):
            if kind.get(key):
                kind[key] = _round_up(kind[key], PAGE_TOKENS)
    return ModelSpec.model_validate(data)


def choose_layers(spec: ModelSpec, layers: int | None,
                  indices: list[int] | None = None) -> tuple[list[str], list[int]]:
    """One layer of each distinct kind (first of each), the model's first ``layers`` layers, or
    exactly the layers at ``indices`` (a pipeline stage's share)."""
    order = spec.layers.order()
    if indices is not None:
        return [order[i] for i in indices], list(indices)
    if layers is None:
        first = {}
        for index, name in enumerate(order):
            first.setdefault(name, index)
        return list(first), list(first.values())
    if layers < 1:
        raise KvcalcError("--layers must be at least 1")
    if layers > len(order):
        raise KvcalcError(f"--layers {layers} is more than {spec.name}'s {len(order)} layers")
    return order[:layers], list(range(layers))


def make_plan(
    spec: ModelSpec,
    context: int | None = None,
    batch: int = 1,
    layers: int | None = None,
    cache: str = "static",
    kv_dtype: str | None = None,
    mla_layout: str = "latent",
    indices: list[int] | None = None,
) -> Plan:
    if cache not in CACHE_KINDS:
        raise KvcalcError(f"unknown cache {cache!r}; choose {', '.join(CACHE_KINDS)}")
    context = min(spec.max_context, DEFAULT_CONTEXT) if context is None else context
    if context < 1 or batch < 1:
        raise KvcalcError("--context and --batch must be at least 1")
    kv_dtype = kv_dtype or spec.dtype
    names, indices = choose_layers(spec, layers, indices)
    reduced = reduced_spec(spec, names)
    settings = dict(context=context, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout)
    paged = None
    if cache == "paged":
        paged = estimate(paged_spec(reduced), **{**settings, "context": _round_up(context, PAGE_TOKENS)})
    decode = min(DECODE_STEPS, context - 1)
    return Plan(
        spec=spec,
        reduced=reduced,
        layer_names=tuple(names),
        layer_indices=tuple(indices),
        context=context,
        batch=batch,
        kv_dtype=kv_dtype,
        mla_layout=mla_layout,
        cache=cache,
        prefill=context - decode,
        decode_steps=decode,
        analytic=estimate(reduced, **settings),
        full_model=estimate(spec, **settings),
        paged=paged,
    )


# ---- what a run needs, before anything is allocated -------------------------------------


def hidden_size(spec: ModelSpec) -> int:
    """The residual width; presets without one fall back to the attention output width."""
    if spec.hidden_size:
        return spec.hidden_size
    a = spec.attention
    return a.heads * (a.v_head_dim if isinstance(a, MLAAttention) else a.v_dim)


def weight_elements(attention: DenseAttention | MLAAttention, hidden: int) -> int:
    """Parameters of one attention layer as ``kvcalc.verify.layers`` builds it."""
    a = attention
    if isinstance(a, DenseAttention):
        # wq, wk (head_dim wide heads), wv, wo (v_dim wide heads)
        return hidden * (a.heads + a.kv_heads) * a.head_dim + hidden * (a.kv_heads + a.heads) * a.v_dim
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    if a.q_lora_rank:
        q = hidden * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * a.heads * qk  # wq_a, norm, wq_b
    else:
        q = hidden * a.heads * qk
    kv = hidden * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank  # wkv_a, kv_norm
    up = a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_head_dim)  # wkv_b
    return q + kv + up + a.heads * a.v_head_dim * hidden  # + wo


def _widest(attention: DenseAttention | MLAAttention, hidden: int) -> int:
    """The widest per-token activation a layer makes (queries, expanded K/V, latent queries)."""
    a = attention
    if isinstance(a, DenseAttention):
        return max(hidden, a.heads * a.head_dim, a.heads * a.v_dim)
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    return max(hidden, a.heads * qk, a.heads * (a.qk_nope_head_dim + a.v_head_dim),
               a.heads * (a.kv_lora_rank + a.qk_rope_head_dim))


@dataclass(frozen=True)
class Needs:
    """A stated upper bound on the bytes a run allocates on its device."""

    cache: int  # what the caches hold at most at once: see cache_bound
    scales: int  # int8/int4 scales and position/block tables, bounded
    weights: int  # the instantiated layers' parameters in the compute dtype
    activations: int  # inputs, projections, one block of attention scores, decoded cache copies

    @property
    def total(self) -> int:
        return self.cache + self.scales + self.weights + self.activations


def cache_bound(plan: Plan, share: dict[str, tuple[int, int]] | None = None) -> int:
    """An upper bound on the cache bytes alive at once, for the memory guard.

    Static and paged caches are allocated once at their final size. A dynamic layer grows by
    torch.cat, so its old and grown tensors coexist: under 2x the tokens it ends with. A dynamic
    layer that trims to a window W (W < context) holds more for a moment: at the prefill the
    grown tensor (up to the context) and the trimmed copy (W), at decode the old tensor (W),
    the grown one (W + 1) and the trimmed copy (W). Both stay within context + 2W tokens; 2x the
    final W would be no bound at all once the context is a few windows long.

    ``share`` scales a layer kind by a fraction (numerator, denominator), rounded up: the KV
    heads one tensor-parallel rank holds of the kind's heads.
    """
    share = share or {}
    total = 0
    for g, held in zip(plan.analytic.groups, (plan.paged or plan.analytic).groups):
        num, den = share.get(g.name, (1, 1))
        if plan.cache != "dynamic":
            total += -(-held.bytes * num // den)
            continue
        per_token = g.bytes_per_token * plan.batch  # all the group's layers, whole bytes
        trims = g.tokens < plan.context
        total += -(-per_token * (plan.context + 2 * g.tokens if trims else 2 * g.tokens) * num // den)
    return total


def run_needs(plan: Plan, compute_bytes: int) -> Needs:
    spec, batch = plan.spec, plan.batch
    hidden = hidden_size(spec)
    attn = [spec.attention_of(n) for n in plan.layer_names if plan.reduced.layers.kinds[n].type != "none"]
    cache = cache_bound(plan)
    # fp32 scales: one per row (a head's vector, or a latent part) per token, at most one per
    # 2 elements; positions are 8 bytes per slot and block tables 4 per block
    per_token_elements = sum(a.kv_elements_per_token(plan.mla_layout) for a in attn)
    scales = (per_token_elements * 2 if plan.kv_dtype in ("int8", "int4") else 0) * plan.context * batch
    scales += (8 + 4) * (plan.context + PAGE_TOKENS) * len(attn)
    weights = sum(weight_elements(a, hidden) for a in attn) * compute_bytes
    widest = max((_widest(a, hidden) for a in attn), default=hidden)
    largest_layer = max((a.kv_elements_per_token(plan.mla_layout) for a in attn), default=0)
    heads = max((a.heads for a in attn), default=0)
    score_row = batch * heads * (plan.context + plan.prefill) * 4  # one query row, fp32
    # a block of query rows: at most SCORE_BLOCK_BYTES (or one row), and never more rows than a step has
    scores = min(max(SCORE_BLOCK_BYTES, score_row), score_row * plan.prefill)
    activations = (
        batch * plan.context * hidden * compute_bytes  # every step's input, made up front
        + 8 * batch * plan.prefill * widest * compute_bytes  # projections alive in one step
        # a layer's keys decoded to the compute dtype, plus a ring's concatenation with the step
        + 3 * batch * (plan.context + plan.prefill) * largest_layer * compute_bytes
        + 3 * scores  # scores, their softmax, and its cast
    )
    return Needs(cache=cache, scales=scales, weights=weights, activations=activations)
