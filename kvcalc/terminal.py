"""What reaches the terminal: text from files and names with control characters escaped,
and the width tables are drawn at when nothing says."""

from __future__ import annotations

import os
import re
import sys

# C0 and C1 controls except tab and newline, DEL, and the bidirectional overrides and
# isolates that can make text read differently than it is
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

WIDE = 1000  # without a terminal: wide enough that no table drops a column


def clean(text: object) -> str:
    """``text`` with every control character written as its escape (ESC -> \\x1b)."""
    text = str(text)
    if text.isascii() and text.isprintable():  # no control character can be in it: the common case, fast
        return text
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def one_line(text: object) -> str:
    """``clean`` with line breaks and tabs escaped too: an error is one line, whatever it quotes."""
    return clean(text).replace("\n", "\\n").replace("\t", "\\t")


def default_width() -> int | None:
    """None (Rich's own choice) on a terminal or when COLUMNS is set; WIDE when output goes
    to a pipe or a file, so scripts and files get every column."""
    stream = sys.stdout
    try:
        terminal = stream is not None and stream.isatty()
    except (OSError, ValueError):  # a closed stream
        terminal = False
    if os.environ.get("COLUMNS") or terminal:
        return None
    return WIDE
