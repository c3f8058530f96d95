"""Shortcuts taken for start-up time give the answers the plain way gives.

Each test holds one shortcut to a slow, obvious oracle written here: a linear scan, a fresh read.
"""

from fractions import Fraction
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.capacity.engines import get

GiB = 2**30


def scan_util(engine, deployment, weights: int, reserve: int, kv: int) -> float | None:
    """The smallest hundredth whose budget holds ``kv``, by trying all hundred in order."""
    for hundredths in range(1, 101):
        if engine.budget(deployment, Fraction(hundredths, 100), weights, reserve) >= kv:
            return hundredths / 100
    return None


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["vllm", "sglang", "trtllm"]),
    memory=st.integers(1, 200 * GiB),
    weights=st.integers(0, 250 * GiB),
    reserve=st.integers(0, 20 * GiB),
    kv=st.integers(0, 200 * GiB),
)
def test_required_util_by_bisection_is_the_first_hundredth_that_holds(name, memory, weights, reserve, kv):
    engine = get(name)
    d = SimpleNamespace(memory=memory)
    assert engine.required_util(d, weights, reserve, kv) == scan_util(engine, d, weights, reserve, kv)


def test_required_util_edges():
    engine = get("vllm")
    d = SimpleNamespace(memory=100 * GiB)
    assert engine.required_util(d, 0, 0, 0) == 0.01  # nothing to hold: the smallest fraction
    assert engine.required_util(d, 0, 0, 100 * GiB) == 1.0  # all of it: every byte
    assert engine.required_util(d, 0, 0, 100 * GiB + 1) is None  # more than the GPU
    assert engine.required_util(d, 50 * GiB, 0, 10 * GiB) == 0.6  # weights first, then 10 GiB: 60 GiB of 100
    assert engine.required_util(SimpleNamespace(memory=None), 0, 0, 1) is None


def test_attributes_read_on_every_layer_kind_are_not_fields():
    """``span``, ``state``, ``attention`` and ``indexer`` are class attributes where a kind has none
    (a miss would go through pydantic's __getattr__): still refused in a file, never dumped."""
    import pytest
    from pydantic import ValidationError

    from kvcalc.spec import DenseAttention, FullLayer, NoKVLayer, SlidingLayer

    for cls, data, name in [(FullLayer, {"type": "full"}, "span"),
                            (SlidingLayer, {"type": "sliding", "window": 8}, "state"),
                            (NoKVLayer, {"type": "none"}, "attention"),
                            (DenseAttention, {"kind": "mha", "heads": 2, "head_dim": 4}, "indexer")]:
        made = cls.model_validate(data)
        assert getattr(made, name) is None and name not in made.model_dump()
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            cls.model_validate({**data, name: None})


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
       | st.text(alphabet=st.characters(max_codepoint=0x2100)))
def test_clean_fast_path_escapes_what_the_pattern_escapes(text):
    """clean() returns printable ASCII as it is, without the regex: the same as the regex gives."""
    from kvcalc.terminal import _CONTROL, clean

    assert clean(text) == _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def test_a_what_if_attention_leaves_state_layers_as_they_are():
    """variants.with_attention drops per-kind attention only where a kind has that field (NoKVLayer
    now answers ``attention`` as a class attribute)."""
    from kvcalc.sources.presets import available, load_named, preset_dirs
    from kvcalc.spec import DenseAttention, NoKVLayer
    from kvcalc.variants import with_attention

    spec = load_named(available(preset_dirs())["jamba-v0.1"])
    mqa = DenseAttention(kind="mqa", heads=32, head_dim=128)
    changed = with_attention(spec, mqa)
    for name, kind in changed.layers.kinds.items():
        if isinstance(kind, NoKVLayer):
            assert kind == spec.layers.kinds[name] and "attention" not in kind.__dict__
        else:
            assert changed.attention_of(name) == mqa
