"""Turn result objects into Rich tables, JSON and CSV. Units are converted only here."""

from __future__ import annotations

from rich.text import Span, Text

from kvcalc.estimate import Estimate
from kvcalc.spec import ModelSpec, head_widths
from kvcalc.terminal import clean
from kvcalc.units import format_bytes, format_tokens

RULE = None  # a row that draws a dividing line


class Grid:
    """A fixed-width table drawn line by line: fast for hundreds of rows, never squeezes a
    number. When the terminal is too narrow, ``optional`` columns are dropped (in order);
    a ``shrink`` column (text, never a number) is cut short with an ellipsis first, and with
    ``whole_below`` each cell it cuts is printed whole under the table."""

    def __init__(self, title: str, headers: list[str], rows: list, right=frozenset(),
                 caption: str | None = None, optional: tuple[str, ...] = (), shrink: str | None = None,
                 whole_below: bool = False):
        self.title, self.headers, self.rows = title, headers, rows
        self.right, self.caption, self.optional, self.shrink = set(right), caption, optional, shrink
        self.whole_below = whole_below

    def widths(self) -> list[int]:
        cells = [row for row in self.rows if row is not RULE]
        return [max([len(h), *(len(str(row[i])) for row in cells)]) for i, h in enumerate(self.headers)]

    def __rich_console__(self, console, options):
        widths = self.widths()
        shown = list(range(len(self.headers)))
        shrink = self.headers.index(self.shrink) if self.shrink is not None else None

        def needed() -> int:  # a shrink column counts at its 12-cell minimum
            return sum(min(widths[i], 12) if i == shrink else widths[i] for i in shown) + 3 * len(shown)

        for header in self.optional:
            if needed() <= options.max_width:
                break
            shown.remove(self.headers.index(header))
        if shrink in shown:
            others = sum(widths[i] for i in shown if i != shrink) + 3 * len(shown)
            widths[shrink] = max(min(widths[shrink], options.max_width - others), 12)
        total = sum(widths[i] for i in shown) + 3 * (len(shown) - 1) + 2
        yield Text(clean(self.title))
        rule = " " + "─" * (total - 2)
        lines = [self._line(self.headers, widths, shown, bold=True), (rule, [Span(0, len(rule), "dim")])]
        lines += [(rule, [Span(0, len(rule), "dim")]) if row is RULE else self._line(row, widths, shown)
                  for row in self.rows]
        if total <= options.max_width:  # nothing to wrap: each line as it is drawn, no Text to lay out
            yield from _segments(console, lines)
        else:  # one Text, which Rich wraps: a number is wrapped, never hidden
            parts, spans, at = [], [], 0
            for line, line_spans in lines:
                spans += [Span(at + s.start, at + s.end, s.style) for s in line_spans]
                parts.append(line)
                at += len(line) + 1
            yield Text("\n".join(parts), spans=spans)
        if self.whole_below and shrink in shown:  # a cut cell is said in full below: no word lost at any width
            for row in self.rows:
                if row is not RULE and len(str(row[shrink])) > widths[shrink]:
                    yield Text(f" {clean(row[0])} ({self.headers[shrink]}): {clean(row[shrink])}", style="dim")
        if self.caption:
            yield Text(self.caption, style="dim")

    def _line(self, row, widths, shown, bold: bool = False) -> tuple[str, list[Span]]:
        """One row as a string and its styles: plain cells joined as strings, styled cells' spans
        moved to where they land (building it cell by cell costs more than the rest of compare --all)."""
        parts, spans, at = [" "], [], 1  # wraps rather than hides a number when nothing optional is left
        for n, i in enumerate(shown):
            cell = row[i]
            styled = isinstance(cell, Text)
            text = cell.plain if styled else clean(cell)
            if len(text) > widths[i]:  # only a shrink column is ever narrower than its text
                text, styled = text[: widths[i] - 1] + "…", False
            pad = " " * (widths[i] - len(text))
            right = self.headers[i] in self.right
            lead = ("   " if n else "") + (pad if right else "")
            parts.append(lead)
            at += len(lead)
            if bold:
                spans.append(Span(at, at + len(text), "bold"))
            elif styled:
                if cell.style:
                    spans.append(Span(at, at + len(text), cell.style))
                spans += [Span(at + span.start, at + span.end, span.style) for span in cell.spans]
            parts.append(text)
            at += len(text)
            if not right and n < len(shown) - 1:
                parts.append(pad)
                at += len(pad)
        return "".join(parts), spans


def _segments(console, lines: list[tuple[str, list[Span]]]):
    """Grid lines as Rich segments, each styled part with its style (a Grid's spans never overlap)."""
    from rich.segment import Segment

    styles: dict = {}
    for line, spans in lines:
        at = 0
        for span in sorted(spans):
            if span.end <= span.start or not span.style:
                continue  # nothing styled: its text goes out with the plain text around it
            if span.start > at:
                yield Segment(line[at:span.start])
            if span.style not in styles:
                styles[span.style] = console.get_style(span.style) if isinstance(span.style, str) else span.style
            yield Segment(line[span.start:span.end], styles[span.style])
            at = span.end
        if at < len(line):
            yield Segment(line[at:])
        yield Segment.line()


def exact(n: int) -> str:
    return f"{n:,} B"


def sized(n: int) -> str:
    """'1.25 GiB (1,342,177,280 B)'."""
    return f"{format_bytes(n)} ({n:,} B)" if n >= 1024 else f"{n:,} B"


def to_json(data) -> str:
    import json

    return json.dumps(data, indent=2)


def _kind_label(group) -> str:
    if group.kind == "sliding":
        return f"sliding {format_tokens(group.window)}"
    if group.kind == "chunked":
        return f"chunked {format_tokens(group.window)}"
    if group.kind == "none":
        return "no KV (state)"
    if group.kind == "indexer":
        return f"indexer keys ({group.of})"
    return "full"


def attention_label(spec_attention, mla_layout: str | None = "latent") -> str:
    """'gqa 64 heads / 8 KV x 128' ('... x k192/v128' when V's width differs from K's),
    'mla 512+64 latent, 128 heads' or the expanded layout."""
    a = spec_attention
    if a.kind == "none":
        return "no attention: a constant state per sequence, no KV cache"
    if a.kind == "mla" and mla_layout == "expanded":
        per_head = a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim
        parts = f"K {a.qk_nope_head_dim}+{a.qk_rope_head_dim}, V {a.v_head_dim}"
        return f"mla expanded: {a.heads} heads x {per_head} ({parts})" + _indexer_label(a)
    if a.kind == "mla":
        return f"mla {a.kv_lora_rank}+{a.qk_rope_head_dim} latent, {a.heads} heads" + _indexer_label(a)
    return f"{a.kind} {a.heads} heads / {a.kv_heads} KV x {head_widths(a)}"


def _indexer_label(a) -> str:
    ix = a.indexer
    return "" if ix is None else f" + indexer key {ix.head_dim} ({ix.key_dtype or 'KV dtype'})"


def estimate_table(result: Estimate, attention: str = "") -> Grid:
    layout = f" · MLA {result.mla_layout}" if result.mla_layout else ""
    tokens = f"{result.context:,} token" + ("s" if result.context != 1 else "")
    title = f"{result.model} · {tokens} · batch {result.batch} · {result.kv_dtype}{layout}"
    rows: list = []
    states = any(g.kind == "none" or g.state_bytes for g in result.groups)  # hybrid layers keep one too
    for g in result.groups:
        row = [g.name, _kind_label(g), g.layers, f"{g.tokens:,}", f"{g.bytes_per_token:,}", format_bytes(g.bytes),
               f"{g.bytes:,}"]
        if states:  # a constant state is not KV: its own column, so each column adds up to its total
            row.append(f"{g.state_bytes:,}" if g.kind == "none" or g.state_bytes else "")
        rows.append(row)
    rows.append(RULE)
    total = [
        Text("total", style="bold"), "", result.layer_count, "", f"{result.bytes_per_token:,}",
        Text(format_bytes(result.total_bytes), style="bold"), f"{result.total_bytes:,}",
    ]
    if states:
        total.append(f"{result.state_bytes:,}")
    rows.append(total)
    headers = ["layers", "kind", "count", "tokens", "B/token", "KV cache", "bytes"] + (["state B"] if states else [])
    # narrow terminals drop text before numbers: the kind, then the exact bytes
    return Grid(title, headers, rows, right=set(headers[2:]), caption=attention, optional=("kind", "bytes"))


def estimate_summary(result: Estimate) -> str:
    if result.encoder:
        return (
            f"{result.model} is an encoder: it attends over its whole input at once and keeps "
            "no KV cache between steps (total 0 B)."
        )
    lines = [f"KV cache: {sized(result.total_bytes)}; {result.bytes_per_token:,} B per token"]
    indexer = sum(g.bytes for g in result.groups if g.kind == "indexer")
    if indexer:
        lines.append(f"of which sparse-attention indexer keys: {sized(indexer)} (in the KV total)")
    if result.state_bytes:
        lines.append(
            f"Constant state (state layers, and attention layers that also keep one), "
            f"{'for the batch of ' + str(result.batch) if result.batch > 1 else 'per sequence'}: "
            f"{sized(result.state_bytes)} (not in the KV total)"
        )
    lines.extend(f"note: {c}" for c in result.conventions)
    return "\n".join(lines)


def presets_table(rows: list[tuple[ModelSpec, int]]) -> Grid:
    cells = []
    for spec, per_token in rows:
        kind = "encoder" if spec.is_encoder else spec.attention.kind
        patterned = len(spec.layers.kinds) > 1 or next(iter(spec.layers.kinds.values())).type != "full"
        source = short_source(spec.source[0])
        cells.append([
            spec.name, kind + ("+pattern" if patterned else ""), spec.layers.count, f"{per_token:,}",
            format_tokens(spec.max_context), source,
        ])
    headers = ["name", "attention", "layers", "KV B/token", "max context", "source (all: presets show)"]
    return Grid("kvcalc presets", headers, cells, right={"layers", "KV B/token", "max context"},
                optional=(headers[-1], "max context"), shrink=headers[-1])


def short_source(source: str) -> str:
    """'https://huggingface.co/org/model/blob/main/config.json' -> 'hf:org/model config.json'."""
    hub = "https://huggingface.co/"
    if source.startswith(hub):
        repo, _, rest = source[len(hub):].partition("/blob/")
        return f"hf:{repo} {rest.rpartition('/')[2]}".strip()
    return source


_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: int, largest: int, width: int = 12) -> str:
    """A horizontal bar of ``width`` cells for value/largest, in eighths of a cell."""
    if largest <= 0 or value <= 0:
        return ""
    value = min(value, largest)  # a value past the scale fills the bar, never more
    eighths = max(1, int(value * width * 8 // largest))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _shape_label(shape) -> str:
    """' (TP 4)', ' (TP 1 x PP 3)', ' (TP 2 x 3)': the shape a compare row's requests were counted on."""
    if not shape or shape == (1, 1, 1):
        return ""
    tp, pp, replicas = shape
    return f" (TP {tp}" + (f" x PP {pp}" if pp > 1 else "") + (f" x {replicas}" if replicas > 1 else "") + ")"


def compare_table(rows, title: str, requests: str | None = None, speed: bool = False) -> Grid:
    """One row per model and context, a bar scaled to the largest total; with ``requests`` (the
    deployment's label) a column of how many requests of that context fit there."""
    largest = max((r.result.total_bytes for r in rows), default=0)
    cells = []
    for row in rows:
        r = row.result
        attention = "encoder" if r.encoder else row.spec.attention.kind
        if attention == "none":
            attention = "none (state)"
        elif any(g.kind in ("sliding", "chunked", "none") for g in r.groups):
            attention += "+pattern"
        cells.append([
            r.model, attention, row.kv_label(), row.spec.layers.count, f"{r.bytes_per_token:,}",
            format_tokens(r.context) + (" *" if row.beyond_max else ""), format_bytes(r.total_bytes),
            f"{r.total_bytes:,}", Text(bar(r.total_bytes, largest), style="cyan"),
        ])
        if requests:
            cells[-1].insert(-1, "-" if r.encoder else "?" if row.requests is None else
                             f"{row.requests:,}" + _shape_label(row.shape))
        if speed:
            d = row.speed
            cells[-1].insert(-1, "-" if r.encoder else "?" if d is None else f"{d.tokens_per_s_per_sequence:,.1f}")
    captions = []
    if any(row.beyond_max for row in rows):
        captions.append("* beyond the model's max context: computed, not capped")
    headers = ["model", "attention", "KV per layer", "layers", "B/token", "context", "KV cache", "bytes", ""]
    right = {"layers", "B/token", "context", "KV cache", "bytes"}
    if requests:
        headers.insert(-1, "requests")
        right.add("requests")
        captions.append(f"requests: of that context, at once on {requests}; ? = weights unknown")
    if speed:
        headers.insert(-1, "tok/s/seq")
        right.add("tok/s/seq")
        captions.append("tok/s/seq: decode ceiling per sequence at this batch (bytes a step reads / bandwidth)")
    return Grid(title, headers, cells, right=right, caption="\n".join(captions) or None,
                optional=("attention", "KV per layer", "", "bytes", "layers"))  # text before numbers


def variants_table(rows, spec: ModelSpec, title: str, speeds=None) -> Grid:
    """Each variant's cache; with ``speeds`` (DecodeSpeed per row) its decode ceiling too."""
    largest = max(r.result.total_bytes for r in rows)
    cells = []
    for i, row in enumerate(rows):
        name = row.variant + (" (actual)" if row.is_actual else "") + (" †" if row.hypothetical else "")
        cells.append([
            Text(name, style="bold" if row.is_actual else ""), row.attention,
            f"{row.result.bytes_per_token:,}", format_bytes(row.result.total_bytes),
            f"{row.result.total_bytes:,}", f"{row.ratio_vs_mha:.3g}x", f"{row.ratio_vs_actual:.3g}x",
            Text(bar(row.result.total_bytes, largest), style="cyan"),
        ])
        if speeds:
            d = speeds[i]
            ratio = d.tokens_per_s / speeds[0].tokens_per_s
            cells[-1][-1:-1] = [f"{d.tokens_per_s_per_sequence:,.1f}", f"{ratio:.3g}x"]
    caption = None
    if any(r.hypothetical for r in rows):
        rule = ("dense rows use heads of v_head_dim" if spec.attention.kind == "mla"
                else "MLA rows: kv_lora_rank 4 x head_dim, rope head_dim / 2 unless --mla-rank/--rope-dim")
        caption = f"† hypothetical, sized by a rule ({rule})"
    headers = ["variant", "cache per layer", "B/token", "KV cache", "bytes", "vs MHA", "vs actual", ""]
    right = {"B/token", "KV cache", "bytes", "vs MHA", "vs actual"}
    if speeds:
        headers[-1:-1] = ["tok/s/seq", "speed vs MHA"]
        right |= {"tok/s/seq", "speed vs MHA"}
    return Grid(title, headers, cells, right=right, caption=caption,
                optional=("cache per layer", "", "bytes", "vs actual"))  # text before numbers
