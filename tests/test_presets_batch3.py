"""Presets added in batch 3 (recent Llama, Qwen, Gemma, Phi and Mistral models): KV bytes per
token, whole caches, and exact parameter totals.

Every expected value is arithmetic from the model's config.json (layers, KV heads, head_dim,
windows and layer pattern, hidden size, MLP width, vocabulary, tied head) or the model code
(norms, biases, the Gemma 3 vision tower), never computed by kvcalc. Each preset's ``source``
names the copy of the config the values were read in. Published totals are the Hub's
safetensors parameter counts or a tool's exact count of the same checkpoint (see each preset's
source); Mistral-Large-Instruct-2411 has none that could be checked.
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


# 2 (K and V) x layers x kv_heads x head_dim x 2 bytes (bf16), every layer counted once: a
# sliding layer costs the same per token as a full one until its window fills.
BYTES_PER_TOKEN = {
    "llama-3.3-70b": 2 * 80 * 8 * 128 * 2,
    "qwen2.5-72b": 2 * 80 * 8 * 128 * 2,  # head_dim 8192/64
    "qwen2.5-32b": 2 * 64 * 8 * 128 * 2,  # head_dim 5120/40
    "qwen3-14b": 2 * 40 * 8 * 128 * 2,
    "qwen3-4b": 2 * 36 * 8 * 128 * 2,  # head_dim 128, not 2560/32 = 80
    "qwen3-0.6b": 2 * 28 * 8 * 128 * 2,  # head_dim 128, not 1024/16 = 64
    "gemma-2-2b": 2 * 26 * 4 * 256 * 2,  # head_dim 256, not 2304/8 = 288
    "gemma-3-1b": 2 * 26 * 1 * 256 * 2,  # one KV head
    "gemma-3-4b": 2 * 34 * 4 * 256 * 2,
    "gemma-3-12b": 2 * 48 * 8 * 256 * 2,
    "phi-4": 2 * 40 * 10 * 128 * 2,  # head_dim 5120/40
    "phi-4-mini-instruct": 2 * 32 * 8 * 128 * 2,  # head_dim 3072/24; partial rotary changes nothing
    "mistral-small-24b-instruct-2501": 2 * 40 * 8 * 128 * 2,  # head_dim 128, not 5120/32 = 160
    "ministral-8b-instruct-2410": 2 * 36 * 8 * 128 * 2,
    "mistral-large-instruct-2411": 2 * 88 * 8 * 128 * 2,
}

# max_position_embeddings of each config (the -Instruct config where the preset is one).
MAX_CONTEXT = {
    "llama-3.3-70b": 131072,
    "qwen2.5-72b": 32768,  # the base model's config says 131072
    "qwen2.5-32b": 32768,
    "qwen3-14b": 40960,
    "qwen3-4b": 40960,
    "qwen3-0.6b": 40960,
    "gemma-2-2b": 8192,
    "gemma-3-1b": 32768,
    "gemma-3-4b": 131072,
    "gemma-3-12b": 131072,
    "phi-4": 16384,
    "phi-4-mini-instruct": 131072,
    "mistral-small-24b-instruct-2501": 32768,
    "ministral-8b-instruct-2410": 32768,
    "mistral-large-instruct-2411": 131072,
}

# Whole caches at max_position_embeddings, batch 1, by hand: each layer holds
# min(context, window) tokens. (layers x tokens) x per-layer bytes per token.
WINDOWED_AT_MAX = {
    # 13 local layers x 4096 + 13 global x 8192
    "gemma-2-2b": (13 * 4096 + 13 * 8192) * 2 * 4 * 256 * 2,
    # 22 local x 512 + 4 global (5, 11, 17, 23) x 32768
    "gemma-3-1b": (22 * 512 + 4 * 32768) * 2 * 1 * 256 * 2,
    # 29 local x 1024 + 5 global (5, 11, 17, 23, 29) x 131072
    "gemma-3-4b": (29 * 1024 + 5 * 131072) * 2 * 4 * 256 * 2,
    # 40 local x 1024 + 8 global x 131072
    "gemma-3-12b": (40 * 1024 + 8 * 131072) * 2 * 8 * 256 * 2,
    # window 32768 on all 36 layers equals the context
    "ministral-8b-instruct-2410": 36 * 32768 * 2 * 8 * 128 * 2,
}

# Per layer, dense attention is q + k + v + o = h*H*d + 2*h*KV*d + H*d*h; a gated MLP 3*h*I;
# two RMSNorms 2*h (Gemma: four). Untied models count embedding and head (2*V*h), tied ones
# V*h once. Qwen2 adds q/k/v biases (H*d + 2*KV*d); Qwen3 and Gemma 3 add q/k norms (2*d).
EXPECTED_TOTAL = {
    "llama-3.3-70b": (
        2 * 128256 * 8192
        + 80 * (2 * 8192 * 64 * 128 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192)
        + 8192
    ),
    "qwen2.5-72b": (
        2 * 152064 * 8192
        + 80 * (
            2 * 8192 * 64 * 128 + 2 * 8192 * 8 * 128 + (64 * 128 + 2 * 8 * 128)
            + 3 * 8192 * 29568 + 2 * 8192
        )
        + 8192
    ),
    "qwen2.5-32b": (
        2 * 152064 * 5120
        + 64 * (
            2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + (40 * 128 + 2 * 8 * 128)
            + 3 * 5120 * 27648 + 2 * 5120
        )
        + 5120
    ),
    "qwen3-14b": (
        2 * 151936 * 5120
        + 40 * (2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + 2 * 128 + 3 * 5120 * 17408 + 2 * 5120)
        + 5120
    ),
    "qwen3-4b": (
        151936 * 2560
        + 36 * (2 * 2560 * 32 * 128 + 2 * 2560 * 8 * 128 + 2 * 128 + 3 * 2560 * 9728 + 2 * 2560)
        + 2560
    ),
    "qwen3-0.6b": (
        151936 * 1024
        + 28 * (2 * 1024 * 16 * 128 + 2 * 1024 * 8 * 128 + 2 * 128 + 3 * 1024 * 3072 + 2 * 1024)
        + 1024
    ),
    "gemma-2-2b": (
        256000 * 2304
        + 26 * (2 * 2304 * 8 * 256 + 2 * 2304 * 4 * 256 + 3 * 2304 * 9216 + 4 * 2304)
        + 2304
    ),
    "gemma-3-1b": (
        262144 * 1152
        + 26 * (2 * 1152 * 4 * 256 + 2 * 1152 * 1 * 256 + 2 * 256 + 3 * 1152 * 6912 + 4 * 1152)
        + 1152
    ),
    # + SigLIP tower 416,866,032 (as in gemma-3-27b.yaml) + projector 1152*h + 1152
    "gemma-3-4b": (
        262208 * 2560
        + 34 * (2 * 2560 * 8 * 256 + 2 * 2560 * 4 * 256 + 2 * 256 + 3 * 2560 * 10240 + 4 * 2560)
        + 2560
        + 416866032 + 1152 * 2560 + 1152
    ),
    "gemma-3-12b": (
        262208 * 3840
        + 48 * (2 * 3840 * 16 * 256 + 2 * 3840 * 8 * 256 + 2 * 256 + 3 * 3840 * 15360 + 4 * 3840)
        + 3840
        + 416866032 + 1152 * 3840 + 1152
    ),
    "phi-4": (
        2 * 100352 * 5120
        + 40 * (2 * 5120 * 40 * 128 + 2 * 5120 * 10 * 128 + 3 * 5120 * 17920 + 2 * 5120)
        + 5120
    ),
    "phi-4-mini-instruct": (
        200064 * 3072
        + 32 * (2 * 3072 * 24 * 128 + 2 * 3072 * 8 * 128 + 3 * 3072 * 8192 + 2 * 3072)
        + 3072
    ),
    "mistral-small-24b-instruct-2501": (
        2 * 131072 * 5120
        + 40 * (2 * 5120 * 32 * 128 + 2 * 5120 * 8 * 128 + 3 * 5120 * 32768 + 2 * 5120)
        + 5120
    ),
    "ministral-8b-instruct-2410": (
        2 * 131072 * 4096
        + 36 * (2 * 4096 * 32 * 128 + 2 * 4096 * 8 * 128 + 3 * 4096 * 12288 + 2 * 4096)
        + 4096
    ),
    "mistral-large-instruct-2411": (
        2 * 32768 * 12288
        + 88 * (2 * 12288 * 96 * 128 + 2 * 12288 * 8 * 128 + 3 * 12288 * 28672 + 2 * 12288)
        + 12288
    ),
}

# Exact published counts (each preset's source says where it was read).
PUBLISHED_TOTAL = {
    "llama-3.3-70b": 70_553_706_496,  # Hub count of meta-llama/Llama-3.3-70B-Instruct
    "qwen2.5-72b": 72_706_203_648,  # KerasHub qwen2.5_instruct_72b_en
    "qwen2.5-32b": 32_763_876_352,  # KerasHub qwen2.5_instruct_32b_en
    "qwen3-14b": 14_768_307_200,  # KerasHub qwen3_14b_en
    "qwen3-4b": 4_022_468_096,  # KerasHub qwen3_4b_en
    "qwen3-0.6b": 596_049_920,  # KerasHub qwen3_0.6b_en (the loaded, tied model)
    "gemma-2-2b": 2_614_341_888,  # Hub count of google/gemma-2-2b(-it)
    "gemma-3-1b": 999_885_952,  # KerasHub gemma3_instruct_1b; Hub count of gemma-3-1b-it
    "gemma-3-4b": 4_300_079_472,  # Hub count of google/gemma-3-4b-it (KerasHub medgemma_4b)
    "gemma-3-12b": 12_187_325_040,  # Hub count of google/gemma-3-12b-it
    "phi-4": 14_659_507_200,  # GGUF general.parameter_count of microsoft/phi-4
    "phi-4-mini-instruct": 3_836_021_760,  # Hub count of microsoft/Phi-4-mini-instruct
    "mistral-small-24b-instruct-2501": 23_572_403_200,  # Fireworks paramCount; GGUF count
    "ministral-8b-instruct-2410": 8_019_808_256,  # Hub count of Ministral-8B-Instruct-2410
}

NAMES = sorted(BYTES_PER_TOKEN)


def test_tables_cover_the_same_presets():
    assert set(MAX_CONTEXT) == set(EXPECTED_TOTAL) == set(NAMES)
    assert set(PUBLISHED_TOTAL) == set(NAMES) - {"mistral-large-instruct-2411"}
    assert set(WINDOWED_AT_MAX) < set(NAMES)
    assert all((PRESET_DIR / f"{name}.yaml").is_file() for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bytes_per_token(name):
    assert kvcalc.estimate(spec_of(name), context=1).bytes_per_token == BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", NAMES)
def test_max_context(name):
    assert spec_of(name).max_context == MAX_CONTEXT[name]


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(WINDOWED_AT_MAX)))
def test_every_layer_holds_the_whole_context(name):
    context = MAX_CONTEXT[name]
    total = kvcalc.estimate(spec_of(name), context=context).total_bytes
    assert total == context * BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", sorted(WINDOWED_AT_MAX))
def test_windowed_cache_at_max_context(name):
    total = kvcalc.estimate(spec_of(name), context=MAX_CONTEXT[name]).total_bytes
    assert total == WINDOWED_AT_MAX[name]


def test_windows_do_not_bite_below_them():
    # At 512 tokens no window is full yet: every layer holds all 512.
    for name in ("gemma-2-2b", "gemma-3-1b", "gemma-3-4b", "gemma-3-12b"):
        assert kvcalc.estimate(spec_of(name), context=512).total_bytes == 512 * BYTES_PER_TOKEN[name]


def test_gemma_3_local_windows_saturate():
    # One token past the window adds bytes only for the global layers.
    one = 2 * 256 * 2  # K and V of one head_dim-256 head, bf16
    for name, window, kv_heads, global_layers in (
        ("gemma-3-1b", 512, 1, 4),
        ("gemma-3-4b", 1024, 4, 5),
        ("gemma-3-12b", 1024, 8, 8),
    ):
        spec = spec_of(name)
        at_window = kvcalc.estimate(spec, context=window).total_bytes
        past = kvcalc.estimate(spec, context=window + 1).total_bytes
        assert past - at_window == global_layers * kv_heads * one


@pytest.mark.parametrize("name", NAMES)
def test_total_matches_the_hand_derivation(name):
    assert parameter_count(spec_of(name)).total == EXPECTED_TOTAL[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTAL))
def test_total_matches_the_published_count(name):
    assert parameter_count(spec_of(name)).total == PUBLISHED_TOTAL[name]


def test_mistral_large_rounds_to_the_listed_122_6b():
    # No exact published count was found; Ollama lists mistral-large at 122.6B.
    total = parameter_count(spec_of("mistral-large-instruct-2411")).total
    assert round(total / 10**8) == 1226


@pytest.mark.parametrize("name", NAMES)
def test_dense_models_have_every_parameter_active(name):
    count = parameter_count(spec_of(name))
    assert count.active == count.total


def test_tied_heads_count_the_embedding_once():
    for name, vocab_by_hidden in (
        ("qwen3-4b", 151936 * 2560),
        ("qwen3-0.6b", 151936 * 1024),
        ("gemma-2-2b", 256000 * 2304),
        ("gemma-3-1b", 262144 * 1152),
        ("phi-4-mini-instruct", 200064 * 3072),
    ):
        count = parameter_count(spec_of(name))
        assert count.head == 0
        assert count.embedding == vocab_by_hidden


def test_qwen3_0_6b_checkpoint_stores_the_tied_head_twice():
    # The Hub's safetensors count of Qwen/Qwen3-0.6B is 751,632,384: lm_head.weight is saved
    # beside embed_tokens, then tied at load (transformers' num_parameters() gives 596,049,920).
    assert parameter_count(spec_of("qwen3-0.6b")).total + 151936 * 1024 == 751_632_384


def test_gemma_3_vision_tower_is_outside_the_text_model():
    # KerasHub's text-only presets (262144-row embedding) give 3,880,099,328 and 11,765,788,416;
    # the multimodal ones 4,299,915,632 and 12,187,079,280. Their difference is the vision part.
    for name, hidden, text_only, multimodal in (
        ("gemma-3-4b", 2560, 3_880_099_328, 4_299_915_632),
        ("gemma-3-12b", 3840, 11_765_788_416, 12_187_079_280),
    ):
        spec = spec_of(name)
        assert spec.weights.extra_parameters == multimodal - text_only
        # and the HF checkpoint's 64 extra embedding rows make up the rest
        assert parameter_count(spec).total == multimodal + 64 * hidden


def test_derived_head_dim_would_be_wrong():
    for name, hidden, heads, head_dim in (
        ("qwen3-4b", 2560, 32, 128),
        ("qwen3-0.6b", 1024, 16, 128),
        ("gemma-2-2b", 2304, 8, 256),
        ("gemma-3-1b", 1152, 4, 256),
        ("gemma-3-4b", 2560, 8, 256),
        ("gemma-3-12b", 3840, 16, 256),
        ("mistral-small-24b-instruct-2501", 5120, 32, 128),
    ):
        assert spec_of(name).attention.head_dim == head_dim
        assert hidden // heads != head_dim
