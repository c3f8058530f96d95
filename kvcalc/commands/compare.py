"""kvcalc compare: models side by side at one or more contexts."""


from typing import Annotated

import typer

from kvcalc.commands.common import (
    bandwidth_of,
    check_strict,
    deployment_of,
    layout_for,
    memory_of,
    no_windows_spec,
    out,
    preset_dirs_of,
    print_inferences,
    print_json,
    revision_of,
    warn,
)
from kvcalc.commands.options import (
    AllOpt,
    BandwidthOpt,
    BatchOpt,
    ContextOpt,
    EngineOpt,
    GPUCatalogOpt,
    GPUMemoryOpt,
    GPUOpt,
    GPUsOpt,
    JsonOpt,
    KVDtypeOpt,
    MLALayoutOpt,
    NoWindowsOpt,
    PresetDirOpt,
    RevisionOpt,
    SpeedOpt,
    StrictOpt,
    TPOpt,
)
from kvcalc.commands.parsers import context_list
from kvcalc.compare import SortKey
from kvcalc.estimate import spec_warnings


def compare_cmd(
    models: Annotated[
        list[str] | None, typer.Argument(metavar="MODEL...", help="Presets, YAML/config.json paths, Hub ids.")
    ] = None,
    all_presets: AllOpt = False,
    context: ContextOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = None,
    sort: Annotated[
        SortKey | None, typer.Option("--sort", help="Sort rows by this column (numbers: largest first).")
    ] = None,
    no_windows: NoWindowsOpt = False,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV: a header, one row per model and context.")] = False,
    gpu: GPUOpt = None,
    gpu_memory: GPUMemoryOpt = None,
    gpus: GPUsOpt = None,
    tp: TPOpt = None,
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
    placed = gpu is not None or gpu_memory is not None
    if not placed and (gpus is not None or tp is not None or engine is not None or speed and bandwidth is None):
        raise typer.BadParameter("--gpus, --tp, --engine and --speed describe a deployment: give --gpu NAME "
                                 "(or --gpu-memory SIZE) too", param_hint="--gpu")
    mla_layout = layout_for(specs, mla_layout)
    rows = compare_rows(specs, contexts, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout, sort=sort)
    deployment = None
    gpus = gpus or tp or 1
    if placed:
        from kvcalc.compare import with_requests
        from kvcalc.units import format_bytes

        memory, found = memory_of(gpu, gpu_memory, gpu_catalog)
        if tp is not None and gpus % tp:
            raise typer.BadParameter(f"--gpus {gpus} is not a multiple of --tp {tp}", param_hint="--gpus")
        template = deployment_of(engine or "vllm", None, memory, found, 1, 1, None, kv_dtype=kv_dtype)
        rows = with_requests(rows, template, gpus, tp)
        shape = (f"at TP {tp} x {gpus // tp} replica(s)" if tp else
                 "each model on the TP x PP x replicas within the GPUs that holds the most")
        name = found.name if found else f"GPUs of {format_bytes(memory)}"
        deployment = (f"{gpus} x {name}, {template.engine.label.split(':')[0]} rules, default reserve; {shape}; "
                      "MLA in the latent layout engines cache")
    if speed:
        from kvcalc.compare import with_speed

        rows = with_speed(rows, bandwidth_of(gpu, gpu_catalog, bandwidth), gpus, kv_dtype)
    if json_out:
        def extra(row):
            found = {"requests_fit": row.requests} if placed else {}
            if placed and row.shape:
                found["shape"] = dict(zip(("tp", "pp", "replicas"), row.shape))
            if speed:
                found["speed"] = row.speed.to_dict() if row.speed else None
            return found
        print_json([{**row.result.to_dict(), **extra(row), "notes": list(row.spec.notes)} for row in rows])
    elif csv_out:
        typer.echo(to_csv(rows, requests=placed), nl=False)
    else:
        dtype = kv_dtype or "each model's dtype"
        out.print(compare_table(rows, f"KV cache · batch {batch} · {dtype}", deployment, speed))
        said = {}  # each convention a number rests on (float32 served as bf16, indexer keys), once, with its models
        for row in rows:
            for note in row.result.conventions:
                said.setdefault(note, {})[row.spec.name] = None
        for note, names in said.items():
            out.print(f"note ({', '.join(names)}): {note}", markup=False, style="dim", soft_wrap=True)
        print_inferences(specs)


def _ref_key(ref: str) -> str:
    from kvcalc.sources.resolve import looks_like_path

    return ref if looks_like_path(ref) else ref.lower()
