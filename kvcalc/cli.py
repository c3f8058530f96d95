"""The kvcalc command line: parse options, call the core, hand results to render.

KvcalcError is caught in one place (``KvcalcGroup.invoke``) and printed as one line on
stderr with exit code 1. Usage errors (bad option values) exit 2 through Typer.
Torch is never imported here at module level: only ``verify`` reaches it, lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from kvcalc import __version__
from kvcalc.dtypes import KVDtype
from kvcalc.errors import KvcalcError
from kvcalc.estimate import MLALayout, estimate
from kvcalc.units import parse_tokens

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class KvcalcGroup(TyperGroup):
    """The one error boundary: a KvcalcError becomes 'error: ...' on stderr and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KvcalcError as exc:
            err.print(f"error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=KvcalcGroup,
    help="Exact KV-cache memory for transformer models: estimate, compare, verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
presets_app = typer.Typer(cls=KvcalcGroup, help="List the model presets, or show one.")
app.add_typer(presets_app, name="presets")


def _tokens(value: str) -> int:
    try:
        return parse_tokens(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# Options shared by several commands, declared once.
ContextOpt = Annotated[
    int | None,
    typer.Option(
        "--context", "-c", parser=_tokens, metavar="TOKENS",
        help="Tokens per sequence: 8192, 8k, 128K, 1M. Default: the model's max context.",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Sequences held at once.")]
KVDtypeOpt = Annotated[
    KVDtype | None,
    typer.Option("--kv-dtype", help="KV element type. Default: the model's dtype."),
]
MLALayoutOpt = Annotated[
    MLALayout,
    typer.Option(
        "--mla-layout",
        help="MLA cache layout: the compressed latent (as vLLM/SGLang) or expanded per-head K and V.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
PresetDirOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--preset-dir", envvar="KVCALC_PRESET_DIR", metavar="DIR",
        help="Extra folder of preset YAML files (repeatable; env KVCALC_PRESET_DIR, ':'-separated).",
    ),
]
ModelArg = Annotated[
    str, typer.Argument(help="Preset name, preset YAML path, or config.json path/folder.")
]


def _dirs(preset_dir: list[Path] | None):
    from kvcalc.presets import preset_dirs

    return preset_dirs(tuple(preset_dir or ()))


def _warn(messages) -> None:
    for message in messages:
        err.print(f"warning: {message}", markup=False, soft_wrap=True)


def _print_json(data) -> None:
    from kvcalc.render import to_json

    typer.echo(to_json(data))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kvcalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Exact KV-cache memory for transformer models: estimate, compare, verify."""


@app.command("estimate")
def estimate_cmd(
    model: ModelArg,
    context: ContextOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = "latent",
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
) -> None:
    """The exact KV-cache size of MODEL at a context and batch, per layer group."""
    from kvcalc.presets import resolve
    from kvcalc.render import attention_label, estimate_summary, estimate_table

    spec = resolve(model, _dirs(preset_dir))
    result = estimate(spec, context=context, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout)
    _warn(result.warnings)
    if json_out:
        _print_json({**result.to_dict(), "notes": list(spec.notes)})
        return
    if not result.encoder:
        out.print(estimate_table(result, attention_label(spec.attention)))
    out.print(estimate_summary(result), markup=False)
    for note in spec.notes:
        out.print(f"note: {note}", markup=False, style="dim")


@presets_app.callback(invoke_without_command=True)
def presets_list(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
) -> None:
    """List every preset: name, attention kind, layers, KV bytes per token, source."""
    if ctx.invoked_subcommand is not None:
        return
    from kvcalc.presets import available, load_file
    from kvcalc.render import presets_table

    rows = []
    for path in available(_dirs(preset_dir)).values():
        spec = load_file(path)
        rows.append((spec, estimate(spec, context=1).bytes_per_token))
    if json_out:
        _print_json(
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


@presets_app.command("show")
def presets_show(
    name: ModelArg,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
) -> None:
    """Print one preset's full spec (as YAML, or JSON with --json)."""
    import yaml

    from kvcalc.presets import resolve

    spec = resolve(name, _dirs(preset_dir))
    data = spec.model_dump(mode="json", exclude_none=True)
    if json_out:
        _print_json(data)
        return
    typer.echo(yaml.safe_dump(data, sort_keys=False, width=100).rstrip())
    order = spec.layers.order()
    layout = ", ".join(f"{i}:{kind}" for i, kind in enumerate(order)) if len(spec.layers.kinds) > 1 else None
    if layout:
        typer.echo(f"# layer order: {layout}")


def main() -> None:
    app()
