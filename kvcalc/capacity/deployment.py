"""A deployment: GPUs and their shape, the engine and its version, and its switches.

Resolved once from what the user typed, then passed to ``fit``, ``compare --gpu``, ``plot
--gpu-lines``, ``--speed`` and ``verify --tp``. No engine arithmetic here: the shape rules
(which TP a model allows, how layers split over pipeline stages) and the one rule that turns
``--gpus N`` into a shape (``capacity.fit.best_shape``) are the only logic.
"""

from fractions import Fraction
from typing import NamedTuple

from kvcalc.spec import DenseAttention, ModelSpec, NoKVLayer

GiB = 1024**3
DEFAULT_MEMORY = 80 * GiB  # engine defaults (batch sizes) when no GPU is given


class FitUsageError(ValueError):
    """An option combination that cannot describe a deployment (exit 2 at the CLI)."""


class Switches(NamedTuple):
    """Engine switches that change the count; None: the engine's default."""

    async_scheduling: bool | None = None  # vLLM --async-scheduling / --no-async-scheduling
    prefix_caching: bool | None = None  # vLLM --enable-prefix-caching; SGLang's radix cache
    enforce_eager: bool = False  # vLLM --enforce-eager; SGLang --disable-cuda-graph
    speculative_tokens: int = 0  # vLLM num_speculative_tokens
    mamba_cache_mode: str | None = None  # vLLM --mamba-cache-mode: none | align | all
    cuda_graph_max_bs: int | None = None  # SGLang --cuda-graph-max-bs-decode; vLLM max_cudagraph_capture_size


class Deployment(NamedTuple):
    engine: object  # an engines.base.Engine
    memory: int | None  # bytes per GPU as CUDA reports them; None: no GPU (what requests need)
    gpu_key: str | None = None
    gpu_name: str | None = None
    smi_memory: int | None = None  # nvidia-smi's total, where the catalog has it (SGLang's fraction)
    compute_capability: str | None = None  # "9.0", "10.0": which kernels (nvfp4 KV) can run; None: unknown
    dense_flops: tuple = (None, None)  # the GPU's dense bf16 and fp8 peak FLOP/s (catalog); None: unknown
    tp: int = 1
    pp: int = 1
    replicas: int = 1
    dp: int = 1  # data-parallel attention ranks: vLLM --data-parallel-size (whole TP groups), SGLang --attn-dp-size
    ep: int = 1  # expert-parallel size as the engine takes it (vLLM: tp x dp with --enable-expert-parallel)
    dcp: int = 1  # vLLM --decode-context-parallel-size: one request's KV interleaved over dcp ranks of the TP group
    gpu_util: Fraction | None = None  # None: the engine's default
    reserve: int | None = None  # None: the engine's estimate
    block_size: int | None = None
    max_batched_tokens: int | None = None
    kv_dtype: str | None = None
    platform: str = "cuda"  # cuda | cpu (vLLM's CPU platform: no async scheduling, 128-token blocks, fp32 SSM)
    switches: Switches = Switches()
    shape_note: str | None = None  # why this shape, when kvcalc chose it
    searched_gpus: int | None = None  # --gpus N when kvcalc chose the shape (layouts are compared on N)
    shared_prefix: int = 0  # tokens every request shares (a system prompt): held once with prefix caching
    speculative: bool = False  # a draft model or MTP layers run beside the target
    mtp_layers: int = 0  # MTP modules served with the model (vLLM's method "mtp", num_nextn_predict_layers)
    max_seqs: int | None = None  # requests per engine instance as launched (-n per replica); None: the engine's default
    nodes: int | None = None  # --nodes M: the GPUs are M nodes of gpus_per_node (capacity/nodes.py)
    gpus_per_node: int | None = None
    nodes_per_instance: int = 1  # nodes one engine instance spans (vLLM --nnodes)

    @property
    def gpus(self) -> int:
        return self.instance_gpus * self.replicas

    @property
    def instance_gpus(self) -> int:
        """GPUs of one engine instance: vLLM's DP ranks are whole TP x PP groups; SGLang's attention
        DP runs inside the TP group and adds none (server_args.py compute_world_size)."""
        return self.tp * self.pp * (self.dp if self.engine.dp_adds_gpus else 1)

    @property
    def attention_tp(self) -> int:
        """Ranks one attention layer's heads are split over: TP for vLLM, TP / DP for SGLang."""
        return self.engine.attention_tp(self)

    @property
    def ranks(self) -> int:
        """KV pools that hold requests of their own: data-parallel ranks times replicas."""
        return self.dp * self.replicas

    @property
    def memory_or_default(self) -> int:
        return self.memory if self.memory is not None else DEFAULT_MEMORY

    def with_shape(self, tp: int, pp: int, replicas: int = 1, note: str | None = None, **layout) -> "Deployment":
        """Another shape; ``layout``: dp, ep, dcp (kept from this deployment unless given)."""
        return self._replace(tp=tp, pp=pp, replicas=replicas, shape_note=note, **layout)

    def describe(self) -> dict:
        return {"gpu": self.gpu_key, "gpu_memory_bytes": self.memory, "gpus": self.gpus, "tp": self.tp,
                "pp": self.pp, "replicas": self.replicas, "dp": self.dp, "ep": self.ep, "dcp": self.dcp,
                "attention_tp": self.attention_tp, "engine": self.engine.name,
                "engine_version": self.engine.version, "platform": self.platform,
                "async_scheduling": self.switches.async_scheduling, "prefix_caching": self.switches.prefix_caching,
                "enforce_eager": self.switches.enforce_eager,
                "speculative_tokens": self.switches.speculative_tokens,
                "mamba_cache_mode": self.switches.mamba_cache_mode,
                "cuda_graph_max_bs": self.switches.cuda_graph_max_bs, "shape_note": self.shape_note,
                "shared_prefix": self.shared_prefix, "max_seqs": self.max_seqs, "nodes": self.nodes,
                "gpus_per_node": self.gpus_per_node, "nodes_per_instance": self.nodes_per_instance}


def deployment(engine: str = "vllm", memory: int | None = None, *, version: str | None = None, gpu=None,
               tp: int = 1, pp: int = 1, gpus: int | None = None, **fields) -> Deployment:
    """A deployment from plain values (``gpu``: a catalog entry, giving its key, name and totals;
    ``gpus``: in all, a multiple of tp x pp)."""
    from kvcalc.capacity import engines

    chosen = engines.get(engine, version)
    dp = fields.get("dp", 1)
    world = tp * pp * (dp if chosen.dp_adds_gpus else 1)
    if gpus is not None and gpus % world:
        what = "tp x pp x dp" if world != tp * pp else "tp x pp"
        raise FitUsageError(f"--gpus {gpus} is not a multiple of {what} = {world}")
    replicas = 1 if gpus is None else gpus // world
    if gpu is not None:
        fields.setdefault("gpu_key", gpu.key)
        fields.setdefault("gpu_name", gpu.name)
        fields.setdefault("smi_memory", gpu.smi_memory_bytes)
        fields.setdefault("compute_capability", gpu.compute_capability)
        fields.setdefault("dense_flops", (gpu.dense_bf16_flops, gpu.dense_fp8_flops))
        memory = gpu.memory_bytes if memory is None else memory
    return Deployment(engine=chosen, memory=memory, tp=tp, pp=pp, replicas=replicas, **fields)


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
    for kind in {k for k in spec.layers.kinds.values() if isinstance(k, NoKVLayer) and k.conv_channels}:
        if kind.conv_channels % tp:  # a state layer's mixer splits its channels over TP (column-parallel)
            raise FitUsageError(f"TP {tp} does not divide the {kind.conv_channels:,} channels of {spec.name}'s "
                                f"{kind.mixer or 'state'} layers; engines split a mixer's channels evenly over TP "
                                f"(vLLM's MergedColumnParallelLinear); try {_divisors_hint(kind.conv_channels)}")
    if pp > spec.layers.count:
        raise FitUsageError(f"--pp {pp} is more than the {spec.layers.count} layers of {spec.name}")


def kv_heads(spec: ModelSpec) -> set[int]:
    return {a.kv_heads for name, kind in spec.layers.kinds.items()
            if not isinstance(kind, NoKVLayer) and isinstance(a := spec.attention_of(name), DenseAttention)}


def tp_allowed(spec: ModelSpec, tp: int) -> bool:
    """TP splits every kind's attention heads, and its KV heads evenly or replicates them evenly."""
    heads = {spec.attention_of(n).heads for n, k in spec.layers.kinds.items() if not isinstance(k, NoKVLayer)}
    channels = {k.conv_channels for k in spec.layers.kinds.values() if isinstance(k, NoKVLayer) and k.conv_channels}
    return (all(h % tp == 0 for h in heads) and all(kv % tp == 0 or tp % kv == 0 for kv in kv_heads(spec))
            and all(c % tp == 0 for c in channels))


def _divisors_hint(n: int) -> str:
    small = [d for d in (1, 2, 4, 8, 16, 32, 64) if n % d == 0]
    return ", ".join(str(d) for d in small)


def layout_shape(d: Deployment, gpus: int) -> Deployment:
    """--gpus N with --dp, --ep or --dcp and no --tp: the TP that makes one instance of N GPUs (vLLM:
    N / (dp x pp), its DP ranks being whole TP groups; SGLang: N / pp, attention DP inside it)."""
    per = d.pp * (d.dp if d.engine.dp_adds_gpus else 1)
    if gpus % per:
        raise FitUsageError(f"--gpus {gpus} is not a multiple of " + ("dp x pp" if d.engine.dp_adds_gpus else "pp")
                            + f" = {per}")
    tp = gpus // per
    return d.with_shape(tp, d.pp, 1, f"--tp not given: {gpus} GPUs in one instance, TP {tp}", searched_gpus=gpus)


def check_layout(spec: ModelSpec, d: Deployment) -> None:
    """DP, EP and DCP as the engine allows them (docs/engines/parallel.md); one line per rule broken."""
    for name, value in (("dp", d.dp), ("ep", d.ep), ("dcp", d.dcp)):
        if value < 1:
            raise FitUsageError(f"--{name} {value} must be at least 1")
    if d.ep > 1 and not has_routed_experts(spec):
        raise FitUsageError(f"--ep {d.ep} divides routed experts over GPUs, and {spec.name} has none "
                            "(expert parallelism needs a mixture-of-experts model)")
    d.engine.check_layout(spec, d)


def has_routed_experts(spec: ModelSpec) -> bool:
    return spec.weights is not None and spec.weights.moe is not None and spec.weights.moe.experts > 0
