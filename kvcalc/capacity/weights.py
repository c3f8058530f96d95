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

from typing import NamedTuple

from kvcalc.capacity.params import LayerParts, ParamCount

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


def matrix_bytes(n: int, routed: int, dtype: str) -> int:
    """Bytes of ``n`` matrix weights inside the layers, ``routed`` of them routed experts' (mxfp4
    shrinks only those), stored as ``dtype``."""
    if dtype == "fp32":
        return 4 * n
    if dtype in ("bf16", "fp16"):
        return 2 * n
    if dtype in ("fp8", "int8"):
        return n
    if dtype == "int4":
        groups = -(-n // INT4_GROUP)
        return -(-n // 2) + 2 * groups + -(-groups // 2)
    if dtype == "mxfp4":
        return -(-routed // 2) + -(-routed // MXFP4_BLOCK) + 2 * (n - routed)
    raise ValueError(f"unknown weights dtype {dtype!r}")


class Placement(NamedTuple):
    """How many ways each part of the weights is split on one GPU (1: whole on every GPU), as an
    engine places them for a layout (``engines/``: vLLM's TP, DP and EP, SGLang's attention DP).

    ``replicated`` is the matrix weights every GPU holds whole whatever the TP (MLA's down
    projections, DeepSeek-V3.2's indexer); ``attention`` the other attention (and mixer)
    matrices; ``routed`` the routed experts' (their count, ``ParamCount.routed``); ``dense`` the
    rest (dense MLPs, shared experts)."""

    attention: int
    dense: int
    routed: int
    embedding: int
    head: int
    shared: int | None = None  # shared experts, when not split as the dense MLPs are

    @classmethod
    def tensor_parallel(cls, tp: int) -> "Placement":
        return cls(tp, tp, tp, tp, tp)


def per_gpu_weights(count: ParamCount, dtype: str, vocab: int, hidden: int, tied: bool,
                    stage_parts: list[LayerParts], tp: int, extra: int = 0, placement: Placement | None = None,
                    final_norm: int = 0) -> int:
    """Bytes of weights on the fullest GPU as engines load them (vLLM's layers): the matrices
    inside the layers split as ``placement`` says (default: all over TP), norms, biases and
    routers whole on every GPU, the embedding and the head split by rows of a vocabulary padded
    to 64, the embedding on the first pipeline stage and the head (a copy of a tied one at
    PP > 1) on the last. ``stage_parts``: each pipeline stage's own layers (params.layer_parts:
    engines split stages by layer count, and layers differ: per-block MLP widths, MLP-only and
    mixer layers, MoE every other layer). Parts split the same number of ways are converted to
    bytes together. Outside the layers: ``extra`` parameters (a vision tower), split like the
    embedding on the first stage, with an embedding projection; ``final_norm`` on the last."""
    place = placement or Placement.tensor_parallel(tp)
    wide = 4 if dtype == "fp32" else 2  # what is not a matrix inside a layer stays 16-bit (fp32: 32-bit)
    padded = -(-vocab // VOCAB_PADDING) * VOCAB_PADDING
    embedding_rows = -(-padded // place.embedding) * hidden * wide  # one rank's share of the embedding
    head_rows = -(-padded // place.head) * hidden * wide
    token_embedding = vocab * hidden
    other_embedding = max(count.embedding - token_embedding, 0)  # positions, token types, embedding norm
    last = len(stage_parts) - 1
    fullest = 0
    for i, s in enumerate(stage_parts):
        here = sum(-(-b // split) for b, split in _matrix_parts(s.linear, s.attention, s.replicated, s.routed,
                                                                s.shared, place, dtype)) + wide * s.other
        if i == 0:  # what no layer holds: an embedding projection and its bias, the embedding, the extras
            outside = count.linear - sum(p.linear for p in stage_parts)
            here += sum(-(-b // split) for b, split in _matrix_parts(outside, 0, 0, 0, 0, place, dtype))
            here += wide * (count.other - extra - final_norm - sum(p.other for p in stage_parts))
            here += embedding_rows + wide * other_embedding + -(-wide * extra // place.embedding)
        if i == last:
            here += wide * final_norm
            if not tied or last > 0:
                here += head_rows
        fullest = max(fullest, here)
    return fullest


def _matrix_parts(linear: int, attention: int, replicated: int, routed: int, shared: int, place: Placement,
                  dtype: str) -> list[tuple[int, int]]:
    """(bytes, ways split) of matrix weights, grouped by how many ways each part is split."""
    if place.shared is None:
        shared = 0  # split with the dense MLPs
    rest = linear - attention - replicated - routed - shared
    ways: dict[int, list[int]] = {}  # ways split -> [matrix weights, of them routed]
    for n, of_routed, split in ((replicated, 0, 1), (attention, 0, place.attention), (rest, 0, place.dense),
                                (shared, 0, place.shared or 1), (routed, routed, place.routed)):
        if n:
            group = ways.setdefault(split, [0, 0])
            group[0] += n
            group[1] += of_routed
    return [(matrix_bytes(n, of_routed, dtype), split) for split, (n, of_routed) in ways.items()]
