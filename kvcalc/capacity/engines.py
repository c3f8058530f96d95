"""How serving engines count KV memory: budget, heads per GPU, pages per request.

Read from each engine's code; ../shared/reference/engines.md and docs/fit.md cite the
files. Each rule here is one function so a reader can hold it against that source.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

EngineName = Literal["vllm", "sglang", "trtllm"]
ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class Engine:
    name: str
    block_size: int  # default tokens per page
    gpu_util: Fraction  # default fraction of memory the engine may use
    budget_of: Literal["total", "free"]  # the fraction applies to total memory, or to what is free after loading
    heads_rule: Literal["floor", "ceil"]  # KV heads per GPU under TP
    windows: bool  # sliding and chunked layers charged only their span
    label: str


VLLM = Engine("vllm", 16, Fraction(92, 100), "total", "floor", True,
              "vLLM v1: --gpu-memory-utilization of total memory; pages of --block-size tokens")
SGLANG = Engine("sglang", 1, Fraction(9, 10), "total", "floor", False,
                "SGLang: --mem-fraction-static of total memory; token pool with --page-size 1")
TRTLLM = Engine("trtllm", 32, Fraction(9, 10), "free", "ceil", True,
                "TensorRT-LLM: free_gpu_memory_fraction of memory free after loading; tokens_per_block 32")
BY_NAME = {e.name: e for e in (VLLM, SGLANG, TRTLLM)}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def kv_heads_per_gpu(kv_heads: int, tp: int, engine: Engine) -> int:
    """vLLM and SGLang: max(1, kv // tp), replicating past the head count; TRT-LLM: ceil(kv / tp)."""
    if engine.heads_rule == "ceil":
        return cdiv(kv_heads, tp)
    return max(1, kv_heads // tp)


def requested_bytes(memory: int, fraction: Fraction, engine: Engine) -> int:
    """fraction x memory, exactly (the fraction is the decimal the user typed): rounded up as
    vLLM's request_memory does (math.ceil), down for the others."""
    if engine.name == "vllm":
        return cdiv(memory * fraction.numerator, fraction.denominator)
    return memory * fraction.numerator // fraction.denominator


def kv_budget(engine: Engine, memory: int, fraction: Fraction, weights: int, reserve: int) -> int:
    """Bytes left for KV on one GPU; negative when weights and reserve do not fit."""
    if engine.budget_of == "free":
        return requested_bytes(memory - weights - reserve, fraction, engine)
    return requested_bytes(memory, fraction, engine) - weights - reserve


def default_batched_tokens(memory: int, gpu_key: str | None) -> int:
    """vLLM's default --max-num-batched-tokens for its OpenAI server (arg_utils.get_batch_defaults):
    16384 from 160 GiB (v0.28), 8192 from 70 GiB except A100s, 2048 below."""
    gib = 1024**3
    if memory >= 160 * gib:
        return 16384
    if memory >= 70 * gib and "a100" not in (gpu_key or ""):
        return 8192
    return 2048


def default_max_seqs(memory: int, gpu_key: str | None) -> int:
    """vLLM's default --max-num-seqs: 1024 from 70 GiB except A100s, 256 below."""
    return 1024 if memory >= 70 * 1024**3 and "a100" not in (gpu_key or "") else 256


def in_flight_batches(pp: int) -> int:
    """vLLM's max_concurrent_batches: 2 with async scheduling (the default) at PP 1, PP stages
    otherwise (V1 model runner); window pages are freed only once those batches are done."""
    return 2 if pp == 1 else pp


def pages_full(context: int, block: int) -> int:
    return cdiv(context, block)


def pages_sliding(window: int, context: int, block: int, in_flight: int) -> int:
    """vLLM SlidingWindowSpec.max_memory_usage_bytes: the window need not start on a page
    boundary, and the tokens in flight (max_num_batched_tokens per scheduled batch) are held
    before old pages are freed."""
    return cdiv(min(window - 1 + in_flight, context), block) + 1


def pages_chunked(chunk: int, context: int, block: int, in_flight: int) -> int:
    """vLLM ChunkedLocalAttentionSpec.max_memory_usage_bytes."""
    return cdiv(min(chunk + in_flight, context), block)


def vllm_group_size(counts: list[int]) -> int:
    """Layers per KV-cache group when layer types are mixed (kv_cache_utils
    _get_kv_cache_groups_uniform_page_size): the smallest type's count, or the largest's when
    that is under 1.5 x the smallest (1.25 before March 2026)."""
    smallest, largest = min(counts), max(counts)
    return largest if 2 * largest < 3 * smallest else smallest
