"""kvcalc presets: list the presets, or show one."""


from typing import Annotated

import typer

from kvcalc.commands.common import out, preset_dirs_of, print_json, revision_of, warn
from kvcalc.commands.options import JsonOpt, ModelArg, PresetDirOpt, RevisionOpt
from kvcalc.estimate import estimate

HELP = "List the model presets, or show one."


def presets_list(
    ctx: typer.Context,
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", metavar="TEXT",
                     help="Only presets whose name, attention, architecture, source or notes contain TEXT "
                          "(case-insensitive; several words must all match)."),
    ] = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
) -> None:
    """List every preset: name, attention kind, layers, KV bytes per token, source."""
    if ctx.invoked_subcommand is not None:
        return
    from kvcalc.render import presets_table
    from kvcalc.sources.presets import available, load_named

    words = (search or "").lower().split()
    rows = []
    for path in available(preset_dirs_of(preset_dir)).values():
        spec = load_named(path)
        if words:
            text = _searched_text(spec)
            if not all(word in text for word in words):
                continue
        rows.append((spec, estimate(spec, context=1).bytes_per_token))
    if search is not None and not rows:
        warn([f"no preset matches {search!r}; 'kvcalc presets' lists them all"])
    if json_out:
        print_json(
            [
                {
                    "name": spec.name,
                    "attention": spec.attention.kind,
                    "architecture": spec.architecture,
                    "layers": spec.layers.count,
                    "bytes_per_token": per_token,
                    "max_context": spec.max_context,
                    "dtype": spec.dtype,
                    "source": spec.source,
                }
                for spec, per_token in rows
            ]
        )
        return
    out.print(presets_table(rows))


def _searched_text(spec) -> str:
    return " ".join([spec.name, spec.attention.kind, spec.architecture, spec.parameters, *spec.source,
                     *spec.notes, *(k.type for k in spec.layers.kinds.values())]).lower()


def presets_show(
    ctx: typer.Context,
    name: ModelArg,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
) -> None:
    """Print one preset's full spec (as YAML, or JSON with --json)."""
    import yaml

    from kvcalc.sources.resolve import resolve

    # `kvcalc presets --preset-dir D show NAME` puts the folder on the group
    folders = preset_dirs_of(preset_dir or ctx.parent.params.get("preset_dir"))
    spec = resolve(name, folders, revision_of(revision, [name]))
    data = spec.model_dump(mode="json", exclude_none=True)
    if json_out:
        print_json(data)
        return
    typer.echo(yaml.safe_dump(data, sort_keys=False, width=100).rstrip())
    order = spec.layers.order()
    layout = ", ".join(f"{i}:{kind}" for i, kind in enumerate(order)) if len(spec.layers.kinds) > 1 else None
    if layout:
        typer.echo(f"# layer order: {layout}")
