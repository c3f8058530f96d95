"""kvcalc verify: real torch layers and caches measured against the formula."""


from typing import Annotated, Literal

import typer
from rich.text import Text

from kvcalc.commands.common import err, model_of, out, preset_dirs_of, print_json, revision_of
from kvcalc.commands.options import (
    AllOpt,
    BatchOpt,
    ContextOpt,
    DCPOpt,
    DeviceOpt,
    DPOpt,
    EngineOpt,
    JsonOpt,
    KVDtypeOpt,
    MLALayoutOpt,
    PPOpt,
    PresetDirOpt,
    RevisionOpt,
    TPOpt,
)
from kvcalc.commands.parsers import one_context, whole
from kvcalc.errors import KvcalcError, torch_hint


def verify_cmd(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="Preset name, YAML or config.json path/folder, Hub id org/name."),
    ] = None,
    device: DeviceOpt = "cpu",
    context: ContextOpt = None,
    batch: BatchOpt = 1,
    layers: Annotated[
        int | None,
        typer.Option("--layers", "-l", parser=whole(1), metavar="INTEGER",
                     help="Build the model's first N layers. Default: one of each kind."),
    ] = None,
    cache: Annotated[
        Literal["static", "dynamic", "paged"],
        typer.Option(
            "--cache",
            help="static: preallocated for the context; dynamic: grows by concatenation; paged: 16-token blocks.",
        ),
    ] = "static",
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = "latent",
    tp: TPOpt = None,
    pp: PPOpt = None,
    dp: DPOpt = None,
    dcp: DCPOpt = None,
    engine: EngineOpt = None,
    all_presets: AllOpt = False,
    reference: Annotated[
        Literal["transformers"] | None,
        typer.Option("--reference", help="Build MODEL's own transformers class on the meta device (no memory, no "
                                         "weights), run one forward, and set its cache beside kvcalc's, kind by kind."),
    ] = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
) -> None:
    """Build MODEL's attention layers in torch, fill real caches, check their bytes.

    With --tp N [--pp P], N x P processes each build their tensor-parallel shard and check their
    cache against fit's per-GPU bytes (--dp D: D such groups, each its own requests; --dcp C: C ranks
    of a TP group share each request's tokens, merged by log-sum-exp as vLLM does). With --reference
    transformers, MODEL (a config.json or a Hub id) is built by transformers itself and each
    difference is explained. Exit 0 when the measured cache equals the analytic bytes (or every
    difference is explained), 1 when it does not.
    """
    context = one_context(context)
    if kv_dtype == "nvfp4":
        raise typer.BadParameter("verify's caches store fp32, bf16, fp16, fp8, int8 and int4 (with their scales); "
                                 "nvfp4 is counted by estimate and fit, not built here", param_hint="--kv-dtype")
    if reference is not None:
        given = {"--all": all_presets, "--tp": tp is not None, "--pp": pp is not None, "--dp": dp is not None,
                 "--dcp": dcp is not None,
                 "--engine": engine is not None,
                 "--layers": layers is not None, "--device": device != "cpu", "--cache": cache != "static"}
        clash = [name for name, on in given.items() if on]
        if clash:
            raise typer.BadParameter(f"{', '.join(clash)} cannot be used with --reference: transformers builds the "
                                     "whole model on the meta device", param_hint="--reference")
        if kv_dtype is not None and kv_dtype not in ("fp32", "bf16", "fp16"):
            raise typer.BadParameter(f"transformers builds in fp32, bf16 or fp16, not {kv_dtype}",
                                     param_hint="--kv-dtype")
        if model is None:
            raise typer.BadParameter("name a MODEL (a config.json or a Hub id)", param_hint="MODEL")
        _verify_reference(model, context, batch, kv_dtype, mla_layout or "latent", json_out,
                          preset_dirs_of(preset_dir), revision_of(revision, [model]))
        return

    options = dict(device=device, context=context, batch=batch, cache=cache, kv_dtype=kv_dtype,
                   mla_layout=mla_layout)
    if all_presets:
        if model is not None:
            raise typer.BadParameter("give a MODEL or --all, not both", param_hint="MODEL")
        if tp is not None or pp is not None or dp is not None or dcp is not None or engine is not None:
            raise typer.BadParameter("--all verifies on one device; give a MODEL with --tp/--pp", param_hint="--all")
        _need_torch()
        _verify_all(preset_dirs_of(preset_dir), layers, json_out, options)
        return
    if model is None:
        raise typer.BadParameter("name a MODEL, or --all", param_hint="MODEL")
    if tp is not None or pp is not None or dp is not None or dcp is not None:
        spec = model_of(model, preset_dir, revision)
        shape = {**options, "dp": dp or 1, "dcp": dcp or 1}
        _check_tp_shape(spec, tp or 1, pp or 1, engine or "vllm", layers, shape)  # a usage error first, torch or not
        _need_torch()
        _verify_tp(spec, tp or 1, pp or 1, engine or "vllm", layers, json_out, shape)
        return
    if engine is not None:
        raise typer.BadParameter("--engine picks fit's per-GPU rule: give --tp (or --pp) with it",
                                 param_hint="--engine")
    spec = model_of(model, preset_dir, revision)
    _need_torch()
    from kvcalc.verify.report import verdict, verify_lines, verify_table
    from kvcalc.verify.runner import verify

    result = verify(spec, layers=layers, **options)
    _show(result, json_out, verify_table, verify_lines, verdict)
    if not result.match:
        raise typer.Exit(1)


def _verify_reference(model, context, batch, kv_dtype, mla_layout, json_out, dirs, revision) -> None:
    """verify --reference transformers: kvcalc's estimate beside the cache transformers builds."""
    from kvcalc.verify.reference import TRANSFORMERS_HINT, compare, hold, load_config

    spec, data, _ = load_config(model, dirs, revision)  # a preset is refused before any extra is needed
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401  (the kvcalc[transformers] extra)
    except ImportError:
        raise KvcalcError(TRANSFORMERS_HINT) from None
    from kvcalc.verify.plan import DEFAULT_CONTEXT
    from kvcalc.verify.reference import reference_lines, reference_table, reference_verdict

    context = context or min(DEFAULT_CONTEXT, spec.max_context)
    result = compare(spec, hold(data, context, batch, kv_dtype), context, batch, mla_layout)
    if json_out:
        print_json({**result.to_dict(), "notes": list(result.notes) + list(spec.notes)})
    else:
        out.print(reference_table(result))
        for line in reference_lines(result):
            out.print(line, markup=False, style="dim", soft_wrap=True)
        out.print(Text(reference_verdict(result), style="bold green" if result.ok else "bold red"))
    if not result.ok:
        raise typer.Exit(1)


def _show(result, json_out: bool, table, lines, verdict) -> None:
    """A verify result: JSON, or its table (none for an encoder), its lines and the verdict."""
    if json_out:
        print_json(result.to_dict())
        return
    if not result.encoder:
        out.print(table(result))
    for line in lines(result):
        out.print(line, markup=False, style="dim", soft_wrap=True)
    out.print(Text(verdict(result), style="bold green" if result.match else "bold red"))


def _need_torch() -> None:
    try:
        import torch  # noqa: F401  (the kvcalc[torch] extra)
    except ImportError:
        raise KvcalcError(torch_hint("verify")) from None


def _check_tp_shape(spec, tp: int, pp: int, engine: str, layers: int | None, options: dict) -> None:
    """The --tp/--pp/--dp/--dcp rules (torch-free): exit 2 before anything needs torch."""
    from kvcalc.capacity.fit import FitUsageError
    from kvcalc.verify.tp_plan import make_tp_plan

    plan = {k: options[k] for k in ("context", "batch", "cache", "kv_dtype", "mla_layout", "dp", "dcp")}
    try:
        make_tp_plan(spec, tp=tp, pp=pp, engine=engine, layers=layers, **plan)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tp/--pp/--dp/--dcp") from None


def _verify_tp(spec, tp: int, pp: int, engine: str, layers: int | None, json_out: bool, options: dict) -> None:
    """--tp/--pp: tp x pp rank processes; each rank's cache against fit's per-GPU bytes."""
    from kvcalc.capacity.fit import FitUsageError
    from kvcalc.verify.tp import verify_tp
    from kvcalc.verify.tp_report import tp_lines, tp_table, tp_verdict

    try:
        result = verify_tp(spec, tp=tp, pp=pp, engine=engine, layers=layers, **options)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tp/--pp/--dp/--dcp") from None
    _show(result, json_out, tp_table, tp_lines, tp_verdict)
    if not result.match and not result.encoder and not result.no_kv_layer:
        raise typer.Exit(1)


def _verify_all(dirs, layers: int | None, json_out: bool, options: dict) -> None:
    """Every preset in turn under a progress bar; a preset that cannot run is a failed row."""
    import time

    from rich.progress import Progress

    from kvcalc.sources.presets import available, load_named
    from kvcalc.verify.device import resolve_device
    from kvcalc.verify.plan import all_context
    from kvcalc.verify.report import summary_table
    from kvcalc.verify.runner import verify

    resolve_device(options["device"])  # a missing device fails once, not once per preset
    names = available(dirs)
    rows = []
    started = time.perf_counter()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("verify", total=len(names))
        for name, path in names.items():
            progress.update(task, description=f"verify {name}")
            try:
                spec = load_named(path)
                count = None if layers is None else min(layers, spec.layers.count)
                length = options["context"] or all_context(spec)
                rows.append((name, verify(spec, layers=count, **{**options, "context": length}), None))
            except KvcalcError as exc:
                rows.append((name, None, str(exc)))
            progress.advance(task)
    seconds = time.perf_counter() - started
    if json_out:
        print_json([r.to_dict() if r else {"model": name, "error": error, "match": False}
                     for name, r, error in rows])
    else:
        out.print(summary_table(rows, seconds))
        out.print("This checks kvcalc's torch layers against kvcalc's own formula, preset by preset. The independent "
                  "check is transformers' own cache: kvcalc verify CONFIG --reference transformers.",
                  markup=False, style="dim", soft_wrap=True)
    if not all(r is not None and r.match for _, r, _ in rows):
        raise typer.Exit(1)
