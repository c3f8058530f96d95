"""DeepSeek-V3.2-Exp: the preset's KV bytes per token, context and exact parameter count, by hand.

SOURCE: https://huggingface.co/deepseek-ai/DeepSeek-V3.2-Exp/blob/main/config.json (model_type
deepseek_v32; tests/fixtures/configs/deepseek-v3.2-exp/config.json is that file's fields as
published for the V3.2 release, which keeps V3.2-Exp's architecture) and the shapes in
https://github.com/deepseek-ai/DeepSeek-V3.2-Exp/blob/main/inference/model.py (MLA and Indexer).
Published total: 685,396,921,376 parameters in the Hub's DeepSeek-V3.2 safetensors (163 files,
as listed by a public weight report of that checkpoint), the MTP layer and FP8 scales included.
"""

from __future__ import annotations

from pathlib import Path

import kvcalc
from kvcalc.capacity.params import parameter_count
from kvcalc.sources.config_json import load_config_path
from kvcalc.sources.presets import load_file

PRESET_DIR = Path(__file__).parent.parent / "model_presets"
FIXTURE = Path(__file__).parent / "fixtures" / "configs" / "deepseek-v3.2-exp"

H, V, LAYERS = 7168, 129280, 61

# latent (512 + 64) x 2 bytes (bf16) per layer, plus the indexer's 128 fp8 bytes and one 4-byte
# fp32 scale per layer
BYTES_PER_TOKEN = {"deepseek-v3.2-exp": LAYERS * (512 + 64) * 2 + LAYERS * (128 + 4)}

MAX_CONTEXT = {"deepseek-v3.2-exp": 163840}  # max_position_embeddings

ATTENTION = (
    H * 1536 + 1536  # wq_a and q_norm
    + 1536 * 128 * (128 + 64)  # wq_b: q_lora_rank -> heads x (nope + rope)
    + H * (512 + 64) + 512  # wkv_a and kv_norm
    + 512 * 128 * (128 + 128)  # wkv_b: kv_lora_rank -> heads x (nope + v)
    + 128 * 128 * H  # wo
)
INDEXER = 1536 * 64 * 128 + H * 128 + 2 * 128 + H * 64  # wq_b, wk, k_norm weight and bias, weights_proj
EXPERT = 3 * H * 2048
EXPECTED_TOTAL = {
    "deepseek-v3.2-exp": (
        2 * V * H  # embedding and untied head
        + LAYERS * (ATTENTION + INDEXER + 2 * H)  # attention, indexer, two RMSNorms
        + 3 * 3 * H * 18432  # layers 0-2: dense gated MLP
        + 58 * (256 * EXPERT + EXPERT + H * 256 + 256)  # 256 routed + 1 shared, router and its bias
        + H  # final norm
    ),
}
EXPECTED_INACTIVE = {"deepseek-v3.2-exp": 58 * (256 - 8) * EXPERT}


def spec_of(name: str):
    return load_file(PRESET_DIR / f"{name}.yaml")


def test_bytes_per_token():
    for name, expected in BYTES_PER_TOKEN.items():
        assert kvcalc.estimate(spec_of(name), context=1).bytes_per_token == expected


def test_indexer_line_at_128k():
    result = kvcalc.estimate(spec_of("deepseek-v3.2-exp"), context=131072)
    index = next(g for g in result.groups if g.kind == "indexer")
    assert index.bytes == LAYERS * (128 + 4) * 131072 == 1_055_391_744
    assert result.total_bytes == BYTES_PER_TOKEN["deepseek-v3.2-exp"] * 131072


def test_max_context():
    for name, expected in MAX_CONTEXT.items():
        assert spec_of(name).max_context == expected


def test_total_and_active():
    for name, expected in EXPECTED_TOTAL.items():
        count = parameter_count(spec_of(name))
        assert count.total == expected == 671_877_944_064
        assert count.active == expected - EXPECTED_INACTIVE[name]


def test_hub_total_is_the_count_plus_the_mtp_layer_and_fp8_scales():
    def scales(rows: int, cols: int) -> int:  # one float32 weight_scale_inv per 128 x 128 block
        return -(-rows // 128) * -(-cols // 128)

    attention_scales = (scales(1536, H) + scales(24576, 1536) + scales(576, H) + scales(32768, 512)
                        + scales(H, 16384) + scales(128, H) + scales(8192, 1536))  # q_a, q_b, kv_a, kv_b, o, wk, wq_b
    expert_scales = 2 * scales(2048, H) + scales(H, 2048)
    all_scales = (
        62 * attention_scales  # 61 layers and the MTP layer
        + 3 * (2 * scales(18432, H) + scales(H, 18432))  # dense MLPs
        + 59 * 257 * expert_scales  # MoE layers 3-60 and the MTP layer: routed and shared experts
    )
    mtp = (
        ATTENTION + INDEXER + 2 * H + 256 * EXPERT + EXPERT + H * 256 + 256  # one MoE decoder layer
        + 2 * V * H  # its own embed_tokens and shared_head.head
        + H * 2 * H + 3 * H  # eh_proj, enorm, hnorm, shared_head.norm
    )
    assert EXPECTED_TOTAL["deepseek-v3.2-exp"] + mtp + all_scales == 685_396_921_376


def test_the_fixture_gives_the_preset_numbers():
    spec = load_config_path(FIXTURE)
    assert kvcalc.estimate(spec, context=1).bytes_per_token == BYTES_PER_TOKEN["deepseek-v3.2-exp"]
    assert parameter_count(spec).total == EXPECTED_TOTAL["deepseek-v3.2-exp"]
    assert spec.max_context == MAX_CONTEXT["deepseek-v3.2-exp"]
