"""Weights of BERT-shaped encoders and older LayerNorm decoders (kvcalc/sources/weights_encoders.py).

1. Against transformers itself, where installed: the model benchmarks/model_types.py ``meta_parameters``
   builds on the meta device (``AutoModel`` for an encoder kvcalc reads as one, the causal-LM class for a
   decoder), its parameters and persistent buffers summed, for each type's class defaults and for
   variants that switch the optional parts on or off.
2. By hand: per builder shape, the expected total written out as arithmetic from the config's fields
   (a LayerNorm 2h, an attention of q/k/v/o with biases 4(h^2 + h), a plain MLP with biases
   2hI + I + h), and a published total where one is known.

SOURCES of the transcribed configs (dicts below, not fixture folders):
- ROBERTA_BASE: FacebookAI/roberta-base's config.json fields as a public notes file prints them with
  transformers 4.52.4 (code search, Markdown, "Roberta Base: RobertaConfig {...}"); the keys that print
  adds (classifier_dropout, torch_dtype, transformers_version, use_cache, position_embedding_type
  "absolute") are kept out but position_embedding_type, which the released file also says.
- XGLM_1_7B: facebook/xglm-1.7B's config.json fields as a conversion script's docstring quotes them
  ("Should match the config file from HF", code search stored file id 26992185356).
The rest are transformers 5.24 class defaults, written out.
"""

from __future__ import annotations

import pytest
from weights_checks import class_defaults, meta_count, skip_note, spec_of, total

from kvcalc.capacity.params import parameter_count
from kvcalc.errors import PresetError
from kvcalc.sources import weights_encoders

ROBERTA_BASE = {
    "architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,
    "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 514,
    "model_type": "roberta", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
    "position_embedding_type": "absolute", "type_vocab_size": 1, "vocab_size": 50265,
}
XGLM_1_7B = {
    "activation_dropout": 0.0, "activation_function": "gelu", "architectures": ["XGLMForCausalLM"],
    "attention_dropout": 0.1, "attention_heads": 16, "bos_token_id": 0, "d_model": 2048,
    "decoder_start_token_id": 2, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 8192, "init_std": 0.02,
    "layerdrop": 0.0, "max_position_embeddings": 2048, "model_type": "xglm", "num_layers": 24, "pad_token_id": 1,
    "scale_embedding": True, "use_cache": True, "vocab_size": 256008,
}


# ---------------------------------------------------------------- 1. transformers on the meta device


def built(data: dict, encoder: bool) -> int:
    """As benchmarks/model_types.py meta_parameters: parameters plus persistent buffers, on meta."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(**data)
    auto = transformers.AutoModel if encoder else transformers.AutoModelForCausalLM
    return meta_count(lambda: auto.from_config(cfg))


# type -> changes to its class defaults, each built once; {} is the defaults themselves. ELECTRA's
# defaults (embedding_size 128, hidden 256) are refused, so it is checked with equal widths.
CASES = {
    "roberta": [{}], "camembert": [{}], "xlm-roberta": [{}], "data2vec-text": [{}],
    "ernie": [{}, {"use_task_id": True, "task_type_vocab_size": 16}],
    "big_bird": [{"use_bias": False}],
    "electra": [{"embedding_size": 256}],
    "roformer": [{}],
    "xmod": [{}, {"pre_norm": True, "adapter_layer_norm": True, "languages": ["en_XX", "de_DE", "en_XX"],
                  "adapter_reduction_factor": 3}],
    "roc_bert": [{}, {"enable_shape": False}, {"concat_input": False}],
    "roberta-prelayernorm": [{}], "xlm-roberta-xl": [{}], "megatron-bert": [{}],
    "bert-generation": [{}, {"tie_word_embeddings": False}, {"is_decoder": True},
                        {"is_decoder": True, "tie_word_embeddings": False}],
    "biogpt": [{"tie_word_embeddings": False}],
    "ctrl": [{}], "openai-gpt": [{}], "xglm": [{}],
    "gpt_neox_japanese": [{"intermediate_multiple_size": 2}],
    "git": [{}, {"tie_word_embeddings": True, "num_image_with_embedding": 6}],
    "modernbert-decoder": [{}, {"norm_bias": True, "attention_bias": True, "mlp_bias": True, "classifier_bias": True,
                                "decoder_bias": False}],
}


def test_every_type_counted_here_is_checked_against_transformers():
    # RemBERT and ELECTRA-small's narrow embeddings: tests/test_weights_towers.py; Moshi: tests/test_weights_last.py
    # bert: checked on its fixture (tests/fixtures/configs/bert-base) by test_hf_config_weights.py
    assert set(CASES) | {"rembert", "moshi", "bert"} == set(weights_encoders.BUILDERS)


@pytest.mark.parametrize(("model_type", "change"),
                         [pytest.param(t, c, id=f"{t}-{i}") for t, cs in CASES.items() for i, c in enumerate(cs)])
def test_count_equals_the_model_transformers_builds(model_type, change):
    data = class_defaults(model_type) | change
    spec = spec_of(data)
    count = parameter_count(spec)
    assert count is not None, spec.notes
    assert count.total == built(data, spec.is_encoder)


@pytest.mark.parametrize("data", [pytest.param(ROBERTA_BASE, id="roberta-base"),
                                  pytest.param(XGLM_1_7B, id="xglm-1.7b")])
def test_released_configs_equal_the_model_transformers_builds(data):
    spec = spec_of(data)
    assert parameter_count(spec).total == built(data, spec.is_encoder)


# ---------------------------------------------------------------- 2. by hand


def layer(h: int, inner: int, *, qkv_bias: bool = True) -> int:
    """One BERT-shaped layer: q/k/v/o (q/k/v biases as said, o's always), a plain MLP with biases, two
    LayerNorms."""
    return 4 * h * h + (3 * h if qkv_bias else 0) + h + 2 * h * inner + inner + h + 2 * 2 * h


def test_roberta_base():
    # embeddings (50265 words, 514 positions, 1 token type) + LayerNorm, 12 post-norm layers, the pooler
    expected = (50265 + 514 + 1) * 768 + 2 * 768 + 12 * layer(768, 3072) + 768 * 768 + 768
    assert expected == 124_645_632  # RobertaModel.from_pretrained("roberta-base").num_parameters(), as widely quoted
    assert total(ROBERTA_BASE) == expected


def test_ernie_task_type_embeddings():
    data = {"model_type": "ernie", "vocab_size": 40000, "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 2048,
            "type_vocab_size": 4, "use_task_id": True, "task_type_vocab_size": 3}
    expected = (40000 + 2048 + 4 + 3) * 768 + 2 * 768 + 12 * layer(768, 3072) + 768 * 768 + 768
    assert total(data) == expected
    assert total(data | {"use_task_id": False}) == expected - 3 * 768


def test_big_bird_without_qkv_biases():
    data = {"model_type": "big_bird", "vocab_size": 50358, "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 4096,
            "type_vocab_size": 2, "use_bias": False}
    expected = (50358 + 4096 + 2) * 768 + 2 * 768 + 12 * layer(768, 3072, qkv_bias=False) + 768 * 768 + 768
    assert total(data) == expected


def test_xlm_roberta_xl_pre_norm():
    # XLMRobertaXLConfig's defaults (facebook/xlm-roberta-xl's shape): no embedding LayerNorm, a final one
    data = {"model_type": "xlm-roberta-xl", "vocab_size": 250880, "hidden_size": 2560, "num_hidden_layers": 36,
            "num_attention_heads": 32, "intermediate_size": 10240, "max_position_embeddings": 514,
            "type_vocab_size": 1}
    expected = (250880 + 514 + 1) * 2560 + 36 * layer(2560, 10240) + 2 * 2560 + 2560 * 2560 + 2560
    assert round(expected / 1e9, 1) == 3.5  # the XLM-R XL paper's 3.5B
    assert total(data) == expected
    # RoBERTa-PreLayerNorm keeps the embedding LayerNorm
    assert total(data | {"model_type": "roberta-prelayernorm"}) == expected + 2 * 2560


def test_electra_base_widths():
    data = {"model_type": "electra", "vocab_size": 30522, "embedding_size": 768, "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "max_position_embeddings": 512, "type_vocab_size": 2}
    expected = (30522 + 512 + 2) * 768 + 2 * 768 + 12 * layer(768, 3072)  # no pooler
    assert total(data) == expected  # ELECTRA-small's narrower embeddings: tests/test_weights_towers.py


def test_roformer_sinusoidal_table():
    data = {"model_type": "roformer", "vocab_size": 50000, "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 1536,
            "type_vocab_size": 2}
    # words and token types + LayerNorm, the 1536 x 64 sinusoidal parameter, no learned positions, no pooler
    expected = (50000 + 2) * 768 + 2 * 768 + 1536 * 64 + 12 * layer(768, 3072)
    assert total(data) == expected


def test_xmod_adapters():
    data = {"model_type": "xmod", "vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514,
            "type_vocab_size": 1, "pre_norm": False, "adapter_reduction_factor": 2, "adapter_layer_norm": False,
            "languages": ["en_XX", "de_DE", "fr_XX"]}
    adapter = 768 * 384 + 384 + 384 * 768 + 768
    expected = ((250002 + 514 + 1) * 768 + 2 * 768 + 12 * (layer(768, 3072) + 3 * adapter)
                + 768 * 768 + 768)
    assert total(data) == expected
    assert total(data | {"pre_norm": True, "adapter_layer_norm": True}) == expected + 2 * 768 + 12 * 2 * 768


def test_roc_bert_side_embeddings():
    data = {"model_type": "roc_bert", "vocab_size": 24858, "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
            "type_vocab_size": 2, "pronunciation_vocab_size": 910, "pronunciation_embed_dim": 768,
            "shape_vocab_size": 24858, "shape_embed_dim": 512, "enable_pronunciation": True, "enable_shape": True,
            "concat_input": True}
    side = 910 * 768 + 24858 * 512 + (768 + 768 + 512) * 768 + 768
    expected = (24858 + 512 + 2) * 768 + 2 * 768 + side + 12 * layer(768, 3072) + 768 * 768 + 768
    assert total(data) == expected
    assert total(data | {"concat_input": False}) == expected - (768 + 768 + 512) * 768 - 768


def test_bert_generation_decoder():
    data = {"model_type": "bert-generation", "vocab_size": 50358, "hidden_size": 1024, "num_hidden_layers": 24,
            "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 512}
    # is_decoder false (the default): the encoder, BertGenerationEncoder, without a head
    assert spec_of(data).is_encoder
    assert total(data) == (50358 + 512) * 1024 + 2 * 1024 + 24 * layer(1024, 4096)
    data["is_decoder"] = True
    # words and positions + LayerNorm, no token types, post-norm layers, the head tied with a bias
    expected = (50358 + 512) * 1024 + 2 * 1024 + 24 * layer(1024, 4096) + 50358
    assert total(data) == expected
    spec = spec_of(data)
    assert not spec.is_encoder and any("tie_word_embeddings true" in n for n in spec.notes)
    # untied: the decoder's own weight and bias beside lm_head.bias
    assert total(data | {"tie_word_embeddings": False}) == expected + 50358 * 1024 + 50358


def test_biogpt():
    data = {"model_type": "biogpt", "vocab_size": 42384, "hidden_size": 1024, "num_hidden_layers": 24,
            "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 1024}
    expected = (42384 + 1024 + 2) * 1024 + 24 * layer(1024, 4096) + 2 * 1024
    assert round(expected / 1e6) == 347  # the BioGPT paper's 347M
    assert total(data) == expected


def test_ctrl():
    data = {"model_type": "ctrl", "vocab_size": 246534, "n_positions": 256, "n_embd": 1280, "dff": 8192,
            "n_layer": 48, "n_head": 16}
    # no learned positions (a sinusoidal buffer not saved), the tied head's bias
    expected = 246534 * 1280 + 48 * layer(1280, 8192) + 2 * 1280 + 246534
    assert round(expected / 1e9, 2) == 1.64  # the CTRL paper's "1.63 billion", cut rather than rounded
    assert expected // 10**7 == 163
    assert total(data) == expected


def test_openai_gpt():
    data = {"model_type": "openai-gpt", "vocab_size": 40478, "n_positions": 512, "n_embd": 768, "n_layer": 12,
            "n_head": 12}
    expected = (40478 + 512) * 768 + 12 * layer(768, 4 * 768)  # no final LayerNorm, tied head without a bias
    assert total(data) == expected


def test_xglm_1_7b():
    expected = 256008 * 2048 + 24 * layer(2048, 8192) + 2 * 2048  # sinusoidal positions are not saved
    assert round(expected / 1e9, 1) == 1.7  # XGLM 1.7B
    assert total(XGLM_1_7B) == expected
    assert "add_cross_attention true" in skip_note(XGLM_1_7B | {"add_cross_attention": True})


def test_gpt_neox_japanese():
    data = {"model_type": "gpt_neox_japanese", "vocab_size": 32000, "hidden_size": 2560, "num_hidden_layers": 32,
            "num_attention_heads": 32, "intermediate_multiple_size": 4, "max_position_embeddings": 2048}
    h, inner = 2560, 4 * 2560
    # qkv and dense without biases, the last layer's dense_bias, an MLP without biases, tied
    expected = 32000 * h + 32 * (4 * h * h + 2 * h * inner + 2 * 2 * h) + h + 2 * h
    assert total(data) == expected


def test_git_with_its_image_encoder():
    data = {"model_type": "git", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 1024,
            "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                              "num_attention_heads": 12, "image_size": 224, "patch_size": 16}}
    text = (30522 + 1024) * 768 + 2 * 768 + 6 * layer(768, 3072) + 30522 * 768 + 30522  # untied output + bias
    vision = (3 * 16 * 16 * 768 + 768 + (14 * 14 + 1) * 768 + 2 * 2 * 768
              + 12 * (4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 2 * 2 * 768))
    projection = 768 * 768 + 768 + 2 * 768
    assert total(data) == text + vision + projection
    spec = spec_of(data)
    assert any("GitVisionConfig defaults for num_channels 3" in n for n in spec.notes)


def test_modernbert_decoder():
    data = {"model_type": "modernbert-decoder", "vocab_size": 50368, "hidden_size": 768, "intermediate_size": 1152,
            "num_hidden_layers": 22, "num_attention_heads": 12, "max_position_embeddings": 8192,
            "local_attention": 128, "sliding_window": 64,
            "layer_types": ["full_attention", "sliding_attention", "sliding_attention"] * 7 + ["full_attention"]}
    h = 768
    # norms without biases (a weight of h), layer 0 without an attention norm, a GLU MLP 3 h I, the prediction
    # head's dense and norm, the tied decoder's bias
    expected = (50368 * h + h + 22 * (4 * h * h + 3 * h * 1152 + h) + 21 * h + h
                + h * h + h + 50368)
    assert total(data) == expected


# ---------------------------------------------------------------- 3. what is refused, said


def test_moshi_without_its_codec_config_is_refused():
    """Moshi's whole checkpoint is counted (tests/test_weights_last.py); without audio_encoder_config MoshiConfig
    does not pass the audio vocabulary down, and the count is refused by name."""
    data = {"model_type": "moshi", "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128, "ffn_dim": 22528,
            "max_position_embeddings": 3000, "sliding_window": 3000, "depth_decoder_config": {"hidden_size": 1024}}
    assert "audio_encoder_config" in skip_note(data)


def test_relative_positions_and_cross_attention_refused():
    assert "relative distance embeddings" in skip_note(ROBERTA_BASE | {"position_embedding_type": "relative_key"})
    # a decoder with cross-attention caches the encoder's states too: the whole config is refused, not only its count
    with pytest.raises(PresetError, match="cross-attention"):
        spec_of(ROBERTA_BASE | {"add_cross_attention": True, "is_decoder": True})
    assert "causal-LM class" in skip_note(ROBERTA_BASE | {"is_decoder": True})  # its cache is read, its count not
