"""The weights block kvcalc builds from a config.json (kvcalc.sources.config_weights), three ways.

1. Against the bundled presets, whose counts were checked by hand against published totals
   (tests/test_params.py): the same model read from its config.json counts the same.
2. Against hand derivations from the config fields, written as arithmetic here (per layer:
   dense attention h*H*d + 2*h*KV*d + H*d*h, a gated MLP 3*h*I, a plain one 2*h*I, an RMSNorm
   h, a LayerNorm 2*h), and published totals where a model card gives one.
3. Against transformers itself, when installed: the model built on the meta device from the
   same config (no memory, no download), its parameters and persistent buffers summed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from weights_checks import meta_count

from kvcalc.capacity.params import parameter_count
from kvcalc.sources.config_json import load_config_path, preset_yaml, spec_from_config
from kvcalc.sources.config_weights import SKIP
from kvcalc.sources.presets import load_file

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
PRESETS = Path(__file__).parent.parent / "model_presets"
FIXTURES = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def raw(name: str) -> dict:
    return json.loads((CONFIGS / name / "config.json").read_text())


def spec_of(data: dict):
    return spec_from_config(data, "test/config.json")


def total(spec) -> int:
    count = parameter_count(spec)
    assert count is not None, [n for n in spec.notes if n.startswith(SKIP)]
    return count.total


def skip_note(spec) -> str:
    notes = [n for n in spec.notes if n.startswith(SKIP)]
    assert spec.weights is None and len(notes) == 1, spec.notes
    return notes[0]


# Fixtures whose family kvcalc does not count from fields (the brief: uncertain internals).
NOT_DERIVED = {"mimo-v2.5": "audio encoder"}
# fixture folder -> bundled preset of the same model (falcon-7b-rw is Falcon-7B's older config format)
PRESET_OF = {name: name for name in FIXTURES if (PRESETS / f"{name}.yaml").is_file()} | {"falcon-7b-rw": "falcon-7b"}


# ---------------------------------------------------------------- 1. the presets


def test_every_fixture_derives_weights_or_says_why():
    for name in FIXTURES:
        spec = load_config_path(CONFIGS / name)
        if name in NOT_DERIVED:
            assert NOT_DERIVED[name] in skip_note(spec), name
        else:
            assert spec.weights is not None, (name, spec.notes)


# presets the weights schema cannot describe either (their notes say why; tests/test_params.py checks the note);
# none now: Nemotron-Super-49B's preset carries the per-block widths (mlp_sizes) its config.json gives
NO_WEIGHTS_PRESETS: set[str] = set()


@pytest.mark.parametrize("name", sorted(set(PRESET_OF) - set(NOT_DERIVED) - NO_WEIGHTS_PRESETS))
def test_count_matches_the_preset(name):
    preset = load_file(PRESETS / f"{PRESET_OF[name]}.yaml")
    assert preset.weights is not None
    # total, active, and the parts (embedding, head, linear, other, MoE layers) all agree
    assert parameter_count(load_config_path(CONFIGS / name)) == parameter_count(preset)


def test_presets_not_derived_from_config_still_have_hand_written_weights():
    for name in sorted(set(NOT_DERIVED) & set(PRESET_OF)):  # bloom, mpt, chatglm have no preset
        preset = load_file(PRESETS / f"{PRESET_OF[name]}.yaml")
        assert (preset.weights is None) == (name in NO_WEIGHTS_PRESETS), name


@pytest.mark.parametrize("name", FIXTURES)
def test_weights_survive_kvcalc_import(name, tmp_path):
    spec = load_config_path(CONFIGS / name)
    out = tmp_path / "model.yaml"
    out.write_text(preset_yaml(spec))
    assert parameter_count(load_file(out)) == parameter_count(spec)
    assert ("weights" in yaml.safe_load(out.read_text())) == (spec.weights is not None)


# ---------------------------------------------------------------- 2. by hand


def test_llama_3_8b():
    expected = (
        2 * 128256 * 4096  # untied embedding and head
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096)
        + 4096
    )
    assert expected == 8_030_261_248  # Meta-Llama-3-8B safetensors total_size 16,060,522,496 / 2
    assert total(load_config_path(CONFIGS / "llama-3-8b")) == expected


def test_mixtral_8x7b():
    expected = (
        2 * 32000 * 4096
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 8 * 3 * 4096 * 14336 + 4096 * 8 + 2 * 4096)
        + 4096
    )
    assert expected == 46_702_792_704  # Hub safetensors total of Mixtral-8x7B
    count = parameter_count(load_config_path(CONFIGS / "mixtral-8x7b"))
    assert count.total == expected
    assert count.active == expected - 32 * (8 - 2) * 3 * 4096 * 14336


def test_qwen1_5_moe_a2_7b():
    # 24 layers, 16 heads of 128 (MHA) with q/k/v biases, 60 experts of 1408 (top 4) plus one
    # shared expert of 5632 behind a 2048 x 1 gate, a 2048 x 60 router; untied head.
    expert, shared = 3 * 2048 * 1408, 3 * 2048 * 5632
    expected = (
        2 * 151936 * 2048
        + 24 * (4 * 2048 * 2048 + 3 * 2048 + 60 * expert + shared + 2048 + 2048 * 60 + 2 * 2048)
        + 2048
    )
    count = parameter_count(load_config_path(CONFIGS / "qwen1.5-moe-a2.7b"))
    assert count.total == expected == 14_315_784_192
    assert count.active == expected - 24 * (60 - 4) * expert
    # model card: "14.3B parameters in total and 2.7B activated parameters during runtime"
    assert round(count.total / 1e9, 1) == 14.3
    assert round(count.active / 1e9, 1) == 2.7


def test_qwen3_30b_a3b():
    # 48 layers, 32 query / 4 KV heads of 128, q_norm and k_norm, 128 experts of 768 (top 8), no shared.
    expert = 3 * 2048 * 768
    expected = (
        2 * 151936 * 2048
        + 48 * (2 * 2048 * 32 * 128 + 2 * 2048 * 4 * 128 + 2 * 128 + 128 * expert + 2048 * 128 + 2 * 2048)
        + 2048
    )
    count = parameter_count(load_config_path(CONFIGS / "qwen3-30b-a3b"))
    assert count.total == expected == 30_532_122_624
    assert count.active == expected - 48 * (128 - 8) * expert
    # model card: 30.5B total, 3.3B activated, 29.9B non-embedding
    assert round(count.total / 1e9, 1) == 30.5
    assert abs(count.active - 3.3e9) < 0.1e9  # 3,353,032,704: the card's 3.3B is cut, not rounded
    assert round((count.total - count.embedding - count.head) / 1e9, 1) == 29.9


def test_pythia_6_9b():
    # GPT-NeoX: fused qkv and dense with biases, plain MLP with biases, two LayerNorms per layer
    # (parallel residual or not), untied embed_out.
    expected = (
        2 * 50432 * 4096
        + 32 * (4 * 4096 * 4096 + 4 * 4096 + 2 * 4096 * 16384 + 16384 + 4096 + 2 * 2 * 4096)
        + 2 * 4096
    )
    assert expected == 6_857_302_016  # Pythia README, total params of pythia-6.9b
    assert total(load_config_path(CONFIGS / "pythia-6.9b")) == expected


def test_opt_13b():
    # 2048 positions + OPT's offset of 2; biases everywhere; tied head; a final LayerNorm.
    expected = (
        50272 * 5120 + (2048 + 2) * 5120
        + 40 * (4 * 5120 * 5120 + 4 * 5120 + 2 * 5120 * 20480 + 20480 + 5120 + 2 * 2 * 5120)
        + 2 * 5120
    )
    spec = load_config_path(CONFIGS / "opt-13b")
    assert total(spec) == expected
    assert any("2048 + 2 learned positions" in n for n in spec.notes)


def test_gemma_3_1b_text_only():
    # 4 query heads / 1 KV head of 256, q/k norms, four RMSNorms per layer, GeGLU 6912, tied.
    expected = (
        262144 * 1152
        + 26 * (2 * 1152 * 4 * 256 + 2 * 1152 * 256 + 2 * 256 + 3 * 1152 * 6912 + 4 * 1152)
        + 1152
    )
    assert total(load_config_path(CONFIGS / "gemma-3-1b-it")) == expected


def test_gemma_3_27b_counts_its_vision_tower_as_the_preset_does():
    spec = load_config_path(CONFIGS / "gemma-3-27b")
    assert spec.weights.vocab_size == 262208  # Gemma3TextConfig's default; text_config leaves it out
    assert spec.weights.extra_parameters == 416_866_032 + 6_194_304
    assert any("vocab_size 262208" in n for n in spec.notes)
    # without the vision tower (head_dim etc. unchanged) only the text model is counted
    data = raw("gemma-3-27b")
    del data["vision_config"]
    assert spec_of(data).weights.extra_parameters == 0


def test_falcon_7b_old_format_counts_as_the_new_one():
    assert total(load_config_path(CONFIGS / "falcon-7b-rw")) == total(load_config_path(CONFIGS / "falcon-7b"))


def test_bert_counts_bert_model_with_its_pooler():
    spec = load_config_path(CONFIGS / "bert-base")
    assert total(spec) == 109_482_240  # BertModel.from_pretrained("bert-base-uncased")
    assert any("pooler" in n for n in spec.notes)


# ---------------------------------------------------------------- class defaults and switches


def test_tie_word_embeddings_defaults_differ_per_family():
    llama, gemma = raw("llama-2-7b"), raw("gemma-7b")
    del llama["tie_word_embeddings"]
    assert "tie_word_embeddings" not in gemma
    assert spec_of(llama).weights.tied_embeddings is False  # LlamaConfig default
    assert spec_of(gemma).weights.tied_embeddings is True  # GemmaConfig default
    assert any("tie_word_embeddings true" in n for n in spec_of(gemma).notes)
    # Qwen2.5-0.5B-style: explicit true drops the head
    tied = raw("qwen2-7b") | {"tie_word_embeddings": True}
    assert total(spec_of(raw("qwen2-7b"))) - total(spec_of(tied)) == 152064 * 3584


def test_llama_attention_and_mlp_bias():
    base = total(spec_of(raw("llama-3-8b")))
    biased = spec_of(raw("llama-3-8b") | {"attention_bias": True, "mlp_bias": True})
    assert total(biased) - base == 32 * ((32 + 2 * 8) * 128 + 4096 + 2 * 14336 + 4096)


def test_qwen3_moe_sparse_step_makes_odd_layers_moe():
    dense, expert = 3 * 2048 * 6144, 3 * 2048 * 768
    spec = spec_of(raw("qwen3-30b-a3b") | {"decoder_sparse_step": 2})
    count = parameter_count(spec)
    assert count.moe_layers == 24  # layers 1, 3, ..., 47: (i + 1) % 2 == 0
    assert total(spec_of(raw("qwen3-30b-a3b"))) - count.total == 24 * (128 * expert + 2048 * 128 - dense)


@pytest.mark.parametrize(
    ("name", "change", "words"),
    [
        ("qwen3-30b-a3b", {"mlp_only_layers": [0, 5]}, "mlp_only_layers"),
        ("qwen1.5-moe-a2.7b", {"mlp_only_layers": [3]}, "mlp_only_layers"),
        ("deepseek-v3", {"moe_layer_freq": 2}, "moe_layer_freq 2"),
        ("deepseek-v2", {"attention_bias": True}, "attention_bias"),
        ("opt-13b", {"word_embed_proj_dim": 512}, "word_embed_proj_dim 512"),
        ("llama-3-8b", {"vocab_size": None}, "no vocab_size"),
        ("mixtral-8x7b", {"num_local_experts": None}, "no num_local_experts"),
        ("bert-base", {"position_embedding_type": "relative_key"}, "relative_key"),
        ("gpt2", {"add_cross_attention": True}, "cross-attention"),
        ("llama-3-8b", {"model_type": "not_a_family"}, "'not_a_family' is not one kvcalc counts"),
        ("llama-3-8b", {"model_type": None}, "'(none)' is not one kvcalc counts"),
    ],
)
def test_uncertain_counts_are_left_out_with_a_note(name, change, words):
    data = raw(name) | change
    spec = spec_of(data)
    assert words in skip_note(spec)
    assert parameter_count(spec) is None


def test_gemma3_unknown_tower_is_left_out():
    # SigLIP's pooling head (vision_use_head true) is counted now: tests/test_weights_hybrids.py
    data = copy.deepcopy(raw("gemma-3-27b"))
    data["vision_config"].update({"model_type": "clip_vision_model"})
    assert "vision" in skip_note(spec_of(data))


def test_falcon_norms_follow_the_architecture():
    one = raw("falcon-40b") | {"num_ln_in_parallel_attn": 1}
    serial = raw("falcon-7b") | {"parallel_attn": False}
    assert spec_of(raw("falcon-40b")).weights.norms_per_layer == 2
    assert spec_of(one).weights.norms_per_layer == 1
    assert spec_of(raw("falcon-7b")).weights.norms_per_layer == 1
    assert spec_of(serial).weights.norms_per_layer == 2


# ---------------------------------------------------------------- 3. transformers, if installed

# Variants worth building: each switches on a part the fixtures leave off.
VARIANTS = {
    "llama-3-8b+bias": ("llama-3-8b", {"attention_bias": True, "mlp_bias": True}),
    "llama-3-8b+tied": ("llama-3-8b", {"tie_word_embeddings": True}),
    "qwen3-30b-a3b+step2": ("qwen3-30b-a3b", {"decoder_sparse_step": 2}),
    "qwen1.5-moe-a2.7b+step2": ("qwen1.5-moe-a2.7b", {"decoder_sparse_step": 2}),
    "qwen3-8b+bias": ("qwen3-8b", {"attention_bias": True}),
    "gemma-7b+bias": ("gemma-7b", {"attention_bias": True}),
    "pythia-6.9b-nobias": ("pythia-6.9b", {"attention_bias": False, "use_parallel_residual": False}),
    "opt-13b+postnorm": ("opt-13b", {"do_layer_norm_before": False, "enable_bias": False}),
    "falcon-40b+1ln": ("falcon-40b", {"num_ln_in_parallel_attn": 1, "bias": True}),
    "falcon-7b+serial": ("falcon-7b", {"parallel_attn": False, "ffn_hidden_size": 16384}),
    "falcon-7b+mha": ("falcon-7b", {"multi_query": False}),  # num_kv_heads 71 now counts
    "gpt2+inner": ("gpt2", {"n_inner": 2048}),
    "deepseek-v2+qdense": ("deepseek-v2", {"q_lora_rank": None, "first_k_dense_replace": 3}),
}
# Configs transformers reads under another model_type: the remote-code formats of the same model.
# multimodal wrappers whose causal-LM class in transformers is the language model alone (Qwen3.5): kvcalc
# counts what the checkpoint holds, the vision tower too, as the image-text-to-text class builds it
IMAGE_TEXT = {"qwen3_5", "qwen3_5_moe", "llama4"}
BUILT_AS = {
    "kimi_k2": ("deepseek_v3", "its config.json names DeepseekV3Config in auto_map; transformers has no kimi_k2"),
    "RefinedWebModel": ("falcon", "Falcon-7B's remote-code format; transformers reads it as falcon"),
}


def transformers_count(data: dict) -> int:
    """Parameters plus persistent buffers of the model transformers builds, counted on meta."""
    transformers = pytest.importorskip("transformers")
    data = dict(data)
    data["model_type"] = BUILT_AS.get(data["model_type"], (data["model_type"],))[0]
    try:
        cfg = transformers.AutoConfig.for_model(**data)
    except (ValueError, KeyError) as exc:
        pytest.skip(f"transformers {transformers.__version__} cannot read it: {exc}"[:200])
    # BERT: kvcalc counts BertModel (the encoder and pooler), as the bert presets do.
    auto = transformers.AutoModel if data["model_type"] == "bert" else transformers.AutoModelForCausalLM
    if data["model_type"] in IMAGE_TEXT and data.get("vision_config"):
        auto = transformers.AutoModelForImageTextToText  # the whole checkpoint: vision tower and language model
    try:
        return meta_count(lambda: auto.from_config(cfg))
    except ValueError as exc:  # no class for this config in the auto mapping
        pytest.skip(f"transformers {transformers.__version__} cannot build it: {exc}"[:200])


def cross_check_cases():
    cases = [pytest.param(raw(name), id=name) for name in FIXTURES if name not in NOT_DERIVED]
    for case, (name, change) in VARIANTS.items():
        cases.append(pytest.param(raw(name) | change, id=case))
    return cases


@pytest.mark.parametrize("data", cross_check_cases())
def test_count_matches_the_model_transformers_builds(data):
    """Where transformers is installed (an optional extra, CPU only, nothing downloaded)."""
    spec = spec_of(data)
    assert spec.weights is not None, spec.notes
    assert total(spec) == transformers_count(data)


def test_variants_change_the_count():
    # each variant is a different model, so the cross-check above tests something new
    for case, (name, change) in VARIANTS.items():
        assert total(spec_of(raw(name) | change)) != total(load_config_path(CONFIGS / name)), case


def test_bloom_and_mpt_counts_by_hand():
    # BLOOM-560m: hidden 1024, vocab 250880, 24 layers, LayerNorms (weight + bias), biases everywhere, head tied
    per_layer = (2 * 2 * 1024  # input and post-attention LayerNorms
                 + 1024 * 3 * 1024 + 3 * 1024  # query_key_value
                 + 1024 * 1024 + 1024  # dense
                 + 1024 * 4096 + 4096 + 4096 * 1024 + 1024)  # dense_h_to_4h, dense_4h_to_h
    bloom = 250880 * 1024 + 2 * 1024 + 24 * per_layer + 2 * 1024  # + embedding LayerNorm and ln_f
    assert total(load_config_path(CONFIGS / "bloom-560m")) == bloom == 559_214_592
    # MPT-7B: d_model 4096, vocab 50432, 32 layers, no_bias (norms carry a weight only), expansion_ratio 4, tied
    per_layer = 2 * 4096 + 4096 * 3 * 4096 + 4096 * 4096 + 2 * 4096 * 4 * 4096
    mpt = 50432 * 4096 + 32 * per_layer + 4096
    assert total(load_config_path(CONFIGS / "mpt-7b-instruct")) == mpt == 6_649_286_656


def test_nemotron_3_nano_relu2_experts_by_hand():
    # hybrid_override_pattern: 23 Mamba2 (M), 23 mixture-of-experts (E), 6 attention (*) layers; hidden 2688
    pattern = raw("nemotron-3-nano-30b-a3b")["hybrid_override_pattern"]
    assert (pattern.count("M"), pattern.count("E"), pattern.count("*")) == (23, 23, 6)
    h = 2688
    # Mamba2: 64 heads x 64 = 4096 inner, 8 groups of state 128, kernel 4 with a conv bias
    mamba = (h * (2 * 4096 + 2 * 8 * 128 + 64) + (4096 + 2 * 8 * 128) * (4 + 1) + 3 * 64 + 4096 + 4096 * h)
    attention = h * 32 * 128 + 2 * h * 2 * 128 + 32 * 128 * h  # 32 query / 2 KV heads of 128, no biases
    # 128 relu2 experts of up and down (1856), one relu2 shared MLP of 3712, a router with a per-expert bias
    expert = 2 * h * 1856
    moe = 128 * expert + 2 * h * 3712 + 128 * h + 128
    expected = 2 * 131072 * h + 23 * mamba + 6 * attention + 23 * moe + 52 * h + h  # untied head; norms
    count = parameter_count(load_config_path(CONFIGS / "nemotron-3-nano-30b-a3b"))
    assert count.total == expected == 31_577_940_288  # model card: 31.6B total
    assert count.active == expected - 23 * (128 - 6) * expert == 3_580_076_352  # top 6; card: 3.6B with embeddings
    assert count.moe_layers == 23


def test_nemotron_h_experts_that_are_not_counted_are_said():
    for change, words in (({"moe_latent_size": 1024}, "moe_latent_size"),
                          ({"n_shared_experts": 2}, "n_shared_experts 2"), ({"mlp_bias": True}, "mlp_bias")):
        assert words in skip_note(spec_of(raw("nemotron-3-nano-30b-a3b") | change))


def test_moe_layer_indices_exclude_the_period_rule():
    from pydantic import ValidationError

    from kvcalc.spec import MoE

    base = {"experts": 4, "experts_per_token": 2, "intermediate_size": 8}
    moe = MoE.model_validate(base | {"layer_indices": [1, 4]})
    assert [i for i in range(6) if moe.is_moe_layer(i)] == [1, 4]
    for bad in ({"layer_period": 2}, {"first_dense_layers": 1}, {"layer_offset": 1}):
        with pytest.raises(ValidationError, match="layer_indices goes without"):
            MoE.model_validate(base | {"layer_indices": [1]} | bad)
    with pytest.raises(ValidationError, match="twice"):
        MoE.model_validate(base | {"layer_indices": [1, 1]})
    with pytest.raises(ValidationError):
        MoE.model_validate(base | {"expert_kind": "swiglu"})


def test_chatglm3_6b_by_hand():
    # padded_vocab_size 65024, hidden 4096, 28 GLMBlocks: query_key_value 4096 x (32 + 2 x 2) x 128 with a bias
    # (add_qkv_bias), dense 4096 x 4096, SwiGLU dense_h_to_4h 4096 x 2 x 13696 and dense_4h_to_h, two RMSNorms;
    # final_layernorm; a separate output_layer; the persistent rotary inv_freq of 128 / 2 / 2 = 32 values
    per_layer = 4096 * 36 * 128 + 36 * 128 + 4096 * 4096 + 4096 * 2 * 13696 + 13696 * 4096 + 2 * 4096
    expected = 2 * 65024 * 4096 + 28 * per_layer + 4096 + 32
    # ChatGLM2-6B (the same shape) pytorch_model.bin.index.json total_size 12,487,168,064 bytes of float16
    assert expected == 12_487_168_064 // 2 == 6_243_584_032
    spec = load_config_path(CONFIGS / "chatglm3-6b")
    assert total(spec) == expected
    assert any("inv_freq" in n for n in spec.notes)
    # add_bias_linear puts biases on dense and both MLP projections
    biased = spec_of(raw("chatglm3-6b") | {"add_bias_linear": True})
    assert total(biased) - expected == 28 * (4096 + 2 * 13696 + 4096)
    assert "pre_seq_len" in skip_note(spec_of(raw("chatglm3-6b") | {"pre_seq_len": 128}))


# Qwen3_5MoeTextConfig's class defaults (transformers 5.24, configuration_qwen3_5_moe.py), written out: no
# released Qwen3.5-MoE config.json was found to copy
QWEN3_5_MOE_TEXT = {
    "model_type": "qwen3_5_moe_text", "vocab_size": 248320, "hidden_size": 2048, "num_hidden_layers": 40,
    "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256, "max_position_embeddings": 32768,
    "tie_word_embeddings": False, "attention_bias": False, "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
    "linear_value_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
    "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512, "num_experts_per_tok": 8,
    "num_experts": 256, "torch_dtype": "bfloat16",
    "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(40)],
}


def test_qwen3_5_moe_by_hand():
    h = 2048
    # every layer: two RMSNorms, 256 gated experts of 512, a gated shared expert of 512 behind a 2048 x 1 gate
    expert = 3 * h * 512
    moe = 256 * expert + 3 * h * 512 + h * 256 + h
    # 10 full-attention layers: q_proj twice as wide (the output gate), q/k norms of 256
    attention = h * 16 * 256 * 2 + 2 * h * 2 * 256 + 16 * 256 * h + 2 * 256
    # 30 Gated DeltaNet layers: keys 16 x 128, values 32 x 128, kernel 4
    deltanet = (h * (2 * 16 * 128 + 2 * 32 * 128) + h * 2 * 32 + (2 * 16 * 128 + 32 * 128) * 4 + 2 * 32 + 128
                + 32 * 128 * h)
    expected = 2 * 248320 * h + 40 * (2 * h + moe) + 10 * attention + 30 * deltanet + h
    spec = spec_of(QWEN3_5_MOE_TEXT)
    count = parameter_count(spec)
    assert count.total == expected
    assert count.active == expected - 40 * (256 - 8) * expert
    assert count.total == transformers_count(QWEN3_5_MOE_TEXT)


# Families counted from transformers' class defaults (no released config.json among the fixtures), each with the
# switches its modelling file reads, checked against the model transformers builds on the meta device
DEFAULT_CASES = {
    "granite": {"attention_bias": True, "mlp_bias": True}, "granitemoe": {"attention_bias": True},
    "smollm3": {"attention_bias": True, "mlp_bias": True}, "helium": {"attention_bias": True, "mlp_bias": True},
    "seed_oss": {"attention_out_bias": True, "mlp_bias": True}, "ernie4_5": {"use_bias": True},
    "arcee": {"attention_bias": True, "mlp_bias": True}, "glm": {"attention_bias": False},
    "glm4": {"attention_bias": False}, "cwm": {"mlp_bias": True}, "exaone4": {}, "olmo2": {"attention_bias": True},
    "olmo3": {}, "olmoe": {}, "minimax_m2": {}, "qwen3_5_moe": {}, "qwen3_5_moe_text": {},
    "starcoder2": {"use_bias": False}, "stablelm": {"use_parallel_residual": True, "use_qkv_bias": True},
    "phi": {}, "cohere": {"use_qk_norm": True, "attention_bias": True}, "cohere2": {"attention_bias": True},
    # GPTBigCodeConfig sets num_key_value_heads from multi_query; a released config states multi_query alone
    "gpt_bigcode": {"multi_query": False, "num_key_value_heads": None},
    "gptj": {"n_inner": 8192}, "codegen": {"n_inner": 8192}, "gpt_neo": {"intermediate_size": 4096},
    "nanochat": {"attention_bias": True},
}


def default_cases():
    cases = []
    for model_type, change in DEFAULT_CASES.items():
        cases.append(pytest.param(model_type, {}, id=model_type))
        if change:
            cases.append(pytest.param(model_type, change, id=f"{model_type}+" + "+".join(change)))
    return cases


@pytest.mark.parametrize(("model_type", "change"), default_cases())
def test_class_defaults_count_as_transformers_builds_them(model_type, change):
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model(model_type).to_dict() | change
    spec = spec_of(data)
    assert total(spec) == transformers_count(data)
    if change:  # the switch changes the count, so the comparison above tests it
        assert total(spec) != total(spec_of(transformers.AutoConfig.for_model(model_type).to_dict()))


def test_olmo2_norms_span_every_head_by_hand():
    # Olmo2Config's defaults: vocab 50304, hidden 4096, 32 layers of 32 heads (num_key_value_heads None: 32) of 128,
    # MLP 11008, untied; q_norm over 32 x 128 and k_norm over 32 x 128; two RMSNorms after attention and MLP
    data = {"model_type": "olmo2", "vocab_size": 50304, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 2048,
            "torch_dtype": "float32"}
    per_layer = 4 * 4096 * 4096 + (32 + 32) * 128 + 3 * 4096 * 11008 + 2 * 4096
    assert total(spec_of(data)) == 2 * 50304 * 4096 + 32 * per_layer + 4096


def test_a_multimodal_wrapper_whose_other_parts_are_not_counted_gets_no_count():
    # a LLaVA-style config.json: a known language model in text_config beside a vision tower kvcalc does not
    # know; the language model alone would understate the checkpoint (GOT-OCR2's defaults did, in the survey)
    data = {"model_type": "llava", "text_config": raw("qwen2-7b"), "vision_config": {"model_type": "clip_vision_model"}}
    note = skip_note(spec_of(data))
    assert "'llava' checkpoint wraps the language model" in note and "vision_config" in note
    assert spec_of(raw("qwen2-7b")).weights is not None  # the same language model on its own is counted
