"""Validated files kept between runs, so that a start-up does not validate them again.

Validating a preset builds pydantic's validators for the whole spec (about 60 ms, more than
the rest of ``kvcalc estimate``) and ``compare --all`` validates every preset. A file whose
bytes were validated before gives back the object built then: each entry keeps the file's
bytes beside the object and a hit needs them equal byte for byte, so an edited file is
validated afresh, never answered from an older one (no hash, so no collision to fear);
the cache file's name carries kvcalc's version and the size and mtime of the modules that
define the objects, so a changed schema starts a new cache. Errors are never cached. Each folder
of files has its own cache file, so a run loads the entries of the folders it reads and no
more: ``estimate`` of a bundled preset does not unpickle the presets of every folder ever used.

The cache lives in ``$KVCALC_CACHE_DIR``, else ``$XDG_CACHE_HOME/kvcalc``, else
``~/.cache/kvcalc``; ``KVCALC_CACHE_DIR=off`` turns it off. It is a pickle written by this
user for this user (mode 0600, in a folder only they can write); a cache that cannot be
read, written or trusted is ignored, never an error.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_ENTRIES = 1024  # per folder: presets and catalogs a user has edited many times need no more
MAX_FOLDERS = 64  # per kind: the cache files written least recently go first
_caches: dict[tuple[str, str], dict] = {}  # (kind, folder) -> {key: (bytes, object)}, loaded once per process
_dirty: set[tuple[str, str]] = set()


def cached(kind: str, key: str, data: bytes, build, stamp_modules: tuple[str, ...]):
    """``build()``'s object for the file ``key`` (its path) whose bytes are ``data``: from the
    cache when these very bytes were built before under the same code, else built now and kept
    (in memory for this run always; on disk unless the cache is off). A file rewritten within one
    run is built afresh: its bytes differ."""
    entries = _entries((kind, os.path.dirname(key)), stamp_modules)
    found = entries.get(key)
    if isinstance(found, tuple) and len(found) == 2 and found[0] == data:
        return found[1]
    value = build()
    entries[key] = (data, value)
    group = (kind, os.path.dirname(key))
    if group in _paths:  # a cache on disk: written once, as the run ends
        if not _dirty:
            import atexit

            atexit.register(_save_all)
        _dirty.add(group)
    return value


def forget() -> None:
    """Drop this run's entries (the files on disk stay): the next load of each file builds again."""
    _caches.clear()
    _paths.clear()
    _dirty.clear()


def cache_dir() -> Path | None:
    given = os.environ.get("KVCALC_CACHE_DIR")
    if given is not None:
        return None if given.strip().lower() in ("", "off", "0", "none") else Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kvcalc"


def _entries(group: tuple[str, str], stamp_modules: tuple[str, ...]) -> dict:
    """This run's entries for one kind and folder: loaded from disk once, or empty (and kept in
    memory only) when the cache is off or cannot be named."""
    if group in _caches:
        return _caches[group]
    path = _path(*group, stamp_modules)
    if path is None:
        _caches[group] = {}
        return _caches[group]
    entries = {}
    try:
        stat = path.stat()
        if stat.st_uid == os.getuid() and not stat.st_mode & 0o022:  # ours, and no one else can write it
            import pickle

            loaded = pickle.loads(path.read_bytes())
            if isinstance(loaded, dict):
                entries = loaded
    except Exception:  # absent, unreadable, truncated, from another Python: start afresh
        entries = {}
    _caches[group] = entries
    _paths[group] = path
    return entries


_paths: dict[tuple[str, str], Path] = {}


def _digest(text: str) -> str:
    import zlib  # built in: a name needs no cryptographic hash (hashlib costs 2 ms to import)

    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _path(kind: str, folder_of_files: str, stamp_modules: tuple[str, ...]) -> Path | None:
    """``KIND-STAMP-FOLDER.pickle``: STAMP names the code, FOLDER the folder of files."""
    import sys

    from kvcalc import __version__

    folder = cache_dir()
    if folder is None:
        return None
    stamp = [__version__, sys.version]
    for name in stamp_modules:
        try:
            module_file = Path(sys.modules[name].__file__)
            stat = module_file.stat()
            stamp.append(f"{module_file}:{stat.st_size}:{stat.st_mtime_ns}")
        except (KeyError, AttributeError, TypeError, OSError):
            return None  # code we cannot stamp is not cached against
    return folder / f"{kind}-{_digest(chr(10).join(stamp))}-{_digest(folder_of_files)}.pickle"


def _save_all() -> None:
    for group in sorted(_dirty):
        try:
            _save(group)
        except Exception:  # a full disk or a read-only home: the next run validates again
            pass
    _dirty.clear()


def _save(group: tuple[str, str]) -> None:
    import pickle
    import tempfile

    kind = group[0]
    path, entries = _paths[group], _caches[group]
    if len(entries) > MAX_ENTRIES:
        entries = dict(list(entries.items())[-MAX_ENTRIES:])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.parent.stat().st_mode & 0o022:
        return  # a folder others can write to: no cache to trust later
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{kind}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    stamp = path.name.split("-")[1]
    kept = []
    for other in path.parent.glob(f"{kind}-*.pickle"):
        if other.name.split("-")[1] != stamp:  # a cache of older code
            other.unlink(missing_ok=True)
        elif other != path:
            kept.append(other)
    kept.sort(key=lambda p: p.stat().st_mtime_ns)  # the folders written least recently first
    for other in kept[: max(0, len(kept) + 1 - MAX_FOLDERS)]:
        other.unlink(missing_ok=True)
