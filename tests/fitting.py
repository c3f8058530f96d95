"""Tests call fit the way the CLI does: a Deployment from plain values, then fit."""

from __future__ import annotations

from kvcalc.capacity.deployment import Switches, deployment
from kvcalc.capacity.fit import Weights, fit

DEPLOYMENT = ("gpu", "tp", "pp", "gpus", "gpu_util", "reserve", "block_size", "max_batched_tokens", "kv_dtype",
              "platform", "gpu_key", "smi_memory", "dp", "ep", "dcp", "max_seqs")


def fit_with(spec, memory, engine="vllm", version=None, context=None, concurrency=None, weights_dtype=None,
             weights_bytes=None, checkpoint=None, search_min=True, switches=None, **options):
    shape = {k: options.pop(k) for k in DEPLOYMENT if k in options}
    if isinstance(shape.get("gpu"), str):  # a catalog key, as the old signature took it
        shape["gpu_key"] = shape.pop("gpu")
    assert not options, f"unknown options {options}"
    d = deployment(engine, memory, version=version, switches=switches or Switches(), **shape)
    return fit(spec, d, context, concurrency, Weights(weights_dtype, weights_bytes, checkpoint), search_min=search_min)
