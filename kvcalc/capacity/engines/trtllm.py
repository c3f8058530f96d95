"""TensorRT-LLM's PyTorch backend, modelled coarsely (docs/fit.md says what is and is not).

Modelled: ``KvCacheConfig.free_gpu_memory_fraction`` (0.9) of the memory free after the model
is loaded (``tensorrt_llm/_torch/pyexecutor/resource_manager.py``, docs/source/reference/memory.md),
``tokens_per_block`` 32, KV heads per GPU ``ceil(kv_heads / tp)``, windows charged only their
span. Not modelled: its own activation and CUDA-graph profiling, per-window pools, Mamba
states' pages, quantization scales, host offloading.
"""

from __future__ import annotations

from fractions import Fraction

from kvcalc.capacity.engines.base import Capacity, Engine, command_lines, largest_context
from kvcalc.capacity.layers import LayerType, cdiv

VERSIONS = ("1.0",)


class TensorRTLLM(Engine):
    name = "trtllm"
    block_size = 32
    windows = True
    kv_cache_dtypes = {"fp16": "float16", "fp8": "fp8", "nvfp4": "nvfp4"}  # llmapi/llm_args.py KvCacheConfig

    def __init__(self, version: str | None = None):
        if version is not None and version.lstrip("v") not in VERSIONS:
            raise ValueError(f"unknown TensorRT-LLM version {version!r}; kvcalc follows " + ", ".join(VERSIONS))
        self.version = VERSIONS[-1] if version is None else version.lstrip("v")
        self.label = ("TensorRT-LLM: free_gpu_memory_fraction of memory free after loading; tokens_per_block 32 "
                      "(modelled coarsely)")

    tier_backends = ("host",)

    def tier_tokens(self, ask) -> tuple[int, int, str]:
        """KvCacheConfig.host_cache_size (bytes per rank): whole blocks of tokens_per_block. A disk tier
        is not modelled (KvCacheConfig sizes host memory only; its connector API is not followed)."""
        from kvcalc.capacity.extras import chunked_tokens

        if ask.backend != "host":
            raise ValueError(f"TensorRT-LLM has no KV tier backend {ask.backend!r} kvcalc models (host)")
        if ask.medium == "disk":
            raise ValueError("a disk tier is not modelled for TensorRT-LLM: kvcalc follows its host cache "
                             "(host_cache_size) only")
        return (chunked_tokens(ask.size, ask.block, ask.block * ask.bytes_per_token), ask.size,
                "TensorRT-LLM host cache: per rank, whole blocks of tokens_per_block")

    def default_util(self, spec, deployment) -> Fraction:
        return Fraction(9, 10)

    def heads_per_gpu(self, kv_heads: int, tp: int) -> int:
        return cdiv(kv_heads, tp)

    def budget(self, deployment, fraction: Fraction, weights: int, reserve: int) -> int:
        free = deployment.memory - weights - reserve
        return free * fraction.numerator // fraction.denominator

    def capacity(self, spec, types: list[LayerType], stages: list[dict[str, int]], budget: int, deployment,
                 context: int, cap: int, batched: int) -> Capacity:
        found = []
        for stage in stages:
            mine = [LayerType(t.name, t.kind, t.span, stage[t.name], t.token_bits, t.state_bytes, t.mixer)
                    for t in types if stage.get(t.name)]
            if any(t.attends or t.state_bytes for t in mine):
                found.append(pool_capacity(mine, budget, deployment.block_size or self.block_size, context, cap))
        return min(found, key=lambda c: (c.max_concurrency, c.max_context, -c.request_bytes))

    def notes(self, spec, deployment, kv_dtype: str) -> list[str]:
        out = ["TensorRT-LLM is modelled coarsely: its budget base and block size, not its own profiling, "
               "per-window pools or Mamba pages"]

        return out

    def launch_lines(self, r, model: str, requests: int | None, util: float, kv_value: str | None,
                     kv_what: str) -> list[str]:
        yaml_lines = ["kv_cache_config:", f"  tokens_per_block: {r.block_size}",
                      f"  free_gpu_memory_fraction: {util:.2f}"]
        comments = []
        if kv_value is None:
            comments.append(f"TensorRT-LLM has no KV dtype for {kv_what}; left out")
        else:
            yaml_lines.append(f"  dtype: {kv_value}")
        if r.concurrency is not None:
            held = -(-r.context // r.block_size) * r.block_size
            yaml_lines.append(f"  max_tokens: {requests * held}")
        if r.extras.get("cpu_tier"):
            yaml_lines.append(f"  host_cache_size: {r.extras['cpu_tier']['bytes']}")
        if r.replicas > 1:
            comments.append(f"TensorRT-LLM has no data-parallel flag: run {r.replicas} replicas of this command")
        if r.deployment.get("cuda_graph_max_bs"):
            comments.append("--cuda-graph-max-bs is not written: kvcalc does not model TensorRT-LLM's CUDA-graph "
                            "settings (its cuda_graph_config); set them in the YAML if you need them")
        x = r.extras
        for asked, what in ((x["lora_bytes_per_gpu"], "LoRA slots (its lora_config)"),
                            (x.get("draft_model_ref") or x.get("draft") or x["mtp_layers"],
                             "speculative decoding (its speculative_config)")):
            if asked:  # counted in the budget, but kvcalc does not follow TensorRT-LLM's settings for them
                comments.append(f"{what}: counted as vLLM holds them, not written here; set them in the YAML")
        flags = [
            ("--tp_size", r.tp, ""),
            ("--pp_size", r.pp, ""),
            ("--max_seq_len", r.context, "tokens per request"),
            ("--max_num_tokens", r.max_batched_tokens, "tokens per step"),
            ("--extra_llm_api_options", "kvcalc-trtllm.yaml", "KV pool settings (no CLI flags for them)"),
        ]
        if requests:
            flags.insert(3, ("--max_batch_size", requests, "requests held at once, as asked (-n)"))
        else:
            comments.append("--max_batch_size left to TensorRT-LLM's default (no -n given)")
        # set -C: the snippet refuses to overwrite a kvcalc-trtllm.yaml already in the folder
        comments.append("the YAML file is written only if none of that name exists (set -C); move an old one away")
        out = ["(set -C; cat > kvcalc-trtllm.yaml) <<'YAML'", *yaml_lines, "YAML"]
        return out + command_lines(f"trtllm-serve {model}", flags, comments)


def pool_capacity(types: list[LayerType], budget: int, block: int, context: int, cap: int) -> Capacity:
    """One byte pool: a request takes whole pages of each layer's held tokens (windows capped) and
    its states."""
    attention = [t for t in types if t.attends]
    cell_bits = sum(t.layers * t.token_bits for t in attention)
    states = sum(t.layers * t.state_bytes for t in types if not t.attends)
    budget = max(budget, 0)
    blocks = budget // cdiv(block * cell_bits, 8) if cell_bits else 0

    def needs(length: int) -> int:
        bits = 0
        for t in attention:
            held = t.held(length)
            bits += t.layers * cdiv(held, block) * block * t.token_bits
        return cdiv(bits, 8) + states

    per_request = needs(context)
    return Capacity(
        block_size=block, blocks=blocks, tokens=blocks * block, per_token_bytes=cdiv(cell_bits, 8),
        state_bytes_per_request=states, max_concurrency=budget // per_request,
        concurrency_exact=Fraction(budget, per_request), max_context=largest_context(needs, budget, cap),
        request_bytes=per_request,
    )
