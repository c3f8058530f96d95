"""The parsers behind kvcalc's options: integers, sizes, token counts, fractions, rates, lists."""


import re

import typer

from kvcalc.units import parse_tokens


def tokens(value: str) -> int:
    try:
        return parse_tokens(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def whole(low: int = 1, high: int = 2**30):
    """A parser for an integer option: ASCII digits only ('８' is refused), within [low, high]."""

    def parse(value: str) -> int:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]{1,12}", text, re.ASCII):
            raise typer.BadParameter(f"{shown(value)} is not a whole number (digits 0-9)")
        number = int(text)
        if not low <= number <= high:
            raise typer.BadParameter(f"{number} is outside {low:,}..{high:,}")
        return number

    return parse


def shown(value, limit: int = 40) -> str:
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


MAX_LIST_ITEMS = 64  # contexts, group counts, variants, GPU lines: more is a mistake, not a plan


def items(text: str, option: str, example: str) -> list[str]:
    """The comma-separated items of an option: none empty, at most MAX_LIST_ITEMS."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise typer.BadParameter(f"the list is empty (try {example})", param_hint=option)
    if not all(parts):
        raise typer.BadParameter(f"an empty item in {shown(text)} (two commas, or one at an end)",
                                 param_hint=option)
    if len(parts) > MAX_LIST_ITEMS:
        raise typer.BadParameter(f"{len(parts):,} items; at most {MAX_LIST_ITEMS} in one list", param_hint=option)
    return parts


def context_list(text: str | None) -> list[int] | None:
    """'4k,32k,128k,1M' -> [4096, 32768, 131072, 1048576]."""
    if text is None:
        return None
    parts = items(text, "--context", "4k,32k,128k")
    try:
        return [parse_tokens(p) for p in parts]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--context") from None


def one_context(text: str | None, default: int | None = None) -> int | None:
    """--context where a command takes one value: '8k' -> 8192; a list is refused."""
    if text is None:
        return default
    found = context_list(text)
    if len(found) > 1:
        raise typer.BadParameter(f"this command takes one context, not {len(found)}", param_hint="--context")
    return found[0]


def size(option: str, zero: bool = False):
    def parse(value: str) -> int:
        from kvcalc.units import parse_bytes

        if zero and value.strip() in ("0", "0B", "0b"):
            return 0
        try:
            return parse_bytes(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None

    return parse


def fraction(value: str):
    """A memory fraction as engines take it: a decimal in (0, 1], e.g. 0.9 or 0.925."""
    from fractions import Fraction

    text = value.strip()
    if not re.fullmatch(r"(0?\.[0-9]{1,6}|1(\.0{1,6})?|0)", text, re.ASCII):
        raise typer.BadParameter(f"{shown(value)} is not a fraction in (0, 1] (try 0.9)")
    fraction = Fraction(text)
    if not 0 < fraction <= 1:
        raise typer.BadParameter(f"{value} is outside (0, 1]")
    return fraction


def fraction_opt(value: str):
    try:
        return fraction(value)
    except typer.BadParameter as exc:
        raise typer.BadParameter(exc.message, param_hint="--gpu-util") from None


def rate(value: str) -> int:
    """'3.35TB/s', '3350GB', '900 GB/s' -> bytes per second (SI for GB/TB, IEC for GiB)."""
    from kvcalc.units import parse_bytes

    try:
        return parse_bytes(value.strip().removesuffix("/s").removesuffix("ps"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a bandwidth (try 3.35TB/s)") from None


def link_rate(value: str) -> int:
    """'400Gb/s', '400Gbps' (bits) or '50GB/s' (bytes) -> bytes per second."""
    text = str(value).strip().removesuffix("/s").removesuffix("ps")
    match = re.fullmatch(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([kKMGT])b", text, re.ASCII)
    if match:
        scale = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match.group(2)]
        from fractions import Fraction

        return int(Fraction(match.group(1)) * scale / 8)
    return rate(value)


# Every option, declared once: the same name means the same thing, with one bound, in every
# command. Enumerations come from the one place that lists them (dtypes, engines).


def ratio(value: str):
    """SGLang's --hicache-ratio: a positive decimal (its float), kept exact."""
    from fractions import Fraction

    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6})?", text, re.ASCII):
        raise typer.BadParameter(f"{shown(value)} is not a ratio (a decimal such as 2 or 1.5)")
    found = Fraction(text)
    if found <= 0:
        raise typer.BadParameter(f"{text}: SGLang sizes the host pool as int(device pool x ratio), so the ratio "
                                 "must be above 0")
    return found
