"""What fits on which GPUs: weights, reserve and KV per GPU, counted as an engine counts them.

Pure integer arithmetic on a spec (no torch, no terminal). ``fit()`` answers for one shape
(TP x PP x replicas): the KV budget per GPU, the pages it holds, how many requests of
``context`` tokens fit at once, the longest single request, and the smallest GPU count
that holds one request. The engine rules live in ``engines.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction

from kvcalc.capacity import engines as eng
from kvcalc.capacity.params import ParamCount, parameter_count
from kvcalc.capacity.weights import weights_bytes as bytes_at
from kvcalc.dtypes import DTYPE_BITS
from kvcalc.errors import KvcalcError
from kvcalc.spec import DenseAttention, MLAAttention, ModelSpec, NoKVLayer

GiB = 1024**3
RUNTIME_RESERVE = GiB  # CUDA graphs, allocator slack, communication buffers: an estimate
MAX_SHAPE_GPUS = 512


class FitUsageError(ValueError):
    """An option combination that cannot describe a deployment (exit 2 at the CLI)."""


@dataclass(frozen=True)
class LayerType:
    """The layers on one GPU that share a charge rule: a kind name with its span and widths."""

    name: str
    kind: str  # full | sliding | chunked | none
    span: int | None
    layers: int
    token_bits: int  # one token in one layer on one GPU, scales included (0 for no-KV layers)
    state_bytes: int  # one request's constant state in one no-KV layer on one GPU


@dataclass(frozen=True)
class Capacity:
    """What one GPU's budget holds for one stage's layers."""

    block_size: int
    blocks: int
    tokens: int
    per_token_bytes: int
    state_bytes_per_request: int
    max_concurrency: int
    concurrency_exact: Fraction  # blocks / blocks one request needs (what vLLM logs)
    max_context: int  # longest single request, capped at the context limit searched
    request_bytes: int  # what one request of the context takes from the pool, pages and states
    groups: tuple[dict, ...] = ()  # vLLM's KV-cache groups: type, layers, groups, pages per request
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitResult:
    model: str
    engine: str
    gpu: str | None
    gpu_memory_bytes: int | None  # None: no GPU given (backwards mode: what N requests need)
    gpus: int
    tp: int
    pp: int
    replicas: int
    weights_dtype: str
    kv_dtype: str
    context: int
    block_size: int
    max_batched_tokens: int
    gpu_util: float
    parameters: int | None
    active_parameters: int | None
    weights_source: str
    weights_bytes: int
    weights_bytes_per_gpu: int
    reserve_bytes_per_gpu: int
    reserve_estimated: bool
    reserve_parts: dict
    kv_budget_bytes_per_gpu: int | None
    kv_heads_per_gpu: int | None
    kv_replication: float
    kv_bytes_per_token_per_gpu: int
    state_bytes_per_request_per_gpu: int
    kv_blocks_per_gpu: int | None
    kv_tokens: int | None
    kv_bytes_per_request_per_gpu: int
    kv_groups: list
    max_concurrency: int | None
    total_concurrency: int | None
    max_context: int | None
    model_max_context: int
    fits: bool | None
    min_gpus: int | None
    min_gpus_shape: dict | None  # {gpus, tp, pp, replicas}: the fewest GPUs that hold the requests asked for
    concurrency: int | None  # requests asked for (backwards mode), else None; replicas share them
    required_kv_bytes_per_gpu: int  # KV the asked-for requests (default: one) need on one GPU, as the engine pages it
    required_bytes_per_gpu: int  # that plus weights and reserve
    required_gpu_util: float | None  # the smallest --gpu-util (two decimals) that holds them; None if none does
    engine_log_kv_tokens: int | None
    engine_log_max_concurrency: float | None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        data["notes"] = list(self.notes)
        return data


def serving_dtype(dtype: str) -> str:
    """Engines serve float32 checkpoints in bf16 (vLLM's --dtype auto on GPUs that have it)."""
    return "bf16" if dtype == "fp32" else dtype


def check_shape(spec: ModelSpec, tp: int, pp: int, gpus: int | None) -> None:
    heads = {spec.attention_of(name).heads for name, kind in spec.layers.kinds.items()
             if not isinstance(kind, NoKVLayer)}
    for h in sorted(heads):
        if h % tp:
            raise FitUsageError(f"TP {tp} does not divide the {h} attention heads of {spec.name}; "
                                f"tensor parallelism splits heads evenly (try {_divisors_hint(h)})")
    for kv in sorted(_kv_heads(spec)):
        if kv % tp and tp % kv:
            raise FitUsageError(f"TP {tp} cannot split {spec.name}'s {kv} KV heads: engines need the KV heads "
                                f"divided evenly or each replicated evenly (kv_heads % tp == 0 or tp % kv_heads == "
                                f"0; vLLM's QKVParallelLinear); try {_divisors_hint(kv) or 1} or a multiple of {kv}")
    if pp > spec.layers.count:
        raise FitUsageError(f"--pp {pp} is more than the {spec.layers.count} layers of {spec.name}")
    if gpus is not None and gpus % (tp * pp):
        raise FitUsageError(f"--gpus {gpus} is not a multiple of tp x pp = {tp * pp}")


def _kv_heads(spec: ModelSpec) -> set[int]:
    return {a.kv_heads for name, kind in spec.layers.kinds.items()
            if not isinstance(kind, NoKVLayer) and isinstance(a := spec.attention_of(name), DenseAttention)}


def tp_allowed(spec: ModelSpec, tp: int) -> bool:
    """TP splits every kind's attention heads, and its KV heads evenly or replicates them evenly."""
    heads = {spec.attention_of(n).heads for n, k in spec.layers.kinds.items() if not isinstance(k, NoKVLayer)}
    return all(h % tp == 0 for h in heads) and all(kv % tp == 0 or tp % kv == 0 for kv in _kv_heads(spec))


def _divisors_hint(n: int) -> str:
    small = [d for d in (1, 2, 4, 8, 16, 32, 64) if n % d == 0]
    return ", ".join(str(d) for d in small)


def stage_layers(count: int, pp: int) -> list[range]:
    """vLLM's get_pp_indices: equal shares, the remainder to the stages before the last."""
    sizes = [count // pp] * pp
    for i in range(2, count % pp + 2):
        sizes[-i] += 1
    ranges, start = [], 0
    for size in sizes:
        ranges.append(range(start, start + size))
        start += size
    return ranges


def _token_bits(attention, tp: int, engine: eng.Engine, kv_dtype: str, mla_layout: str = "latent") -> int:
    bits = DTYPE_BITS[kv_dtype]
    if isinstance(attention, MLAAttention):
        # DeepSeek-V3.2's indexer keys: one key per token, whole on every GPU of the group (the
        # reference code's wk is not split; vLLM caches it as an MLA spec of one head)
        index = attention.indexer.bits_per_token(kv_dtype) if attention.indexer else 0
        if mla_layout == "expanded":  # per-head K and V, split over TP like dense heads
            return attention.kv_elements_per_token("expanded") // tp * bits + index
        return (attention.kv_lora_rank + attention.qk_rope_head_dim) * bits + index
    assert isinstance(attention, DenseAttention)
    heads = eng.kv_heads_per_gpu(attention.kv_heads, tp, engine)
    k_dim, v_dim = attention.head_dim, attention.v_dim
    data = heads * (k_dim + v_dim) * bits
    if engine.name == "vllm" and kv_dtype == "int8":
        data += 2 * heads * 32  # an fp32 scale per token, head, K and V
    if engine.name == "vllm" and kv_dtype == "int4":
        data += heads * (k_dim // 16 + v_dim // 16) * 8  # NVFP4: an fp8 scale per 16 values
    return data


def layer_types(spec: ModelSpec, layers: range, tp: int, engine: eng.Engine, kv_dtype: str,
                state_dtype: str, mla_layout: str = "latent") -> list[LayerType]:
    order = spec.layers.order()
    counts: dict[str, int] = {}
    for index in layers:
        counts[order[index]] = counts.get(order[index], 0) + 1
    types = []
    for name, n in counts.items():
        kind = spec.layers.kinds[name]
        if isinstance(kind, NoKVLayer):
            bits = kind.state_elements * DTYPE_BITS[serving_dtype(kind.state_dtype or state_dtype)]
            types.append(LayerType(name, "none", None, n, 0, eng.cdiv(eng.cdiv(bits, 8), tp)))
        else:
            bits = _token_bits(spec.attention_of(name), tp, engine, kv_dtype, mla_layout)
            types.append(LayerType(name, kind.type, getattr(kind, "span", None), n, bits, 0))
    return types


def _largest_context(needs, fits_in, cap: int) -> int:
    """The largest L in [1, cap] with needs(L) <= fits_in (needs grows with L); 0 if none."""
    if needs(1) > fits_in:
        return 0
    low, high = 1, cap
    while low < high:
        mid = (low + high + 1) // 2
        if needs(mid) <= fits_in:
            low = mid
        else:
            high = mid - 1
    return low


def vllm_capacity(types: list[LayerType], stages: list[dict[str, int]], budget: int, block: int, context: int,
                  in_flight: int, cap: int) -> Capacity:
    """vLLM v1 (kv_cache_utils.get_kv_cache_configs): the whole model's layers grouped by type
    with one page size; every group's layers share one pool of blocks. Each pipeline worker
    needs as many tensors as the largest group has layers on it; the block count is the
    smallest any worker can afford. ``types`` count whole-model layers, ``stages`` per stage."""
    notes = []
    attention = [t for t in types if t.kind != "none"]
    states = [t for t in types if t.kind == "none" and t.state_bytes]
    types = attention + states  # a no-KV kind without a state takes no pages
    widest = max((t.token_bits for t in attention), default=0)
    state = max((t.state_bytes for t in states), default=0)
    if attention and states and eng.cdiv(block * widest, 8) < state:
        raised = 16 * eng.cdiv(state, 16 * eng.cdiv(widest, 8))
        notes.append(f"block size raised from {block} to {raised} tokens so one attention page holds "
                     f"a whole constant state ({state:,} B), as vLLM does for hybrid models")
        block = raised
    page = eng.cdiv(block * widest, 8) if attention else state
    blocks_of = {}
    for t in attention:
        own = eng.cdiv(block * t.token_bits, 8)
        if page % own == 0:
            blocks_of[t.name] = block * (page // own)  # vLLM raises a narrower kind's block size
            if own != page:
                notes.append(f"{t.name} layers are narrower: vLLM gives their pages {blocks_of[t.name]} tokens "
                             "so every page is the same size")
        else:
            blocks_of[t.name] = block
            notes.append(f"{t.name} pages are padded to the widest kind's page size ({page:,} B)")
    if states and page > state:
        notes.append(f"each no-KV layer's state ({state:,} B) is padded to one page ({page:,} B)")
    counts = [t.layers for t in types]
    group = counts[0] if len(types) == 1 else eng.vllm_group_size(counts)
    groups = {t.name: eng.cdiv(t.layers, group) for t in types}
    padding = sum(groups.values()) * group - sum(counts)
    if padding:
        notes.append(f"vLLM groups layers {group} at a time; {padding} padding layer slot(s) hold pages "
                     f"that are never used ({padding}/{sum(groups.values()) * group} of the pool)")
    tensors = _tensors_per_stage(types, groups, stages, group)
    if budget > 0 and page:
        blocks = min(budget // (n * page) for n in tensors if n)
    else:
        blocks = 0

    def pages(t: LayerType, length: int) -> int:
        return 1 if t.kind == "none" else _pages(t, length, blocks_of[t.name], in_flight)

    def needs(length: int) -> int:
        return sum(groups[t.name] * pages(t, length) for t in types)

    per_request = needs(context)
    bits = {t.name: t.token_bits for t in types}
    state_of = {t.name: t.state_bytes for t in types}
    described = tuple(
        {"name": t.name, "kind": t.kind, "layers": t.layers, "groups": groups[t.name],
         "block_size": blocks_of.get(t.name), "pages_per_request": groups[t.name] * pages(t, context)}
        for t in types
    )
    return Capacity(
        block_size=block,
        blocks=blocks,
        tokens=blocks * block,
        per_token_bytes=max(eng.cdiv(sum(n * bits.get(k, 0) for k, n in stage.items()), 8) for stage in stages),
        state_bytes_per_request=max(sum(n * state_of.get(k, 0) for k, n in stage.items()) for stage in stages),
        max_concurrency=blocks // per_request,
        concurrency_exact=Fraction(blocks, per_request),
        max_context=_largest_context(needs, blocks, cap),
        request_bytes=per_request * max(tensors) * page,
        groups=described if len(types) > 1 else (),
        notes=tuple(notes),
    )


def _tensors_per_stage(types: list[LayerType], groups: dict[str, int], stages: list[dict[str, int]],
                       group: int) -> list[int]:
    """Per pipeline stage, the most layers any one group has there: the KV tensors that worker
    allocates. A type's layers go to its groups round-robin, as vLLM assigns them (layers[i::n]);
    with one stage that is the group size, padding slots included."""
    if len(stages) == 1:
        return [group]
    found = []
    # the j-th layer of a type (in model order) goes to group j % n; stages hold contiguous layers,
    # so count, per stage, how many of the type's layers with each residue it holds
    offset = {t.name: 0 for t in types}
    for stage in stages:
        most = 0
        for t in types:
            n = stage.get(t.name, 0)
            if not n:
                continue
            k = groups[t.name]
            first = offset[t.name]
            per_group = [len(range((j - first) % k, n, k)) for j in range(k)]
            most = max(most, *per_group)
            offset[t.name] += n
        found.append(most)
    return found


def _pages(t: LayerType, length: int, block: int, batched: int) -> int:
    if t.kind == "sliding":
        return eng.pages_sliding(t.span, length, block, batched)
    if t.kind == "chunked":
        return eng.pages_chunked(t.span, length, block, batched)
    return eng.pages_full(length, block)


def pool_capacity(types: list[LayerType], budget: int, block: int, context: int, windows: bool,
                  cap: int) -> Capacity:
    """SGLang and TensorRT-LLM, as one byte pool: a request takes whole pages of each layer's
    held tokens (all of them for SGLang's token pool; windows capped for TRT-LLM) and its states."""
    attention = [t for t in types if t.kind != "none"]
    cell_bits = sum(t.layers * t.token_bits for t in attention)
    states = sum(t.layers * t.state_bytes for t in types if t.kind == "none")
    budget = max(budget, 0)
    blocks = budget // eng.cdiv(block * cell_bits, 8) if cell_bits else 0

    def needs(length: int) -> int:
        bits = 0
        for t in attention:
            held = min(length, t.span) if windows and t.span else length
            bits += t.layers * eng.cdiv(held, block) * block * t.token_bits
        return eng.cdiv(bits, 8) + states

    per_request = needs(context)
    return Capacity(
        block_size=block,
        blocks=blocks,
        tokens=blocks * block,
        per_token_bytes=eng.cdiv(cell_bits, 8),
        state_bytes_per_request=states,
        max_concurrency=budget // per_request,
        concurrency_exact=Fraction(budget, per_request),
        max_context=_largest_context(needs, budget, cap),
        request_bytes=per_request,
    )


def estimate_reserve(spec: ModelSpec, tp: int, batched_tokens: int, max_seqs: int) -> dict:
    """Activation peak, sampler logits and runtime overhead per GPU: an estimate, not a count.

    activations: max_batched_tokens x (4 x hidden + q, k, v widths / tp + 3 x MLP width / tp)
    x 2 bytes (the residual, normed input, attention and MLP outputs, projections, gate/up/act);
    logits: max_num_seqs x vocab x 4 bytes (fp32), as the sampler's profiling run holds;
    runtime: 1 GiB for CUDA graphs, allocator slack and NCCL buffers.
    """
    a = spec.attention
    hidden = spec.hidden_size or a.heads * (getattr(a, "head_dim", None) or a.v_head_dim)
    if isinstance(a, MLAAttention):
        qkv = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim) + a.kv_lora_rank
    else:
        qkv = (a.heads + a.kv_heads) * a.head_dim + a.kv_heads * a.v_dim
    inner = 4 * hidden
    vocab = 0
    w = spec.weights
    if w is not None:
        vocab = w.vocab_size
        widths = [w.mlp.intermediate_size] if w.mlp else []
        if w.moe:
            widths.append(w.moe.intermediate_size * w.moe.experts_per_token
                          + w.moe.shared_experts * (w.moe.shared_intermediate_size or w.moe.intermediate_size))
        inner = max(widths)
    activations = batched_tokens * (4 * hidden + eng.cdiv(qkv, tp) + 3 * eng.cdiv(inner, tp)) * 2
    logits = max_seqs * vocab * 4
    return {"activations": activations, "logits": logits, "runtime": RUNTIME_RESERVE}


def _weights(spec: ModelSpec, count: ParamCount | None, weights_dtype: str | None, override: int | None,
             checkpoint) -> tuple[int, str, str]:
    """(bytes, dtype label, source) of the whole model's weights."""
    if override is not None:
        return override, weights_dtype or "given", "--weights-bytes"
    if weights_dtype is None and checkpoint is not None:
        c = checkpoint
        source = f"safetensors headers ({c.tensors:,} tensors in {c.files} file{'s' if c.files > 1 else ''})"
        if c.f32_bytes and spec.dtype == "fp32":
            # an engine serving a float32 checkpoint in bf16 holds its F32 tensors at half the size
            return c.bytes - c.f32_bytes // 2, "checkpoint", source + ", float32 tensors at bf16 as served"
        return c.bytes, "checkpoint", source
    released = spec.weights.dtype if spec.weights is not None else None
    dtype = weights_dtype or released or serving_dtype(spec.dtype)
    if count is None:
        raise KvcalcError(
            f"{spec.name}: its parameter count is not derived (no weights block; see its notes), so "
            "its weights are unknown: give --weights-bytes SIZE, or a model folder with safetensors files"
        )
    return bytes_at(count, dtype), dtype, f"parameter count x {dtype}"


def fit(
    spec: ModelSpec,
    memory: int | None,
    gpu: str | None = None,
    gpus: int | None = None,
    tp: int = 1,
    pp: int = 1,
    context: int | None = None,
    weights_dtype: str | None = None,
    kv_dtype: str | None = None,
    engine: str = "vllm",
    gpu_util: Fraction | None = None,
    reserve: int | None = None,
    block_size: int | None = None,
    max_batched_tokens: int | None = None,
    weights_bytes: int | None = None,
    checkpoint=None,  # a checkpoint.Checkpoint
    concurrency: int | None = None,
    search_min: bool = True,
) -> FitResult:
    """Forward: what ``memory`` per GPU holds. Backwards (``concurrency``): what that many requests
    of ``context`` tokens need, the smallest --gpu-util for it, and the fewest GPUs that hold it.
    ``memory`` None answers only the backwards part."""
    if spec.is_encoder:
        raise KvcalcError(f"{spec.name} is an encoder: it keeps no KV cache, so there is no capacity to plan")
    rules = eng.BY_NAME[engine]
    gpu_util = rules.gpu_util if gpu_util is None else gpu_util
    if not 0 < gpu_util <= 1:
        raise FitUsageError(f"--gpu-util {float(gpu_util)} is outside (0, 1]")
    check_shape(spec, tp, pp, gpus)
    sized_for = memory if memory is not None else 80 * GiB  # engine defaults by memory tier
    batched = max_batched_tokens or eng.default_batched_tokens(sized_for, gpu)
    in_flight = batched * (eng.in_flight_batches(pp) if engine == "vllm" else 1)
    context = spec.max_context if context is None else context
    gpus = gpus or tp * pp
    block = block_size or rules.block_size
    notes, warnings = [], []
    kv_dtype_used = kv_dtype or serving_dtype(spec.dtype)
    if kv_dtype is None and spec.dtype == "fp32":
        notes.append("the checkpoint is float32; engines serve it in bf16 (vLLM's --dtype auto), so "
                     "weights and KV are counted in bf16 (--weights-dtype/--kv-dtype fp32 to keep it)")

    count = parameter_count(spec)
    total_weights, weights_label, weights_source = _weights(spec, count, weights_dtype, weights_bytes, checkpoint)
    if weights_label == "mxfp4" and count is not None and not count.routed:
        warnings.append(f"mxfp4 shrinks routed experts only, and {spec.name} has none: every weight is counted "
                        "16-bit")
    per_gpu_weights = eng.cdiv(total_weights, tp * pp)
    if reserve is None:
        parts = estimate_reserve(spec, tp, batched, eng.default_max_seqs(sized_for, gpu))
        reserve_bytes, estimated = sum(parts.values()), True
    else:
        parts, reserve_bytes, estimated = {"given": reserve}, reserve, False
    budget = None if memory is None else eng.kv_budget(rules, memory, gpu_util, per_gpu_weights, reserve_bytes)

    cap = max(spec.max_context, context)
    stages = []
    if engine == "vllm":
        whole = layer_types(spec, range(spec.layers.count), tp, rules, kv_dtype_used, serving_dtype(spec.dtype))
        order = spec.layers.order()
        per_stage = []
        for layers in stage_layers(spec.layers.count, pp):
            counts: dict[str, int] = {}
            for index in layers:
                counts[order[index]] = counts.get(order[index], 0) + 1
            per_stage.append(counts)
        stages.append(vllm_capacity(whole, per_stage, budget or 0, block, context, in_flight, cap))
    else:
        for layers in stage_layers(spec.layers.count, pp):
            types = layer_types(spec, layers, tp, rules, kv_dtype_used, serving_dtype(spec.dtype))
            if any(t.kind != "none" or t.state_bytes for t in types):
                stages.append(pool_capacity(types, budget or 0, block, context, rules.windows, cap))
    worst = min(stages, key=lambda c: (c.max_concurrency, c.max_context, -c.request_bytes))
    notes.extend(worst.notes)
    wanted = concurrency or 1
    replicas = gpus // (tp * pp)
    per_replica = eng.cdiv(wanted, replicas)  # data-parallel replicas share the requests
    required_kv = per_replica * max(c.request_bytes for c in stages)
    required = per_gpu_weights + reserve_bytes + required_kv
    required_util = _required_util(rules, memory, per_gpu_weights, reserve_bytes, required_kv)

    attention = spec.attention
    if isinstance(attention, MLAAttention):
        heads_per_gpu, replication = None, float(tp)
        if tp > 1:
            notes.append(f"MLA: the {attention.kv_lora_rank}+{attention.qk_rope_head_dim} latent is not split by "
                         f"tensor parallelism; each of the {tp} GPUs holds all of it ({tp}x replication)")
        if attention.indexer is not None:
            ix = attention.indexer
            notes.append(f"indexer keys ({eng.cdiv(ix.bits_per_token(kv_dtype_used), 8)} B per token and layer, "
                         f"{ix.key_dtype or kv_dtype_used}" + (" + fp32 scale" if ix.scale_block else "")
                         + ") are counted in the KV bytes and held whole on every GPU: one key per token, "
                         "not split by tensor parallelism (DeepSeek's inference code, vLLM, SGLang)")
    else:
        heads_per_gpu = eng.kv_heads_per_gpu(attention.kv_heads, tp, rules)
        held = Fraction(heads_per_gpu * tp, attention.kv_heads)
        replication = float(held)
        if held > 1:
            notes.append(f"TP {tp} is more than the {attention.kv_heads} KV heads: each GPU holds {heads_per_gpu}, so "
                         f"every KV head is stored {float(held):g} times across the group")
    if tp * pp > 1:
        notes.append(f"weights are divided evenly over tp x pp = {tp * pp} GPUs (embeddings, norms and "
                     "replicated parts are not modelled apart)")
    if pp > 1:
        notes.append("pipeline stages hold their share of the layers; the stage with the least room decides")
    if not rules.windows and any(k.type in ("sliding", "chunked") for k in spec.layers.kinds.values()):
        notes.append(f"{engine}'s token pool charges sliding and chunked layers the whole context")
    if engine != "vllm" and kv_dtype_used in ("int8", "int4"):
        notes.append(f"{engine}: KV quantization scales are not counted")
    if context > spec.max_context:
        warnings.append(f"context {context} is beyond {spec.name}'s max context {spec.max_context}; computed anyway")
    if memory is None:
        notes.append("no GPU given: engine defaults sized for an 80 GiB GPU (max_num_batched_tokens "
                     f"{batched}); --gpu or --gpu-memory for capacity and a memory fraction")
    elif required_util is not None and required_util > 0.95 and concurrency:
        warnings.append(f"--gpu-util {required_util:.2f} leaves under 5% for the CUDA context and other "
                        "processes; vLLM refuses to start when free memory is below util x total")
    if budget is not None and budget <= 0:
        warnings.append(f"weights ({per_gpu_weights:,} B) and reserve ({reserve_bytes:,} B) per GPU leave no "
                        f"room for KV within {float(gpu_util):g} of {memory:,} B")

    known = memory is not None
    fits = worst.max_concurrency >= per_replica if known else None
    shape = None
    if search_min and known:
        shape = min_shape(spec, memory, wanted, context=context, weights_dtype=weights_dtype, kv_dtype=kv_dtype,
                          engine=engine, gpu_util=gpu_util, reserve=reserve, block_size=block_size,
                          max_batched_tokens=max_batched_tokens, weights_bytes=weights_bytes, checkpoint=checkpoint,
                          gpu=gpu)
    is_vllm = engine == "vllm" and known
    return FitResult(
        model=spec.name, engine=engine, gpu=gpu, gpu_memory_bytes=memory, gpus=gpus, tp=tp, pp=pp,
        replicas=gpus // (tp * pp), weights_dtype=weights_label, kv_dtype=kv_dtype_used, context=context,
        block_size=worst.block_size, max_batched_tokens=batched, gpu_util=float(gpu_util),
        parameters=count.total if count else None, active_parameters=count.active if count else None,
        weights_source=weights_source, weights_bytes=total_weights, weights_bytes_per_gpu=per_gpu_weights,
        reserve_bytes_per_gpu=reserve_bytes, reserve_estimated=estimated, reserve_parts=parts,
        kv_budget_bytes_per_gpu=budget, kv_heads_per_gpu=heads_per_gpu, kv_replication=replication,
        kv_bytes_per_token_per_gpu=worst.per_token_bytes,
        state_bytes_per_request_per_gpu=worst.state_bytes_per_request,
        kv_blocks_per_gpu=worst.blocks if known else None, kv_tokens=worst.tokens if known else None,
        kv_bytes_per_request_per_gpu=worst.request_bytes, kv_groups=list(worst.groups),
        max_concurrency=worst.max_concurrency if known else None, model_max_context=spec.max_context,
        total_concurrency=worst.max_concurrency * (gpus // (tp * pp)) if known else None,
        max_context=worst.max_context if known else None,
        fits=fits, min_gpus=shape["gpus"] if shape else None, min_gpus_shape=shape, concurrency=concurrency,
        required_kv_bytes_per_gpu=required_kv, required_bytes_per_gpu=required, required_gpu_util=required_util,
        engine_log_kv_tokens=int(worst.concurrency_exact * context) if is_vllm else None,
        engine_log_max_concurrency=round(float(worst.concurrency_exact), 2) if is_vllm else None,
        warnings=tuple(warnings), notes=tuple(notes),
    )


def _required_util(rules: eng.Engine, memory: int | None, weights: int, reserve: int, kv: int) -> float | None:
    """The smallest fraction, in hundredths as engines take it, whose budget holds ``kv`` bytes."""
    if memory is None:
        return None
    if rules.budget_of == "free":
        free = memory - weights - reserve
        hundredths = eng.cdiv(100 * kv, free) if free > 0 else 101
    else:
        hundredths = eng.cdiv(100 * (weights + reserve + kv), memory)
    return hundredths / 100 if 0 < hundredths <= 100 else (0.01 if hundredths <= 0 else None)


def _shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(tp, pp) pairs worth trying: TP a power of two that divides the heads, PP up to 16 or a power of two."""
    pairs = []
    for tp in (1, 2, 4, 8, 16, 32, 64):
        if not tp_allowed(spec, tp):
            continue
        stages = set(range(1, 17)) | {2**k for k in range(5, 10)}
        pairs += [(tp, pp) for pp in sorted(stages) if pp <= spec.layers.count and tp * pp <= MAX_SHAPE_GPUS]
    return pairs


def min_shape(spec: ModelSpec, memory: int, requests: int = 1, **options) -> dict | None:
    """The fewest GPUs that hold ``requests`` requests of the context: TP x PP for one replica,
    times replicas when one is not enough (TP preferred, then PP, at an equal count); None when
    no shape up to 512 GPUs per replica holds even one."""
    best = None
    for tp, pp in _shapes(spec):
        try:
            held = fit(spec, memory, tp=tp, pp=pp, search_min=False, **options).max_concurrency
        except FitUsageError:
            continue
        if held < 1:
            continue
        replicas = eng.cdiv(requests, held)
        key = (tp * pp * replicas, replicas, pp, tp)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    gpus, replicas, pp, tp = best
    return {"gpus": gpus, "tp": tp, "pp": pp, "replicas": replicas}
