"""KV-cache element types and their width in bits (int4 is half a byte: count bits)."""

from typing import Literal

KVDtype = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]

DTYPE_BITS: dict[str, int] = {
    "fp32": 32,
    "fp16": 16,
    "bf16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
}




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
    "in the model dtype are counted in bf16; --kv-dtype fp32 gives the float32 figure"
)
