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


