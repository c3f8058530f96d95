"""Every ```console example in README.md and docs/ reproduces exactly (tests/docs_examples.py)."""

from __future__ import annotations

import importlib.util

import pytest
from docs_examples import ROOT, examples, files, run, same

EXAMPLES = [example for path in files() for example in examples(path)]


def test_the_readme_is_short_and_has_examples():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert len(examples(ROOT / "README.md")) >= 8


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.path.name}:{e.command[:60]}" for e in EXAMPLES])
def test_console_example_reproduces(example):
    extra = example.needs()
    if extra is not None and importlib.util.find_spec(extra) is None:
        pytest.skip(f"needs the {extra} extra")
    printed = run(example)
    assert same(example.expected, printed), f"{example.path.name}: $ {example.command}\n{printed}"
