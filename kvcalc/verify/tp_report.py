"""Tensor-parallel verify results as plain data, and their table, lines and JSON. No torch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction

from rich.text import Text

from kvcalc.render import RULE, Grid, sized
from kvcalc.verify.report import GroupCheck, _ok, _which


@dataclass(frozen=True)
class RankResult:
    rank: int
    stage: int
    tp_rank: int
    device: str
    layer_indices: tuple[int, ...]
    q_heads: dict  # kind name -> (start, stop) of the query heads this rank computes
    kv_heads: dict  # kind name -> (start, stop) of the KV heads it holds, None for MLA's latent
    fit_kv_heads: dict  # kind name -> fit's KV heads per GPU (None for MLA)
    fit_total_kv: dict  # kind name -> the kind's KV heads in the whole model (None for MLA)
    bytes_per_token: int  # fit's kv_bytes_per_token_per_gpu for this rank's layers
    analytic_bytes: int  # fit's per-GPU bytes per token x tokens held x batch
    expected_bytes: int  # the same with whole 16-token blocks for a paged cache
    expected_by_kind: dict
    measured_bytes: int  # the storages of the cache data this rank's layers wrote into
    measured_by_kind: dict
    index_bytes: int
    cache_peak_bytes: int | None
    allocator: dict | None  # CUDA only: as single-device verify's Allocator
    token_problems: tuple[str, ...]
    seconds: float
    pid: int
    threads: int
    dp_rank: int = 0  # the data-parallel rank whose requests it holds
    dcp_rank: int = 0  # with DCP: it holds each request's tokens t % dcp == dcp_rank

    @property
    def allocator_ok(self) -> bool:
        return self.allocator is None or self.allocator["other"] == 0

    @property
    def match(self) -> bool:
        kinds = all(self.measured_by_kind.get(n, 0) == b for n, b in self.expected_by_kind.items())
        kinds = kinds and set(self.measured_by_kind) <= set(self.expected_by_kind)
        return (self.measured_bytes == self.expected_bytes and kinds and not self.token_problems
                and self.allocator_ok)

    def to_dict(self) -> dict:
        return {
            "rank": self.rank, "dp_rank": self.dp_rank, "dcp_rank": self.dcp_rank, "stage": self.stage,
            "tp_rank": self.tp_rank,
            "device": self.device,
            "layer_indices": list(self.layer_indices),
            "q_heads": {n: list(v) for n, v in self.q_heads.items()},
            "kv_heads": {n: (list(v) if v is not None else None) for n, v in self.kv_heads.items()},
            "fit_kv_heads_per_gpu": dict(self.fit_kv_heads),
            "bytes_per_token": self.bytes_per_token,
            "analytic_bytes": self.analytic_bytes,
            "expected_bytes": self.expected_bytes,
            "measured_bytes": self.measured_bytes,
            "measured_by_kind": dict(self.measured_by_kind),
            "index_bytes": self.index_bytes,
            "cache_peak_bytes": self.cache_peak_bytes,
            "allocator_bytes": self.allocator["delta"] if self.allocator else None,
            "peak_bytes": self.allocator["peak"] if self.allocator else None,
            "allocator": self.allocator,
            "token_problems": list(self.token_problems),
            "match": self.match,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class TPResult:
    model: str
    device: str
    backend: str  # gloo | nccl
    tp: int
    pp: int
    engine: str  # whose heads rule fit applied
    cache: str
    layers: int
    layer_indices: tuple[int, ...]
    stages: tuple[tuple[int, ...], ...]
    context: int
    batch: int
    kv_dtype: str
    mla_layout: str | None
    compute_dtype: str
    unsharded_bytes: int  # estimate() of the built layers: one copy, no parallelism
    unsharded_expected_bytes: int  # the same in whole 16-token blocks for a paged cache
    full_model_bytes: int
    full_model_layers: int
    first_kv_layer: int | None
    groups: tuple[GroupCheck, ...]  # per layer kind, summed over the ranks
    ranks: tuple[RankResult, ...]
    kind_replication: dict  # kind name -> fit's kv_replication
    prefill: int
    decode_steps: int
    paged: bool
    seconds: float
    encoder: bool = False
    notes: tuple[str, ...] = ()
    outputs: dict = field(default_factory=dict, compare=False, repr=False)  # tests: last stage's outputs
    dp: int = 1  # data-parallel ranks, each its own requests; ``tp`` is the attention TP inside each
    engine_tp: int | None = None  # the --tp the engine was given (SGLang: tp / dp is the attention TP)
    dcp: int = 1  # vLLM decode context parallelism inside each TP group

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def analytic_bytes(self) -> int:
        return sum(r.analytic_bytes for r in self.ranks)

    @property
    def expected_bytes(self) -> int:
        return sum(r.expected_bytes for r in self.ranks)

    @property
    def measured_bytes(self) -> int:
        return sum(r.measured_bytes for r in self.ranks)

    @property
    def no_kv_layer(self) -> bool:
        return not self.encoder and all(g.kind == "none" for g in self.groups)

    @property
    def replication(self) -> float | None:
        """How many copies of the built layers' KV the ranks hold, by fit: its per-GPU bytes summed
        over the ranks, over estimate()'s one copy (fit's kv_replication when one attention kind)."""
        if not self.unsharded_bytes:
            return None
        return float(Fraction(self.analytic_bytes, self.unsharded_bytes * self.dp))  # per DP rank's requests

    @property
    def measured_replication(self) -> float | None:
        if not self.unsharded_expected_bytes:
            return None
        return float(Fraction(self.measured_bytes, self.unsharded_expected_bytes * self.dp))

    @property
    def match(self) -> bool:
        return bool(self.ranks) and all(r.match for r in self.ranks) and all(g.match for g in self.groups)

    def to_dict(self) -> dict:
        allocators = [r.allocator for r in self.ranks if r.allocator]
        return {
            "model": self.model,
            "device": self.device,
            "backend": self.backend,
            "tp": self.engine_tp or self.tp,
            "pp": self.pp,
            "dp": self.dp,
            "dcp": self.dcp,
            "attention_tp": self.tp,
            "engine": self.engine,
            "cache": self.cache,
            "layers": self.layers,
            "layer_indices": list(self.layer_indices),
            "stages": [list(s) for s in self.stages],
            "context": self.context,
            "batch": self.batch,
            "kv_dtype": self.kv_dtype,
            "mla_layout": self.mla_layout,
            "compute_dtype": self.compute_dtype,
            "analytic_bytes": self.analytic_bytes,
            "block_rounded_bytes": self.expected_bytes if self.paged else None,
            "measured_bytes": self.measured_bytes,
            "allocator_bytes": sum(a["delta"] for a in allocators) if allocators else None,
            "peak_bytes": max(a["peak"] for a in allocators) if allocators else None,
            "scale_bytes": 0,
            "index_bytes": sum(r.index_bytes for r in self.ranks),
            "cache_peak_bytes": (sum(r.cache_peak_bytes for r in self.ranks)
                                 if self.cache == "dynamic" and self.ranks else None),
            "unsharded_bytes": self.unsharded_bytes,
            "replication": self.replication,
            "measured_replication": self.measured_replication,
            "kind_replication": dict(self.kind_replication),
            "full_model_bytes": self.full_model_bytes,
            "full_model_layers": self.full_model_layers,
            "prefill": self.prefill,
            "decode_steps": self.decode_steps,
            "groups": [{**asdict(g), "match": g.match} for g in self.groups],
            "ranks": [r.to_dict() for r in self.ranks],
            "encoder": self.encoder,
            "no_kv_layer": self.no_kv_layer,
            "first_kv_layer": self.first_kv_layer,
            "token_problems": [f"rank {r.rank}: {p}" for r in self.ranks for p in r.token_problems],
            "match": self.match,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def _heads(span) -> str:
    if span is None:
        return "latent"
    start, stop = span
    return f"head {start}" if stop - start == 1 else f"heads {start}-{stop - 1}"


def _per_kind(values: dict, show) -> str:
    """One value when every kind agrees, else 'kind: value' for each."""
    shown = {n: show(v) for n, v in values.items()}
    if len(set(shown.values())) <= 1:
        return next(iter(shown.values()), "-")
    return "; ".join(f"{n}: {v}" for n, v in shown.items())


def title(r: TPResult) -> str:
    layout = f" · MLA {r.mla_layout}" if r.mla_layout else ""
    dp = f" · DP {r.dp} (attention TP {r.tp})" if r.dp > 1 else ""
    dp += f" · DCP {r.dcp}" if r.dcp > 1 else ""
    return (f"{r.model} · TP {r.engine_tp or r.tp} x PP {r.pp}{dp} · {r.backend} on {r.device} · {r.cache} cache · "
            f"{r.context:,} tokens · batch {r.batch} · {r.kv_dtype} KV{layout} · fit: {r.engine}")


def tp_table(r: TPResult) -> Grid:
    """Each rank: what it holds, fit's per-GPU bytes for it, and what its caches measure."""
    headers = ["rank", *(["DP rank"] if r.dp > 1 else []), *(["DCP rank"] if r.dcp > 1 else []), "stage", "layers",
               "query heads", "KV held",
               "fit B/token", "analytic B"]
    headers += ["16-token blocks B"] if r.paged else []
    headers += ["measured B", ""]
    rows: list = []
    for k in r.ranks:
        blocks = [f"{k.expected_bytes:,}"] if r.paged else []
        queries = _per_kind(k.q_heads, lambda span: f"{span[0]}-{span[1] - 1}" if span[1] - span[0] > 1
                            else str(span[0]))
        dp = ([str(k.dp_rank)] if r.dp > 1 else []) + ([str(k.dcp_rank)] if r.dcp > 1 else [])
        rows.append([str(k.rank), *dp, str(k.stage), _which(k.layer_indices).split(" ", 1)[1], queries,
                     _per_kind(k.kv_heads, _heads), f"{k.bytes_per_token:,}", f"{k.analytic_bytes:,}", *blocks,
                     f"{k.measured_bytes:,}", _ok(k.match)])
    rows.append(RULE)
    blocks = [f"{r.expected_bytes:,}"] if r.paged else []
    dp = [""] * ((r.dp > 1) + (r.dcp > 1))
    rows.append([Text("total", style="bold"), *dp, "", "", "", "", f"{sum(k.bytes_per_token for k in r.ranks):,}",
                 f"{r.analytic_bytes:,}", *blocks, Text(f"{r.measured_bytes:,}", style="bold"),
                 _ok(r.measured_bytes == r.expected_bytes)])
    right = {"fit B/token", "analytic B", "16-token blocks B", "measured B"}
    return Grid(title(r), headers, rows, right=right, optional=("stage", "query heads", "fit B/token"))


def _fit_line(r: TPResult, g: GroupCheck) -> str:
    shares = [k for k in r.ranks if g.name in k.fit_kv_heads]
    if not shares:
        return ""
    heads = shares[0].fit_kv_heads[g.name]
    copies = r.kind_replication.get(g.name, 1.0)
    if heads is None:
        return (f"fit ({r.engine}): {g.name} layers keep MLA's latent whole on every GPU, so TP {r.tp} holds it "
                f"{copies:g} times")
    total = shares[0].fit_total_kv.get(g.name)
    times = f"; each KV head is held {copies:g} times across the group" if copies > 1 else ""
    return f"fit ({r.engine}): {g.name} layers: {heads} of {total} KV heads per GPU at TP {r.tp}{times}"


def tp_lines(r: TPResult) -> list[str]:
    """What the table does not show: fit's rule, the replication, how it ran, the extras."""
    if r.encoder:
        return list(r.notes)
    lines = [line for g in r.groups if g.kind != "none" for line in [_fit_line(r, g)] if line]
    if r.unsharded_bytes:
        each = f" per DP rank (each of the {r.dp} its own requests)" if r.dp > 1 else ""
        lines.append(
            f"replication: the {r.world} ranks hold {r.measured_bytes:,} B measured, {r.measured_replication:g} x "
            f"the {r.unsharded_expected_bytes:,} B of one copy of the built layers (estimate()){each}; fit says "
            f"{r.expected_bytes:,} B, {r.expected_bytes / (r.unsharded_expected_bytes * r.dp):g} x"
        )
    stages = " | ".join(", ".join(str(i) for i in s) for s in r.stages)
    pipeline = f"; pipeline stages hold layers {stages}, activations sent stage to stage" if r.pp > 1 else ""
    lines += [
        f"ran: {_which(r.layer_indices)} of {r.full_model_layers} at the model's width; each rank computes its "
        f"query heads and holds the KV heads they read; prefill {r.prefill:,} tokens, then {r.decode_steps} "
        f"single-token decode steps; the output projection's parts all-reduced over each stage's {r.tp} "
        f"rank(s) ({r.backend}){pipeline}; weights and activations in {r.compute_dtype}",
        "measured: each rank's bytes of every cache storage its layers wrote into, each storage once",
        f"full model, all {r.full_model_layers} layers at this context: {sized(r.full_model_bytes)} "
        "(estimate, one copy)",
    ]
    if r.dcp > 1:
        slots = "16-token blocks of " if r.paged else ""
        lines.append(f"DCP {r.dcp}: fit's B/token is per GPU over a request's tokens (each GPU holds 1/{r.dcp} of "
                     f"them); each DCP rank allocates {slots}cdiv({r.context:,}, {r.dcp}) slots per request, "
                     f"{r.expected_bytes:,} B over all ranks against fit's exact {r.analytic_bytes:,} B; measured "
                     "is compared with the slots' bytes")
    elif r.paged:
        lines.append(f"paged: whole 16-token blocks hold {r.expected_bytes - r.analytic_bytes:,} B more than "
                     f"fit's exact {r.analytic_bytes:,} B; measured is compared with the block-rounded bytes")
    index = sum(k.index_bytes for k in r.ranks)
    if index:
        lines.append(f"bookkeeping (slot positions, block tables): {index:,} B over all ranks, not KV data")
    if r.cache == "dynamic" and r.ranks:
        peak = sum(k.cache_peak_bytes or 0 for k in r.ranks)
        lines.append(f"dynamic: transient peaks of live cache storage while growing, summed over ranks: {sized(peak)}")
    allocators = [k for k in r.ranks if k.allocator]
    if allocators:
        delta = sum(k.allocator["delta"] for k in allocators)
        other = sum(k.allocator["other"] for k in allocators)
        lines.append(f"allocator: memory_allocated() grew {delta:,} B over {len(allocators)} GPU(s); "
                     f"unexplained by the cache tensors and the allocator's rounding: {other:,} B")
        lines += [f"allocator (rank {k.rank}): {k.allocator['other']:+,} B unexplained" for k in allocators
                  if k.allocator["other"]]
    lines += [f"token check failed: rank {k.rank}: {p}" for k in r.ranks for p in k.token_problems]
    lines.extend(r.notes)
    return lines


def tp_verdict(r: TPResult) -> str:
    if r.encoder:
        return f"{r.model} is an encoder: it keeps no KV cache between steps, so there is nothing to verify."
    if r.no_kv_layer:
        return (f"Nothing to verify: no KV layer among those built ({_which(r.layer_indices)}), so 0 B proves "
                "nothing; try --layers.")
    what = "block-rounded per-GPU bytes" if r.paged else "per-GPU bytes"
    if r.match:
        return (f"MATCH: every rank's measured KV equals fit's {what} ({len(r.ranks)} of {len(r.ranks)} ranks; "
                f"{r.measured_bytes:,} B in all).")
    wrong = [k for k in r.ranks if not k.match]
    first = wrong[0] if wrong else None
    if first is not None and first.measured_bytes != first.expected_bytes:
        diff = first.measured_bytes - first.expected_bytes
        which = ", ".join(str(k.rank) for k in wrong)
        return (f"MISMATCH: rank(s) {which} differ from fit's {what}: rank {first.rank} measured "
                f"{first.measured_bytes:,} B, fit {first.expected_bytes:,} B ({diff:+,} B).")
    if first is not None and first.token_problems:
        return f"MISMATCH: the bytes agree, but rank {first.rank}: {first.token_problems[0]}."
    if first is not None and not first.allocator_ok:
        return (f"MISMATCH: on rank {first.rank} the CUDA allocator grew by {first.allocator['other']:+,} B that "
                "no cache tensor explains.")
    return "MISMATCH: the totals agree, but not the bytes of every layer kind."
