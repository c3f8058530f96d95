"""Hugging Face Hub ids (``org/name``): config.json through huggingface_hub's own cache.

Only ``config.json`` is fetched, never a weight; ``fit`` may also read the safetensors
headers' sizes. The library's conventions hold (``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN``, ``HF_ENDPOINT``), and it is imported only when a Hub
id is given. Two things kvcalc does differently from a bare ``hf_hub_download``:

- the cache is tried first, so a cached config works with no network at all;
- an unreachable Hub fails in seconds, quietly. The library retries a failed look-up for
  about 20 s and logs each retry; kvcalc probes once (no retries, a short timeout) and
  downloads only when the probe reached the Hub, with the library's logs and progress
  bars turned down for the call and restored after.

Every failure is a one-line ``KvcalcError``: gated, not found, no config.json, unreachable.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kvcalc.errors import KvcalcError

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_TIMEOUT = 5.0  # seconds per request, unless HF_HUB_ETAG_TIMEOUT says otherwise
FIX = "check the network or set HF_ENDPOINT to a mirror, or pass a local config.json"


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


def is_hub_id(ref: str) -> bool:
    """``org/name`` in the Hub's spelling. A path that exists is never a Hub id (the
    resolver checks that), and ``org/name.json`` or ``.yaml`` is read as a path."""
    return HUB_ID.fullmatch(ref) is not None and not ref.lower().endswith((".json", ".yaml", ".yml"))


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
    revision = revision or "main"
    hub = _library()
    with _quiet():
        try:
            path = hub.hf_hub_download(repo_id, "config.json", revision=revision, local_files_only=True)
            return HubConfig(Path(path), repo_id, revision, _commit_of(path), cached=True)
        except Exception as exc:  # not cached (LocalEntryNotFoundError), or a cache it cannot read
            if not _is_local_miss(hub, exc):
                raise _translate(hub, exc, repo_id, revision) from None
        if _offline(hub):
            raise HubUnreachableError(
                f"{repo_id}: config.json at revision {revision} is not in the Hub cache ({_cache_dir(hub)}) and "
                "HF_HUB_OFFLINE=1 forbids the network; unset HF_HUB_OFFLINE, or pass a local config.json"
            )
        try:
            _probe(hub, repo_id, "config.json", revision)
            path = hub.hf_hub_download(repo_id, "config.json", revision=revision, etag_timeout=_timeout(hub))
        except Exception as exc:
            raise _translate(hub, exc, repo_id, revision) from None
    return HubConfig(Path(path), repo_id, revision, _commit_of(path), cached=False)


def fetch_checkpoint(repo_id: str, revision: str | None = None):
    """The checkpoint's bytes from the safetensors headers on the Hub (a few KiB per shard,
    never a weight), as a ``capacity.checkpoint.Checkpoint``; None when the repo has no
    safetensors files. Raises HubError when the headers cannot be had."""
    from kvcalc.capacity.checkpoint import Checkpoint

    revision = revision or "main"
    hub = _library()
    if _offline(hub):
        raise HubUnreachableError("HF_HUB_OFFLINE=1: safetensors headers are read from the Hub, not the cache")
    with _quiet():
        try:
            _probe(hub, repo_id, "config.json", revision)  # fail fast when the Hub is gone
            meta = hub.get_safetensors_metadata(repo_id, revision=revision)
        except Exception as exc:
            if type(exc).__name__ == "NotASafetensorsRepoError":
                return None
            raise _translate(hub, exc, repo_id, revision) from None
    total = tensors = f32 = 0
    for file in meta.files_metadata.values():
        for info in file.tensors.values():
            begin, end = info.data_offsets
            total += end - begin
            tensors += 1
            if info.dtype == "F32":
                f32 += end - begin
    return Checkpoint(total, tensors, len(meta.files_metadata), f32)


def _library():
    try:
        import huggingface_hub
    except ImportError:
        raise KvcalcError("a Hub id needs huggingface_hub: pip install 'huggingface_hub>=0.24' "
                          "(or pass a local config.json)") from None
    return huggingface_hub


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


def _probe(hub, repo_id: str, filename: str, revision: str) -> None:
    """One HEAD request, no retries, a short timeout: does the Hub answer for this file?"""
    import inspect

    from huggingface_hub.file_download import get_hf_file_metadata

    url = hub.hf_hub_url(repo_id, filename, revision=revision)
    options = {"timeout": _timeout(hub)}
    if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters:
        options["retry_on_errors"] = False
    get_hf_file_metadata(url, **options)


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
    except ImportError:
        return "the Hub"


def _cache_dir(hub) -> str:
    return str(getattr(hub.constants, "HF_HUB_CACHE", "the Hub cache"))


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
    reason = str(exc).splitlines()[0][:120] if str(exc) else ""
    detail = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return HubUnreachableError(
        f"{repo_id}: config.json is not in the Hub cache and {endpoint} is not reachable ({detail}); {FIX}"
    )
