"""Several models at several contexts: the rows behind `kvcalc compare`. Pure data."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Literal

from kvcalc.estimate import Estimate, estimate
from kvcalc.spec import ModelSpec

# --sort keys: numbers sort largest first, names A-Z
SortKey = Literal["name", "total", "bytes-per-token", "layers", "kv-size", "context"]


@dataclass(frozen=True)
class CompareRow:
    spec: ModelSpec
    result: Estimate

    @property
    def beyond_max(self) -> bool:
        return self.result.context > self.spec.max_context

    @property
    def kv_size(self) -> int:
        """KV heads x head_dim per layer (dense), or the latent width (MLA): elements per K or latent."""
        a = self.spec.attention
        return a.kv_lora_rank + a.qk_rope_head_dim if a.kind == "mla" else a.kv_heads * a.head_dim

    def kv_label(self) -> str:
        a = self.spec.attention
        if self.spec.is_encoder:
            return "-"
        if a.kind == "mla":
            return f"latent {a.kv_lora_rank}+{a.qk_rope_head_dim}"
        return f"{a.kv_heads} x {a.head_dim}"


def compare_rows(
    specs: list[ModelSpec],
    contexts: list[int] | None,
    batch: int = 1,
    kv_dtype: str | None = None,
    mla_layout: str = "latent",
    sort: str | None = None,
) -> list[CompareRow]:
    """One row per model and context; contexts default to each model's max context."""
    rows = [
        CompareRow(spec, estimate(spec, context=c, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout))
        for spec in specs
        for c in (contexts or [spec.max_context])
    ]
    if sort:
        rows.sort(key=_SORTERS[sort], reverse=sort != "name")
    return rows


_SORTERS = {
    "name": lambda r: (r.spec.name, r.result.context),
    "total": lambda r: r.result.total_bytes,
    "bytes-per-token": lambda r: r.result.bytes_per_token,
    "layers": lambda r: r.spec.layers.count,
    "kv-size": lambda r: r.kv_size,
    "context": lambda r: r.result.context,
}

CSV_FIELDS = (
    "model", "attention", "layers", "kv_dtype", "context", "beyond_max_context", "batch",
    "bytes_per_token", "total_bytes", "state_bytes",
)


def to_csv(rows: list[CompareRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in rows:
        r = row.result
        writer.writerow(
            [r.model, "encoder" if r.encoder else row.spec.attention.kind, row.spec.layers.count,
             r.kv_dtype, r.context, str(row.beyond_max).lower(), r.batch, r.bytes_per_token,
             r.total_bytes, r.state_bytes]
        )
    return buffer.getvalue()
