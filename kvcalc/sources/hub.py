"""Hugging Face Hub ids (``org/name``): config.json through huggingface_hub's own cache.

Only ``config.json`` is fetched, never a weight; ``fit`` may also read the safetensors
headers' sizes. The library's conventions hold (``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN``, ``HF_ENDPOINT``), and it is imported only when a Hub
id is given. What kvcalc does differently from a bare ``hf_hub_download``:

- the cache is tried first, so a cached config works with no network at all;
- an unreachable Hub fails in seconds, quietly. The library retries a failed look-up for
  about 20 s and logs each retry; kvcalc asks once (no retries, a short timeout), with the
  library's logs and progress bars turned down for the call and restored after;
- what the Hub answers is bounded and checked before it touches the disk: the revision is
  a branch, tag or commit (``check_revision``), the commit 40 hex digits, the ETag a plain
  file name (the library makes ``blobs/<etag>`` of it), config.json at most ``MAX_FILE``
  bytes by its HEAD size and again as it streams, every download within a total deadline
  (``DEADLINE`` request timeouts), and a partial file removed. kvcalc therefore downloads
  config.json itself, into the cache's documented layout (``blobs/<etag>``,
  ``snapshots/<commit>/config.json``, ``refs/<revision>``), which the library then reads;
- safetensors headers are read with ranged GETs and checked by ``sources.checkpoint``'s
  one validator, exactly as a local file's.

Every failure is a one-line ``HubError``: gated, not found, no config.json, unreachable,
an answer kvcalc will not use, or a setting (id, revision, environment, cache) that is wrong.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kvcalc.errors import KvcalcError, PresetError
from kvcalc.readers import MAX_FILE

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
COMMIT = re.compile(r"[0-9a-f]{40}")
ETAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")  # becomes a file name in the cache
MAX_REVISION = 200
DEFAULT_TIMEOUT = 5.0  # seconds per request, unless HF_HUB_ETAG_TIMEOUT says otherwise
DEADLINE = 3  # a config.json fetch (HEAD and GET) ends within this many request timeouts
CHECKPOINT_DEADLINE = 6  # ... and the safetensors headers of every shard within this many
WORKERS = 8  # shard headers read at once
FIRST_READ = 100_000  # bytes of a shard read first: most headers fit, so one request does
FIX = "check the network or set HF_ENDPOINT to a mirror, or pass a local config.json"
MAX_TIMEOUT = 86_400  # a day: past it a timeout is a typo, and thread waits overflow
TIMEOUT_VARIABLES = ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")  # read by the library with int()


class HubError(KvcalcError):
    """A Hub id that could not be read; the subclasses say why."""


class HubUnreachableError(HubError):
    pass


class GatedModelError(HubError):
    pass


class HubNotFoundError(HubError):
    pass


class NoConfigError(HubError):
    pass


class HubSettingError(HubError):
    """An id, revision, environment variable or cache folder that cannot work: not the network."""


class HubAnswerError(HubError):
    """The endpoint answered something kvcalc will not use (too big, not a Hub, a bad header)."""


def is_hub_id(ref: str) -> bool:
    """``org/name`` in the Hub's spelling. A path that exists is never a Hub id (the
    resolver checks that), and ``org/name.json`` or ``.yaml`` is read as a path."""
    return HUB_ID.fullmatch(ref) is not None and not ref.lower().endswith((".json", ".yaml", ".yml"))


def check_revision(revision: str) -> str:
    """``revision`` if it is a branch, tag or commit as the Hub (git) names them, ``refs/pr/N``
    included; else ValueError with one line. The library writes ``refs/<revision>`` in the
    cache, so a revision with ``..`` or a leading ``/`` would write outside it."""
    if not isinstance(revision, str) or not revision:
        raise ValueError("a revision is a branch, tag or commit name; it cannot be empty")
    if len(revision) > MAX_REVISION:
        raise ValueError(f"a revision is at most {MAX_REVISION} characters, not {len(revision):,}")
    shown = repr(revision[:60])
    if any(not c.isprintable() or c.isspace() for c in revision):
        raise ValueError(f"revision {shown} holds a space or a control character")
    if "\\" in revision:
        raise ValueError(f"revision {shown} holds a backslash")
    if revision.startswith("/") or revision.endswith("/") or "//" in revision:
        raise ValueError(f"revision {shown} starts or ends with '/' or has an empty part")
    if ".." in revision or any(part.startswith(".") or part.endswith(".lock") for part in revision.split("/")):
        raise ValueError(f"revision {shown} has '..', a part starting with '.' or ending in '.lock' (git refuses them)")
    if any(c in revision for c in "~^:?*[") or "@{" in revision or revision == "@" or revision.endswith("."):
        raise ValueError(f"revision {shown} holds a character git refuses in a name (~ ^ : ? * [ @{{ or a final .)")
    return revision


@dataclass(frozen=True)
class HubConfig:
    path: Path  # the config.json in the Hub cache (a snapshot file)
    repo_id: str
    revision: str
    commit: str | None
    cached: bool  # True: read from the cache, no network used

    @property
    def url(self) -> str:
        return f"{_endpoint()}/{self.repo_id}/blob/{self.commit or self.revision}/config.json"

    def describe(self) -> str:
        where = "from the Hub cache" if self.cached else f"from {_endpoint()}"
        commit = f" (commit {self.commit[:12]})" if self.commit else ""
        return f"read config.json of {self.repo_id} at revision {self.revision}{commit} {where}"


def fetch_config(repo_id: str, revision: str | None = None) -> HubConfig:
    """config.json of ``repo_id`` at ``revision`` (default main): the cache first, then the Hub."""
    revision = _checked_revision(revision)
    hub = _library()
    _check_repo_id(hub, repo_id)
    with _quiet():
        try:
            path = hub.hf_hub_download(repo_id, "config.json", revision=revision, local_files_only=True)
        except Exception as exc:  # not cached (LocalEntryNotFoundError), or a cache it cannot read
            if not _is_local_miss(hub, exc):
                raise _translate(hub, exc, repo_id, revision) from None
        else:
            if not os.path.isfile(path):  # a FIFO or folder in the cache would block or fail the read
                raise HubSettingError(f"{repo_id}: the cached config.json ({path}) is not a regular file")
            return HubConfig(Path(path), repo_id, revision, _commit_of(path), cached=True)
        if _offline(hub):
            raise HubUnreachableError(
                f"{repo_id}: config.json at revision {revision} is not in the Hub cache ({_cache_dir(hub)}) and "
                "HF_HUB_OFFLINE=1 forbids the network; unset HF_HUB_OFFLINE, or pass a local config.json"
            )
        seconds = DEADLINE * _timeout(hub)
        partials: list[Path] = []  # a download left behind at the deadline must not leave its file
        try:
            path = _bounded(lambda deadline: _download_config(hub, repo_id, revision, deadline, partials), seconds,
                            f"{repo_id}: config.json")
        except HubError:
            raise
        except Exception as exc:
            raise _translate(hub, exc, repo_id, revision) from None
        finally:
            for partial in partials:
                with contextlib.suppress(OSError):
                    partial.unlink()
    return HubConfig(path, repo_id, revision, _commit_of(path), cached=False)


def fetch_checkpoint(repo_id: str, revision: str | None = None):
    """The checkpoint's bytes from the safetensors headers on the Hub (a few KiB per shard,
    never a weight), as a ``sources.checkpoint.Checkpoint``; None when the repo has no
    safetensors files. Raises HubError when the headers cannot be had or are not valid."""
    revision = _checked_revision(revision)
    hub = _library()
    _check_repo_id(hub, repo_id)
    if _offline(hub):
        raise HubUnreachableError("HF_HUB_OFFLINE=1: safetensors headers are read from the Hub, not the cache")
    seconds = CHECKPOINT_DEADLINE * _timeout(hub)
    with _quiet():
        try:
            return _bounded(lambda deadline: _read_checkpoint(hub, repo_id, revision, deadline), seconds,
                            f"{repo_id}: safetensors headers")
        except HubError:
            raise
        except PresetError as exc:  # the shared validator refused a header or the index
            raise HubAnswerError(str(exc)) from None
        except Exception as exc:
            raise _translate(hub, exc, repo_id, revision) from None


# --- the downloads, each run within a total deadline ------------------------------------


def _bounded(work, seconds: float, what: str):
    """``work(deadline)`` within ``seconds`` in all: a per-request timeout does not bound a
    server that sends one byte a second, so the work runs in a daemon thread that is left
    behind (and stops at its next chunk, removing its partial file) when the time is up."""
    deadline = time.monotonic() + seconds
    box: dict = {}

    def run():
        try:
            box["value"] = work(deadline)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="kvcalc-hub", daemon=True)
    thread.start()
    thread.join(seconds + 0.5)  # the work's own checks come first when it is streaming
    if thread.is_alive():
        raise HubUnreachableError(f"{what}: {_endpoint()} did not finish answering within {seconds:g} s; {FIX}")
    if "error" in box:
        raise box["error"]
    return box["value"]


class _TimeUp(Exception):
    pass


def _download_config(hub, repo_id: str, revision: str, deadline: float, partials: list[Path]) -> Path:
    """config.json into the cache's layout, checked before anything is written."""
    meta = _probe(hub, repo_id, "config.json", revision)
    commit = _checked_commit(meta, repo_id, "config.json")
    etag = _checked_etag(meta, repo_id, "config.json")
    if meta.size is not None and meta.size > MAX_FILE:
        raise HubAnswerError(f"{repo_id}: config.json at revision {revision} is {meta.size:,} bytes on "
                             f"{_endpoint()}, more than a config can need ({MAX_FILE:,}); not downloaded")
    storage = Path(_cache_dir(hub)) / ("models--" + repo_id.replace("/", "--"))
    blob = storage / "blobs" / etag
    pointer = storage / "snapshots" / commit / "config.json"
    try:
        blob.parent.mkdir(parents=True, exist_ok=True)
        pointer.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cache_error(hub, exc) from None
    if not blob.is_file():
        partial = blob.with_name(f"{etag}.{uuid.uuid4().hex[:8]}.incomplete")
        partials.append(partial)
        try:
            with partial.open("xb") as out:
                _get(hub, meta.location, deadline, most=MAX_FILE, what=f"{repo_id}: config.json", out=out)
            os.replace(partial, blob)
        except OSError as exc:
            if getattr(exc, "filename", None) is None:
                raise
            raise _cache_error(hub, exc) from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()
    try:
        _link(blob, pointer)
        if revision != commit:
            ref = storage / "refs" / revision  # a checked revision: no '..', no leading '/'
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit, encoding="ascii")
    except OSError as exc:
        raise _cache_error(hub, exc) from None
    return pointer


def _link(blob: Path, pointer: Path) -> None:
    """The snapshot's file as a relative link to its blob (a copy where links are refused),
    replaced atomically."""
    temporary = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), temporary)
        except (OSError, NotImplementedError):
            shutil.copyfile(blob, temporary)
        os.replace(temporary, pointer)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _read_checkpoint(hub, repo_id: str, revision: str, deadline: float):
    from kvcalc.sources.checkpoint import INDEX, MAX_INDEX, combine, parse_index

    errors = _errors(hub)
    missing = getattr(errors, "EntryNotFoundError", ())
    try:
        meta = _probe(hub, repo_id, "model.safetensors", revision)
        commit = _checked_commit(meta, repo_id, "model.safetensors")
        names = ["model.safetensors"]
    except missing:
        try:
            meta = _probe(hub, repo_id, INDEX, revision)
        except missing:
            return None  # no safetensors files: the parameter count answers
        commit = _checked_commit(meta, repo_id, INDEX)
        origin = f"{repo_id} {INDEX} (commit {commit[:12]})"
        if meta.size is not None and meta.size > MAX_INDEX:
            raise HubAnswerError(f"{origin}: {meta.size:,} bytes, more than a safetensors index needs "
                                 f"({MAX_INDEX:,}); not downloaded") from None
        raw = _get(hub, hub.hf_hub_url(repo_id, INDEX, revision=commit), deadline, most=MAX_INDEX, what=origin)
        names = parse_index(raw, origin)
        if not names:
            return None  # an empty index: as a local folder without shards

    def header(name: str):
        origin = f"{repo_id} {name} (commit {commit[:12]})"
        return origin, _remote_header(hub, hub.hf_hub_url(repo_id, name, revision=commit), origin, deadline)

    return combine(_parallel(header, names, deadline))


def _remote_header(hub, url: str, origin: str, deadline: float):
    """One shard's header by ranged GETs (its first 100 kB, then the rest if longer), checked
    by the validator local files use."""
    from kvcalc.sources.checkpoint import header_length, parse_header

    first, size = _get(hub, url, deadline, most=8 + FIRST_READ, what=origin, byte_range=0)
    length = header_length(first[:8], origin)
    raw = first[8:8 + length]
    if len(raw) < length and len(first) == 8 + FIRST_READ:
        rest, _ = _get(hub, url, deadline, most=length - len(raw), what=origin, byte_range=len(first))
        raw += rest
    if len(raw) < length:
        raise PresetError(f"{origin}: ends inside its safetensors header")
    if size is not None and size < 8 + length:
        raise PresetError(f"{origin}: its header of {length:,} bytes is longer than the file ({size:,} bytes)")
    return parse_header(raw, origin, data_size=None if size is None else size - 8 - length)


def _parallel(work, items: list, deadline: float) -> list:
    """``work`` over ``items`` on a few daemon threads (a left-behind one must not keep the
    process alive); the first error stops the rest."""
    results: list = [None] * len(items)
    queue = iter(enumerate(items))
    lock = threading.Lock()
    failed: list[BaseException] = []

    def worker():
        while True:
            with lock:
                item = None if failed else next(queue, None)
            if item is None:
                return
            if time.monotonic() > deadline:
                with lock:
                    failed.append(_TimeUp())
                return
            index, value = item
            try:
                results[index] = work(value)
            except BaseException as exc:
                with lock:
                    failed.append(exc)
                return

    threads = [threading.Thread(target=worker, name="kvcalc-hub-shard", daemon=True)
               for _ in range(min(WORKERS, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]
    return results


def _get(hub, url: str, deadline: float, *, most: int, what: str, byte_range: int | None = None, out=None):
    """GET ``url``, streamed, checking the deadline at every chunk. Without ``byte_range``: the
    body (into ``out`` when given), refused past ``most`` bytes. With it: at most ``most``
    bytes from that offset, and the file's size when the answer says it, as (bytes, size);
    a server that ignores Range is read only as far as needed."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    headers = build_hf_headers()  # the token, the user agent
    if urlsplit(url).netloc != urlsplit(_endpoint()).netloc:
        headers.pop("authorization", None)  # a token goes to the Hub only, not to a CDN
    headers["Accept-Encoding"] = "identity"
    if byte_range is not None:
        headers["Range"] = f"bytes={byte_range}-{byte_range + most - 1}"
    session = get_session()
    if hasattr(session, "stream"):  # httpx: huggingface_hub 1.0 and later
        opened = session.stream("GET", url, headers=headers, timeout=_timeout(hub), follow_redirects=True)
    else:  # requests: earlier releases
        opened = contextlib.closing(session.get(url, headers=headers, timeout=_timeout(hub), stream=True))
    kept: list[bytes] = []
    got = skip = 0
    with opened as response:
        hf_raise_for_status(response)
        size = None
        if byte_range is not None:
            if response.status_code == 206:
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                size = int(total) if total.isascii() and total.isdigit() and len(total) < 20 else None
            else:  # the whole file: skip to the offset
                skip = byte_range
                length = response.headers.get("Content-Length", "")
                size = int(length) if length.isascii() and length.isdigit() and len(length) < 20 else None
        chunks = response.iter_bytes(65536) if hasattr(response, "iter_bytes") else response.iter_content(65536)
        for chunk in chunks:
            if time.monotonic() > deadline:
                raise _TimeUp()
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            chunk = chunk[:most + 1 - got]
            got += len(chunk)
            if got > most:
                if byte_range is not None:
                    kept.append(chunk[:-1])
                    break
                raise HubAnswerError(f"{what}: {_endpoint()} sent more than {most:,} bytes; not kept")
            if out is not None:
                out.write(chunk)
            else:
                kept.append(chunk)
    body = b"".join(kept)
    return (body, size) if byte_range is not None else body


def _probe(hub, repo_id: str, filename: str, revision: str):
    """One HEAD request, no retries, a short timeout: the file's commit, ETag, size, location."""
    import inspect

    from huggingface_hub.file_download import get_hf_file_metadata

    url = hub.hf_hub_url(repo_id, filename, revision=revision)
    options = {"timeout": _timeout(hub)}
    if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters:
        options["retry_on_errors"] = False
    return get_hf_file_metadata(url, **options)


def _checked_commit(meta, repo_id: str, filename: str) -> str:
    """The commit of a HEAD answer: 40 hex digits, as it names a cache folder."""
    endpoint = _endpoint()
    commit = meta.commit_hash
    if commit is None:
        raise HubAnswerError(f"{repo_id}: {endpoint} answered for {filename} without an X-Repo-Commit header, so it "
                             "is not a Hugging Face Hub; check HF_ENDPOINT (and any proxy)")
    if not COMMIT.fullmatch(commit):
        raise HubAnswerError(f"{repo_id}: {endpoint} answered a commit that is not 40 hex digits "
                             f"({commit[:50]!r}); check HF_ENDPOINT")
    return commit


def _checked_etag(meta, repo_id: str, filename: str) -> str:
    """The ETag of a HEAD answer as a plain file name: the cache keeps the file as
    ``blobs/<etag>``, so a server's ``../`` would write outside the cache."""
    endpoint = _endpoint()
    etag = meta.etag
    if etag is None or not ETAG.fullmatch(etag):
        shown = "no ETag" if etag is None else f"an ETag kvcalc will not use as a file name ({etag[:50]!r})"
        raise HubAnswerError(f"{repo_id}: {endpoint} answered {filename} with {shown}; check HF_ENDPOINT")
    return etag


# --- the library, its settings and its errors -----------------------------------------


def _checked_revision(revision: str | None) -> str:
    try:
        return check_revision(revision or "main")
    except ValueError as exc:
        raise HubSettingError(f"--revision: {exc}") from None


def _check_environment() -> None:
    """The variables huggingface_hub reads at import, checked first: it reads the timeouts
    with int() and fails with a traceback on '1.5' or 'abc'."""
    for name in TIMEOUT_VARIABLES:
        value = os.environ.get(name)
        if value is None:
            continue
        try:
            seconds = int(value)
        except ValueError:
            seconds = -1
        if not 0 <= seconds <= MAX_TIMEOUT:
            raise HubSettingError(f"{name}={value[:40]!r} is not a whole number of seconds from 0 to {MAX_TIMEOUT:,}; "
                                  f"huggingface_hub cannot start with it (unset it, or give e.g. {name}=10)")
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint is not None:
        parts = urlsplit(endpoint) if endpoint.isprintable() and endpoint.strip() == endpoint else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise HubSettingError(f"HF_ENDPOINT={endpoint[:80]!r} is not an http(s) URL "
                                  "(unset it for huggingface.co, or give e.g. https://hf-mirror.com)")


def _library():
    _check_environment()
    try:
        import huggingface_hub
        from huggingface_hub import constants  # noqa: F401  (reads the HF_* variables now)
    except ImportError:
        raise KvcalcError("a Hub id needs huggingface_hub: pip install 'huggingface_hub>=0.24' "
                          "(or pass a local config.json)") from None
    except Exception as exc:  # a setting the library cannot read
        raise HubSettingError(f"huggingface_hub cannot start: {_first_line(exc)}") from None
    return huggingface_hub


def _check_repo_id(hub, repo_id: str) -> None:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as exc:  # HFValidationError
        raise HubSettingError(f"{repo_id[:100]!r} is not a valid Hub id ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:160] if text else "") or type(exc).__name__


@contextmanager
def _quiet():
    """The library's retry logs and progress bars off for one call, restored after."""
    import warnings

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from huggingface_hub.utils import logging as hub_logging

    level = hub_logging.get_verbosity()
    bars_were_off = are_progress_bars_disabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hub_logging.set_verbosity_error()
        disable_progress_bars()
        try:
            yield
        finally:
            hub_logging.set_verbosity(level)
            if not bars_were_off:
                enable_progress_bars()


def _timeout(hub) -> float:
    """HF_HUB_ETAG_TIMEOUT when the user set it (as the library parsed it), else kvcalc's 5 s:
    the library's own default of 10 s, then 60 s on retry, is too long for a calculator."""
    if not os.environ.get("HF_HUB_ETAG_TIMEOUT"):
        return DEFAULT_TIMEOUT
    return float(getattr(hub.constants, "HF_HUB_ETAG_TIMEOUT", None) or DEFAULT_TIMEOUT)


def _offline(hub) -> bool:
    constants = hub.constants
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else getattr(constants, "HF_HUB_OFFLINE", False))


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:  # not installed, or a setting it cannot read
        return "the Hub"


def _cache_dir(hub) -> str:
    return str(getattr(hub.constants, "HF_HUB_CACHE", "the Hub cache"))


def _cache_error(hub, exc: OSError, repo_id: str | None = None) -> HubSettingError:
    """A file-system error while using the cache (or HF_HOME, where the token lives)."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    prefix = f"{repo_id}: " if repo_id else ""
    return HubSettingError(f"{prefix}cannot use the Hub cache {_cache_dir(hub)}: {exc.strerror or exc}{where}; set "
                           "HF_HUB_CACHE (or HF_HOME) to a folder you can write, or pass a local config.json")


def _commit_of(path: str | Path) -> str | None:
    """The snapshot folder a cached file sits in is named by its commit."""
    parent = Path(path).parent
    return parent.name if parent.parent.name == "snapshots" else None


def _is_local_miss(hub, exc: Exception) -> bool:
    errors = _errors(hub)
    local = getattr(errors, "LocalEntryNotFoundError", None)
    offline = getattr(errors, "OfflineModeIsEnabled", None)
    return any(kind is not None and isinstance(exc, kind) for kind in (local, offline))


def _errors(hub):
    try:
        from huggingface_hub import errors
    except ImportError:  # older releases keep them in utils
        from huggingface_hub import utils as errors
    return errors


def _is_network_error(exc: BaseException) -> bool:
    """A failure to reach or hear the server: the HTTP client's own errors, or the OS's."""
    module = type(exc).__module__ or ""
    return (isinstance(exc, (ConnectionError, TimeoutError, _TimeUp))
            or module.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests", "urllib3", "socket", "ssl"))


def _translate(hub, exc: Exception, repo_id: str, revision: str) -> HubError:
    """The library's exception as one line that says what to do."""
    errors = _errors(hub)

    def kind(name: str) -> bool:
        cls = getattr(errors, name, None)
        return cls is not None and isinstance(exc, cls)

    status = getattr(getattr(exc, "response", None), "status_code", None)
    endpoint = _endpoint()
    if kind("GatedRepoError"):
        return GatedModelError(
            f"{repo_id} is a gated model on {endpoint}: accept its terms on the model page, then set HF_TOKEN "
            "to a token with access (or run 'hf auth login')"
        )
    if kind("RevisionNotFoundError"):
        return HubNotFoundError(f"{repo_id} has no revision '{revision}' on {endpoint} (check --revision)")
    if kind("RepositoryNotFoundError"):
        return HubNotFoundError(
            f"no model '{repo_id}' on {endpoint} (check the spelling; a private model needs HF_TOKEN)"
        )
    if kind("HFValidationError"):
        return HubSettingError(f"{repo_id[:100]!r} is not a valid Hub id ({_first_line(exc)})")
    if kind("FileMetadataError"):
        return HubAnswerError(f"{repo_id}: {endpoint} did not answer as a Hugging Face Hub ({_first_line(exc)})")
    if kind("LocalEntryNotFoundError") or kind("OfflineModeIsEnabled"):
        return HubUnreachableError(
            f"{repo_id}: config.json is not in the Hub cache and {endpoint} is not reachable; {FIX}"
        )
    if kind("EntryNotFoundError") or status == 404:
        return NoConfigError(
            f"{repo_id} at revision {revision} has no config.json on {endpoint} (not a transformers model?); "
            "pass a local config.json or a preset name"
        )
    if status in (401, 403):
        return GatedModelError(
            f"{repo_id}: {endpoint} refused access ({status}); set HF_TOKEN to a token that can read it"
        )
    if status is not None:
        return HubUnreachableError(f"{repo_id}: {endpoint} answered HTTP {status}; try again later, or {FIX}")
    if isinstance(exc, _TimeUp):
        return HubUnreachableError(f"{repo_id}: {endpoint} did not finish answering in time; {FIX}")
    if isinstance(exc, OSError) and exc.errno is not None and getattr(exc, "filename", None):
        return _cache_error(hub, exc, repo_id)  # the file system, not the network
    detail = f"{type(exc).__name__}: {_first_line(exc)}"
    if not _is_network_error(exc):
        return HubError(f"{repo_id}: reading it from {endpoint} failed ({detail})")
    return HubUnreachableError(
        f"{repo_id}: config.json is not in the Hub cache and {endpoint} is not reachable ({detail}); {FIX}"
    )
