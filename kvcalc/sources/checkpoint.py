"""Exact bytes of a safetensors checkpoint, read from the file headers only.

A safetensors file starts with an 8-byte little-endian header length, then a JSON header
that gives every tensor's dtype, shape and ``data_offsets`` [begin, end) into the data
that follows. The bytes of the weights are the sum of ``end - begin``: quantized
checkpoints (fp8 with scale tensors, int4 packed into int32) are counted as stored. No
tensor is ever read, and no extra dependency is needed.

Headers come from local files and from the Hub (``sources.hub.fetch_checkpoint``); both go
through the one validator here, ``parse_header``, which checks what the safetensors library
checks before it loads a file: integer offsets, tensors laid end to end from 0, a known
dtype, and a shape whose bytes are exactly the tensor's span, and refuses a name given twice.
Local files are opened only when they are regular files (a FIFO would block the read), and
an index may name only files inside its folder.
"""

import os
import stat
import struct
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple

from kvcalc.errors import PresetError
from kvcalc.readers import load_json

# Real headers are a few kKiB to a few MiB: a shard holds at most tens of thousands of
# tensors at ~100 bytes of JSON each. 16 MiB is several times the largest seen, and parsing
# it takes a few hundred MB and under a second; the format's own 100 MB cap would take
# gigabytes and seconds in json.loads.
MAX_HEADER = 16 * 1024 * 1024
# The index lists every tensor once: DeepSeek-V3's (91k tensors) is about 9 MB. 32 MiB
# leaves room for trillion-parameter MoE checkpoints with per-expert scales.
MAX_INDEX = 32 * 1024 * 1024
MAX_FILES = 10_000  # shards in one checkpoint; the largest public ones have a few hundred
MAX_OFFSET = 2**50  # a PiB in one file: past it, an offset is a lie, not a checkpoint
MAX_DIMS = 64  # torch and numpy cap a tensor at 64 dimensions
INDEX = "model.safetensors.index.json"

# Bits per element, as safetensors (src/tensor.rs, Dtype::bitsize) lists them.
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


class Checkpoint(NamedTuple):
    bytes: int  # every tensor as stored
    tensors: int
    files: int
    f32_bytes: int  # of those, float32 tensors (an engine serving in bf16 holds them at half)


class Header(NamedTuple):
    """One file's header, validated."""

    names: frozenset[str]
    bytes: int  # the end of the last tensor: the data section's length
    f32_bytes: int


def _short(text: str, limit: int = 60) -> str:
    """A name from a file, cut for an error line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _count(value) -> bool:
    return type(value) is int  # bool is an int subclass, and true is not an offset


def header_length(first: bytes, origin: str) -> int:
    """The header length from a file's first 8 bytes, refused past ``MAX_HEADER``."""
    if len(first) < 8:
        raise PresetError(f"{origin}: not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", first[:8])
    if length < 2:
        raise PresetError(f"{origin}: not a safetensors file (a header of {length} bytes)")
    if length > MAX_HEADER:
        raise PresetError(f"{origin}: not a safetensors file, or one with a header of {length:,} bytes, over the "
                          f"{MAX_HEADER:,} bytes kvcalc reads (real headers are a few MiB at most)")
    return length


def parse_header(raw: bytes, origin: str, data_size: int | None = None) -> Header:
    """The one validator of a safetensors header (the JSON after the length), local or from
    the Hub. ``data_size``, when known, is the bytes after the header, which the tensors must
    fill exactly."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PresetError(f"{origin}: safetensors header is not UTF-8 (byte {exc.start})") from None
    header = load_json(text, f"{origin}: safetensors header")  # duplicate names, depth, digits: one line
    if not isinstance(header, dict):
        raise PresetError(f"{origin}: safetensors header is not a JSON object")
    metadata = header.get("__metadata__")
    if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise PresetError(f"{origin}: safetensors __metadata__ is not a mapping of strings")
    spans = []
    f32 = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{origin}: tensor {_short(name)}"
        if not isinstance(info, dict):
            raise PresetError(f"{where} is not an object")
        offsets, dtype, shape = info.get("data_offsets"), info.get("dtype"), info.get("shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(v) for v in offsets)):
            raise PresetError(f"{where}: data_offsets must be two integers [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= MAX_OFFSET:
            shown = f" [{begin}, {end}]" if max(abs(begin), abs(end)) < 10**20 else ""
            raise PresetError(f"{where}: data_offsets{shown} are not 0 <= begin <= end <= 2**50")
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            shown = _short(dtype) if isinstance(dtype, str) else type(dtype).__name__
            raise PresetError(f"{where}: unknown dtype {shown} (known: {', '.join(DTYPE_BITS)})")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_count(d) and d >= 0 for d in shape)):
            raise PresetError(f"{where}: shape must be a list of at most {MAX_DIMS} non-negative integers")
        bits = DTYPE_BITS[dtype]
        for dim in shape:
            bits *= dim
            if bits > MAX_OFFSET * 8:
                raise PresetError(f"{where}: shape {_short(str(shape))} holds more than 2**50 bytes")
        if bits != (end - begin) * 8:
            size = f"{bits // 8:,} bytes" if bits % 8 == 0 else f"{bits:,} bits"
            raise PresetError(f"{where}: shape {_short(str(shape))} of {dtype} is {size}, but its data_offsets "
                              f"span {end - begin:,} bytes")
        spans.append((begin, end, name))
        if dtype == "F32":
            f32 += end - begin
    spans.sort()
    position = 0
    for begin, end, name in spans:  # end to end from 0: no gap, no overlap (as safetensors checks)
        if begin != position:
            kind = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise PresetError(f"{origin}: tensor {_short(name)} at {begin:,} {kind} (which ends at {position:,})")
        position = end
    if data_size is not None and position != data_size:
        raise PresetError(f"{origin}: the tensors end at byte {position:,} of the data, but the file holds "
                          f"{data_size:,} bytes of data (truncated, or not a safetensors file)")
    return Header(frozenset(name for _, _, name in spans), position, f32)


def combine(headers: list[tuple[str, Header]]) -> Checkpoint:
    """The checkpoint of several files' headers; a tensor in two files is refused."""
    seen: dict[str, str] = {}
    total = f32 = 0
    for origin, header in headers:
        for name in header.names:
            if name in seen:
                raise PresetError(f"{origin}: tensor {_short(name)} is also in {seen[name]}")
            seen[name] = origin
        total += header.bytes
        f32 += header.f32_bytes
    return Checkpoint(total, len(seen), len(headers), f32)


def check_file_name(name, origin: str) -> str:
    """A file name from an index: a relative path below the index's folder, no more."""
    if not isinstance(name, str) or not name:
        raise PresetError(f"{origin}: weight_map values must be file names")
    bad = (PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive
           or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name)
           or any(part in ("", ".", "..") for part in name.split("/")) or len(name) > 1024)
    if bad:
        raise PresetError(f"{origin}: names {_short(name)}, not a file inside its folder")
    return name


def parse_index(raw: bytes, origin: str) -> list[str]:
    """The distinct file names of a ``model.safetensors.index.json``, each checked."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PresetError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    index = load_json(text, origin)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise PresetError(f"{origin}: not a safetensors index (no weight_map object)")
    names = sorted({check_file_name(name, origin) for name in weight_map.values()})
    if len(names) > MAX_FILES:
        raise PresetError(f"{origin}: names {len(names):,} files, more than the {MAX_FILES:,} kvcalc reads")
    return names


# --- local files -----------------------------------------------------------------------


def _open_regular(path: Path, origin: str):
    """``path`` opened for reading only if it is a regular file: a FIFO or a device would
    block or never end. O_NONBLOCK keeps the open itself from waiting on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise PresetError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PresetError(f"{origin}: not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _read(handle, count: int, origin: str) -> bytes:
    try:
        return handle.read(count)
    except OSError as exc:
        raise PresetError(f"{origin}: cannot read: {exc.strerror or exc}") from None


def read_header(path: Path) -> Header:
    """One local safetensors file's header, validated; the data must fill the rest of the file."""
    handle, size = _open_regular(path, str(path))
    with handle:
        length = header_length(_read(handle, 8, str(path)), str(path))
        if 8 + length > size:
            raise PresetError(f"{path}: not a safetensors file (its header of {length:,} bytes is longer than the "
                              f"file, {size:,} bytes)")
        raw = _read(handle, length, str(path))
    if len(raw) != length:
        raise PresetError(f"{path}: ends inside its safetensors header")
    return parse_header(raw, str(path), data_size=size - 8 - length)


def _inside(folder: Path, path: Path, origin: str) -> None:
    """A file found through ``folder`` must not lead out of it by a link. A folder of the Hub
    cache (``snapshots/<commit>``) links each file to its repo's ``blobs``, so there the
    repo's cache folder is the bound."""
    root = folder.parent.parent if folder.parent.name == "snapshots" else folder
    try:
        target, bound = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise PresetError(f"{origin}: cannot follow {path.name}: {exc}") from None
    if target != bound and bound not in target.parents:
        raise PresetError(f"{origin}: {_short(path.name)} leads outside {root} by a link; not read")


def safetensors_files(folder: Path) -> list[Path]:
    """The checkpoint files of a model folder: those the index names, or every *.safetensors.
    Each is a regular file inside the folder."""
    index = folder / INDEX
    if index.exists() or index.is_symlink():
        _inside(folder, index, str(index))
        handle, size = _open_regular(index, str(index))
        with handle:
            if size > MAX_INDEX:
                raise PresetError(f"{index}: {size:,} bytes is more than a safetensors index needs "
                                  f"({MAX_INDEX:,}); not read")
            raw = _read(handle, MAX_INDEX + 1, str(index))
        if len(raw) > MAX_INDEX:
            raise PresetError(f"{index}: more than {MAX_INDEX:,} bytes; not read")
        names = parse_index(raw, str(index))
        paths = [folder / name for name in names]
        missing = [name for name, path in zip(names, paths) if not path.exists()]
        if missing:
            raise PresetError(
                f"{index} names {len(missing)} file(s) not in {folder} (first: {_short(missing[0])}); "
                "download them, or give --weights-bytes"
            )
    else:
        try:
            paths = sorted(p for p in folder.iterdir() if p.name.endswith(".safetensors"))
        except OSError as exc:
            raise PresetError(f"{folder}: cannot list: {exc.strerror or exc}") from None
        if len(paths) > MAX_FILES:
            raise PresetError(f"{folder}: {len(paths):,} safetensors files, more than the {MAX_FILES:,} kvcalc reads")
    for path in paths:
        _inside(folder, path, str(index) if index.exists() else str(folder))
    return paths


def tensor_bytes(path: Path) -> tuple[int, int, int]:
    """(bytes of all tensors, tensor count, bytes of F32 tensors) of one safetensors file, from its header."""
    header = read_header(path)
    return header.bytes, len(header.names), header.f32_bytes


def checkpoint_bytes(folder: Path) -> Checkpoint | None:
    """The safetensors checkpoint in ``folder``, measured from its headers; None if it has none."""
    files = safetensors_files(folder)
    if not files:
        return None
    return combine([(str(path), read_header(path)) for path in files])


def checkpoint_of(model: str, revision: str | None = None, notes: list | None = None):
    """Bytes of the safetensors checkpoint beside a config.json given by path, or of a Hub
    id's (from the headers on the Hub), if any; a Hub failure is a note, not an error."""
    from kvcalc.sources.resolve import is_hub_ref, looks_like_path

    if is_hub_ref(model):
        from kvcalc.sources.hub import HubError, fetch_checkpoint

        try:
            return fetch_checkpoint(model, revision)
        except HubError as exc:
            if notes is not None:
                notes.append(f"weights from the parameter count: the safetensors headers of {model} could not be "
                             f"read ({exc})")
            return None
    path = Path(model)
    if not looks_like_path(model) and not path.is_dir():
        return None
    folder = path if path.is_dir() else path.parent
    if path.suffix.lower() in (".yaml", ".yml") or not folder.is_dir():
        return None
    return checkpoint_bytes(folder)
