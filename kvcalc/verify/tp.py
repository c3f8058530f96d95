"""`kvcalc verify --tp N [--pp P]`: fit's per-GPU KV figures, measured on real tensor-parallel shards.

The parent (this module) plans the run without torch (``tp_plan``), refuses it when the ranks
together would not fit, then holds a TCPStore on 127.0.0.1 (a socket it binds itself, on a
free port, so nothing else can take it and nothing listens beyond this machine) and starts the
launcher (``tp_rank``) in a session of its own. It waits for every rank's result in the store;
on any error, on Ctrl-C, or when it returns, it kills the launcher's whole process group, so
no rank outlives the command. Results are combined with fit's figures into a ``TPResult``.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from kvcalc.errors import KvcalcError
from kvcalc.spec import ModelSpec
from kvcalc.verify.device import _available_ram, resolve_device
from kvcalc.verify.report import GroupCheck
from kvcalc.verify.runner import compute_dtype, config_notes, first_kv_layer
from kvcalc.verify.tp_plan import TPPlan, check_ram, make_tp_plan
from kvcalc.verify.tp_report import RankResult, TPResult

HOST = "127.0.0.1"
STORE_TIMEOUT = datetime.timedelta(seconds=600)

# Tests only: make one rank fail, hang or build a wrong cache ({"rank": r, "kind": "raise" |
# "sleep" | "extra-slot"}), to prove errors, Ctrl-C and wrong caches are handled. Never set otherwise.
_FAULT: dict | None = None


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def rank_devices(device: str, world: int) -> tuple[str, list[str]]:
    """(backend, device of each rank): gloo on the CPU, or NCCL with one GPU per rank."""
    if not hasattr(os, "killpg"):
        raise KvcalcError("verify --tp/--pp runs rank processes in a process group of their own: Linux or macOS")
    dev = resolve_device(device)
    if dev.type == "cpu":
        return "gloo", ["cpu"] * world
    if dev.type != "cuda":
        raise KvcalcError(f"verify --tp runs on cpu (gloo) or cuda (NCCL, one GPU per rank), not {device!r}")
    count = torch.cuda.device_count()
    first = dev.index or 0
    if first + world > count:
        have = ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(count))
        raise KvcalcError(f"{world} rank(s) need {world} GPU(s), one per rank, from cuda:{first}; "
                          f"this machine has {count}: {have}")
    if not dist.is_nccl_available():
        raise KvcalcError("this torch has no NCCL; verify --tp on CUDA needs it (or use --device cpu)")
    return "nccl", [f"cuda:{first + r}" for r in range(world)]


def verify_tp(
    spec: ModelSpec,
    tp: int = 1,
    pp: int = 1,
    engine: str = "vllm",
    device: str = "cpu",
    context: int | None = None,
    batch: int = 1,
    layers: int | None = None,
    cache: str = "static",
    kv_dtype: str | None = None,
    mla_layout: str = "latent",
    seed: int = 0,
    dp: int = 1,
    dcp: int = 1,
    *,
    exact: bool = False,
    keep_outputs: bool = False,
    start: str | None = None,
) -> TPResult:
    """Run ``tp x pp`` ranks and compare each one's measured KV with fit's per-GPU bytes.

    Raises FitUsageError for a shape or option that cannot be verified (exit 2) and KvcalcError
    for anything else that stops the run (exit 1). ``exact`` (tests) computes and caches in
    float64; ``keep_outputs`` (tests) returns the last stage's outputs; ``start`` forces
    ``fork`` or ``exec`` rank processes (default: fork on Linux).
    """
    tpp = make_tp_plan(spec, tp=tp, pp=pp, engine=engine, context=context, batch=batch, layers=layers,
                       cache=cache, kv_dtype=kv_dtype, mla_layout=mla_layout, dp=dp, dcp=dcp)
    if spec.is_encoder:
        return _encoder_result(tpp, device)
    backend, devices = rank_devices(device, tpp.world)
    dtype = torch.float64 if exact else compute_dtype(spec.dtype, torch.device(devices[0]))
    start = start or ("fork" if sys.platform.startswith("linux") else "exec")
    check_ram(tpp, dtype.itemsize, _available_ram(), on_cpu=backend == "gloo", start=start)
    cores = cpu_cores()
    threads = max(1, cores // tpp.world) if backend == "gloo" else max(1, min(4, cores // tpp.world))
    job = {
        "spec": spec.model_dump(), "tp": tp, "pp": pp, "dp": dp, "dcp": dcp, "engine": engine,
        "context": tpp.plan.context, "batch": batch, "layers": layers,
        "cache": cache, "kv_dtype": tpp.plan.kv_dtype, "mla_layout": mla_layout, "seed": seed,
        "devices": devices, "backend": backend, "compute_dtype": str(dtype).removeprefix("torch."),
        "threads": threads, "exact": exact, "keep_outputs": keep_outputs, "fault": _FAULT,
    }
    started = time.perf_counter()
    results, outputs = _run(job, tpp.world, start)
    seconds = time.perf_counter() - started
    notes = list(tpp.notes)
    if backend == "gloo" and tpp.world > cores:
        notes.append(f"note: {tpp.world} ranks on {cores} CPU cores: they take turns (slower), "
                     f"{threads} thread each")
    if backend == "gloo" and spec.dtype in ("bf16", "fp16") and not exact:
        notes.append(f"note: the model's {spec.dtype} weights run as float32 on CPU (no fast half-precision "
                     "matmul); the cache keeps the KV dtype")
    for w in tpp.plan.analytic.warnings:
        notes.append(f"note: {w}")
    notes += config_notes(spec)
    return _combine(tpp, results, outputs, backend, devices, str(dtype).removeprefix("torch."), seconds, notes)


def _kvcalc_path() -> str:
    """The folder kvcalc is imported from, put first on the launcher's path so it runs this kvcalc."""
    return str(Path(__file__).resolve().parents[2])


def _run(job: dict, world: int, start: str) -> tuple[dict[int, dict], dict[int, bytes]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))  # a free port, on this machine only
    listener.listen(max(128, 4 * world))
    port = listener.getsockname()[1]
    try:
        store = dist.TCPStore(HOST, port, is_master=True, wait_for_workers=False, timeout=STORE_TIMEOUT,
                              master_listen_fd=listener.fileno())
    except BaseException:
        listener.close()
        raise
    listener.detach()  # the store owns the socket now and closes it when it goes
    store.set("job", json.dumps(job))
    store.set("world", str(world))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_kvcalc_path(), os.environ.get("PYTHONPATH"))
                                                     if p)}
    log = tempfile.TemporaryFile()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "kvcalc.verify.tp_rank", "launch", str(port), str(world), start],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        keys = [f"result/{r}" for r in range(world)]
        while not store.check(keys):
            if launcher.poll() is not None and not store.check(keys):
                raise KvcalcError(_failure(store, launcher.returncode, log))
            time.sleep(0.02)
        results = {r: json.loads(store.get(f"result/{r}")) for r in range(world)}
        outputs = {r: store.get(f"output/{r}") for r in range(world)
                   if job["keep_outputs"] and store.check([f"output/{r}"])}
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        return results, outputs
    finally:
        _end(launcher)
        log.close()
        del store


def _failure(store, code: int, log) -> str:
    """The first error a rank reported; else what the launcher's log ends with."""
    if store.check(["errors"]):
        return store.get("error/1").decode()
    log.seek(0)
    lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no output"
    return f"the rank processes ended (exit {code}) without a result: {last}"


def _end(launcher: subprocess.Popen) -> None:
    """End the run's processes: the launcher kills and reaps its ranks on SIGTERM; if it has not
    gone within seconds, SIGKILL the launcher's whole process group (launcher and ranks)."""
    if launcher.poll() is None:
        launcher.terminate()
        try:
            launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(launcher.pid, signal.SIGKILL)  # anything still in the group
    except (ProcessLookupError, PermissionError):
        pass
    if launcher.stdin is not None:
        launcher.stdin.close()
    launcher.wait()


def _combine(tpp: TPPlan, results: dict[int, dict], outputs: dict[int, bytes], backend: str, devices: list[str],
             dtype: str, seconds: float, notes: list[str]) -> TPResult:
    plan = tpp.plan
    ranks = []
    for r in tpp.ranks:
        got = results[r.rank]
        kinds = {k.name: k for k in r.kinds}
        ranks.append(RankResult(
            rank=r.rank, stage=r.stage, tp_rank=r.tp_rank, device=got["device"],
            layer_indices=tuple(r.layer_indices),
            q_heads={n: tuple(v) for n, v in got["q_heads"].items()},
            kv_heads={n: (tuple(v) if v is not None else None) for n, v in got["kv_heads"].items()},
            fit_kv_heads={n: k.kv_heads_per_gpu for n, k in kinds.items()},
            fit_total_kv={n: k.kv_heads for n, k in kinds.items()},
            bytes_per_token=r.bytes_per_token,
            analytic_bytes=r.analytic_bytes,
            expected_bytes=r.expected_bytes,
            expected_by_kind={n: k.expected_bytes for n, k in kinds.items()},
            measured_bytes=got["measured_bytes"],
            measured_by_kind=got["measured_by_kind"],
            index_bytes=got["index_bytes"],
            cache_peak_bytes=got["cache_peak_bytes"],
            allocator=got["allocator"],
            token_problems=tuple(got["token_problems"]),
            seconds=got["seconds"],
            pid=got["pid"],
            threads=got["threads"],
            dp_rank=r.dp_rank,
            dcp_rank=r.dcp_rank,
        ))
    groups = []
    for g in plan.analytic.groups:
        shares = [(r, k) for r in tpp.ranks for k in r.kinds if k.name == g.name]
        measured = sum(results[r.rank]["measured_by_kind"].get(g.name, 0) for r, _ in shares)
        groups.append(GroupCheck(
            name=g.name, kind=g.kind, attention=g.attention, layers=g.layers, window=g.window, tokens=g.tokens,
            analytic_bytes=sum(k.analytic_bytes for _, k in shares),
            expected_bytes=sum(k.expected_bytes for _, k in shares), measured_bytes=measured,
        ))
    replication = {k.name: k.replication for r in tpp.ranks for k in r.kinds}
    decoded = {}
    for rank, blob in outputs.items():
        decoded[rank] = torch.load(io.BytesIO(blob), weights_only=True)
    return TPResult(
        model=plan.spec.name, device=devices[0] if len(set(devices)) == 1 else ",".join(devices), backend=backend,
        tp=tpp.tp, pp=tpp.pp, engine=tpp.engine, cache=plan.cache, layers=len(plan.layer_indices),
        layer_indices=plan.layer_indices, stages=tpp.stages, context=plan.context, batch=plan.batch,
        kv_dtype=plan.kv_dtype, mla_layout=plan.analytic.mla_layout, compute_dtype=dtype,
        unsharded_bytes=plan.analytic.total_bytes, unsharded_expected_bytes=plan.expected_bytes,
        full_model_bytes=plan.full_model.total_bytes, full_model_layers=plan.spec.layers.count,
        first_kv_layer=first_kv_layer(plan.spec), groups=tuple(groups), ranks=tuple(ranks),
        kind_replication=replication, prefill=plan.prefill, decode_steps=plan.decode_steps,
        paged=plan.paged is not None, seconds=seconds, notes=tuple(notes), outputs=decoded,
        dp=tpp.dp, engine_tp=tpp.engine_tp, dcp=tpp.dcp,
    )


def _encoder_result(tpp: TPPlan, device: str) -> TPResult:
    plan = tpp.plan
    return TPResult(
        model=plan.spec.name, device=device, backend="-", tp=tpp.tp, pp=tpp.pp, engine=tpp.engine, cache=plan.cache,
        layers=0, layer_indices=(), stages=(), context=plan.context, batch=plan.batch, kv_dtype=plan.kv_dtype,
        mla_layout=None, compute_dtype="-", unsharded_bytes=0, unsharded_expected_bytes=0,
        full_model_bytes=plan.full_model.total_bytes, full_model_layers=plan.spec.layers.count,
        first_kv_layer=None, groups=(), ranks=(), kind_replication={}, prefill=0, decode_steps=0, paged=False,
        seconds=0.0, encoder=True,
        notes=("encoder-only: it attends over its whole input at once and keeps no KV cache",
               *config_notes(plan.spec)),
    )
