"""Nemotron presets: a Mamba2 hybrid (Nemotron-H) and a NAS-pruned Llama (Nemotron Super).

Expected values are arithmetic from each model's config.json (the fixtures under
tests/fixtures/configs name their sources). Nemotron-H's weights block states its MLP-only layers
with mlp_kinds (issue 19); the NAS model's per-block FFN widths the schema cannot state, and its
notes say so (tests/test_params.py checks every preset has a block or such a note).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvcalc
from kvcalc.sources.presets import load_file

PRESET_DIR = Path(__file__).parent.parent / "model_presets"
CONFIGS = Path(__file__).parent / "fixtures" / "configs"

# hybrid_override_pattern of Nemotron-H-8B-Base-8K: * attention, M Mamba2, - MLP only
NEMOTRON_H_PATTERN = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"

BYTES_PER_TOKEN = {
    "nemotron-h-8b-base-8k": 4 * 8 * (128 + 128) * 2,  # 4 attention layers, 8 KV heads, bf16
    "llama-3.3-nemotron-super-49b-v1": 49 * (64 // 8) * (128 + 128) * 2,  # 49 of 80 blocks attend
}
MAX_CONTEXT = {"nemotron-h-8b-base-8k": 8192, "llama-3.3-nemotron-super-49b-v1": 131072}
# Nemotron-H-8B: hidden 4096, vocab 131072 (head untied), 52 layers each with one RMSNorm, a final norm;
# 24 Mamba2 mixers: in_proj 4096 x (2 x 8192 + 2 x 8 x 128 + 128), conv1d (8192 + 2 x 8 x 128) x 4 + 10240
# bias, dt_bias, A_log, D 128 each, gated norm 8192, out_proj 8192 x 4096; 4 attention layers q 4096 x 4096,
# k and v 4096 x 1024, o 4096 x 4096; 24 MLPs up and down 4096 x 21504 each (relu2, no gate, no bias)
_MAMBA2 = 4096 * (2 * 8192 + 2 * 8 * 128 + 128) + 10240 * 4 + 10240 + 3 * 128 + 8192 + 8192 * 4096
EXPECTED_TOTAL: dict[str, int] = {
    "nemotron-h-8b-base-8k": 2 * 131072 * 4096 + 52 * 4096 + 4096 + 24 * _MAMBA2
    + 4 * (2 * 4096 * 4096 + 2 * 4096 * 1024) + 24 * 2 * 4096 * 21504,
}


def spec_of(name: str):
    return load_file(PRESET_DIR / f"{name}.yaml")


@pytest.mark.parametrize("name", sorted(BYTES_PER_TOKEN))
def test_bytes_per_token(name):
    assert kvcalc.estimate(spec_of(name), context=1).bytes_per_token == BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", sorted(MAX_CONTEXT))
def test_max_context(name):
    assert spec_of(name).max_context == MAX_CONTEXT[name]


def test_the_pattern_is_the_configs():
    config = json.loads((CONFIGS / "nemotron-h-8b-base-8k" / "config.json").read_text())
    assert config["hybrid_override_pattern"] == NEMOTRON_H_PATTERN
    order = spec_of("nemotron-h-8b-base-8k").layers.order()
    kinds = {"*": "full", "M": "mamba2", "-": "ffn"}
    assert order == [kinds[c] for c in NEMOTRON_H_PATTERN]


def test_nemotron_h_state_is_per_sequence_and_constant():
    spec = spec_of("nemotron-h-8b-base-8k")
    # per Mamba2 layer: SSM 128 heads x 64 x d_state 128 in float32 (NemotronHConfig's
    # mamba_ssm_cache_dtype default), conv (8192 + 2 x 8 groups x 128) x kernel 4 in bf16
    per_layer = 128 * 64 * 128 * 4 + (8192 + 2 * 8 * 128) * 4 * 2
    for context in (1, 8192):
        e = kvcalc.estimate(spec, context=context, batch=2)
        assert e.state_bytes == 2 * 24 * per_layer == 2 * 102_629_376
        assert e.total_bytes == 2 * context * 4 * 8 * 256 * 2


def test_super_49b_layers_are_the_block_configs():
    blocks = json.loads((CONFIGS / "llama-3.3-nemotron-super-49b-v1" / "config.json").read_text())["block_configs"]
    order = spec_of("llama-3.3-nemotron-super-49b-v1").layers.order()
    assert [name == "no_attention" for name in order] == [b["attention"]["no_op"] for b in blocks]
    e = kvcalc.estimate(spec_of("llama-3.3-nemotron-super-49b-v1"), context=131072)
    assert e.total_bytes == 131072 * 49 * 8 * 256 * 2 == 26_306_674_688
