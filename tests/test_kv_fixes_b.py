"""KV-reading fixes: Gemma-4's layer pattern and per-layer heads as transformers 5.24 builds (or refuses)
them; caches transformers does not keep (BertGeneration as an encoder, GPT-1); keys that were unread
false alarms (ModernBERT-decoder's local_attention, Qwen text_config window switches, MOSS's audio
window, OLMo-Hybrid's initialisation ranges, LFM2-MoE's dense layers).

Expected bytes are arithmetic from the config values written in each test; where transformers can
build the model, its cache after one forward on the meta device is compared as well (skipped cleanly
without torch or transformers).
"""

from __future__ import annotations

import pytest

from kvcalc.capacity.params import parameter_count
from kvcalc.errors import PresetError
from kvcalc.estimate import estimate
from kvcalc.sources.config_fields import unread_keys
from kvcalc.sources.config_json import spec_from_config


def read(data: dict):
    return spec_from_config(data, "config.json")


def reference(data: dict, context: int):
    """kvcalc's spec of ``data`` compared with the cache transformers holds after a forward of ``context`` tokens."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from kvcalc.verify.reference import compare, hold

    return compare(read(data), hold(data, context), context)


def rows(comparison) -> dict:
    return {row.name: row for row in comparison.rows}


# --------------------------------------------------------------------------- Gemma-4


def gemma4(**fields) -> dict:
    # a small Gemma4TextConfig: 12 layers, 8 heads, 4 KV heads of 256, full layers' global_head_dim 512
    data = {
        "model_type": "gemma4_text", "num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "global_head_dim": 512, "sliding_window": 512, "hidden_size": 256,
        "intermediate_size": 512, "vocab_size": 1000, "vocab_size_per_layer_input": 1000,
        "hidden_size_per_layer_input": 16, "max_position_embeddings": 4096, "dtype": "bfloat16",
    }
    return data | fields


def test_gemma4_ignores_sliding_window_pattern_as_transformers_does():
    # configuration_gemma4.py 189: sliding_window_pattern = 6, whatever config.json says; with 12 layers
    # layers 5 and 11 are full (11 is also the last), the other 10 sliding
    spec = read(gemma4(sliding_window_pattern=2))
    order = spec.layers.order()
    assert [i for i, kind in enumerate(order) if kind.startswith("full")] == [5, 11]
    assert any(n.startswith("ignored: sliding_window_pattern 2") for n in spec.notes)
    assert unread_keys(spec.notes) == []
    e = estimate(spec, context=1024)
    # sliding: 10 layers x 512 tokens x 4 KV heads x (256 + 256) x 2 B; full: 2 x 1024 x 4 x (512 + 512) x 2 B
    assert e.total_bytes == 10 * 512 * 4 * 512 * 2 + 2 * 1024 * 4 * 1024 * 2
    # the weights follow the same layers: as without the field (before, the builder gave up on it)
    plain = parameter_count(read(gemma4()))
    assert plain is not None and parameter_count(spec).total == plain.total


def test_gemma4_sliding_window_pattern_is_what_transformers_holds():
    comparison = reference(gemma4(sliding_window_pattern=2), 600)
    found = rows(comparison)
    # full layers: 2 x 600 tokens x 4 KV heads x 1024 x 2 B, equal; sliding: transformers keeps 511 (explained)
    assert found["full_kv4_d512"].kvcalc_bytes == found["full_kv4_d512"].transformers_bytes == 2 * 600 * 4 * 1024 * 2
    assert found["sliding"].transformers_bytes == 10 * 511 * 4 * 512 * 2
    assert comparison.ok


def test_gemma4_per_layer_config_that_splits_a_layer_type_is_refused():
    # per_layer_config replaces the global rule: layer 5 gets head_dim 512, layer 11 (also full) keeps 256
    data = gemma4(per_layer_config={"5": {"head_dim": 512}})
    with pytest.raises(PresetError, match="full_attention layers different heads.*not homogeneous"):
        read(data)
    # an override equal to the global value is dropped by transformers: still one shape per type, read
    spec = read(gemma4(per_layer_config={"5": {"head_dim": 256}}))
    # 12 layers x 4 KV heads x (256 + 256) x 2 B per token
    assert estimate(spec, context=1).bytes_per_token == 12 * 4 * 512 * 2


def test_transformers_cannot_build_a_split_layer_type():
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    data = gemma4(per_layer_config={"5": {"head_dim": 512}})
    cfg = transformers.AutoConfig.for_model(**data)
    with pytest.raises(ValueError, match="not homogeneous across layers"), torch.device("meta"):
        transformers.AutoModelForCausalLM.from_config(cfg)


def test_gemma4_layer_types_longer_than_the_layers_is_refused():
    data = gemma4(layer_types=["sliding_attention"] * 5 + ["full_attention"]
                  + ["sliding_attention"] * 5 + ["full_attention"] * 2)  # 13 for 12 layers
    with pytest.raises(PresetError, match="layer_types lists 13 layers, but num_hidden_layers is 12"):
        read(data)
    for model_type in ("gemma4_unified_text",):
        with pytest.raises(PresetError, match="layer_types lists 13"):
            read(data | {"model_type": model_type})


def test_transformers_refuses_layer_types_longer_than_the_layers():
    transformers = pytest.importorskip("transformers")
    data = gemma4(layer_types=["full_attention"] * 13, per_layer_config={})
    with pytest.raises(Exception, match=r"num_hidden_layers` \(12\) must be equal to the number of `layer_types"):
        transformers.AutoConfig.for_model(**data)


def test_gemma4_wrapper_reads_its_text_config_the_same_way():
    text = gemma4(sliding_window_pattern=3)
    spec = read({"model_type": "gemma4", "text_config": text})
    assert [i for i, kind in enumerate(spec.layers.order()) if kind.startswith("full")] == [5, 11]


# --------------------------------------------------------------------------- caches transformers does not keep


def bert_generation(**fields) -> dict:
    data = {"model_type": "bert-generation", "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 4,
            "num_attention_heads": 4, "intermediate_size": 256, "max_position_embeddings": 512,
            "torch_dtype": "bfloat16"}
    return data | fields


def test_bert_generation_is_an_encoder_unless_is_decoder():
    spec = read(bert_generation())
    assert spec.is_encoder
    assert estimate(spec, context=100).total_bytes == 0
    decoder = read(bert_generation(is_decoder=True))
    assert not decoder.is_encoder
    # 4 layers x 2 (K and V) x 128 (4 heads x 32) x 2 B per token
    assert estimate(decoder, context=1).bytes_per_token == 4 * 2 * 128 * 2


def test_bert_generation_is_what_transformers_holds():
    encoder = reference(bert_generation(), 16)
    assert encoder.kvcalc_bytes == encoder.transformers_bytes == 0
    decoder = reference(bert_generation(is_decoder=True), 16)
    # 4 layers x 16 tokens x 2 x 128 x 2 B
    assert decoder.kvcalc_bytes == decoder.transformers_bytes == 4 * 16 * 2 * 128 * 2


def openai_gpt() -> dict:
    return {"model_type": "openai-gpt", "vocab_size": 1000, "n_positions": 512, "n_embd": 128, "n_layer": 4,
            "n_head": 4, "torch_dtype": "bfloat16"}


def test_openai_gpt_says_transformers_keeps_no_cache():
    spec = read(openai_gpt())
    assert any(n.startswith("no cache kept: transformers' OpenAIGPTLMHeadModel") for n in spec.notes)
    # what a caching engine would hold: 4 layers x 2 x 128 x 2 B per token
    assert estimate(spec, context=1).bytes_per_token == 4 * 2 * 128 * 2


def test_openai_gpt_difference_is_explained():
    comparison = reference(openai_gpt(), 16)
    assert comparison.transformers_bytes == 0
    assert comparison.kvcalc_bytes == 4 * 16 * 2 * 128 * 2
    assert comparison.ok and {row.rule for row in comparison.rows} == {"no-cache"}


# --------------------------------------------------------------------------- ModernBERT-decoder


def modernbert_decoder(**fields) -> dict:
    # the fields a ModernBERT-decoder checkpoint writes: no layer_types, no sliding_window
    data = {"model_type": "modernbert-decoder", "vocab_size": 1000, "hidden_size": 128, "intermediate_size": 192,
            "num_hidden_layers": 7, "num_attention_heads": 4, "max_position_embeddings": 1024,
            "global_attn_every_n_layers": 3, "local_attention": 32, "pad_token_id": 0, "bos_token_id": 1,
            "eos_token_id": 2, "torch_dtype": "bfloat16"}
    return data | fields


def test_modernbert_decoder_window_is_half_local_attention():
    spec = read(modernbert_decoder())
    assert unread_keys(spec.notes) == []
    # layers 0, 3, 6 full; 1, 2, 4, 5 sliding over local_attention // 2 = 16 tokens
    assert [i for i, kind in enumerate(spec.layers.order()) if kind == "full"] == [0, 3, 6]
    e = estimate(spec, context=100)
    # 3 full x 100 tokens + 4 sliding x 16 tokens, each x 2 x 128 x 2 B; before: 7 full layers
    assert e.total_bytes == (3 * 100 + 4 * 16) * 2 * 128 * 2


def test_modernbert_decoder_sliding_window_in_the_file_is_overridden():
    spec = read(modernbert_decoder(sliding_window=100, local_attention=64))
    assert any(n.startswith("ignored: sliding_window 100") for n in spec.notes)
    assert estimate(spec, context=100).total_bytes == (3 * 100 + 4 * 32) * 2 * 128 * 2
    with pytest.raises(PresetError, match="local_attention is null"):
        read(modernbert_decoder(local_attention=None))


def test_modernbert_decoder_is_what_transformers_holds():
    comparison = reference(modernbert_decoder(), 40)
    found = rows(comparison)
    assert found["full"].kvcalc_bytes == found["full"].transformers_bytes == 3 * 40 * 2 * 128 * 2
    # transformers keeps window - 1 = 15 tokens of the sliding layers (explained)
    assert found["sliding"].transformers_bytes == 4 * 15 * 2 * 128 * 2
    assert comparison.ok


# --------------------------------------------------------------------------- unread false alarms


def qwen_text(**fields) -> dict:
    # a Qwen2 text_config as transformers 5.x writes it: layer_types beside the switches it was built from
    data = {"model_type": "qwen2", "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
            "hidden_size": 512, "use_sliding_window": False, "sliding_window": None, "max_window_layers": 2,
            "layer_types": ["full_attention"] * 4, "torch_dtype": "bfloat16"}
    return data | fields


def test_qwen_text_config_switches_are_read():
    for outer in ("got_ocr2", "moss_transcribe_diarize"):
        spec = read({"model_type": outer, "text_config": qwen_text()})
        assert unread_keys(spec.notes) == [], outer
        # 4 layers x 2 KV heads x (64 + 64) x 2 B per token
        assert estimate(spec, context=1).bytes_per_token == 4 * 2 * 128 * 2
    # a list that is not what the switches build: the list decides, said
    spec = read(qwen_text(use_sliding_window=True, sliding_window=64))
    assert any(n.startswith("ignored: use_sliding_window true and max_window_layers 2") for n in spec.notes)
    built = read(qwen_text(use_sliding_window=True, sliding_window=64,
                           layer_types=["full_attention"] * 2 + ["sliding_attention"] * 2))
    assert not any(n.startswith("ignored: use_sliding_window") for n in built.notes)
    # 2 full layers x 100 tokens + 2 sliding x 64, each x 2 KV heads x 128 x 2 B
    assert estimate(built, context=100).total_bytes == (2 * 100 + 2 * 64) * 2 * 128 * 2


def test_audio_chunk_size_is_not_an_unread_kv_key():
    spec = read({"model_type": "moss_transcribe_diarize", "audio_chunk_size": 480000, "text_config": qwen_text()})
    assert unread_keys(spec.notes) == []


@pytest.mark.parametrize("model_type", ["got_ocr2", "moss_transcribe_diarize", "olmo_hybrid", "qwen2", "qwen3"])
def test_transformers_defaults_have_no_unread_kv_keys(model_type):
    transformers = pytest.importorskip("transformers")
    spec = read(transformers.AutoConfig.for_model(model_type).to_dict())
    assert unread_keys(spec.notes) == []


def test_olmo_hybrid_initialisation_ranges_are_not_unread():
    data = {"model_type": "olmo_hybrid", "num_hidden_layers": 4, "num_attention_heads": 4, "hidden_size": 256,
            "layer_types": ["linear_attention", "full_attention"] * 2, "linear_num_key_heads": 2,
            "linear_num_value_heads": 2, "linear_key_head_dim": 32, "linear_value_head_dim": 64,
            "linear_conv_kernel_dim": 4, "linear_a_log_min": 0.0, "linear_a_log_max": 16.0, "linear_dt_min": 0.001,
            "linear_dt_max": 0.1, "linear_dt_init_floor": 0.0001, "linear_allow_neg_eigval": True,
            "torch_dtype": "bfloat16"}
    spec = read(data)
    assert unread_keys(spec.notes) == []
    # full layers: 2 x 4 KV heads x (64 + 64) x 2 B per token
    assert estimate(spec, context=1).bytes_per_token == 2 * 4 * 128 * 2


def test_lfm2_moe_dense_layers_are_not_unread():
    data = {"model_type": "lfm2_moe", "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "hidden_size": 256, "conv_L_cache": 3, "layer_types": ["conv", "full_attention", "conv"],
            "num_dense_layers": 2, "torch_dtype": "bfloat16"}
    spec = read(data)
    assert unread_keys(spec.notes) == []
    # one attention layer x 2 KV heads x (64 + 64) x 2 B per token
    assert estimate(spec, context=1).bytes_per_token == 2 * 128 * 2
