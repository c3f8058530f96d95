"""Every bundled preset loads, and its KV sizes match numbers derived by hand.

Expected values are written as arithmetic from /work/shared/reference/model_facts.yaml
(layers, KV heads, head_dim, MLA latent widths, windows), never computed by kvcalc.
Bytes per element: 2 for bf16/fp16 presets, 4 for fp32 presets.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import kvcalc
from kvcalc.sources.presets import load_file

PRESET_DIR = Path(__file__).parent.parent / "model_presets"
PRESET_FILES = sorted(PRESET_DIR.glob("*.yaml"))
PRESET_NAMES = [path.stem for path in PRESET_FILES]


def batch_tables(name: str) -> dict:
    """The table ``name`` of every later batch of presets (tests/test_presets_*.py), merged: each
    batch keeps its hand-derived tables and their tests in its own file."""
    merged: dict = {}
    for path in sorted(Path(__file__).parent.glob("test_presets_*.py")):
        merged.update(getattr(importlib.import_module(path.stem), name, {}))
    return merged


def spec_of(name: str):
    return load_file(PRESET_DIR / f"{name}.yaml")


# One more token at batch 1, summed over every KV layer (sliding/chunked ones included,
# no-KV layers cost 0). Dense: 2 (K and V) x layers x kv_heads x head_dim x bytes.
# MLA: layers x (kv_lora_rank + qk_rope_head_dim) x bytes.
EXPECTED_BYTES_PER_TOKEN = {
    # Llama
    "llama-2-7b": 2 * 32 * 32 * 128 * 2,  # MHA, 32 KV heads, fp16
    "llama-2-70b": 2 * 80 * 8 * 128 * 2,  # GQA 8 KV heads, fp16
    "llama-3-8b": 2 * 32 * 8 * 128 * 2,  # bf16
    "llama-3-70b": 2 * 80 * 8 * 128 * 2,  # layers x kv_heads x head_dim, bf16
    "llama-3.1-405b": 2 * 126 * 8 * 128 * 2,  # 8 KV heads, not the mp16 16
    "llama-4-scout": 2 * 48 * 8 * 128 * 2,  # 36 chunked + 12 global layers
    "llama-3.1-8b": 2 * 32 * 8 * 128 * 2,  # head_dim 4096/32
    "llama-3.1-70b": 2 * 80 * 8 * 128 * 2,  # head_dim 8192/64
    "llama-3.2-1b": 2 * 16 * 8 * 64 * 2,  # head_dim 64
    "llama-3.2-3b": 2 * 28 * 8 * 128 * 2,
    # Mistral
    "mistral-7b-v0.1": 2 * 32 * 8 * 128 * 2,  # all sliding, still cost per token
    "mixtral-8x7b": 2 * 32 * 8 * 128 * 2,
    "mistral-nemo-12b": 2 * 40 * 8 * 128 * 2,  # head_dim 128, not 5120/32 = 160
    # Qwen
    "qwen2-7b": 2 * 28 * 4 * 128 * 2,
    "qwen2-72b": 2 * 80 * 8 * 128 * 2,
    "qwen2.5-7b": 2 * 28 * 4 * 128 * 2,
    "qwen3-8b": 2 * 36 * 8 * 128 * 2,
    "qwen2.5-14b": 2 * 48 * 8 * 128 * 2,  # window switched off
    "qwen3-32b": 2 * 64 * 8 * 128 * 2,  # head_dim 128, not 5120/64 = 80
    "qwen3-30b-a3b": 2 * 48 * 4 * 128 * 2,  # head_dim 128, not 2048/32 = 64
    "qwen3-235b-a22b": 2 * 94 * 4 * 128 * 2,  # head_dim 128, not 4096/64 = 64
    "qwen3-next-80b-a3b": 2 * 12 * 2 * 256 * 2,  # only the 12 full-attention layers
    # Phi
    "phi-3-mini-4k": 2 * 32 * 32 * 96 * 2,  # head_dim 96
    "phi-3-medium-4k": 2 * 40 * 10 * 128 * 2,
    # Gemma
    "gemma-2b": 2 * 18 * 1 * 256 * 2,  # MQA
    "gemma-7b": 2 * 28 * 16 * 256 * 2,  # head_dim 256, not 3072/16
    "gemma-2-9b": 2 * 42 * 8 * 256 * 2,  # head_dim 256, not 3584/16
    # float32 checkpoints (gemma-2-27b base, GPT-2) are served in 2 bytes by default (dtypes.serving_dtype)
    "gemma-2-27b": 2 * 46 * 16 * 128 * 2,  # head_dim 128, not 144; fp32 base config, served in bf16
    "gemma-3-27b": 2 * 62 * 16 * 128 * 2,
    # GPT-2, fp32
    "gpt2": 2 * 12 * 12 * 64 * 2,
    "gpt2-medium": 2 * 24 * 16 * 64 * 2,
    "gpt2-large": 2 * 36 * 20 * 64 * 2,
    "gpt2-xl": 2 * 48 * 25 * 64 * 2,
    # BERT: encoder-only, no KV cache
    "bert-base": 0,
    "bert-large": 0,
    # Falcon
    "falcon-7b": 2 * 32 * 1 * 64 * 2,  # one KV head despite num_kv_heads 71 in config
    "falcon-40b": 2 * 60 * 8 * 64 * 2,
    # PaLM, MQA, head size 256
    "palm-8b": 2 * 32 * 1 * 256 * 2,
    "palm-62b": 2 * 64 * 1 * 256 * 2,
    "palm-540b": 2 * 118 * 1 * 256 * 2,
    # MLA: latent 512 + rope key 64 per layer
    "deepseek-v2": 60 * (512 + 64) * 2,
    "deepseek-v2-lite": 27 * (512 + 64) * 2,
    "deepseek-v3": 61 * (512 + 64) * 2,
    "kimi-k2": 61 * (512 + 64) * 2,
    # Hybrids
    "jamba-v0.1": 2 * 4 * 8 * 128 * 2,  # 4 attention layers of 32
}


def test_presets_found():
    assert PRESET_FILES, f"no presets in {PRESET_DIR}"


@pytest.mark.parametrize("path", PRESET_FILES, ids=PRESET_NAMES)
def test_preset_loads(path: Path):
    spec = load_file(path)
    assert spec.name == path.stem
    assert spec.name == spec.name.lower()
    assert path.stem == path.stem.lower()
    assert spec.source
    assert all(s.strip() for s in spec.source)


def test_table_covers_every_preset():
    assert set(EXPECTED_BYTES_PER_TOKEN) | set(batch_tables("BYTES_PER_TOKEN")) == set(PRESET_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED_BYTES_PER_TOKEN))
def test_bytes_per_token(name: str):
    result = kvcalc.estimate(spec_of(name), context=1)
    assert result.bytes_per_token == EXPECTED_BYTES_PER_TOKEN[name]


# Whole caches at a context long enough to fill every window or chunk (batch 1).
EXPECTED_TOTALS = [
    # 52 local layers x 1024 tokens + 10 global layers x 131072 tokens
    ("gemma-3-27b", 131072, (52 * 1024 + 10 * 131072) * 2 * 16 * 128 * 2),
    # every layer capped at the 4096 window
    ("mistral-7b-v0.1", 32768, 32 * 4096 * 2 * 8 * 128 * 2),
    # 36 chunked layers x 8192 tokens + 12 global layers x 131072 tokens
    ("llama-4-scout", 131072, (36 * 8192 + 12 * 131072) * 2 * 8 * 128 * 2),
    # 4 attention layers x 256K tokens: AI21's "4GB" at 256K
    ("jamba-v0.1", 262144, 4 * 262144 * 2 * 8 * 128 * 2),
    ("jamba-v0.1", 262144, 4 * 2**30),
    # 12 full-attention layers only
    ("qwen3-next-80b-a3b", 262144, 12 * 262144 * 2 * 2 * 256 * 2),
    # 21 local (4096) + 21 global layers at 8192
    ("gemma-2-9b", 8192, (21 * 4096 + 21 * 8192) * 2 * 8 * 256 * 2),
    # 23 local (4096) + 23 global layers at 8192, fp32
    ("gemma-2-27b", 8192, (23 * 4096 + 23 * 8192) * 2 * 16 * 128 * 2),  # fp32 checkpoint served in bf16
    # every layer capped at 2047
    ("phi-3-mini-4k", 4096, 32 * 2047 * 2 * 32 * 96 * 2),
    ("phi-3-medium-4k", 4096, 40 * 2047 * 2 * 10 * 128 * 2),
    # trap: sliding_window 131072 present but use_sliding_window false, no window at all
    ("qwen2-7b", 131072, 28 * 131072 * 2 * 4 * 128 * 2),
    ("qwen2-72b", 131072, 80 * 131072 * 2 * 8 * 128 * 2),
    # trap: 8 KV heads, not the mp16 checkpoint's 16
    ("llama-3.1-405b", 131072, 126 * 131072 * 2 * 8 * 128 * 2),
    # trap: one KV head, not 71
    ("falcon-7b", 2048, 32 * 2048 * 2 * 1 * 64 * 2),
    # MLA latent, not 128 KV heads
    ("deepseek-v2", 131072, 60 * 131072 * (512 + 64) * 2),
    # encoders keep nothing
    ("bert-base", 512, 0),
    ("bert-large", 512, 0),
]


@pytest.mark.parametrize(
    "name, context, expected",
    EXPECTED_TOTALS,
    ids=[f"{name}@{context}" for name, context, _ in EXPECTED_TOTALS],
)
def test_total_bytes(name: str, context: int, expected: int):
    result = kvcalc.estimate(spec_of(name), context=context)
    assert result.total_bytes == expected


def test_float32_presets_keep_their_figure_with_kv_dtype_fp32():
    # the checkpoint's own dtype on request: GPT-2 2 x 12 layers x 12 heads x 64 x 4 bytes
    gpt2 = kvcalc.estimate(spec_of("gpt2"), context=1, kv_dtype="fp32")
    assert gpt2.bytes_per_token == 2 * 12 * 12 * 64 * 4 and gpt2.conventions == ()
    served = kvcalc.estimate(spec_of("gpt2"), context=1)
    assert served.kv_dtype == "bf16" and served.bytes_per_token == 2 * 12 * 12 * 64 * 2
    assert "float32" in served.conventions[0] and "--kv-dtype fp32" in served.conventions[0]


def test_falcon_7b_is_one_kv_head():
    assert kvcalc.estimate(spec_of("falcon-7b"), context=1).bytes_per_token == 2 * 32 * 1 * 64 * 2


def test_qwen2_7b_holds_whole_context():
    result = kvcalc.estimate(spec_of("qwen2-7b"), context=131072)
    assert all(group.tokens == 131072 for group in result.groups)


def test_jamba_state_bytes():
    # 28 Mamba layers x (8192*16 SSM + 8192*4 conv) elements, bf16, batch 1
    result = kvcalc.estimate(spec_of("jamba-v0.1"), context=8192)
    assert result.state_bytes == 28 * (8192 * 16 + 8192 * 4) * 2
    assert result.state_bytes == 28 * 163840 * 2


def test_qwen3_next_state_bytes():
    # 36 linear layers x (32*128*128 recurrent + (2*16*128 + 32*128) * 4 conv) elements, bf16
    result = kvcalc.estimate(spec_of("qwen3-next-80b-a3b"), context=8192)
    assert result.state_bytes == 36 * (32 * 128 * 128 + (2 * 16 * 128 + 32 * 128) * 4) * 2


def test_state_is_per_sequence():
    result = kvcalc.estimate(spec_of("jamba-v0.1"), context=8192, batch=3)
    assert result.state_bytes == 3 * 28 * 163840 * 2


def test_deepseek_v2_expanded_layout():
    # HF eager caches decompressed K (128 x (128 + 64)) and V (128 x 128) per layer
    result = kvcalc.estimate(spec_of("deepseek-v2"), context=1, mla_layout="expanded")
    assert result.bytes_per_token == 60 * 128 * (128 + 64 + 128) * 2


# Where the layers that are not the model's main kind sit, written by hand from the facts
# file's layer_pattern lines (totals alone would not notice a pattern in the wrong order).
EXPECTED_LAYER_POSITIONS = {
    # gemma-2: "layer i is sliding-window (4096) if i is even, global if odd"
    "gemma-2-9b": ("global", list(range(1, 42, 2))),
    "gemma-2-27b": ("global", list(range(1, 46, 2))),
    # gemma-3: "layer i global iff (i+1) % 6 == 0 => 5,11,...,59"
    "gemma-3-27b": ("global", [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]),
    # llama-4: "layers 3,7,11,...,47 (12 layers, every 4th) are NoPE full/global attention"
    "llama-4-scout": ("global", list(range(3, 48, 4))),
    # jamba: "attention at layers 4,12,20,28 (i % 8 == 4)"
    "jamba-v0.1": ("attention", [4, 12, 20, 28]),
    # qwen3-next: "full_attention_layer_indices: 3,7,11,...,47"
    "qwen3-next-80b-a3b": ("full", list(range(3, 48, 4))),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYER_POSITIONS))
def test_layer_pattern_positions(name):
    kind, positions = EXPECTED_LAYER_POSITIONS[name]
    order = load_file(PRESET_DIR / f"{name}.yaml").layers.order()
    assert [i for i, k in enumerate(order) if k == kind] == positions


# max_position_embeddings (or the stated context) from the facts file, by hand.
EXPECTED_MAX_CONTEXT = {
    "llama-2-7b": 4096, "llama-2-70b": 4096, "llama-3-8b": 8192, "llama-3-70b": 8192,
    "llama-3.1-405b": 131072, "llama-4-scout": 262144, "mistral-7b-v0.1": 32768,
    "mixtral-8x7b": 32768, "qwen2-7b": 131072, "qwen2-72b": 131072, "qwen2.5-7b": 131072,
    "qwen3-8b": 40960, "qwen3-next-80b-a3b": 262144, "phi-3-mini-4k": 4096,
    "phi-3-medium-4k": 4096, "gemma-2b": 8192, "gemma-7b": 8192, "gemma-2-9b": 8192,
    "gemma-2-27b": 8192, "gemma-3-27b": 131072, "gpt2": 1024, "gpt2-medium": 1024,
    "gpt2-large": 1024, "gpt2-xl": 1024, "bert-base": 512, "bert-large": 512,
    "falcon-7b": 2048, "falcon-40b": 2048, "palm-8b": 2048, "palm-62b": 2048, "palm-540b": 2048,
    "deepseek-v2": 163840, "deepseek-v2-lite": 163840, "deepseek-v3": 163840,
    "kimi-k2": 131072, "jamba-v0.1": 262144,
    # added presets: max_position_embeddings of each config.json
    "llama-3.1-8b": 131072, "llama-3.1-70b": 131072, "llama-3.2-1b": 131072,
    "llama-3.2-3b": 131072, "mistral-nemo-12b": 128000, "qwen2.5-14b": 131072,
    "qwen3-32b": 40960, "qwen3-30b-a3b": 40960, "qwen3-235b-a22b": 40960,
}


def test_max_context_table_covers_every_preset():
    covered = set(EXPECTED_MAX_CONTEXT) | set(batch_tables("MAX_CONTEXT"))
    assert covered == {p.stem for p in PRESET_DIR.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(EXPECTED_MAX_CONTEXT))
def test_max_context(name):
    assert load_file(PRESET_DIR / f"{name}.yaml").max_context == EXPECTED_MAX_CONTEXT[name]
