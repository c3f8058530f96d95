"""kvcalc fit: requests that fit on GPUs as an engine counts them, and backwards from a concurrency."""


from typing import Annotated

import typer

from kvcalc.commands.common import (
    bandwidth_of,
    check_strict,
    deployment_of,
    memory_of,
    model_of,
    out,
    print_inferences,
    print_json,
    warn,
)
from kvcalc.commands.options import (
    AsyncOpt,
    BandwidthOpt,
    BatchedTokensOpt,
    BlockSizeOpt,
    ContextOpt,
    CPUKVOpt,
    CudaGraphMaxOpt,
    DCPOpt,
    DiskKVOpt,
    DPOpt,
    DraftOpt,
    EagerOpt,
    EmitOpt,
    EngineOpt,
    EngineVersionOpt,
    EPOpt,
    GPUCatalogOpt,
    GPUMemoryOpt,
    GPUOpt,
    GPUsOpt,
    GPUsPerNodeOpt,
    GPUUtilOpt,
    HicacheRatioOpt,
    HostBandwidthOpt,
    JsonOpt,
    KVDtypeOpt,
    LoraTargetsOpt,
    MambaModeOpt,
    MaxLoraRankOpt,
    MaxLorasOpt,
    ModelArg,
    MTPOpt,
    NodesOpt,
    PlatformOpt,
    PPOpt,
    PrefixCachingOpt,
    PresetDirOpt,
    ReserveOpt,
    RevisionOpt,
    SharedPrefixOpt,
    SpecTokensOpt,
    SpeedOpt,
    StrictOpt,
    TierBackendOpt,
    TPOpt,
    WeightsBytesOpt,
    WeightsDtypeOpt,
)
from kvcalc.commands.parsers import context_list, fraction_opt, items, whole
from kvcalc.estimate import spec_warnings
from kvcalc.terminal import clean


def fit_cmd(
    model: ModelArg,
    gpu: GPUOpt = None,
    gpu_memory: GPUMemoryOpt = None,
    gpus: GPUsOpt = None,
    nodes: NodesOpt = None,
    gpus_per_node: GPUsPerNodeOpt = None,
    tp: TPOpt = None,
    pp: PPOpt = None,
    dp: DPOpt = None,
    ep: EPOpt = None,
    dcp: DCPOpt = None,
    context: ContextOpt = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-n", parser=whole(1, 10**9), metavar="INTEGER",
                     help="Backwards: requests held at once; fit says what they need and the --gpu-util for it."),
    ] = None,
    weights_dtype: WeightsDtypeOpt = None,
    kv_dtype: KVDtypeOpt = None,
    engine: EngineOpt = None,
    engine_version: EngineVersionOpt = None,
    emit: EmitOpt = None,
    gpu_util: GPUUtilOpt = None,
    reserve: ReserveOpt = None,
    block_size: BlockSizeOpt = None,
    max_batched_tokens: BatchedTokensOpt = None,
    async_scheduling: AsyncOpt = None,
    prefix_caching: PrefixCachingOpt = None,
    enforce_eager: EagerOpt = False,
    cuda_graph_max_bs: CudaGraphMaxOpt = None,
    speculative_tokens: SpecTokensOpt = 0,
    mamba_cache_mode: MambaModeOpt = None,
    platform: PlatformOpt = "cuda",
    weights_bytes: WeightsBytesOpt = None,
    draft: DraftOpt = None,
    mtp: MTPOpt = 0,
    max_loras: MaxLorasOpt = 0,
    max_lora_rank: MaxLoraRankOpt = 16,
    lora_targets: LoraTargetsOpt = None,
    cpu_kv: CPUKVOpt = None,
    disk_kv: DiskKVOpt = None,
    hicache_ratio: HicacheRatioOpt = None,
    tier_backend: TierBackendOpt = None,
    host_bandwidth: HostBandwidthOpt = None,
    shared_prefix: SharedPrefixOpt = None,
    from_log: Annotated[
        str | None,
        typer.Option("--from-log", metavar="LOG",
                     help="Plan from an engine's start-up log: its settings, weights and measured non-KV memory "
                          "replace kvcalc's estimates; the options you give are the what-ifs."),
    ] = None,
    speed: SpeedOpt = False,
    bandwidth: BandwidthOpt = None,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """How many requests of a context fit on GPUs, counted the way a serving engine counts.

    With --concurrency N it also works backwards: the memory N requests need per GPU, the
    smallest --gpu-util that holds them, and the fewest GPUs when one is not enough.
    """
    from kvcalc.capacity.deployment import FitUsageError, Switches
    from kvcalc.capacity.fit import Weights, fit, refit
    from kvcalc.capacity.nodes import check_nodes, on_nodes
    from kvcalc.render_fit import fit_answers, fit_rows_table, fit_table
    from kvcalc.sources.checkpoint import checkpoint_of

    fraction = None if gpu_util is None else fraction_opt(gpu_util)
    logged = None
    if from_log is not None:
        from kvcalc.capacity.deployment import FitUsageError as LogUsageError
        from kvcalc.logs.measured import logged_deployment

        try:
            logged = logged_deployment(from_log, engine or emit)
        except LogUsageError as exc:
            raise typer.BadParameter(str(exc), param_hint="--engine") from None
        engine = engine or logged["engine"]
        tp = tp if tp is not None else logged["tp"]
        pp = pp if pp is not None else logged["pp"]
        context = context if context is not None else (str(logged["context"]) if logged["context"] else None)
        block_size = block_size if block_size is not None else logged["block_size"]
        max_batched_tokens = max_batched_tokens if max_batched_tokens is not None else logged["max_batched_tokens"]
        engine_version = engine_version if engine_version is not None else logged["known_version"]
        fraction = fraction if fraction is not None else logged["gpu_util"]
        if gpu is None and gpu_memory is None:
            gpu = logged["gpu"]
    contexts = context_list(context) or [None]
    if emit is not None and engine is not None and emit != engine:
        raise typer.BadParameter(f"--emit {emit} with --engine {engine}: the command must follow the rules "
                                 "it was counted by; give one", param_hint="--emit")
    if emit is not None and len(contexts) > 1:
        raise typer.BadParameter("a launch command takes one --context, not a list", param_hint="--emit")
    if emit is not None and gpu is None and gpu_memory is None:
        raise typer.BadParameter("a launch command needs the GPU: --gpu NAME or --gpu-memory SIZE", param_hint="--emit")
    if emit is not None and kv_dtype is not None:
        from kvcalc.capacity.launch import check_kv_dtype

        try:
            check_kv_dtype(emit, kv_dtype)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--kv-dtype") from None
    engine = emit or engine or "vllm"
    if gpu is None and gpu_memory is None and concurrency is not None:
        memory, found = None, None  # backwards without a GPU: what the requests need
    else:
        memory, found = memory_of(gpu, gpu_memory, gpu_catalog)
    switches = Switches(async_scheduling=async_scheduling, prefix_caching=prefix_caching, enforce_eager=enforce_eager,
                        speculative_tokens=speculative_tokens, mamba_cache_mode=mamba_cache_mode,
                        cuda_graph_max_bs=cuda_graph_max_bs)
    try:
        gpus = check_nodes(nodes, gpus_per_node, gpus)  # M x G
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--nodes/--gpus-per-node") from None
    d = deployment_of(engine, engine_version, memory, found, tp or 1, pp or 1,
                      gpus if tp is not None and nodes is None else None, nodes=nodes, gpus_per_node=gpus_per_node,
                      gpu_util=fraction, reserve=reserve, block_size=block_size, max_batched_tokens=max_batched_tokens,
                      kv_dtype=kv_dtype, platform=platform, switches=switches, dp=dp or 1, ep=ep or 1, dcp=dcp or 1)
    if emit in ("sglang", "trtllm") and nodes is not None and nodes > 1:
        raise typer.BadParameter(f"kvcalc writes a command across nodes for vLLM only; {emit}'s would need its own "
                                 "multi-node flags, which kvcalc does not write (--emit vllm, or one node)",
                                 param_hint="--emit")
    if emit is not None and kv_dtype is not None:
        from kvcalc.capacity.engines.base import nvfp4_gpu_warnings

        for why in nvfp4_gpu_warnings(d.engine, emit, d, kv_dtype):  # a command that cannot start is no answer
            raise typer.BadParameter(why, param_hint="--kv-dtype")
    spec = model_of(model, preset_dir, revision)
    check_strict([spec], strict)
    warn(spec_warnings(spec, context is not None))
    notes = []
    if logged is not None:
        from kvcalc.logs.measured import measured

        if memory is None:
            raise typer.BadParameter("the log names no GPU the catalog knows: give --gpu or --gpu-memory",
                                     param_hint="--from-log")
        at = logged["gpu_util"] or d.engine.default_util(spec, d)
        weights_bytes, measured_reserve, said = measured(logged["parsed"], memory, at)
        d = d._replace(reserve=measured_reserve if reserve is None else reserve)
        notes += [f"from {from_log}: {n}" for n in said]
        if max_batched_tokens != logged["max_batched_tokens"] and logged["max_batched_tokens"]:
            notes.append("--max-batched-tokens differs from the log's: the measured activation peak belongs to the "
                         "log's value, so the non-KV memory is not re-estimated")
    checkpoint = (None if weights_bytes is not None or weights_dtype is not None
                  else checkpoint_of(model, revision, notes))
    weights = Weights(dtype=weights_dtype, total_bytes=weights_bytes, checkpoint=checkpoint)
    extras = _extras(draft, mtp, max_loras, max_lora_rank, lora_targets, shared_prefix, preset_dir, revision,
                     engine, cpu_kv, host_bandwidth, tier_backend, disk_kv, hicache_ratio)
    results = []
    try:
        if tp is None and gpus is not None and (dp or ep or dcp):
            from kvcalc.capacity.deployment import layout_shape

            d = layout_shape(d, gpus)
            notes.append(d.shape_note)
        elif tp is None and gpus is not None and gpus > (pp or 1):
            from kvcalc.capacity.fit import best_shape

            d = best_shape(spec, d, gpus, contexts[0], weights, extras=extras) if pp is None else \
                _tp_for(spec, d, gpus, pp)
            notes.append(d.shape_note)
        d = on_nodes(d, tp is not None)  # replicas as whole instances fit on the nodes
        for length in contexts:
            results.append(fit(spec, d, length, concurrency, weights, extras=extras))
    except FitUsageError as exc:
        hint = getattr(exc, "option", None) or "--tp/--pp/--gpus/--gpu-util"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    if notes:
        results = [r._replace(notes=(*notes, *r.notes)) for r in results]
    warn(dict.fromkeys(w for r in results for w in r.warnings))
    launch_text = None
    if emit is not None:
        from kvcalc.capacity.launch import launch

        chosen, moved = results[0], None
        if chosen.concurrency is None:
            held = chosen.fits
        else:
            held = chosen.required_gpu_util is not None and chosen.required_gpu_util <= min(chosen.gpu_util, 0.95)
        if not held and chosen.min_gpus_shape:  # launch the fewest-GPU shape that holds them instead
            chosen = refit(spec, d, chosen.min_gpus_shape, context=chosen.context, concurrency=concurrency,
                           weights=weights, extras=extras)
            moved = (f"they do not fit on {results[0].gpus} GPU(s) at TP {results[0].tp} x PP {results[0].pp}; "
                     f"this is the fewest-GPU shape that holds them")
        launch_text = launch(chosen, spec, model, emit, moved)
    speeds = None
    if speed:
        rate = bandwidth_of(gpu, gpu_catalog, bandwidth)
        speeds = [_speeds(spec, r, rate, 1, weights_dtype, kv_dtype) for r in results]
    name = found.name if found else None
    if json_out:
        read = spec_warnings(spec, context is not None)  # config keys unread, untested types
        objects = [{**r.to_dict(), "gpu_name": name, "model_notes": list(spec.notes)} for r in results]
        for obj in objects:
            obj["warnings"] = [*read, *obj["warnings"]]
        for obj, sp in zip(objects, speeds or []):
            obj["speed"] = {k: v.to_dict() for k, v in sp.items()}
        if launch_text is not None:
            objects[0]["launch_command"] = launch_text
        print_json(objects[0] if len(objects) == 1 else objects)
        return
    if launch_text is not None:
        typer.echo(launch_text, nl=False)
        return
    if len(results) == 1:
        out.print(fit_table(results[0], name))
        lines = fit_answers(results[0])
    else:
        out.print(fit_rows_table(results, name))
        lines = []
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
    if speeds:
        from kvcalc.render_fit import speed_lines

        for r, sp in zip(results, speeds):
            for line in speed_lines(r, sp):
                out.print(line, markup=False, soft_wrap=True)
    for note in dict.fromkeys(n for r in results for n in r.notes):
        out.print(f"note: {clean(note)}", markup=False, style="dim", soft_wrap=True)
    print_inferences([spec])


def _extras(draft, mtp, max_loras, max_lora_rank, lora_targets, shared_prefix, preset_dir, revision, engine,
            cpu_kv, host_bandwidth, tier_backend=None, disk_kv=None, hicache_ratio=None):
    """What else the engine holds, from the options (capacity/extras.py)."""
    from kvcalc.capacity import engines
    from kvcalc.capacity.extras import LoRA
    from kvcalc.capacity.fit import Extras

    lora = None
    if max_loras:
        if lora_targets is None:  # the engine's own default (vLLM also adapts the embedding and head)
            targets = engines.get(engine).lora_default_targets
        else:
            targets = tuple(dict.fromkeys(t.lower() for t in items(lora_targets, "--lora-targets", "q,k,v,o")))
        lora = LoRA(max_loras, max_lora_rank, targets)
    backends = engines.get(engine).tier_backends
    if tier_backend is not None and tier_backend not in backends:
        raise typer.BadParameter(f"{engine} takes {', '.join(backends)}", param_hint="--kv-tier-backend")
    draft_spec = None
    if draft is not None:

        draft_spec = model_of(draft, preset_dir, revision)
    ref = None
    if draft_spec is not None:
        from kvcalc.capacity.launch import model_reference

        named, comment = model_reference(draft_spec, draft)
        ref = None if comment else named
    return Extras(lora=lora, draft=draft_spec, draft_ref=ref, mtp=mtp, shared_prefix=shared_prefix or 0,
                  cpu_kv=cpu_kv or 0, disk_kv=disk_kv or 0, hicache_ratio=hicache_ratio,
                  host_bandwidth=host_bandwidth or 64 * 10**9, tier_backend=tier_backend)


def _tp_for(spec, d, gpus: int, pp: int):
    """--gpus N with --pp P and no --tp: TP = N / P, as the user's stages ask."""
    from kvcalc.capacity.deployment import FitUsageError

    if gpus % pp:
        raise FitUsageError(f"--gpus {gpus} is not a multiple of --pp {pp}")
    tp = gpus // pp
    return d.with_shape(tp, pp, 1, f"--tp not given: {gpus} GPUs / PP {pp} = TP {tp}")


def _speeds(spec, r, rate: int, batch: int, weights_dtype, kv_dtype) -> dict:
    """Decode ceilings for one fit row: one request alone, and each rank's share of the requests
    asked (-n, over replicas and DP ranks) or else all that fit on a rank."""
    from kvcalc.capacity.speed import decode_speed

    given = None if r.weights_source.startswith("parameter count") else r.weights_bytes  # --weights-bytes, checkpoint

    def at(n: int):
        return decode_speed(spec, rate, context=r.context, batch=n, tp=r.tp, pp=r.pp, weights_dtype=weights_dtype,
                            kv_dtype=r.kv_dtype if kv_dtype else None, engine=r.engine,
                            weights_total=given if spec.weights is not None else None)

    found = {"batch": at(batch)}
    # per data-parallel rank (a replica's or a DP rank's share): the batch one GPU's step reads
    full = -(-r.concurrency // (r.replicas * r.dp)) if r.concurrency else r.max_concurrency
    if full and full != batch:
        found["full"] = at(full)
    return found
