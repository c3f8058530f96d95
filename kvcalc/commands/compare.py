"""kvcalc compare: models side by side at one or more contexts."""

from __future__ import annotations

from typing import Annotated

import typer

from kvcalc.commands.common import (
    bandwidth_of,
    catalogs_of,
    check_strict,
    deployment_of,
    layout_for,
    no_windows_spec,
    out,
    preset_dirs_of,
    print_inferences,
    print_json,
    revision_of,
    warn,
)
from kvcalc.commands.options import (
    BandwidthOpt,
    BatchOpt,
    ContextListOpt,
    EngineOpt,
    GPUCatalogOpt,
    KVDtypeOpt,
    MLALayoutOpt,
    NoWindowsOpt,
    PresetDirOpt,
    RevisionOpt,
    SpeedOpt,
    StrictOpt,
    context_list,
    whole,
)
from kvcalc.compare import SortKey
from kvcalc.estimate import spec_warnings


# @app.command("compare")
def compare_cmd(
    models: Annotated[
        list[str] | None, typer.Argument(metavar="MODEL...", help="Presets, YAML/config.json paths, Hub ids.")
    ] = None,
    all_presets: Annotated[bool, typer.Option("--all", help="Compare every preset.")] = False,
    context: ContextListOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = None,
    sort: Annotated[
        SortKey | None, typer.Option("--sort", help="Sort rows by this column (numbers: largest first).")
    ] = None,
    no_windows: NoWindowsOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="A JSON list of estimate objects.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV: a header, one row per model and context.")] = False,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", "-g", help="Add a column: requests of each context that fit on this GPU (fit's rules)."),
    ] = None,
    gpus: Annotated[
        int,
        typer.Option("--gpus", parser=whole(1, 2**20), metavar="INTEGER",
                     help="With --gpu: GPUs (TP as heads allow, then replicas).")
    ] = 1,
    engine: EngineOpt = None,
    speed: SpeedOpt = False,
    bandwidth: BandwidthOpt = None,
    strict: StrictOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """Compare models side by side at one or more contexts, with a bar per row."""
    from kvcalc.compare import compare_rows, to_csv
    from kvcalc.render import compare_table
    from kvcalc.sources.presets import available
    from kvcalc.sources.resolve import resolve_many

    if json_out and csv_out:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--csv")
    contexts = context_list(context)
    dirs = preset_dirs_of(preset_dir)
    refs = []
    for ref in models or []:  # `compare A A` shows A once
        if _ref_key(ref) not in {_ref_key(r) for r in refs}:
            refs.append(ref)
    if all_presets:
        refs += [name for name in available(dirs) if name not in {r.lower() for r in refs}]
    if not refs:
        raise typer.BadParameter("name at least one MODEL, or --all", param_hint="MODEL")
    specs = resolve_many(refs, dirs, revision_of(revision, refs))
    check_strict(specs, strict)
    warn(dict.fromkeys(w for spec in specs for w in spec_warnings(spec, contexts is not None)))
    if no_windows:
        specs = [no_windows_spec(spec) for spec in specs]
    if gpu is None and (gpus != 1 or engine is not None or speed and bandwidth is None):
        raise typer.BadParameter("--gpus, --engine and --speed describe a deployment: give --gpu NAME too",
                                 param_hint="--gpu")
    mla_layout = layout_for(specs, mla_layout)
    rows = compare_rows(specs, contexts, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout, sort=sort)
    deployment = None
    if gpu is not None:
        from kvcalc.capacity.gpus import find_gpu
        from kvcalc.compare import with_requests

        found = find_gpu(gpu, catalogs_of(gpu_catalog))
        template = deployment_of(engine or "vllm", None, found.memory_bytes, found, 1, 1, None, kv_dtype=kv_dtype)
        rows = with_requests(rows, template, gpus)
        deployment = (f"{gpus} x {found.name}, {template.engine.label.split(':')[0]} rules, default reserve; each "
                      "model on the TP x PP x replicas within the GPUs that holds the most; MLA in the latent "
                      "layout engines cache")
    if speed:
        from kvcalc.compare import with_speed

        rows = with_speed(rows, bandwidth_of(gpu, gpu_catalog, bandwidth), gpus, kv_dtype)
    if json_out:
        def extra(row):
            found = {"requests_fit": row.requests} if gpu else {}
            if gpu and row.shape:
                found["shape"] = dict(zip(("tp", "pp", "replicas"), row.shape))
            if speed:
                found["speed"] = row.speed.to_dict() if row.speed else None
            return found
        print_json([{**row.result.to_dict(), **extra(row), "notes": list(row.spec.notes)} for row in rows])
    elif csv_out:
        typer.echo(to_csv(rows, requests=gpu is not None), nl=False)
    else:
        dtype = kv_dtype or "each model's dtype"
        out.print(compare_table(rows, f"KV cache · batch {batch} · {dtype}", deployment, speed))
        print_inferences(specs)


def _ref_key(ref: str) -> str:
    from kvcalc.sources.resolve import looks_like_path

    return ref if looks_like_path(ref) else ref.lower()
