"""What a start-up log measured, as the inputs of ``kvcalc fit --from-log``: the deployment's
settings, its weights and the non-KV memory the engine really kept, in place of kvcalc's estimates.

vLLM: budget = ceil(total x util) - weights - the rest, so the rest (activation peak, non-torch
memory, CUDA graphs) = requested - weights - "Available KV cache memory". SGLang: budget =
f x P - weights with P the memory free before the weights load, so the runtime's own share is
total - P ("Load weight begin. avail mem"). Logged GiB figures have two decimals: the measured
parts are known to +-0.005 GiB, and the notes say so.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from kvcalc.errors import KvcalcError
from kvcalc.logs.parse import ParsedLog

GiB = 1024**3


def gib(value) -> int:
    return int(Decimal(value) * GiB)


def settings(parsed: ParsedLog) -> dict:
    """The deployment settings the log states (None where it does not)."""
    def first_int(*names):
        for name in names:
            fact = parsed.first(name)
            if fact is not None and isinstance(fact.value, int) and not isinstance(fact.value, bool):
                return fact.value
        return None

    util = parsed.first("gpu_memory_utilization" if parsed.engine == "vllm" else "mem_fraction_static")
    version = parsed.first("version")
    return {
        "tp": first_int("tp"), "pp": first_int("pp"),
        "context": first_int("max_model_len", "context_len", "max_concurrency_len"),
        "block_size": first_int("block_size", "page_size"),
        "max_batched_tokens": first_int("max_num_batched_tokens", "chunked_prefill_size"),
        "gpu_util": Fraction(str(util.value)) if util is not None else None,
        "version": str(version.value) if version is not None else None,
    }


def measured(parsed: ParsedLog, memory: int, gpu_util: Fraction) -> tuple[int, int, list[str]]:
    """(weights bytes per GPU, the engine's own non-KV bytes per GPU, notes) from the log's lines."""
    weights = parsed.first("weights_gib")
    if weights is None:
        raise KvcalcError("the log has no weights line (vLLM 'Model loading took X GiB', SGLang 'Load weight end. "
                          "... mem usage'); --from-log needs it")
    w = gib(weights.value)
    notes = [f"weights per GPU from the log: {weights.value} GiB (line {weights.line})"]
    if parsed.engine == "vllm":
        budgets = parsed.facts.get("available_kv_gib", ())
        if not budgets:
            raise KvcalcError("the log has no 'Available KV cache memory' line; --from-log needs it")
        budget = min(budgets, key=lambda f: f.value)
        requested = -(-memory * gpu_util.numerator // gpu_util.denominator)
        rest = requested - w - gib(budget.value)
        if rest < 0:
            raise KvcalcError(f"weights ({weights.value} GiB) and the logged KV budget ({budget.value} GiB) are more "
                              f"than {float(gpu_util):g} of this GPU's {memory / GiB:.2f} GiB: is --gpu the GPU the "
                              "log ran on?")
        notes.append(f"non-KV memory vLLM kept from the log: ceil({float(gpu_util):g} x total) - weights - "
                     f"{budget.value} GiB (line {budget.line}) = {rest / GiB:.2f} GiB, in place of kvcalc's estimate "
                     "(each logged figure to +-0.005 GiB)")
        return w, rest, notes
    before = parsed.first("load_begin_avail_gib")
    if before is None:
        raise KvcalcError("the log has no 'Load weight begin. avail mem' line (the memory free before loading); "
                          "--from-log needs it")
    rest = memory - gib(before.value)
    notes.append(f"memory the runtime held before the weights loaded, from the log: total - {before.value} GiB "
                 f"(line {before.line}) = {rest / GiB:.2f} GiB")
    return w, max(rest, 0), notes


def logged_deployment(path: str, engine: str | None) -> dict:
    """What a start-up log says of its deployment, for --from-log (the engine must be the log's)."""
    import sys

    from kvcalc.capacity import engines
    from kvcalc.logs.parse import parse_log

    parsed = parse_log(sys.stdin.buffer if path == "-" else path)
    if parsed.engine is None:
        raise KvcalcError(f"{path}: no vLLM or SGLang start-up lines in {parsed.lines_read:,} lines read")
    if engine is not None and engine != parsed.engine:
        from kvcalc.capacity.deployment import FitUsageError

        raise FitUsageError(f"the log is {parsed.engine}'s; its measurements cannot plan {engine}")
    found = settings(parsed)
    version = found["version"]
    if version:
        try:  # a release whose rules kvcalc follows, else its default
            engines.get(parsed.engine, version)
        except ValueError:
            version = None
    gpu = parsed.first("gpu_name")
    return {**found, "engine": parsed.engine, "parsed": parsed, "known_version": version,
            "gpu": str(gpu.value).replace("NVIDIA_", "NVIDIA ") if gpu else None}
