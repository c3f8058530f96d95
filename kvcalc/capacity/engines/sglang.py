"""SGLang 0.5.x, read from its own code (sglang 0.5.23; paths under python/sglang/srt/).

- Default ``--mem-fraction-static``: ``arg_groups/memory_hook.py`` 281-343, on nvidia-smi's total
  (``utils/common.py`` 802-837, the smallest GPU's); the chunked-prefill and CUDA-graph batch
  defaults by memory tier at 89-167; the prefill-graph sizes at ``arg_groups/cuda_graph_hook.py``
  480-497.
- Budget: ``mem_cache/kv_cache_configurator.py`` 2990-3060: ``A - P x (1 - f)`` with P the free
  memory before the weights load and A after, so ``f x P - weights``; tokens ``budget // cell``
  in whole pages (``model_executor/pool_configurator.py`` 640-646).
- Pools: MHA/GQA and MLA cells (pool_configurator.py 340-536), the sliding-window pool
  (656-921, ``swa_full_tokens_ratio`` 0.8), the hybrid Mamba split (kv_cache_configurator.py
  3229-3409, ``mamba_full_memory_ratio`` 0.9, slots per request 3062-3088).
- ``max_running_requests``: kv_cache_configurator.py 3120-3150.
"""

from __future__ import annotations

from fractions import Fraction

from kvcalc.capacity.engines.base import Capacity, Engine, GiB, MiB, command_lines, largest_context
from kvcalc.capacity.layers import LayerType, cdiv, state_bits
from kvcalc.spec import MLAAttention, NoKVLayer

VERSIONS = ("0.5.23",)
# model_types on SGLang's sliding-window pool (configs/model_config.py 2651-2698) and those forced
# off it (arg_groups/model_overrides/gemma2_gemma3.py 13-26)
SWA_POOL = {"gpt_oss", "llama4", "gemma4", "gemma4_text", "mimo_v2", "mimo_v2_flash", "step3p5"}
SWA_OFF = {"gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text"}
SWA_RATIO = Fraction(4, 5)  # swa_full_tokens_ratio (arg_groups/fields/schedule.py 150-163)
MAMBA_RATIO = Fraction(9, 10)  # mamba_full_memory_ratio (schedule.py 220-228)
MAMBA_SLOTS_PER_REQUEST = 5  # 3 + 2 extra-buffer slots with the overlap schedule (allocation_sizing.py 11-19)
CONTEXT_RESERVE = GiB // 2  # CUDA context and allocator before the weights load: an estimate
NCCL_RESERVE = GiB  # NCCL and custom all-reduce buffers at TP or PP > 1, before the weights load: an estimate


def prefill_graph_sizes(max_bs: int) -> list[int]:
    """generate_prefill_cuda_graph_batch_sizes: 4..32 by 4, 48..256 by 16, 288..512 by 32,
    576..1024 by 64, 1280..4096 by 256, then by 512; those <= max_bs."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
             *range(1280, 4097, 256), *range(4608, max_bs + 1, 512)]
    return [s for s in sizes if s <= max_bs]


def tier_defaults(smi_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, decode CUDA-graph max batch size) by nvidia-smi MiB (memory_hook.py 89-167)."""
    if smi_mib < 20 * 1024:
        return 2048, 8
    if smi_mib < 35 * 1024:
        return 4096, 48 if tp < 4 else 160
    if smi_mib < 60 * 1024:
        return 4096, 32 if tp < 4 else 160
    if smi_mib < 160 * 1024:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


class SGLang(Engine):
    models_layouts = True  # DP attention, EP and (vLLM) DCP: docs/engines/parallel.md
    name = "sglang"
    block_size = 1  # --page-size 1 on CUDA (arg_groups/overrides.py 1342-1363)
    windows = False
    # mem_cache/kv_cache_dtype.py configure_kv_cache_dtype (0.5.23); nvfp4: SM100/SM120 only
    # (layers/quantization/fp4_kv_cache_quant_method.py NVFP4KVCacheMethod)
    kv_cache_dtypes = {"bf16": "bf16", "fp8": "fp8_e4m3", "nvfp4": "nvfp4"}
    nvfp4_capability = (10, 0)

    def __init__(self, version: str | None = None):
        if version is not None and version.lstrip("v") not in VERSIONS:
            raise ValueError(f"unknown SGLang version {version!r}; kvcalc follows " + ", ".join(VERSIONS))
        self.version = VERSIONS[-1] if version is None else version.lstrip("v")
        self.label = (f"SGLang {self.version}: --mem-fraction-static of the memory free before the weights "
                      "load; token pool with --page-size 1")

    # -- parallel layouts (docs/engines/parallel.md) ------------------------------------------------
    dp_adds_gpus = False  # attention DP runs inside the TP group (server_args.py 581-589)

    def attention_tp(self, deployment) -> int:
        """attn_tp_size = tp_size // attn_dp_size (runtime_context.py 73-76)."""
        return deployment.tp // deployment.dp

    def check_layout(self, spec, deployment) -> None:
        from kvcalc.capacity.deployment import FitUsageError

        d = deployment
        if d.tp % d.dp:
            raise FitUsageError(f"--dp {d.dp} must divide --tp {d.tp}: SGLang's attention DP splits the TP group "
                                "(arg_groups/parallel_hook.py: assert tp_size % attn_dp_size == 0)")
        if d.dp > 1 and d.replicas > 1:
            raise FitUsageError("SGLang refuses data-parallel replicas with attention DP (--dp-size with "
                                "--attn-dp-size, arg_groups/parallel_hook.py); give --gpus equal to --tp")
        if d.tp % d.ep:
            raise FitUsageError(f"--ep {d.ep} must divide --tp {d.tp}: SGLang's MoE TP is what is left of tp_size "
                                "after expert parallelism (arg_groups/fields/parallel.py moe_tp_size)")
        if d.dcp > 1:
            raise FitUsageError("--dcp is modelled for vLLM only (SGLang's --dcp-size is not followed)")

    def placement(self, spec, deployment):
        """With attention DP: attention projections and the input embedding over attention TP
        (deepseek_v2.py 2078-2161 parallel_group "attn_tp"; vocab_parallel_embedding.py 185), the head
        over TP (enable_dp_lm_head off: deepseek_v2.py 3291-3296), dense MLPs and shared experts over
        TP (moe_dense_tp_size unset; deepseek_v2.py 888-896, 2665), routed experts over EP x MoE TP =
        TP."""
        from kvcalc.capacity.weights import Placement

        tp, attn = deployment.tp, self.attention_tp(deployment)
        return Placement(attention=attn, dense=tp, routed=tp, embedding=attn, head=tp)

    def smi_mib(self, deployment) -> float:
        """nvidia-smi's total in MiB (the catalog's), else the CUDA total SGLang falls back to."""
        return (deployment.smi_memory or deployment.memory_or_default) / MiB

    def batched_tokens(self, deployment) -> int:
        return tier_defaults(self.smi_mib(deployment), deployment.tp)[0]

    def fraction_parts(self, spec, deployment) -> dict:
        """The default --mem-fraction-static and each MiB it reserves (memory_hook.py 281-398)."""
        smi = self.smi_mib(deployment)
        chunk, max_bs = tier_defaults(smi, deployment.tp)
        chunk = deployment.max_batched_tokens or chunk
        if deployment.switches.cuda_graph_max_bs is not None:  # --cuda-graph-max-bs-decode replaces the tier's
            max_bs = deployment.switches.cuda_graph_max_bs
        elif deployment.max_seqs is not None:  # the tier's, clamped to --max-running-requests (memory_hook.py 182-188)
            max_bs = min(max_bs, deployment.max_seqs * deployment.dp)
        eager = deployment.switches.enforce_eager  # --disable-cuda-graph: no decode or prefill graphs
        mla = isinstance(spec.attention, MLAAttention)
        parts = {"base": 512.0, "activations": max(chunk, 2048) * 1.5,
                 "parallel": deployment.tp * deployment.pp / 8 * 1024}
        parts["decode_graphs"] = 0.0 if eager else max_bs * 2.0
        if deployment.dp > 1:  # attention DP pads batches (memory_hook.py 370-378), graphs or not
            parts["dp_attention"] = max_bs * deployment.dp * (3.0 + (1.5 if max_bs > 300 else 0.0))
        prefill_graph = not eager and deployment.pp == 1  # off at PP > 1 (cuda_graph_hook.py 125-315)
        sizes = prefill_graph_sizes(min(8192, chunk) if mla else chunk)
        parts["prefill_graphs"] = 0.0 if not prefill_graph else (1536.0 if mla else 8.0 * len(sizes))
        reserved = sum(parts.values())
        if smi > 60 * 1024 and reserved < 10 * 1024:
            parts["floor"] = 10 * 1024 - reserved  # a 10 GiB floor above 60 GiB
            reserved = 10 * 1024
        fraction = round((smi - reserved) / smi, 3)
        return {"fraction": fraction, "smi_mib": smi, "reserved_mib": reserved, "parts_mib": parts,
                "chunked_prefill_size": chunk, "cuda_graph_max_bs": 0 if eager else max_bs}

    def default_util(self, spec, deployment) -> Fraction:
        return Fraction(str(self.fraction_parts(spec, deployment)["fraction"]))

    def cuda_graphs(self, spec, deployment, batched: int, speculative_tokens: int = 0, lora: bool = False) -> dict:
        """Decode batch sizes up to cuda_graph_max_bs (cuda_graph_hook.py 500-532) and prefill sizes
        (480-497), reserved in the default fraction at 2 MiB per decode max batch and 8 MiB per prefill
        size (1,536 MiB for MLA) (memory_hook.py 355-398): out of P x (1 - f), not out of the KV budget."""
        f = self.fraction_parts(spec, deployment)
        parts = f["parts_mib"]
        max_bs = f["cuda_graph_max_bs"]
        if not max_bs:
            return {"captured": False, "sizes": [], "graphs": 0, "reserve_bytes": 0,
                    "rule": "--disable-cuda-graph: neither decode nor prefill graphs (cuda_graph_hook.py 55-57)"}
        if deployment.speculative:
            sizes = [*range(1, 9), *range(10, 33, 2), *range(40, 65, 4), *range(72, 257, 8),
                     *range(272, max_bs + 1, 16)]
        else:
            sizes = [1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 512, 16), *range(512, max_bs + 1, 32)]
        sizes = [b for b in sizes if b <= max_bs] + ([] if max_bs in sizes else [max_bs])
        chunk = f["chunked_prefill_size"]
        mla = isinstance(spec.attention, MLAAttention)
        prefill = len(prefill_graph_sizes(min(8192, chunk) if mla else chunk)) if parts["prefill_graphs"] else 0
        reserve = int((parts["decode_graphs"] + parts["prefill_graphs"]) * MiB)
        rule = (f"{len(sizes)} decode batch sizes up to {max_bs}" + (f" and {prefill} prefill sizes"
                                                                     if prefill else "")
                + f": {parts['decode_graphs']:g} + {parts['prefill_graphs']:g} MiB kept out of the default "
                "--mem-fraction-static (memory_hook.py), not taken from the KV budget")
        return {"captured": True, "sizes": sizes, "graphs": len(sizes) + prefill, "reserve_bytes": reserve,
                "rule": rule}

    def budget(self, deployment, fraction: Fraction, weights: int, reserve: int) -> int:
        """A - P x (1 - f) = f x P - weights, P the memory free before the weights load (the
        runtime's ``reserve`` taken from the total)."""
        free = deployment.memory - reserve
        return free * fraction.numerator // fraction.denominator - weights

    def reserve_parts(self, spec, deployment, batched: int) -> dict[str, int]:
        """What is held before the weights load, taken from the total to give P: the CUDA
        context and, at TP or PP > 1, NCCL and custom all-reduce buffers. Activations and CUDA
        graphs come out of P x (1 - f), not out of the KV budget."""
        parts = {"cuda_context": CONTEXT_RESERVE}
        if deployment.tp * deployment.pp > 1:
            parts["nccl"] = NCCL_RESERVE
        return parts

    def token_bits(self, attention, tp: int, kv_dtype: str, mla_layout: str = "latent") -> int:
        if isinstance(attention, MLAAttention) and attention.indexer is not None and kv_dtype == "fp8":
            # DSA's fp8 latent (kv_cache_configurator.py 3439-3474): 512 fp8 + a 4-byte scale per 128 +
            # the rope part in bf16 = 656 B, plus the indexer's key + scale (pool_configurator.py 401-409)
            a = attention
            latent = a.kv_lora_rank + a.kv_lora_rank // 128 * 4 + a.qk_rope_head_dim * 2
            return 8 * latent + a.indexer.bits_per_token(kv_dtype)
        return super().token_bits(attention, tp, kv_dtype, mla_layout)

    def state_bytes(self, kind: NoKVLayer, model_dtype: str, tp: int, platform: str = "cuda") -> int:
        """mamba_utils.py 47-241: conv (conv_dim / tp, kernel - 1) in bf16 and the SSM state in
        float32 unless the config names another dtype (mamba_ssm_dtype)."""
        ssm_dtype = kind.state_dtype or "fp32"
        as_sglang = kind.model_copy(update={"state_dtype": ssm_dtype, "conv_dtype": kind.conv_dtype or "bf16"})
        return cdiv(cdiv(state_bits(as_sglang, model_dtype, -1), 8), tp)

    tier_backends = ("hicache",)
    tier_ratio = True

    def tier_tokens(self, ask) -> tuple[int, int, str]:
        """HiCache, per TP rank (each rank its own host pool). Host pool (mem_cache/pool_host/base.py
        218-229): ``--hicache-size`` whole GB (an int, arg_groups/fields/memory.py 113-116) gives
        ``int(GB x 1e9 // bytes per token)`` tokens, else ``int(device pool x --hicache-ratio)``; then
        whole pages plus one padding page. Disk: the ``file`` storage backend (hicache_storage.py
        728-830), each rank's files capped by its ``max_size`` in bytes (storage/file/lru_file_evictor.py
        39-53, 117-128), one file per page of the rank's K and V (pool_host/mha.py 713-725)."""
        if ask.backend != "hicache":
            raise ValueError(f"SGLang has no KV tier backend {ask.backend!r} kvcalc models (hicache)")
        per = ask.bytes_per_token
        if ask.medium == "disk":
            pages = ask.size // (ask.block * per) if per else 0
            how = ("SGLang HiCache file storage: per TP rank (an MLA latent shared), files of one page, "
                   "capped by its max_size")
            if not ask.cpu_size and ask.ratio is None:  # arg_groups/hicache_hook.py 100-125
                how += ("; HiCache on also builds a host pool (--hicache-ratio 2 by default, or sized from the host's "
                        "free memory), which kvcalc counts only with --cpu-kv or --hicache-ratio")
            return pages * ask.block, ask.size, how
        if ask.size:
            gb = ask.size // 10**9  # --hicache-size is an int of GB
            if not gb:
                raise ValueError(f"SGLang's --hicache-size takes whole GB (10^9 B); {ask.size:,} B is less than one")
            tokens = gb * 10**9 // per if per else 0
            how = f"SGLang --hicache-size {gb} (GB per TP rank)"
            if gb * 10**9 != ask.size:
                how += f", the {ask.size:,} B asked rounded down to whole GB as the flag takes them"
            if ask.ratio is not None:
                how += "; the size overrides --hicache-ratio, as in SGLang"
            sized = gb * 10**9
        else:
            if not ask.pool_tokens:
                return 0, 0, ("SGLang --hicache-ratio sizes the host pool from the device pool, and nothing fits "
                              "on the GPU here: no host pool to size")
            tokens = int(ask.pool_tokens * float(ask.ratio))  # SGLang multiplies in floating point
            how = (f"SGLang --hicache-ratio {float(ask.ratio):g} x the device pool of {ask.pool_tokens:,} tokens, "
                   "per TP rank")
            sized = 0
        tokens = (tokens // ask.block + 1) * ask.block  # whole pages and one padding page
        how += ", whole pages plus one padding page"
        if tokens <= ask.pool_tokens:  # pool_host/base.py 237-245: a warning at start-up, not a refusal
            how += (f"; no larger than the device pool ({ask.pool_tokens:,} tokens), which SGLang warns reduces "
                    "the host cache's hit rate")
        return tokens, sized or tokens * per, how

    def swa_pool(self, spec) -> bool:
        return spec.model_type in SWA_POOL

    def capacity(self, spec, types: list[LayerType], stages: list[dict[str, int]], budget: int, deployment,
                 context: int, cap: int, batched: int) -> Capacity:
        page = deployment.block_size or self.block_size
        budget = max(budget, 0)
        attention = [t for t in types if t.attends]
        states = [t for t in types if not t.attends and t.state_bytes]
        notes = []
        slots = None
        if states:  # the hybrid Mamba split: state slots first, the rest for full-attention tokens
            s = sum(t.layers * t.state_bytes for t in states)
            mamba_budget = budget * MAMBA_RATIO.numerator // (MAMBA_RATIO.numerator + MAMBA_RATIO.denominator)
            slots = max((mamba_budget - s) // s, 0)
            budget = max(budget - (slots + 1) * s, 0)
            notes.append(f"SGLang's hybrid pool: {slots:,} state slots of {s:,} B (0.9/1.9 of the budget), "
                         f"{MAMBA_SLOTS_PER_REQUEST} per running request; the rest holds full-attention tokens")
        swa = self.swa_pool(spec) and any(t.kind == "sliding" for t in attention)
        full_bits = sum(t.layers * t.token_bits for t in attention if not (swa and t.kind == "sliding"))
        swa_bits = sum(t.layers * t.token_bits for t in attention if swa and t.kind == "sliding")
        cell = Fraction(full_bits, 8) + SWA_RATIO * Fraction(swa_bits, 8)
        tokens = int(budget // cell) // page * page if cell else 0
        swa_tokens = int(tokens * SWA_RATIO) // page * page if swa_bits else None
        if swa_bits:
            notes.append(f"SGLang's sliding-window pool: {tokens:,} full-layer tokens and {swa_tokens:,} "
                         "sliding-layer tokens (swa_full_tokens_ratio 0.8)")

        prefix = deployment.shared_prefix if deployment.switches.prefix_caching is not False else 0

        def fits(length: int) -> int:
            held = cdiv(length, page) * page
            shared = min(prefix, length) // page * page  # the radix cache keeps a shared prefix once
            n = (tokens - shared) // (held - shared) if held > shared and tokens > shared else 0
            if swa_bits:
                window = min(length, max(t.span for t in attention if t.kind == "sliding"))
                n = min(n, swa_tokens // (cdiv(window, page) * page))
            if slots is not None:
                n = min(n, slots // MAMBA_SLOTS_PER_REQUEST)
            return n

        running = self.max_running_requests(tokens, context, deployment)
        if slots is not None:
            running = min(running, slots // MAMBA_SLOTS_PER_REQUEST)
        per_token = cdiv(full_bits + swa_bits, 8)
        request = cdiv(context, page) * page * per_token + sum(t.layers * t.state_bytes for t in states)
        held = fits(context)
        longest = largest_context(lambda n: 0 if fits(n) else 1, 0, cap)
        return Capacity(
            block_size=page, blocks=tokens // page, tokens=tokens, per_token_bytes=per_token,
            state_bytes_per_request=sum(t.layers * t.state_bytes for t in states),
            max_concurrency=held, concurrency_exact=Fraction(held), max_context=longest,
            request_bytes=request, notes=tuple(notes),
            log=(("max_total_num_tokens", tokens), ("max_running_requests", running))
            + ((("swa_tokens", swa_tokens),) if swa_bits else ()) + ((("max_mamba_cache_size", slots),)
                                                                     if slots is not None else ()),
        )

    def max_running_requests(self, tokens: int, context: int, deployment) -> int:
        """A slot cap, not requests of the context: clamp(int(T / context_len x 512), 2048, 4096),
        at most T // 2 (kv_cache_configurator.py 3120-3133); 48 under speculative decoding."""
        if deployment.speculative:  # speculative decoding's own default (arg_groups/speculative_hook.py 1086-1094)
            return min(48, tokens // 2)
        estimate = min(max(tokens * 512 // context, 2048), 4096)
        return min(estimate, tokens // 2)

    def notes(self, spec, deployment, kv_dtype: str) -> list[str]:
        out = []
        if deployment.gpu_util is None:
            f = self.fraction_parts(spec, deployment)
            smi = ("nvidia-smi's total" if deployment.smi_memory else
                   "the CUDA total (no nvidia-smi total in the catalog)")
            out.append(f"SGLang's default --mem-fraction-static {f['fraction']:.3f}: ({f['smi_mib']:,.0f} - "
                       f"{f['reserved_mib']:,.0f}) / {f['smi_mib']:,.0f} MiB of {smi}, reserving activations "
                       f"for chunked prefill {f['chunked_prefill_size']}, TP x PP, and CUDA graphs up to batch "
                       f"{f['cuda_graph_max_bs']} (memory_hook.py)")
        if any(k.type in ("sliding", "chunked") for k in spec.layers.kinds.values()) and not self.swa_pool(spec):
            why = ("is forced off its sliding-window pool" if spec.model_type in SWA_OFF else
                   "is not on its sliding-window pool list" if spec.model_type else
                   "cannot be matched to its sliding-window pool list (no model_type)")
            out.append(f"SGLang: {spec.name} {why}, so sliding and chunked layers are charged the whole context")
        if kv_dtype == "nvfp4":
            out.append("SGLang nvfp4: one fp8 scale layout counted; backends that also read it natively or "
                       "dequantize for prefill add a second scale layout and a per-token workspace "
                       "(fp4_kv_cache_quant_method.py compute_cell_size), not counted")
        if any(k.conv_kernel and k.state_dtype is None for k in spec.layers.kinds.values() if isinstance(k, NoKVLayer)):
            out.append("SGLang keeps Mamba SSM states in float32 and conv states in bf16 unless the config says "
                       "otherwise (mamba_utils.py)")
        return out

    def launch_lines(self, r, model: str, requests: int | None, util: float, kv_value: str | None,
                     kv_what: str) -> list[str]:
        flags = [("--model-path", model, ""), ("--tp-size", r.tp, ""), ("--pp-size", r.pp, "")]
        if r.replicas > 1:
            flags.append(("--dp-size", r.replicas, "replicas"))
        if r.dp > 1:
            flags.append(("--attn-dp-size", r.dp, f"attention DP: attention TP {r.attention_tp}, a KV pool per rank"))
        if r.ep > 1:
            flags.append(("--ep-size", r.ep, "routed experts over this many GPUs"))
        flags += [
            ("--context-length", r.context, "tokens per request"),
            ("--mem-fraction-static", f"{util:.3f}" if r.concurrency is None else f"{util:.2f}",
             "weights + KV pool as a fraction of the memory free before loading"),
        ]
        if requests:  # SGLang divides --max-running-requests by attn_dp_size (kv_cache_configurator.py)
            flags.insert(-1, ("--max-running-requests", requests * r.dp, "requests held at once, as asked (-n)" + (
                f", all {r.dp} attention-DP ranks together" if r.dp > 1 else "")))
        comments = [f"counted by SGLang {r.engine_version}'s rules"]
        if not requests:
            comments.append("--max-running-requests left to SGLang: it derives it from the pool (max_total_num_tokens)")
        if kv_value is None:
            comments.append(f"SGLang has no --kv-cache-dtype for {kv_what}; left out")
        else:
            flags.append(("--kv-cache-dtype", kv_value, kv_what))
        flags += [("--page-size", r.block_size, "tokens per page"),
                  ("--chunked-prefill-size", r.max_batched_tokens, "tokens per prefill step")]
        if r.deployment["enforce_eager"]:
            flags.append(("--disable-cuda-graph", None, "no CUDA graphs, as counted"))
        elif r.deployment["cuda_graph_max_bs"]:
            flags.append(("--cuda-graph-max-bs-decode", r.deployment["cuda_graph_max_bs"],
                          "the largest decode CUDA graph, as counted"))
        if r.deployment["prefix_caching"] is False:
            flags.append(("--disable-radix-cache", None, "as counted"))
        x = r.extras
        if x["lora_bytes_per_gpu"]:
            modules = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
                       "up": "up_proj", "down": "down_proj"}
            flags += [("--enable-lora", None, "LoRA slots counted in the budget"),
                      ("--max-loras-per-batch", x["lora_slots"], "adapters on each GPU at once"),
                      ("--max-lora-rank", x["lora_rank"], "every slot sized for it"),
                      ("--lora-target-modules", " ".join(modules[t] for t in x["lora_targets"]), "")]
        tier, disk = x.get("cpu_tier"), x.get("disk_tier")
        if tier or disk:
            flags.append(("--enable-hierarchical-cache", None, "a host KV tier"))
        if tier and tier["ratio"] is not None:
            flags.append(("--hicache-ratio", f"{tier['ratio']:g}", "host pool = ratio x device pool, per TP rank"))
        elif tier:
            flags.append(("--hicache-size", tier["bytes"] // 10**9, "GB per TP rank (whole GB)"))
        if disk:  # HiCacheFile: max_size in bytes per rank (storage/file/lru_file_evictor.py)
            import json
            import shlex

            flags += [("--hicache-storage-backend", "file", "a disk tier of page files"),
                      ("--hicache-storage-backend-extra-config", shlex.quote(json.dumps(
                          {"max_size": disk["bytes"], "file_storage_path": "/mnt/kvcalc-kv"}, separators=(",", ":"))),
                       "bytes per TP rank; point file_storage_path at the disk")]
        if x.get("draft_model_ref"):
            flags += [("--speculative-algorithm", "STANDALONE", "a separate draft model"),
                      ("--speculative-draft-model-path", x["draft_model_ref"], "its KV counted in the pool")]
        elif x.get("mtp_layers"):
            flags.append(("--speculative-algorithm", "NEXTN", "the model's MTP layers (SGLang's name for them)"))
        if r.concurrency is not None:
            tokens = requests * r.context
            comments.append(f"or exactly: --max-total-tokens {tokens} (the KV pool in tokens"
                            + (", per attention-DP rank" if r.dp > 1 else "") + ")")
        return command_lines("python -m sglang.launch_server", flags, comments)
