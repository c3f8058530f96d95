"""KV-cache element types and their width in bits (int4 is half a byte: count bits).

nvfp4 is 4-bit e2m1 values with one fp8 (e4m3) scale per 16 values along each cached row (a
head's K or V vector, or an MLA latent part): 4.5 bits a value, as vLLM (utils/torch_utils.py
nvfp4_kv_cache_full_dim: head_size // 2 + head_size // 16 bytes), SGLang (NVFP4KVCacheMethod,
SCALE_BLOCK_SIZE 16) and TensorRT-LLM store it. int4 is plain 4-bit values with no scales: what
a 4-bit cache costs at the least; each engine adds its own scales (vLLM's int4_per_token_head:
an fp32 scale per token, head, K and V), counted by ``fit``.
"""

from typing import Literal

DTYPE_BITS: dict[str, int] = {
    "fp32": 32,
    "fp16": 16,
    "bf16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
    "nvfp4": 4,
}
SCALE_EVERY: dict[str, tuple[int, int]] = {"nvfp4": (16, 8)}  # (values per scale, bits of the scale)


def row_scale_bits(kv_dtype: str, width: int) -> int:
    """Scale bits one cached row of ``width`` values carries (nvfp4: 8 per 16 values)."""
    every = SCALE_EVERY.get(kv_dtype)
    return 0 if every is None else width // every[0] * every[1]
KV_DTYPES: tuple[str, ...] = tuple(DTYPE_BITS)  # the one list every option and field derives from
KVDtype = Literal[KV_DTYPES]
# Weights as stored (int4 with its group scales, mxfp4 on routed experts): capacity/weights.py
WEIGHT_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "mxfp4")




def serving_dtype(dtype: str) -> str:
    """The dtype engines serve a checkpoint in by default: a float32 one as bf16, others as they are.

    vLLM's ``--dtype auto`` (vllm/config/model.py, ``_resolve_auto_dtype``: "Downcast for float32
    models" to the platform's first supported dtype, bfloat16 on GPUs that have it) and SGLang's
    (python/sglang/srt/configs/model_config.py, ``_get_and_verify_dtype``: float16 for float32
    models, bfloat16 for Gemma) both keep 2 bytes per element; kvcalc names it bf16."""
    return "bf16" if dtype == "fp32" else dtype


SERVED_FP32_NOTE = (
    "the checkpoint is float32, and vLLM and SGLang serve it in 2 bytes by default (their dtype auto "
    "downcasts float32: vLLM to bf16, SGLang to fp16, bf16 for Gemma), so the KV cache and any state kept "
    "in the model dtype are counted in bf16; --kv-dtype fp32 gives the float32 figure (the model run in "
    "float32, its states too)"
)


def state_dtype(model_dtype: str, kv_dtype: str | None) -> str:
    """The dtype a state without its own is kept in: the model's as served (a float32 checkpoint in
    bf16), whatever the KV dtype, unless float32 is asked of a float32 checkpoint (the model then
    runs in float32, as transformers builds it and vLLM with --dtype float32)."""
    if model_dtype == "fp32" and kv_dtype == "fp32":
        return "fp32"
    return serving_dtype(model_dtype)
