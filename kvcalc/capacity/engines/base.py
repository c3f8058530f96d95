"""What every engine has, and the rules they share.

An ``Engine`` holds every difference between engines and versions as its own methods: the
default memory fraction, the budget, KV heads and bytes per GPU, how a constant state is
stored, the pages a request is charged, the reserve, what it logs. ``fit`` calls these and
never asks which engine it has. Each engine's module cites the source of each of its rules.
"""

from bisect import bisect_left
from fractions import Fraction
from typing import NamedTuple

from kvcalc.capacity.layers import LayerType, cdiv, state_bits
from kvcalc.dtypes import DTYPE_BITS, row_scale_bits
from kvcalc.spec import MLAAttention, NoKVLayer

GiB = 1024**3
MiB = 1024**2


class Capacity(NamedTuple):
    """What one GPU's budget holds for one stage's layers, as one engine counts it."""

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
    log: tuple[tuple[str, object], ...] = ()  # the engine's own start-up figures, predicted


class TierAsk(NamedTuple):
    """A CPU or disk KV tier asked of an engine, and the facts of the shape it needs."""

    medium: str  # "cpu" | "disk"
    backend: str  # the engine's tier backend (vLLM native | lmcache, SGLang hicache, TRT-LLM host)
    size: int  # bytes as the flag gives them; 0: sized by ``ratio`` (SGLang's --hicache-ratio)
    block: int  # tokens per GPU page
    bytes_per_token: int  # one GPU's KV per token (the fullest pipeline stage's)
    world: int  # ranks of one instance that hold KV (tp x pp)
    mla: bool  # a pure-MLA model at PP 1: one latent shared by every rank
    pool_tokens: int = 0  # the GPU pool in tokens (SGLang's max_total_num_tokens)
    ratio: Fraction | None = None  # SGLang --hicache-ratio: host pool = ratio x device pool
    cpu_size: int = 0  # with a disk ask: the CPU tier's bytes (0: none given)
    hybrid: bool = False  # sliding, chunked or state layers beside full attention (several pools or groups)


def largest_context(needs, fits_in, cap: int) -> int:
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


class Engine:
    """The shared rules; each engine overrides what it does differently."""

    name = ""
    version = ""
    block_size = 16  # default tokens per page
    windows = True  # sliding and chunked layers charged only their span
    label = ""

    @property
    def title(self) -> str:
        """'vLLM 0.33.0', 'SGLang 0.5.23', 'TensorRT-LLM': the label's name part."""
        return self.label.split(" (")[0].split(":")[0]

    # -- the deployment's defaults ------------------------------------------------------------
    def default_util(self, spec, deployment) -> Fraction:
        return Fraction(9, 10)

    def batched_tokens(self, deployment) -> int:
        """Tokens of one prefill step (what the profiling run and window charges use)."""
        return default_batched_tokens(deployment.memory_or_default, deployment.gpu_key)

    # -- parallel layouts (docs/engines/parallel.md) -------------------------------------------
    dp_adds_gpus = True  # vLLM's DP ranks are whole TP groups; SGLang's attention DP sits inside one
    dcp_pages = False  # pages hold block x dcp tokens of a request, interleaved over the DCP ranks (vLLM)

    def attention_tp(self, deployment) -> int:
        return deployment.tp

    models_layouts = False  # whether kvcalc models this engine's data-parallel attention and expert parallelism

    def check_layout(self, spec, deployment) -> None:
        """The DP, EP and DCP this engine allows; the base models none of them."""
        from kvcalc.capacity.deployment import FitUsageError

        for name, value in (("dp", deployment.dp), ("ep", deployment.ep), ("dcp", deployment.dcp)):
            if value > 1:
                raise FitUsageError(f"--{name} is not modelled for {self.name} (kvcalc models data-parallel "
                                    "attention and expert parallelism for vLLM and SGLang, DCP for vLLM)")

    def placement(self, spec, deployment):
        """How each part of the weights is split on one GPU (weights.Placement): all over TP."""
        from kvcalc.capacity.weights import Placement

        return Placement.tensor_parallel(deployment.tp)

    # -- how a token and a state are stored ---------------------------------------------------
    def heads_per_gpu(self, kv_heads: int, tp: int) -> int:
        """vLLM and SGLang: max(1, kv // tp), replicating past the head count."""
        return max(1, kv_heads // tp)

    def scale_bits(self, heads: int, k_dim: int, v_dim: int, kv_dtype: str) -> int:
        """Bits of quantization scales per token per layer (none unless the engine stores them)."""
        return 0

    def token_bits(self, attention, tp: int, kv_dtype: str, mla_layout: str = "latent") -> int:
        bits = DTYPE_BITS[kv_dtype]
        if isinstance(attention, MLAAttention):
            # DeepSeek-V3.2's indexer keys: one key per token, whole on every GPU of the group (the
            # reference code's wk is not split; vLLM caches it as an MLA spec of one head)
            index = attention.indexer.bits_per_token(kv_dtype) if attention.indexer else 0
            rows = attention.kv_rows_per_token(mla_layout)
            if mla_layout == "expanded":  # per-head K and V, split over TP like dense heads
                own = sum(n // tp * row_scale_bits(kv_dtype, width) for n, width in rows)
                return attention.kv_elements_per_token("expanded") // tp * bits + own + index
            own = sum(n * row_scale_bits(kv_dtype, width) for n, width in rows)
            return (attention.kv_lora_rank + attention.qk_rope_head_dim) * bits + own + index
        heads = self.heads_per_gpu(attention.kv_heads, tp)
        k_dim, v_dim = attention.head_dim, attention.v_dim
        own = heads * (row_scale_bits(kv_dtype, k_dim) + row_scale_bits(kv_dtype, v_dim))  # the format's (nvfp4)
        return heads * (k_dim + v_dim) * bits + own + self.scale_bits(heads, k_dim, v_dim, kv_dtype)

    def state_bytes(self, kind: NoKVLayer, model_dtype: str, tp: int, platform: str = "cuda") -> int:
        """One request's state in one layer on one GPU: engines keep kernel - 1 conv columns
        (vLLM's and SGLang's mamba_utils), split over TP with the heads."""
        return cdiv(cdiv(state_bits(kind, model_dtype, -1), 8), tp)

    # -- the budget and what it holds ---------------------------------------------------------
    def requested_bytes(self, memory: int, fraction: Fraction) -> int:
        return memory * fraction.numerator // fraction.denominator

    def budget(self, deployment, fraction: Fraction, weights: int, reserve: int) -> int:
        """Bytes left for KV on one GPU; negative when weights and reserve do not fit."""
        return self.requested_bytes(deployment.memory, fraction) - weights - reserve

    def reserve_parts(self, spec, deployment, batched: int) -> dict[str, int]:
        return estimate_activations(spec, deployment.tp, batched, max_seqs(deployment)) | {"runtime": GiB}

    def capacity(self, spec, types: list[LayerType], stages: list[dict[str, int]], budget: int, deployment,
                 context: int, cap: int, batched: int) -> Capacity:
        raise NotImplementedError

    def required_util(self, deployment, weights: int, reserve: int, kv: int) -> float | None:
        """The smallest fraction, in hundredths as engines take it, whose budget (by this engine's
        own rule) holds ``kv`` bytes; None when not even the whole GPU does."""
        if deployment.memory is None:
            return None
        # every engine's budget grows with the fraction (or stays negative), so the first hundredth that
        # holds ``kv`` is found by bisection: 7 budgets, not up to 100
        holds = lambda hundredths: self.budget(deployment, Fraction(hundredths, 100), weights, reserve) >= kv  # noqa: E731
        hundredths = bisect_left(range(1, 101), True, key=holds) + 1
        return hundredths / 100 if hundredths <= 100 else None

    def notes(self, spec, deployment, kv_dtype: str) -> list[str]:
        return []

    nvfp4_capability: tuple[int, int] | None = None  # the lowest compute capability whose kernels read nvfp4 KV

    def kv_dtype_warnings(self, deployment, kv_dtype: str, model_dtype: tuple[str, ...]) -> list[str]:
        """A KV dtype this engine does not cache in (besides the model's own, as checkpoint and as
        served: --kv-cache-dtype auto), or cannot run on this GPU, said in one line each."""
        name = self.title
        if kv_dtype not in self.kv_cache_dtypes and kv_dtype not in model_dtype:
            return [f"{name} has no {kv_dtype} KV cache (its --kv-cache-dtype takes "
                    f"{', '.join(self.kv_cache_dtypes.values())}); counted as {kv_dtype} values without the "
                    "engine's scales, a what-if"]
        return nvfp4_gpu_warnings(self, name, deployment, kv_dtype)

    # -- what else it holds ------------------------------------------------------------------------
    lora_default_targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
    tier_backends: tuple[str, ...] = ()  # CPU/disk KV tiers kvcalc models for this engine; the first is the default
    tier_ratio = False  # a host tier sized as a ratio of the GPU pool (SGLang's --hicache-ratio)

    def cuda_graphs(self, spec, deployment, batched: int, speculative_tokens: int = 0, lora: bool = False) -> dict:
        """The CUDA graphs the engine captures and what kvcalc reserves for them: captured, sizes,
        graphs, reserve_bytes, rule (how the sizes and the reserve were found)."""
        return {"captured": None, "sizes": [], "graphs": None, "reserve_bytes": 0,
                "rule": f"{self.name}'s CUDA graphs are not modelled"}

    def tier_tokens(self, ask: TierAsk) -> tuple[int, int, str]:
        """(tokens a KV tier holds for this shape, the bytes it is sized to, how it was counted);
        ValueError for a tier or a size the engine does not take."""
        raise ValueError(f"{self.name}'s KV tiers are not modelled")

    # -- the launch command (capacity/launch.py adds the header and the model) -------------------
    kv_cache_dtypes: dict[str, str] = {}  # kvcalc KV dtype -> the engine's --kv-cache-dtype value

    def launch_lines(self, r, model: str, requests: int, util: float, kv_value: str | None,
                     kv_what: str) -> list[str]:
        raise NotImplementedError


def default_batched_tokens(memory: int, gpu_key: str | None) -> int:
    """vLLM's default --max-num-batched-tokens for its OpenAI server (arg_utils.get_batch_defaults):
    16384 from 160 GiB, 8192 from 70 GiB except A100s, 2048 below."""
    if memory >= 160 * GiB:
        return 16384
    if memory >= 70 * GiB and "a100" not in (gpu_key or ""):
        return 8192
    return 2048


def default_max_seqs(memory: int, gpu_key: str | None) -> int:
    """vLLM's default --max-num-seqs: 1024 from 70 GiB except A100s, 256 below."""
    return 1024 if memory >= 70 * GiB and "a100" not in (gpu_key or "") else 256


def max_seqs(deployment) -> int:
    """Requests one engine instance is launched for: the user's (-n per replica, the value
    --emit writes), else vLLM's default; the sampler's profiling run holds logits for as many."""
    if deployment.max_seqs is not None:
        return deployment.max_seqs
    return default_max_seqs(deployment.memory_or_default, deployment.gpu_key)


def estimate_activations(spec, tp: int, batched_tokens: int, max_seqs: int) -> dict[str, int]:
    """The activation peak of a profiling run and the sampler's logits per GPU: an estimate.

    activations: max_batched_tokens x (4 x hidden + q, k, v widths / tp + 3 x MLP width / tp)
    x 2 bytes (the residual, normed input, attention and MLP outputs, projections, gate/up/act);
    logits: max_num_seqs x vocab x 4 bytes (fp32), as the sampler's profiling run holds.
    """
    a = spec.attention
    if a.kind == "none":  # a state-space model: its mixer's projections stand in the MLP width below
        hidden, qkv = spec.hidden_size or 0, 0
    else:
        hidden = spec.hidden_size or a.heads * (getattr(a, "head_dim", None) or a.v_head_dim)
    if a.kind == "none":
        pass
    elif isinstance(a, MLAAttention):
        qkv = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim) + a.kv_lora_rank
    else:
        qkv = (a.heads + a.kv_heads) * a.head_dim + a.kv_heads * a.v_dim
    inner = 4 * hidden
    vocab = 0
    w = spec.weights
    if w is not None:
        vocab = w.vocab_size
        # the widest layer's MLP where the weights block lists per-layer widths (Nemotron-NAS's mlp_sizes)
        widths = ([max(w.mlp_sizes, default=0) if w.mlp_sizes is not None else w.mlp.intermediate_size]
                  if w.mlp else [])
        if w.moe:
            widths.append(w.moe.intermediate_size * w.moe.experts_per_token
                          + w.moe.shared_experts * (w.moe.shared_intermediate_size or w.moe.intermediate_size))
        inner = max(widths, default=inner)  # no MLP (a Mamba model): 4 x hidden stands in
    activations = batched_tokens * (4 * hidden + cdiv(qkv, tp) + 3 * cdiv(inner, tp)) * 2
    return {"activations": activations, "logits": max_seqs * vocab * 4}


def command_lines(command: str, flags: list[tuple[str, object, str]], comments: list[str]) -> list[str]:
    """A command with one flag a line, joined by backslashes (a value None: the flag alone); what
    each flag assumes follows as comments (a comment cannot sit inside a continued line)."""
    out = [f"# {c}" for c in comments]
    out.append(command + " \\")
    for i, (flag, value, _) in enumerate(flags):
        text = flag if value is None else f"{flag} {value}"
        out.append(f"  {text}" + ("" if i == len(flags) - 1 else " \\"))
    out.extend(f"#   {flag}: {why}" for flag, _, why in flags if why)
    return out


def nvfp4_gpu_warnings(engine, name: str, deployment, kv_dtype: str) -> list[str]:
    """NVFP4 KV on a GPU whose compute capability is below what the engine's kernels need."""
    need, have = engine.nvfp4_capability, deployment.compute_capability
    if kv_dtype != "nvfp4" or need is None or have is None:
        return []
    if tuple(int(part) for part in have.split(".")) >= need:
        return []
    return [f"{name} reads nvfp4 KV only on compute capability {need[0]}.{need[1]} or newer (Blackwell); "
            f"{deployment.gpu_name or deployment.gpu_key} is {have}, so this cache cannot run there"]
