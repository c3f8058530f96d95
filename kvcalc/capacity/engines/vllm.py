"""vLLM's v1 engine, by release: budget, pages per layer kind, groups, tokens in flight, logs.

Every rule cites the file it was read from; docs/fit.md has the table of what changed in
which release. The arithmetic of ``capacity`` is ``kv_cache_utils.get_kv_cache_configs``:
the whole model's layers grouped by kind with one page size, every group drawing blocks
from one pool, each kind charging a request what its ``KVCacheSpec.max_memory_usage_bytes``
says (``vllm/v1/kv_cache_interface.py``).
"""

from fractions import Fraction
from math import lcm
from typing import NamedTuple

from kvcalc.capacity.deployment import DEFAULT_MEMORY
from kvcalc.capacity.engines.base import (
    Capacity,
    Engine,
    GiB,
    command_lines,
    default_max_seqs,
    estimate_activations,
    largest_context,
    max_seqs,
)
from kvcalc.capacity.layers import LayerType, cdiv
from kvcalc.spec import MLAAttention


class Release(NamedTuple):
    """The rules that changed between vLLM releases, read from each release's wheel
    (docs/fit.md has the table with files and lines)."""

    version: str
    gpu_util: Fraction  # default --gpu-memory-utilization (vllm/config/cache.py): 0.92 from 0.20.0
    group_ratio: Fraction  # hybrid groups (kv_cache_utils): the largest kind's count when under ratio x the smallest
    runner_v2: bool  # the V2 model runner for every model (0.29.0): pp + 1 batches in flight with async
    window_in_flight: bool  # sliding charge counts every batch in flight (0.26.0); before, 1 x batched tokens
    log_groups: bool  # "GPU KV cache size" = blocks // groups x block (to 0.20.0); then int(concurrency x L)
    cuda_graphs_profiled: bool  # the CUDA-graph estimate taken from the budget by default (0.20.0)
    mamba2_checkpoint: bool  # align mode charges Mamba2 a prefill checkpoint page (0.32.0)
    gdn_checkpoint: bool  # ... and Gated DeltaNet on Hopper, where its prefill runs on FlashInfer (0.33.0)


# Oldest first; the last is the default. Async scheduling is on by default in all of them (0.14.0).
RELEASES = (
    Release("0.18.0", Fraction(9, 10), Fraction(3, 2), False, False, True, False, False, False),
    Release("0.20.0", Fraction(92, 100), Fraction(3, 2), False, False, True, True, False, False),
    Release("0.20.1", Fraction(92, 100), Fraction(3, 2), False, False, False, True, False, False),
    Release("0.26.0", Fraction(92, 100), Fraction(3, 2), False, True, False, True, False, False),
    Release("0.29.0", Fraction(92, 100), Fraction(3, 2), True, True, False, True, False, False),
    Release("0.32.0", Fraction(92, 100), Fraction(3, 2), True, True, False, True, True, False),
    Release("0.33.0", Fraction(92, 100), Fraction(3, 2), True, True, False, True, True, True),
)
NEWER = "0.34"  # sizes the KV cache after warmup by default on CUDA (the extensible KV cache): not followed
KERNEL_BLOCK = {"cuda": 16, "cpu": 32}  # the attention backend's block alignment (FlashAttention; CPU)
GDN_ALIGNMENT = 64  # FlashInfer's Gated DeltaNet prefill checkpoints (v1/attention/backends/gdn_attn.py)
HOPPER = ("h100", "h200", "h20", "h800", "gh200")  # SM90: Gated DeltaNet prefill on FlashInfer by default
NON_TORCH = GiB // 4  # non-torch memory at TP 1 (cuBLAS workspaces, allocator): an estimate
NON_TORCH_PARALLEL = 2 * GiB  # more with TP or PP > 1 (NCCL and custom all-reduce buffers): an estimate
CUDA_GRAPHS = GiB // 2  # captured graphs' memory when profiled (no --enforce-eager): an estimate


def release(version: str | None) -> Release:
    """The newest release whose rules apply to ``version`` (None: the newest kvcalc follows)."""
    if version is None:
        return RELEASES[-1]
    wanted = _key(version)
    if wanted is not None and wanted >= _key(NEWER):
        raise ValueError(f"vLLM {version} sizes the KV cache after warmup (the extensible KV cache, on by default on "
                         f"CUDA from {NEWER}.0): kvcalc follows " + ", ".join(r.version for r in RELEASES)
                         + "; 0.34 with --no-enable-extensible-kv-cache follows 0.33.0's rules")
    if wanted is None or wanted < _key(RELEASES[0].version):
        raise ValueError(f"unknown vLLM version {version!r}; kvcalc follows " + ", ".join(r.version for r in RELEASES)
                         + " (a later patch release takes its minor release's rules)")
    return [r for r in RELEASES if _key(r.version) <= wanted][-1]


def _key(version: str) -> tuple[int, ...] | None:
    parts = version.strip().lstrip("v").split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() and len(p) < 6 for p in parts):
        return None
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


class VLLM(Engine):
    models_layouts = True  # DP attention, EP and (vLLM) DCP: docs/engines/parallel.md
    name = "vllm"
    block_size = 16
    windows = True
    # flag names from vllm/engine/arg_utils.py EngineArgs.add_cli_args, vllm/config/cache.py
    # vllm/config/cache.py CacheDType (0.33.0): int4/int8 per token and head with inline fp32 scales
    # (triton_attn.py customize_spec), nvfp4 with fp8 scales per 16 (utils/torch_utils.py)
    kv_cache_dtypes = {"fp16": "float16", "bf16": "bfloat16", "fp8": "fp8", "int8": "int8_per_token_head",
                       "int4": "int4_per_token_head", "nvfp4": "nvfp4"}

    def __init__(self, version: str | None = None):
        self.rules = release(version)
        self.version = version.lstrip("v") if version else self.rules.version
        self.label = (f"vLLM {self.version} (v1 engine): --gpu-memory-utilization of total memory; pages of "
                      "--block-size tokens")

    def default_util(self, spec, deployment) -> Fraction:
        return self.rules.gpu_util

    # -- parallel layouts (docs/engines/parallel.md) ------------------------------------------------
    dcp_pages = True  # AttentionSpec.dcp_sharded: a page of block tokens per rank covers block x dcp tokens

    def check_layout(self, spec, deployment) -> None:
        """--data-parallel-size: whole TP groups (config/parallel.py 972, world x dp); experts over
        tp x dp, and with --enable-expert-parallel ep_size = tp x dp (fused_moe/config.py 1197-1240);
        DCP within TP (parallel.py 596-601) and, for GQA, only past the KV heads (config/model.py
        1578-1606); a request's pages each hold block x dcp tokens (kv_cache_interface.py 610-648)."""
        from kvcalc.capacity.deployment import FitUsageError, kv_heads

        d = deployment
        if d.ep > 1 and d.ep != d.tp * d.dp:
            raise FitUsageError(f"--ep {d.ep}: vLLM's --enable-expert-parallel spreads experts over tp x dp = "
                                f"{d.tp * d.dp} GPUs (fused_moe/config.py FusedMoEParallelConfig.make): use --ep "
                                f"{d.tp * d.dp}" + ("" if d.tp * d.dp > 1 else " with --tp or --dp above 1"))
        if d.dcp == 1:
            return
        if d.tp % d.dcp:
            raise FitUsageError(f"--dcp {d.dcp} must divide --tp {d.tp}: vLLM's decode context parallelism reuses "
                                "the TP ranks (config/parallel.py: tp_size must be divisible by dcp_size)")
        if any(k.type in ("sliding", "chunked", "none") for k in spec.layers.kinds.values()):
            raise FitUsageError(f"--dcp with {spec.name}'s sliding, chunked or state layers is not modelled "
                                "(kvcalc models DCP for full attention and MLA)")
        heads = {spec.attention_of(n).heads for n, k in spec.layers.kinds.items()}
        for kv in sorted(kv_heads(spec)):
            if d.tp <= kv:
                raise FitUsageError(f"--dcp {d.dcp} with a GQA model needs --tp above its {kv} KV heads (vLLM "
                                    f"config/model.py: DCP shards the heads TP replicates); --tp {d.tp} replicates "
                                    "none")
            if d.dcp > d.tp // kv:
                raise FitUsageError(f"--dcp {d.dcp} is more than tp // kv_heads = {d.tp} // {kv} = {d.tp // kv}, "
                                    "the copies of each KV head TP makes (vLLM config/model.py)")
            if any((h // kv) % d.dcp for h in heads):
                raise FitUsageError(f"--dcp {d.dcp} must divide the {min(heads) // kv} query heads per KV head of "
                                    f"{spec.name} (vLLM config/model.py)")

    def placement(self, spec, deployment):
        """Attention, dense MLPs, shared experts, embedding and head split over TP within each DP rank;
        routed experts over tp x dp (EP or not: FusedMoEParallelConfig.flatten_tp_across_dp_and_pcp)."""
        from kvcalc.capacity.weights import Placement

        tp, dp = deployment.tp, deployment.dp
        # sequence-parallel MoE (config/parallel.py 768-784: EP, TP > 1 and DP > 1 with the default
        # allgather_reducescatter backend) replicates DeepSeek's shared experts (deepseek_v2.py 252-275, 364-369)
        shared = 1 if deployment.ep > 1 and tp > 1 and dp > 1 else None
        return Placement(attention=tp, dense=tp, routed=tp * dp, embedding=tp, head=tp, shared=shared)

    # vllm/v1/worker/utils.py request_memory: math.ceil(total x utilization)
    def requested_bytes(self, memory: int, fraction: Fraction) -> int:
        return cdiv(memory * fraction.numerator, fraction.denominator)

    def scale_bits(self, heads: int, k_dim: int, v_dim: int, kv_dtype: str) -> int:
        if kv_dtype in ("int8", "int4"):  # int8/int4_per_token_head: an fp32 scale per token, head, K and V
            return 2 * heads * 32  # (v1/attention/backends/triton_attn.py TritonAttentionBackend.customize_spec)
        return 0  # nvfp4's own scales are the format's (dtypes.row_scale_bits)

    def async_scheduling(self, deployment) -> bool:
        """On by default since 0.14.0 (vllm/config/vllm.py); vLLM's CPU platform turns it off
        (platforms/cpu.py)."""
        chosen = deployment.switches.async_scheduling
        if chosen is not None:
            return chosen
        return deployment.platform == "cuda"

    def batches_in_flight(self, deployment) -> int:
        """vllm/config/vllm.py max_concurrent_batches: async scheduling with the V2 model runner
        pp + 1; async with the V1 runner 2 at PP 1; otherwise pp."""
        pp = deployment.pp
        if self.async_scheduling(deployment):
            return pp + 1 if self.rules.runner_v2 else max(2, pp)
        return pp

    def window_in_flight(self, deployment, batched: int) -> int:
        """Tokens a sliding window keeps beyond itself: every batch in flight (0.26.0 on), else one."""
        return self.batches_in_flight(deployment) * batched if self.rules.window_in_flight else batched

    def retained_lookahead(self, deployment) -> int:
        """Tokens a sliding window keeps past itself for a multi-module MTP drafter:
        num_prefill_lookahead_tokens - 1 (v1/core/kv_cache_planning.py 1636-1642), where the lookahead is
        num_speculative_tokens when min(MTP modules, num_speculative_tokens) > 1 (config/vllm.py 654-675,
        config/speculative.py 2188-2194) and 1 or 0 otherwise; num_speculative_tokens defaults to the MTP
        module count (speculative.py 1600-1603)."""
        if not deployment.mtp_layers:
            return 0
        k = deployment.switches.speculative_tokens or deployment.mtp_layers
        return k - 1 if min(deployment.mtp_layers, k) > 1 else 0

    def mamba_mode(self, deployment) -> str:
        """models/config.py MambaModelConfig: prefix caching (on by default) sets mamba_cache_mode
        'align' (always from 0.28.0; before, 'all' for models that support Mamba prefix caching,
        which kvcalc does not follow); without it, 'none'."""
        if deployment.switches.mamba_cache_mode:
            return deployment.switches.mamba_cache_mode
        prefix = deployment.switches.prefix_caching
        return "none" if prefix is False else "align"

    def checkpoint_pages(self, mixer: str | None, deployment) -> int:
        """num_prefill_checkpoint_blocks in align mode: Mamba2 1 (mamba_mixer2.py, 0.32.0); Gated
        DeltaNet 1 where its prefill runs on FlashInfer, Hopper by default (qwen_gdn_linear_attn.py,
        0.33.0); otherwise 0."""
        if self.mamba_mode(deployment) != "align":
            return 0
        if mixer == "mamba2":
            return int(self.rules.mamba2_checkpoint)
        if mixer == "gated_deltanet":
            return int(self.rules.gdn_checkpoint and self.hopper(deployment))
        return 0

    def hopper(self, deployment) -> bool:
        return deployment.platform == "cuda" and (deployment.gpu_key or "").startswith(HOPPER)

    def state_pages(self, t: LayerType, deployment) -> int:
        """Pages of a Mamba group per request (MambaSpec.max_memory_usage_bytes,
        kv_cache_interface.py): 'none' one state page plus one per speculative block; 'align'
        two (the running state and the last cached one) plus the speculative blocks plus the
        prefill checkpoint pages."""
        spec_blocks = deployment.switches.speculative_tokens
        if self.mamba_mode(deployment) == "none":
            return 1 + spec_blocks
        return 2 + spec_blocks + self.checkpoint_pages(t.mixer, deployment)

    def reserve_parts(self, spec, deployment, batched: int) -> dict[str, int]:
        """gpu_worker.determine_available_memory: the profiling run's activation peak at
        max_num_batched_tokens (and the sampler's logits), non-torch memory, CUDA graphs."""
        parts = estimate_activations(spec, deployment.tp, batched, max_seqs(deployment))
        ranks = deployment.tp * deployment.pp * deployment.dp
        parts["non_torch"] = NON_TORCH + (NON_TORCH_PARALLEL if ranks > 1 else 0)
        if self.rules.cuda_graphs_profiled and not deployment.switches.enforce_eager:
            parts["cuda_graphs"] = CUDA_GRAPHS
        elif not self.rules.cuda_graphs_profiled and not deployment.switches.enforce_eager:
            parts["cuda_graphs"] = 0  # captured after the budget was fixed: from the slack, not the budget
        return parts

    def capacity(self, spec, types: list[LayerType], stages: list[dict[str, int]], budget: int, deployment,
                 context: int, cap: int, batched: int) -> Capacity:
        """``types`` count whole-model layers, ``stages`` the kinds' layers per pipeline stage.
        Each pipeline worker needs as many tensors as the largest group has layers on it; the
        block count is the smallest any worker can afford."""
        notes = []
        block = deployment.block_size or self.default_block(spec, deployment)
        dcp = deployment.dcp  # each page of ``block`` tokens per rank covers block x dcp tokens of a request
        in_flight = self.window_in_flight(deployment, batched)
        retained = self.retained_lookahead(deployment)  # multi-module MTP: extra_retained_tokens
        attention = [t for t in types if t.attends]
        states = [t for t in types if not t.attends and t.state_bytes]
        types = attention + states  # a no-KV kind without a state takes no pages
        widest = max((t.token_bits for t in attention), default=0)
        state = max((t.state_bytes for t in states), default=0)
        kernel = max(KERNEL_BLOCK[deployment.platform], block)  # platforms/interface.py _align_hybrid_block_size
        if any(self.checkpoint_pages(t.mixer, deployment) for t in states if t.mixer == "gated_deltanet"):
            kernel = lcm(kernel, GDN_ALIGNMENT)
        if attention and states and cdiv(block * widest, 8) < state:
            raised = kernel * cdiv(state, kernel * cdiv(widest, 8))
            notes.append(f"block size raised from {block} to {raised} tokens (a multiple of the attention kernel's "
                         f"{kernel}) so one attention page holds a whole constant state ({state:,} B), as vLLM does "
                         "for hybrid models")
            block = raised
        page = cdiv(block * widest, 8) if attention else state
        blocks_of = {}
        for t in attention:
            own = cdiv(block * t.token_bits, 8)
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
        if states:
            mode = self.mamba_mode(deployment)
            pages = ", ".join(f"{t.name} {self.state_pages(t, deployment)}" for t in states)
            notes.append(f"mamba cache mode '{mode}'" + (
                " (prefix caching on): a state group is charged the running state, the last cached one and"
                " any prefill checkpoint pages" if mode == "align" else "") + f"; pages per request per state "
                f"group: {pages}")
            if any(t.mixer not in ("mamba2", "gated_deltanet") for t in states):
                notes.append("vLLM's checkpoint pages are read for Mamba2 and Gated DeltaNet layers only; other "
                             "state layers are charged none, and whether the model supports prefix caching (else "
                             "mode 'none') is not checked")
        counts = [t.layers for t in types]
        group = counts[0] if len(types) == 1 else self.group_size(counts)
        groups = {t.name: cdiv(t.layers, group) for t in types}
        padding = sum(groups.values()) * group - sum(counts)
        if padding:
            notes.append(f"vLLM groups layers {group} at a time; {padding} padding layer slot(s) hold pages "
                         f"that are never used ({padding}/{sum(groups.values()) * group} of the pool)")
        tensors = _tensors_per_stage(types, groups, stages, group)
        blocks = min(budget // (n * page) for n in tensors if n) if budget > 0 and page else 0

        def pages(t: LayerType, length: int) -> int:
            if not t.attends:
                return self.state_pages(t, deployment)
            b = blocks_of[t.name]
            if t.kind == "sliding":  # SlidingWindowSpec: the window need not start on a page boundary
                return cdiv(min(t.span - 1 + retained + in_flight, length), b) + 1
            if t.kind == "chunked":  # ChunkedLocalAttentionSpec
                return cdiv(min(t.span + in_flight, length), b)
            return cdiv(length, b * dcp)

        def needs(length: int) -> int:
            return sum(groups[t.name] * pages(t, length) for t in types)

        per_request = needs(context)
        # a prefix every request shares: its whole pages of full attention are held once (prefix caching)
        shared = 0
        if deployment.shared_prefix and deployment.switches.prefix_caching is not False:
            prefix = min(deployment.shared_prefix, context)
            shared = sum(groups[t.name] * (prefix // (blocks_of[t.name] * dcp)) for t in attention if t.kind == "full")
        held = (blocks - shared) // (per_request - shared) if blocks > shared and per_request > shared else 0
        bits = {t.name: t.token_bits for t in types}
        state_of = {t.name: t.state_bytes for t in types}
        described = tuple(
            {"name": t.name, "kind": t.kind, "layers": t.layers, "groups": groups[t.name],
             "block_size": blocks_of.get(t.name), "pages_per_request": groups[t.name] * pages(t, context)}
            for t in types
        )
        exact = Fraction(blocks, per_request)
        return Capacity(
            block_size=block,
            blocks=blocks,
            tokens=blocks * block * dcp,
            per_token_bytes=max(cdiv(sum(n * bits.get(k, 0) for k, n in s.items()), 8 * dcp) for s in stages),
            state_bytes_per_request=max(sum(n * state_of.get(k, 0) for k, n in s.items()) for s in stages),
            max_concurrency=held if shared else blocks // per_request,
            concurrency_exact=exact,
            max_context=largest_context(needs, blocks, cap),
            request_bytes=per_request * max(tensors) * page,
            groups=described if len(types) > 1 else (),
            notes=tuple(notes),
            log=(("gpu_kv_cache_tokens", self.logged_tokens(blocks, block, sum(groups.values()), exact, context)),
                 ("max_concurrency", round(float(exact), 2))),
        )

    def state_bytes(self, kind, model_dtype: str, tp: int, platform: str = "cuda") -> int:
        """As every engine keeps it (kernel - 1 conv columns), except that vLLM's CPU platform resets
        an SSM state dtype left to 'auto' to float32 on CPUs with AVX512-BF16 (platforms/cpu.py,
        accelerated GDN/Mamba backends); kvcalc's cpu platform is such a CPU."""
        if platform == "cpu" and kind.state_dtype is None and kind.conv_kernel and kind.mixer != "short_conv":
            kind = kind.model_copy(update={"state_dtype": "fp32", "conv_dtype": kind.conv_dtype or model_dtype})
        return super().state_bytes(kind, model_dtype, tp, platform)

    lora_default_targets = ("q", "k", "v", "o", "gate", "up", "down", "embed", "lm_head")  # vllm/lora: all supported
    tier_backends = ("native", "lmcache")

    def tier_tokens(self, ask) -> tuple[int, int, str]:
        """native (``--kv-offloading-size`` GiB, all ranks together; v1/kv_offload/cpu/spec.py 104-123):
        chunks of one GPU block of every rank's layers (one copy for MLA on one node), each rounded up to
        4096 B. Its disk tier is the fs secondary tier of TieringOffloadingSpec (tiering/fs/manager.py,
        registered as "fs" in tiering/factory.py 150-154): one file per CPU chunk of the same bytes
        (the primary view's stride, fs/manager.py 172-179), behind a CPU tier, with no cap of its own.
        lmcache (per worker; lmcache 0.5.6 ``max_local_cpu_size`` and ``max_local_disk_size`` are GiB,
        local_cpu_backend.py 403, local_disk_backend.py 190): chunks of 256 tokens (config.py 90)."""
        from kvcalc.capacity.extras import chunked_tokens

        if ask.backend == "lmcache":
            setting = "max_local_cpu_size" if ask.medium == "cpu" else "max_local_disk_size"
            return (chunked_tokens(ask.size, 256, 256 * ask.bytes_per_token), ask.size,
                    f"LMCache {setting}: per worker, chunks of 256 tokens of the rank's layers")
        if ask.backend != "native":
            raise ValueError(f"vLLM has no KV tier backend {ask.backend!r} kvcalc models (native, lmcache)")
        if ask.medium == "disk" and not ask.cpu_size:
            raise ValueError("vLLM's disk tier is the fs secondary tier behind its CPU tier "
                             "(TieringOffloadingSpec): give --cpu-kv too")
        chunk = ask.block * ask.bytes_per_token * (1 if ask.mla else ask.world)
        tokens = chunked_tokens(ask.size, ask.block, chunk, 4096)
        if ask.medium == "disk":
            return (tokens, ask.size, "vLLM fs tier: one file per chunk of one block of every rank's layers "
                    "(rounded up to 4096 B); vLLM sets it no size, so SIZE is the space its directory has")
        return (tokens, ask.size,
                "vLLM native offloading: all ranks together, chunks of one block of every rank's layers")

    def cuda_graphs(self, spec, deployment, batched: int, speculative_tokens: int = 0, lora: bool = False) -> dict:
        """The capture sizes (config/vllm.py _set_cudagraph_sizes 2447-2605; --enforce-eager empties them,
        2002-2009); with LoRA each size is captured for 2 LoRA cases, none and max_loras + 1
        (v1/worker/gpu/lora_utils.py 20-35). The reserve stays an estimate: vLLM measures the two largest
        FULL graphs at start-up and extrapolates first + (n - 1) x max(second, 1 MiB)
        (v1/worker/gpu/cudagraph_utils.py 1031-1040), so no per-size cost is in its code."""
        if deployment.switches.enforce_eager:
            return {"captured": False, "sizes": [], "graphs": 0, "reserve_bytes": 0,
                    "rule": "--enforce-eager: no capture sizes and nothing profiled (config/vllm.py 2002-2009, "
                            "v1/worker/gpu_worker.py 708-717)"}
        reserve = CUDA_GRAPHS if self.rules.cuda_graphs_profiled else 0  # as reserve_parts counts it
        if deployment.platform != "cuda":
            return {"captured": None, "sizes": [], "graphs": None, "reserve_bytes": reserve,
                    "rule": "vLLM's CPU platform: its graphs are not modelled (kvcalc keeps the reserve's estimate)"}
        sm100 = (deployment.compute_capability or "").startswith("10.")
        sizes = capture_sizes(max_seqs(deployment), 1 + speculative_tokens, batched, sm100,
                              deployment.switches.cuda_graph_max_bs)
        graphs = len(sizes) * (2 if lora else 1)
        rule = (f"{len(sizes)} capture sizes, {sizes[0]}..{sizes[-1]} tokens, by vLLM 0.33.0's rule"
                + (f" ({graphs} graphs: each for no LoRA and for max_loras + 1)" if lora else "")
                + "; vLLM measures its two largest graphs at start-up and extrapolates, so the cost per size is "
                "not in its code: kvcalc reserves a flat " + (f"{reserve / GiB:g} GiB" if reserve else
                                                              "0 (captured after the budget, before 0.20.0)"))
        return {"captured": True, "sizes": sizes, "graphs": graphs, "reserve_bytes": reserve, "rule": rule}

    def default_block(self, spec, deployment) -> int:
        """--block-size when not given: 16 on CUDA; vLLM's CPU platform takes 128 (16 for MLA),
        platforms/cpu.py check_and_update_config."""
        if deployment.platform == "cpu":
            mla = any(isinstance(spec.attention_of(n), MLAAttention) for n, k in spec.layers.kinds.items()
                      if k.type != "none")
            return 16 if mla else 128
        return self.block_size

    def group_size(self, counts: list[int]) -> int:
        """Layers per KV-cache group when kinds are mixed (kv_cache_utils
        _get_kv_cache_groups_uniform_page_size): the smallest kind's count, or the largest's when
        that is under the release's ratio x the smallest."""
        smallest, largest = min(counts), max(counts)
        ratio = self.rules.group_ratio
        return largest if largest * ratio.denominator < ratio.numerator * smallest else smallest

    def logged_tokens(self, blocks: int, block: int, groups: int, exact: Fraction, context: int) -> int:
        """The "GPU KV cache size: N tokens" line (kv_cache_utils): blocks // groups x block size in
        the releases that printed that, later int(max concurrency x max_model_len)."""
        if self.rules.log_groups:
            return blocks // groups * block
        return int(exact * context)

    def notes(self, spec, deployment, kv_dtype: str) -> list[str]:
        out = []
        retained = self.retained_lookahead(deployment)
        if retained and any(k.type == "sliding" for k in spec.layers.kinds.values()):
            out.append(f"multi-module MTP: every sliding window keeps {retained} more token(s) for the drafter's "
                       "lookahead (num_speculative_tokens - 1, vLLM's extra_retained_tokens)")
        windows = any(k.type in ("sliding", "chunked") for k in spec.layers.kinds.values())
        if windows and self.async_scheduling(deployment):
            n = self.batches_in_flight(deployment)
            out.append(f"async scheduling: {n} batches of max_num_batched_tokens in flight (window pages are "
                       "freed only once they are done)")
        return out


    def launch_lines(self, r, model: str, requests: int | None, util: float, kv_value: str | None,
                     kv_what: str) -> list[str]:
        flags = [("--tensor-parallel-size", r.tp, ""), ("--pipeline-parallel-size", r.pp, "")]
        extra = []
        if r.dp > 1:
            flags.append(("--data-parallel-size", r.dp, "DP ranks, each a whole TP group with its own KV pool"))
            if r.replicas > 1:
                extra.append(f"run {r.replicas} copies of this command (replicas of the whole DP group)")
        elif r.replicas > 1:
            flags.append(("--data-parallel-size", r.replicas, "replicas"))
        if r.ep > 1:
            flags.append(("--enable-expert-parallel", None, f"routed experts over tp x dp = {r.ep} GPUs"))
        if r.dcp > 1:
            flags.append(("--decode-context-parallel-size", r.dcp, "each request's KV interleaved over these ranks"))
        flags += [
            ("--max-model-len", r.context, "tokens per request"),
            ("--max-num-seqs", requests or default_max_seqs(r.deployment["gpu_memory_bytes"] or DEFAULT_MEMORY,
                                                            r.deployment["gpu"]),
             "requests held at once, as asked (-n)" if requests else
             f"vLLM's default; the pool holds {r.max_concurrency or 0:,} requests of the full context, "
             "more if shorter"),
            ("--gpu-memory-utilization", f"{util:.2f}", "fraction of total memory per GPU"),
        ]
        comments = [f"counted by vLLM {r.engine_version}'s rules", *extra, *_across_nodes(r)]
        if r.dp > 1:
            comments.append("--max-num-seqs applies to each DP rank (config/scheduler.py)")
        if kv_value is None:
            comments.append(f"vLLM has no --kv-cache-dtype for {kv_what}; left out")
        else:
            flags.append(("--kv-cache-dtype", kv_value, kv_what))
        flags += [("--block-size", r.block_size, "tokens per page"),
                  ("--max-num-batched-tokens", r.max_batched_tokens, "tokens per prefill step")]
        d = r.deployment
        if d["enforce_eager"]:
            flags.append(("--enforce-eager", None, "no CUDA graphs (none in the reserve)"))
        elif d["cuda_graph_max_bs"]:
            flags.append(("--compilation-config", _quoted({"max_cudagraph_capture_size": d["cuda_graph_max_bs"]}),
                          "the largest CUDA-graph capture size, as counted"))
        if d["async_scheduling"] is not None:
            flags.append(("--async-scheduling" if d["async_scheduling"] else "--no-async-scheduling", None,
                          "batches in flight, as counted"))
        if d["prefix_caching"] is not None:
            flags.append(("--enable-prefix-caching" if d["prefix_caching"] else "--no-enable-prefix-caching", None,
                          "as counted (Mamba cache mode)"))
        if d["mamba_cache_mode"]:
            flags.append(("--mamba-cache-mode", d["mamba_cache_mode"], "pages per Mamba group, as counted"))
        x = r.extras
        if x["lora_bytes_per_gpu"]:
            flags += [("--enable-lora", None, "LoRA slots counted in the budget"),
                      ("--max-loras", x["lora_slots"], "adapters on each GPU at once"),
                      ("--max-lora-rank", x["lora_rank"], "every slot sized for it")]
        tier, disk = x.get("cpu_tier"), x.get("disk_tier")
        lmcache = (tier or disk or {}).get("backend") == "lmcache"
        if lmcache:  # vLLM does not pass a size to LMCache: its own config does (GiB: x 1024**3 in lmcache 0.5.6)
            flags.append(("--kv-offloading-backend", "lmcache", ""))
            for t, setting in ((tier, "max_local_cpu_size"), (disk, "max_local_disk_size")):
                if t:
                    comments.append(f"LMCache holds the tier: set its {setting} to {_gib(t['bytes'])} (GiB, per "
                                    "worker) in its config" + (" and local_disk to a directory on the disk"
                                                               if t is disk else ""))
        elif tier:
            flags += [("--kv-offloading-size", _gib(tier["bytes"]), "GiB of CPU tier, all ranks together"),
                      ("--kv-offloading-backend", "native", "")]
        if disk and not lmcache:  # the fs secondary tier of TieringOffloadingSpec, merged into the native connector
            config = {"kv_connector": "OffloadingConnector", "kv_role": "kv_both",
                      "kv_connector_extra_config": {"spec_name": "TieringOffloadingSpec",
                                                    "secondary_tiers": [{"type": "fs", "root_dir": "/mnt/kvcalc-kv"}]}}
            flags.append(("--kv-transfer-config", _quoted(config), "a disk tier behind the CPU one (fs, one file "
                                                                     "per chunk)"))
            comments.append(f"the disk tier has no size in vLLM: point root_dir at a directory with "
                            f"{disk['bytes']:,} B free")
        speculative = _speculative_config(x, d["speculative_tokens"])
        if speculative:
            flags.append(("--speculative-config", speculative, "draft or MTP layers counted in the pool"))
        if r.concurrency is not None:
            comments.append(f"or exactly: --kv-cache-memory-bytes {r.required_kv_bytes_per_gpu} "
                            "(KV bytes per GPU; overrides --gpu-memory-utilization)")
        return command_lines(f"vllm serve {model}", flags, comments)


def capture_sizes(max_num_seqs: int, query_len: int, batched: int, sm100: bool,
                  max_size: int | None = None) -> list[int]:
    """vLLM 0.33.0's cudagraph_capture_sizes by default (config/vllm.py 2447-2605, no dynamic speculation, the
    default performance mode): a ceiling of min(max_num_seqs x query_len x 2, 1024 on SM100 else 512) unless
    max_cudagraph_capture_size is given, then at most max_num_batched_tokens; 1, 2, 4, every 8 below 256,
    every 16 from 256; max_num_batched_tokens when under the ceiling; and the uniform-decode sizes
    (max_num_seqs, or n x query_len for a request-count grid under speculative decoding)."""
    default = 1024 if sm100 else 512
    uniform: list[int] = []
    top = max_size
    if top is None:
        top = min(max_num_seqs * query_len * 2, default)
        if query_len > 1:
            most = min(max_num_seqs, default)
            counts = [n for n in (1, 2, 4) if n <= most] + list(range(8, min(most + 1, 256), 8)) \
                + list(range(256, most + 1, 16))
            uniform = sorted({n * query_len for n in set(counts + [most]) if n * query_len <= top})
        elif max_num_seqs <= top:
            uniform = [max_num_seqs]
    top = min(batched, top)
    sizes = [i for i in (1, 2, 4) if i <= top]
    if top >= 8:
        sizes += list(range(8, min(top + 1, 256), 8))
    if top >= 256:
        sizes += list(range(256, top + 1, 16))
    if batched <= top:
        sizes.append(batched)
    sizes += [u for u in uniform if u <= batched]
    return sorted(set(sizes))


def _speculative_config(extras: dict, tokens: int) -> str | None:
    """vLLM's --speculative-config JSON, shell-quoted: a draft model or the model's MTP layers."""
    if extras.get("draft_model_ref"):
        config = {"model": extras["draft_model_ref"], "num_speculative_tokens": tokens or 1}
    elif extras.get("mtp_layers"):
        config = {"method": "mtp", "num_speculative_tokens": tokens or extras["mtp_layers"]}
    else:
        return None
    return _quoted(config)


def _gib(size: int) -> str:
    """Bytes as the GiB float vLLM and LMCache multiply by 2**30: exact (a power-of-two division of an
    integer below 2**53 is), written in the fewest digits that read back to it."""
    value = size / 2**30
    return str(int(value)) if value == int(value) else repr(value)


def _quoted(config: dict) -> str:
    """A JSON flag value, shell-quoted."""
    import json
    import shlex

    return shlex.quote(json.dumps(config, separators=(",", ":")))


def _tensors_per_stage(types: list[LayerType], groups: dict[str, int], stages: list[dict[str, int]],
                       group: int) -> list[int]:
    """Per pipeline stage, the most layers any one group has there: the KV tensors that worker
    allocates. A type's layers go to its groups round-robin, as vLLM assigns them (layers[i::n]);
    with one stage that is the group size, padding slots included."""
    if len(stages) == 1:
        return [group]
    found = []
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




def _across_nodes(r) -> list[str]:
    """How the command runs over several nodes (vLLM 0.33.0's mp backend: engine/arg_utils.py
    1175-1178 --nnodes/--node-rank/--master-addr/--master-port, 2390-2413 nnodes divides the world;
    entrypoints/cli/serve.py 181-245: the other nodes run --headless workers), or with Ray
    (config/parallel.py 290-299)."""
    if not r.gpus_per_node:
        return []
    instance = r.tp * r.pp * r.dp
    if r.dp > 1 or r.nodes_per_instance > 1:
        nodes = r.nodes_per_instance  # one command: one instance (its DP ranks); replicas run it again
    else:  # replicas are launched as --data-parallel-size over the nodes
        nodes = -(-r.replicas // (r.gpus_per_node // instance))
    if nodes < 2:
        return []
    per = instance * (r.replicas if r.dp == 1 and r.nodes_per_instance == 1 else 1) // nodes
    dp = r.dp > 1 or (r.replicas > 1 and r.nodes_per_instance == 1)
    ray = "--data-parallel-backend ray" if dp else "--distributed-executor-backend ray"
    return [f"across {nodes} nodes ({per} GPUs each): run this same command on every node, adding --nnodes {nodes} "
            f"--node-rank R (0 to {nodes - 1}) --master-addr NODE0_IP --master-port 29501, and --headless on "
            f"nodes 1 and up (vLLM's mp backend; --nnodes must divide the world size); or start a Ray cluster "
            f"over the nodes and add {ray} on node 0 only"]
