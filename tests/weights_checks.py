"""What the tests of config weights share: a spec from a config dict, its parameter count or the
one note saying why there is none, and the check against transformers' meta-device build."""

from __future__ import annotations

import pytest
from test_hf_config_weights import transformers_count

from kvcalc.capacity.params import parameter_count
from kvcalc.sources.config_json import spec_from_config
from kvcalc.sources.config_weights import SKIP


def spec_of(data: dict):
    return spec_from_config(data, "test/config.json")


def total(data: dict) -> int:
    spec = spec_of(data)
    count = parameter_count(spec)
    assert count is not None, [n for n in spec.notes if n.startswith(SKIP)]
    return count.total


def skip_note(data: dict) -> str:
    spec = spec_of(data)
    notes = [n for n in spec.notes if n.startswith(SKIP)]
    assert spec.weights is None and len(notes) == 1, spec.notes
    return notes[0]


def checked(data: dict, expected: int) -> None:
    """The count equals the hand derivation, and (where installed) what transformers builds."""
    assert total(data) == expected
    pytest.importorskip("transformers")
    assert transformers_count(data) == expected
