"""`kvcalc fit` and `kvcalc gpus` for the terminal: memory per GPU with a bar, then answers."""

from __future__ import annotations

from rich.text import Text

from kvcalc.capacity.fit import FitResult
from kvcalc.render import RULE, Grid, bar
from kvcalc.units import format_bytes, format_tokens

ENGINE_LABEL = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}


def _gpu_label(r: FitResult, gpu_name: str | None) -> str:
    what = gpu_name or "GPU"
    return f"{r.gpus} x {what} ({format_bytes(r.gpu_memory_bytes)})"


def fit_table(r: FitResult, gpu_name: str | None) -> Grid:
    shape = f"TP {r.tp}" + (f" x PP {r.pp}" if r.pp > 1 else "")
    shape += f" x {r.replicas} replicas" if r.replicas > 1 else ""
    title = f"{r.model} on {_gpu_label(r, gpu_name)} · {shape} · {ENGINE_LABEL[r.engine]} rules"
    memory = r.gpu_memory_bytes
    usable = r.weights_bytes_per_gpu + r.reserve_bytes_per_gpu + max(r.kv_budget_bytes_per_gpu, 0)
    rows = []

    def row(label, n, style="cyan", what=""):
        rows.append([label, format_bytes(n) if n >= 0 else "-" + format_bytes(-n), f"{n:,}",
                     Text(bar(max(n, 0), memory, 16), style=style), what])

    weights_what = r.weights_source + (f" / {r.tp * r.pp} GPUs" if r.tp * r.pp > 1 else "")
    row("weights", r.weights_bytes_per_gpu, "magenta", weights_what)
    reserve_what = ("estimate: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in r.reserve_parts.items())
                    if r.reserve_estimated else "--reserve")
    row("reserve", r.reserve_bytes_per_gpu, "yellow", reserve_what)
    if r.kv_budget_bytes_per_gpu > 0:
        row("KV budget", r.kv_budget_bytes_per_gpu, "green", f"{r.kv_blocks_per_gpu:,} pages of {r.block_size} tokens")
        row("not used", memory - usable, "dim", f"outside --gpu-util {r.gpu_util:g}")
    else:
        row("KV budget", 0, "green", "nothing left for KV")
        row("short by", -r.kv_budget_bytes_per_gpu, "red", f"over {r.gpu_util:g} of the GPU's memory")
    rows.append(RULE)
    rows.append([Text("GPU memory", style="bold"), format_bytes(memory), f"{memory:,}", "", "as the driver reports it"])
    headers = ["per GPU", "size", "bytes", "", "from"]
    return Grid(title, headers, rows, right={"size", "bytes"}, optional=("bytes", ""), shrink="from")


def fit_answers(r: FitResult) -> list[str]:
    lines = []
    if r.parameters is not None:
        active = f", {r.active_parameters:,} active per token" if r.active_parameters != r.parameters else ""
        lines.append(f"Parameters: {r.parameters:,}{active}; weights {format_bytes(r.weights_bytes)} "
                     f"({r.weights_bytes:,} B) as {r.weights_dtype}")
    else:
        lines.append(f"Weights: {format_bytes(r.weights_bytes)} ({r.weights_bytes:,} B), {r.weights_source}")
    heads = (f"{r.kv_heads_per_gpu} KV head{'s' if r.kv_heads_per_gpu > 1 else ''} on each GPU"
             if r.kv_heads_per_gpu is not None else "the whole MLA latent on every GPU")
    replication = f", each stored {r.kv_replication:g}x across the group" if r.kv_replication > 1 else ""
    lines.append(f"KV per token per GPU: {r.kv_bytes_per_token_per_gpu:,} B in {r.kv_dtype} ({heads}{replication})")
    if r.state_bytes_per_request_per_gpu:
        lines.append(f"Constant state per request per GPU: {r.state_bytes_per_request_per_gpu:,} B (no-KV layers)")
    if r.kv_budget_bytes_per_gpu <= 0:
        lines.append("Nothing fits: weights and reserve take all the memory the engine may use.")
    else:
        if r.kv_groups:
            parts = " + ".join(f"{g['groups']} {g['name']} x {g['pages_per_request'] // g['groups']:,}"
                               for g in r.kv_groups)
            lines.append(f"The shared pool has {r.kv_blocks_per_gpu:,} pages of {r.block_size} tokens per GPU; "
                         f"layer kinds are grouped (vLLM), and a {r.context:,}-token request takes "
                         f"{sum(g['pages_per_request'] for g in r.kv_groups):,} pages ({parts}).")
        else:
            lines.append(f"The pool holds {r.kv_tokens:,} tokens per GPU ({r.kv_blocks_per_gpu:,} pages of "
                         f"{r.block_size}).")
        per = f"{r.max_concurrency:,}"
        if r.replicas > 1:
            per += f" per replica, {r.total_concurrency:,} on all {r.gpus} GPUs"
        lines.append(f"Requests of {format_tokens(r.context)} tokens ({r.context:,}) at once: {per}.")
        if r.max_context:
            limit = " (the model's max context)" if r.max_context == r.model_max_context else ""
            lines.append(f"Longest single request: {r.max_context:,} tokens{limit}.")
        else:
            lines.append("Not even a one-token request fits.")
    if r.engine_log_kv_tokens is not None and r.kv_budget_bytes_per_gpu > 0:
        lines.append(f"vLLM will log: \"GPU KV cache size: {r.engine_log_kv_tokens:,} tokens\", \"Maximum "
                     f"concurrency for {r.context:,} tokens per request: {r.engine_log_max_concurrency:.2f}x\"")
    if r.min_gpus_shape:
        s = r.min_gpus_shape
        shape = f"TP {s['tp']}" + (f" x PP {s['pp']}" if s["pp"] > 1 else "")
        verdict = "fits" if r.fits else "does not fit"
        lines.append(f"One {r.context:,}-token request {verdict} here; the fewest GPUs of this kind that hold "
                     f"one: {s['gpus']} ({shape}).")
    elif not r.fits:
        lines.append(f"One {r.context:,}-token request does not fit on up to 512 GPUs of this kind.")
    return lines


def gpus_table(gpus) -> Grid:
    rows = []
    for gpu in gpus:
        bandwidth = f"{gpu.bandwidth_bytes_per_s / 1e12:.2f} TB/s" if gpu.bandwidth_bytes_per_s else "-"
        rows.append([gpu.key, gpu.name, format_bytes(gpu.memory_bytes), f"{gpu.memory_bytes:,}", bandwidth,
                     ", ".join(gpu.aliases)])
    headers = ["name", "model", "memory", "bytes", "bandwidth", "also"]
    return Grid("GPU catalog (memory as the driver reports it)", headers, rows,
                right={"memory", "bytes", "bandwidth"}, optional=("also", "bytes", "model"), shrink="also")
