"""The processes of a tensor-parallel verify: a launcher, and one rank per GPU (or CPU share).

``python -m kvcalc.verify.tp_rank launch PORT WORLD fork|exec`` is started by ``tp.verify_tp`` in
a session of its own. It imports torch once, then starts WORLD ranks: forked from itself on Linux
(no second torch import), or each a fresh ``python -m kvcalc.verify.tp_rank rank PORT RANK``
elsewhere. It watches them and its stdin: when a rank fails it kills the others, when the
parent goes away (stdin closes) it kills them all. Ranks also die with the launcher
(PR_SET_PDEATHSIG on Linux).

A rank reads the job from the parent's TCPStore on 127.0.0.1, joins a process group of the
tensor-parallel ranks of its stage and one of the pipeline ranks with its tensor-parallel rank
(gloo bound to 127.0.0.1 on CPU, NCCL with one GPU per rank on CUDA), builds its shard of its
stage's layers, runs the same prefill and decode steps as single-device verify (the output
projection's parts all-reduced, activations sent stage to stage), measures the cache storages
it wrote into, and puts a JSON result (or one error line) back in the store.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback

import torch
import torch.distributed as dist

from kvcalc.errors import KvcalcError
from kvcalc.spec import ChunkedLayer, ModelSpec, NoKVLayer, SlidingLayer
from kvcalc.verify.caches import Codec, PeakTracker, StaticCache
from kvcalc.verify.device import free_memory, out_of_memory_as_error
from kvcalc.verify.layers import rms_norm
from kvcalc.verify.measure import CudaCounters, cuda_block_bytes, rounded_bytes, storage_bytes, storage_count
from kvcalc.verify.plan import hidden_size
from kvcalc.verify.runner import make_cache, run_steps, token_problems
from kvcalc.verify.tp_dcp import DCPGroup, dcp_token_problems, interleaved_cache, with_dcp
from kvcalc.verify.tp_layers import WeightSlices, build_shard
from kvcalc.verify.tp_plan import make_tp_plan, rank_needs, too_big

HOST = "127.0.0.1"
TIMEOUT = datetime.timedelta(seconds=600)  # a collective that waits longer than this is a hang
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies, so nothing outlives the run."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _group(store, prefix: str, rank: int, size: int, backend: str):
    """A process group over ``store``: gloo on a device bound to 127.0.0.1, or NCCL."""
    store = dist.PrefixStore(prefix, store)
    if backend == "nccl":
        return dist.ProcessGroupNCCL(store, rank, size)
    options = dist.ProcessGroupGloo._Options()
    options._devices = [dist.ProcessGroupGloo.create_device(hostname=HOST)]
    options._timeout = TIMEOUT
    return dist.ProcessGroupGloo(store, rank, size, options)


class Comm:
    """Megatron's groups: the tensor-parallel ranks of a stage, and the pipeline ranks that share
    a tensor-parallel rank (stage s sends to stage s + 1)."""

    def __init__(self, store, tp: int, pp: int, rank: int, backend: str, dcp: int = 1):
        self.dp_rank, within = divmod(rank, tp * pp)  # each data-parallel rank: groups of its own
        self.stage, self.tp_rank = divmod(within, tp)
        self.tp, self.pp = tp, pp
        d = f"dp{self.dp_rank}/" if self.dp_rank else ""
        self.tp_group = _group(store, f"{d}tp{self.stage}", self.tp_rank, tp, backend)
        self.pp_group = _group(store, f"{d}pp{self.tp_rank}", self.stage, pp, backend) if pp > 1 else None
        self.dcp = None  # vLLM's DCP groups: dcp consecutive ranks of the TP group
        if dcp > 1:
            g, r = divmod(self.tp_rank, dcp)
            self.dcp = DCPGroup(_group(store, f"{d}dcp{self.stage}/{g}", r, dcp, backend), dcp, r)

    def all_reduce(self, t: torch.Tensor) -> None:
        """Sum ``t`` over the tensor-parallel group, in place."""
        self.tp_group.allreduce([t]).wait()

    def send_next(self, t: torch.Tensor) -> None:
        self.pp_group.send([t], self.stage + 1, 0).wait()

    def recv_prev(self, t: torch.Tensor) -> None:
        self.pp_group.recv([t], self.stage - 1, 0).wait()


def _held(layer) -> tuple[int, int] | None:
    """The global KV heads a dense shard holds, as [start, stop); None for MLA (its latent)."""
    kv = getattr(layer, "kv_range", None)
    return None if kv is None else (kv.start, kv.stop)


def _guard_all(store, tpp, rank: int, device: torch.device, compute_bytes: int) -> None:
    """CUDA: every rank checks its own GPU, and none allocates until all have passed."""
    needs = rank_needs(tpp, rank, compute_bytes)
    free = free_memory(device)
    message = "" if needs.total <= free else f"rank {rank} on {device}: " + too_big(needs, 1, f"on {device}", free)
    store.set(f"guard/{rank}", message)
    keys = [f"guard/{r}" for r in range(tpp.world)]
    store.wait(keys)
    for key in keys:
        found = store.get(key).decode()
        if found:
            raise KvcalcError(found)


def run_rank(job: dict, rank: int, store) -> tuple[dict, bytes | None]:
    """Build this rank's shard, run the steps, measure its caches. Returns (result, outputs)."""
    spec = ModelSpec.model_validate(job["spec"])
    tpp = make_tp_plan(spec, tp=job["tp"], pp=job["pp"], engine=job["engine"], context=job["context"],
                       batch=job["batch"], layers=job["layers"], cache=job["cache"], kv_dtype=job["kv_dtype"],
                       mla_layout=job["mla_layout"], dp=job.get("dp", 1), dcp=job.get("dcp", 1))
    device = torch.device(job["devices"][rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtype = getattr(torch, job["compute_dtype"])
    torch.set_num_threads(job["threads"])
    dp_rank, within = divmod(rank, tpp.tp * tpp.pp)
    stage, tp_rank = divmod(within, tpp.tp)
    plan = tpp.stage_plan(stage)
    fault = job.get("fault") or {}
    mine = fault.get("rank") == rank
    if mine and fault.get("kind") == "sleep":
        time.sleep(fault.get("seconds", 120))
    if device.type == "cuda":
        _guard_all(store, tpp, rank, device, dtype.itemsize)
    comm = Comm(store, tpp.tp, tpp.pp, rank, job["backend"], tpp.dcp)
    needs = rank_needs(tpp, rank, dtype.itemsize)
    started = time.perf_counter()
    with out_of_memory_as_error(needs, device), torch.inference_mode():
        built = []
        for index, name in zip(plan.layer_indices, plan.layer_names):
            kind = spec.layers.kinds[name]
            if isinstance(kind, NoKVLayer):
                built.append((name, None))
                continue
            weights = WeightSlices(job["seed"], f"layer{index}", dtype, device)
            shard = build_shard(
                spec.attention_of(name), hidden_size(spec), tpp.tp, tp_rank, weights, layout=plan.mla_layout,
                window=kind.window if isinstance(kind, SlidingLayer) else None,
                chunk=kind.chunk if isinstance(kind, ChunkedLayer) else None)
            built.append((name, with_dcp(shard, comm.dcp) if comm.dcp else shard))
        if mine and fault.get("kind") == "raise":
            raise RuntimeError("injected fault")
        codec = Codec(plan.kv_dtype, dtype)
        if job.get("exact"):
            codec.storage = dtype  # the tests' float64 comparison: keep the cache in the compute dtype
        hidden = hidden_size(spec)
        inputs = None
        if stage == 0:  # the same token embeddings on every first-stage rank of a DP rank: its own requests
            generator = torch.Generator().manual_seed(input_seed(job["seed"], dp_rank))
            inputs = torch.randn(plan.batch, plan.context, hidden, generator=generator,
                                 dtype=torch.float64).to(device, dtype)
        counters = CudaCounters(device) if device.type == "cuda" else None
        if counters is not None:
            _warm_up(built, codec, device, comm)
            counters.start()
        tracker = PeakTracker()
        generator = torch.Generator().manual_seed(job["seed"] + 1 + rank)
        if comm.dcp:  # this rank's interleaved share of each request: tokens t % dcp == its DCP rank
            caches = [(name, interleaved_cache(plan.cache, codec, plan.batch, layer.cache_feats(), device,
                                               plan.context, tpp.dcp, comm.dcp.rank, generator) if layer else None)
                      for name, layer in built]
        else:
            caches = [(name, make_cache(plan, name, layer, codec, device, tracker, generator) if layer else None)
                      for name, layer in built]
        if mine and fault.get("kind") == "extra-slot":  # the tests' wrong cache: one slot too many
            name, first = caches[0]
            caches[0] = (name, StaticCache(codec, plan.batch, first.feats, device, capacity=first.capacity + 1))
        outputs = []
        for start, end in run_steps(plan):
            pos = torch.arange(start, end, device=device)
            if stage == 0:
                x = inputs[:, start:end]  # (B, T, C)
            else:
                x = torch.empty(plan.batch, end - start, hidden, dtype=dtype, device=device)
                comm.recv_prev(x)
            for (_, layer), (_, cache) in zip(built, caches):
                if layer is None:
                    continue  # no-KV layers keep no KV cache
                part = layer(rms_norm(x), pos, cache)  # (B, T, C): this rank's heads' share of the output
                comm.all_reduce(part)  # row-parallel output projection: the shares sum to the output
                x = x + part
                del part
            if stage + 1 < tpp.pp:
                comm.send_next(x.contiguous())
            elif job.get("keep_outputs"):
                outputs.append(x.clone())
            del x, pos
        inputs = None
        if counters is not None:
            _free_deferred(device)
            counters.stop()

        live = [c for _, c in caches if c is not None]
        data = [t for c in live for t in c.data_tensors()]
        scales = [t for c in live for t in c.scale_tensors()]
        index = [t for c in live for t in c.index_tensors()]
        allocator = None
        if counters is not None:
            everything = data + scales + index
            rounded = rounded_bytes(everything)
            blocks = cuda_block_bytes(everything, device)
            allocator = {
                "delta": counters.delta, "peak": counters.peak, "tensors": storage_count(everything),
                "rounding": rounded - storage_bytes(everything),
                "whole_blocks": None if blocks is None else blocks - rounded,
                "other": counters.delta - (rounded if blocks is None else blocks),
            }
        by_kind = {}
        for name, cache in caches:
            if cache is not None:
                by_kind[name] = by_kind.get(name, 0) + storage_bytes(cache.data_tensors())
        kv_heads = {name: _held(layer) for name, layer in built if layer is not None}
        q_heads = {name: (layer.q_heads.start, layer.q_heads.stop) for name, layer in built if layer is not None}
        result = {
            "rank": rank, "stage": stage, "tp_rank": tp_rank, "dp_rank": dp_rank, "device": str(device),
            "pid": os.getpid(),
            "threads": torch.get_num_threads(), "layer_indices": list(plan.layer_indices),
            "q_heads": q_heads, "kv_heads": kv_heads,
            "measured_bytes": storage_bytes(data), "measured_by_kind": by_kind,
            "scale_bytes": storage_bytes(scales), "index_bytes": storage_bytes(index),
            "cache_peak_bytes": tracker.peak if plan.cache == "dynamic" else None,
            "allocator": allocator,
            "token_problems": list(dcp_token_problems(plan.layer_indices, caches, plan.context, tpp.dcp, comm.dcp.rank)
                                   if comm.dcp else token_problems(plan, caches)),
            "dcp_rank": comm.dcp.rank if comm.dcp else 0,
            "seconds": time.perf_counter() - started,
        }
        packed = None
        if outputs:
            buffer = io.BytesIO()
            torch.save(torch.cat(outputs, dim=1).cpu(), buffer)
            packed = buffer.getvalue()
        return result, packed


def input_seed(seed: int, dp_rank: int) -> int:
    """The seed of a data-parallel rank's inputs: its own requests (rank 0: the run's seed)."""
    return seed + 1_000_003 * dp_rank


def _warm_up(built, codec: Codec, device, comm: Comm) -> None:
    """A tiny step per layer and one of each collective before the allocator's baseline, so
    cuBLAS workspaces and NCCL's first-use buffers are not counted as cache."""
    x = None
    for _, layer in built:
        if layer is None:
            continue
        cache = StaticCache(codec, 1, layer.cache_feats(), device, capacity=3)
        x = torch.zeros(1, 2, layer.wo.shape[1], dtype=layer.wo.dtype, device=device)
        layer(x, torch.arange(2, device=device), cache)
        layer(x[:, :1], torch.arange(2, 3, device=device), cache)
    probe = torch.zeros(8, device=device)
    comm.all_reduce(probe)
    if comm.pp > 1:
        if comm.stage > 0:
            comm.recv_prev(probe)
        if comm.stage + 1 < comm.pp:
            comm.send_next(probe)
    del x, probe
    torch.cuda.synchronize(device)


def _free_deferred(device) -> None:
    """Frees the allocator defers until a stream's work is done are processed on the next
    allocation: make one, so memory_allocated() holds only what is alive."""
    torch.cuda.synchronize(device)
    del_me = torch.empty(1, device=device)
    del del_me
    torch.cuda.synchronize(device)


def rank_main(port: int, rank: int) -> int:
    """One rank: run, put the result (or the first error line) in the store, wait for the others."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends the run on Ctrl-C
    store = dist.TCPStore(HOST, port, is_master=False, timeout=TIMEOUT)
    try:
        job = json.loads(store.get("job"))
        result, outputs = run_rank(job, rank, store)
        if outputs is not None:
            store.set(f"output/{rank}", outputs)
        store.set(f"result/{rank}", json.dumps(result))
    except BaseException as exc:  # noqa: BLE001  (every failure goes back as one line)
        if isinstance(exc, KvcalcError):
            message = str(exc)
        else:
            message = f"rank {rank}: {type(exc).__name__}: {exc}"
            traceback.print_exc()  # into the launcher's log, for a bug report
        order = store.add("errors", 1)
        store.set(f"error/{order}", message)
        return 1
    # keep the process groups up until every rank is done: a peer may still be receiving
    store.wait([f"result/{r}" for r in range(int(store.get("world")))])
    return 0


def _end(children: dict) -> None:
    """Kill the ranks still running and reap them, so none is left even as a zombie."""
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid, process in children.items():
        if process is not None:
            process.wait()
        else:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    children.clear()


def launch(port: int, world: int, start: str) -> int:
    """Start the ranks, watch them and the lifeline; exit 0 when all succeed, 1 otherwise."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, subprocess.Popen | None] = {}
    for rank in range(world):
        if start == "fork":
            pid = os.fork()
            if pid == 0:  # the rank: torch is already imported
                code = 1
                try:
                    _die_with_parent()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    code = rank_main(port, rank)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children[pid] = None
        else:
            process = subprocess.Popen([sys.executable, "-m", "kvcalc.verify.tp_rank", "rank", str(port), str(rank)],
                                       stdin=subprocess.DEVNULL)
            children[process.pid] = process
    signal.signal(signal.SIGTERM, lambda *_: (_end(children), os._exit(1)))  # the parent ends the run
    lifeline = sys.stdin.fileno()
    while children:
        ready, _, _ = select.select([lifeline], [], [], 0.05)
        if ready and not os.read(lifeline, 1):  # the parent is gone: end everything
            _end(children)
            return 1
        for pid, process in list(children.items()):
            if process is not None:
                code = process.poll()
            else:
                done, status = os.waitpid(pid, os.WNOHANG)
                code = None if done == 0 else os.waitstatus_to_exitcode(status)
            if code is None:
                continue
            del children[pid]
            if code != 0:  # one rank failed: the others would wait for it forever
                _end(children)
                return 1
    return 0


def main(argv: list[str]) -> int:
    role, port = argv[0], int(argv[1])
    if role == "launch":
        return launch(port, int(argv[2]), argv[3])
    _die_with_parent()
    return rank_main(port, int(argv[2]))


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
