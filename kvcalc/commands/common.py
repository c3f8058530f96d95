"""What every command shares: the output streams, JSON printing, preset folders, catalogs, warnings."""


from pathlib import Path

import typer
from rich.console import Console

from kvcalc.errors import KvcalcError
from kvcalc.terminal import clean, default_width

out = Console(highlight=False, emoji=False, width=default_width())  # no :name: codes: text is printed as written


err = Console(stderr=True, highlight=False, emoji=False)


def preset_dirs_of(preset_dir: list[str] | None):
    """The preset folders; an empty entry (``KVCALC_PRESET_DIR=:/dir``, ``--preset-dir ''``) is
    skipped with a warning, never read as the current folder."""
    import os

    from kvcalc.sources.presets import preset_dirs

    entries = [part for entry in preset_dir or () for part in entry.split(os.pathsep)]
    if any(not entry.strip() for entry in entries):
        warn(["an empty preset folder entry (--preset-dir or KVCALC_PRESET_DIR) is ignored, "
               "not read as the current folder"])
    return preset_dirs(tuple(Path(entry) for entry in entries if entry.strip()))


def catalogs_of(gpu_catalog: list[Path] | None) -> tuple[Path, ...]:
    """The user's GPU catalog files; an empty entry (``KVCALC_GPU_CATALOG=:/x.yaml``) is skipped
    with a warning, as an empty preset folder entry is."""
    import os

    entries = [part for entry in gpu_catalog or () for part in str(entry).split(os.pathsep)]
    if any(not entry.strip() or entry == "." for entry in entries):
        warn(["an empty GPU catalog entry (--gpu-catalog or KVCALC_GPU_CATALOG) is ignored"])
    return tuple(Path(entry) for entry in entries if entry.strip() and entry != ".")


def revision_of(revision: str | None, refs) -> str | None:
    """--revision is for Hub ids; given with presets or paths only, it is said, not silently dropped."""
    if revision is not None:
        from kvcalc.sources.hub import check_revision
        from kvcalc.sources.resolve import is_hub_ref

        try:  # before anything reaches the Hub client: a revision names a file in its cache
            check_revision(revision)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--revision") from None
        if not any(is_hub_ref(ref) for ref in refs):
            warn([f"--revision {clean(revision)} applies to Hub ids (org/name) only; ignored"])
    return revision



def model_of(ref: str, preset_dir, revision: str | None):
    """A MODEL argument as the user gave it: a preset, a file or folder, or a Hub id at --revision."""
    from kvcalc.sources.resolve import resolve

    return resolve(ref, preset_dirs_of(preset_dir), revision_of(revision, [ref]))


def check_strict(specs, strict: bool) -> None:
    """--strict: a config key on the KV path that kvcalc did not read is an error naming the keys."""
    if not strict:
        return
    from kvcalc.sources.config_fields import unread_keys

    unread = [f"{spec.name}: {', '.join(keys)}" for spec in specs if (keys := unread_keys(spec.notes))]
    if unread:
        raise KvcalcError("--strict: config.json keys that may change the KV cache were not read ("
                          + "; ".join(unread) + "); check the numbers or write a preset")


def warn(messages) -> None:
    for message in messages:
        err.print(f"warning: {clean(message)}", markup=False, soft_wrap=True)


def print_inferences(specs) -> None:
    """What kvcalc inferred or ignored when reading a config.json, one line per model."""
    lines = [f"note ({spec.name}): {clean(note)}" for spec in specs for note in spec.notes
             if note.startswith(("inferred:", "ignored:", "read config.json"))]
    if lines:  # one print: each costs Rich a render pass
        out.print("\n".join(lines), markup=False, style="dim")


def print_json(data) -> None:
    from kvcalc.render import to_json

    typer.echo(to_json(data))


def layout_for(specs, mla_layout: str | None) -> str:
    """The MLA layout to use; one given for models without MLA is said, not silently ignored."""
    if mla_layout is not None and not any(
        spec.attention_of(name).kind == "mla" for spec in specs for name in spec.layers.kinds
        if spec.layers.kinds[name].type != "none"
    ):
        warn([f"--mla-layout {mla_layout} is ignored: no model here has MLA attention"])
    return mla_layout or "latent"


def no_windows_spec(spec):
    from kvcalc.variants import without_windows

    note = "what-if: windows ignored (--no-windows): every attention layer holds the whole context"
    return without_windows(spec).model_copy(update={"notes": [note, *spec.notes]})


def memory_of(gpu: str | None, gpu_memory: int | None, catalogs):
    """(bytes, catalog entry or None) from --gpu or --gpu-memory (exactly one)."""
    from kvcalc.capacity.gpus import find_gpu

    if (gpu is None) == (gpu_memory is None):
        raise typer.BadParameter("give one of --gpu NAME and --gpu-memory SIZE", param_hint="--gpu")
    if gpu_memory is not None:
        return gpu_memory, None
    found = find_gpu(gpu, catalogs_of(catalogs))
    return found.memory_bytes, found


def bandwidth_of(gpu: str | None, catalogs, given: int | None) -> int:
    from kvcalc.capacity.gpus import find_gpu

    if given is not None:
        return given
    if gpu is None:
        raise typer.BadParameter("--speed needs a GPU's bandwidth: --gpu NAME, or --bandwidth 3.35TB/s",
                                 param_hint="--speed")
    found = find_gpu(gpu, catalogs_of(catalogs))
    if found.bandwidth_bytes_per_s is None:
        raise typer.BadParameter(f"the catalog has no bandwidth for {found.key}: give --bandwidth",
                                 param_hint="--speed")
    return found.bandwidth_bytes_per_s


def deployment_of(engine: str, version: str | None, memory, found, tp: int, pp: int, gpus: int | None, **fields):
    """A Deployment from the options; an unknown engine version or a shape that cannot be is exit 2."""
    from kvcalc.capacity.deployment import FitUsageError, deployment

    try:
        return deployment(engine, memory, version=version, gpu=found, tp=tp, pp=pp, gpus=gpus, **fields)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpus") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine-version") from None
