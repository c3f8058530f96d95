"""Presets batch 4 (gpt-oss, GLM, DeepSeek-R1, Nemotron, OLMo, SmolLM, Cohere): KV bytes per
token, whole caches at long contexts, and exact parameter totals.

Every expected value is arithmetic from the model's config.json (layers, KV heads, head_dim,
windows, hidden size, FFN or expert widths, vocabulary, tied head) or its model code, never
computed by kvcalc. Each preset's ``source`` names the copy of the config that was read and
where the published total comes from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fitting import fit_with as fit

import kvcalc
from kvcalc.capacity.params import parameter_count
from kvcalc.capacity.weights import weights_bytes
from kvcalc.sources.presets import load_file

PRESET_DIR = Path(__file__).parent.parent / "model_presets"


def spec_of(name: str):
    return load_file(PRESET_DIR / f"{name}.yaml")


# One more token at batch 1 and context 1, every KV layer: 2 (K and V) x layers x kv_heads x
# head_dim x 2 bytes (bf16). Sliding layers still cost their bytes per token.
BYTES_PER_TOKEN = {
    "gpt-oss-20b": 2 * 24 * 8 * 64 * 2,  # head_dim 64 (explicit), not 2880/64 = 45
    "gpt-oss-120b": 2 * 36 * 8 * 64 * 2,
    "glm-4.5-air": 2 * 46 * 8 * 128 * 2,  # head_dim 128, not 4096/96; the MTP layer left out
    "glm-4.5": 2 * 92 * 8 * 128 * 2,  # head_dim 128, not 5120/96
    # MLA: layers x (kv_lora_rank + qk_rope_head_dim) x 2 bytes, one latent per layer
    "deepseek-r1": 61 * (512 + 64) * 2,
    "deepseek-r1-distill-llama-70b": 2 * 80 * 8 * 128 * 2,  # head_dim 8192/64
    "deepseek-r1-distill-qwen-32b": 2 * 64 * 8 * 128 * 2,  # head_dim 5120/40; no window in use
    "smollm3-3b": 2 * 36 * 4 * 128 * 2,  # head_dim 2048/16; NoPE layers cache like the others
    "olmo-2-1124-13b": 2 * 40 * 40 * 128 * 2,  # MHA: 40 KV heads
}

# max_position_embeddings of each config.json.
MAX_CONTEXT = {
    "gpt-oss-20b": 131072,
    "gpt-oss-120b": 131072,
    "glm-4.5-air": 131072,
    "glm-4.5": 131072,
    "deepseek-r1": 163840,
    "deepseek-r1-distill-llama-70b": 131072,
    "deepseek-r1-distill-qwen-32b": 131072,
    "smollm3-3b": 65536,
    "olmo-2-1124-13b": 4096,
}

# Whole caches at batch 1: the sum over layers of min(context, window) x one layer's bytes per token.
WINDOWED_TOTALS = [
    # gpt-oss: even layers slide over 128 tokens, odd layers hold everything
    ("gpt-oss-20b", 131072, (12 * 128 + 12 * 131072) * 2 * 8 * 64 * 2),
    ("gpt-oss-20b", 100, 24 * 100 * 2 * 8 * 64 * 2),  # below the window every layer holds all
    ("gpt-oss-120b", 131072, (18 * 128 + 18 * 131072) * 2 * 8 * 64 * 2),
    ("gpt-oss-120b", 4096, (18 * 128 + 18 * 4096) * 2 * 8 * 64 * 2),
    # trap: sliding_window 131072 present but use_sliding_window false, so no layer is capped
    ("deepseek-r1-distill-qwen-32b", 131072, 64 * 131072 * 2 * 8 * 128 * 2),
]

# Which layers are the model's second kind, by hand from each config's layer_types.
LAYER_POSITIONS = {
    "gpt-oss-20b": ("full", list(range(1, 24, 2))),
    "gpt-oss-120b": ("full", list(range(1, 36, 2))),
}

# gpt-oss, per layer: q/k/v/o with biases 2*2880*64*64 + 2*2880*8*64 + (64*64 + 2*8*64 + 2880),
# sinks 64, two RMSNorms 2*2880, experts E x (gate_up 2880*2*2880 + 2*2880 bias, down 2880*2880
# + 2880 bias), router 2880*E + E. Untied embedding and head 2*201088*2880, final norm 2880.
EXPECTED_TOTAL = {
    "gpt-oss-20b": (
        2 * 201088 * 2880
        + 24 * (
            2 * 2880 * 64 * 64 + 2 * 2880 * 8 * 64 + (64 * 64 + 2 * 8 * 64 + 2880) + 64
            + 2 * 2880
            + 32 * (2880 * 2 * 2880 + 2 * 2880 + 2880 * 2880 + 2880)
            + 2880 * 32 + 32
        )
        + 2880
    ),
    "gpt-oss-120b": (
        2 * 201088 * 2880
        + 36 * (
            2 * 2880 * 64 * 64 + 2 * 2880 * 8 * 64 + (64 * 64 + 2 * 8 * 64 + 2880) + 64
            + 2 * 2880
            + 128 * (2880 * 2 * 2880 + 2 * 2880 + 2880 * 2880 + 2880)
            + 2880 * 128 + 128
        )
        + 2880
    ),
}

# GLM-4.5 (glm4_moe), per layer: q/k/v/o 2*h*96*128 + 2*h*8*128, q/k/v biases 96*128 + 2*8*128,
# two RMSNorms 2*h; the first k layers a gated MLP 3*h*I, the others 1 shared + E routed experts
# of 3*h*1408 (Air) or 3*h*1536, router h*E and its e_score_correction_bias E.
EXPECTED_TOTAL.update({
    "glm-4.5-air": (
        2 * 151552 * 4096
        + 46 * (2 * 4096 * 96 * 128 + 2 * 4096 * 8 * 128 + (96 * 128 + 2 * 8 * 128) + 2 * 4096)
        + 1 * 3 * 4096 * 10944
        + 45 * ((128 + 1) * 3 * 4096 * 1408 + 4096 * 128 + 128)
        + 4096
    ),
    # use_qk_norm true: q_norm and k_norm of head_dim (2*128 per layer)
    "glm-4.5": (
        2 * 151552 * 5120
        + 92 * (2 * 5120 * 96 * 128 + 2 * 5120 * 8 * 128 + (96 * 128 + 2 * 8 * 128) + 2 * 128 + 2 * 5120)
        + 3 * 3 * 5120 * 12288
        + 89 * ((160 + 1) * 3 * 5120 * 1536 + 5120 * 160 + 160)
        + 5120
    ),
})

# DeepSeek-R1 is DeepSeek-V3's architecture (the same arithmetic as tests/test_params.py): MLA
# q_a 7168*1536 + q_a_norm 1536 + q_b 1536*128*192, kv_a 7168*(512+64) + kv_a_norm 512,
# kv_b 512*128*(128+128), o 128*128*7168; layers 0-2 dense, 58 MoE layers of 256 + 1 experts.
EXPECTED_TOTAL.update({
    "deepseek-r1": (
        2 * 129280 * 7168
        + 61 * (
            7168 * 1536 + 1536 + 1536 * 128 * 192
            + 7168 * (512 + 64) + 512 + 512 * 128 * (128 + 128)
            + 128 * 128 * 7168
            + 2 * 7168
        )
        + 3 * 3 * 7168 * 18432
        + 58 * ((256 + 1) * 3 * 7168 * 2048 + 7168 * 256 + 256)
        + 7168
    ),
    # Llama-3.3-70B shapes
    "deepseek-r1-distill-llama-70b": (
        2 * 128256 * 8192
        + 80 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192)
        + 8192
    ),
    # Qwen2.5-32B shapes, q/k/v biases 40*128 + 2*8*128
    "deepseek-r1-distill-qwen-32b": (
        2 * 152064 * 5120
        + 64 * (
            2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + (40 * 128 + 2 * 8 * 128)
            + 3 * 5120 * 27648 + 2 * 5120
        )
        + 5120
    ),
    # tie_word_embeddings true: the embedding once
    "smollm3-3b": (
        128256 * 2048
        + 36 * (2 * 2048 * 16 * 128 + 2 * 2048 * 4 * 128 + 3 * 2048 * 11008 + 2 * 2048)
        + 2048
    ),
    # OLMo-2: two post-norms per layer, q_norm and k_norm over the whole 5120-wide projections
    "olmo-2-1124-13b": (
        2 * 100352 * 5120
        + 40 * (4 * 5120 * 5120 + (5120 + 5120) + 3 * 5120 * 13824 + 2 * 5120)
        + 5120
    ),
})

# Published exact totals (see each preset's source).
PUBLISHED_TOTAL = {
    "gpt-oss-20b": 20_914_757_184,  # GGUF general.parameter_count (ollama show gpt-oss:20b); card 20.91B
    "gpt-oss-120b": 116_829_156_672,  # Hub count of openai/gpt-oss-120b; card 116.83B
    "glm-4.5-air": 106_852_251_264,  # Hub count of PrimeIntellect/INTELLECT-3 (GLM-4.5-Air shapes, no MTP)
    "glm-4.5": 352_797_829_024,  # Fireworks paramCount for GLM-4.5 (no MTP)
    "deepseek-r1": 671_026_419_200,  # main model without MTP (MAI-DS-R1 BF16 count; calculator's R1-0528 preset)
    "deepseek-r1-distill-llama-70b": 70_553_706_496,  # the base Llama-3.3-70B-Instruct's Hub count
    "deepseek-r1-distill-qwen-32b": 32_763_876_352,  # Hub safetensors BF16 count of the distill
    "smollm3-3b": 3_075_098_624,  # Hub count of HuggingFaceTB/SmolLM3-3B
    "olmo-2-1124-13b": 13_716_198_400,  # Hub count of allenai/OLMo-2-1124-13B
}

# (experts - experts_per_token) x one expert's matrices x MoE layers, left out of the active count.
EXPECTED_INACTIVE = {
    "gpt-oss-20b": 24 * (32 - 4) * 3 * 2880 * 2880,
    "gpt-oss-120b": 36 * (128 - 4) * 3 * 2880 * 2880,
    "glm-4.5-air": 45 * (128 - 8) * 3 * 4096 * 1408,
    "glm-4.5": 89 * (160 - 8) * 3 * 5120 * 1536,
    "deepseek-r1": 58 * (256 - 8) * 3 * 7168 * 2048,
}

NAMES = sorted(BYTES_PER_TOKEN)


def test_tables_cover_the_same_presets():
    assert set(MAX_CONTEXT) == set(EXPECTED_TOTAL) == set(PUBLISHED_TOTAL) == set(NAMES)
    assert all((PRESET_DIR / f"{name}.yaml").is_file() for name in NAMES)
    moe = sorted(name for name in NAMES if spec_of(name).weights.moe is not None)
    assert moe == sorted(EXPECTED_INACTIVE)


@pytest.mark.parametrize("name", NAMES)
def test_bytes_per_token(name):
    assert kvcalc.estimate(spec_of(name), context=1).bytes_per_token == BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", NAMES)
def test_max_context(name):
    assert spec_of(name).max_context == MAX_CONTEXT[name]


@pytest.mark.parametrize(
    "name, context, expected", WINDOWED_TOTALS, ids=[f"{n}@{c}" for n, c, _ in WINDOWED_TOTALS]
)
def test_windowed_total(name, context, expected):
    assert kvcalc.estimate(spec_of(name), context=context).total_bytes == expected


@pytest.mark.parametrize("name", sorted(set(NAMES) - {n for n, _, _ in WINDOWED_TOTALS}))
def test_every_layer_holds_the_whole_context(name):
    context = MAX_CONTEXT[name]
    assert kvcalc.estimate(spec_of(name), context=context).total_bytes == context * BYTES_PER_TOKEN[name]


@pytest.mark.parametrize("name", sorted(LAYER_POSITIONS))
def test_layer_positions(name):
    kind, positions = LAYER_POSITIONS[name]
    assert [i for i, k in enumerate(spec_of(name).layers.order()) if k == kind] == positions


@pytest.mark.parametrize("name", NAMES)
def test_total_matches_the_hand_derivation(name):
    assert parameter_count(spec_of(name)).total == EXPECTED_TOTAL[name]


@pytest.mark.parametrize("name", NAMES)
def test_total_matches_the_published_count(name):
    assert parameter_count(spec_of(name)).total == PUBLISHED_TOTAL[name]


@pytest.mark.parametrize("name", NAMES)
def test_active_leaves_out_unchosen_experts(name):
    assert parameter_count(spec_of(name)).active == EXPECTED_TOTAL[name] - EXPECTED_INACTIVE.get(name, 0)


def test_gpt_oss_active_is_the_model_cards_without_the_embedding():
    # Model card Table 1: 3.61B and 5.13B active, which leave out the input embedding
    # (201088*2880) and the unchosen experts' biases (kvcalc keeps those, 8640 per expert).
    # 3,608,307,264 and 5,132,849,472 round to the card's figures.
    cases = (("gpt-oss-20b", 24, 28, 3_608_307_264), ("gpt-oss-120b", 36, 124, 5_132_849_472))
    for name, layers, unchosen, card in cases:
        active = parameter_count(spec_of(name)).active
        assert active - 201088 * 2880 - layers * unchosen * (2 * 2880 + 2880) == card


@pytest.mark.parametrize("name, layers, experts_per_layer, total, released", [
    ("gpt-oss-20b", 24, 32, 20_914_757_184, 13_761_264_768),
    ("gpt-oss-120b", 36, 128, 116_829_156_672, 65_248_815_744),
])
def test_gpt_oss_weights_are_mxfp4_experts_and_bf16_rest(name, layers, experts_per_layer, total, released):
    # MXFP4 experts (gate_up 2880 x 2*2880 and down 2880 x 2880 each): 4 bits per value + one
    # 8-bit scale per 32 values; everything else (attention, router, biases, sinks, embedding,
    # head) BF16, as quantization_config.modules_to_not_convert says.
    experts = layers * experts_per_layer * 3 * 2880 * 2880
    mxfp4 = experts // 2 + experts // 32 + 2 * (total - experts)
    assert mxfp4 == released  # the checkpoint's tensor bytes
    spec = spec_of(name)
    assert spec.weights.dtype == "mxfp4"
    assert weights_bytes(parameter_count(spec), "mxfp4") == released


def test_gpt_oss_fit_counts_the_released_bytes():
    result = fit(spec_of("gpt-oss-120b"), 80 * 2**30, context=8192, reserve=0)
    assert result.weights_bytes == 65_248_815_744 and result.weights_dtype == "mxfp4"


def test_glm_hub_checkpoints_add_the_mtp_layer():
    # The Hub counts of zai-org/GLM-4.5-Air (110,468,824,832) and zai-org/GLM-4.5 (358,337,791,296)
    # include the MTP layer: eh_proj 2h x h, enorm and hnorm, one MoE decoder layer, its final norm,
    # and its own embedding and head copies.
    air = (
        2 * 4096 * 4096 + 2 * 4096
        + 2 * 4096 * 96 * 128 + 2 * 4096 * 8 * 128 + (96 * 128 + 2 * 8 * 128) + 2 * 4096
        + (128 + 1) * 3 * 4096 * 1408 + 4096 * 128 + 128
        + 4096 + 2 * 151552 * 4096
    )
    assert parameter_count(spec_of("glm-4.5-air")).total + air == 110_468_824_832
    full = (
        2 * 5120 * 5120 + 2 * 5120
        + 2 * 5120 * 96 * 128 + 2 * 5120 * 8 * 128 + (96 * 128 + 2 * 8 * 128) + 2 * 128 + 2 * 5120
        + (160 + 1) * 3 * 5120 * 1536 + 5120 * 160 + 160
        + 5120 + 2 * 151552 * 5120
    )
    assert parameter_count(spec_of("glm-4.5")).total + full == 358_337_791_296


def test_deepseek_r1_is_deepseek_v3():
    r1, v3 = spec_of("deepseek-r1"), spec_of("deepseek-v3")
    assert r1.attention == v3.attention and r1.layers == v3.layers and r1.weights == v3.weights
    assert r1.max_context == v3.max_context == 163840
    assert spec_of("deepseek-r1").weights.dtype == "fp8"  # block-FP8 e4m3 release


def test_smollm3_counts_the_tied_embedding_once():
    count = parameter_count(spec_of("smollm3-3b"))
    assert count.head == 0 and count.embedding == 128256 * 2048


def test_gpt_oss_decode_reads_the_touched_experts_in_mxfp4():
    from kvcalc.capacity.speed import weights_read

    spec = spec_of("gpt-oss-20b")
    count = parameter_count(spec)
    bf16, experts = weights_read(spec, count, "bf16", batch=1)
    mxfp4, _ = weights_read(spec, count, "mxfp4", batch=1)
    assert experts == 4  # one token touches its 4 experts in each layer
    read = 24 * 4 * 3 * 2880 * 2880  # the routed weights one token reads
    assert bf16 - mxfp4 == 2 * read - (read // 2 + read // 32)


def test_cli_weights_dtype_mxfp4(runner, kvcalc_app):
    import json

    result = runner.invoke(kvcalc_app, ["fit", "gpt-oss-20b", "--gpu", "h100", "--weights-dtype", "mxfp4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weights_bytes"] == 13_761_264_768
    # a dense model has no routed experts: all 16-bit, and said so
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "--weights-dtype", "mxfp4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["weights_bytes"] == 2 * 8_030_261_248
    assert any("mxfp4 shrinks routed experts only" in w for w in data["warnings"])
