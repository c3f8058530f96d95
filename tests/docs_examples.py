"""The console examples of README.md and docs/: each ``$ kvcalc ...`` line in a ```console
block is run from the repository root and its output must be what the block shows.

Runs are as a reader's terminal would be, made repeatable: 100 columns, no colour, no cache
of validated presets. A block whose command needs an extra that is missing (torch for verify
and bench, transformers for --reference, matplotlib for plot: without it plot adds a hint) is
skipped by the test, not failed. Timings and other output that cannot repeat belong in ```text
blocks, which are not run.

    python tests/docs_examples.py            # check every block, say which differ
    python tests/docs_examples.py --update   # rewrite each block's output from a fresh run
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "KVCALC_CACHE_DIR": "off", "TERM": "dumb"}
NEEDS = {"verify": "torch", "bench": "torch", "--reference": "transformers", "plot": "matplotlib"}
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


@dataclass(frozen=True)
class Example:
    path: Path
    command: str  # the line after "$ ", shell comment included
    expected: str
    span: tuple[int, int]  # the output's place in the file's text

    @property
    def args(self) -> list[str]:
        return shlex.split(self.command, comments=True)

    def needs(self) -> str | None:
        return next((extra for word, extra in NEEDS.items() if word in self.args), None)


def files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def examples(path: Path) -> list[Example]:
    text = path.read_text()
    found = []
    for block in BLOCK.finditer(text):
        body, start = block.group(1), block.start(1)
        commands = list(re.finditer(r"^\$ (.*)\n", body, re.M))
        for i, command in enumerate(commands):
            end = commands[i + 1].start() if i + 1 < len(commands) else len(body)
            found.append(Example(path, command.group(1), body[command.end():end],
                                 (start + command.end(), start + end)))
    return found


def run(example: Example) -> str:
    args = example.args
    if args[0] != "kvcalc":
        raise ValueError(f"{example.path.name}: a console example runs kvcalc, not {args[0]!r}")
    done = subprocess.run([sys.executable, "-m", "kvcalc", *args[1:]], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **ENV}, timeout=300)
    return done.stdout + done.stderr


def same(shown: str, printed: str) -> bool:
    def lines(text):
        return [line.rstrip() for line in text.strip("\n").splitlines()]

    return lines(shown) == lines(printed)


def main() -> int:
    update = "--update" in sys.argv[1:]
    differ = 0
    for path in files():
        found = examples(path)
        if not found:
            continue
        text = path.read_text()
        for example in reversed(found):  # from the end, so earlier spans stay put
            printed = run(example)
            if same(example.expected, printed):
                continue
            differ += 1
            print(f"{path.relative_to(ROOT)}: $ {example.command}")
            if update:
                body = "\n".join(line.rstrip() for line in printed.strip("\n").splitlines()) + "\n"
                text = text[:example.span[0]] + body + text[example.span[1]:]
        if update:
            path.write_text(text)
    print(f"{differ} example(s) {'rewritten' if update else 'differ'}")
    return 1 if differ and not update else 0


if __name__ == "__main__":
    sys.exit(main())
