"""The last three parameter counts: A.X-K2 (kvcalc/sources/weights_moe.py), Emu3 with its VQ-VAE
(weights_llama_like.py) and Moshi's whole checkpoint (weights_encoders.py).

1. By hand: per builder, the expected total written out as arithmetic from the config's own fields.
2. Against transformers 5.24, where installed: the model built on the meta device (parameters plus persistent
   buffers), for each type's class defaults and variants that switch on the parts the defaults leave off. A.X-K2
   as AutoModelForCausalLM builds it; Emu3 as Emu3ForConditionalGeneration, Moshi as
   MoshiForConditionalGeneration (the whole checkpoints, as benchmarks/model_types.py meta_parameters builds
   them).
"""

from __future__ import annotations

import copy

import pytest
from test_hf_config_weights import transformers_count
from weights_checks import class_defaults, meta_count, skip_note, spec_of, total

from kvcalc.capacity.params import parameter_count


def built(data: dict, cls: str) -> int:
    """Parameters plus persistent buffers of transformers' ``cls`` built from ``data`` on the meta device."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(**data)
    return meta_count(lambda: getattr(transformers, cls)(cfg))


# ---------------------------------------------------------------- A.X-K2

AXK2_SMALL = {
    "model_type": "axk2", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 4, "max_position_embeddings": 512, "torch_dtype": "bfloat16",
    "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8, "n_shared_experts": 1,
    "num_experts_per_tok": 2, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
    "v_head_dim": 8, "index_n_heads": 2, "index_head_dim": 128, "index_topk": 16, "gated_norm_rank": 4,
    "mlp_layer_types": ["dense", "sparse", "dense", "sparse"],
}


def test_axk2_by_hand():
    h, heads, rank = 64, 4, 24
    attention = (h * rank + rank  # q_a_proj, q_a_layernorm
                 + 2 * rank * heads * ((8 + 4) + 8)  # q_gate_proj: [q_resid, q_compressed] -> query and gate
                 + h * (16 + 4) + 16 + 16 * heads * (8 + 8)  # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj
                 + heads * 8 * h)  # o_proj
    indexer = rank * 2 * 128 + h * 128 + 2 * 128 + h * 2  # wq_b, wk, k_norm (LayerNorm), weights_proj
    gated_norm = h + h * 4 + 4 * h  # AXK2GatedRMSNorm: the RMSNorm and its gate MLP fc1, fc2
    dense_layer = attention + indexer + gated_norm + h + 3 * h * 96  # post_attention_layernorm a plain RMSNorm
    # 8 routed experts of 32, a float32 router with its e_score_correction_bias, one shared MLP of 32
    moe = 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 32
    sparse_layer = attention + indexer + gated_norm + gated_norm + moe
    expected = 1000 * h + 2 * dense_layer + 2 * sparse_layer + h + 1000 * h  # embeddings, final norm, lm_head
    assert total(AXK2_SMALL) == expected
    count = parameter_count(spec_of(AXK2_SMALL))
    assert count.active == expected - 2 * (8 - 2) * 3 * h * 32 and count.moe_layers == 2
    pytest.importorskip("transformers")
    assert transformers_count(AXK2_SMALL) == expected


def test_axk2_legacy_layer_rule_by_hand():
    h = 64
    legacy = {k: v for k, v in AXK2_SMALL.items() if k != "mlp_layer_types"} | {"first_k_dense_replace": 1,
                                                                                "moe_layer_freq": 2}
    # configuration_axk2.py 140-146: sparse where i >= 1 and i % 2 == 0, so layer 2 alone of 0..3
    extra_gate, moe, dense = h * 4 + 4 * h, 8 * 3 * h * 32 + 8 * h + 8 + 3 * h * 32, 3 * h * 96
    assert total(legacy) == total(AXK2_SMALL) - (moe + extra_gate - dense)
    pytest.importorskip("transformers")
    assert transformers_count(legacy) == total(legacy)


def test_axk2_refusals_are_said():
    # q_a_proj, kv_a_proj_with_mqa and o_proj biases: decoder() refuses attention_bias with MLA
    assert "attention_bias" in skip_note(AXK2_SMALL | {"attention_bias": True})
    sliding = AXK2_SMALL | {"layer_types": ["indexed_attention"] * 3 + ["sliding_attention"], "sliding_window": 8}
    assert "indexed_attention on every layer" in skip_note(sliding)


@pytest.mark.parametrize("change", [{}, {"gated_norm_rank": 32, "n_shared_experts": 2},
                                    {"mlp_layer_types": ["dense"] * 3 + ["sparse"] * 45}])
def test_axk2_as_transformers_builds_it(change):
    data = class_defaults("axk2") | change
    assert total(data) == transformers_count(data)
    if change:
        assert total(data) != total(class_defaults("axk2"))


# ---------------------------------------------------------------- Emu3 with its VQ-VAE

EMU3_TEXT = {"model_type": "emu3_text_model", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 512, "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1,
             "eos_token_id": 2}
EMU3_VQ = {"codebook_size": 64, "embed_dim": 4, "latent_channels": 4, "double_latent": False, "in_channels": 3,
           "out_channels": 3, "temporal_downsample_factor": 2, "base_channels": 32, "channel_multiplier": [1, 2],
           "num_res_blocks": 1, "attn_resolutions": [1], "hidden_size": 64, "num_attention_heads": 1}


def emu3_small(**outer) -> dict:
    return {"model_type": "emu3", "text_config": dict(EMU3_TEXT), "vq_config": dict(EMU3_VQ),
            "vocabulary_map": {}, **outer}


def test_emu3_with_its_vq_vae_by_hand():
    h, d = 64, 16
    text = 1000 * h + 2 * (h * 4 * d + 2 * h * 2 * d + 4 * d * h + 3 * h * 96 + 2 * h) + h + 1000 * h

    def conv(i, o, k):  # Conv2d, a bias
        return i * o * k * k + o

    def spatial(c):  # SpatialNorm: GroupNorm (weight, bias), conv_y and conv_b 1x1 from embed_dim 4
        return 2 * c + 2 * (4 * c + c)

    attention = 4 * (64 * 64 + 64)  # q, k, v, out_proj of vq hidden_size 64
    batchnorm = 2 * 4 + 2 * 4 + 1  # weight, bias, running_mean, running_var, num_batches_tracked
    temporal_resnet = 2 * batchnorm + 2 * (4 * 4 * 27 + 4)  # two BatchNorm3d, two Conv3d 3x3x3 on 4 channels
    encoder = (conv(3, 32, 3)
               # level 0 (32 wide): a resnet block 32 -> 32 (two GroupNorms, two 3x3 convs), the downsample conv
               + 2 * 32 + 2 * 32 + 2 * conv(32, 32, 3) + conv(32, 32, 3)
               # level 1 (64 wide, an attention level): resnet 32 -> 64 with its 1x1 shortcut, attention, GroupNorm
               + 2 * 32 + 2 * 64 + conv(32, 64, 3) + conv(64, 64, 3) + conv(32, 64, 1) + attention + 2 * 64
               # middle: two resnet blocks 64 -> 64, attention, GroupNorm
               + 2 * (4 * 64 + 2 * conv(64, 64, 3)) + attention + 2 * 64
               # norm_out, conv_out to 4 latent channels, one temporal downsample Conv3d (4, 3, 3), one temporal resnet
               + 2 * 64 + conv(64, 4, 3) + (4 * 4 * 4 * 9 + 4) + temporal_resnet)
    decoder = (temporal_resnet + (4 * 4 * 27 + 4) + conv(4, 64, 3)  # temporal block, temporal upsample, conv_in
               + 2 * (2 * spatial(64) + 2 * conv(64, 64, 3)) + attention + spatial(64)  # middle
               # level 1: two resnet blocks 64 -> 64 with SpatialNorms, each followed by attention and a SpatialNorm
               + 2 * (2 * spatial(64) + 2 * conv(64, 64, 3) + attention + spatial(64)) + conv(64, 64, 3)
               # level 0: resnet 64 -> 32 with its shortcut, resnet 32 -> 32; no upsample
               + spatial(64) + spatial(32) + conv(64, 32, 3) + conv(32, 32, 3) + conv(64, 32, 1)
               + 2 * spatial(32) + 2 * conv(32, 32, 3)
               + spatial(32) + conv(32, 3, 3))  # norm_out, conv_out
    rest = 64 * 4 + 2 * (4 * 4 * 3 + 4)  # the codebook, quant_conv and post_quant_conv (Conv3d (3, 1, 1))
    expected = text + encoder + decoder + rest
    assert total(emu3_small()) == expected
    # the whole config's tie_word_embeddings decides the head, not text_config's
    assert total(emu3_small(tie_word_embeddings=True)) == expected - 1000 * h
    pytest.importorskip("transformers")
    assert built(emu3_small(), "Emu3ForConditionalGeneration") == expected


def test_emu3_refusals_are_said():
    assert "vq_config.channel_multiplier" in skip_note(emu3_small() | {"vq_config": EMU3_VQ | {
        "channel_multiplier": []}})
    assert "attn_resolutions" in skip_note(emu3_small() | {"vq_config": EMU3_VQ | {"attn_resolutions": "all"}})


@pytest.mark.parametrize("change", [
    {}, {"tie_word_embeddings": True},
    {"vq_config": {"double_latent": True, "channel_multiplier": [1, 2, 4], "attn_resolutions": [1, 2],
                   "num_res_blocks": 1, "temporal_downsample_factor": 2, "hidden_size": 512, "base_channels": 128,
                   "embed_dim": 8, "latent_channels": 6, "codebook_size": 1024}},
])
def test_emu3_as_transformers_builds_it(change):
    data = class_defaults("emu3") | {"vocabulary_map": {}}
    data |= {k: v for k, v in change.items() if k != "vq_config"}
    data["vq_config"] = data["vq_config"] | change.get("vq_config", {})
    assert total(data) == built(data, "Emu3ForConditionalGeneration")


# ---------------------------------------------------------------- Moshi's whole checkpoint


def test_moshi_class_defaults_by_hand():
    """MoshiConfig's defaults (kmhf/hf-moshika's shape): 7,783,880,545 as transformers builds it."""
    h, vocab, audio_vocab, books = 4096, 32000, 2048, 8
    text_layer = 4 * h * 32 * 128 + h * 22528 + 11264 * h + 2 * h  # q/k/v/o, fc1, fc2 (ffn_dim / 2), two RMSNorms
    text = (vocab + 1) * h + 32 * text_layer + h + vocab * h  # an extra embedding row, the untied lm_head
    audio = 2 * books * (audio_vocab + 1) * h
    d = 1024  # the depth decoder: 6 layers, 16 heads of 64, ffn_dim 5632, one weight per codebook
    depth_layer = books * (4 * d * 16 * 64 + d * 5632 + 2816 * d) + 2 * d
    depth = (vocab + 1) * d + (books - 1) * (audio_vocab + 1) * d + books * h * d + 6 * depth_layer \
        + books * d * audio_vocab  # text_embed_tokens, embed_tokens, input_projections, layers, lm_heads

    def conv(i, o, k):
        return i * o * k + o

    def resnet(w):  # SEANet resnet block: w -> w / 2 (kernel 3), -> w (kernel 1)
        return conv(w, w // 2, 3) + conv(w // 2, w, 1)

    seanet_encoder = (conv(1, 64, 7)
                      + resnet(64) + conv(64, 128, 8) + resnet(128) + conv(128, 256, 10)  # ratios 4, 5
                      + resnet(256) + conv(256, 512, 12) + resnet(512) + conv(512, 1024, 16)  # ratios 6, 8
                      + conv(1024, 512, 3))
    seanet_decoder = (conv(512, 1024, 7)
                      + conv(1024, 512, 16) + resnet(512) + conv(512, 256, 12) + resnet(256)  # ConvTranspose1d
                      + conv(256, 128, 10) + resnet(128) + conv(128, 64, 8) + resnet(64)
                      + conv(64, 1, 3))
    # 8 layers: q/k/v/o 512 square, fc1 and fc2 of 2048, two LayerNorms with biases, two layer scales
    transformer = 8 * (4 * 512 * 512 + 2 * 512 * 2048 + 2 * 2 * 512 + 2 * 512)
    # frame_rate 24000 / (960 x 2) = 12.5 against encodec_frame_rate 25: latent_stride 2
    downsample, upsample = 512 * 512 * 4, 512 * (512 // 512) * 4
    # 32 codebooks of 2048 x 256 (initialized, cluster_usage, embed_sum buffers); each of the semantic and acoustic
    # quantizers has input_proj and output_proj 512 <-> 256
    quantizer = 32 * (1 + 2048 + 2048 * 256) + 2 * 2 * 512 * 256
    mimi = seanet_encoder + transformer + downsample + upsample + transformer + seanet_decoder + quantizer
    expected = text + audio + depth + mimi
    assert expected == 7_783_880_545
    assert total(moshi_defaults()) == expected
    count = parameter_count(spec_of(moshi_defaults()))
    assert count.head == vocab * h


def moshi_defaults() -> dict:
    """MoshiConfig's defaults as to_dict() writes them (transformers 5.24), the fields read."""
    return {
        "model_type": "moshi", "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "audio_vocab_size": None, "head_dim": 128,
        "max_position_embeddings": 3000, "sliding_window": 3000, "ffn_dim": 22528, "num_codebooks": 8,
        "tie_word_embeddings": False,
        "audio_encoder_config": {
            "model_type": "mimi", "sampling_rate": 24000, "audio_channels": 1, "hidden_size": 512, "num_filters": 64,
            "num_residual_layers": 1, "upsampling_ratios": [8, 6, 5, 4], "kernel_size": 7, "last_kernel_size": 3,
            "residual_kernel_size": 3, "compress": 2, "codebook_size": 2048, "codebook_dim": 256,
            "num_quantizers": 32, "use_conv_shortcut": False, "vector_quantization_hidden_dimension": 256,
            "num_semantic_quantizers": 1, "upsample_groups": 512, "num_hidden_layers": 8, "intermediate_size": 2048,
            "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 64, "attention_bias": False,
            "_frame_rate": None},
        "depth_decoder_config": {
            "model_type": "moshi_depth", "vocab_size": 32000, "hidden_size": 1024, "input_size": 4096,
            "num_hidden_layers": 6, "num_attention_heads": 16, "num_key_value_heads": 16, "audio_vocab_size": 2048,
            "head_dim": 64, "ffn_dim": 5632, "num_codebooks": 8},
    }


def test_the_hand_written_moshi_defaults_are_the_class_defaults():
    defaults = class_defaults("moshi")
    for key, value in moshi_defaults().items():
        if isinstance(value, dict):
            assert {k: defaults[key][k] for k in value} == value, key
        else:
            assert defaults[key] == value, key


def test_moshi_refusals_are_said():
    no_codec = {k: v for k, v in moshi_defaults().items() if k != "audio_encoder_config"}
    assert "audio_encoder_config" in skip_note(no_codec)
    wrong = copy.deepcopy(moshi_defaults())
    wrong["audio_encoder_config"]["model_type"] = "encodec"
    assert "not mimi" in skip_note(wrong)
    assert "num_quantizers" in skip_note(moshi_defaults() | {"num_codebooks": 64})


def _moshi_variant(top=None, depth=None, mimi=None, drop=()):
    data = copy.deepcopy(class_defaults("moshi"))
    data |= top or {}
    data["depth_decoder_config"] |= depth or {}
    data["audio_encoder_config"] |= mimi or {}
    for key in drop:
        del data["audio_encoder_config"][key]
    return data


MOSHI_CASES = {
    "defaults": {},
    "tied": {"top": {"tie_word_embeddings": True}},  # MoshiForCausalLM ties nothing
    "small": {"top": {"num_key_value_heads": 8, "num_codebooks": 16, "audio_vocab_size": 1024, "hidden_size": 1024,
                      "num_attention_heads": 8, "num_hidden_layers": 4, "ffn_dim": 4000},
              "depth": {"num_key_value_heads": 4, "head_dim": 32, "ffn_dim": 1000, "num_hidden_layers": 2}},
    "codec": {"mimi": {"use_conv_shortcut": True, "attention_bias": True, "num_residual_layers": 2, "compress": 4,
                       "vector_quantization_hidden_dimension": 512, "codebook_dim": 128, "num_key_value_heads": 4,
                       "head_dim": 32, "upsample_groups": 64, "upsampling_ratios": [4, 4],
                       "num_semantic_quantizers": 2}},
    "frame_rate_25": {"mimi": {"frame_rate": 25}, "drop": ("_frame_rate",)},  # no down/upsample
    "frame_rate_6.25": {"mimi": {"frame_rate": 6.25}, "drop": ("_frame_rate",)},  # latent_stride 4
    "no_encoder": {"mimi": {"encoder_config": None}},
    "no_decoder": {"mimi": {"decoder_config": None}},
}


@pytest.mark.parametrize("case", list(MOSHI_CASES))
def test_moshi_as_transformers_builds_it(case):
    data = _moshi_variant(**MOSHI_CASES[case])
    assert total(data) == built(data, "MoshiForConditionalGeneration")
