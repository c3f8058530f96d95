"""Tensor-parallel verify without torch: which rank builds what, what fit says it holds, what it needs.

Two sides, kept apart so the comparison can fail:

- the analytic side: ``kvcalc.capacity.fit`` on exactly the layers a rank holds (its
  ``kv_bytes_per_token_per_gpu``, from the engine's heads rule in ``capacity.engines``),
  times the tokens each layer kind holds (``estimate()``'s figure);
- the building side: Megatron's split. Rank ``t`` of a tensor-parallel group takes query
  heads ``[t H/tp, (t+1) H/tp)`` and exactly the KV heads those query heads read
  (``query_heads``, ``kv_heads_read``), which is what every engine does where its rule
  describes a real sharding; MLA's latent is whole on every rank. Pipeline stage ``s`` takes
  its share of the built layers by vLLM's ``get_pp_indices`` (``fit.stage_layers``).

Ranks are numbered stage-major, tensor-parallel rank innermost: ``rank = stage * tp + t``.
With ``--dp D`` (issue 21) there are D such groups, each with its own requests (its own inputs
and caches): ``rank = dp_rank * tp * pp + stage * tp + t``, ``tp`` here being the attention TP the
engine gives (vLLM: --tp, each DP rank a whole TP group; SGLang: --tp / D inside one TP group).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kvcalc.capacity.deployment import FitUsageError, check_layout, check_shape, deployment
from kvcalc.capacity.fit import Weights, fit
from kvcalc.capacity.layers import stage_layers
from kvcalc.errors import KvcalcError
from kvcalc.spec import DenseAttention, MLAAttention, ModelSpec, NoKVLayer
from kvcalc.units import format_bytes
from kvcalc.verify.plan import Needs, Plan, cache_bound, hidden_size, make_plan, run_needs, weight_elements

# Memory of the processes beside the run's tensors, measured here (torch 2.13 on CPU, summed PSS
# over the processes): the launcher is a Python with torch loaded (about 300 MiB); a rank forked
# from it shares those pages and adds about 20 MiB (gloo, its own heap); a rank started as a
# fresh interpreter (where fork is not used) is another 300 MiB. Rounded up:
LAUNCHER_BYTES = 400 * 2**20
PROCESS_BYTES = {"fork": 64 * 2**20, "exec": 400 * 2**20}
UNSUPPORTED_KV = ("int8", "int4")  # fit counts each engine's own scale layout; verify's caches keep another


@dataclass(frozen=True)
class KindShare:
    """One layer kind's layers on one rank, as fit counts them."""

    name: str
    kind: str  # full | sliding | chunked
    layers: int
    tokens: int  # held per layer and sequence (estimate()'s figure)
    expected_tokens: int  # the same, rounded up to whole 16-token blocks for a paged cache
    bytes_per_token: int  # fit's kv_bytes_per_token_per_gpu for exactly these layers
    kv_heads_per_gpu: int | None  # fit's heads rule; None for MLA (the latent is whole)
    kv_heads: int | None  # the kind's KV heads in the whole model; None for MLA
    replication: float  # fit's kv_replication: how many times each KV head is held across the group
    analytic_bytes: int  # bytes_per_token x tokens x batch
    expected_bytes: int  # bytes_per_token x expected_tokens x batch


@dataclass(frozen=True)
class RankPlan:
    rank: int
    stage: int
    tp_rank: int
    layer_indices: tuple[int, ...]  # in the whole model
    kinds: tuple[KindShare, ...]
    dp_rank: int = 0  # which data-parallel rank's requests it holds
    dcp_rank: int = 0  # with --dcp C: tp_rank % C, the rank holding each request's tokens t % C == dcp_rank

    @property
    def analytic_bytes(self) -> int:
        return sum(k.analytic_bytes for k in self.kinds)

    @property
    def expected_bytes(self) -> int:
        return sum(k.expected_bytes for k in self.kinds)

    @property
    def bytes_per_token(self) -> int:
        return sum(k.bytes_per_token for k in self.kinds)


@dataclass(frozen=True)
class TPPlan:
    plan: Plan  # every built layer, one copy: estimate() of them is the unsharded figure
    tp: int
    pp: int
    engine: str
    stages: tuple[tuple[int, ...], ...]  # layer indices per pipeline stage
    ranks: tuple[RankPlan, ...]
    notes: tuple[str, ...] = ()
    dp: int = 1  # data-parallel ranks, each a group of tp x pp ranks with its own requests
    engine_tp: int | None = None  # the --tp the engine was given (SGLang: tp x dp of attention groups)
    dcp: int = 1  # vLLM decode context parallelism: C consecutive TP ranks share each request's tokens

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def analytic_bytes(self) -> int:
        return sum(r.analytic_bytes for r in self.ranks)

    @property
    def expected_bytes(self) -> int:
        return sum(r.expected_bytes for r in self.ranks)

    def stage_plan(self, stage: int) -> Plan:
        """The single-device plan of one stage's layers: what its caches hold, one copy."""
        p = self.plan
        return make_plan(p.spec, context=p.context, batch=p.batch, cache=p.cache, kv_dtype=p.kv_dtype,
                         mla_layout=p.mla_layout, indices=list(self.stages[stage]))


# ---- the building side: Megatron's split of the heads ---------------------------------------


def query_heads(heads: int, tp: int, tp_rank: int) -> range:
    """The query heads tensor-parallel rank ``tp_rank`` computes: an equal, contiguous share."""
    n = heads // tp
    return range(tp_rank * n, (tp_rank + 1) * n)


def kv_heads_read(heads: int, kv_heads: int, q: range) -> range:
    """The KV heads query heads ``q`` read: query head h reads KV head h // (heads / kv_heads).

    kv_heads a multiple of tp: kv_heads / tp each. tp a multiple of kv_heads: the one head its
    queries share, so each KV head is held by tp / kv_heads ranks. (Other shapes straddle KV
    heads; fit's check_shape refuses them, as vLLM does.)
    """
    group = heads // kv_heads
    return range(q.start // group, (q.stop - 1) // group + 1)


def local_attention(a: DenseAttention | MLAAttention, tp: int, tp_rank: int) -> tuple[int, int]:
    """(query heads, KV heads) one rank builds; MLA: (query heads, 0), its latent whole."""
    q = query_heads(a.heads, tp, tp_rank)
    if isinstance(a, MLAAttention):
        return len(q), 0
    return len(q), len(kv_heads_read(a.heads, a.kv_heads, q))


# ---- the analytic side: fit on exactly the layers a rank holds ------------------------------


def kind_spec(spec: ModelSpec, name: str, layers: int) -> ModelSpec:
    """``layers`` layers of kind ``name`` alone, the kind's attention made the model's, no weights
    block: fit's per-GPU figures for exactly those layers, and its heads and replication for them."""
    data = spec.model_dump()
    kind = dict(data["layers"]["kinds"][name])
    if "attention" in kind:
        kind["attention"] = None
    data["attention"] = spec.attention_of(name).model_dump()
    data["layers"] = {"count": layers, "kinds": {name: kind}, "pattern": [name]}
    data["weights"] = None
    return ModelSpec.model_validate(data)


def fit_share(spec: ModelSpec, name: str, layers: int, tp: int, engine: str, plan: Plan, dp: int = 1,
              dcp: int = 1) -> KindShare:
    """fit's per-GPU bytes per token for ``layers`` layers of kind ``name``, times the tokens held
    (``tp``, ``dp`` and ``dcp`` as the engine is given them: fit decides the attention TP). With DCP,
    fit's bytes per token are per GPU over a request's tokens (1/dcp of them held there), and the
    tokens expected are what the dcp ranks' equal slots cover: dcp x cdiv(context, dcp), or
    dcp x 16 x cdiv(context, 16 x dcp) paged."""
    d = deployment(engine, None, tp=tp, kv_dtype=plan.kv_dtype, reserve=0, dp=dp, dcp=dcp)
    result = fit(kind_spec(spec, name, layers), d, plan.context, weights=Weights(total_bytes=0), search_min=False)
    tokens = {g.name: g.tokens for g in plan.analytic.groups}[name]
    expected = {g.name: g.tokens for g in (plan.paged or plan.analytic).groups}[name]
    if dcp > 1:  # full-attention layers only (vLLM's rule, check_layout): the tokens are the context
        per_rank = -(-plan.context // dcp)
        expected = dcp * (-(-per_rank // 16) * 16 if plan.cache == "paged" else per_rank)
    per_token = result.kv_bytes_per_token_per_gpu
    attention = spec.attention_of(name)
    return KindShare(
        name=name, kind=spec.layers.kinds[name].type, layers=layers, tokens=tokens, expected_tokens=expected,
        bytes_per_token=per_token, kv_heads_per_gpu=result.kv_heads_per_gpu,
        kv_heads=attention.kv_heads if isinstance(attention, DenseAttention) else None,
        replication=result.kv_replication, analytic_bytes=per_token * tokens * plan.batch,
        expected_bytes=per_token * expected * plan.batch,
    )


def make_tp_plan(
    spec: ModelSpec,
    tp: int = 1,
    pp: int = 1,
    engine: str = "vllm",
    context: int | None = None,
    batch: int = 1,
    layers: int | None = None,
    cache: str = "static",
    kv_dtype: str | None = None,
    mla_layout: str = "latent",
    dp: int = 1,
    dcp: int = 1,
) -> TPPlan:
    """Raises FitUsageError for a shape or option that cannot be verified this way (exit 2).
    ``tp``, ``dp`` and ``dcp`` are the engine's flags; the ranks split heads over its attention TP."""
    if tp < 1 or pp < 1 or dp < 1 or dcp < 1:
        raise FitUsageError("--tp, --pp, --dp and --dcp must be at least 1")
    engine_tp = tp
    layout = deployment(engine, None, tp=tp, dp=dp, dcp=dcp)
    check_layout(spec, layout)  # DP and DCP as the engine allows them (vLLM: DCP divides TP, GQA past its KV heads)
    tp = layout.attention_tp  # what one attention layer's heads are split over
    check_shape(spec, tp, 1)  # TP divides the attention heads, as fit requires
    if dcp > 1:
        check_dcp_groups(spec, tp, dcp, cache)
    if any(getattr(spec.attention_of(n), "indexer", None) is not None
           for n, k in spec.layers.kinds.items() if k.type != "none"):
        raise KvcalcError(f"verify --tp/--pp does not build {spec.name}'s sparse-attention indexer on its ranks; "
                          "plain verify measures the indexer keys, and fit counts them whole on every GPU")
    if (kv_dtype or spec.dtype) in UNSUPPORTED_KV:
        raise FitUsageError(f"--kv-dtype {kv_dtype or spec.dtype} with --tp/--pp: fit counts each engine's own "
                            "scale layout for int8/int4, which verify's caches do not follow; verify quantized "
                            "caches without --tp, or use fp8")
    kinds = spec.layers.kinds
    has_mla = any(isinstance(spec.attention_of(n), MLAAttention) for n, k in kinds.items()
                  if not isinstance(k, NoKVLayer))
    if has_mla and mla_layout == "expanded":
        raise FitUsageError("--mla-layout expanded with --tp/--pp: fit counts MLA's latent, whole on every GPU, "
                            "as vLLM and SGLang cache it; verify the expanded layout without --tp")
    notes = []
    if layers is not None and layers < pp:
        raise FitUsageError(f"--pp {pp} needs at least {pp} layers built, one per stage; --layers {layers} builds "
                            f"{layers}")
    if pp > spec.layers.count:
        raise FitUsageError(f"--pp {pp} is more than the {spec.layers.count} layers of {spec.name}")
    plan = make_plan(spec, context=context, batch=batch, layers=layers, cache=cache, kv_dtype=kv_dtype,
                     mla_layout=mla_layout)
    if layers is None and len(plan.layer_indices) < pp:
        # one layer of each kind is too few for the stages: the model's first pp layers, one each
        plan = make_plan(spec, context=context, batch=batch, layers=pp, cache=cache, kv_dtype=kv_dtype,
                         mla_layout=mla_layout)
        notes.append(f"--pp {pp}: built the model's first {pp} layers, one per stage (--layers for more)")
    stages = tuple(tuple(plan.layer_indices[i] for i in share)
                   for share in stage_layers(len(plan.layer_indices), pp))
    order = spec.layers.order()
    ranks = []
    for stage, indices in enumerate(stages):
        counts: dict[str, int] = {}
        for index in indices:
            counts[order[index]] = counts.get(order[index], 0) + 1
        shares = tuple(fit_share(spec, name, n, engine_tp, engine, plan, dp, dcp) for name, n in counts.items()
                       if not isinstance(kinds[name], NoKVLayer) and not spec.is_encoder)
        for t in range(tp):
            ranks.append(RankPlan(rank=stage * tp + t, stage=stage, tp_rank=t, layer_indices=indices, kinds=shares,
                                  dcp_rank=t % dcp))
    ranks = [replace(r, rank=d * tp * pp + r.rank, dp_rank=d) for d in range(dp) for r in ranks]
    if dp > 1:
        notes.append(f"--dp {dp}: {dp} groups of {tp * pp} rank(s), each filling its own cache with its own requests "
                     f"(other inputs), attention split over {tp}")
    if dcp > 1:
        notes.append(f"--dcp {dcp}: each request's token t is cached on DCP rank t % {dcp} of {tp // dcp} group(s) of "
                     f"{dcp} consecutive TP ranks; each rank attends over its tokens and the outputs are merged by "
                     "their log-sum-exp (vLLM's cp_lse_ag_out_rs)")
    return TPPlan(plan=plan, tp=tp, pp=pp, engine=engine, stages=stages, ranks=tuple(ranks), notes=tuple(notes),
                  dp=dp, engine_tp=engine_tp, dcp=dcp)


def check_dcp_groups(spec: ModelSpec, tp: int, dcp: int, cache: str) -> None:
    """What verify --dcp builds beyond fit's rules: a static or paged cache, and DCP groups
    (``dcp`` consecutive TP ranks) whose ranks read the same KV heads, as they must to share tokens."""
    if cache == "dynamic":
        raise FitUsageError("--dcp with --cache dynamic: vLLM's DCP ranks each hold a request's pages; verify it with "
                            "--cache static or paged")
    for name, kind in spec.layers.kinds.items():
        a = None if isinstance(kind, NoKVLayer) else spec.attention_of(name)
        if not isinstance(a, DenseAttention):
            continue
        for g in range(0, tp, dcp):
            read = {(r.start, r.stop) for r in (kv_heads_read(a.heads, a.kv_heads, query_heads(a.heads, tp, t))
                                                for t in range(g, g + dcp))}
            if len(read) > 1:
                raise FitUsageError(f"--dcp {dcp}: TP ranks {g}-{g + dcp - 1} of {spec.name} ({name}) read different "
                                    f"KV heads, so they cannot share a request's tokens; pick a DCP dividing "
                                    f"tp / kv_heads = {tp} / {a.kv_heads}")


# ---- what the ranks need, before anything is allocated --------------------------------------


def rank_needs(tpp: TPPlan, rank: int, compute_bytes: int) -> Needs:
    """An upper bound on what one rank allocates on its device: its share of the caches (the KV
    heads it builds), its weight shards, and the stage's single-device activation bound."""
    r = tpp.ranks[rank]
    stage = tpp.stage_plan(r.stage)
    spec = stage.spec
    share, weights = {}, 0
    hidden = hidden_size(spec)
    for name in dict.fromkeys(stage.layer_names):
        if isinstance(spec.layers.kinds[name], NoKVLayer):
            continue
        a = spec.attention_of(name)
        q, kv = local_attention(a, tpp.tp, r.tp_rank)
        local = a.model_copy(update={"heads": q} if isinstance(a, MLAAttention) else {"heads": q, "kv_heads": kv})
        weights += weight_elements(local, hidden) * stage.layer_names.count(name) * compute_bytes
        if isinstance(a, DenseAttention):
            share[name] = (kv, a.kv_heads)
    base = run_needs(stage, compute_bytes)
    return replace(base, cache=cache_bound(stage, share), weights=weights)


def total_needs(tpp: TPPlan, compute_bytes: int) -> Needs:
    """All ranks together, as they share one machine's memory on CPU."""
    parts = [rank_needs(tpp, r.rank, compute_bytes) for r in tpp.ranks]
    return Needs(cache=sum(p.cache for p in parts), scales=sum(p.scales for p in parts),
                 weights=sum(p.weights for p in parts), activations=sum(p.activations for p in parts))


def too_big(needs: Needs, world: int, where: str, free: int | None, processes: int = 0) -> str:
    free_text = f"{format_bytes(free)} is free" if free is not None else "it ran out of memory"
    procs = f", the launcher and {world} rank processes {format_bytes(processes)}" if processes else ""
    return (
        f"verify with {world} rank(s) needs about {format_bytes(needs.total + processes)} {where} (caches "
        f"{format_bytes(needs.cache)}, weight shards {format_bytes(needs.weights)}, activations "
        f"{format_bytes(needs.activations)}, scales and tables {format_bytes(needs.scales)}{procs}) but "
        f"{free_text}; try fewer layers (--layers 1), a shorter --context or fewer ranks"
    )


def check_ram(tpp: TPPlan, compute_bytes: int, free: int, on_cpu: bool, start: str = "fork") -> None:
    """Refuse before any process starts when the ranks together need more RAM than is free.
    On CUDA only the processes count here; each rank checks its own GPU before allocating."""
    needs = total_needs(tpp, compute_bytes) if on_cpu else Needs(0, 0, 0, 0)
    processes = LAUNCHER_BYTES + tpp.world * PROCESS_BYTES[start]
    if needs.total + processes > free:
        raise KvcalcError(too_big(needs, tpp.world, "of RAM", free, processes))
