"""Where a model spec comes from, in the order kvcalc tries: a preset name, then an
existing path (a preset YAML, a config.json or a folder holding one), then a Hugging Face
Hub id ``org/name``.

One module per source: ``presets`` (bundled and user YAML), ``config_json`` (a config.json,
read with ``config_fields``, ``config_attention``, ``config_layers`` and ``config_weights``)
and ``hub`` (which alone imports huggingface_hub, and only when an id is fetched). This module
only chooses between them, importing each when it is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from kvcalc.errors import PresetError, UnknownModelError
from kvcalc.sources.presets import SUFFIXES, available, load_file, load_named
from kvcalc.sources.validation import MAX_LISTED, cut
from kvcalc.spec import ModelSpec


def looks_like_path(ref: str) -> bool:
    return (
        os.sep in ref
        or (os.altsep is not None and os.altsep in ref)
        or ref.lower().endswith((*SUFFIXES, ".json"))
    )


def is_hub_ref(ref: str) -> bool:
    """``org/name`` that is not an existing path: read from the Hugging Face Hub."""
    if "/" not in ref:  # a preset name: no need to load the Hub module to say so
        return False
    from kvcalc.sources.hub import is_hub_id  # re only: huggingface_hub is imported when one is fetched

    return is_hub_id(ref) and not _exists(Path(ref))


def resolve(ref: str, dirs: tuple[Path, ...], revision: str | None = None) -> ModelSpec:
    """A preset name (case-insensitive), else a path to a preset YAML or a config.json
    (or a folder holding one), else a Hub id ``org/name`` at ``revision`` (default main)."""
    if looks_like_path(ref):
        if is_hub_ref(ref):
            return load_hub(ref, revision)
        return load_path(Path(ref))
    path = available(dirs).get(ref.lower())
    if path is None:
        raise UnknownModelError(_unknown_message([ref], dirs))
    return load_named(path)


def load_hub(repo_id: str, revision: str | None = None) -> ModelSpec:
    """config.json of a Hub model (the Hub cache first), read like a local one; a note says
    which revision and commit were read, and whether from the cache or the network."""
    from kvcalc.sources.config_json import load_config_path
    from kvcalc.sources.hub import fetch_config

    found = fetch_config(repo_id, revision)
    spec = load_config_path(found.path)
    return spec.model_copy(update={"source": [found.url, *spec.source], "notes": [*spec.notes, found.describe()]})


def resolve_many(refs: list[str], dirs: tuple[Path, ...], revision: str | None = None) -> list[ModelSpec]:
    """Like ``resolve`` for each; every unknown name is reported in one error."""
    names = available(dirs)
    unknown = [r for r in refs if not looks_like_path(r) and r.lower() not in names]
    if unknown:
        raise UnknownModelError(_unknown_message(unknown, dirs))
    return [resolve(ref, dirs, revision) for ref in refs]


def _unknown_message(refs: list[str], dirs: tuple[Path, ...]) -> str:
    from difflib import get_close_matches  # only on the error path

    names = list(available(dirs))
    parts = []
    for ref in refs[:MAX_LISTED]:
        shown = cut(ref, 60)
        close = get_close_matches(ref.lower()[:200], names, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        if _exists(Path(ref)):
            hint += f" (a file or folder '{shown}' is here: pass it as ./{shown})"
        parts.append(f"'{shown}'{hint}")
    more = f", and {len(refs) - MAX_LISTED} more" if len(refs) > MAX_LISTED else ""
    what = "unknown model" if len(refs) == 1 else "unknown models"
    return f"{what} {', '.join(parts)}{more}; 'kvcalc presets' lists them all"


def _exists(path: Path) -> bool:
    """Path.exists() that says no, rather than raising, for names the file system refuses
    (too long, a NUL byte) or folders it may not look into."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def load_path(path: Path) -> ModelSpec:
    """A file or folder given by the user: a preset YAML, a config.json, or a folder holding one."""
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise PresetError(f"{cut(str(path))}: not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    if is_dir or path.suffix.lower() == ".json":
        from kvcalc.sources.config_json import load_config_path

        return load_config_path(path)
    if not is_file:
        from kvcalc.files import why_not_a_file

        raise PresetError(f"{cut(str(path))}: {why_not_a_file(path)}")
    return load_file(path)
