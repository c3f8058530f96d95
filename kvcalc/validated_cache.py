"""Validated files kept between runs, so that a start-up does not validate them again.

Validating a preset builds pydantic's validators for the whole spec (about 60 ms, more than
the rest of ``kvcalc estimate``) and ``compare --all`` validates every preset. A file whose
bytes were validated before gives back the object built then: each entry keeps the file's
text beside the object, and an entry is used only when the file is unchanged, known one of two
ways. Either its status is the one recorded (device, inode, size, modification and change times
to the nanosecond: any write or rename changes the change time, which no user can set back)
and the record is trusted because the file was last changed more than ``RACY_SECONDS`` before it
was taken (a later write in the same clock tick could otherwise keep every field, git's "racy"
case); or its text, read again, is equal character for character (no hash, so no collision to
fear). So ``compare --all`` over 200 presets makes 200 ``stat`` calls and reads no preset, and an
edited file is validated afresh, never answered from an older one. The cache file's name carries
kvcalc's and pydantic's versions and the size and mtime of this module and of the modules that
define the objects, so a changed schema starts a new cache. Errors are never cached. Each folder
of files has its own cache file, so a run loads the entries of the folders it reads and no more: ``estimate`` of a
bundled preset does not unpickle the presets of every folder ever used. Objects are unpickled on
first use: the first of a folder alone, so ``estimate`` unpickles one spec, not the folder's 72;
from the second on, the rest in one pickle (each object is saved both ways), which costs about 90
thousand instructions less per object than one pickle each when ``compare --all`` uses them all.

The cache lives in ``$KVCALC_CACHE_DIR``, else ``$XDG_CACHE_HOME/kvcalc``, else
``~/.cache/kvcalc``; ``KVCALC_CACHE_DIR=off`` turns it off. It is a pickle written by this
user for this user (mode 0600, in a folder only they can write); a cache that cannot be
read, written or trusted is ignored, never an error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RACY_SECONDS = 5  # a status changed this recently is not trusted alone (file systems keep times to 2 s at worst)
MAX_ENTRIES = 1024  # per folder: presets and catalogs a user has edited many times need no more
MAX_FOLDERS = 64  # per kind: the cache files written least recently go first
_caches: dict[tuple[str, str], dict] = {}  # (kind, folder) -> {path: (status or None, text, object or its pickle)}
_dirty: set[tuple[str, str]] = set()


def cached(kind: str, path: str, read, build, stamp_modules: tuple[str, ...]):
    """``build(read())``'s object for the file at ``path`` (absolute), from the cache when the file is
    unchanged since it was built under the same code (its trusted status, else its text read again
    and compared), else built now and kept (in memory for this run always; on disk unless the cache
    is off). ``read`` reports a file that cannot be read; a file rewritten within one run is read
    again (its status is too recent to trust) and built afresh when its text differs."""
    group = (kind, os.path.dirname(path))
    entries = _entries(group, stamp_modules)
    found = entries.get(path)
    if not (isinstance(found, tuple) and len(found) == 3):
        found = None  # absent, or an entry of another layout
    try:
        status = os.stat(path)
    except OSError:
        status = None  # read() says why
    seen = None
    if status is not None:
        seen = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
        if found is not None and found[0] == seen and (value := _object(entries, path, group)) is not _NONE:
            return value
    text = read()
    value = _object(entries, path, group) if found is not None and found[1] == text else _NONE
    if value is _NONE:
        value = build(text)
    if seen is not None and max(seen[3], seen[4]) > time.time_ns() - RACY_SECONDS * 10**9:
        seen = None  # changed moments ago: compare the text next time
    if entries.get(path) != (seen, text, value):
        entries[path] = (seen, text, value)
        if group in _paths:  # a cache on disk: written once, as the run ends
            if not _dirty:
                import atexit

                atexit.register(_save_all)
            _dirty.add(group)
    return value


_NONE = object()
_together: dict[tuple[str, str], bytes] = {}  # (kind, folder) -> every object of its cache file in one pickle
_opened: set[tuple[str, str]] = set()  # folders one object of which was unpickled alone this run


def _object(entries: dict, path: str, group: tuple[str, str]):
    """The entry's object, unpickled on its first use: the first of a folder alone (``estimate``
    unpickles one spec, not the folder's 72), the second with all the rest in one pickle (``compare
    --all``: one pickle costs about 90 thousand instructions less per object than one each);
    _NONE when it cannot be unpickled (a class changed under the same stamp: build it again)."""
    from pickle import loads

    if isinstance(entries[path][2], bytes) and group in _opened and group in _together:
        try:
            everything = loads(_together.pop(group))
        except Exception:
            everything = {}
        for key, value in everything.items():
            if key in entries and isinstance(entries[key][2], bytes):  # not rebuilt in this run
                entries[key] = (*entries[key][:2], value)
    status, text, value = entries[path]
    if isinstance(value, bytes):  # as saved (a spec or a catalog is never bytes)
        try:
            value = loads(value)
        except Exception:
            return _NONE
        entries[path] = (status, text, value)
        _opened.add(group)
    return value


def forget() -> None:
    """Drop this run's entries (the files on disk stay): the next load of each file builds again."""
    _caches.clear()
    _paths.clear()
    _dirty.clear()
    _together.clear()
    _opened.clear()


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
            if isinstance(loaded, tuple) and len(loaded) == 2 and isinstance(loaded[0], dict):
                entries, together = loaded  # each object pickled alone, and all of them in one pickle
                if isinstance(together, bytes):
                    _together[group] = together
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
    pydantic = sys.modules.get("pydantic")  # its objects' pickled layout is pydantic's own
    stamp = [__version__, sys.version, getattr(pydantic, "VERSION", "")]
    for name in (__name__, *stamp_modules):
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
        objects = {key: pickle.loads(value) if isinstance(value, bytes) else value
                   for key, (_, _, value) in entries.items()}
        alone = {key: (status, text, pickle.dumps(objects[key], protocol=pickle.HIGHEST_PROTOCOL))
                 for key, (status, text, _) in entries.items()}
        together = pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(handle, "wb") as file:
            file.write(pickle.dumps((alone, together), protocol=pickle.HIGHEST_PROTOCOL))
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
