"""A deployment: GPUs and their shape, the engine and its version, and its switches.

Resolved once from what the user typed, then passed to ``fit``, ``compare --gpu``, ``plot
--gpu-lines``, ``--speed`` and ``verify --tp``. No engine arithmetic here: the shape rules
(which TP a model allows, how layers split over pipeline stages) and the one rule that turns
``--gpus N`` into a shape (``capacity.fit.best_shape``) are the only logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

from kvcalc.spec import DenseAttention, ModelSpec, NoKVLayer

GiB = 1024**3
DEFAULT_MEMORY = 80 * GiB  # engine defaults (batch sizes) when no GPU is given


class FitUsageError(ValueError):
    """An option combination that cannot describe a deployment (exit 2 at the CLI)."""


@dataclass(frozen=True)
class Switches:
    """Engine switches that change the count; None: the engine's default."""

    async_scheduling: bool | None = None  # vLLM --async-scheduling / --no-async-scheduling
    prefix_caching: bool | None = None  # vLLM --enable-prefix-caching; SGLang's radix cache
    enforce_eager: bool = False  # vLLM --enforce-eager; SGLang --disable-cuda-graph
    speculative_tokens: int = 0  # vLLM num_speculative_tokens
    mamba_cache_mode: str | None = None  # vLLM --mamba-cache-mode: none | align | all


@dataclass(frozen=True)
class Deployment:
    engine: object  # an engines.base.Engine
    memory: int | None  # bytes per GPU as CUDA reports them; None: no GPU (what requests need)
    gpu_key: str | None = None
    gpu_name: str | None = None
    smi_memory: int | None = None  # nvidia-smi's total, where the catalog has it (SGLang's fraction)
    tp: int = 1
    pp: int = 1
    replicas: int = 1
    gpu_util: Fraction | None = None  # None: the engine's default
    reserve: int | None = None  # None: the engine's estimate
    block_size: int | None = None
    max_batched_tokens: int | None = None
    kv_dtype: str | None = None
    platform: str = "cuda"  # cuda | cpu (vLLM's CPU platform: no async scheduling, 128-token blocks, fp32 SSM)
    switches: Switches = field(default_factory=Switches)
    shape_note: str | None = None  # why this shape, when kvcalc chose it
    shared_prefix: int = 0  # tokens every request shares (a system prompt): held once with prefix caching
    speculative: bool = False  # a draft model or MTP layers run beside the target
    max_seqs: int | None = None  # requests per engine instance as launched (-n per replica); None: the engine's default

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    @property
    def memory_or_default(self) -> int:
        return self.memory if self.memory is not None else DEFAULT_MEMORY

    def with_shape(self, tp: int, pp: int, replicas: int = 1, note: str | None = None) -> Deployment:
        return replace(self, tp=tp, pp=pp, replicas=replicas, shape_note=note)

    def describe(self) -> dict:
        return {"gpu": self.gpu_key, "gpu_memory_bytes": self.memory, "gpus": self.gpus, "tp": self.tp,
                "pp": self.pp, "replicas": self.replicas, "engine": self.engine.name,
                "engine_version": self.engine.version, "platform": self.platform,
                "async_scheduling": self.switches.async_scheduling, "prefix_caching": self.switches.prefix_caching,
                "enforce_eager": self.switches.enforce_eager,
                "speculative_tokens": self.switches.speculative_tokens,
                "mamba_cache_mode": self.switches.mamba_cache_mode, "shape_note": self.shape_note,
                "shared_prefix": self.shared_prefix, "max_seqs": self.max_seqs}


def deployment(engine: str = "vllm", memory: int | None = None, *, version: str | None = None, gpu=None,
               tp: int = 1, pp: int = 1, gpus: int | None = None, **fields) -> Deployment:
    """A deployment from plain values (``gpu``: a catalog entry, giving its key, name and totals;
    ``gpus``: in all, a multiple of tp x pp)."""
    from kvcalc.capacity import engines

    if gpus is not None and gpus % (tp * pp):
        raise FitUsageError(f"--gpus {gpus} is not a multiple of tp x pp = {tp * pp}")
    replicas = 1 if gpus is None else gpus // (tp * pp)
    if gpu is not None:
        fields.setdefault("gpu_key", gpu.key)
        fields.setdefault("gpu_name", gpu.name)
        fields.setdefault("smi_memory", gpu.smi_memory_bytes)
        memory = gpu.memory_bytes if memory is None else memory
    return Deployment(engine=engines.get(engine, version), memory=memory, tp=tp, pp=pp, replicas=replicas, **fields)


def check_shape(spec: ModelSpec, tp: int, pp: int) -> None:
    heads = {spec.attention_of(name).heads for name, kind in spec.layers.kinds.items()
             if not isinstance(kind, NoKVLayer)}
    for h in sorted(heads):
        if h % tp:
            raise FitUsageError(f"TP {tp} does not divide the {h} attention heads of {spec.name}; "
                                f"tensor parallelism splits heads evenly (try {_divisors_hint(h)})")
    for kv in sorted(kv_heads(spec)):
        if kv % tp and tp % kv:
            raise FitUsageError(f"TP {tp} cannot split {spec.name}'s {kv} KV heads: engines need the KV heads "
                                f"divided evenly or each replicated evenly (kv_heads % tp == 0 or tp % kv_heads == "
                                f"0; vLLM's QKVParallelLinear); try {_divisors_hint(kv) or 1} or a multiple of {kv}")
    if pp > spec.layers.count:
        raise FitUsageError(f"--pp {pp} is more than the {spec.layers.count} layers of {spec.name}")


def kv_heads(spec: ModelSpec) -> set[int]:
    return {a.kv_heads for name, kind in spec.layers.kinds.items()
            if not isinstance(kind, NoKVLayer) and isinstance(a := spec.attention_of(name), DenseAttention)}


def tp_allowed(spec: ModelSpec, tp: int) -> bool:
    """TP splits every kind's attention heads, and its KV heads evenly or replicates them evenly."""
    heads = {spec.attention_of(n).heads for n, k in spec.layers.kinds.items() if not isinstance(k, NoKVLayer)}
    return all(h % tp == 0 for h in heads) and all(kv % tp == 0 or tp % kv == 0 for kv in kv_heads(spec))


def _divisors_hint(n: int) -> str:
    small = [d for d in (1, 2, 4, 8, 16, 32, 64) if n % d == 0]
    return ", ".join(str(d) for d in small)
