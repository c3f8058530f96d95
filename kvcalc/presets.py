"""Find and load model presets: bundled ones, user folders, and files given by path.

A bare name only ever resolves inside the preset folders; anything that looks like a
path (a separator, or a .yaml/.yml/.json suffix) is read as that path when it exists,
and otherwise, when it is spelled ``org/name``, as a Hugging Face Hub id (``kvcalc.hub``,
which alone imports huggingface_hub). Each file is parsed and validated at most once per
process, and only when it is needed.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from kvcalc.errors import PresetError, UnknownModelError
from kvcalc.spec import ModelSpec

_SUFFIXES = (".yaml", ".yml")


def bundled_dir() -> Path:
    """The presets shipped with kvcalc: inside the wheel, or at the top of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "model_presets", here.parent / "model_presets"):
        if candidate.is_dir():
            return candidate
    raise PresetError(f"bundled presets not found beside {here}")


def preset_dirs(user_dirs: list[Path] | tuple[Path, ...] = ()) -> tuple[Path, ...]:
    """User folders first (so they can override a bundled name), then the bundled folder."""
    dirs = [Path(d) for d in user_dirs]
    for folder in dirs:
        try:
            is_dir = folder.is_dir()
        except (OSError, ValueError):
            is_dir = False
        if not is_dir:
            raise PresetError(f"preset folder {_cut(str(folder))} does not exist or is not a folder")
    return (*dirs, bundled_dir())


@cache
def _index(folder: Path) -> dict[str, Path]:
    """Lowercase preset name -> file, from file names alone (nothing is parsed here)."""
    found: dict[str, Path] = {}
    try:
        paths = sorted(folder.iterdir())
    except OSError as exc:
        raise PresetError(f"preset folder {folder}: cannot list it: {exc.strerror or exc}") from None
    for path in paths:
        if path.suffix in _SUFFIXES and path.is_file():
            found.setdefault(path.stem.lower(), path)
    return found


def available(dirs: tuple[Path, ...]) -> dict[str, Path]:
    """Every preset name reachable from ``dirs``; the first folder that has a name wins."""
    names: dict[str, Path] = {}
    for folder in dirs:
        for name, path in _index(folder).items():
            names.setdefault(name, path)
    return dict(sorted(names.items()))


def looks_like_path(ref: str) -> bool:
    return (
        os.sep in ref
        or (os.altsep is not None and os.altsep in ref)
        or ref.lower().endswith((*_SUFFIXES, ".json"))
    )


def is_hub_ref(ref: str) -> bool:
    """``org/name`` that is not an existing path: read from the Hugging Face Hub."""
    from kvcalc.hub import is_hub_id  # re only: huggingface_hub is imported when one is fetched

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


def load_named(path: Path) -> ModelSpec:
    """A preset found in a preset folder: its ``name`` must be its file name, since that is
    the name it is found by (every command treats a mismatch alike: an error naming both)."""
    spec = load_file(path)
    if spec.name != path.stem.lower():
        raise PresetError(f"{path}: name: '{spec.name}' does not match the file name '{path.stem}'")
    return spec


def load_hub(repo_id: str, revision: str | None = None) -> ModelSpec:
    """config.json of a Hub model (the Hub cache first), read like a local one; a note says
    which revision and commit were read, and whether from the cache or the network."""
    from kvcalc.hf_config import load_config_path
    from kvcalc.hub import fetch_config

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
        shown = _cut(ref, 60)
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
        raise PresetError(f"{_cut(str(path))}: not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    if is_dir or path.suffix.lower() == ".json":
        from kvcalc.hf_config import load_config_path

        return load_config_path(path)
    if not is_file:
        raise PresetError(f"{_cut(str(path))}: no such file")
    return load_file(path)


@cache
def load_file(path: Path) -> ModelSpec:
    """Parse and validate one preset YAML; errors name the file and the dotted field."""
    from kvcalc.readers import load_yaml, read_text

    return spec_from_data(load_yaml(read_text(path), str(path)), origin=str(path))


def spec_from_data(data: object, origin: str) -> ModelSpec:
    if not isinstance(data, dict):
        raise PresetError(f"{origin}: a preset is a mapping of fields, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise PresetError(f"{origin}: {describe_validation_error(exc, data)}") from None


def describe_validation_error(exc: ValidationError, data: object) -> str:
    """'attention.kv_heads: kv_heads=3 must divide heads=64; ...' on one line."""
    problems = []
    errors = exc.errors()
    for err in errors[:MAX_LISTED]:
        field = _dotted(err["loc"], data)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{_cut(field)}: {message}" if field else message)
    more = f"; and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    return "; ".join(problems) + more


MAX_LISTED = 5  # problems named in one error line; the rest are counted


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dotted(loc: tuple, data: object) -> str:
    """Pydantic's location as a path through the user's data, dropping union tags."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        elif isinstance(node, dict) and key in (node.get("kind"), node.get("type")):
            continue  # the tag pydantic adds for a discriminated union
        else:
            node = None
        parts.append(f"[{key}]" if isinstance(key, int) else str(key))
    return ".".join(parts).replace(".[", "[")
