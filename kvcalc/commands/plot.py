"""kvcalc plot: KV memory against context, in the terminal or as an image."""


from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from kvcalc.commands.common import catalogs_of, layout_for, out, preset_dirs_of, print_inferences, revision_of, warn
from kvcalc.commands.options import (
    BatchOpt,
    ForceOpt,
    GPUCatalogOpt,
    KVDtypeOpt,
    MLALayoutOpt,
    OutputOpt,
    PresetDirOpt,
    RevisionOpt,
    SpeedOpt,
    TPOpt,
)
from kvcalc.commands.parsers import items
from kvcalc.errors import KvcalcError
from kvcalc.estimate import spec_warnings


def plot_cmd(
    models: Annotated[list[str], typer.Argument(metavar="MODEL...", help="Presets, YAML/config.json paths, Hub ids.")],
    context_range: Annotated[
        str, typer.Option("--context-range", "-r", metavar="LOW..HIGH", help="Contexts to span, e.g. 1k..1M.")
    ] = "1k..1M",
    out_name: OutputOpt = None,
    force: ForceOpt = False,
    gpu_lines: Annotated[
        str | None,
        typer.Option(
            "--gpu-lines", metavar="LIST",
            help="Horizontal lines: sizes (24GiB) or GPUs (h100, 8xh200); GPU names add each model's weights.",
        ),
    ] = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = None,
    speed: SpeedOpt = False,
    tp: TPOpt = None,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """KV memory against context length, one line per model (log axes)."""
    from kvcalc.plot import check_output, curves, parse_lines, parse_range, save_image, terminal_chart, with_weights
    from kvcalc.sources.resolve import resolve_many

    try:
        low, high = parse_range(context_range)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--context-range") from None
    try:
        if gpu_lines is not None:
            items(gpu_lines, "--gpu-lines", "24GiB,h100")
        sizes = parse_lines(gpu_lines, catalogs_of(gpu_catalog))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpu-lines") from None
    out_file = None if out_name is None else Path(out_name)
    if out_file is not None:
        try:
            check_output(out_file, force=force, given=out_name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--out") from None
    specs = resolve_many(models, preset_dirs_of(preset_dir), revision_of(revision, models))
    warn(dict.fromkeys(w for spec in specs for w in spec_warnings(spec, True)))
    dtype = kv_dtype or "model dtype"
    sentences = []
    if not speed and tp is not None:
        raise typer.BadParameter("--tp is for --speed (bytes a decode step reads per GPU): add --speed",
                                 param_hint="--tp")
    if speed:
        from kvcalc.plot import read_curves

        tp = tp or 1
        series, crossings = read_curves(specs, low, high, batch=batch, tp=tp, kv_dtype=kv_dtype)
        what = "decode-step read"
        for name, at in crossings:
            sentences.append(f"{name}: KV reads overtake the weights' from {at:,} tokens per sequence at batch "
                             f"{batch}; below that the weights decide decode speed" if at else
                             f"{name}: KV reads never reach the weights' at batch {batch} within its max context "
                             "(or its windows cap them)")
        title = f"bytes read per decode step (per GPU, TP {tp}) vs context · batch {batch} · {dtype}"
    else:
        series = curves(specs, low, high, batch=batch, kv_dtype=kv_dtype, mla_layout=layout_for(specs, mla_layout))
        what = "KV cache"
        if any(line.gpu for line in sizes):
            series, what = with_weights(series, specs), "KV cache + weights"
        title = f"{what} vs context · batch {batch} · {dtype}"
    if out_file is None:
        out.print(Text(title))
        out.print(terminal_chart(series, sizes, what=what))
        for sentence in sentences:
            out.print(sentence, markup=False, soft_wrap=True)
        print_inferences(specs)
        if not _has_matplotlib():
            hint = "for an image: pip install 'kvcalc[plot]', then add --out chart.png"
            out.print(hint, style="dim", markup=False)
        return
    if not _has_matplotlib():
        out.print(terminal_chart(series, sizes, what=what))
        raise KvcalcError(
            f"matplotlib is not installed, so {out_file} was not written (the chart above is the "
            "terminal version); for the image: pip install 'kvcalc[plot]'"
        ) from None
    save_image(series, out_file, sizes, title, ylabel=f"{what} (bytes, log scale)", force=force)
    out.print(f"wrote {out_file}", markup=False)
    for sentence in sentences:
        out.print(sentence, markup=False, soft_wrap=True)


def _has_matplotlib() -> bool:
    from importlib.util import find_spec

    try:
        return find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules, as tests do to hide it
        return False
