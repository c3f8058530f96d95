"""Verify results as plain data, and their tables and JSON. No torch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.text import Text

from kvcalc.render import RULE, Grid, sized
from kvcalc.units import format_tokens


@dataclass(frozen=True)
class GroupCheck:
    """The instantiated layers of one kind: what estimate() says and what they hold."""

    name: str
    kind: str  # full | sliding | chunked | none
    attention: str | None
    layers: int
    window: int | None
    tokens: int  # tokens each layer holds per sequence, analytically
    analytic_bytes: int
    expected_bytes: int  # analytic, or rounded to whole 16-token blocks for a paged cache
    measured_bytes: int

    @property
    def match(self) -> bool:
        return self.measured_bytes == self.expected_bytes


@dataclass(frozen=True)
class Allocator:
    """CUDA only: memory_allocated() around cache creation and fill, taken apart."""

    delta: int  # memory_allocated() after the run minus before the caches were made
    peak: int  # max_memory_allocated() during the run, above that same baseline
    tensors: int  # cache tensors alive at the end (data, scales, positions, block tables)
    rounding: int  # their 512-byte block rounding
    whole_blocks: int | None  # cached blocks handed out whole (a remainder too small to split)
    other: int  # what nothing above explains; 0 when the allocator agrees

    @property
    def match(self) -> bool:
        return self.other == 0


@dataclass(frozen=True)
class VerifyResult:
    model: str
    device: str
    cache: str
    layers: int  # layers instantiated
    layer_indices: tuple[int, ...]
    context: int
    batch: int
    kv_dtype: str
    mla_layout: str | None
    compute_dtype: str
    analytic_bytes: int  # estimate() of exactly the instantiated layers
    block_rounded_bytes: int | None  # paged only: whole 16-token blocks
    measured_bytes: int  # storages of the cache data the layers wrote into
    scale_bytes: int  # int8/int4 scales: real bytes, not in the analytic number
    index_bytes: int  # slot positions and block tables: bookkeeping, not KV data
    cache_peak_bytes: int | None  # dynamic only: largest sum of live cache storages while growing
    allocator: Allocator | None
    full_model_bytes: int
    full_model_layers: int
    groups: tuple[GroupCheck, ...]
    prefill: int
    decode_steps: int
    seconds: float
    encoder: bool = False
    # caches not written with every token, or not holding the tokens the plan says: a static
    # cache's bytes match whether or not its slots were written, so this is checked apart
    token_problems: tuple[str, ...] = ()
    first_kv_layer: int | None = None  # in the whole model; None when no layer keeps KV
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def expected_bytes(self) -> int:
        return self.block_rounded_bytes if self.block_rounded_bytes is not None else self.analytic_bytes

    @property
    def no_kv_layer(self) -> bool:
        """A decoder run that built only no-KV layers (Mamba, linear attention): 0 B == 0 B
        proves nothing, so it is reported as nothing to verify, not as a match."""
        return not self.encoder and all(g.kind == "none" for g in self.groups)

    @property
    def match(self) -> bool:
        ok = self.measured_bytes == self.expected_bytes and all(g.match for g in self.groups)
        return ok and not self.token_problems and (self.allocator is None or self.allocator.match)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "device": self.device,
            "cache": self.cache,
            "layers": self.layers,
            "layer_indices": list(self.layer_indices),
            "context": self.context,
            "batch": self.batch,
            "kv_dtype": self.kv_dtype,
            "mla_layout": self.mla_layout,
            "compute_dtype": self.compute_dtype,
            "analytic_bytes": self.analytic_bytes,
            "block_rounded_bytes": self.block_rounded_bytes,
            "measured_bytes": self.measured_bytes,
            "allocator_bytes": self.allocator.delta if self.allocator else None,
            "peak_bytes": self.allocator.peak if self.allocator else None,
            "allocator": asdict(self.allocator) if self.allocator else None,
            "scale_bytes": self.scale_bytes,
            "index_bytes": self.index_bytes,
            "cache_peak_bytes": self.cache_peak_bytes,
            "full_model_bytes": self.full_model_bytes,
            "full_model_layers": self.full_model_layers,
            "prefill": self.prefill,
            "decode_steps": self.decode_steps,
            "groups": [{**asdict(g), "match": g.match} for g in self.groups],
            "encoder": self.encoder,
            "no_kv_layer": self.no_kv_layer,
            "first_kv_layer": self.first_kv_layer,
            "token_problems": list(self.token_problems),
            "match": self.match,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def _kind(g: GroupCheck) -> str:
    if g.kind in ("sliding", "chunked"):
        return f"{g.kind} {format_tokens(g.window)}"
    if g.kind == "indexer":
        return "indexer keys"  # DeepSeek-V3.2's lightning indexer: its own cache beside the latent
    return "no KV" if g.kind == "none" else g.kind


def _ok(flag: bool) -> Text:
    return Text("ok", style="green") if flag else Text("MISMATCH", style="bold red")


def title(r: VerifyResult) -> str:
    layout = f" · MLA {r.mla_layout}" if r.mla_layout else ""
    return (
        f"{r.model} · {r.device} · {r.cache} cache · {r.context:,} tokens · batch {r.batch} · "
        f"{r.kv_dtype} KV{layout}"
    )


def verify_table(r: VerifyResult) -> Grid:
    """Analytic against measured bytes, per layer group and in total."""
    paged = r.block_rounded_bytes is not None
    headers = ["layers", "kind", "count", "tokens", "analytic B"]
    headers += ["16-token blocks B"] if paged else []
    headers += ["measured B", ""]
    rows: list = []
    for g in r.groups:
        blocks = [f"{g.expected_bytes:,}"] if paged else []
        rows.append([g.name, _kind(g), g.layers, f"{g.tokens:,}", f"{g.analytic_bytes:,}", *blocks,
                     f"{g.measured_bytes:,}", _ok(g.match)])
    rows.append(RULE)
    blocks = [f"{r.block_rounded_bytes:,}"] if paged else []
    rows.append([Text("total", style="bold"), "", r.layers, "", f"{r.analytic_bytes:,}", *blocks,
                 Text(f"{r.measured_bytes:,}", style="bold"), _ok(r.measured_bytes == r.expected_bytes)])
    right = {"count", "tokens", "analytic B", "16-token blocks B", "measured B"}
    return Grid(title(r), headers, rows, right=right, optional=("kind", "tokens"))


def _which(indices: tuple[int, ...]) -> str:
    """'layer 0', 'layers 0, 5', 'layers 0-31'."""
    if len(indices) == 1:
        return f"layer {indices[0]}"
    if len(indices) > 3 and list(indices) == list(range(indices[0], indices[-1] + 1)):
        return f"layers {indices[0]}-{indices[-1]}"
    return "layers " + ", ".join(str(i) for i in indices)


def verify_lines(r: VerifyResult) -> list[str]:
    """What the table does not show: how it ran, the extras, the allocator."""
    which = _which(r.layer_indices)
    lines = [
        f"ran: {which} of {r.full_model_layers}; prefill {r.prefill:,} tokens, then "
        f"{r.decode_steps} single-token decode steps; weights and activations in {r.compute_dtype}",
        "measured: the bytes of every cache storage the layers wrote into, each storage once",
        f"full model, all {r.full_model_layers} layers at this context: {sized(r.full_model_bytes)} (estimate)",
    ]
    if r.block_rounded_bytes is not None:
        lines.append(
            f"paged: whole 16-token blocks hold {r.block_rounded_bytes - r.analytic_bytes:,} B more than "
            f"the exact {r.analytic_bytes:,} B; measured is compared with the block-rounded bytes"
        )
    if r.scale_bytes:
        lines.append(f"{r.kv_dtype} scales: {sized(r.scale_bytes)} more, fp32 tensors of their own, "
                     "not part of the analytic number")
    if r.index_bytes:
        lines.append(f"bookkeeping (slot positions, block tables): {r.index_bytes:,} B, not KV data")
    if r.cache_peak_bytes is not None:
        lines.append(
            f"dynamic: transient peak {sized(r.cache_peak_bytes)} of live cache storage (data and any "
            "scales) while growing (old and concatenated tensors alive together; sampled at each concatenation), "
            f"final {sized(r.measured_bytes)}"
        )
    a = r.allocator
    if a is not None:
        whole = f" + whole cached blocks {a.whole_blocks:,}" if a.whole_blocks else ""
        lines.append(
            f"allocator: memory_allocated() grew {a.delta:,} B = cache data {r.measured_bytes:,} + scales "
            f"and bookkeeping {r.scale_bytes + r.index_bytes:,} + 512-byte rounding {a.rounding:,} over "
            f"{a.tensors} tensors{whole} + unexplained {a.other:,}"
        )
        lines.append(f"peak: max_memory_allocated() rose {sized(a.peak)} during the run (activations included)")
    lines.extend(f"token check failed: {problem}" for problem in r.token_problems)
    lines.extend(r.notes)
    return lines


def _nothing_built(r: VerifyResult) -> str:
    which = _which(r.layer_indices)
    if r.first_kv_layer is None:
        hint = f"{r.model} has no layer with a KV cache"
    else:
        hint = (f"try --layers {r.first_kv_layer + 1} to reach layer {r.first_kv_layer}, its first "
                "attention layer, or leave out --layers to build one layer of each kind")
    return f"Nothing to verify: no KV layer among those built ({which}), so 0 B proves nothing; {hint}."


def _scales_apart(r: VerifyResult) -> str:
    """int8/int4 scales are real bytes the analytic number leaves out: say the verdict does too."""
    if not r.scale_bytes:
        return ""
    return f" {r.kv_dtype} scales ({r.scale_bytes:,} B) are reported apart, not part of this comparison."


def verdict(r: VerifyResult) -> str:
    if r.encoder:
        return f"{r.model} is an encoder: it keeps no KV cache between steps, so there is nothing to verify."
    if r.no_kv_layer:
        return _nothing_built(r)
    what = "block-rounded bytes" if r.block_rounded_bytes is not None else "analytic bytes"
    apart = _scales_apart(r)
    if r.match:
        extra = "; the CUDA allocator agrees" if r.allocator is not None else ""
        return f"MATCH: measured {r.measured_bytes:,} B equals the {what} ({r.expected_bytes:,} B){extra}.{apart}"
    if r.measured_bytes != r.expected_bytes:
        diff = r.measured_bytes - r.expected_bytes
        return f"MISMATCH: measured {r.measured_bytes:,} B, {what} {r.expected_bytes:,} B ({diff:+,} B).{apart}"
    if r.token_problems:
        more = f" (and {len(r.token_problems) - 1} more)" if len(r.token_problems) > 1 else ""
        return f"MISMATCH: the bytes agree, but {r.token_problems[0]}{more}."
    if r.allocator is not None and not r.allocator.match:
        return f"MISMATCH: the CUDA allocator grew by {r.allocator.other:+,} B that no cache tensor explains."
    wrong = ", ".join(g.name for g in r.groups if not g.match)
    return f"MISMATCH: the total agrees, but not the bytes of layer group(s) {wrong}."


def summary_table(rows: list[tuple[str, VerifyResult | None, str | None]], seconds: float) -> Grid:
    """--all: one row per preset; a row without a result carries the error that stopped it."""
    passed = sum(1 for _, r, _ in rows if r is not None and r.match)
    headers = ["model", "layers", "context", "cache", "expected B", "measured B", "result", "time"]
    cells: list = []
    for name, r, error in rows:
        if r is None:
            cells.append([name, "", "", "", "", "", Text(f"error: {error}", style="bold red"), ""])
            continue
        if r.encoder:
            result = Text("encoder", style="dim")
        elif r.no_kv_layer:
            result = Text("no KV layer", style="dim")
        else:
            result = Text("match", style="green") if r.match else Text("MISMATCH", style="bold red")
        cells.append([name, r.layers, f"{r.context:,}", r.cache, f"{r.expected_bytes:,}",
                      f"{r.measured_bytes:,}", result, f"{r.seconds:.2f} s"])
    encoders = sum(1 for _, r, _ in rows if r is not None and r.encoder)
    no_kv = sum(1 for _, r, _ in rows if r is not None and r.no_kv_layer)
    why = []
    if encoders:
        why.append(f"{encoders} encoders")
    if no_kv:
        why.append(f"{no_kv} with no KV layer built")
    skipped = f" ({', '.join(why)}: nothing to verify)" if why else ""
    title = f"kvcalc verify --all: {passed} of {len(rows)} passed{skipped} in {seconds:.1f} s"
    caption = "expected: estimate() for exactly the instantiated layers"
    if any(r is not None and r.block_rounded_bytes is not None for _, r, _ in rows):
        caption += ", rounded up to whole 16-token blocks (paged)"
    right = {"layers", "context", "expected B", "measured B", "time"}
    return Grid(title, headers, cells, right=right, caption=caption, optional=("time", "cache"))
