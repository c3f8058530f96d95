"""KV memory against context length: the curves, an image (matplotlib) or a terminal chart.

The curves are computed exactly at log-spaced contexts plus every window and chunk
size in range, so sliding-window plateaus start exactly where they should. matplotlib is
optional (``kvcalc[plot]``) and imported only when an image is asked for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

from kvcalc.errors import KvcalcError
from kvcalc.estimate import estimate
from kvcalc.files import check_target, write_atomically
from kvcalc.spec import ModelSpec
from kvcalc.units import format_bytes, format_tokens, parse_tokens

IMAGE_SUFFIXES = (".png", ".svg")
PLOT_HINT = "pip install 'kvcalc[plot]'"


@dataclass(frozen=True)
class Series:
    model: str
    contexts: tuple[int, ...]
    totals: tuple[int, ...]  # bytes at each context


@dataclass(frozen=True)
class Line:
    """A horizontal line: a memory size, or the memory of COUNT GPUs from the catalog."""

    label: str
    bytes: int
    gpu: bool  # a named GPU: the curves then count each model's weights too


_GPU_LINE = re.compile(r"^\s*(?:([0-9]{1,6})\s*[x×*]\s*)?(.+?)\s*$", re.IGNORECASE | re.ASCII)


def parse_lines(text: str | None, catalogs=()) -> list[Line]:
    """'24GiB,h100,8xh200' -> a 24 GiB line, one H100, eight H200s (for a GPU: the memory vLLM may use at
    its default utilization, of the total the driver reports)."""
    from kvcalc.capacity.gpus import UnknownGPUError, find_gpu
    from kvcalc.units import parse_bytes

    lines = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            size = parse_bytes(part)
            lines.append(Line(f"{format_bytes(size)} GPU", size, False))
            continue
        except ValueError:
            pass
        match = _GPU_LINE.match(part)
        if match is None:  # a line break or other control character in the item
            raise ValueError(f"{part.strip()!r} is neither a size (24GiB) nor a GPU name")
        count = int(match.group(1) or 1)
        try:
            gpu = find_gpu(match.group(2), tuple(catalogs))
        except UnknownGPUError as exc:
            raise ValueError(f"{part.strip()!r} is neither a size (24GiB) nor a GPU: {exc}") from None
        if count < 1:
            raise ValueError(f"{part.strip()!r}: a GPU count is at least 1")
        # what the engine may use of each GPU: vLLM's default --gpu-memory-utilization of the total
        from kvcalc.capacity import engines

        vllm = engines.get("vllm")
        fraction = vllm.default_util(None, None)
        label = (f"{count} x " if count > 1 else "") + f"{gpu.key} (vLLM {vllm.version}: {float(fraction):g} usable)"
        lines.append(Line(label, count * vllm.requested_bytes(gpu.memory_bytes, fraction), True))
    return lines


def with_weights(series: list[Series], specs: list[ModelSpec]) -> list[Series]:
    """Each curve raised by its model's weights (the released dtype, or the model's), so a GPU
    line marks where weights and KV together stop fitting."""
    from kvcalc.capacity.params import parameter_count
    from kvcalc.capacity.weights import weights_bytes

    raised = []
    for s, spec in zip(series, specs):
        count = parameter_count(spec)
        if count is None:
            raise KvcalcError(f"{spec.name}: its weights are not derived, so it cannot be drawn against GPU "
                              "memory; give memory sizes (--gpu-lines 80GiB) instead of GPU names")
        dtype = (spec.weights.dtype if spec.weights else None) or spec.dtype  # as the KV curve: the model's
        extra = weights_bytes(count, dtype)
        raised.append(Series(f"{s.model} (+{format_bytes(extra)} {dtype} weights)", s.contexts,
                             tuple(t + extra for t in s.totals)))
    return raised


def parse_range(text: str) -> tuple[int, int]:
    """'1k..1M' -> (1024, 1048576)."""
    lo, sep, hi = text.partition("..")
    if not sep:
        raise ValueError(f"{text!r} is not a range: write LOW..HIGH, e.g. 1k..1M")
    low, high = parse_tokens(lo), parse_tokens(hi)
    if low >= high:
        raise ValueError(f"range {text!r} must go from a smaller to a larger context")
    return low, high


def sample_contexts(spec: ModelSpec, low: int, high: int, per_octave: int = 4) -> list[int]:
    """Log-spaced contexts plus the model's windows and chunks (and one token past them)."""
    steps = math.ceil(math.log2(high / low) * per_octave)
    points = {round(low * (high / low) ** (i / steps)) for i in range(steps + 1)}
    for kind in spec.layers.kinds.values():
        size = getattr(kind, "span", None)
        if size:
            points.update(c for c in (size, size + 1) if low <= c <= high)
    return sorted(points | {low, high})


def curves(specs: list[ModelSpec], low: int, high: int, batch: int = 1,
           kv_dtype: str | None = None, mla_layout: str = "latent") -> list[Series]:
    series = []
    for spec in specs:
        contexts = sample_contexts(spec, low, high)
        totals = [estimate(spec, context=c, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout).total_bytes
                  for c in contexts]
        series.append(Series(spec.name, tuple(contexts), tuple(totals)))
    return series


def check_output(path: Path, force: bool = False, given: str | None = None) -> None:
    """Refuse before any work: a wrong suffix (ValueError: a usage error), a missing or
    unwritable folder (KvcalcError)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: --out must end in .png or .svg")
    check_target(path, force=force, given=given)


def save_image(series: list[Series], path: Path, gpu_lines: list[Line], title: str,
               ylabel: str = "KV cache (bytes, log scale)", force: bool = False) -> None:
    """Draw with matplotlib into a temporary file beside ``path``, then move it into place."""
    import os

    # kvcalc draws into a file with Agg whatever MPLBACKEND names (an unknown name would make
    # matplotlib's import itself fail)
    os.environ.pop("MPLBACKEND", None)
    try:
        import matplotlib
    except ImportError:
        raise KvcalcError(f"writing {path} needs matplotlib: {PLOT_HINT}") from None
    except Exception as exc:  # a broken matplotlibrc or installation
        raise KvcalcError(f"matplotlib could not start ({str(exc).splitlines()[0][:200]}), so {path} was "
                          "not written") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(10, 6), layout="constrained")
    for s in series:
        drawn = [(c, t) for c, t in zip(s.contexts, s.totals) if t > 0]
        if drawn:
            ax.plot(*zip(*drawn), label=s.model, linewidth=2)
    for line in gpu_lines:
        ax.axhline(line.bytes, color="0.4", linestyle="--", linewidth=1)
        ax.annotate(line.label.replace(".00", ""), xy=(0.005, line.bytes), xycoords=("axes fraction", "data"),
                    xytext=(2, 3), textcoords="offset points", fontsize=9, color="0.3")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_tokens(int(v)) if v >= 1 else ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_bytes(int(v)).replace(".00", "")))
    _thin_ticks(ax)
    ax.set_xlabel("context length (tokens per sequence, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(loc="outside right upper", frameon=False)
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120), force=force)
    finally:
        plt.close(fig)


def _thin_ticks(ax) -> None:
    """At most ~10 labelled y ticks: every 2^k bytes gets crowded over many decades."""
    low, high = ax.get_ylim()
    octaves = max(1, math.log2(max(high, 2)) - math.log2(max(low, 1)))
    step = max(1, math.ceil(octaves / 10))
    from matplotlib.ticker import LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=2 ** step, numticks=40))


_MARKERS = "●■▲◆✚✖★◉"
_COLOURS = ["cyan", "magenta", "yellow", "green", "red", "blue", "bright_white", "bright_cyan"]


def terminal_chart(series: list[Series], gpu_lines: list[Line], width: int = 64, height: int = 18,
                   what: str = "KV cache") -> Text:
    """The same curves on a character grid, log x and log y, one marker per model."""
    points = [(c, t) for s in series for c, t in zip(s.contexts, s.totals) if t > 0]
    values = [t for _, t in points] + [line.bytes for line in gpu_lines]
    if not points:
        return Text("nothing to draw: every model keeps 0 bytes of KV cache")
    x_lo, x_hi = min(c for c, _ in points), max(c for c, _ in points)
    y_lo, y_hi = min(values), max(values)
    if y_hi == y_lo:
        y_hi = y_lo * 2

    def col(x: int) -> int:
        return round((math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo) or 1) * (width - 1))

    def row(y: int) -> int:
        return height - 1 - round((math.log(y) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo)) * (height - 1))

    cells: list[list[tuple[str, str]]] = [[(" ", "")] * width for _ in range(height)]
    for line in gpu_lines:
        cells[row(line.bytes)] = [("┄", "dim")] * width
    for i, s in enumerate(series):
        marker, colour = _MARKERS[i % len(_MARKERS)], _COLOURS[i % len(_COLOURS)]
        for c in range(width):  # one mark per column: the curve's value there (log interpolation)
            x = x_lo * (x_hi / x_lo) ** (c / (width - 1))
            y = _interpolate(s, x)
            if y:
                cells[row(round(y))][c] = (marker, colour)

    labels = {0: format_bytes(y_hi), height - 1: format_bytes(y_lo), (height - 1) // 2:
              format_bytes(round(math.exp((math.log(y_lo) + math.log(y_hi)) / 2)))}
    for line in gpu_lines:
        labels[row(line.bytes)] = line.label
    pad = max(len(v) for v in labels.values())
    text = Text()
    for r in range(height):
        text.append(f"{labels.get(r, ''):>{pad}} │", style="dim")
        for char, style in cells[r]:
            text.append(char, style=style)
        text.append("\n")
    text.append(" " * pad + " └" + "─" * width + "\n", style="dim")
    mid = round(math.exp((math.log(x_lo) + math.log(x_hi)) / 2))
    left, centre, right = format_tokens(x_lo), format_tokens(mid), format_tokens(x_hi)
    gap = width - len(left) - len(centre) - len(right)
    axis = left + " " * (gap // 2) + centre + " " * (gap - gap // 2) + right
    text.append(" " * (pad + 2) + axis + "\n", style="dim")
    text.append(" " * (pad + 2) + f"context length (tokens, log scale); {what} bytes on a log scale\n",
                style="dim")
    for i, s in enumerate(series):
        text.append(f"  {_MARKERS[i % len(_MARKERS)]} ", style=_COLOURS[i % len(_COLOURS)])
        note = "" if any(s.totals) else " (no KV cache)"
        text.append(f"{s.model}{note}\n")
    return text


def _interpolate(s: Series, x: float) -> float | None:
    """The curve between two computed points, linear in log-log space; None outside it."""
    pairs = list(zip(s.contexts, s.totals))
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:]):
        if x0 <= x <= x1 and y0 > 0 and y1 > 0:
            if x1 == x0:
                return y0
            f = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + f * (math.log(y1) - math.log(y0)))
    return None


def read_curves(specs: list[ModelSpec], low: int, high: int, batch: int = 1, tp: int = 1,
                kv_dtype: str | None = None) -> tuple[list[Series], list[tuple[str, int | None]]]:
    """Bytes one decode step reads against context: per model a rising KV curve and the flat
    weights it reads, plus (model, context where KV overtakes the weights) for the sentence."""
    from kvcalc.capacity.speed import decode_speed

    series, crossings = [], []
    for spec in specs:
        contexts = sample_contexts(spec, low, high)
        speeds = [decode_speed(spec, 1, context=c, batch=batch, tp=tp, kv_dtype=kv_dtype) for c in contexts]
        series.append(Series(f"{spec.name} KV", tuple(contexts), tuple(d.kv_bytes_read_per_step for d in speeds)))
        series.append(Series(f"{spec.name} weights", tuple(contexts),
                             tuple(d.weights_bytes_read_per_step for d in speeds)))
        crossings.append((spec.name, speeds[0].crossover_context))
    return series, crossings
