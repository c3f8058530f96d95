"""Token counts from text ("128k" -> 131072) and byte counts to text ("1.25 GiB").

Numbers are ASCII digits only ("８k" is refused) and bounded: no count a user can type
reaches a float's range or Python's digit limit.
"""

import re

MAX_TOKENS = 2**40  # a context of a trillion tokens is not real
MAX_BYTES = 2**60  # an exbibyte
_SUFFIX = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TOKENS = re.compile(r"^\s*([0-9]{1,15}(?:\.[0-9]{1,15})?)\s*([kKmMgG]?)\s*$", re.ASCII)


def parse_tokens(text: str) -> int:
    """'8192', '8k' (8192), '128K' (131072), '1M' (1048576), '1.5k' (1536). Positive only."""
    match = _TOKENS.match(str(text))
    if not match:
        raise ValueError(f"{_show(text)} is not a token count (try 8192, 8k, 128K or 1M)")
    number, suffix = match.groups()
    scale = _SUFFIX[suffix.lower()]
    whole, _, frac = number.partition(".")
    # exact: scale the decimal digits as integers, never as floats
    numerator = int(whole + frac) * scale
    denominator = 10 ** len(frac)
    if numerator % denominator:
        raise ValueError(f"{text!r} is not a whole number of tokens")
    value = numerator // denominator
    if value <= 0:
        raise ValueError(f"{text!r} must be at least 1")
    if value > MAX_TOKENS:
        raise ValueError(f"{text!r} is more than 2^40 tokens; no model reads that many")
    return value


_IEC = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def format_bytes(n: int) -> str:
    """Bytes in powers of 1024 with IEC names: 1342177280 -> '1.25 GiB'. Integer arithmetic
    only (rounded half up to hundredths), so no size is too large to print."""
    if n < 1024:
        return f"{n} B"
    unit = 0
    while n >= 1024 ** (unit + 1) and unit < len(_IEC) - 1:
        unit += 1
    hundredths = (n * 200 // 1024**unit + 1) // 2
    return f"{hundredths // 100}.{hundredths % 100:02d} {_IEC[unit]}"


def format_tokens(n: int) -> str:
    """131072 -> '128K', 1048576 -> '1M', 5000 -> '5000'."""
    for suffix, scale in (("M", 1024**2), ("K", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


_SIZE = re.compile(r"^\s*([0-9]{1,20}(?:\.[0-9]{1,20})?)\s*([KMGTP]i?B|[KMGTP]|B)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_SCALE = {
    "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5,
}


def parse_bytes(text: str) -> int:
    """'80GiB' -> 85899345920, '80GB' -> 80000000000 (IEC for 'i', SI otherwise; bare G is GiB)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{_show(text)} is not a memory size (try 24GiB or 80GB)")
    number, unit = match.groups()
    scale = _SIZE_SCALE[(unit or "b").lower()]
    whole, _, frac = number.partition(".")
    value = int(whole + frac) * scale // 10 ** len(frac)
    if value <= 0:
        raise ValueError(f"{text!r} must be more than 0 bytes")
    if value > MAX_BYTES:
        raise ValueError(f"{text!r} is more than an exbibyte")
    return value


def _show(text, limit: int = 40) -> str:
    """A user's text quoted for an error, cut short and with control characters escaped."""
    shown = repr(str(text))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
