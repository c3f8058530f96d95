"""Hostile safetensors checkpoints on disk: every one is refused with one line, fast, with no
traceback, no hang and no read of a file outside the model's folder. ``HOSTILE_HEADERS`` is
shared with tests/test_hub_hardening.py, which serves the same headers from a local Hub:
the one validator (``sources.checkpoint.parse_header``) must answer both alike."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvcalc.errors import PresetError
from kvcalc.sources.checkpoint import MAX_HEADER, MAX_INDEX, checkpoint_bytes

ROOT = Path(__file__).parent.parent
LLAMA = ROOT / "tests" / "fixtures" / "configs" / "llama-3-8b" / "config.json"


def safetensors(header, data: int | None = None) -> bytes:
    """A safetensors file: ``header`` (a dict, or raw JSON text/bytes) and ``data`` zero bytes
    (by default as many as the tensors' offsets reach, when they can be read)."""
    if isinstance(header, dict):
        raw = json.dumps(header).encode()
        if data is None:
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"
                    and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)
                    and len(v["data_offsets"]) == 2 and type(v["data_offsets"][1]) is int]
            data = max([e for e in ends if 0 <= e < 10**6] or [0])
    else:
        raw = header if isinstance(header, bytes) else header.encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data or 0)


def one(dtype="F32", shape=(1,), offsets=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


GOOD = {"a.weight": one("BF16", (4, 8), (0, 64)), "b.bias": one("F32", (8,), (64, 96)),
        "__metadata__": {"format": "pt"}}

# (case, header, words the one-line error must hold)
HOSTILE_HEADERS = [
    ("float offsets", {"a": one(offsets=(0.0, 4.0))}, "two integers"),
    ("end before start", {"a": one(offsets=(100, 0))}, "not 0 <= begin <= end"),
    ("negative offset", {"a": one(offsets=(-4, 0))}, "not 0 <= begin <= end"),
    ("offset 10**30", {"a": one(shape=(1,), offsets=(0, 10**30))}, "2**50"),
    ("offset past 2**50", {"a": one("U8", (2**50 + 1,), (0, 2**50 + 1))}, "2**50"),
    ("boolean offsets", {"a": one(offsets=(False, True))}, "two integers"),
    ("three offsets", {"a": one(offsets=(0, 2, 4))}, "two integers"),
    ("unknown dtype", {"a": one("F128")}, "unknown dtype 'F128'"),
    ("dtype not a string", {"a": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype int"),
    ("shape against span", {"a": one("BF16", (4, 8), (0, 60))}, "is 64 bytes, but its data_offsets span 60"),
    ("boolean shape", {"a": one(shape=(True,))}, "shape must be"),
    ("negative dimension", {"a": one(shape=(-1,), offsets=(0, 0))}, "shape must be"),
    ("huge shape", {"a": one(shape=(10**30, 10**30), offsets=(0, 4))}, "more than 2**50 bytes"),
    ("sub-byte misfit", {"a": one("F4", (3,), (0, 2))}, "12 bits"),
    ("overlapping tensors", {"a": one(), "b": one()}, "overlaps"),
    ("gap between tensors", {"a": one(), "b": one(offsets=(8, 12))}, "gap"),
    ("first tensor not at 0", {"a": one(offsets=(4, 8))}, "gap"),
    ("duplicate tensor name", f'{{"a": {json.dumps(one())}, "a": {json.dumps(one(offsets=(4, 8)))}}}',
     "duplicate key 'a'"),
    ("deep nesting", '{"__metadata__": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ("digits past the limit", '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1' + "0" * 5000 + "]}}",
     "digit"),
    ("not an object", "[1, 2]", "not a JSON object"),
    ("tensor not an object", {"a": 5}, "is not an object"),
    ("not JSON", "{nope", "not JSON"),
    ("not UTF-8", b'{"\xff": 1}', "not UTF-8"),
    ("metadata not strings", {"__metadata__": {"format": 5}}, "mapping of strings"),
]


@pytest.mark.parametrize("case, header, words", HOSTILE_HEADERS, ids=[c[0] for c in HOSTILE_HEADERS])
def test_hostile_headers_on_disk_are_one_line(tmp_path, case, header, words):
    (tmp_path / "model.safetensors").write_bytes(safetensors(header))
    started = time.monotonic()
    with pytest.raises(PresetError) as caught:
        checkpoint_bytes(tmp_path)
    message = str(caught.value)
    assert words in message and "\n" not in message and len(message) < 400, message
    assert time.monotonic() - started < 5


def test_a_good_header_still_counts(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(safetensors(GOOD))
    got = checkpoint_bytes(tmp_path)
    assert (got.bytes, got.tensors, got.files, got.f32_bytes) == (96, 2, 1, 32)


def test_header_length_and_file_size_are_checked_before_reading(tmp_path):
    # 4 hostile files: a 90 MB header claimed (read today: 2.2 GB, 7 s), a header longer than
    # the file, a file that stops inside its length, and tensors that run past the file's end
    cases = [
        (struct.pack("<Q", 90 * 1024 * 1024) + b"{}", f"over the {MAX_HEADER:,} bytes"),
        (struct.pack("<Q", 1000) + b"{}", "longer than the file"),
        (b"\x01\x02", "shorter than its 8-byte header length"),
        (safetensors(GOOD, data=50), "truncated"),
    ]
    for raw, words in cases:
        (tmp_path / "model.safetensors").write_bytes(raw)
        started = time.monotonic()
        with pytest.raises(PresetError, match=words):
            checkpoint_bytes(tmp_path)
        assert time.monotonic() - started < 1


def _fit(folder: Path, timeout: float = 30):
    """kvcalc fit on a folder, as a user runs it (a subprocess, so a hang shows as a timeout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "120"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kvcalc", "fit", str(folder), "--gpu", "h100"],
                          capture_output=True, text=True, env=env, timeout=timeout)
    return proc, time.monotonic() - started


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_bytes(LLAMA.read_bytes())
    return folder


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_does_not_hang_fit(tmp_path):
    # 3 hostile entries: a FIFO named *.safetensors, a FIFO as the index, a folder named *.safetensors
    fifo = _model(tmp_path / "fifo")
    os.mkfifo(fifo / "model.safetensors")
    proc, elapsed = _fit(fifo)
    assert proc.returncode == 1 and elapsed < 20, proc.stderr
    assert proc.stderr.count("\n") == 1 and "not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    index = _model(tmp_path / "index")
    os.mkfifo(index / "model.safetensors.index.json")
    with pytest.raises(PresetError, match="not a regular file"):
        checkpoint_bytes(index)
    folder = _model(tmp_path / "folder")
    (folder / "model.safetensors").mkdir()
    with pytest.raises(PresetError, match="not a regular file"):
        checkpoint_bytes(folder)


def _index(folder: Path, weight_map) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


BAD_NAMES = ["/etc/passwd", "../outside.safetensors", "sub/../../outside.safetensors", "C:\\x.safetensors",
             "C:x.safetensors", "a\\b.safetensors", "", "./model.safetensors", "a//b.safetensors",
             "\x1b[31mred.safetensors", 5, None]


def test_index_entries_stay_inside_the_folder(tmp_path):
    outside = tmp_path / "outside.safetensors"
    secret = {"SECRET-TENSOR-NAME": one(offsets=(0, 3))}  # invalid, and its name must never be printed
    outside.write_bytes(safetensors(secret, data=3))
    folder = _model(tmp_path / "model")
    (folder / "model.safetensors").write_bytes(safetensors(GOOD))
    for name in BAD_NAMES:  # 12 names that are not a file inside the folder
        _index(folder, {"a": name})
        with pytest.raises(PresetError) as caught:
            checkpoint_bytes(folder)
        message = str(caught.value)
        assert ("not a file inside its folder" in message or "must be file names" in message), (name, message)
        assert "\n" not in message and "\x1b" not in message and "SECRET" not in message
    # links out of the folder: through the index and through the *.safetensors listing
    (folder / "link.safetensors").symlink_to(outside)
    _index(folder, {"a": "model.safetensors", "b": "link.safetensors"})
    for _ in range(2):
        with pytest.raises(PresetError) as caught:
            checkpoint_bytes(folder)
        assert "leads outside" in str(caught.value) and "SECRET" not in str(caught.value)
        (folder / "model.safetensors.index.json").unlink(missing_ok=True)
    (folder / "link.safetensors").unlink()
    (folder / "sub").symlink_to(tmp_path)  # a linked folder on the way out
    _index(folder, {"a": "sub/outside.safetensors"})
    with pytest.raises(PresetError, match="leads outside"):
        checkpoint_bytes(folder)


def test_the_hub_cache_layout_still_reads(tmp_path):
    # a snapshot folder links each file to its repo's blobs: that is inside, not an escape
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_bytes(safetensors(GOOD))
    snapshot = _model(repo / "snapshots" / ("0" * 40))
    (snapshot / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / "abc")
    assert checkpoint_bytes(snapshot).bytes == 96


def test_hostile_indexes(tmp_path):
    folder = _model(tmp_path / "model")
    (folder / "model.safetensors").write_bytes(safetensors(GOOD))
    index = folder / "model.safetensors.index.json"
    # 6 hostile indexes: over the size limit (sparse), duplicate keys, deep nesting, not JSON,
    # no weight_map, weight_map not an object
    with index.open("wb") as handle:
        handle.truncate(MAX_INDEX + 1)
    cases = [(None, "more than a safetensors index needs"),
             ('{"weight_map": {"a": "model.safetensors", "a": "model.safetensors"}}', "duplicate key 'a'"),
             ('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
             ("{", "not JSON"), ("{}", "no weight_map"), ('{"weight_map": []}', "no weight_map")]
    for text, words in cases:
        if text is not None:
            index.write_text(text)
        started = time.monotonic()
        with pytest.raises(PresetError) as caught:
            checkpoint_bytes(folder)
        assert words in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
        assert time.monotonic() - started < 2


def test_a_tensor_in_two_shards_is_refused(tmp_path):
    folder = _model(tmp_path / "model")
    (folder / "one.safetensors").write_bytes(safetensors({"a": one()}))
    (folder / "two.safetensors").write_bytes(safetensors({"a": one()}))
    with pytest.raises(PresetError, match="'a' is also in"):
        checkpoint_bytes(folder)


def test_hostile_checkpoints_are_one_line_at_the_cli(tmp_path):
    # the CLI boundary: exit 1, one line, no traceback, for a header and for an index
    folder = _model(tmp_path / "model")
    (folder / "model.safetensors").write_bytes(safetensors({"a": one(offsets=(100, 0))}))
    proc, _ = _fit(folder)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    _index(folder, {"a": "../../etc/passwd"})
    proc, _ = _fit(folder)
    assert proc.returncode == 1 and "not a file inside its folder" in proc.stderr and proc.stderr.count("\n") == 1
