"""The cache of validated presets and catalogs (kvcalc/validated_cache.py), across real runs.

Each run is a fresh interpreter with ``KVCALC_CACHE_DIR`` set to a temporary folder: a cold
run validates and writes, a warm run validates nothing and prints the same numbers, and an
edited, corrupted or untrusted cache never gives a number other than the file's own.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

PRESETS = Path(__file__).resolve().parent.parent / "model_presets"

COUNT = """
import json, sys
import kvcalc.sources.presets as presets
calls = []
original = presets.spec_from_data
presets.spec_from_data = lambda *a, **k: calls.append(1) or original(*a, **k)
from kvcalc.estimate import estimate
dirs = presets.preset_dirs(tuple(sys.argv[1:]))
totals = {n: estimate(presets.load_named(p), context=8192).total_bytes for n, p in presets.available(dirs).items()}
print(json.dumps({"validated": len(calls), "totals": totals}))
"""


def run(cache: Path | str, *dirs: Path) -> dict:
    env = {**os.environ, "KVCALC_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", COUNT, *map(str, dirs)], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(done.stdout)


def cache_files(folder: Path, kind: str = "presets") -> list[Path]:
    return sorted(folder.glob(f"{kind}-*.pickle"))


def test_a_warm_run_validates_nothing_and_gives_the_same_numbers(tmp_path):
    n = len(list(PRESETS.glob("*.yaml")))
    cold = run(tmp_path)
    assert cold["validated"] == n
    [written] = cache_files(tmp_path)
    assert written.stat().st_mode & 0o777 == 0o600
    warm = run(tmp_path)
    assert warm["validated"] == 0
    assert warm["totals"] == cold["totals"] == run("off")["totals"]
    assert warm["totals"]["llama-3-70b"] == 2 * 80 * 8 * 128 * 2 * 8192  # K and V, 80 layers, 8 KV heads


def test_an_edited_preset_is_validated_again_never_answered_from_the_cache(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    text = (PRESETS / "llama-3-8b.yaml").read_text()
    (user / "llama-3-8b.yaml").write_text(text)
    before = run(tmp_path / "cache", user)["totals"]["llama-3-8b"]
    assert before == 2 * 32 * 8 * 128 * 2 * 8192
    assert "count: 32" in text
    (user / "llama-3-8b.yaml").write_text(text.replace("count: 32", "count: 16", 1))
    after = run(tmp_path / "cache", user)
    assert after["validated"] == 1  # the edited file alone
    assert after["totals"]["llama-3-8b"] == before // 2


def test_a_corrupt_cache_is_ignored(tmp_path):
    run(tmp_path)
    [written] = cache_files(tmp_path)
    written.write_bytes(b"\x80\x05not a pickle")
    again = run(tmp_path)
    assert again["validated"] > 0
    assert again["totals"] == run("off")["totals"]


def forge(path: Path, preset: str, replacement: str) -> None:
    """A cache whose entry for ``preset``'s file and text holds another preset's spec (no status:
    the text is compared, and matches)."""
    from kvcalc.sources.presets import load_file

    file = PRESETS / f"{preset}.yaml"
    spec = load_file(PRESETS / f"{replacement}.yaml").model_copy(update={"name": preset})
    alone = {str(file.resolve()): (None, file.read_text(), pickle.dumps(spec))}
    path.write_bytes(pickle.dumps((alone, pickle.dumps({}))))  # each object alone, and all together


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="file ownership is POSIX")
def test_a_cache_others_can_write_is_not_trusted(tmp_path):
    run(tmp_path)
    [written] = cache_files(tmp_path)
    forge(written, "llama-3-8b", "llama-3-70b")
    trusted = run(tmp_path)  # the owner's own 0600 file is read: the mechanism is the one under test
    assert trusted["totals"]["llama-3-8b"] == 2 * 80 * 8 * 128 * 2 * 8192
    forge(written, "llama-3-8b", "llama-3-70b")
    written.chmod(0o666)
    untrusted = run(tmp_path)
    assert untrusted["totals"]["llama-3-8b"] == 2 * 32 * 8 * 128 * 2 * 8192


def test_changed_code_starts_a_new_cache(tmp_path, monkeypatch):
    from kvcalc import validated_cache

    module = tmp_path / "schema_module.py"
    module.write_text("X = 1\n")
    fake = type(sys)("schema_module")
    fake.__file__ = str(module)
    monkeypatch.setitem(sys.modules, "schema_module", fake)
    monkeypatch.setenv("KVCALC_CACHE_DIR", str(tmp_path / "cache"))
    first = validated_cache._path("presets", "/some/folder", ("schema_module",))
    module.write_text("X = 22\n")
    assert validated_cache._path("presets", "/some/folder", ("schema_module",)) != first


def test_each_folder_has_its_own_cache_and_a_run_loads_only_the_folders_it_reads(tmp_path):
    """A user folder's presets are kept apart: estimating a bundled preset unpickles the bundled
    folder's entries alone, and the cache files of many folders (temporary ones) stay bounded."""
    from kvcalc import validated_cache

    user = tmp_path / "mine"
    user.mkdir()
    (user / "llama-3-8b.yaml").write_text((PRESETS / "llama-3-8b.yaml").read_text())
    run(tmp_path / "cache", user)
    assert len(cache_files(tmp_path / "cache")) == 2  # the bundled folder and mine
    probe = (
        "import json, pickle, sys\n"
        "loaded = []\n"
        "original = pickle.loads\n"
        "def probe(data, **k):\n"
        "    found = original(data, **k)\n"
        "    loaded.append(['file', len(found[0])] if isinstance(found, tuple) else [type(found).__name__])\n"
        "    return found\n"
        "pickle.loads = probe\n"
        "from kvcalc.sources.presets import load_named, bundled_dir\n"
        "load_named(bundled_dir() / 'llama-3-8b.yaml')\n"
        "print(json.dumps(loaded))\n"
    )
    env = {**os.environ, "KVCALC_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    # one file, the bundled folder's (its presets but llama-3-8b, which my folder's copy overrode, so it
    # is validated now), and none of its specs: they stay pickled
    assert json.loads(out) == [["file", len(list(PRESETS.glob("*.yaml"))) - 1]]
    text = (PRESETS / "llama-3-8b.yaml").read_text()
    folders = [tmp_path / f"t{i}" for i in range(validated_cache.MAX_FOLDERS + 3)]
    for i, folder in enumerate(folders):
        folder.mkdir()
        (folder / f"copy{i}.yaml").write_text(text.replace("name: llama-3-8b\n", f"name: copy{i}\n", 1))
    many = run(tmp_path / "cache", *folders)
    assert many["totals"]["copy7"] == 2 * 32 * 8 * 128 * 2 * 8192
    assert len(cache_files(tmp_path / "cache")) == validated_cache.MAX_FOLDERS


def test_off_and_unwritable_caches_cost_nothing_but_a_validation(tmp_path):
    assert run("off")["validated"] > 0
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert run(locked / "sub")["totals"] == run("off")["totals"]  # cannot be made: not an error
    finally:
        locked.chmod(0o700)


def test_the_gpu_catalog_is_cached_too(tmp_path):
    env = {**os.environ, "KVCALC_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "kvcalc", "gpus", "--json"]
    cold = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    assert cache_files(tmp_path, "gpus")
    warm = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    assert json.loads(warm) == json.loads(cold)
    assert any(gpu["key"] == "h100-sxm" and gpu["memory_bytes"] == 85_045_477_376 for gpu in json.loads(warm))


def test_a_file_rewritten_within_one_run_is_read_afresh(tmp_path):
    """The Python API in a long-lived process: the same path, new bytes, a new spec (the run's
    entries are kept by path and compared byte for byte, never trusted by path alone)."""
    from kvcalc.estimate import estimate
    from kvcalc.sources.presets import load_named

    path = tmp_path / "llama-3-8b.yaml"
    text = (PRESETS / "llama-3-8b.yaml").read_text()
    path.write_text(text)
    assert estimate(load_named(path), context=8192).bytes_per_token == 2 * 32 * 8 * 128 * 2
    path.write_text(text.replace("count: 32", "count: 16", 1))
    assert estimate(load_named(path), context=8192).bytes_per_token == 2 * 16 * 8 * 128 * 2


# --- the file's status: trusted only when it was last changed long enough before it was taken ----------


def load_counting(path: Path, reads: list, builds: list):
    from kvcalc import validated_cache

    def read():
        reads.append(1)
        return path.read_text()

    def build(text):
        builds.append(1)
        return text.upper()

    return validated_cache.cached("test", str(path), read, build, ())


def test_an_old_unchanged_file_is_answered_from_its_status_without_reading(tmp_path, monkeypatch):
    from kvcalc import validated_cache

    monkeypatch.setenv("KVCALC_CACHE_DIR", str(tmp_path / "cache"))
    validated_cache.forget()
    path = tmp_path / "f.yaml"
    path.write_text("count: 32\n")
    later = os.stat(path).st_ctime_ns + (validated_cache.RACY_SECONDS + 1) * 10**9
    monkeypatch.setattr(validated_cache.time, "time_ns", lambda: later)  # the file is old by then
    reads, builds = [], []
    assert load_counting(path, reads, builds) == "COUNT: 32\n" and (len(reads), len(builds)) == (1, 1)
    assert load_counting(path, reads, builds) == "COUNT: 32\n" and (len(reads), len(builds)) == (1, 1)
    validated_cache._save_all()  # as the run ends
    validated_cache.forget()  # a new run
    assert load_counting(path, reads, builds) == "COUNT: 32\n" and (len(reads), len(builds)) == (1, 1)


def test_a_same_size_edit_with_the_old_mtime_put_back_is_seen(tmp_path, monkeypatch):
    """`cp -p`, `touch -d`, an editor that keeps times: the change time still moves."""
    from kvcalc import validated_cache

    monkeypatch.setenv("KVCALC_CACHE_DIR", "off")
    validated_cache.forget()
    path = tmp_path / "f.yaml"
    path.write_text("count: 32\n")
    old = os.stat(path)
    monkeypatch.setattr(validated_cache.time, "time_ns", lambda: old.st_ctime_ns + 10**12)
    reads, builds = [], []
    assert load_counting(path, reads, builds) == "COUNT: 32\n"
    time.sleep(0.01)
    path.write_text("count: 16\n")
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # size and mtime as before
    assert os.stat(path).st_size == old.st_size and os.stat(path).st_mtime_ns == old.st_mtime_ns
    assert load_counting(path, reads, builds) == "COUNT: 16\n" and len(builds) == 2


def test_a_file_changed_moments_ago_is_compared_by_its_text(tmp_path, monkeypatch):
    """A write within the same clock tick can keep every field of the status: such a status is not
    trusted, so the text is read and compared on every load until the file is older."""
    from kvcalc import validated_cache

    monkeypatch.setenv("KVCALC_CACHE_DIR", "off")
    validated_cache.forget()
    path = tmp_path / "f.yaml"
    path.write_text("count: 32\n")
    reads, builds = [], []
    load_counting(path, reads, builds)
    load_counting(path, reads, builds)
    assert (len(reads), len(builds)) == (2, 1)  # read again, not built again
    status = os.stat(path)
    path.write_text("count: 16\n")
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert load_counting(path, reads, builds) == "COUNT: 16\n"


def test_a_run_that_needs_one_preset_unpickles_one(tmp_path, monkeypatch):
    from kvcalc import validated_cache
    from kvcalc.sources.presets import available, load_named, preset_dirs

    monkeypatch.setenv("KVCALC_CACHE_DIR", str(tmp_path))
    validated_cache.forget()
    for path in available(preset_dirs()).values():  # a cold run: every preset validated and saved
        load_named(path)
    validated_cache._save_all()
    validated_cache.forget()  # a new run
    spec = load_named(PRESETS / "llama-3-8b.yaml")
    assert spec.name == "llama-3-8b" and spec.layers.count == 32
    [entries] = validated_cache._caches.values()
    live = [path for path, (_, _, value) in entries.items() if not isinstance(value, bytes)]
    assert live == [str(PRESETS / "llama-3-8b.yaml")]
    assert len(entries) == len(list(PRESETS.glob("*.yaml")))
    validated_cache.forget()


def test_the_second_object_of_a_folder_brings_the_rest_in_one_unpickling(tmp_path, monkeypatch):
    import pickle

    from kvcalc import validated_cache
    from kvcalc.sources.presets import available, load_named, preset_dirs

    monkeypatch.setenv("KVCALC_CACHE_DIR", str(tmp_path))
    validated_cache.forget()
    paths = available(preset_dirs())
    cold = {name: load_named(path) for name, path in paths.items()}
    validated_cache._save_all()
    validated_cache.forget()
    calls = []
    original = pickle.loads
    monkeypatch.setattr(pickle, "loads", lambda data, **k: calls.append(1) or original(data, **k))
    warm = {name: load_named(path) for name, path in paths.items()}
    assert warm == cold  # the same specs, field for field
    assert len(calls) == 3  # the cache file, the first spec alone, then every other spec in one pickle
    validated_cache.forget()
