"""Presets: the bundled YAML files and the user's own, found by name or read by path.

Each file is parsed and validated at most once per process, and only when it is needed.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from kvcalc.errors import PresetError
from kvcalc.sources.validation import cut, describe_validation_error
from kvcalc.spec import ModelSpec

SUFFIXES = (".yaml", ".yml")
STAMP = ("kvcalc.spec", "kvcalc.dtypes", __name__)  # the code a validated spec depends on


def bundled_dir() -> Path:
    """The presets shipped with kvcalc: inside the wheel, or at the top of a checkout."""
    here = Path(__file__).resolve().parent.parent  # kvcalc/
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
            raise PresetError(f"preset folder {cut(str(folder))} does not exist or is not a folder")
    return (*dirs, bundled_dir())


@cache
def _index(folder: Path) -> dict[str, Path]:
    """Lowercase preset name -> file, from file names alone (nothing is parsed here)."""
    found: dict[str, Path] = {}
    try:  # the listing says which entries are files: no stat per file, but for links
        with os.scandir(folder) as listing:
            files = sorted(entry.name for entry in listing
                           if os.path.splitext(entry.name)[1] in SUFFIXES and entry.is_file())
    except OSError as exc:
        raise PresetError(f"preset folder {folder}: cannot list it: {exc.strerror or exc}") from None
    for name in files:
        path = folder / name
        found.setdefault(path.stem.lower(), path)
    return found


def available(dirs: tuple[Path, ...]) -> dict[str, Path]:
    """Every preset name reachable from ``dirs``; the first folder that has a name wins."""
    return dict(_available(tuple(dirs)))


@cache
def _available(dirs: tuple[Path, ...]) -> dict[str, Path]:  # once per run: compare --all resolves 72 names
    names: dict[str, Path] = {}
    for folder in dirs:
        for name, path in _index(folder).items():
            names.setdefault(name, path)
    return dict(sorted(names.items()))


def load_named(path: Path) -> ModelSpec:
    """A preset found in a preset folder: its ``name`` must be its file name, since that is
    the name it is found by (every command treats a mismatch alike: an error naming both)."""
    spec = load_file(path)
    if spec.name != path.stem.lower():
        raise PresetError(f"{path}: name: '{spec.name}' does not match the file name '{path.stem}'")
    return spec


def load_file(path: Path) -> ModelSpec:
    """Parse and validate one preset YAML; errors name the file and the dotted field. Each
    file is validated once per run and kept between runs while it is unchanged: validated_cache.py."""
    from kvcalc.readers import load_yaml, read_text
    from kvcalc.validated_cache import cached

    return cached("presets", os.path.abspath(path), lambda: read_text(path),  # abspath: no system call per file
                  lambda text: spec_from_data(load_yaml(text, str(path)), origin=str(path)), STAMP)


def spec_from_data(data: object, origin: str) -> ModelSpec:
    if not isinstance(data, dict):
        raise PresetError(f"{origin}: a preset is a mapping of fields, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise PresetError(f"{origin}: {describe_validation_error(exc, data)}") from None
