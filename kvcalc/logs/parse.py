"""Read a vLLM or SGLang start-up log into facts: what the engine was told and what it measured.

The log is read as people paste it: any level, with or without process prefixes such as
``(EngineCore_DP0 pid=1133552) INFO 10-03 16:22:17 [gpu_worker.py:298]`` or
``[2026-01-02 10:11:12 DP1 TP3]``, with colour codes (the escape character kept or lost in
the paste), Windows line ends, progress bars redrawn with carriage returns, several ranks'
lines interleaved, and lines a terminal cut short.

Each figure becomes a :class:`Fact` that keeps its line number, the line's text and the
worker that printed it, so a reader can be shown where every number came from. A figure
whose line was cut before the figure ended is recorded under the name ``cut`` (its value is
the name the figure would have had), never as a shorter, wrong number.

Reading is streamed and bounded: lines are capped at ``MAX_LINE_BYTES``, and reading stops
after ``MAX_LINES`` lines or ``MAX_BYTES`` bytes (``ParsedLog.truncated`` says so). Figures
are kept as printed: GiB and utilizations as :class:`decimal.Decimal`, so the interval a
rounded figure stands for is exact; SGLang's "GB" is 2**30 bytes and is named ``*_gib`` too.
"""

from __future__ import annotations

import codecs
import gzip
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from kvcalc.errors import KvcalcError

MAX_LINE_BYTES = 64 * 1024  # the rest of a longer line is dropped
MAX_LINES = 200_000  # a start-up is a few thousand lines; a server's whole life may be millions
MAX_BYTES = 512 * 1024**2
SNIFF_BYTES = 64 * 1024  # a log with a NUL byte here is not text
MAX_FACTS_PER_NAME = 256  # a log that repeats a line forever keeps the first ones
MAX_NOTES = 40
CHUNK = 1024 * 1024
_CUT_TAIL = 32  # at most this much text after a label whose figure did not parse: the line was cut

ENGINES = ("vllm", "sglang")


class LogError(KvcalcError):
    """A log that cannot be read: missing, not a regular file, or not text."""


@dataclass(frozen=True)
class Fact:
    """One figure or setting read from one line of the log."""

    name: str
    value: object
    line: int  # 1-based
    text: str  # the line (or, for a long line, the part around the figure), cleaned of colour codes
    worker: str | None  # the process or rank that printed it: "Worker_TP1", "EngineCore_DP0", "DP1 TP3"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "line": self.line, "text": self.text, "worker": self.worker}
        if isinstance(self.value, Decimal):  # JSON has no decimals: the number, and the figure as printed
            out["value"] = float(self.value)
            out["printed"] = str(self.value)
        return out


@dataclass(frozen=True)
class ParsedLog:
    engine: str | None  # "vllm" | "sglang" | None
    facts: dict[str, list[Fact]]
    lines_read: int
    truncated: bool  # reading stopped at MAX_LINES or MAX_BYTES
    notes: list[str] = field(default_factory=list)

    def first(self, name: str) -> Fact | None:
        found = self.facts.get(name)
        return found[0] if found else None

    def values(self, name: str) -> list[object]:
        return [f.value for f in self.facts.get(name, ())]

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "lines_read": self.lines_read,
            "truncated": self.truncated,
            "notes": list(self.notes),
            "facts": {name: [f.to_dict() for f in facts] for name, facts in self.facts.items()},
        }


# --- the facts kvcalc reads, each with its kind ----------------------------------------------------------

_INT, _DEC, _STR, _BOOL = "int", "dec", "str", "bool"

FACTS: dict[str, str] = {
    # what the engine was told (launch arguments, engine config, server args)
    "engine": _STR, "version": _STR, "model": _STR, "gpu_name": _STR,
    "tp": _INT, "pp": _INT, "dp": _INT, "dcp": _INT,
    "dtype": _STR, "kv_cache_dtype": _STR, "quantization": _STR,
    "block_size": _INT, "page_size": _INT,
    "max_model_len": _INT, "context_len": _INT,
    "max_num_batched_tokens": _INT, "chunked_prefill_size": _INT, "max_prefill_tokens": _INT,
    "max_num_seqs": _INT, "max_running_requests": _INT, "max_total_tokens": _INT,
    "gpu_memory_utilization": _DEC, "mem_fraction_static": _DEC,
    "enable_prefix_caching": _BOOL, "enforce_eager": _BOOL,
    "speculative_config": _STR, "kv_cache_memory_bytes": _INT,
    # vLLM's measurements
    "weights_gib": _DEC, "available_kv_gib": _DEC,
    "kv_cache_tokens": _INT, "kv_cache_device": _STR,
    "max_concurrency": _DEC, "max_concurrency_len": _INT,
    "num_gpu_blocks": _INT, "num_cpu_blocks": _INT,
    "cuda_graph_gib": _DEC, "cuda_graph_estimate_gib": _DEC, "cuda_graph_profiling": _BOOL,
    "non_kv_gib": _DEC, "torch_peak_gib": _DEC, "non_torch_gib": _DEC, "total_consumed_gib": _DEC,
    "initial_free_gib": _DEC, "requested_gib": _DEC, "total_gpu_gib": _DEC,
    "free_after_profile_gib": _DEC, "kv_reserved_gib": _DEC, "kv_cache_gib": _DEC,
    "cp_world_size": _INT, "pcp_world_size": _INT, "dcp_world_size": _INT,
    # SGLang's measurements (its "GB" is 2**30 bytes)
    "kv_alloc_tokens": _INT, "kv_alloc_dtype": _STR,
    "k_size_gib": _DEC, "v_size_gib": _DEC, "kv_size_gib": _DEC,
    "swa_full_tokens": _INT, "swa_tokens": _INT, "swa_pool_gib": _DEC,
    "mamba_cache_size": _INT, "mamba_conv_gib": _DEC, "mamba_ssm_gib": _DEC,
    "max_total_num_tokens": _INT, "available_gpu_mem_gib": _DEC,
    "load_begin_avail_gib": _DEC, "load_end_avail_gib": _DEC, "pool_end_avail_gib": _DEC,
    "graph_begin_avail_gib": _DEC, "graph_end_avail_gib": _DEC, "dist_init_gib": _DEC,
    # a figure whose line was cut: the value is the name the figure would have had
    "cut": _STR,
}

_NUM = r"(-?\d+(?:\.\d+)?)"
_TOKENS = r"(\d{1,3}(?:,\d{3})+|\d+)"  # "178,880" or "2795207"


def _convert(name: str, raw: object) -> object | None:
    """The value of fact ``name`` from a printed figure, or None when it is not one."""
    kind = FACTS[name]
    if raw is None:
        return None
    if kind == _BOOL:
        if isinstance(raw, bool):
            return raw
        return {"true": True, "false": False, "enabled": True, "disabled": False}.get(str(raw).lower())
    if isinstance(raw, bool):
        return None
    text = str(raw).strip()
    if kind == _STR:
        if name in ("dtype", "kv_cache_dtype", "kv_alloc_dtype") and text.startswith("torch."):
            text = text[len("torch."):]
        if name == "gpu_name":
            text = " ".join(text.replace("_", " ").split())
        return text or None
    if len(text) > 40:  # no figure in a log is this long; int() would refuse past 4,300 digits
        return None
    if kind == _INT:
        digits = text.replace(",", "") if re.fullmatch(_TOKENS, text) else text
        return int(digits) if re.fullmatch(r"-?\d+", digits) else None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# --- line rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One figure on a line: its label, and the label with the figure and what must follow it."""

    label: re.Pattern[str]
    full: re.Pattern[str]
    names: tuple[str, ...]  # one per group of ``full``


@dataclass(frozen=True)
class _Rule:
    engine: str | None
    needles: tuple[str, ...]  # the line holds one of these (a fast test before any regex)
    fields: tuple[_Field, ...]


def _f(label: str, rest: str, *names: str, flags: int = 0) -> _Field:
    return _Field(re.compile(label, flags), re.compile(label + rest, flags), names)


def _rule(engine: str | None, needles: str | tuple[str, ...], *fields: _Field) -> _Rule:
    return _Rule(engine, (needles,) if isinstance(needles, str) else needles, fields)


_GIB = r"\s*GiB"
_GB = r"\s*GB"

_RULES: tuple[_Rule, ...] = (
    # --- vLLM: memory (vllm.md sections 4, 5, 7) ---
    _rule("vllm", ("Model loading took", "Loading model weights took"),
          _f(r"(?:Model loading|Loading model weights) took\s*", _NUM + r"\s*(?:GiB|GB)\b", "weights_gib")),
    _rule("vllm", "Available KV cache memory:",
          _f(r"Available KV cache memory:\s*", _NUM + _GIB, "available_kv_gib")),
    _rule("vllm", "KV cache size:",
          _f(r"\b([A-Z]{2,}(?: \+ host)?) KV cache size:\s*", _TOKENS + r" tokens", "kv_cache_device",
             "kv_cache_tokens")),
    _rule("vllm", "Maximum concurrency for",
          _f(r"Maximum concurrency for\s*", _TOKENS + r" tokens per request", "max_concurrency_len"),
          _f(r"tokens per request:\s*", _NUM + r"x", "max_concurrency")),
    _rule("vllm", " blocks: ",
          _f(r"# (?:GPU|cuda|CUDA|gpu|rocm|xpu|XPU|npu|NPU|hpu|HPU) blocks:\s*", r"(\d+)\b(?!\.)", "num_gpu_blocks"),
          _f(r"# CPU blocks:\s*", r"(\d+)\b(?!\.)", "num_cpu_blocks")),
    _rule("vllm", "num_gpu_blocks is:", _f(r"num_gpu_blocks is:\s*", r"(\d+)\b", "num_gpu_blocks")),
    _rule("vllm", "Graph capturing finished",
          _f(r"Graph capturing finished in \d+ secs?, took\s*", _NUM + _GIB, "cuda_graph_gib")),
    _rule("vllm", "Estimated CUDA graph memory:",
          _f(r"Estimated CUDA graph memory:\s*", _NUM + _GIB + r" total", "cuda_graph_estimate_gib")),
    _rule("vllm", "CUDA graph pool memory:",
          _f(r"CUDA graph pool memory:\s*", _NUM + _GIB + r" \(actual\)", "cuda_graph_gib"),
          _f(r"\(actual\),\s*", _NUM + _GIB + r" \(estimated\)", "cuda_graph_estimate_gib")),
    _rule("vllm", "CUDA graph memory profiling is enabled",
          _f(r"The current --gpu-memory-utilization=", r"(\d+(?:\.\d+)?) is equivalent", "gpu_memory_utilization"),
          _f(r"CUDA graph memory profiling is ", r"(enabled)", "cuda_graph_profiling")),
    _rule("vllm", "CUDA graph memory profiling is disabled",
          _f(r"CUDA graph memory profiling is ", r"(disabled)", "cuda_graph_profiling")),
    _rule("vllm", ("Total non KV cache memory", "torch peak memory increase", "weights memory:"),
          _f(r"Total non KV cache memory:\s*", _NUM + _GIB, "non_kv_gib"),
          _f(r"torch peak memory increase:\s*", _NUM + _GIB, "torch_peak_gib"),
          _f(r"non-torch forward increase memory:\s*", _NUM + _GIB, "non_torch_gib"),
          _f(r"total consumed \(from mem_get_info\):\s*", _NUM + _GIB, "total_consumed_gib"),
          _f(r"\bweights memory:\s*", _NUM + _GIB, "weights_gib")),
    _rule("vllm", "Initial free memory",
          _f(r"Initial free memory:?\s*", _NUM + _GIB, "initial_free_gib"),
          _f(r"Requested memory:\s*", r"(\d+(?:\.\d+)?) \(util\)", "gpu_memory_utilization"),
          _f(r"\(util\),\s*", _NUM + _GIB, "requested_gib"),
          _f(r"\breserved\s*", _NUM + _GIB + r" memory for KV Cache", "kv_reserved_gib")),
    _rule("vllm", "Free memory after profiling",
          _f(r"Free memory after profiling:\s*", _NUM + _GIB, "free_after_profile_gib")),
    # vLLM V0 (v0.8-v0.10): the multi-line profiling summary, one figure per label
    _rule("vllm", "total_gpu_memory (",
          _f(r"total_gpu_memory \(\s*", _NUM + _GIB + r"\)", "total_gpu_gib"),
          _f(r"gpu_memory_utilization \(\s*", r"(\d+(?:\.\d+)?)\)", "gpu_memory_utilization"),
          _f(r"gpu_memory_utilization \([\d.]+\) =\s*", _NUM + _GIB, "requested_gib")),
    _rule("vllm", ("model weights take", "non_torch_memory takes", "activation peak memory takes",
                   "reserved for KV Cache is"),
          _f(r"model weights take\s*", _NUM + _GIB, "weights_gib"),
          _f(r"non_torch_memory takes\s*", _NUM + _GIB, "non_torch_gib"),
          _f(r"activation peak memory takes\s*", _NUM + _GIB, "torch_peak_gib"),
          _f(r"reserved for KV Cache is\s*", _NUM + _GIB, "available_kv_gib")),
    # v0.34 extensible KV cache
    _rule("vllm", "Memory after warmup:",
          _f(r"fit within the requested\s*", _NUM + _GIB, "requested_gib"),
          _f(r";\s*", r"(\d+) KV cache blocks \(", "num_gpu_blocks"),
          _f(r"KV cache blocks \(\s*", _NUM + _GIB + r"\)", "kv_cache_gib")),
    _rule("vllm", "Multiplying the GPU KV cache size",
          _f(r"by the cp_world_size\s*", r"(\d+)\b", "cp_world_size"),
          _f(r"pcp_world_size\s*", r"(\d+) \*", "pcp_world_size"),
          _f(r"(?:\* |by the )dcp_world_size\s*", r"(\d+)\b", "dcp_world_size")),
    _rule("vllm", "Using max model len", _f(r"Using max model len\s*", r"(\d+)\b", "max_model_len")),
    _rule("vllm", "Chunked prefill is enabled with max_num_batched_tokens",
          _f(r"max_num_batched_tokens=", r"(\d+)\b", "max_num_batched_tokens")),
    _rule("vllm", "Setting attention block size to",
          _f(r"Setting attention block size to\s*", r"(\d+) tokens", "block_size")),
    # --- SGLang (sglang.md section 6) ---
    _rule("sglang", "Load weight begin.", _f(r"avail mem=", _NUM + _GB, "load_begin_avail_gib")),
    _rule("sglang", "Load weight end.",
          _f(r"avail mem=", _NUM + _GB, "load_end_avail_gib"),
          _f(r"mem usage=", _NUM + _GB, "weights_gib")),
    _rule("sglang", ("KV Cache is allocated.", "KV Cache VA upper bound"),
          _f(r"dtype:\s*", r"([\w.]+),", "kv_alloc_dtype"),
          _f(r"#tokens:\s*", r"(\d+),", "kv_alloc_tokens"),
          _f(r"(?<![A-Za-z])K size:\s*", _NUM + _GB, "k_size_gib"),
          _f(r"(?<![A-Za-z])V size:\s*", _NUM + _GB, "v_size_gib"),
          _f(r"\bKV size:\s*", _NUM + _GB, "kv_size_gib")),
    _rule("sglang", "Use sliding window memory pool",
          _f(r"full_layer_tokens=", r"(\d+)(?=,|\s*$)", "swa_full_tokens"),
          _f(r"swa_layer_tokens=", r"(\d+)(?=,|\s|$)", "swa_tokens")),
    _rule("sglang", "SWAKVPool mem usage",
          _f(r"SWAKVPool mem usage:\s*", _NUM + _GB, "swa_pool_gib"),
          _f(r"swa size:\s*", r"(\d+),", "swa_tokens"),
          _f(r"full size:\s*", r"(\d+)(?=,|\s|$)", "swa_full_tokens")),
    _rule("sglang", "Mamba Cache is allocated.",
          _f(r"max_mamba_cache_size:\s*", r"(\d+),", "mamba_cache_size"),
          _f(r"conv_state size:\s*", _NUM + _GB, "mamba_conv_gib"),
          _f(r"(?<!_)ssm_state size:\s*", _NUM + _GB, "mamba_ssm_gib")),
    _rule("sglang", "Memory pool end.", _f(r"avail mem=", _NUM + _GB, "pool_end_avail_gib")),
    _rule("sglang", "max_total_num_tokens=",
          _f(r"max_total_num_tokens=", r"(\d+),", "max_total_num_tokens"),
          _f(r"\bchunked_prefill_size=", r"(-?\d+),", "chunked_prefill_size"),
          _f(r"\bmax_prefill_tokens=", r"(\d+),", "max_prefill_tokens"),
          _f(r"\bmax_running_requests=", r"(\d+),", "max_running_requests"),
          _f(r"\bcontext_len=", r"(\d+)(?=,|\s*$)", "context_len"),
          _f(r"available_gpu_mem=", _NUM + _GB, "available_gpu_mem_gib")),
    _rule("sglang", ("cuda graph begin", "CUDA graph begin"),
          _f(r"(?i:cuda graph begin)\..*?avail mem=", _NUM + _GB, "graph_begin_avail_gib")),
    _rule("sglang", ("cuda graph end", "CUDA graph end"),
          _f(r"(?i:cuda graph end)\..*?mem usage=", _NUM + _GB, "cuda_graph_gib"),
          _f(r"(?i:cuda graph end)\..*?avail mem=", _NUM + _GB, "graph_end_avail_gib")),
    _rule("sglang", "Init torch distributed ends", _f(r"mem usage=", _NUM + _GB, "dist_init_gib")),
    _rule("sglang", "chunked prefill size is adjusted",
          _f(r"chunked prefill size is adjusted from -?\d+ to\s*", r"(-?\d+)\b", "chunked_prefill_size")),
    # --- versions ---
    _rule("vllm", "vLLM API server version", _f(r"vLLM API server version\s*", r"v?(\d+\.\d+[\w.+-]*)", "version")),
    _rule("vllm", ("LLM engine (v", "LLM engine(v"),
          _f(r"Initializing an? (?:V1 )?LLM engine ?\(v", r"([\w.+-]+)\)", "version")),
    _rule("vllm", ("\u2584", "\u2588"),  # the block-letter banner of v0.11+: "▄▄ ▄█ █ █ ▀▄▀ █ version 0.19.0"
          _f(r"[\u2580-\u259f].*\bversion\s+", r"v?(\d+\.\d+[\w.+-]*)", "version")),
    _rule("vllm", ("vLLM version", "vllm version", "vllm=="),
          _f(r"\bvllm(?:==| version:?\s*v?)", r"(\d+\.\d+[\w.+-]*)", "version", flags=re.I)),
    _rule("sglang", ("sglang version", "SGLang version", "sglang==", "SGLang v", "sglang v"),
          _f(r"\bsglang(?:==| version[:=]?\s*v?| v)", r"(\d+\.\d+[\w.+-]*)", "version", flags=re.I)),
    # --- the GPU, where a log names it ---
    # (rules of no engine note no cut: their labels are common words)
    _rule(None, "device_name=", _f(r"device_name=", r"((?:NVIDIA|AMD|Tesla)_[\w-]+?)(?:,|\.json)", "gpu_name")),
    _rule(None, ("GPU 0:", "GPU 1:", "GPU 2:", "GPU 3:", "GPU 4:", "GPU 5:", "GPU 6:", "GPU 7:"),
          _f(r"\bGPU \d+:\s*", r"((?:NVIDIA|AMD|Tesla) [^()\n]*?[A-Za-z0-9])(?:\s*\(UUID|\s*$)", "gpu_name")),
    _rule(None, "NVIDIA ",  # an nvidia-smi table row: "|   0  NVIDIA H100 80GB HBM3          On  |"
          _f(r"^\|\s+\d+\s+", r"(NVIDIA [\w .-]*?[\w])\s{2,}(?:On|Off)\s", "gpu_name")),
    _rule(None, "GPU has compute capability",  # vLLM's bfloat16 refusal: "Your Tesla T4 GPU has compute …"
          _f(r"\bYour\s+", r"((?:NVIDIA |Tesla |GeForce |Quadro )?[\w -]+?) GPU has compute capability", "gpu_name")),
)

# every needle of every rule in one pattern: most lines of a log hold none, and are passed over in one search
_NEEDLE_RULES: dict[str, list[_Rule]] = {}
for _r in _RULES:
    for _n in _r.needles:
        _NEEDLE_RULES.setdefault(_n, []).append(_r)
_ANY_NEEDLE = re.compile("|".join(re.escape(n) for n in sorted(_NEEDLE_RULES, key=len, reverse=True)))

_SUGGESTION = re.compile(  # a line that advises a flag does not say how the engine was started
    r"\b(?:increase|decrease|try|consider|suggest\w*|recommend\w*|equivalent|instead|e\.g|for example)\b", re.I)

# --- launch lines: key=value lists and command-line flags --------------------------------------------------

# keys of vLLM's engine config line, its "non-default args" dict and argparse Namespace, and SGLang's ServerArgs
_ARG_FACTS: dict[str, str] = {
    "model": "model", "model_path": "model",
    "tensor_parallel_size": "tp", "tp_size": "tp",
    "pipeline_parallel_size": "pp", "pp_size": "pp",
    "data_parallel_size": "dp", "dp_size": "dp",
    "decode_context_parallel_size": "dcp",
    "dtype": "dtype", "kv_cache_dtype": "kv_cache_dtype", "quantization": "quantization",
    "block_size": "block_size", "page_size": "page_size",
    "max_model_len": "max_model_len", "max_seq_len": "max_model_len", "context_length": "context_len",
    "max_num_batched_tokens": "max_num_batched_tokens", "chunked_prefill_size": "chunked_prefill_size",
    "max_prefill_tokens": "max_prefill_tokens",
    "max_num_seqs": "max_num_seqs", "max_running_requests": "max_running_requests",
    "max_total_tokens": "max_total_tokens",
    "gpu_memory_utilization": "gpu_memory_utilization", "mem_fraction_static": "mem_fraction_static",
    "enable_prefix_caching": "enable_prefix_caching", "enforce_eager": "enforce_eager",
    "speculative_config": "speculative_config", "speculative_algorithm": "speculative_config",
    "kv_cache_memory_bytes": "kv_cache_memory_bytes",
    # SGLang's negative switches, read as the vLLM facts they turn off
    "disable_radix_cache": "!enable_prefix_caching", "disable_cuda_graph": "enforce_eager",
}

# (engine, where the list starts)
_ARG_LISTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("vllm", re.compile(r"LLM engine ?\(v[^)]*\) with config:\s*|\bwith config:\s*")),
    ("vllm", re.compile(r"non-default args:\s*\{")),
    ("vllm", re.compile(r"\bargs: Namespace\(")),
    ("sglang", re.compile(r"\bServerArgs\(|\bserver_args=\{")),
)
_ARG_NEEDLES = ("with config:", "non-default args:", "Namespace(", "ServerArgs(", "server_args={")

_PAIR_KEY = re.compile(r"""\s*(?:'(\w+)'\s*:\s*|"(\w+)"\s*:\s*|(\w+)=)""")

_FLAG_FACTS: dict[str, str] = {
    "tensor-parallel-size": "tp", "tp": "tp", "tp-size": "tp",
    "pipeline-parallel-size": "pp", "pp": "pp", "pp-size": "pp",
    "data-parallel-size": "dp", "dp": "dp", "dp-size": "dp",
    "max-model-len": "max_model_len", "context-length": "context_len",
    "gpu-memory-utilization": "gpu_memory_utilization", "mem-fraction-static": "mem_fraction_static",
    "kv-cache-dtype": "kv_cache_dtype", "dtype": "dtype", "quantization": "quantization",
    "block-size": "block_size", "page-size": "page_size",
    "max-num-seqs": "max_num_seqs", "max-running-requests": "max_running_requests",
    "max-num-batched-tokens": "max_num_batched_tokens", "chunked-prefill-size": "chunked_prefill_size",
    "max-total-tokens": "max_total_tokens",
    "model": "model", "model-path": "model",
    "kv-cache-memory-bytes": "kv_cache_memory_bytes", "kv-cache-memory": "kv_cache_memory_bytes",
    "speculative-config": "speculative_config", "speculative-algorithm": "speculative_config",
}
_SWITCH_FACTS: dict[str, tuple[str, bool]] = {  # flags that take no value
    "enforce-eager": ("enforce_eager", True), "disable-cuda-graph": ("enforce_eager", True),
    "enable-prefix-caching": ("enable_prefix_caching", True),
    "no-enable-prefix-caching": ("enable_prefix_caching", False),
    "disable-radix-cache": ("enable_prefix_caching", False),
}
_FLAG = re.compile(r"""(?<![\w-])--([a-z][a-z0-9-]*)(?:(?:=|\s+)('[^']*'|"[^"]*"|[^\s'"-][^\s'"]*|-?\d[\d.]*))?""")
# "vllm serve MODEL": a model is a Hub id or a path ("Restart vllm serve with --x" names none)
_SERVE = re.compile(r"\bvllm serve\s+((?=[^\s'\"]*[/\d])[^\s'\"-][^\s'\"]*|[.~][^\s'\"]*)")

# --- engines, workers, colour codes ------------------------------------------------------------------------

_MARKERS = re.compile(
    r"(?P<vllm>\bvLLM API server version\b|\((?:EngineCore|APIServer|VllmWorker|Worker_)\w*(?: rank=\d+)? pid="
    r"|\b(?:gpu_model_runner|gpu_worker|kv_cache_utils|llm_engine|arg_utils)\.py:\d+\]"
    r"|Automatically detected platform|\bvllm serve\b|\bvllm\.(?:entrypoints|engine|v1|worker)\b)"
    r"|(?P<sglang>\bserver_args=|\bServerArgs\(|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: (?:DP|TP|PP|EP)\d+)+\]"
    r"|\bsglang\.(?:launch_server|srt)\b|\bsglang serve\b)"
    r"|(?P<trt>TensorRT-LLM|\btensorrt_llm\b|\[TRT-LLM\]|\btrtllm-serve\b)"
    r"|(?P<llamacpp>\bllama_model_loader:|\bllama_kv_cache|\bllm_load_tensors:|\bllama_context:"
    r"|\bggml_cuda_init:|\bllama_new_context_with_model:|\bllama-server\b)"
    r"|(?P<tgi>\btext_generation_(?:launcher|router|server)\b|\btext-generation-launcher\b)"
    r"|(?P<ollama>\bollama\b|source=server\.go)"
    r"|(?P<lmdeploy>\blmdeploy\b)"
)
_OTHER_NAMES = {"trt": "TensorRT-LLM", "llamacpp": "llama.cpp", "tgi": "Text Generation Inference (TGI)",
                "ollama": "Ollama", "lmdeploy": "LMDeploy"}

_VLLM_PROC = re.compile(r"\((?P<name>[A-Za-z_][\w.-]*)(?P<rank> rank=\d+)? pid=(?P<pid>\d+)(?:, ip=[^)]*)?\)")
_SGLANG_PROC = re.compile(r"\[\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?P<ranks>(?: [A-Z][A-Z_]*\d+)+)\]")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_BARE_SGR = re.compile(r"\[\d{1,3}(?:;\d{1,3})*m(?![\]\w])")  # "[1;36m": a colour code whose ESC a paste lost


def _worker(line: str) -> str | None:
    m = _VLLM_PROC.search(line, 0, 200)
    if m:
        name = m["name"] + (m["rank"] or "")
        if "Worker" in name and not any(c.isdigit() for c in name):  # V0 workers carry no rank: the pid tells
            name += f" pid={m['pid']}"
        return name
    m = _SGLANG_PROC.search(line, 0, 200)
    return m["ranks"].strip() if m else None


def _excerpt(line: str, start: int, end: int) -> str:
    if len(line) <= 300:
        return line
    a, b = max(0, start - 100), min(len(line), end + 100)
    return ("\u2026" if a else "") + line[a:b] + ("\u2026" if b < len(line) else "")


# --- the reader --------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self) -> None:
        self.facts: dict[str, list[Fact]] = {}
        self.notes: list[str] = []
        self._more_notes = 0
        self._dropped: dict[str, int] = {}
        self.engine_lines = {e: 0 for e in (*ENGINES, *_OTHER_NAMES)}
        self.engine_first: dict[str, tuple[int, str]] = {}
        # a terminal that cuts lines cuts them all at one width: the longest lines, several, of different shapes
        self._width = 0
        self._at_width = 0
        self._shapes: set[str] = set()
        self._at_eol: list[tuple[Fact, int]] = []  # facts whose figure ends its line, with the line's length

    # recording

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self._more_notes += 1

    def add(self, name: str, raw: object, lineno: int, line: str, span: tuple[int, int], worker: str | None,
            *, converted: bool = False, eol: bool = False) -> bool:
        value = raw if converted else _convert(name, raw)
        if value is None:
            return False
        kept = self.facts.setdefault(name, [])
        if len(kept) >= MAX_FACTS_PER_NAME:
            self._dropped[name] = self._dropped.get(name, 0) + 1
            return True
        fact = Fact(name, value, lineno, _excerpt(line, *span), worker)
        kept.append(fact)
        if eol:  # nothing after the figure shows it is whole: unless the line was cut by a terminal (see finish)
            self._at_eol.append((fact, len(line)))
        return True

    def cut(self, name: str, lineno: int, line: str, span: tuple[int, int], worker: str | None, what: str) -> None:
        self.add("cut", name, lineno, line, span, worker)
        self.note(f"line {lineno}: the line is cut before its {what} ends; {name} not read from it")

    # one line

    def scan(self, line: str, lineno: int) -> None:
        line = line.rstrip()
        if len(line) >= self._width:
            if len(line) > self._width:
                self._width, self._at_width, self._shapes = len(line), 0, set()
            self._at_width += 1
            if len(self._shapes) < 4:
                self._shapes.add(re.sub(r"\d+", "", line))
        worker: str | None = None
        have_worker = False
        engines: set[str] = set()

        def who() -> str | None:
            nonlocal worker, have_worker
            if not have_worker:
                worker, have_worker = _worker(line), True
            return worker

        rules: list[_Rule] = []
        for needle in _ANY_NEEDLE.finditer(line):
            rules.extend(r for r in _NEEDLE_RULES[needle.group(0)] if r not in rules)
        for rule in rules:
            hit = False
            for fld in rule.fields:
                m = fld.full.search(line)
                if m:
                    for i, name in enumerate(fld.names, 1):
                        hit |= self.add(name, m.group(i), lineno, line, m.span(), who(), eol=m.end(i) >= len(line))
                    continue
                label = fld.label.search(line) if rule.engine else None
                if label is None:
                    continue
                hit = True
                tail = line[label.end():].rstrip()
                what = label.group(0).strip().rstrip(":=(") or fld.names[-1]
                if len(tail) <= _CUT_TAIL:
                    for name in fld.names:
                        if name != "kv_cache_device":
                            self.cut(name, lineno, line, label.span(), who(), f"'{what}' figure")
                else:
                    self.note(f"line {lineno}: '{what}' in a form kvcalc does not read")
            if hit and rule.engine:
                engines.add(rule.engine)

        if any(n in line for n in _ARG_NEEDLES):
            for engine, start in _ARG_LISTS:
                m = start.search(line)
                if m and self._pairs(line, m.end(), lineno, who()):
                    engines.add(engine)
                    break
        if "--" in line and not _SUGGESTION.search(line):
            self._flags(line, lineno, who)
        if "vllm serve" in line:
            m = _SERVE.search(line)
            if m:
                self.add("model", m.group(1).strip("'\""), lineno, line, m.span(1), who(), eol=m.end(1) >= len(line))

        mark = _MARKERS.search(line)
        if mark:
            engines.add(mark.lastgroup or "")
        for engine in engines:
            if engine in self.engine_lines:
                self.engine_lines[engine] += 1
                self.engine_first.setdefault(engine, (lineno, line))

    def _pairs(self, line: str, pos: int, lineno: int, worker: str | None) -> bool:
        """Read ``key=value, …`` or ``'key': value, …`` from pos; True when a known key was read."""
        found = False
        n = len(line)
        while pos < n:
            m = _PAIR_KEY.match(line, pos)
            if m is None:
                comma = line.find(",", pos)
                if comma < 0:
                    break
                pos = comma + 1
                continue
            key = m.group(1) or m.group(2) or m.group(3)
            i, depth, quote = m.end(), 0, ""
            while i < n:
                c = line[i]
                if quote:
                    if c == "\\":
                        i += 1
                    elif c == quote:
                        quote = ""
                elif c in "'\"":
                    quote = c
                elif c in "([{":
                    depth += 1
                elif c in ")]}":
                    if depth == 0:
                        break
                    depth -= 1
                elif c == "," and depth == 0:
                    break
                i += 1
            raw = line[m.end():i].strip()
            ended = i < n and not quote  # a comma or the list's closing bracket followed the value
            target = _ARG_FACTS.get(key)
            if target:
                name = target.lstrip("!")
                if not ended:
                    self.cut(name, lineno, line, (m.start(), n), worker, f"'{key}' value")
                else:
                    value = _literal(raw)
                    if target.startswith("!") and isinstance(value, bool):
                        value = not value
                    found |= self.add(name, value, lineno, line, (m.start(), i), worker)
            if i >= n or line[i] in ")]}":
                break
            pos = i + 1
        return found

    def _flags(self, line: str, lineno: int, who: Callable[[], str | None]) -> None:
        for m in _FLAG.finditer(line):
            flag, raw = m.group(1), m.group(2)
            if flag in _SWITCH_FACTS:
                name, value = _SWITCH_FACTS[flag]
                self.add(name, value, lineno, line, m.span(), who(), converted=True)
            elif flag in _FLAG_FACTS and raw:
                raw = raw.strip("'\"")
                if FACTS[_FLAG_FACTS[flag]] in (_INT, _DEC):
                    raw = raw.rstrip(".,;:)")
                self.add(_FLAG_FACTS[flag], raw, lineno, line, m.span(), who(), eol=m.end(2) >= len(line))

    # the end

    def finish(self, lines_read: int, truncated: bool, extra_notes: list[str]) -> ParsedLog:
        if self._at_width >= 3 and len(self._shapes) >= 2 and self._width >= 40:
            cut = [fact for fact, width in self._at_eol if width == self._width]
            if cut:
                self.note(f"{self._at_width:,} lines are exactly {self._width} characters long, the longest in the "
                          "log: read as cut by a terminal, so figures that end them are not read")
            for fact in cut:
                self.facts[fact.name] = [f for f in self.facts[fact.name] if f is not fact]
                if not self.facts[fact.name]:
                    del self.facts[fact.name]
                self.add("cut", fact.name, fact.line, fact.text, (0, 0), fact.worker)
        for text in extra_notes:
            self.note(text)
        for name, count in self._dropped.items():
            self.note(f"{count:,} more '{name}' figures not kept (only the first {MAX_FACTS_PER_NAME})")
        engine = None
        ours = {e: self.engine_lines[e] for e in ENGINES if self.engine_lines[e]}
        others = [e for e in _OTHER_NAMES if self.engine_lines[e]]
        if ours:
            engine = max(ours, key=lambda e: (ours[e], -self.engine_first[e][0]))
            lineno, line = self.engine_first[engine]
            self.facts = {"engine": [Fact("engine", engine, lineno, _excerpt(line, 0, 0), _worker(line))],
                          **self.facts}
            if len(ours) > 1:
                self.note("lines of both vLLM and SGLang: read as a " + ("vLLM" if engine == "vllm" else "SGLang")
                          + f" log ({ours['vllm']:,} vLLM lines, {ours['sglang']:,} SGLang lines)")
        elif others:
            best = max(others, key=lambda e: self.engine_lines[e])
            self.note(f"this looks like a {_OTHER_NAMES[best]} log; kvcalc explains vLLM and SGLang start-up logs")
        elif lines_read == 0:
            self.note("the log is empty")
        else:
            self.note("no vLLM or SGLang start-up lines found")
        if self._more_notes:
            self.notes.append(f"{self._more_notes:,} more notes not shown")
        return ParsedLog(engine, self.facts, lines_read, truncated, self.notes)


def _literal(raw: str) -> object:
    """A Python or JSON literal as printed in an argument list."""
    if raw in ("None", "null", ""):
        return None
    if raw in ("True", "true"):
        return True
    if raw in ("False", "false"):
        return False
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


# --- streaming ---------------------------------------------------------------------------------------------


class _Prepend:
    """A binary reader that gives back bytes already read before the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self.head:
            out = self.head if size < 0 else self.head[:size]
            self.head = self.head[len(out):]
            return out
        return self.rest.read(size)


def _open(source: str | os.PathLike[str] | BinaryIO | TextIO) -> tuple[Any, str, bool]:
    """(reader, label, whether to close it)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
        except FileNotFoundError:
            raise LogError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise LogError(f"{label} is a folder, not a log file") from None
        except PermissionError:
            raise LogError(f"{label}: permission denied") from None
        except OSError as e:
            raise LogError(f"{label}: cannot open ({e.strerror or e})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            hint = "; pipe the log to standard input instead" if stat.S_ISFIFO(mode) else ""
            raise LogError(f"{label} is {kind}, not a log file{hint}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), label, True
    reader = getattr(source, "buffer", source)  # a text stream's bytes, so undecodable bytes are replaced
    name = getattr(source, "name", None)
    return reader, name if isinstance(name, str) and not name.startswith("<") else "standard input", False


def _chunks(reader: Any, label: str, notes: list[str]) -> Iterator[bytes]:
    """The log's bytes in chunks, decompressed and recoded to UTF-8 where it was gzip or UTF-16."""
    first = reader.read(CHUNK)
    if isinstance(first, str):  # a text stream without a byte buffer (StringIO)
        yield first.encode("utf-8", "replace")
        while chunk := reader.read(CHUNK):
            yield chunk.encode("utf-8", "replace")
        return
    if first[:2] == b"\x1f\x8b":
        notes.append("read as gzip-compressed")
        unzipped = gzip.GzipFile(fileobj=_Prepend(first, reader))  # type: ignore[arg-type]
        got = False
        try:
            while chunk := unzipped.read(CHUNK):
                got = True
                yield chunk
        except (OSError, EOFError, zlib.error):
            if not got:
                raise LogError(f"{label} is not a readable gzip file") from None
            notes.append("the gzip stream ends early; what came before was read")
        return
    if first[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # PowerShell's "> log.txt" writes UTF-16
        notes.append("read as UTF-16")
        decoder = codecs.getincrementaldecoder("utf-16")("replace")
        chunk = first
        while chunk:
            yield decoder.decode(chunk).encode("utf-8", "replace")
            chunk = reader.read(CHUNK)
        yield decoder.decode(b"", final=True).encode("utf-8", "replace")
        return
    chunk = first
    while chunk:
        yield chunk
        chunk = reader.read(CHUNK)


def _check_text(head: bytes, label: str) -> None:
    if b"\x00" in head:
        raise LogError(f"{label} is binary (NUL bytes in its first 64 KiB), not a text log")
    text = head.decode("utf-8", "replace")
    if len(text) >= 64:
        bad = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\x1b\x08\x0c"))
        if bad * 10 > len(text):
            raise LogError(f"{label} is binary (mostly bytes that are not UTF-8 text), not a text log")


def _lines(chunks: Iterator[bytes], label: str, state: dict[str, Any]) -> Iterator[bytes]:
    """Complete lines, each capped at MAX_LINE_BYTES; stops at MAX_LINES or MAX_BYTES."""
    buf = bytearray()
    dropping = False  # inside a line past its cap
    total = 0
    head = bytearray()
    checked = False
    count = 0
    for chunk in chunks:
        if total + len(chunk) > MAX_BYTES:
            chunk = chunk[:MAX_BYTES - total]
            state["stopped"] = "bytes"
        total += len(chunk)
        if not checked:
            head += chunk[:SNIFF_BYTES - len(head)]
            if len(head) >= SNIFF_BYTES:
                _check_text(bytes(head), label)
                checked = True
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not dropping:
                room = MAX_LINE_BYTES - len(buf)
                if len(piece) > room:
                    buf += piece[:room]
                    dropping = True
                    state["overlong"] += 1
                else:
                    buf += piece
            if end < 0:
                break
            count += 1
            yield bytes(buf)
            buf.clear()
            dropping = False
            start = end + 1
            if count >= MAX_LINES:
                if start < len(chunk) or next(chunks, b""):
                    state["stopped"] = "lines"
                return
        if state["stopped"]:
            return  # the partial line at the byte cap is not read: it was cut by kvcalc, not by the engine
    if not checked:
        _check_text(bytes(head), label)
    if buf or dropping:
        yield bytes(buf)


def parse_log(source: str | os.PathLike[str] | BinaryIO | TextIO) -> ParsedLog:
    """Read a start-up log from a path or an open file (standard input) into facts, streaming."""
    reader, label, close = _open(source)
    reading = _Reader()
    extra: list[str] = []
    state: dict[str, Any] = {"overlong": 0, "stopped": None}
    lineno = 0
    try:
        for raw in _lines(_chunks(reader, label, extra), label, state):
            lineno += 1
            text = raw.decode("utf-8", "replace")
            if "\x1b" in text:
                text = _ANSI.sub("", text)
            if "m" in text and "[" in text and _BARE_SGR.search(text):
                text = _BARE_SGR.sub("", text)
            text = text.rstrip("\r\n")
            if "\r" in text:  # a progress bar redrawn in place: each redraw is read, under one line number
                for part in text.split("\r"):
                    if part.strip():
                        reading.scan(part, lineno)
            elif text.strip():
                reading.scan(text, lineno)
    except OSError as e:
        raise LogError(f"{label}: cannot read ({e.strerror or e})") from None
    finally:
        if close:
            reader.close()
    if state["overlong"]:
        extra.append(f"{state['overlong']:,} lines longer than {MAX_LINE_BYTES // 1024} KiB; "
                     "only their first 64 KiB were read")
    if state["stopped"] == "lines":
        extra.append(f"stopped reading after {MAX_LINES:,} lines; the rest of the log was not read")
    elif state["stopped"] == "bytes":
        extra.append(f"stopped reading after {MAX_BYTES // 1024**2} MiB; the rest of the log was not read")
    return reading.finish(lineno, state["stopped"] is not None, extra)
