"""Defects a review of the second weights round found, each pinned (issue 19, 2026-12-07)."""

from __future__ import annotations

import pytest

from kvcalc.capacity.deployment import Deployment
from kvcalc.capacity.engines import get
from kvcalc.capacity.fit import fit
from kvcalc.capacity.speed import decode_speed
from kvcalc.sources.config_json import spec_from_config
from kvcalc.sources.config_weights import SKIP
from kvcalc.sources.presets import available, load_named, preset_dirs


def skip_note(data: dict) -> str:
    spec = spec_from_config(data, "test/config.json")
    notes = [n for n in spec.notes if n.startswith(SKIP)]
    assert spec.weights is None and len(notes) == 1, spec.notes
    return notes[0]


NEMOTRON_H = {  # Nemotron-H-8B's shape, cut to four layers
    "model_type": "nemotron_h", "vocab_size": 131072, "hidden_size": 4096, "num_hidden_layers": 4,
    "hybrid_override_pattern": "M-M*", "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "intermediate_size": 21504, "mamba_num_heads": 128, "mamba_head_dim": 64, "ssm_state_size": 128,
    "n_groups": 8, "conv_kernel": 4, "max_position_embeddings": 8192, "tie_word_embeddings": False,
    "attention_bias": False, "mlp_bias": False, "use_bias": False, "mamba_proj_bias": False, "use_conv_bias": True,
}


@pytest.mark.parametrize("key", ["attention_bias", "tie_word_embeddings"])
def test_nemotron_h_switches_transformers_ignores_are_refused(key):
    """transformers' NemotronH never gives q/k/v/o a bias nor ties the head (modeling_nemotron_h.py 883-886, 1159);
    counting what the flag says would differ from the model it builds."""
    assert spec_from_config(NEMOTRON_H, "x").weights is not None
    assert "implementations differ" in skip_note(NEMOTRON_H | {key: True})


def test_zamba2_untied_is_refused():
    """Untied, transformers keeps a copy of Zamba2's shared blocks per hybrid layer (modeling_zamba2.py 1225-1262)."""
    transformers = pytest.importorskip("transformers")  # the class defaults, as the survey reads them
    data = transformers.AutoConfig.for_model("zamba2").to_dict()
    assert spec_from_config(data, "x").weights is not None
    assert "copy of the shared blocks" in skip_note(data | {"tie_word_embeddings": False})


def preset(name: str):
    return load_named(available(preset_dirs(()))[name])


def test_parts_outside_the_schema_are_said_in_speed_and_placement():
    spec = preset("gemma-3-27b")  # its SigLIP tower is in extra_parameters
    extra = spec.weights.extra_parameters
    assert extra > 0
    speed = decode_speed(spec, bandwidth=3_350_000_000_000, context=8192)
    assert any(f"{extra:,} parameters outside" in n and "lower bound" in n for n in speed.notes)
    result = fit(spec, Deployment(engine=get("vllm"), memory=80 * 2**30, tp=1, pp=2), context=8192)
    assert any(f"{extra:,} parameters outside" in n and "upper bound" in n for n in result.notes)


def test_cohere_compass_text_counts_as_cohere2_by_hand():
    """transformers 5.24 cannot build it on meta (KeyError 'full_attention'); its layers are Cohere2's
    (modeling_cohere_compass.py 155-157 MLP, 266-277 q/k/v/o, 329 one LayerNorm without a bias, 422 final norm)."""
    from kvcalc.capacity.params import parameter_count

    data = {"model_type": "cohere_compass_text", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "max_position_embeddings": 512, "layer_types": ["full_attention"] * 3}
    h = 64
    layer = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h + 3 * h * 96 + h  # q, k, v, o; gate, up, down; one norm
    assert parameter_count(spec_from_config(data, "x")).total == 1000 * h + 3 * layer + h  # tied head


# ---------------------------------------------------------------- review of the KV-reading fixes

def estimate_bytes_per_token(data: dict) -> int:
    from kvcalc.estimate import estimate

    return estimate(spec_from_config(data, "test/config.json"), context=16).bytes_per_token


ROBERTA_SMALL = {"model_type": "roberta", "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "intermediate_size": 256, "max_position_embeddings": 64,
                 "type_vocab_size": 1, "torch_dtype": "bfloat16"}


def test_a_bert_family_decoder_caches_every_layer():
    """With is_decoder true, RoBERTa's causal self-attention caches K and V (as BERT's, modeling_bert.py 361, 643)."""
    assert estimate_bytes_per_token(ROBERTA_SMALL) == 0  # an encoder
    assert estimate_bytes_per_token(ROBERTA_SMALL | {"is_decoder": True}) == 2 * 4 * 128 * 2  # K and V, bf16
    with pytest.raises(Exception, match="is_decoder must be true or false"):
        spec_from_config(ROBERTA_SMALL | {"is_decoder": "false"}, "test/config.json")


def test_bidirectional_gemma_is_an_encoder():
    data = {"model_type": "gemma3_text", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 96,
            "sliding_window": 32, "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 512, "torch_dtype": "bfloat16"}
    assert estimate_bytes_per_token(data) == 2 * 2 * 1 * 32 * 2
    assert estimate_bytes_per_token(data | {"use_bidirectional_attention": True}) == 0


@pytest.mark.parametrize("data, field", [
    ({"model_type": "dbrx", "d_model": 256, "n_heads": 8, "n_layers": 2, "max_seq_len": 512, "vocab_size": 1000,
      "attn_config": {"kv_n_heads": None}}, "kv_n_heads"),
    ({"model_type": "jetmoe", "hidden_size": 128, "num_hidden_layers": 2, "num_key_value_heads": None,
      "kv_channels": 16, "max_position_embeddings": 512, "vocab_size": 1000}, "num_key_value_heads"),
    ({"model_type": "modernbert-decoder", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
      "global_attn_every_n_layers": None, "local_attention": 64, "max_position_embeddings": 512,
      "vocab_size": 1000}, "global_attn_every_n_layers"),
])
def test_a_null_size_is_refused_as_transformers_refuses_it(data, field):
    with pytest.raises(Exception, match=f"{field} is null"):
        spec_from_config(data, "test/config.json")


def test_modernbert_decoder_without_sliding_layers_reads_local_attention():
    data = {"model_type": "modernbert-decoder", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "global_attn_every_n_layers": 1, "local_attention": 128, "max_position_embeddings": 512,
            "vocab_size": 1000}
    spec = spec_from_config(data, "test/config.json")
    assert not [n for n in spec.notes if n.startswith("unread:")]
    assert any("every layer is full attention" in n for n in spec.notes)


def test_qwen_sliding_layers_with_the_window_switched_off_are_refused():
    data = {"model_type": "qwen2", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 96, "sliding_window": 32,
            "use_sliding_window": False, "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 512}
    with pytest.raises(Exception, match="use_sliding_window is false"):
        spec_from_config(data, "test/config.json")
