"""Turn result objects into Rich tables, JSON and CSV. Units are converted only here."""

from __future__ import annotations

import json

from rich import box
from rich.table import Table
from rich.text import Text

from kvcalc.estimate import Estimate
from kvcalc.spec import ModelSpec
from kvcalc.units import format_bytes, format_tokens


def exact(n: int) -> str:
    return f"{n:,} B"


def sized(n: int) -> str:
    """'1.25 GiB (1,342,177,280 B)'."""
    return f"{format_bytes(n)} ({n:,} B)" if n >= 1024 else f"{n:,} B"


def to_json(data) -> str:
    return json.dumps(data, indent=2)


def _kind_label(group) -> str:
    if group.kind == "sliding":
        return f"sliding {format_tokens(group.window)}"
    if group.kind == "chunked":
        return f"chunked {format_tokens(group.window)}"
    if group.kind == "none":
        return "no KV (state)"
    return "full"


def attention_label(spec_attention) -> str:
    """'gqa 64/8 heads x 128' or 'mla latent 512+64, 128 heads'."""
    a = spec_attention
    if a.kind == "mla":
        return f"mla {a.kv_lora_rank}+{a.qk_rope_head_dim} latent, {a.heads} heads"
    return f"{a.kind} {a.heads} heads / {a.kv_heads} KV x {a.head_dim}"


def estimate_table(result: Estimate, attention: str = "") -> Table:
    layout = f" · MLA {result.mla_layout}" if result.mla_layout else ""
    title = (
        f"{result.model} · {result.context:,} tokens · batch {result.batch} · "
        f"{result.kv_dtype}{layout}"
    )
    table = Table(
        title=Text(title), title_justify="left", caption=Text(attention), caption_justify="left",
        box=box.SIMPLE_HEAD, pad_edge=False,
    )
    table.add_column("layers")
    table.add_column("kind")
    table.add_column("count", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("B/token", justify="right")
    table.add_column("KV cache", justify="right")
    table.add_column("bytes", justify="right")
    for g in result.groups:
        if g.kind == "none":
            cache, n = "state " + format_bytes(g.state_bytes), g.state_bytes
        else:
            cache, n = format_bytes(g.bytes), g.bytes
        table.add_row(
            Text(g.name), _kind_label(g), str(g.layers), f"{g.tokens:,}",
            f"{g.bytes_per_token:,}", cache, f"{n:,}",
        )
    table.add_section()
    table.add_row(
        Text("total", style="bold"), "", str(sum(g.layers for g in result.groups)), "",
        f"{result.bytes_per_token:,}", Text(format_bytes(result.total_bytes), style="bold"),
        f"{result.total_bytes:,}",
    )
    return table


def estimate_summary(result: Estimate) -> str:
    if result.encoder:
        return (
            f"{result.model} is an encoder: it attends over its whole input at once and keeps "
            "no KV cache between steps (total 0 B)."
        )
    lines = [f"KV cache: {sized(result.total_bytes)}; {result.bytes_per_token:,} B per token"]
    if result.state_bytes:
        lines.append(
            f"Constant state of no-KV layers: {sized(result.state_bytes)} (not in the KV total)"
        )
    return "\n".join(lines)


def presets_table(rows: list[tuple[ModelSpec, int]]) -> Table:
    table = Table(title="kvcalc presets", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    cells = []
    for spec, per_token in rows:
        kind = "encoder" if spec.is_encoder else spec.attention.kind
        patterned = len(spec.layers.kinds) > 1 or next(iter(spec.layers.kinds.values())).type != "full"
        cells.append(
            [spec.name, kind + ("+pattern" if patterned else ""), str(spec.layers.count),
             f"{per_token:,}", format_tokens(spec.max_context), short_source(spec.source[0])]
        )
    headers = ("name", "attention", "layers", "KV B/token", "max context", "source (all: presets show)")
    for i, header in enumerate(headers[:-1]):
        width = max([len(header), *(len(row[i]) for row in cells)])
        table.add_column(header, no_wrap=True, min_width=width, justify="left" if i < 2 else "right")
    table.add_column(headers[-1])
    for row in cells:
        source = row[-1] if len(row[-1]) <= 44 else row[-1][:43] + "…"
        table.add_row(*(Text(cell) for cell in row[:-1]), Text(source))
    return table


def short_source(source: str) -> str:
    """'https://huggingface.co/org/model/blob/main/config.json' -> 'hf:org/model config.json'."""
    hub = "https://huggingface.co/"
    if source.startswith(hub):
        repo, _, rest = source[len(hub):].partition("/blob/")
        return f"hf:{repo} {rest.rpartition('/')[2]}".strip()
    return source
