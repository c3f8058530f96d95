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


