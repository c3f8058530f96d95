"""Weights per GPU at PP > 1 when layers differ: each pipeline stage holds its own layers' weights,
not an even share (vLLM splits stages by layer count: get_pp_indices, capacity/layers.stage_layers).

Llama-3.3-Nemotron-Super-49B's 80 blocks each have their own MLP width and some no attention; at
PP 2 (stages of 40 layers) the first stage holds far more than half the layer weights. The per-layer
sums here are written from the preset's fields (attention heads, per-block MLP widths, norms per
block), not from kvcalc's count."""

from __future__ import annotations

from pathlib import Path

import yaml

from kvcalc.capacity.deployment import Deployment
from kvcalc.capacity.engines import get
from kvcalc.capacity.fit import fit
from kvcalc.sources.presets import load_file

PRESET = Path(__file__).resolve().parent.parent / "model_presets" / "llama-3.3-nemotron-super-49b-v1.yaml"
H, HEADS, KV, D, VOCAB = 8192, 64, 8, 128, 128256


def layer_params_by_hand() -> list[int]:
    raw = yaml.safe_load(PRESET.read_text())
    w = raw["weights"]
    unit = []
    for item in raw["layers"]["pattern"]:
        name, _, times = item.partition("*")
        unit += [name] * int(times or 1)
    order = [unit[i % len(unit)] for i in range(raw["layers"]["count"])]  # the pattern tiled over the layers
    attention = H * HEADS * D + 2 * H * KV * D + HEADS * D * H  # q, k, v, o
    return [(attention if name == "full_kv8" else 0) + 3 * H * inner + norms * H
            for name, inner, norms in zip(order, w["mlp_sizes"], w["layer_norms"], strict=True)]


def test_each_stage_holds_its_own_layers():
    per_layer = layer_params_by_hand()
    first, second = sum(per_layer[:40]), sum(per_layer[40:])
    assert first > 2 * second  # the wide blocks come first: an even share would be far off
    embedding = -(-VOCAB // 64) * 64 * H  # vocabulary padded to 64, on the first stage
    head = embedding  # untied, on the last stage
    expected_first = 2 * (first + embedding)
    expected_last = 2 * (second + H + head)  # with the final norm
    spec = load_file(PRESET)
    d = Deployment(engine=get("vllm"), memory=200 * 2**30, tp=1, pp=2)
    result = fit(spec, d, context=8192)
    assert result.weights_bytes_per_gpu == max(expected_first, expected_last) == expected_first
    assert 32.4e9 < first < 32.5e9 and 15.3e9 < second < 15.4e9  # 32.45B and 15.31B of layers; even: 23.9B each
