"""A parsed start-up log set beside kvcalc's engine rules: each figure explained, the KV figures
recomputed from the budget the log states, and kvcalc's own prediction for the same deployment.

Nothing in the log is executed or fetched: the model is matched to a bundled preset by name (or
given by the user with ``--model``), the GPU to the catalog by name (or ``--gpu``). A logged GiB
figure has two decimals, so a check holds when some budget in the interval the figure stands for
(``x - 0.005`` to ``x + 0.005`` GiB) reproduces the logged lines; the check says which.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction

from kvcalc.logs.parse import ParsedLog

GiB = 1024**3
QUANT_SUFFIXES = ("-fp8", "-fp8-dynamic", "-awq", "-gptq", "-gptq-int4", "-gptq-int8", "-int4", "-int8", "-w8a8",
                  "-bf16", "-instruct", "-chat", "-it", "-hf", "-base")


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # equal | differs | not checked
    logged: object
    recomputed: object
    why: str
    line: int | None = None


@dataclass(frozen=True)
class Explanation:
    engine: str | None
    model: str | None  # the preset or model kvcalc used, None: none resolved
    gpu: str | None
    figures: list[dict] = field(default_factory=list)  # {name, printed, line, means}
    checks: list[Check] = field(default_factory=list)
    prediction: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["checks"] = [asdict(c) for c in self.checks]
        return data


def preset_for(model: str | None, names: list[str]) -> str | None:
    """The bundled preset a logged model name (``Qwen/Qwen3-14B``, ``/models/Llama-3.1-8B-Instruct``)
    names, by its last path part, lowercased, with quantization and chat suffixes taken off."""
    if not model:
        return None
    stem = re.split(r"[/\\]", model.strip().rstrip("/"))[-1].lower().removeprefix("meta-")
    candidates = [stem]
    changed = True
    while changed:
        changed = False
        for suffix in QUANT_SUFFIXES:
            if candidates[-1].endswith(suffix):
                candidates.append(candidates[-1][: -len(suffix)])
                changed = True
    return next((c for c in candidates if c in names), None)


MEANS = {
    "weights_gib": "weights on this GPU as loaded (its share of the layers, plus what is replicated)",
    "available_kv_gib": ("what this worker leaves for KV: ceil(utilization x total) minus weights, the profiling "
                         "run's activation peak, non-torch memory and (vLLM 0.20 on) the CUDA-graph estimate; every "
                         "worker computes its own and the smallest decides the pool"),
    "kv_cache_tokens": ("int(max concurrency x max_model_len) from vLLM 0.20.1 (before: blocks // groups x block "
                        "size): a request count times its length, not the token slots of the pool when windows, "
                        "hybrid groups or partial pages are involved"),
    "max_concurrency": "pool blocks / the blocks one request of max_model_len needs (all its layer groups)",
    "cuda_graph_gib": "memory the captured CUDA graphs hold",
    "cuda_graph_estimate_gib": "vLLM's estimate of CUDA-graph memory, taken from the KV budget (0.20 on)",
    "non_torch_gib": "memory outside PyTorch's allocator: NCCL, custom all-reduce, cuBLAS workspaces",
    "torch_peak_gib": "the profiling run's activation peak at max_num_batched_tokens",
    "non_kv_gib": "everything but KV: weights, activation peak, non-torch memory",
    "max_total_num_tokens": ("SGLang's pool in tokens: (fraction x memory free before loading - weights) // bytes "
                             "per token (full-layer tokens for its sliding-window pool)"),
    "max_running_requests": ("a cap on request slots, clamp(int(T / context_len x 512), 2048, 4096) at most T // 2, "
                             "not requests of context_len that fit"),
    "mem_fraction_static": "weights + KV pool as a fraction of the memory free before the weights load",
    "kv_alloc_tokens": "tokens of SGLang's KV pool; each buffer has page_size more rows",
    "k_size_gib": "SGLang's K buffers: (tokens + page_size) x layers x KV heads per GPU x head_dim x bytes",
    "v_size_gib": "SGLang's V buffers, as K",
    "available_gpu_mem_gib": "free memory after CUDA-graph capture, which SGLang reserves out of its slack",
}


def explain(parsed: ParsedLog, spec=None, gpu=None, model_label: str | None = None) -> Explanation:
    """``parsed`` explained; ``spec`` (a ModelSpec) and ``gpu`` (a catalog GPU) enable the checks that
    need the model and the prediction."""
    figures = []
    for name, meaning in MEANS.items():
        for fact in parsed.facts.get(name, ())[:8]:
            figures.append({"name": name, "printed": str(fact.value), "line": fact.line, "worker": fact.worker,
                            "means": meaning})
    notes = list(parsed.notes)
    checks: list[Check] = []
    workers = parsed.facts.get("available_kv_gib", ())
    if len({f.value for f in workers}) > 1:
        low = min(workers, key=lambda f: f.value)
        notes.append(f"{len(workers)} workers printed different KV budgets; the smallest "
                     f"({low.value} GiB, {low.worker or 'line ' + str(low.line)}) decides every rank's pool")
    if parsed.engine == "vllm":
        checks += _vllm_checks(parsed, spec)
    elif parsed.engine == "sglang":
        checks += _sglang_checks(parsed, spec)
    if spec is None:
        notes.append("the model was not resolved (no bundled preset matches its name; give --model): only checks "
                     "that need no model were made")
    prediction = _prediction(parsed, spec, gpu) if spec is not None and gpu is not None else None
    if spec is not None and gpu is None:
        notes.append("the GPU was not resolved (give --gpu): kvcalc's own prediction is left out")
    return Explanation(parsed.engine, model_label or (spec.name if spec else None), gpu.key if gpu else None,
                       figures, checks, prediction, notes)


def _int(parsed: ParsedLog, *names: str) -> int | None:
    for name in names:
        fact = parsed.first(name)
        if fact is not None and isinstance(fact.value, int) and not isinstance(fact.value, bool):
            return fact.value
    return None


def _vllm_checks(parsed: ParsedLog, spec) -> list[Check]:
    checks = []
    tokens, conc, length = parsed.first("kv_cache_tokens"), parsed.first("max_concurrency"), \
        _int(parsed, "max_concurrency_len", "max_model_len")
    if tokens is not None and conc is not None and length:
        product = Fraction(str(conc.value)) * length
        # int(c x L) with c printed to 2 decimals: the printed c stands for [c - 0.005, c + 0.005)
        close = abs(tokens.value - product) <= Fraction(length, 200) + 1
        checks.append(Check("kv_cache_tokens_is_concurrency_x_length", "equal" if close else "differs",
                            tokens.value, f"{conc.value} x {length:,} = {float(product):,.0f}",
                            "vLLM 0.20.1 on logs int(max concurrency x max_model_len) as the KV cache size"
                            + ("" if close else "; this log's figure is not that product: an older release, "
                               "which logged blocks // groups x block size"), tokens.line))
    budgets = parsed.facts.get("available_kv_gib", ())
    exact = parsed.first("kv_cache_memory_bytes")  # --kv-cache-memory-bytes: the budget, exactly
    if exact is not None and not budgets and tokens is not None and spec is not None and length:
        checks.append(_vllm_pool_check(parsed, spec, None, tokens, conc, length, exact=exact.value))
        return checks
    if not budgets or tokens is None:
        return checks
    if spec is None:
        checks.append(Check("kv_pool_from_budget", "not checked", tokens.value, None,
                            "needs the model (its bytes per token and layer kinds): give --model", tokens.line))
        return checks
    uniform = len(spec.layers.kinds) == 1 and next(iter(spec.layers.kinds.values())).type == "full"
    if not length and not uniform:
        checks.append(Check("kv_pool_from_budget", "not checked", tokens.value, None,
                            "needs max_model_len, which this excerpt does not print, for a model with several "
                            "layer kinds", tokens.line))
        return checks
    budget = min(budgets, key=lambda f: f.value)
    # without the length, a model of full-attention layers only logs whole pages: blocks x block size
    checks.append(_vllm_pool_check(parsed, spec, budget, tokens, conc, length or 16 * 4096))
    if checks[-1].verdict == "differs" and len(budgets) == 1:
        checks[-1] = Check(**{**checks[-1].__dict__, "why": checks[-1].why + (
            "; or another worker's smaller budget decided: every worker sizes its own and the smallest wins, and "
            "this log shows one worker's line")})
    return checks


def _vllm_pool_check(parsed: ParsedLog, spec, budget, tokens, conc, length: int, exact: int | None = None) -> Check:
    """The logged tokens and concurrency recomputed with kvcalc's vLLM rules from every budget the
    logged GiB figure can stand for (or the exact --kv-cache-memory-bytes)."""
    from kvcalc.capacity.deployment import FitUsageError, Switches, deployment
    from kvcalc.capacity.fit import Weights, fit

    if exact is not None:
        low = high = exact
    else:
        low = int((Decimal(budget.value) - Decimal("0.005")) * GiB) + 1
        high = int((Decimal(budget.value) + Decimal("0.005")) * GiB) - 1
    kv_dtype = _kv_dtype(parsed)
    version = parsed.first("version")
    options = {"tp": _int(parsed, "tp") or 1, "pp": _int(parsed, "pp") or 1,
               "block_size": _int(parsed, "block_size"), "max_batched_tokens": _int(parsed, "max_num_batched_tokens")}
    prefix = parsed.first("enable_prefix_caching")
    device = parsed.first("kv_cache_device")
    platform = "cpu" if device is not None and str(device.value).upper() == "CPU" else "cuda"

    def at(b: int):
        d = deployment("vllm", b, version=_known_vllm(version.value if version else None), gpu_util=Fraction(1),
                       reserve=0, kv_dtype=kv_dtype, switches=Switches(prefix_caching=prefix.value if prefix else None),
                       platform=platform, **options)
        return fit(spec, d, length, weights=Weights(total_bytes=0), search_min=False)

    try:
        lo, hi = at(low), at(high)
    except (FitUsageError, ValueError) as exc:
        return Check("kv_pool_from_budget", "not checked", tokens.value, None, f"kvcalc cannot plan it: {exc}",
                     tokens.line)
    ok = lo.engine_log_kv_tokens <= tokens.value <= hi.engine_log_kv_tokens
    if conc is not None:
        ok = ok and lo.engine_log_max_concurrency <= float(conc.value) <= hi.engine_log_max_concurrency
    recomputed = (f"{lo.engine_log_kv_tokens:,}..{hi.engine_log_kv_tokens:,} tokens, "
                  f"{lo.engine_log_max_concurrency:.2f}..{hi.engine_log_max_concurrency:.2f}x from "
                  f"{lo.kv_blocks_per_gpu:,}..{hi.kv_blocks_per_gpu:,} blocks of {lo.block_size}")
    source = (f"the exact --kv-cache-memory-bytes {exact:,} B" if exact is not None else
              f"the smallest logged budget, {budget.value} GiB ({low:,}..{high:,} B)")
    why = (f"from {source}, with kvcalc's vLLM {lo.engine_version} rules on {platform.upper()} for {spec.name} "
           f"({lo.kv_bytes_per_token_per_gpu:,} B per token per GPU)")
    if ok and exact is None:
        first, last = _budgets_giving(at, tokens.value, low, high)
        why += f"; budgets from {first:,} to {last:,} B reproduce the logged line"
    else:
        why += ("; they differ: another block size, KV dtype, release or model than kvcalc assumed "
                "(give --model, or check block_size and kv_cache_dtype in the log)")
    return Check("kv_pool_from_budget", "equal" if ok else "differs", tokens.value, recomputed, why, tokens.line)


def _budgets_giving(at, tokens: int, low: int, high: int) -> tuple[int, int]:
    """The smallest and largest budget in [low, high] whose predicted log line is ``tokens`` (the
    prediction grows with the budget), by bisection."""
    def first_with(predicate) -> int:  # high + 1 when no budget in the interval has it
        a, b = low, high + 1
        while a < b:
            mid = (a + b) // 2
            if predicate(at(mid).engine_log_kv_tokens):
                b = mid
            else:
                a = mid + 1
        return a

    return first_with(lambda t: t >= tokens), first_with(lambda t: t > tokens) - 1


def _known_vllm(version: str | None) -> str | None:
    """The release whose rules apply, or None (kvcalc's default) for one it does not follow."""
    from kvcalc.capacity.engines.vllm import release

    if not version:
        return None
    try:
        release(version)
        return version
    except ValueError:
        return None


def _kv_dtype(parsed: ParsedLog) -> str | None:
    fact = parsed.first("kv_cache_dtype")
    if fact is None or str(fact.value).lower() in ("auto", "none"):
        return None
    value = str(fact.value).lower()
    return "fp8" if value.startswith("fp8") else {"bfloat16": "bf16", "float16": "fp16", "half": "fp16"}.get(
        value, value if value in ("bf16", "fp16", "int8", "int4") else None)


def _sglang_checks(parsed: ParsedLog, spec) -> list[Check]:
    checks = []
    total, running = parsed.first("max_total_num_tokens"), parsed.first("max_running_requests")
    context = _int(parsed, "context_len", "max_model_len")
    if total is not None and running is not None and context:
        cap = min(max(total.value * 512 // context, 2048), 4096, total.value // 2)
        checks.append(Check("max_running_requests_is_a_slot_cap", "equal" if cap == running.value else "differs",
                            running.value, cap,
                            "clamp(int(max_total_num_tokens / context_len x 512), 2048, 4096), at most T // 2"
                            + ("" if cap == running.value else
                               ": set by --max-running-requests, speculative decoding (48), a Mamba slot cap or "
                               "DP attention instead"), running.line))
    alloc, k_size = parsed.first("kv_alloc_tokens"), parsed.first("k_size_gib")
    if alloc is not None and k_size is not None:
        if spec is None:
            checks.append(Check("kv_buffers_from_tokens", "not checked", str(k_size.value), None,
                                "needs the model's bytes per token: give --model", k_size.line))
        else:
            checks.append(_sglang_buffer_check(parsed, spec, alloc, k_size))
    return checks


def _sglang_buffer_check(parsed: ParsedLog, spec, alloc, k_size) -> Check:
    from kvcalc.capacity.deployment import deployment
    from kvcalc.capacity.fit import Weights, fit

    tp = _int(parsed, "tp") or 1
    page = _int(parsed, "page_size") or 1
    r = fit(spec, deployment("sglang", 10**12, tp=tp, reserve=0, gpu_util=Fraction(1), kv_dtype=_kv_dtype(parsed)),
            8192, weights=Weights(total_bytes=0), search_min=False)
    half = r.kv_bytes_per_token_per_gpu // 2  # K alone (dense attention: K and V of equal size)
    k_bytes = (alloc.value + page) * half
    printed = f"{k_bytes / GiB:.2f}"
    ok = printed == str(k_size.value)
    return Check("kv_buffers_from_tokens", "equal" if ok else "differs", str(k_size.value), printed,
                 f"({alloc.value:,} + {page}) rows x {half:,} B of K per token on each of TP {tp} GPUs for {spec.name}"
                 + ("" if ok else ": another model, TP, KV dtype or layout (MLA keeps one buffer) than assumed"),
                 k_size.line)


def _prediction(parsed: ParsedLog, spec, gpu) -> dict | None:
    """kvcalc's own forecast for the logged deployment, set beside what the log measured."""
    from kvcalc.capacity.deployment import FitUsageError, deployment
    from kvcalc.capacity.fit import fit
    from kvcalc.errors import KvcalcError

    engine = parsed.engine or "vllm"
    util = parsed.first("gpu_memory_utilization" if engine == "vllm" else "mem_fraction_static")
    context = _int(parsed, "max_model_len", "context_len", "max_concurrency_len")
    try:
        d = deployment(engine, None, gpu=gpu, tp=_int(parsed, "tp") or 1, pp=_int(parsed, "pp") or 1,
                       gpu_util=Fraction(str(util.value)) if util else None, kv_dtype=_kv_dtype(parsed),
                       block_size=_int(parsed, "block_size"),
                       max_batched_tokens=_int(parsed, "max_num_batched_tokens", "chunked_prefill_size"),
                       version=_known_vllm(parsed.first("version").value) if engine == "vllm" and parsed.first(
                           "version") else None)
        r = fit(spec, d, context, search_min=False)
    except (FitUsageError, KvcalcError, ValueError) as exc:
        return {"error": str(exc)}
    logged = {"weights_gib": parsed.first("weights_gib"), "available_kv_gib": parsed.first("available_kv_gib")}
    return {
        "engine_version": r.engine_version, "gpu_util": r.gpu_util, "weights_bytes_per_gpu": r.weights_bytes_per_gpu,
        "reserve_parts": r.reserve_parts, "kv_budget_bytes_per_gpu": r.kv_budget_bytes_per_gpu,
        "logged_weights_gib": float(logged["weights_gib"].value) if logged["weights_gib"] else None,
        "logged_available_kv_gib": float(logged["available_kv_gib"].value) if logged["available_kv_gib"] else None,
        "engine_log": r.engine_log,
    }
