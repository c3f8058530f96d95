"""Ready-to-run launch commands for vLLM, SGLang and TensorRT-LLM from a ``fit`` result.

Flag names are each engine's own (read from its argument parser; docs/fit.md cites the
files). Numbers are plain integers, since the engines read suffixes differently (vLLM's
``M`` is 2**20, SGLang's 10**6). A setting an engine has no flag for is left out with a
comment, never invented. What kvcalc assumed is written beside each flag.
"""

from __future__ import annotations

from kvcalc.capacity.fit import FitResult
from kvcalc.capacity.layers import serving_dtype
from kvcalc.spec import ModelSpec

# kvcalc KV dtype -> each engine's --kv-cache-dtype value; None: the engine has none
KV_DTYPE = {
    "vllm": {"fp16": "float16", "bf16": "bfloat16", "fp8": "fp8", "int8": "int8_per_token_head", "int4": "nvfp4"},
    "sglang": {"bf16": "bf16", "fp8": "fp8_e4m3", "int4": "fp4_e2m1"},
    "trtllm": {"fp16": "float16", "fp8": "fp8", "int4": "nvfp4"},
}


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def model_reference(spec: ModelSpec, given: str) -> tuple[str, str | None]:
    """(what to pass as the model, shell-quoted; a comment or None): a Hub id as given, a
    config.json's folder, else the Hub id of the spec's first Hugging Face source."""
    import shlex
    from pathlib import Path

    hub = "https://huggingface.co/"
    path = Path(given)
    if path.name == "config.json" or path.is_dir():
        folder = path.parent if path.name == "config.json" else path
        return shlex.quote(str(folder)), None  # engines take the model's folder
    if "/" in given and not given.endswith((".json", ".yaml", ".yml")) and not path.exists():
        return shlex.quote(given), None  # a Hub id
    for source in spec.source:
        if source.startswith(hub):
            return shlex.quote(source[len(hub):].split("/blob/")[0].split(" ")[0]), None
    return shlex.quote(spec.name), "replace MODEL with the model's Hub id or local path"


def check_kv_dtype(engine: str, kv_dtype: str) -> None:
    """A KV dtype the engine cannot cache in is a usage error: a command without it would run
    at another size than the one counted."""
    if kv_dtype not in KV_DTYPE[engine] and kv_dtype not in ("bf16", "fp16"):
        have = ", ".join(KV_DTYPE[engine])
        raise ValueError(f"{engine} has no {kv_dtype} KV cache (it takes {have} besides the model's dtype); "
                         "choose one of those")


def _kv_dtype(engine: str, r: FitResult, spec: ModelSpec) -> tuple[str | None, str]:
    if r.kv_dtype == serving_dtype(spec.dtype):
        return "auto", f"the model's {r.kv_dtype}"
    value = KV_DTYPE[engine].get(r.kv_dtype)
    return value, r.kv_dtype


def launch(r: FitResult, spec: ModelSpec, given: str, engine: str, moved: str | None = None) -> str:
    """The command (and, for TensorRT-LLM, its YAML file) as shell text; ``moved`` says why the
    shape is not the one asked for."""
    model, model_note = model_reference(spec, given)
    # per engine instance: data-parallel replicas share the requests
    requests = -(-r.concurrency // r.replicas) if r.concurrency is not None else r.max_concurrency
    util = r.required_gpu_util if r.concurrency is not None else r.gpu_util
    each = f" ({requests} per replica)" if r.replicas > 1 and r.concurrency is not None else (
        " per replica" if r.replicas > 1 else "")
    asked = r.concurrency if r.concurrency is not None else requests
    head = [f"# kvcalc fit: {r.model}, {_count(r.gpus, 'GPU')}, TP {r.tp} x PP {r.pp}, {_count(asked, 'request')}"
            f"{each} of {r.context} tokens, {engine} rules"]
    if moved:
        head.append(f"# {moved}")
    if model_note:
        head.append(f"# {model_note}")
    if not requests:
        head.append("# WARNING: not one request fits on this shape or any of up to 512 GPUs")
    if util is None or util > r.gpu_util:
        head.append("# WARNING: no memory fraction up to --gpu-util holds these requests on this shape, and no "
                    "shape of up to 512 GPUs does; the fraction below is --gpu-util")
        util = r.gpu_util
    kv_value, kv_what = _kv_dtype(engine, r, spec)
    build = {"vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm}[engine]
    return "\n".join(head + build(r, model, max(requests or 1, 1), util, kv_value, kv_what)) + "\n"


def _lines(command: str, flags: list[tuple[str, object, str]], comments: list[str]) -> list[str]:
    """The command with one flag a line, joined by backslashes; what each flag assumes follows
    as comments (a comment cannot sit inside a continued line)."""
    out = [f"# {c}" for c in comments]
    out.append(command + " \\")
    for i, (flag, value, _) in enumerate(flags):
        out.append(f"  {flag} {value}" + ("" if i == len(flags) - 1 else " \\"))
    out.extend(f"#   {flag}: {why}" for flag, _, why in flags if why)
    return out


def _vllm(r, model, requests, util, kv_value, kv_what) -> list[str]:
    flags = [
        ("--tensor-parallel-size", r.tp, ""),
        ("--pipeline-parallel-size", r.pp, ""),
    ]
    if r.replicas > 1:
        flags.append(("--data-parallel-size", r.replicas, "replicas"))
    flags += [
        ("--max-model-len", r.context, "tokens per request"),
        ("--max-num-seqs", requests, "requests held at once"),
        ("--gpu-memory-utilization", f"{util:.2f}", "fraction of total memory per GPU"),
    ]
    comments = []
    if kv_value is None:
        comments.append(f"vLLM has no --kv-cache-dtype for {kv_what}; left out")
    else:
        flags.append(("--kv-cache-dtype", kv_value, kv_what))
    flags += [("--block-size", r.block_size, "tokens per page"),
              ("--max-num-batched-tokens", r.max_batched_tokens, "tokens per prefill step")]
    if r.concurrency is not None:
        comments.append(f"or exactly: --kv-cache-memory-bytes {r.required_kv_bytes_per_gpu} "
                        "(KV bytes per GPU; overrides --gpu-memory-utilization)")
    return _lines(f"vllm serve {model}", flags, comments)


def _sglang(r, model, requests, util, kv_value, kv_what) -> list[str]:
    flags = [("--model-path", model, ""), ("--tp-size", r.tp, ""), ("--pp-size", r.pp, "")]
    if r.replicas > 1:
        flags.append(("--dp-size", r.replicas, "replicas"))
    flags += [
        ("--context-length", r.context, "tokens per request"),
        ("--max-running-requests", requests, "requests held at once"),
        ("--mem-fraction-static", f"{util:.2f}", "weights + KV pool as a fraction of memory"),
    ]
    comments = []
    if kv_value is None:
        comments.append(f"SGLang has no --kv-cache-dtype for {kv_what}; left out")
    else:
        flags.append(("--kv-cache-dtype", kv_value, kv_what))
    flags += [("--page-size", r.block_size, "tokens per page"),
              ("--chunked-prefill-size", r.max_batched_tokens, "tokens per prefill step")]
    if r.concurrency is not None:
        tokens = requests * r.context
        comments.append(f"or exactly: --max-total-tokens {tokens} (the KV pool in tokens)")
    return _lines("python -m sglang.launch_server", flags, comments)


def _trtllm(r, model, requests, util, kv_value, kv_what) -> list[str]:
    yaml_lines = ["kv_cache_config:", f"  tokens_per_block: {r.block_size}",
                  f"  free_gpu_memory_fraction: {util:.2f}"]
    comments = []
    if kv_value is None:
        comments.append(f"TensorRT-LLM has no KV dtype for {kv_what}; left out")
    else:
        yaml_lines.append(f"  dtype: {kv_value}")
    if r.concurrency is not None:
        held = -(-r.context // r.block_size) * r.block_size
        yaml_lines.append(f"  max_tokens: {requests * held}")
    if r.replicas > 1:
        comments.append(f"TensorRT-LLM has no data-parallel flag: run {r.replicas} replicas of this command")
    flags = [
        ("--tp_size", r.tp, ""),
        ("--pp_size", r.pp, ""),
        ("--max_seq_len", r.context, "tokens per request"),
        ("--max_batch_size", requests, "requests held at once"),
        ("--max_num_tokens", r.max_batched_tokens, "tokens per step"),
        ("--extra_llm_api_options", "kvcalc-trtllm.yaml", "KV pool settings (no CLI flags for them)"),
    ]
    out = ["cat > kvcalc-trtllm.yaml <<'YAML'", *yaml_lines, "YAML"]
    return out + _lines(f"trtllm-serve {model}", flags, comments)
