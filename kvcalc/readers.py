"""Reading the files users give, strictly and within bounds: YAML and JSON.

Every reader refuses, with one line naming the file: a file over ``MAX_FILE`` bytes (before
parsing), a key given twice in one mapping (YAML and JSON keep the last silently), a YAML
document whose aliases expand past ``MAX_NODES`` nodes (a "billion laughs" file is tiny),
nesting deeper than the parser can follow, and numbers over Python's digit limit.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from kvcalc.errors import PresetError

MAX_FILE = 1024 * 1024  # a preset, a config.json or a GPU catalog is a few kilobytes
MAX_NODES = 100_000  # values in a parsed document, aliases expanded

@cache
def _unique_key_loader():
    """The safe loader (C parser where built: ten times faster, still safe), refusing a key
    given twice in one mapping. Built on first use: a run whose presets come from the cache of
    validated files never imports yaml."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeyLoader(base):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the constructor below says so
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_text(path: Path, limit: int = MAX_FILE) -> str:
    """The file's text, refused before reading when it is larger than ``limit``."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise PresetError(f"{path}: {size:,} bytes is more than a model file can need ({limit:,}); not read")
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise PresetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise PresetError(f"{path}: more than {limit:,} bytes; not read")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PresetError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def load_yaml(text: str, origin: str):
    """Safe YAML with unique keys and a bounded expansion of aliases."""
    import yaml

    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # safe loader only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PresetError(f"{origin}:{line}: {problem}") from None
    except RecursionError:
        raise PresetError(f"{origin}: nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        raise PresetError(f"{origin}: {str(exc).splitlines()[0]}") from None
    check_size(data, origin)
    return data


def load_json(text: str, origin: str):
    """JSON with unique keys; errors name the line and column."""
    import json

    def unique(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise PresetError(f"{origin}: duplicate key {key!r}")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise PresetError(f"{origin}: not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise PresetError(f"{origin}: nested too deeply to read") from None
    except ValueError as exc:  # an integer over Python's digit limit
        raise PresetError(f"{origin}: {str(exc).splitlines()[0]}") from None


def check_size(data, origin: str, limit: int = MAX_NODES) -> None:
    """Refuse a document of more than ``limit`` values once shared parts (YAML aliases) are
    counted every time they are used, as validation would walk them."""
    seen = 0
    stack = [data]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            raise PresetError(f"{origin}: more than {limit:,} values once its aliases are expanded; not read")
        if isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(node.keys())
        elif isinstance(node, list):
            stack.extend(node)
