"""Exact bytes of a safetensors checkpoint, read from the file headers only.

A safetensors file starts with an 8-byte little-endian header length, then a JSON header
that gives every tensor's dtype, shape and ``data_offsets`` [begin, end) into the data
that follows. The bytes of the weights are the sum of ``end - begin``: quantized
checkpoints (fp8 with scale tensors, int4 packed into int32) are counted as stored. No
tensor is ever read. Ten lines of a documented format, so no extra dependency.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from kvcalc.errors import PresetError

MAX_HEADER = 100 * 1024 * 1024  # the format's own limit on header size


def safetensors_files(folder: Path) -> list[Path]:
    """The checkpoint files of a model folder: those the index names, or every *.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PresetError(f"{index}: not a safetensors index ({exc})") from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise PresetError(
                f"{index} names {len(missing)} file(s) not in {folder} (first: {missing[0]}); "
                "download them, or give --weights-bytes"
            )
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


@dataclass(frozen=True)
class Checkpoint:
    bytes: int  # every tensor as stored
    tensors: int
    files: int
    f32_bytes: int  # of those, float32 tensors (an engine serving in bf16 holds them at half)


def tensor_bytes(path: Path) -> tuple[int, int, int]:
    """(bytes of all tensors, tensor count, bytes of F32 tensors) of one safetensors file, from its header."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise ValueError("shorter than its 8-byte header length")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_HEADER:
                raise ValueError(f"header of {length} bytes is over the format's 100 MiB limit")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        raise PresetError(f"{path}: not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise PresetError(f"{path}: safetensors header is not a JSON object")
    total = count = f32 = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = info["data_offsets"]
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise PresetError(f"{path}: tensor {name!r} has no valid data_offsets") from None
        total += end - begin
        count += 1
        if isinstance(info, dict) and info.get("dtype") == "F32":
            f32 += end - begin
    return total, count, f32


def checkpoint_bytes(folder: Path) -> Checkpoint | None:
    """The safetensors checkpoint in ``folder``, measured from its headers; None if it has none."""
    files = safetensors_files(folder)
    if not files:
        return None
    total = tensors = f32 = 0
    for path in files:
        size, count, floats = tensor_bytes(path)
        total += size
        tensors += count
        f32 += floats
    return Checkpoint(total, tensors, len(files), f32)
