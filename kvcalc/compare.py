"""Several models at several contexts: the rows behind `kvcalc compare`. Pure data."""

import csv
import io
from typing import Literal, NamedTuple

from kvcalc.estimate import Estimate, estimate
from kvcalc.spec import ModelSpec, head_widths

# --sort keys: numbers sort largest first, names A-Z
SortKey = Literal["name", "total", "bytes-per-token", "layers", "kv-size", "context"]


class CompareRow(NamedTuple):
    spec: ModelSpec
    result: Estimate
    requests: int | None = None  # requests of this context that fit on the --gpu deployment (None: unknown)
    speed: object | None = None  # its DecodeSpeed at this batch and context (--speed), None: unknown
    shape: tuple[int, int, int] | None = None  # (tp, pp, replicas) the requests were counted on

    @property
    def beyond_max(self) -> bool:
        return self.result.context > self.spec.max_context

    @property
    def kv_size(self) -> int:
        """KV heads x head_dim per layer (dense; K's width, V may differ), or the latent width (MLA):
        elements per K or latent."""
        a = self.spec.attention
        if a.kind == "none":
            return 0
        return a.kv_lora_rank + a.qk_rope_head_dim if a.kind == "mla" else a.kv_heads * a.head_dim

    def kv_label(self) -> str:
        a = self.spec.attention
        if self.spec.is_encoder or a.kind == "none":
            return "-"
        if a.kind == "mla":
            return f"latent {a.kv_lora_rank}+{a.qk_rope_head_dim}"
        return f"{a.kv_heads} x {head_widths(a)}"


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
REQUESTS_FIELD = "requests_fit"


def to_csv(rows: list[CompareRow], requests: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS + ((REQUESTS_FIELD,) if requests else ()))
    for row in rows:
        r = row.result
        cells = [r.model, "encoder" if r.encoder else row.spec.attention.kind, row.spec.layers.count,
                 r.kv_dtype, r.context, str(row.beyond_max).lower(), r.batch, r.bytes_per_token,
                 r.total_bytes, r.state_bytes]
        if requests:
            cells.append("" if row.requests is None else row.requests)
        writer.writerow(cells)
    return buffer.getvalue()


def deployment_shape(spec: ModelSpec, gpus: int) -> tuple[int, int]:
    """(tp, replicas) for ``gpus`` GPUs when no memory decides: the largest TP that divides both the
    GPU count and the model's heads (and splits or replicates its KV heads evenly); the rest are
    replicas. With a GPU's memory, ``capacity.fit.best_shape`` decides instead."""
    from kvcalc.capacity.deployment import tp_allowed

    tp = max(t for t in range(1, gpus + 1) if gpus % t == 0 and tp_allowed(spec, t))
    return tp, gpus // tp


def with_requests(rows: list[CompareRow], template, gpus: int, tp: int | None = None) -> list[CompareRow]:
    """Each row with how many requests of its context fit on ``gpus`` GPUs of the deployment
    ``template`` (engine, GPU, switches): at TP ``tp`` with replicas over the rest, or else the
    shape ``best_shape`` picks for that model and context, by the engine's budget and default
    reserve, in the latent MLA layout engines use."""
    from kvcalc.capacity.fit import best_shape, fit

    def requests(row: CompareRow, _: int) -> dict:
        if tp is not None:
            d = template.with_shape(tp, 1, gpus // tp)
        else:
            d = best_shape(row.spec, template, gpus, row.result.context)
        r = fit(row.spec, d, row.result.context, search_min=False)
        return {"requests": r.total_concurrency, "shape": (r.tp, r.pp, r.replicas)}

    return _each(rows, gpus, requests)


def with_speed(rows: list[CompareRow], bandwidth: int, gpus: int, kv_dtype: str | None) -> list[CompareRow]:
    """Each row with its decode ceiling at the row's batch and context on ``gpus`` GPUs in TP (the
    row's shape when requests were counted)."""
    from kvcalc.capacity.speed import decode_speed

    def speed(row: CompareRow, tp: int) -> dict:
        tp, pp = (row.shape[0], row.shape[1]) if row.shape else (tp, 1)
        return {"speed": decode_speed(row.spec, bandwidth, context=row.result.context, batch=row.result.batch,
                                      tp=tp, pp=pp, kv_dtype=kv_dtype)}

    return _each(rows, gpus, speed)


def _each(rows: list[CompareRow], gpus: int, work) -> list[CompareRow]:
    """Each row updated with ``work(row, tp)``; an encoder, a model without a parameter count or a
    shape that cannot be planned keeps an empty (unknown) cell."""
    from kvcalc.errors import KvcalcError

    done = []
    for row in rows:
        update = None
        if not row.result.encoder:
            try:
                update = work(row, deployment_shape(row.spec, gpus)[0])
            except (KvcalcError, ValueError):
                update = None
        done.append(row._replace(**update) if update else row)
    return done
