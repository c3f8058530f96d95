"""What fits on which GPUs: weights, reserve and KV per GPU, counted as an engine counts them.

Pure integer arithmetic on a spec (no torch, no terminal). ``fit()`` orchestrates one
``Deployment``: the weights per GPU as loaded, the reserve, the engine's budget, and what
each pipeline stage's budget holds (the engine's own ``capacity``). Every rule that differs
between engines or versions lives in ``engines/``; the shape rules in ``deployment.py``.
``best_shape`` is the one rule that turns ``--gpus N`` into a shape; ``min_shape`` finds the
fewest GPUs that hold N requests.
"""

from fractions import Fraction
from typing import NamedTuple

from kvcalc.capacity.deployment import Deployment, FitUsageError, check_layout, check_shape, tp_allowed
from kvcalc.capacity.layers import cdiv, kind_counts, layer_types, serving_dtype, stage_layers
from kvcalc.capacity.params import (
    ParamCount,
    parameter_count,
    stage_parts,
    whole_model_parts,
)
from kvcalc.capacity.weights import Placement, per_gpu_weights
from kvcalc.capacity.weights import weights_bytes as bytes_at
from kvcalc.dtypes import DTYPE_BITS
from kvcalc.errors import KvcalcError
from kvcalc.spec import MLAAttention, ModelSpec

__all__ = ["FitResult", "FitUsageError", "Weights", "best_shape", "fit", "min_shape", "serving_dtype"]

MAX_SHAPE_GPUS = 512


class Weights(NamedTuple):
    """Where the weights' bytes come from: the parameter count at a dtype (None: the released or
    the model's), a given total, or a checkpoint's safetensors headers."""

    dtype: str | None = None
    total_bytes: int | None = None
    checkpoint: object = None  # a checkpoint.Checkpoint


class ExtrasUsageError(FitUsageError):
    """An extra the model cannot take, whatever the shape (a draft of another vocabulary, LoRA on MLA);
    ``option`` names the flag at fault where one does."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class Extras(NamedTuple):
    """What else the engine holds (capacity/extras.py): LoRA slots, a draft model and its weights
    source, MTP layers, a prompt prefix shared by every request."""

    lora: object = None  # extras.LoRA
    draft: ModelSpec | None = None
    draft_ref: str | None = None  # what to name the draft in a launch command (a Hub id or path)
    draft_weights: Weights = Weights()
    mtp: int = 0
    shared_prefix: int = 0
    cpu_kv: int = 0  # a CPU tier of this many bytes, as the engine's flag sizes it
    disk_kv: int = 0  # a disk tier of this many bytes (vLLM's fs tier, LMCache local disk, SGLang's file storage)
    hicache_ratio: Fraction | None = None  # SGLang --hicache-ratio: host pool = ratio x device pool (per rank)
    tier_backend: str | None = None  # None: the engine's first (vLLM native, SGLang hicache, TRT-LLM host)
    host_bandwidth: int = 64 * 10**9  # bytes per second a reload runs at (PCIe Gen5 x16's peak)


class FitResult(NamedTuple):
    model: str
    engine: str
    engine_version: str
    gpu: str | None
    gpu_memory_bytes: int | None  # None: no GPU given (backwards mode: what N requests need)
    gpus: int
    tp: int
    pp: int
    replicas: int
    dp: int  # data-parallel attention ranks per instance (vLLM --data-parallel-size, SGLang --attn-dp-size)
    ep: int  # expert-parallel size (1: none)
    dcp: int  # vLLM decode context parallelism: one request's KV over dcp ranks of the TP group
    attention_tp: int  # ranks one attention layer's heads are split over (SGLang: tp / dp)
    weights_dtype: str
    kv_dtype: str
    context: int
    block_size: int
    max_batched_tokens: int
    gpu_util: float
    parameters: int | None
    active_parameters: int | None
    weights_source: str
    weights_bytes: int
    weights_bytes_per_gpu: int
    reserve_bytes_per_gpu: int
    reserve_estimated: bool
    reserve_parts: dict
    kv_budget_bytes_per_gpu: int | None
    kv_heads_per_gpu: int | None
    kv_replication: float
    kv_bytes_per_token_per_gpu: int
    state_bytes_per_request_per_gpu: int
    kv_blocks_per_gpu: int | None
    kv_tokens: int | None
    kv_pool_per_rank: int | None  # tokens of requests one rank's pool holds (DCP: its share of each)
    kv_bytes_per_request_per_gpu: int
    kv_groups: list
    max_concurrency: int | None  # per rank: one DP rank's (one TP group's) pool
    total_concurrency: int | None  # every rank and replica together
    max_context: int | None
    model_max_context: int
    fits: bool | None
    min_gpus: int | None
    min_gpus_shape: dict | None  # {gpus, tp, pp, replicas}: the fewest GPUs that hold the requests asked for
    concurrency: int | None  # requests asked for (backwards mode), else None; replicas share them
    required_kv_bytes_per_gpu: int  # KV the asked-for requests (default: one) need on one GPU, as the engine pages it
    required_bytes_per_gpu: int  # that plus weights and reserve
    required_gpu_util: float | None  # the smallest --gpu-util (two decimals) that holds them; None if none does
    extras: dict  # LoRA, draft and MTP bytes per GPU, the shared prefix (0 / None when not asked)
    engine_log: dict  # the figures the engine will log at start-up, predicted
    engine_log_kv_tokens: int | None  # vLLM's "GPU KV cache size"
    engine_log_max_concurrency: float | None  # vLLM's "Maximum concurrency"
    max_total_num_tokens: int | None  # SGLang's pool in tokens
    max_running_requests: int | None  # SGLang's running-request slots (a cap, not requests of the context)
    deployment: dict
    layouts: list | tuple = ()  # rows: this shape and the DP/EP layouts on as many GPUs
    min_gpus_layout: dict | None = None  # the fewest GPUs in the engine's DP-attention + EP layout for the requests
    nodes: int | None = None  # --nodes M (None: one node, or not said)
    gpus_per_node: int | None = None  # --gpus-per-node G
    nodes_per_instance: int = 1  # nodes one engine instance spans (vLLM --nnodes)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = self._asdict()
        data["layouts"] = list(self.layouts)
        data["warnings"] = list(self.warnings)
        data["notes"] = list(self.notes)
        return data


def _weights(spec: ModelSpec, count: ParamCount | None, choice: Weights) -> tuple[int, str, str]:
    """(bytes, dtype label, source) of the whole model's weights."""
    if choice.total_bytes is not None:
        return choice.total_bytes, choice.dtype or "given", "--weights-bytes"
    c = choice.checkpoint
    if choice.dtype is None and c is not None:
        source = f"safetensors headers ({c.tensors:,} tensors in {c.files} file{'s' if c.files > 1 else ''})"
        if c.f32_bytes and spec.dtype == "fp32":
            # an engine serving a float32 checkpoint in bf16 holds its F32 tensors at half the size
            return c.bytes - c.f32_bytes // 2, "checkpoint", source + ", float32 tensors at bf16 as served"
        return c.bytes, "checkpoint", source
    released = spec.weights.dtype if spec.weights is not None else None
    dtype = choice.dtype or released or serving_dtype(spec.dtype)
    if count is None:
        raise KvcalcError(
            f"{spec.name}: its parameter count is not derived (no weights block; see its notes), so "
            "its weights are unknown: give --weights-bytes SIZE, or a model folder with safetensors files"
        )
    return bytes_at(count, dtype), dtype, f"parameter count x {dtype}"


def _weights_per_gpu(spec: ModelSpec, count: ParamCount | None, dtype: str, total: int, d: Deployment,
                     from_count: bool) -> tuple[int, str | None]:
    """(bytes on the fullest GPU, a note): as loaded when the count gives the parts, else even shares."""
    if not from_count or count is None or spec.weights is None or spec.hidden_size is None:
        note = (f"weights are divided evenly over tp x pp = {d.tp * d.pp} GPUs (the parts are not known from "
                "a total; embeddings, norms and replicated parts are not modelled apart)") if d.tp * d.pp > 1 else None
        if d.dp > 1 or d.ep > 1:
            note = (note or "weights are whole on every GPU") + ("; with DP or EP the routed experts' share is not "
                                                                 "known from a total, so they are not divided further")
        return cdiv(total, d.tp * d.pp), note
    w = spec.weights
    place = d.engine.placement(spec, d)
    # each stage's own layers: layers differ (MLP widths per block, mixer layers, MoE every other)
    by_stage = ([stage_parts(spec, r) for r in stage_layers(spec.layers.count, d.pp)] if d.pp > 1
                else [whole_model_parts(spec)])
    whole = sum(s.replicated for s in by_stage)  # MLA's down projections, held whole on every GPU
    final_norm = spec.hidden_size * (2 if w.norm == "layer" else 1) if w.final_norm else 0
    fullest = per_gpu_weights(count, dtype, w.vocab_size, spec.hidden_size, w.tied_embeddings, by_stage, d.tp,
                              extra=w.extra_parameters, placement=place, final_norm=final_norm)
    note = None
    if d.tp * d.pp > 1 and place == Placement.tensor_parallel(d.tp):
        note = (f"weights per GPU as {d.engine.title} loads them over TP {d.tp} x "
                f"PP {d.pp}: layer matrices split over TP"
                + (", but MLA's down projections (q_a, kv_a) whole on every GPU" if whole and d.tp > 1 else "")
                + ", norms, biases and routers whole on every GPU, embedding and head split by rows of a vocabulary "
                "padded to 64 (first and last stage); replicated KV projections past the KV-head count are "
                "not counted apart")
    elif d.tp * d.pp > 1 or d.dp > 1:
        note = (f"weights per GPU as {d.engine.name} loads them over TP {d.tp} x PP {d.pp}"
                + (f" x DP {d.dp}" if d.dp > 1 else "") + f": attention matrices split {place.attention} ways"
                + (", MLA's down projections whole" if whole else "")
                + (f", dense MLPs {place.dense} ways, shared experts whole (sequence-parallel MoE)"
                   if place.shared == 1 else f", dense MLPs and shared experts {place.dense} ways")
                + (f", routed experts {place.routed} ways" if count.routed else "")
                + f"; norms, biases and routers whole on every GPU; embedding split {place.embedding} and head "
                f"{place.head} ways by rows of a vocabulary padded to 64 (first and last stage); replicated KV "
                "projections past the KV-head count are not counted apart")
    if w.extra_parameters and (d.pp > 1 or dtype not in ("bf16", "fp16", "fp32")):
        note = ((note + "; ") if note else "") + (
            f"the {w.extra_parameters:,} parameters outside kvcalc's weights schema (see the model's notes) are "
            "placed with the embedding on the first stage and kept 16-bit: an upper bound where some are layer "
            "matrices")
    return fullest, note


def fit(spec: ModelSpec, d: Deployment, context: int | None = None, concurrency: int | None = None,
        weights: Weights = Weights(), mla_layout: str = "latent", search_min: bool = True,
        extras: Extras = Extras()) -> FitResult:
    """Forward: what ``d.memory`` per GPU holds. Backwards (``concurrency``): what that many requests
    of ``context`` tokens need, the smallest utilization for it, and the fewest GPUs that hold it.
    ``d.memory`` None answers only the backwards part. ``extras``: what else the engine holds."""
    if spec.is_encoder:
        raise KvcalcError(f"{spec.name} is an encoder: it keeps no KV cache, so there is no capacity to plan")
    base_spec = spec
    speculative = extras.draft is not None or bool(extras.mtp)
    if extras.shared_prefix != d.shared_prefix or speculative != d.speculative or extras.mtp != d.mtp_layers:
        d = d._replace(shared_prefix=extras.shared_prefix, speculative=speculative, mtp_layers=extras.mtp)
    asked = d  # the searches size each candidate's own --max-num-seqs from the requests
    if concurrency is not None and d.max_seqs is None:  # launched for the requests asked, as --emit writes
        d = d._replace(max_seqs=-(-concurrency // (d.replicas * d.dp)))
    if extras.mtp:
        from kvcalc.capacity.extras import with_extra_layers

        spec = with_extra_layers(spec, extras.mtp)
    engine = d.engine
    if not spec.attends and engine.name != "vllm":
        raise KvcalcError(f"{spec.name} has no attention (a state-space model): how {engine.name} sizes a pool of "
                          "states alone is not modelled; kvcalc fits it with vLLM's rules (--engine vllm)")
    gpu_util = engine.default_util(spec, d) if d.gpu_util is None else d.gpu_util
    if not 0 < gpu_util <= 1:
        if d.gpu_util is None:  # the engine's own default, computed from the GPU and the deployment
            raise FitUsageError(f"{engine.name}'s default memory fraction comes to {float(gpu_util):.3f} here, "
                                "outside (0, 1]: its reserve (CUDA-graph batch sizes, chunked prefill, TP) exceeds "
                                "the GPU; lower --cuda-graph-max-bs or give --gpu-util")
        raise FitUsageError(f"--gpu-util {float(gpu_util)} is outside (0, 1]")
    check_layout(spec, d)
    check_shape(spec, d.attention_tp, d.pp)
    batched = d.max_batched_tokens or engine.batched_tokens(d)
    context = spec.max_context if context is None else context
    notes, warnings = [], []
    kv_dtype = d.kv_dtype or serving_dtype(spec.dtype)
    if d.kv_dtype is None and spec.dtype == "fp32":
        notes.append("the checkpoint is float32; engines serve it in bf16 (vLLM's --dtype auto), so "
                     "weights and KV are counted in bf16 (--weights-dtype/--kv-dtype fp32 to keep it)")

    count = parameter_count(spec)
    total_weights, weights_label, weights_source = _weights(spec, count, weights)
    if weights_label == "mxfp4" and count is not None and not count.routed:
        warnings.append(f"mxfp4 shrinks routed experts only, and {spec.name} has none: every weight is counted "
                        "16-bit")
    from_count = weights_source.startswith("parameter count")
    per_gpu, weights_note = _weights_per_gpu(spec, count, weights_label, total_weights, d, from_count)
    if weights_note:
        notes.append(weights_note)
    held, extra_notes = _extras_held(spec, base_spec, d, extras, count, weights_label, from_count, kv_dtype)
    notes += extra_notes
    per_gpu_all = (per_gpu + held["lora_bytes_per_gpu"] + held["draft_weights_bytes_per_gpu"]
                   + held["mtp_weights_bytes_per_gpu"])
    if d.reserve is None:
        parts = engine.reserve_parts(spec, d, batched)
        reserve, estimated = sum(parts.values()), True
    else:
        parts, reserve, estimated = {"given": d.reserve}, d.reserve, False
    known = d.memory is not None
    budget = engine.budget(d, gpu_util, per_gpu_all, reserve) if known else None

    cap = max(spec.max_context, context)
    attn_tp = d.attention_tp
    whole = layer_types(spec, range(spec.layers.count), attn_tp, engine, kv_dtype, mla_layout, d.platform)
    per_stage = [kind_counts(spec, layers) for layers in stage_layers(spec.layers.count, d.pp)]
    if extras.draft is not None:  # the draft's layers join the pool (vLLM: its own KV-cache groups)
        draft = extras.draft
        for t in layer_types(draft, range(draft.layers.count), attn_tp, engine, kv_dtype, mla_layout, d.platform):
            whole.append(t._replace(name=f"draft/{t.name}"))
            per_stage[0][f"draft/{t.name}"] = t.layers
    worst = engine.capacity(spec, whole, per_stage, budget or 0, d, context, cap, batched)
    notes.extend(worst.notes)
    notes.extend(engine.notes(spec, d, kv_dtype))
    warnings.extend(engine.kv_dtype_warnings(d, kv_dtype, (spec.dtype, serving_dtype(spec.dtype))))
    wanted = concurrency or 1
    per_replica = cdiv(wanted, d.ranks)  # data-parallel ranks and replicas share the requests
    required_kv = per_replica * worst.request_bytes
    required = per_gpu_all + reserve + required_kv
    required_util = engine.required_util(d, per_gpu_all, reserve, required_kv)

    heads_per_gpu, replication = _replication(spec, d, kv_dtype, notes)
    if d.gpus_per_node is not None:
        from kvcalc.capacity.nodes import node_notes

        notes += node_notes(d)
    if d.pp > 1:
        notes.append("pipeline stages hold their share of the layers; the stage with the least room decides")
    if not engine.windows and any(k.type in ("sliding", "chunked") for k in spec.layers.kinds.values()) \
            and not any("sliding" in n for n in notes):
        notes.append(f"{engine.name}'s token pool charges sliding and chunked layers the whole context")
    if context > spec.max_context:
        warnings.append(f"context {context} is beyond {spec.name}'s max context {spec.max_context}; computed anyway")
    if not known:
        notes.append("no GPU given: engine defaults sized for an 80 GiB GPU (max_num_batched_tokens "
                     f"{batched}); --gpu or --gpu-memory for capacity and a memory fraction")
    elif required_util is not None and required_util > 0.95 and concurrency:
        warnings.append(f"--gpu-util {required_util:.2f} leaves under 5% for the CUDA context and other "
                        "processes; vLLM refuses to start when free memory is below util x total")
    if budget is not None and budget <= 0:
        warnings.append(f"weights ({per_gpu_all:,} B) and reserve ({reserve:,} B) per GPU leave no "
                        f"room for KV within {float(gpu_util):g} of {d.memory:,} B")

    held.update(_tiers(spec, d, extras, worst, context, count, weights_label, notes))
    spec_tokens = d.switches.speculative_tokens or (extras.mtp if extras.mtp else int(extras.draft is not None))
    held["cuda_graphs"] = engine.cuda_graphs(spec, d, batched, spec_tokens, extras.lora is not None)
    if d.switches.cuda_graph_max_bs is not None or d.speculative:  # the sizes these change, said
        notes.append("CUDA graphs: " + held["cuda_graphs"]["rule"])
    fits = worst.max_concurrency >= per_replica if known else None
    shape = min_shape(base_spec, asked, wanted, context, weights, mla_layout, extras) if search_min and known else None
    log = dict(worst.log) if known and spec.attends else {}
    if known and not spec.attends:
        notes.append("vLLM's log lines for a model without attention are not predicted")
    result = FitResult(
        model=spec.name, engine=engine.name, engine_version=engine.version, gpu=d.gpu_key, gpu_memory_bytes=d.memory,
        gpus=d.gpus, tp=d.tp, pp=d.pp, replicas=d.replicas, dp=d.dp, ep=d.ep, dcp=d.dcp, attention_tp=attn_tp,
        weights_dtype=weights_label, kv_dtype=kv_dtype,
        context=context, block_size=worst.block_size, max_batched_tokens=batched, gpu_util=float(gpu_util),
        parameters=count.total if count else None, active_parameters=count.active if count else None,
        weights_source=weights_source, weights_bytes=total_weights, weights_bytes_per_gpu=per_gpu,
        reserve_bytes_per_gpu=reserve, reserve_estimated=estimated, reserve_parts=parts,
        kv_budget_bytes_per_gpu=budget, kv_heads_per_gpu=heads_per_gpu, kv_replication=replication,
        kv_bytes_per_token_per_gpu=worst.per_token_bytes,
        state_bytes_per_request_per_gpu=worst.state_bytes_per_request,
        kv_blocks_per_gpu=worst.blocks if known else None, kv_tokens=worst.tokens if known else None,
        kv_pool_per_rank=worst.tokens if known else None,
        kv_bytes_per_request_per_gpu=worst.request_bytes, kv_groups=list(worst.groups),
        max_concurrency=worst.max_concurrency if known else None, model_max_context=spec.max_context,
        total_concurrency=worst.max_concurrency * d.ranks if known else None,
        max_context=worst.max_context if known else None,
        fits=fits, min_gpus=shape["gpus"] if shape else None, min_gpus_shape=shape, concurrency=concurrency,
        required_kv_bytes_per_gpu=required_kv, required_bytes_per_gpu=required, required_gpu_util=required_util,
        extras=held, engine_log=log, engine_log_kv_tokens=log.get("gpu_kv_cache_tokens"),
        engine_log_max_concurrency=log.get("max_concurrency"),
        max_total_num_tokens=log.get("max_total_num_tokens"), max_running_requests=log.get("max_running_requests"),
        deployment=d.describe(), warnings=tuple(warnings), notes=tuple(notes),
        nodes=d.nodes, gpus_per_node=d.gpus_per_node, nodes_per_instance=d.nodes_per_instance,
    )
    if not (search_min and known):
        return result
    from kvcalc.capacity.layouts import layouts, min_layout

    options = {"weights": weights, "mla_layout": mla_layout, "extras": extras}
    rows = layouts(base_spec, d, result, context, options)
    fewest = min_layout(base_spec, asked, wanted, context, options) if concurrency else None
    return result._replace(layouts=rows, min_gpus_layout=fewest)


def _extras_held(spec: ModelSpec, base: ModelSpec, d: Deployment, extras: Extras, count, dtype: str,
                 from_count: bool, kv_dtype: str) -> tuple[dict, list[str]]:
    """Bytes per GPU of LoRA slots and a draft model's weights, and what MTP and a shared prefix add."""
    from kvcalc.capacity.extras import ExtrasError, lora_bytes_per_gpu, lora_parameters

    notes = []
    held = {"lora_bytes_per_gpu": 0, "lora_parameters_per_adapter": None, "lora_slots": 0, "lora_rank": None,
            "lora_targets": [], "draft": None, "draft_model_ref": extras.draft_ref, "draft_weights_bytes_per_gpu": 0,
            "mtp_layers": extras.mtp, "shared_prefix": extras.shared_prefix}
    if extras.lora is not None:
        try:
            held["lora_parameters_per_adapter"] = lora_parameters(spec, extras.lora.rank, extras.lora.targets)
            held.update(lora_slots=extras.lora.slots, lora_rank=extras.lora.rank,
                        lora_targets=list(extras.lora.targets))
            held["lora_bytes_per_gpu"] = lora_bytes_per_gpu(spec, extras.lora, d.tp, DTYPE_BITS[
                serving_dtype(spec.dtype)] // 8)
        except ExtrasError as exc:
            raise ExtrasUsageError(str(exc)) from None
        notes.append(f"LoRA: {extras.lora.slots} slot(s) of rank {extras.lora.rank} on "
                     f"{','.join(extras.lora.targets)}: {held['lora_parameters_per_adapter']:,} parameters per "
                     f"adapter; each GPU holds every slot, A or B split over TP as the layer is, taken from the "
                     f"budget like weights ({held['lora_bytes_per_gpu']:,} B per GPU)")
    if extras.draft is not None:
        draft = extras.draft
        if d.pp > 1:
            raise FitUsageError("a draft model with --pp is not modelled (vLLM runs speculative decoding at PP 1)")
        total, label, _ = _weights(draft, parameter_count(draft), extras.draft_weights)
        held["draft"] = draft.name
        held["draft_weights_bytes_per_gpu"] = cdiv(total, d.tp)
        notes.append(f"draft model {draft.name}: its weights ({label}) on every GPU of the TP group, split as the "
                     "target's, and its layers' KV in the same pool, every request holding both")
        if spec.weights and draft.weights and spec.weights.vocab_size != draft.weights.vocab_size:
            raise ExtrasUsageError(f"the draft {draft.name} has a vocabulary of {draft.weights.vocab_size:,} and "
                                f"{base.name} one of {spec.weights.vocab_size:,}: engines refuse a draft whose "
                                "vocabulary differs from the target's")
    held["mtp_weights_bytes_per_gpu"] = 0
    if extras.mtp:
        hidden = spec.hidden_size or 0
        wide = 4 if dtype == "fp32" else 2
        # each MTP module: eh_proj (2 x hidden -> hidden), enorm, hnorm and its head's norm, whole on every GPU
        # (vLLM's deepseek_mtp.py: a ReplicatedLinear); the decoder layer itself is in the weights above
        held["mtp_weights_bytes_per_gpu"] = extras.mtp * (2 * hidden * hidden + 3 * hidden) * wide if from_count else 0
        notes.append(f"{extras.mtp} MTP layer(s): the model's last decoder layer again, counted in the weights and "
                     "holding KV like the others, plus eh_proj and its norms whole on every GPU; the embedding and "
                     "head are the target's (vLLM shares them)"
                     + ("" if from_count else "; the weights were given as a total, so the MTP layer's are not added"))
    if extras.shared_prefix:
        notes.append(f"a {extras.shared_prefix:,}-token prefix shared by every request: with prefix caching its "
                     "whole pages are held once")
    return held, notes


def _tiers(spec: ModelSpec, d: Deployment, extras: Extras, worst, context: int, count, dtype: str,
           notes: list[str]) -> dict:
    """The CPU and disk tiers asked for (capacity/tiers.py), each with its one-line note."""
    from kvcalc.capacity.tiers import tier

    backends = d.engine.tier_backends
    backend = extras.tier_backend or (backends[0] if backends else "")
    if extras.hicache_ratio is not None and not d.engine.tier_ratio:
        raise ExtrasUsageError(f"--hicache-ratio is SGLang's (HiCache); {d.engine.name} sizes its tier in bytes: "
                               "give --cpu-kv SIZE", "--hicache-ratio")
    found = {}
    asks = []
    if extras.cpu_kv or extras.hicache_ratio is not None:
        asks.append(("cpu", extras.cpu_kv, "--cpu-kv"))
    if extras.disk_kv:
        asks.append(("disk", extras.disk_kv, "--disk-kv"))
    for medium, size, option in asks:
        try:
            found[f"{medium}_tier"] = tier(spec, d, medium, size, backend, worst, context,
                                           count.active if count else None, dtype, extras.host_bandwidth,
                                           extras.hicache_ratio, extras.cpu_kv)
        except ValueError as exc:
            raise ExtrasUsageError(str(exc), option) from None
        notes.append(found[f"{medium}_tier"].pop("note"))
    return found


def _replication(spec: ModelSpec, d: Deployment, kv_dtype: str, notes: list[str]) -> tuple[int | None, float]:
    """KV heads per GPU and how many times the group stores each (MLA: the whole latent per GPU)."""
    attention = spec.attention
    tp = d.attention_tp
    if d.dp > 1:
        notes.append(f"data-parallel attention: {d.dp} ranks, each with its own KV pool and requests, attention "
                     f"split over {tp} GPU{'s' if tp > 1 else ''} (" + ("vLLM: each DP rank a whole TP group"
                     if d.engine.dp_adds_gpus else "SGLang: attention TP = TP / DP inside one TP group") + ")")
    if d.dcp > 1:
        notes.append(f"decode context parallelism {d.dcp}: each request's KV is interleaved token by token over "
                     f"{d.dcp} ranks of the TP group (cp_kv_cache_interleave_size 1), so each GPU holds 1/{d.dcp} of "
                     f"it and a page of {d.block_size or d.engine.block_size} tokens per GPU covers "
                     f"{d.dcp}x as many of a request's tokens")
    if not spec.attends:
        notes.append("no attention (a state-space model): no KV cache; each request holds a constant state in "
                     "every layer, so the state slots bound the requests")
        return None, 1.0
    if isinstance(attention, MLAAttention):
        if tp > 1:
            notes.append(f"MLA: the {attention.kv_lora_rank}+{attention.qk_rope_head_dim} latent is not split by "
                         f"tensor parallelism; each of the {tp} GPUs holds all of it ({tp}x replication"
                         + (f", {d.dcp} ranks each holding 1/{d.dcp} of the tokens with DCP" if d.dcp > 1 else "")
                         + ")")
        if attention.indexer is not None:
            ix = attention.indexer
            notes.append(f"indexer keys ({cdiv(ix.bits_per_token(kv_dtype), 8)} B per token and layer, "
                         f"{ix.key_dtype or kv_dtype}" + (" + fp32 scale" if ix.scale_block else "")
                         + ") are counted in the KV bytes and held whole on every GPU: one key per token, "
                         "not split by tensor parallelism (DeepSeek's inference code, vLLM, SGLang)")
        return None, float(Fraction(tp, d.dcp))
    heads = d.engine.heads_per_gpu(attention.kv_heads, tp)
    held = Fraction(heads * tp, attention.kv_heads * d.dcp)
    if held > 1:
        notes.append(f"TP {tp} is more than the {attention.kv_heads} KV heads: each GPU holds {heads}, so "
                     f"every KV head is stored {float(held):g} times across the group")
    return heads, float(held)


def _shapes(spec: ModelSpec, most: int = MAX_SHAPE_GPUS) -> list[tuple[int, int]]:
    """(tp, pp) pairs worth trying within ``most`` GPUs: TP a divisor the heads allow (powers of two
    and the group sizes engines run), PP up to 16 or a power of two."""
    pairs = []
    for tp in sorted({1, 2, 3, 4, 6, 8, 12, 16, 32, 64} | ({most} if most <= 64 else set())):
        if tp > most or not tp_allowed(spec, tp):
            continue
        stages = set(range(1, 17)) | {2**k for k in range(5, 10)}
        pairs += [(tp, pp) for pp in sorted(stages) if pp <= spec.layers.count and tp * pp <= most]
    return pairs


def _held(spec: ModelSpec, d: Deployment, tp: int, pp: int, context: int | None, weights: Weights,
          mla_layout: str, extras: Extras = Extras(), max_seqs: int | None = None) -> int | None:
    """Requests one instance of this shape holds (every data-parallel rank of it), launched for
    ``max_seqs`` sequences per rank (None: as ``d`` says, else the engine's default)."""
    shape = d.with_shape(tp, pp)
    if max_seqs is not None:
        shape = shape._replace(max_seqs=max_seqs)
    try:
        return fit(spec, shape, context, weights=weights, mla_layout=mla_layout,
                   search_min=False, extras=extras).max_concurrency * d.dp
    except ExtrasUsageError:
        raise
    except FitUsageError:
        return None


def replicas_for(requests: int, dp: int, given: int | None, held) -> int | None:
    """The fewest replicas of a shape that hold ``requests``, each launched for its own share
    (``ceil(requests / (replicas x dp))`` sequences per rank: vLLM's sampler holds logits for as
    many) unless the user gave --max-num-seqs; ``held(max_seqs)`` is what one replica holds. None
    when no replica holds one request."""
    most = held(given if given is not None else 1)  # the least reserve: an upper bound on each replica
    if not most:
        return None
    replicas = -(-requests // most)
    for _ in range(64):  # each step only adds a replica; a handful suffice
        if given is not None:
            return replicas
        share = -(-requests // (replicas * dp))
        each = held(share)
        if each and each * replicas >= requests:
            return replicas
        replicas += 1
    return None


def best_shape(spec: ModelSpec, d: Deployment, gpus: int, context: int | None = None, weights: Weights = Weights(),
               mla_layout: str = "latent", extras: Extras = Extras()) -> Deployment:
    """The one rule that turns ``--gpus N`` into a shape: of every TP x PP x replicas within N
    GPUs, the one that holds the most requests of the context in all; at equal requests the
    fewest GPUs, then the fewest pipeline stages, then the largest TP. More GPUs never hold
    fewer requests. Without a GPU's memory: the largest TP the heads allow within N, then replicas."""
    if d.memory is None:
        from kvcalc.capacity.nodes import tp_fits_node

        tp = max(t for t in range(1, gpus + 1) if gpus % t == 0 and tp_allowed(spec, t)
                 and tp_fits_node(t, d.gpus_per_node))
        return d.with_shape(tp, 1, gpus // tp)
    from kvcalc.capacity.nodes import instance_nodes, instances_on, tp_fits_node

    best, per_node = None, d.gpus_per_node
    for tp, pp in _shapes(spec, gpus):
        shape = d.with_shape(tp, pp)
        if not tp_fits_node(shape.attention_tp, per_node):
            continue  # kvcalc never picks a TP group across nodes
        held = _held(spec, d, tp, pp, context, weights, mla_layout, extras)
        if held is None:
            continue
        instance, spans = shape.instance_gpus, 1
        if instance > gpus:
            continue
        replicas = gpus // instance
        if per_node is not None:  # whole instances on the nodes, TP groups each on one node
            spans = instance_nodes(instance, shape.attention_tp, per_node)
            if spans is None or not (replicas := instances_on(d.nodes, per_node, instance, spans)):
                continue
        key = (-held * replicas, instance * replicas, pp, -tp)
        if best is None or key < best[0]:
            best = (key, tp, pp, replicas, spans)
    if best is None:
        where = f"{d.nodes} node(s) of {per_node} GPUs, TP inside a node" if per_node else f"{gpus} GPUs"
        raise FitUsageError(f"no TP x PP shape of {spec.name} fits in {where}")
    _, tp, pp, replicas, spans = best
    used = d.with_shape(tp, pp).instance_gpus * replicas
    unused = f" (uses {used} of the {gpus} GPUs: no shape of all {gpus} holds more)" if used < gpus else ""
    nodes = f" on {d.nodes} nodes of {per_node}, TP inside a node" if per_node else ""
    note = (f"--gpus {gpus}{nodes}: TP {tp} x PP {pp} x {replicas} replica{'s' if replicas > 1 else ''} holds the "
            f"most requests{unused}; --tp/--pp to choose another")
    return d.with_shape(tp, pp, replicas, note, searched_gpus=gpus, nodes_per_instance=spans)


def min_shape(spec: ModelSpec, d: Deployment, requests: int = 1, context: int | None = None,
              weights: Weights = Weights(), mla_layout: str = "latent", extras: Extras = Extras()) -> dict | None:
    """The fewest GPUs that hold ``requests`` requests of the context: TP x PP (with ``d``'s
    data-parallel, expert and context-parallel layout) for one replica, times replicas when one is
    not enough (TP preferred, then PP, at an equal count); each replica sized for its own share of
    the requests; a replica count the engine refuses with this layout is skipped; with
    --gpus-per-node, TP groups inside a node and the fewest nodes first. None when no shape up to
    512 GPUs per replica holds even one."""
    from kvcalc.capacity.nodes import nodes_for, tp_fits_node

    best, per_node = None, d.gpus_per_node
    for tp, pp in sorted(_shapes(spec), key=lambda s: (s[0] * s[1], s[1], s[0])):
        if best is not None and (tp * pp if per_node is None else cdiv(tp * pp, per_node)) > best[0][0]:
            break  # every shape from here needs more GPUs (nodes) than the best found
        shape = d.with_shape(tp, pp)
        if not tp_fits_node(shape.attention_tp, per_node):
            continue  # with --gpus-per-node, TP groups inside a node
        replicas = replicas_for(requests, d.dp, d.max_seqs,
                                lambda seqs, tp=tp, pp=pp: _held(spec, d, tp, pp, context, weights, mla_layout,
                                                                 extras, seqs))
        if replicas is None:
            continue
        try:
            check_layout(spec, shape._replace(replicas=replicas))
        except FitUsageError:  # e.g. SGLang: no data-parallel replicas beside attention DP
            continue
        gpus = shape.instance_gpus * replicas
        nodes = nodes_for(d, replicas, shape.instance_gpus, shape.attention_tp)
        if per_node is not None and nodes is None:
            continue
        key = (gpus if per_node is None else nodes, gpus, replicas, pp, tp)
        if best is None or key < best[0]:
            best = (key, nodes)
    if best is None:
        return None
    (_, gpus, replicas, pp, tp), nodes = best
    found = {"gpus": gpus, "tp": tp, "pp": pp, "replicas": replicas}
    found.update({k: v for k, v in (("dp", d.dp), ("ep", d.ep), ("dcp", d.dcp)) if v > 1})  # kept as asked
    if per_node is not None:
        found["nodes"] = nodes
    return found


def refit(spec: ModelSpec, d: Deployment, shape: dict, **options) -> FitResult:
    """``fit`` again on another shape (a ``min_gpus_shape``), without searching."""
    return fit(spec, d._replace(tp=shape["tp"], pp=shape["pp"], replicas=shape["replicas"], max_seqs=None),
               search_min=False, **options)
