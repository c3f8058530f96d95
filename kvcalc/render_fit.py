"""`kvcalc fit` and `kvcalc gpus` for the terminal: memory per GPU with a bar, then answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from kvcalc.render import RULE, Grid, bar
from kvcalc.units import format_bytes, format_tokens

if TYPE_CHECKING:  # `kvcalc gpus` draws its table without the fit machinery
    from kvcalc.capacity.fit import FitResult

ENGINE_LABEL = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}


def _shape(tp: int, pp: int, replicas: int = 1, dp: int = 1, ep: int = 1, dcp: int = 1) -> str:
    text = f"TP {tp}" + (f" x PP {pp}" if pp > 1 else "")
    text += "".join(f", {k} {v}" for k, v in (("DP", dp), ("EP", ep), ("DCP", dcp)) if v > 1)
    return text + (f" x {replicas} replicas" if replicas > 1 else "")


def _title(r: FitResult, gpu_name: str | None) -> str:
    if r.gpu_memory_bytes is None:
        where = f"{r.gpus} GPU{'s' if r.gpus > 1 else ''} (no GPU given)"
    else:
        where = f"{r.gpus} x {gpu_name or 'GPU'} ({format_bytes(r.gpu_memory_bytes)})"
    return (f"{r.model} on {where} · {_shape(r.tp, r.pp, r.replicas, r.dp, r.ep, r.dcp)} · {ENGINE_LABEL[r.engine]} "
            f"{r.engine_version} rules")


def fit_table(r: FitResult, gpu_name: str | None) -> Grid:
    memory = r.gpu_memory_bytes
    scale = memory or r.required_bytes_per_gpu
    rows = []

    def row(label, n, style="cyan", what=""):
        rows.append([label, format_bytes(n), f"{n:,}", Text(bar(max(n, 0), scale, 16), style=style), what])

    split = r.weights_bytes_per_gpu * r.tp * r.pp != r.weights_bytes and r.weights_source.startswith("parameter")
    weights_what = r.weights_source + ("" if r.tp * r.pp == 1 else
                                       f", as loaded on the fullest of {r.tp * r.pp} GPUs" if split else
                                       f" / {r.tp * r.pp} GPUs")
    row("weights", r.weights_bytes_per_gpu, "magenta", weights_what)
    reserve_what = ("estimate: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in r.reserve_parts.items())
                    if r.reserve_estimated else "--reserve")
    row("reserve", r.reserve_bytes_per_gpu, "yellow", reserve_what)
    if memory is None:
        row("KV needed", r.required_kv_bytes_per_gpu, "green",
            f"{r.concurrency:,} requests of {r.context:,} tokens, paged as {ENGINE_LABEL[r.engine]} pages them")
        rows.append(RULE)
        total = r.required_bytes_per_gpu
        rows.append([Text("needed", style="bold"), format_bytes(total), f"{total:,}", "", "per GPU"])
    else:
        usable = r.weights_bytes_per_gpu + r.reserve_bytes_per_gpu + max(r.kv_budget_bytes_per_gpu, 0)
        if r.kv_budget_bytes_per_gpu > 0:
            row("KV budget", r.kv_budget_bytes_per_gpu, "green",
                f"{r.kv_blocks_per_gpu:,} state pages" if _state_only(r) else
                f"{r.kv_blocks_per_gpu:,} pages of {r.block_size} tokens")
            row("not used", memory - usable, "dim", f"outside --gpu-util {r.gpu_util:g}")
        else:
            row("KV budget", 0, "green", "nothing left for KV")
            row("short by", -r.kv_budget_bytes_per_gpu, "red", f"over {r.gpu_util:g} of the GPU's memory")
        rows.append(RULE)
        rows.append([Text("GPU memory", style="bold"), format_bytes(memory), f"{memory:,}", "",
                     "as the driver reports it"])
    headers = ["per GPU", "size", "bytes", "", "from"]
    return Grid(_title(r, gpu_name), headers, rows, right={"size", "bytes"}, optional=("from", "", "bytes"),
                shrink="from", whole_below=True)


def _min_shape(s: dict) -> str:
    """'8 (TP 2, DP 2 x 2 replicas, 2 nodes; DP, EP and DCP kept as asked)'."""
    layout = _shape(s["tp"], s["pp"], s.get("replicas", 1), s.get("dp", 1), s.get("ep", 1), s.get("dcp", 1))
    nodes = s.get("nodes")
    on = f", {nodes} node{'s' if nodes > 1 else ''}" if nodes else ""
    kept = "; DP, EP and DCP kept as asked" if any(k in s for k in ("dp", "ep", "dcp")) else ""
    return f"{s['gpus']} ({layout}{on}{kept})"


def fit_answers(r: FitResult) -> list[str]:
    lines = []
    if r.parameters is not None:
        active = f", {r.active_parameters:,} active per token" if r.active_parameters != r.parameters else ""
        lines.append(f"Parameters: {r.parameters:,}{active}; weights {format_bytes(r.weights_bytes)} "
                     f"({r.weights_bytes:,} B) as {r.weights_dtype}")
    else:
        lines.append(f"Weights: {format_bytes(r.weights_bytes)} ({r.weights_bytes:,} B), {r.weights_source}")
    heads = (f"{r.kv_heads_per_gpu} KV head{'s' if r.kv_heads_per_gpu > 1 else ''} on each GPU"
             if r.kv_heads_per_gpu is not None else
             "no attention: no KV cache" if _state_only(r) else "the whole MLA latent on every GPU")
    replication = f", each stored {r.kv_replication:g}x across the group" if r.kv_replication > 1 else ""
    lines.append(f"KV per token per GPU: {r.kv_bytes_per_token_per_gpu:,} B in {r.kv_dtype} ({heads}{replication})")
    if r.state_bytes_per_request_per_gpu:
        lines.append(f"Constant state per request per GPU: {r.state_bytes_per_request_per_gpu:,} B (no-KV layers)")
    if r.kv_groups:
        parts = " + ".join(f"{g['groups']} {g['name']} x {g['pages_per_request'] // g['groups']:,}"
                           for g in r.kv_groups)
        lines.append(f"Layer kinds are grouped as vLLM groups them: a {r.context:,}-token request takes "
                     f"{sum(g['pages_per_request'] for g in r.kv_groups):,} pages of {r.block_size} tokens ({parts}).")
    if r.gpu_memory_bytes is not None:
        lines.extend(_forward(r))
    if r.concurrency is not None:
        lines.extend(_backwards(r))
    return lines


def _state_only(r: FitResult) -> bool:
    """A model without attention (a state-space model): constant states, no KV cache."""
    return r.kv_bytes_per_token_per_gpu == 0 and r.kv_heads_per_gpu is None and r.state_bytes_per_request_per_gpu > 0


def _forward(r: FitResult) -> list[str]:
    lines = []
    if r.kv_budget_bytes_per_gpu <= 0:
        lines.append("Nothing fits: weights and reserve take all the memory the engine may use.")
    else:
        if _state_only(r):
            lines.append(f"The pool holds {r.kv_blocks_per_gpu:,} state pages per GPU (no KV cache).")
        elif not r.kv_groups:
            lines.append(f"The pool holds {r.kv_tokens:,} tokens per GPU ({r.kv_blocks_per_gpu:,} pages of "
                         f"{r.block_size}).")
        else:
            lines.append(f"The shared pool has {r.kv_blocks_per_gpu:,} pages per GPU.")
        per = f"{r.max_concurrency:,}"  # whole requests
        if r.dp > 1:
            per += f" per DP rank (each its own pool), {r.total_concurrency:,} on all {r.gpus} GPUs"
        elif r.replicas > 1:
            per += f" per replica, {r.total_concurrency:,} on all {r.gpus} GPUs"
        lines.append(f"Requests of {format_tokens(r.context)} tokens ({r.context:,}) at once: {per}.")
        if r.max_context:
            limit = " (the model's max context)" if r.max_context == r.model_max_context else ""
            lines.append(f"Longest single request: {r.max_context:,} tokens{limit}.")
        else:
            lines.append("Not even a one-token request fits.")
    if r.engine_log_kv_tokens is not None and r.kv_budget_bytes_per_gpu > 0:
        lines.append(f"vLLM will log (with --max-model-len {r.context}): \"GPU KV cache size: "
                     f"{r.engine_log_kv_tokens:,} tokens\", \"Maximum concurrency for {r.context:,} tokens per "
                     f"request: {r.engine_log_max_concurrency:.2f}x\"")
        if r.engine_log_kv_tokens != r.kv_tokens:
            lines.append(f"  (its token figure is concurrency x {r.context:,}, not the {r.kv_tokens:,} token slots "
                         "the pool has: windows, groups or partial pages make them differ)")
    if r.max_total_num_tokens is not None and r.kv_budget_bytes_per_gpu > 0:
        lines.append(f"SGLang will log (with --context-length {r.context}): \"max_total_num_tokens="
                     f"{r.max_total_num_tokens}, ... max_running_requests={r.max_running_requests}\"")
        lines.append("  (max_running_requests is a cap on request slots, clamp(T / context x 512, 2048, 4096), "
                     f"not requests of {r.context:,} tokens that fit: those are {r.max_concurrency:,})")
    lines += _layout_lines(r)
    if r.concurrency is None:
        if r.min_gpus_shape:
            verdict = "fits" if r.fits else "does not fit"
            lines.append(f"One {r.context:,}-token request {verdict} here; the fewest GPUs of this kind that hold "
                         f"one: {_min_shape(r.min_gpus_shape)}.")
        elif not r.fits:
            lines.append(f"One {r.context:,}-token request does not fit on up to 512 GPUs of this kind.")
    return lines


def _layout_lines(r: FitResult) -> list[str]:
    """The DP-attention + EP layouts of an MoE model beside this shape, one line each."""
    if len(r.layouts) < 2:
        return []
    lines = [f"Layouts on {r.layouts[1]['gpus']} GPUs (requests of {r.context:,} tokens in all; weights and KV per "
             "token per GPU):"]
    for x in r.layouts:
        mark = " <- the engine's DP + EP layout" if x["engine_pick"] else ""
        mark += " (holds the most)" if x["most_requests"] and len(r.layouts) > 1 else ""
        shape = _shape(x["tp"], x["pp"], 1, x["dp"], x["ep"], x["dcp"])
        lines.append(f"  {shape}: {x['total_requests'] or 0:,} ({x['requests_per_rank'] or 0:,} per rank of "
                     f"{x['kv_pool_per_rank'] or 0:,} tokens), weights {format_bytes(x['weights_bytes_per_gpu'])}, "
                     f"{x['kv_bytes_per_token_per_gpu']:,} B per token{mark}")
    return lines


def _backwards(r: FitResult) -> list[str]:
    n = r.concurrency
    lines = [f"{n:,} requests of {r.context:,} tokens need {format_bytes(r.required_kv_bytes_per_gpu)} "
             f"({r.required_kv_bytes_per_gpu:,} B) of KV per GPU; with weights and reserve "
             f"{format_bytes(r.required_bytes_per_gpu)} ({r.required_bytes_per_gpu:,} B) per GPU."]
    if r.gpu_memory_bytes is None:
        return lines
    name = "--gpu-util"
    if r.required_gpu_util is not None:
        lines.append(f"Smallest {name} that holds them: {r.required_gpu_util:.2f}"
                     + (f" (--gpu-util {r.gpu_util:g} holds them)" if r.fits else "") + ".")
    else:
        lines.append(f"No {name} holds them on {_shape(r.tp, r.pp)}.")
    if r.min_gpus_shape:
        lines.append(f"The fewest GPUs of this kind that hold {n:,} at --gpu-util {r.gpu_util:g}: "
                     f"{_min_shape(r.min_gpus_shape)}.")
    else:
        lines.append(f"No shape of up to 512 GPUs per replica holds one {r.context:,}-token request.")
    if r.min_gpus_layout:
        m = r.min_gpus_layout
        lines.append(f"In the DP-attention + EP layout: {m['gpus']} GPUs ({m['instances']} x {m['layout']}, "
                     f"holding {m['requests_per_instance']:,} requests" + (" each" if m["instances"] > 1 else "")
                     + f", weights {format_bytes(m['weights_bytes_per_gpu'])} per GPU).")
    return lines


def fit_rows_table(results: list[FitResult], gpu_name: str | None) -> Grid:
    """One row per context: what a request takes, how many fit, and (backwards) what N need."""
    r0 = results[0]
    backwards = r0.concurrency is not None
    known = r0.gpu_memory_bytes is not None
    headers = ["context", "KV/request"]
    if known:
        headers += ["requests", "longest"]
    if backwards:
        headers += [f"KV for {r0.concurrency:,}", "needed/GPU"] + (["gpu-util", "fewest GPUs"] if known else [])
    rows = []
    for r in results:
        cells = [format_tokens(r.context), format_bytes(r.kv_bytes_per_request_per_gpu)]
        if known:
            cells += [f"{r.max_concurrency:,}", f"{r.max_context:,}"]
        if backwards:
            cells += [format_bytes(r.required_kv_bytes_per_gpu), format_bytes(r.required_bytes_per_gpu)]
            if known:
                util = f"{r.required_gpu_util:.2f}" if r.required_gpu_util is not None else "> 1"
                cells += [util, _min_shape(r.min_gpus_shape) if r.min_gpus_shape else "none"]
        rows.append(cells)
    weights = f"weights {format_bytes(r0.weights_bytes_per_gpu)} + reserve {format_bytes(r0.reserve_bytes_per_gpu)}"
    return Grid(_title(r0, gpu_name), headers, rows, right=set(headers) - {"fewest GPUs"},
                caption=f"per GPU: {weights}; KV/request as the engine pages it", optional=("longest",))


def gpus_table(gpus) -> Grid:
    rows = []
    for gpu in gpus:
        bandwidth = f"{gpu.bandwidth_bytes_per_s / 1e12:.2f} TB/s" if gpu.bandwidth_bytes_per_s else "-"
        rows.append([gpu.key, gpu.name, format_bytes(gpu.memory_bytes), f"{gpu.memory_bytes:,}", bandwidth,
                     ", ".join(gpu.aliases)])
    headers = ["name", "model", "memory", "bytes", "bandwidth", "also"]
    return Grid("GPU catalog (memory as the driver reports it)", headers, rows,
                right={"memory", "bytes", "bandwidth"}, optional=("also", "model", "bytes"), shrink="also")


def speed_lines(r: FitResult, speeds: dict) -> list[str]:
    """The decode ceiling in words: what a step reads, which part dominates, where they cross."""
    if r.kv_budget_bytes_per_gpu is not None and r.kv_budget_bytes_per_gpu <= 0:
        return ["Decode ceiling: not shown, since nothing fits on this shape (see the fewest GPUs above)."]
    lines = []
    for key, d in speeds.items():
        if key == "batch" and r.max_concurrency is not None and d.batch > r.max_concurrency:
            lines.append(f"(Batch {d.batch:,} does not fit this shape: {r.max_concurrency:,} requests "
                         f"of {r.context:,} tokens do. The ceiling below is what it would be if it did.)")
        unit = " per DP rank" if r.dp > 1 else " per replica" if r.replicas > 1 else ""
        label = ("one request" if d.batch == 1 else f"batch {d.batch}") if key == "batch" else \
            f"all {d.batch:,} requests that fit{unit}"
        if r.concurrency is not None and key == "full":
            label = f"{d.batch:,} of the {r.concurrency:,} requests asked for{unit}" if unit else \
                f"the {d.batch:,} requests asked for"
        lines.append(
            f"Decode ceiling at {label}, {d.context:,} tokens each: a step reads "
            f"{format_bytes(d.bytes_read_per_step)} per GPU (weights {format_bytes(d.weights_bytes_read_per_step)}, "
            f"KV {format_bytes(d.kv_bytes_read_per_step)}: {'KV' if d.dominant == 'kv' else 'weights'} "
            f"dominate{'s' if d.dominant == 'kv' else ''}, KV {d.kv_share:.0%}); at most "
            f"{_rate(d.tokens_per_s_per_sequence)} tokens/s per sequence, {_rate(d.tokens_per_s)} in all"
            + (" per replica" if r.replicas > 1 else "") + ".")
        if d.crossover_context is not None:
            lines.append(f"  At batch {d.batch}, KV reads overtake the weights' from {d.crossover_context:,} "
                         "tokens per sequence; below that a smaller cache barely changes the speed.")
        else:
            lines.append(f"  At batch {d.batch}, KV reads never reach the weights' within {d.context:,} tokens or the "
                         "model's max context (or its windows cap them).")
    notes = dict.fromkeys(n for d in speeds.values() for n in d.notes)
    lines.extend(f"  ({n})" for n in notes)
    return lines


def variant_speed_caption(speeds) -> str:
    """Whether a smaller cache buys speed here: only as far as KV reads are a share of the step."""
    mha, best = speeds[0], max(speeds, key=lambda d: d.tokens_per_s)
    d = speeds[0]
    text = (f"decode ceiling at batch {d.batch}, {d.context:,} tokens, TP {d.tp}: bytes read per step over "
            f"{d.bandwidth_bytes_per_s / 1e12:.2f} TB/s. MHA's KV is {mha.kv_share:.0%} of what a step reads, "
            f"so the fastest variant is {best.tokens_per_s / mha.tokens_per_s:.3g}x MHA here")
    if mha.kv_share < 0.5:
        text += (": weights dominate, and a smaller cache buys little until the context or the batch grows"
                 + (f" (KV overtakes the weights at {mha.crossover_context:,} tokens for MHA)"
                    if mha.crossover_context else ""))
    return text + "."


def _rate(value: float) -> str:
    """Tokens per second: whole above 100, three significant figures below (0.0012, 12.3)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
