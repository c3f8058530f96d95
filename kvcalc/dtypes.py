"""KV-cache element types and their width in bits (int4 is half a byte: count bits)."""

from typing import Literal

DTYPE_BITS: dict[str, int] = {
    "fp32": 32,
    "fp16": 16,
    "bf16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
}
KV_DTYPES: tuple[str, ...] = tuple(DTYPE_BITS)  # the one list every option and field derives from
KVDtype = Literal[KV_DTYPES]
# Weights as stored (int4 with its group scales, mxfp4 on routed experts): capacity/weights.py
WEIGHT_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "mxfp4")


