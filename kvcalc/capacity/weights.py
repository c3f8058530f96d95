"""Bytes of a model's weights: from its parameter count at a dtype, or from a checkpoint.

Quantized formats shrink the matrices inside the layers only (``ParamCount.linear``);
embeddings, the output head, norms, biases and routers stay 16-bit, as GPTQ, AWQ and fp8
checkpoints keep them:

- ``fp32`` 4 bytes, ``bf16``/``fp16`` 2 bytes per parameter;
- ``fp8``/``int8``: 1 byte per matrix weight (per-tensor or per-channel scales, a few bytes
  per matrix, are not counted);
- ``int4``: half a byte per matrix weight, plus per group of 128 weights a 16-bit scale and a
  4-bit zero point (AWQ's and GPTQ's ``scales`` and ``qzeros``, group size 128); GPTQ's
  act-order index (``g_idx``, 4 bytes per input row) is not counted; the rest 16-bit.
- ``mxfp4``: the routed experts' matrices only, as gpt-oss ships them: 4-bit E2M1 values and
  one 8-bit E8M0 scale per block of 32 (4.25 bits a weight); attention, router, embeddings and
  head stay 16-bit (gpt-oss's ``modules_to_not_convert``). A model without routed experts is
  all 16-bit.
"""

from __future__ import annotations

from kvcalc.capacity.params import ParamCount

INT4_GROUP = 128
MXFP4_BLOCK = 32


def weights_bytes(count: ParamCount, dtype: str) -> int:
    """Exact bytes of ``count`` parameters stored as ``dtype`` (see the module docstring)."""
    if dtype == "fp32":
        return 4 * count.total
    if dtype in ("bf16", "fp16"):
        return 2 * count.total
    rest = 2 * (count.total - count.linear)
    if dtype in ("fp8", "int8"):
        return count.linear + rest
    if dtype == "int4":
        groups = -(-count.linear // INT4_GROUP)
        return -(-count.linear // 2) + 2 * groups + -(-groups // 2) + rest
    if dtype == "mxfp4":
        experts = count.routed
        return -(-experts // 2) + -(-experts // MXFP4_BLOCK) + 2 * (count.total - experts)
    raise ValueError(f"unknown weights dtype {dtype!r}")


VOCAB_PADDING = 64  # vLLM's VocabParallelEmbedding pads the vocabulary to a multiple of 64


def per_gpu_weights(count: ParamCount, dtype: str, vocab: int, hidden: int, tied: bool, layers: int,
                    stages: list[int], tp: int, extra: int = 0) -> int:
    """Bytes of weights on the fullest GPU as engines load them (vLLM's layers): the matrices
    inside the layers split over TP, norms, biases and routers whole on every GPU, the
    embedding and the head split over TP by rows of a vocabulary padded to 64, the embedding on
    the first pipeline stage and the head (a copy of a tied one at PP > 1) on the last.
    ``stages``: layers per pipeline stage; ``extra``: parameters outside the layers (a vision
    tower), split over TP on the first stage."""
    wide = 4 if dtype == "fp32" else 2  # what is not a matrix inside a layer stays 16-bit (fp32: 32-bit)
    linear = weights_bytes(count, dtype) - wide * (count.total - count.linear)
    padded = -(-vocab // VOCAB_PADDING) * VOCAB_PADDING
    rows = -(-padded // tp) * hidden * wide  # one TP rank's share of an embedding or head
    token_embedding = vocab * hidden
    other_embedding = max(count.embedding - token_embedding, 0)  # positions, token types, embedding norm
    fullest = 0
    for i, n in enumerate(stages):
        here = -(-linear * n // (layers * tp)) + wide * ((count.other - extra) * n // layers)
        if i == 0:
            here += rows + wide * other_embedding + -(-wide * extra // tp)
        if i == len(stages) - 1 and (not tied or len(stages) > 1):
            here += rows
        fullest = max(fullest, here)
    return fullest
