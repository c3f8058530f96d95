"""What `kvcalc bench` measured, as plain data and a table. No torch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.text import Text

from kvcalc.render import Grid, bar
from kvcalc.units import format_bytes, format_tokens


@dataclass(frozen=True)
class KindTiming:
    """One built layer of one kind: a decode step through it, timed."""

    name: str  # the layer kind in the preset: full, local, global ...
    layers: int  # how many layers of this kind the whole model has
    tokens: int  # tokens each sequence's cache holds (the window when it is shorter)
    median_s: float
    p10_s: float
    p90_s: float
    bytes_read: int  # weights of the layer's projections + the batch's cached KV, per step


@dataclass(frozen=True)
class VariantBench:
    variant: str
    attention: str  # what one layer caches, in words
    kinds: tuple[KindTiming, ...]
    layer_s: float  # median step time of one layer of the model's most common attention kind
    model_attention_s: float  # sum over kinds of layers x median: every attention layer, no MLP (scaled)
    bytes_read: int  # per step, all attention layers of the model (scaled), weights of the projections + KV
    bandwidth: float  # bytes_read / model_attention_s
    peak_fraction: float  # of the device's peak
    predicted_speedup: float | None = None  # vs MHA, from bytes read by the attention layers
    measured_speedup: float | None = None  # vs MHA, from the measured times
    model_predicted_speedup: float | None = None  # vs MHA, whole model with its MLPs (fit --speed's ceiling)


@dataclass(frozen=True)
class BenchResult:
    model: str
    device: str
    dtype: str
    context: int
    batch: int
    steps: int
    warmup: int
    kernel: str  # which attention path ran
    peak_bytes_per_s: float
    peak_source: str
    variants: tuple[VariantBench, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def bench_table(r: BenchResult) -> Grid:
    title = (f"{r.model} · {r.device} · {r.dtype} · {r.context:,} tokens · batch {r.batch} · "
             f"{r.steps} timed steps")
    slowest = max(v.model_attention_s for v in r.variants)
    rows = []
    for v in r.variants:
        speed = (f"{v.measured_speedup:.2f}x / {v.predicted_speedup:.2f}x"
                 if v.measured_speedup is not None else "")
        rows.append([
            v.variant, v.attention, f"{v.layer_s * 1e3:,.2f} ms", f"{v.model_attention_s * 1e3:,.1f} ms",
            format_bytes(v.bytes_read), f"{v.bandwidth / 1e9:,.1f} GB/s", f"{v.peak_fraction:.0%}", speed,
            Text(bar(v.model_attention_s, slowest, 10), style="cyan"),
        ])
    headers = ["variant", "cache per layer", "per layer", "all layers", "read/step", "achieved", "of peak",
               "vs MHA meas/pred", ""]
    caption = (f"per layer: median decode step of one layer; all layers: x the model's attention layers "
               f"(scaled, no MLP); peak {r.peak_bytes_per_s / 1e9:,.1f} GB/s ({r.peak_source}); "
               f"attention: {r.kernel}")
    return Grid(title, headers, rows, right=set(headers[2:8]), caption=caption,
                optional=("cache per layer", "", "of peak"))


def bench_lines(r: BenchResult) -> list[str]:
    lines = []
    for v in r.variants:
        for k in v.kinds:
            lines.append(f"{v.variant} {k.name}: {k.layers} layer(s), {format_tokens(k.tokens)} tokens held, median "
                         f"{k.median_s * 1e3:.3f} ms (p10 {k.p10_s * 1e3:.3f}, p90 {k.p90_s * 1e3:.3f}), "
                         f"{format_bytes(k.bytes_read)} read")
    if any(v.model_predicted_speedup is not None for v in r.variants):
        parts = ", ".join(f"{v.variant} {v.model_predicted_speedup:.2f}x" for v in r.variants
                          if v.model_predicted_speedup is not None)
        lines.append(f"whole model with its MLP weights (fit --speed's ceiling), predicted vs MHA: {parts}")
    return lines
