"""What the tests of config weights share: a spec from a config dict, its parameter count or the
one note saying why there is none, and the check against transformers' meta-device build
(``meta_count``, with a config type's ``class_defaults``)."""

from __future__ import annotations

import warnings

import pytest

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
    from test_hf_config_weights import transformers_count

    assert total(data) == expected
    pytest.importorskip("transformers")
    assert transformers_count(data) == expected


def class_defaults(model_type: str) -> dict:
    transformers = pytest.importorskip("transformers")
    return transformers.AutoConfig.for_model(model_type).to_dict()


def meta_count(make) -> int:
    """Parameters plus persistent buffers of the model ``make()`` builds on the meta device, as
    benchmarks/model_types.py counts them: a tied head is one parameter, counted once; persistent
    buffers (DeepSeek-V3's e_score_correction_bias) are in the checkpoint too."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = make()
    finally:
        transformers.logging.set_verbosity(verbosity)
    saved = set(model.state_dict())
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for name, b in model.named_buffers() if name in saved))
