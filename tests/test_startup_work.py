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
