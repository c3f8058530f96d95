"""Pydantic's validation errors as one line a user can act on, for every source of a spec."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(exc: ValidationError, data: object) -> str:
    """'attention.kv_heads: kv_heads=3 must divide heads=64; ...' on one line."""
    problems = []
    errors = exc.errors()
    for err in errors[:MAX_LISTED]:
        field = _dotted(err["loc"], data)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{cut(field)}: {message}" if field else message)
    more = f"; and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    return "; ".join(problems) + more


MAX_LISTED = 5  # problems named in one error line; the rest are counted


def cut(text: str, limit: int = 80) -> str:
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
