"""The presets added for models deployed now: KV bytes per token and exact parameter totals.

Every expected value is arithmetic from the model's config.json (layers, KV heads, head_dim,
hidden size, FFN or expert widths, vocabulary, tied head), never computed by kvcalc. Where a
copy of the config was read, the preset's ``source`` names it. Published totals are the Hub's
safetensors parameter counts (bf16 checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import kvcalc
from kvcalc.capacity.params import parameter_count
from kvcalc.sources.presets import load_file

PRESET_DIR = Path(__file__).parent.parent / "model_presets"


def spec_of(name: str):
    return load_file(PRESET_DIR / f"{name}.yaml")


# 2 (K and V) x layers x kv_heads x head_dim x 2 bytes (bf16). No window anywhere:
# Qwen2.5 has use_sliding_window false, Mistral-Nemo and Qwen3 have sliding_window null.
BYTES_PER_TOKEN = {
    "llama-3.1-8b": 2 * 32 * 8 * 128 * 2,  # head_dim 4096/32
    "llama-3.1-70b": 2 * 80 * 8 * 128 * 2,  # head_dim 8192/64
    "llama-3.2-1b": 2 * 16 * 8 * 64 * 2,  # head_dim 64 (explicit)
    "llama-3.2-3b": 2 * 28 * 8 * 128 * 2,  # head_dim 128 (explicit)
    "qwen2.5-14b": 2 * 48 * 8 * 128 * 2,  # head_dim 5120/40
    "qwen3-32b": 2 * 64 * 8 * 128 * 2,  # head_dim 128, not 5120/64 = 80
    "qwen3-30b-a3b": 2 * 48 * 4 * 128 * 2,  # head_dim 128, not 2048/32 = 64
    "qwen3-235b-a22b": 2 * 94 * 4 * 128 * 2,  # head_dim 128, not 4096/64 = 64
    "mistral-nemo-12b": 2 * 40 * 8 * 128 * 2,  # head_dim 128, not 5120/32 = 160
}

# max_position_embeddings of each config.
MAX_CONTEXT = {
    "llama-3.1-8b": 131072,
    "llama-3.1-70b": 131072,
    "llama-3.2-1b": 131072,
    "llama-3.2-3b": 131072,
    "qwen2.5-14b": 131072,
    "qwen3-32b": 40960,
    "qwen3-30b-a3b": 40960,
    "qwen3-235b-a22b": 40960,
    "mistral-nemo-12b": 128000,  # not 131072
}

# Per layer, dense attention is q + k + v + o = h*H*d + 2*h*KV*d + H*d*h; a gated MLP 3*h*I;
# two RMSNorms 2*h. Untied models count embedding and head (2*V*h), tied ones V*h once.
EXPECTED_TOTAL = {
    "llama-3.1-8b": (
        2 * 128256 * 4096
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096)
        + 4096
    ),
    "llama-3.1-70b": (
        2 * 128256 * 8192
        + 80 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192)
        + 8192
    ),
    # tie_word_embeddings true: the embedding once
    "llama-3.2-1b": (
        128256 * 2048
        + 16 * (2 * 2048 * 32 * 64 + 2 * 2048 * 8 * 64 + 3 * 2048 * 8192 + 2 * 2048)
        + 2048
    ),
    "llama-3.2-3b": (
        128256 * 3072
        + 28 * (2 * 3072 * 24 * 128 + 2 * 3072 * 8 * 128 + 3 * 3072 * 8192 + 2 * 3072)
        + 3072
    ),
    # Qwen2: q/k/v biases (40*128 + 2*8*128 per layer)
    "qwen2.5-14b": (
        2 * 152064 * 5120
        + 48 * (
            2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + (40 * 128 + 2 * 8 * 128)
            + 3 * 5120 * 13824 + 2 * 5120
        )
        + 5120
    ),
    # Qwen3: q_norm and k_norm of head_dim 128 (2*128 per layer), no biases
    "qwen3-32b": (
        2 * 151936 * 5120
        + 64 * (2 * 5120 * 64 * 128 + 2 * 5120 * 8 * 128 + 2 * 128 + 3 * 5120 * 25600 + 2 * 5120)
        + 5120
    ),
    # Qwen3-MoE: 128 experts of 3*h*768 and a bias-free h x 128 router in all 48 layers
    "qwen3-30b-a3b": (
        2 * 151936 * 2048
        + 48 * (
            2 * 2048 * 32 * 128 + 2 * 2048 * 4 * 128 + 2 * 128
            + 128 * 3 * 2048 * 768 + 2048 * 128 + 2 * 2048
        )
        + 2048
    ),
    "qwen3-235b-a22b": (
        2 * 151936 * 4096
        + 94 * (
            2 * 4096 * 64 * 128 + 2 * 4096 * 4 * 128 + 2 * 128
            + 128 * 3 * 4096 * 1536 + 4096 * 128 + 2 * 4096
        )
        + 4096
    ),
    "mistral-nemo-12b": (
        2 * 131072 * 5120
        + 40 * (2 * 5120 * 32 * 128 + 2 * 5120 * 8 * 128 + 3 * 5120 * 14336 + 2 * 5120)
        + 5120
    ),
}

# Hub safetensors parameter counts, as recorded in public copies (see each preset's source).
PUBLISHED_TOTAL = {
    "llama-3.1-8b": 8_030_261_248,  # meta-llama/Llama-3.1-8B-Instruct (same as Meta-Llama-3-8B)
    "llama-3.1-70b": 70_553_706_496,  # Llama-3.x-70B (same shapes; Llama-3.3-70B-Instruct's count)
    "llama-3.2-1b": 1_235_814_400,  # meta-llama/Llama-3.2-1B(-Instruct)
    "llama-3.2-3b": 3_212_749_824,  # meta-llama/Llama-3.2-3B-Instruct, safetensors BF16
    "qwen2.5-14b": 14_770_033_664,  # GGUF general.parameter_count of Qwen2.5-14B(-Instruct)
    "qwen3-32b": 32_762_123_264,  # Qwen/Qwen3-32B; KerasHub qwen3_32b_en params
    "qwen3-30b-a3b": 30_532_122_624,  # Qwen/Qwen3-30B-A3B; GGUF general.parameter_count
    "qwen3-235b-a22b": 235_093_634_560,  # Qwen/Qwen3-235B-A22B
    "mistral-nemo-12b": 12_247_782_400,  # mistralai/Mistral-Nemo-Instruct-2407
}

# (experts - experts_per_token) x one expert x MoE layers, left out of the active count.
EXPECTED_INACTIVE = {
    "qwen3-30b-a3b": 48 * (128 - 8) * 3 * 2048 * 768,
    "qwen3-235b-a22b": 94 * (128 - 8) * 3 * 4096 * 1536,
}

NAMES = sorted(BYTES_PER_TOKEN)


def test_tables_cover_the_same_presets():
    assert set(MAX_CONTEXT) == set(EXPECTED_TOTAL) == set(PUBLISHED_TOTAL) == set(NAMES)
    assert all((PRESET_DIR / f"{name}.yaml").is_file() for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bytes_per_token(name):
    assert kvcalc.estimate(spec_of(name), context=1).bytes_per_token == BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", NAMES)
def test_every_layer_holds_the_whole_context(name):
    context = MAX_CONTEXT[name]
    spec = spec_of(name)
    assert spec.max_context == context
    assert kvcalc.estimate(spec, context=context).total_bytes == context * BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", NAMES)
def test_total_matches_the_hand_derivation(name):
    assert parameter_count(spec_of(name)).total == EXPECTED_TOTAL[name]


@pytest.mark.parametrize("name", NAMES)
def test_total_matches_the_published_count(name):
    assert parameter_count(spec_of(name)).total == PUBLISHED_TOTAL[name]


@pytest.mark.parametrize("name", NAMES)
def test_active_leaves_out_unchosen_experts(name):
    count = parameter_count(spec_of(name))
    assert count.active == EXPECTED_TOTAL[name] - EXPECTED_INACTIVE.get(name, 0)


def test_qwen3_30b_a3b_active_is_the_model_cards_3_3b():
    # Model card: 30.5B total, 3.3B activated; a public param-count test gives 3,353,032,704.
    assert parameter_count(spec_of("qwen3-30b-a3b")).active == 3_353_032_704


def test_tied_llama_3_2_counts_the_embedding_once():
    for name, vocab_by_hidden in (("llama-3.2-1b", 128256 * 2048), ("llama-3.2-3b", 128256 * 3072)):
        count = parameter_count(spec_of(name))
        assert count.head == 0
        assert count.embedding == vocab_by_hidden


def test_derived_head_dim_would_be_wrong():
    # hidden / heads differs from the explicit head_dim in these configs.
    for name, hidden, heads in (
        ("mistral-nemo-12b", 5120, 32),
        ("qwen3-32b", 5120, 64),
        ("qwen3-30b-a3b", 2048, 32),
        ("qwen3-235b-a22b", 4096, 64),
    ):
        spec = spec_of(name)
        assert spec.attention.head_dim == 128
        assert hidden // heads != 128
