"""Reading Hugging Face config.json files (kvcalc.sources.config_json) and `kvcalc import`.

Fixtures live in tests/fixtures/configs/<model>/config.json (see the README there for where
each one's values come from). Expected numbers are written as arithmetic from
/work/shared/reference/model_facts.yaml (layers, KV heads, head_dim, windows, MLA widths),
never computed by kvcalc. Bytes per element: 2 for bf16/fp16, 4 for fp32.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kvcalc.errors import PresetError
from kvcalc.estimate import estimate
from kvcalc.sources.config_json import load_config_path, spec_from_config
from kvcalc.sources.config_layers import compact_pattern
from kvcalc.sources.presets import load_file
from kvcalc.spec import expand_pattern

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
PRESETS = Path(__file__).parent.parent / "model_presets"

# fixture folder -> bundled preset of the same model
PRESET_OF = {
    "bert-base": "bert-base",
    "deepseek-v2": "deepseek-v2",
    "deepseek-v3": "deepseek-v3",
    "falcon-40b": "falcon-40b",
    "falcon-7b": "falcon-7b",
    "falcon-7b-rw": "falcon-7b",
    "gemma-2-27b": "gemma-2-27b",
    "gemma-2-9b": "gemma-2-9b",
    "gemma-3-27b": "gemma-3-27b",
    "gemma-7b": "gemma-7b",
    "gpt2": "gpt2",
    "jamba-v0.1": "jamba-v0.1",
    "kimi-k2": "kimi-k2",
    "llama-2-7b": "llama-2-7b",
    "llama-3-8b": "llama-3-8b",
    "llama-4-scout": "llama-4-scout",
    "mistral-7b-v0.1": "mistral-7b-v0.1",
    "mixtral-8x7b": "mixtral-8x7b",
    "phi-3-mini-4k": "phi-3-mini-4k",
    "qwen2-7b": "qwen2-7b",
    "qwen3-8b": "qwen3-8b",
    "qwen3-next-80b-a3b": "qwen3-next-80b-a3b",
}
CONTEXTS = (1, 4096, 8192, 131072)


def config(name: str):
    return load_config_path(CONFIGS / name)


def raw(name: str) -> dict:
    return json.loads((CONFIGS / name / "config.json").read_text())


def from_dict(data: dict, origin: str = "test/config.json"):
    return spec_from_config(data, origin)


def figures(spec, context: int, **kw) -> tuple[int, int, int]:
    e = estimate(spec, context=context, **kw)
    return e.total_bytes, e.bytes_per_token, e.state_bytes


def has_note(spec, *words: str) -> bool:
    return any(all(w in note for w in words) for note in spec.notes)


# ---------------------------------------------------------------- every fixture


def test_every_fixture_has_a_known_expectation():
    folders = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())
    assert len(folders) >= 27
    assert set(PRESET_OF) <= set(folders)
    for folder in folders:
        assert (CONFIGS / folder / "config.json").is_file()


@pytest.mark.parametrize("folder", sorted(PRESET_OF))
def test_config_matches_its_preset(folder):
    spec, preset = config(folder), load_file(PRESETS / f"{PRESET_OF[folder]}.yaml")
    assert spec.max_context == preset.max_context
    assert spec.architecture == preset.architecture
    for context in CONTEXTS:
        assert figures(spec, context) == figures(preset, context), context


@pytest.mark.parametrize("folder", sorted(p.name for p in CONFIGS.iterdir() if p.is_dir()))
def test_import_yaml_round_trips(folder, tmp_path):
    from kvcalc.sources.config_json import preset_yaml

    spec = config(folder)
    out = tmp_path / f"{folder}.yaml"
    out.write_text(preset_yaml(spec))
    again = load_file(out)
    assert again == spec
    for context in CONTEXTS:
        assert figures(again, context) == figures(spec, context)


# ---------------------------------------------------------------- the traps, by hand


def test_head_dim_explicit_beats_hidden_over_heads():
    # Gemma-7B: head_dim 256 while 3072 / 16 = 192.
    spec = config("gemma-7b")
    assert spec.attention.head_dim == 256
    assert estimate(spec, context=1).bytes_per_token == 2 * 28 * 16 * 256 * 2
    # Gemma-2-27B: 128, not 4608 / 32 = 144 (fp32 base config, its own dtype asked for).
    assert estimate(config("gemma-2-27b"), context=1, kv_dtype="fp32").bytes_per_token == 2 * 46 * 16 * 128 * 4
    # Qwen3-8B writes head_dim out: no inference note.
    assert not has_note(config("qwen3-8b"), "head_dim")


def test_head_dim_inferred_is_noted():
    spec = config("phi-3-mini-4k")
    assert spec.attention.head_dim == 96  # 3072 / 32
    assert "inferred: head_dim = hidden_size / num_attention_heads = 3072 / 32 = 96" in spec.notes


def test_no_kv_heads_field_means_mha():
    spec = config("llama-2-7b")
    assert (spec.attention.kind, spec.attention.kv_heads) == ("mha", 32)
    assert estimate(spec, context=4096).total_bytes == 2 * 32 * 32 * 128 * 2 * 4096
    assert "inferred: MHA, 32 KV heads (no num_key_value_heads in config.json)" in spec.notes


def test_kv_heads_null_means_mha():
    data = raw("llama-3-8b") | {"num_key_value_heads": None}
    spec = from_dict(data)
    assert spec.attention.kv_heads == 32 and has_note(spec, "inferred: MHA")


def test_num_kv_heads_alias_falcon_40b():
    spec = config("falcon-40b")
    assert (spec.attention.kind, spec.attention.kv_heads, spec.attention.head_dim) == ("gqa", 8, 64)
    assert estimate(spec, context=1).bytes_per_token == 2 * 60 * 8 * 64 * 2


def test_falcon_7b_multi_query_means_one_kv_head():
    spec = config("falcon-7b")  # says num_kv_heads 71 with multi_query true
    assert (spec.attention.kind, spec.attention.kv_heads) == ("mqa", 1)
    assert estimate(spec, context=2048).total_bytes == 2 * 32 * 1 * 64 * 2 * 2048
    assert has_note(spec, "ignored: num_kv_heads 71", "multi_query true")


def test_falcon_old_refinedweb_names():
    spec = config("falcon-7b-rw")  # n_head, n_layer, multi_query, model_type RefinedWebModel
    assert (spec.layers.count, spec.attention.heads, spec.attention.kv_heads) == (32, 71, 1)
    assert spec.max_context == 2048
    assert has_note(spec, "inferred: max_position_embeddings = 2048")


def test_falcon_without_multi_query_uses_num_kv_heads():
    data = raw("falcon-7b") | {"multi_query": False}
    assert from_dict(data).attention.kv_heads == 71


def test_falcon_40b_old_format_n_head_kv():
    data = {
        "model_type": "RefinedWeb", "hidden_size": 8192, "n_head": 128, "n_head_kv": 8,
        "n_layer": 60, "parallel_attn": True, "torch_dtype": "bfloat16",
    }
    spec = from_dict(data)
    assert spec.attention.kv_heads == 8
    assert estimate(spec, context=1).bytes_per_token == 2 * 60 * 8 * 64 * 2


def test_mla_ignores_num_key_value_heads():
    spec = config("deepseek-v3")
    assert spec.attention.kind == "mla"
    assert (spec.attention.kv_lora_rank, spec.attention.qk_rope_head_dim) == (512, 64)
    assert estimate(spec, context=1).bytes_per_token == 61 * (512 + 64) * 2
    assert has_note(spec, "ignored: num_key_value_heads 128")
    kimi = config("kimi-k2")  # half the heads, same latent
    assert estimate(kimi, context=1).bytes_per_token == 61 * (512 + 64) * 2


def test_mla_without_query_compression():
    data = raw("deepseek-v2") | {"q_lora_rank": None, "num_hidden_layers": 27, "num_attention_heads": 16}
    spec = from_dict(data)
    assert spec.attention.q_lora_rank is None
    assert estimate(spec, context=1).bytes_per_token == 27 * 576 * 2  # DeepSeek-V2-Lite shape


def test_qwen2_sliding_window_ignored_when_use_sliding_window_false():
    spec = config("qwen2-7b")
    assert spec.layers.order() == ["full"] * 28
    assert estimate(spec, context=131072).total_bytes == 2 * 28 * 4 * 128 * 2 * 131072
    assert "ignored: sliding_window 131072 because use_sliding_window is false" in spec.notes


def test_qwen2_max_window_layers():
    # transformers' Qwen2Config: layers i >= max_window_layers use the window.
    data = raw("qwen2-7b") | {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    spec = from_dict(data)
    assert spec.layers.order() == ["full"] * 20 + ["sliding"] * 8
    per_layer = 2 * 4 * 128 * 2
    assert estimate(spec, context=8192).total_bytes == per_layer * (20 * 8192 + 8 * 4096)


def test_qwen_moe_window_rules():
    # transformers' Qwen2MoeConfig: even layers below max_window_layers; Qwen3MoeConfig: all.
    on = {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    moe2 = from_dict(raw("qwen1.5-moe-a2.7b") | on)
    assert moe2.layers.order() == ["sliding", "full"] * 10 + ["full"] * 4
    assert estimate(moe2, context=8192).total_bytes == 2 * 16 * 128 * 2 * (10 * 4096 + 14 * 8192)
    moe3 = from_dict(raw("qwen3-30b-a3b") | on)
    assert moe3.layers.order() == ["sliding"] * 48
    assert has_note(moe3, "the window applies to every layer")


def test_mistral_window_on_every_layer_and_null_means_none():
    spec = config("mistral-7b-v0.1")
    assert spec.layers.pattern == ["sliding"] and spec.layers.kinds["sliding"].window == 4096
    assert estimate(spec, context=32768).total_bytes == 32 * 2 * 8 * 128 * 2 * 4096
    assert config("mixtral-8x7b").layers.order() == ["full"] * 32  # sliding_window null


INFERRED_WINDOW = "inferred: sliding_window = 4096 (transformers' default for {}; not in config.json)"


def test_mistral_without_sliding_window_takes_the_class_default():
    # MistralConfig's sliding_window defaults to 4096; transformers slides every layer.
    spec = from_dict(_without("mistral-7b-v0.1", "sliding_window"))
    assert estimate(spec, context=32768).total_bytes == 32 * 2 * 8 * 128 * 2 * 4096
    assert INFERRED_WINDOW.format("mistral") in spec.notes
    # "sliding_window": null, as Mistral-7B-v0.2+ write it, means no window
    null = from_dict(raw("mistral-7b-v0.1") | {"sliding_window": None})
    assert estimate(null, context=32768).total_bytes == 32 * 2 * 8 * 128 * 2 * 32768
    assert not has_note(null, "sliding_window")


def test_mixtral_and_phi3_default_to_no_window():
    # MixtralConfig and Phi3Config default sliding_window to None.
    mixtral = from_dict(_without("mixtral-8x7b", "sliding_window"))
    assert estimate(mixtral, context=32768).total_bytes == 32 * 2 * 8 * 128 * 2 * 32768
    phi3 = from_dict(_without("phi-3-mini-4k", "sliding_window"))
    assert estimate(phi3, context=4096).total_bytes == 32 * 2 * 32 * 96 * 2 * 4096
    assert not has_note(mixtral, "sliding_window") and not has_note(phi3, "sliding_window")


def test_qwen_window_switched_on_without_size_takes_the_class_default():
    on = {"use_sliding_window": True, "max_window_layers": 20}
    # qwen2: layers 20..27 slide at 4096
    qwen2 = from_dict(_without("qwen2-7b", "sliding_window") | on)
    assert estimate(qwen2, context=8192).total_bytes == 2 * 4 * 128 * 2 * (20 * 8192 + 8 * 4096)
    assert INFERRED_WINDOW.format("qwen2") in qwen2.notes
    # qwen3 (36 layers, 8 KV heads x 128): layers 20..35 slide
    qwen3 = from_dict(_without("qwen3-8b", "sliding_window") | on)
    assert estimate(qwen3, context=8192).total_bytes == 2 * 8 * 128 * 2 * (20 * 8192 + 16 * 4096)
    assert INFERRED_WINDOW.format("qwen3") in qwen3.notes
    # qwen2_moe (24 layers, 16 KV heads x 128): even layers below 20 slide, 10 of them
    moe2 = from_dict(_without("qwen1.5-moe-a2.7b", "sliding_window") | on)
    assert estimate(moe2, context=8192).total_bytes == 2 * 16 * 128 * 2 * (10 * 4096 + 14 * 8192)
    assert INFERRED_WINDOW.format("qwen2_moe") in moe2.notes
    # qwen3_moe (48 layers, 4 KV heads x 128): every layer slides
    moe3 = from_dict(_without("qwen3-30b-a3b", "sliding_window") | on)
    assert estimate(moe3, context=8192).total_bytes == 48 * 2 * 4 * 128 * 2 * 4096
    assert INFERRED_WINDOW.format("qwen3_moe") in moe3.notes


def test_qwen_window_needs_use_sliding_window():
    # Qwen2Config's use_sliding_window defaults to false: a window without it is unused.
    spec = from_dict(_without("qwen2-7b", "use_sliding_window"))
    assert estimate(spec, context=131072).total_bytes == 2 * 28 * 4 * 128 * 2 * 131072
    assert has_note(spec, "ignored: sliding_window 131072 because use_sliding_window is not set")
    neither = from_dict(_without("qwen2-7b", "use_sliding_window", "sliding_window"))
    assert estimate(neither, context=8192).total_bytes == 2 * 28 * 4 * 128 * 2 * 8192
    assert not has_note(neither, "sliding_window")


def test_gemma_without_sliding_window_takes_the_class_default():
    gemma2 = from_dict(_without("gemma-2-9b", "sliding_window"))
    assert estimate(gemma2, context=8192).total_bytes == 2 * 8 * 256 * 2 * (21 * 8192 + 21 * 4096)
    assert INFERRED_WINDOW.format("gemma2") in gemma2.notes
    gemma3 = from_dict(_without("gemma-3-27b", "sliding_window"))  # the fixture says 1024
    per_layer = 2 * 16 * 128 * 2
    assert estimate(gemma3, context=131072).total_bytes == per_layer * (10 * 131072 + 52 * 4096)
    assert INFERRED_WINDOW.format("gemma3_text") in gemma3.notes


def test_phi3_window_on_every_layer():
    spec = config("phi-3-mini-4k")
    assert estimate(spec, context=4096).total_bytes == 32 * 2 * 32 * 96 * 2 * 2047


def test_layer_types_list_wins():
    spec = config("gemma-3-1b-it")  # 26 layers, full at 5, 11, 17, 23
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [5, 11, 17, 23]
    per_layer = 2 * 1 * 256 * 2
    assert estimate(spec, context=32768).total_bytes == per_layer * (4 * 32768 + 22 * 512)
    # layer_types beats a contradicting sliding_window_pattern
    data = raw("gemma-3-1b-it") | {"sliding_window_pattern": 2}
    assert from_dict(data).layers.order() == order


def test_layer_types_unknown_value_is_an_error():
    data = raw("gemma-3-1b-it")
    data["layer_types"] = ["full_attention"] * 25 + ["wormhole_attention"]
    with pytest.raises(PresetError, match=r"layer_types\[25\].*wormhole_attention"):
        from_dict(data)


def test_gemma3_sliding_window_pattern_nested_text_config():
    spec = config("gemma-3-27b")
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]
    assert order[60:] == ["sliding", "sliding"]
    per_layer = 2 * 16 * 128 * 2
    assert estimate(spec, context=131072).total_bytes == per_layer * (10 * 131072 + 52 * 1024)
    assert spec.layers.pattern == ["sliding*5", "full"]
    assert spec.dtype == "bf16"  # torch_dtype only at the top level


def test_gemma3_minimal_text_config_uses_class_defaults():
    # The original gemma-3-27b-it upload leaves the pattern and the context to the class.
    data = raw("gemma-3-27b")
    for key in ("sliding_window_pattern", "max_position_embeddings"):
        del data["text_config"][key]
    spec = from_dict(data)
    assert spec.max_context == 131072
    assert sum(k == "full" for k in spec.layers.order()) == 10
    assert has_note(spec, "inferred: sliding_window_pattern = 6")
    assert has_note(spec, "inferred: max_position_embeddings = 131072")


def test_gemma2_alternation_starts_with_sliding():
    spec = config("gemma-2-9b")
    order = spec.layers.order()
    assert order[:4] == ["sliding", "full", "sliding", "full"] and order.count("full") == 21
    per_layer = 2 * 8 * 256 * 2
    assert estimate(spec, context=8192).total_bytes == per_layer * (21 * 8192 + 21 * 4096)
    assert has_note(spec, "inferred: Gemma-2 alternation")


def test_llama4_no_rope_layers_and_chunk():
    spec = config("llama-4-scout")
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == list(range(3, 48, 4))
    assert spec.layers.kinds["chunked"].chunk == 8192
    per_layer = 2 * 8 * 128 * 2
    assert estimate(spec, context=131072).total_bytes == per_layer * (12 * 131072 + 36 * 8192)


def test_llama4_interval_when_no_rope_layers_missing_or_empty():
    for value in (None, []):
        data = copy.deepcopy(raw("llama-4-scout"))
        if value is None:
            del data["text_config"]["no_rope_layers"]
        else:
            data["text_config"]["no_rope_layers"] = value
        data["text_config"]["no_rope_layer_interval"] = 4
        assert from_dict(data).layers.order() == config("llama-4-scout").layers.order()


def test_llama4_chunk_size_null_means_full():
    data = copy.deepcopy(raw("llama-4-scout"))
    data["text_config"]["attention_chunk_size"] = None
    spec = from_dict(data)
    assert set(spec.layers.order()) == {"full"}
    assert has_note(spec, "inferred: chunked layers hold the whole context")


def test_jamba_attention_period_and_mamba_state():
    spec = config("jamba-v0.1")
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k != "mamba"] == [4, 12, 20, 28]
    e = estimate(spec, context=262144)
    assert e.total_bytes == 4 * 2 * 8 * 128 * 2 * 262144 == 4 * 2**30  # AI21's "4GB"
    # state: d_inner = 2 x 4096; SSM 8192 x 16 + conv 8192 x 4, per Mamba layer, bf16
    assert e.state_bytes == 28 * (8192 * 16 + 8192 * 4) * 2


def test_jamba_attention_offset_zero_is_layer_zero():
    # JambaConfig accepts offset 0: layers 0, 8, 16, 24 are attention.
    spec = from_dict(raw("jamba-v0.1") | {"attn_layer_offset": 0})
    assert [i for i, k in enumerate(spec.layers.order()) if k != "mamba"] == [0, 8, 16, 24]
    e = estimate(spec, context=262144)
    assert e.total_bytes == 4 * 2 * 8 * 128 * 2 * 262144
    assert e.state_bytes == 28 * (8192 * 16 + 8192 * 4) * 2


@pytest.mark.parametrize("offset", [8, 9])
def test_jamba_offset_not_below_period_is_an_error(offset):
    # Otherwise no layer is attention and the cache reads 0 bytes; JambaConfig refuses it.
    with pytest.raises(PresetError) as info:
        from_dict(raw("jamba-v0.1") | {"attn_layer_offset": offset}, origin="odd/config.json")
    text = str(info.value)
    assert text.startswith("odd/config.json: ")
    assert f"attn_layer_offset {offset} must be smaller than attn_layer_period 8" in text


def test_transformers_also_refuses_jamba_offset_not_below_period():
    transformers = pytest.importorskip("transformers")
    with pytest.raises(Exception, match="must be smaller than attention layer period"):
        transformers.AutoConfig.for_model(**(raw("jamba-v0.1") | {"attn_layer_offset": 8}))


def test_max_window_layers_zero():
    on = {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 0}
    # qwen2: layers i >= 0 slide, so all 28 do
    spec = from_dict(raw("qwen2-7b") | on)
    assert estimate(spec, context=8192).total_bytes == 28 * 2 * 4 * 128 * 2 * 4096
    # qwen2_moe: even layers i < 0 slide, so none do
    moe = from_dict(raw("qwen1.5-moe-a2.7b") | on)
    assert estimate(moe, context=8192).total_bytes == 24 * 2 * 16 * 128 * 2 * 8192


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("attn_layer_offset", -1, "attn_layer_offset must be a whole number >= 0, got -1"),
        ("attn_layer_period", 0, "attn_layer_period must be a positive whole number, got 0"),
        ("num_hidden_layers", 0, "num_hidden_layers must be a positive whole number, got 0"),
    ],
)
def test_zero_only_where_it_means_something(field, value, message):
    with pytest.raises(PresetError, match=message):
        from_dict(raw("jamba-v0.1") | {field: value})


def test_qwen3_next_full_attention_interval_and_deltanet_state():
    spec = config("qwen3-next-80b-a3b")
    order = spec.layers.order()
    assert [i for i, k in enumerate(order) if k == "full"] == list(range(3, 48, 4))
    e = estimate(spec, context=262144)
    assert e.bytes_per_token == 12 * 2 * 2 * 256 * 2
    # 32 value heads x 128 x 128 recurrent + conv (2*16*128 + 32*128) x kernel 4, bf16
    assert e.state_bytes == 36 * (32 * 128 * 128 + (2 * 16 * 128 + 32 * 128) * 4) * 2


def test_gpt2_style_names():
    spec = config("gpt2")  # n_embd, n_head, n_layer, n_positions
    assert (spec.layers.count, spec.attention.heads, spec.attention.head_dim) == (12, 12, 64)
    assert spec.max_context == 1024 and spec.hidden_size == 768
    assert estimate(spec, context=1024, kv_dtype="fp32").total_bytes == 2 * 12 * 12 * 64 * 4 * 1024
    # no dtype in config.json: float32, served in bf16 by default
    assert estimate(spec, context=1024).total_bytes == 2 * 12 * 12 * 64 * 2 * 1024


def test_dtype_from_torch_dtype_or_dtype_or_default():
    base = raw("llama-3-8b")
    assert from_dict(base).dtype == "bf16"
    newer = {k: v for k, v in base.items() if k != "torch_dtype"} | {"dtype": "float16"}
    assert from_dict(newer).dtype == "fp16"
    neither = {k: v for k, v in base.items() if k != "torch_dtype"}
    spec = from_dict(neither)
    assert spec.dtype == "fp32" and has_note(spec, "inferred: dtype fp32")
    odd = base | {"torch_dtype": "float8_e4m3fn"}
    assert has_note(from_dict(odd), "float8_e4m3fn")


def test_other_families_by_hand():
    # OPT-13B: vLLM paper's "2 x 5120 x 40 x 2" bytes per token
    assert estimate(config("opt-13b"), context=1).bytes_per_token == 2 * 5120 * 40 * 2 == 819_200
    # Pythia-6.9B (gpt_neox): MHA 32 x 128; rotary_pct does not change the cache
    assert estimate(config("pythia-6.9b"), context=2048).total_bytes == 2 * 32 * 32 * 128 * 2 * 2048
    # Qwen1.5-MoE-A2.7B (qwen2_moe): MHA 16 x 128, window off
    moe = config("qwen1.5-moe-a2.7b")
    assert estimate(moe, context=8192).total_bytes == 2 * 24 * 16 * 128 * 2 * 8192
    # Qwen3-30B-A3B (qwen3_moe): 4 KV heads x 128
    assert estimate(config("qwen3-30b-a3b"), context=1).bytes_per_token == 2 * 48 * 4 * 128 * 2


def test_bert_is_an_encoder():
    spec = config("bert-base")
    assert spec.architecture == "encoder"
    assert figures(spec, 512) == (0, 0, 0)
    assert has_note(spec, "encoder-only")


# ---------------------------------------------------------------- names, sources, patterns


def test_name_and_source():
    spec = config("llama-3-8b")
    assert spec.name == "meta-llama-3-8b"
    assert spec.source == [str(CONFIGS / "llama-3-8b" / "config.json"), "meta-llama/Meta-Llama-3-8B"]
    assert spec.parameters == "unknown (imported from config.json)"
    assert config("qwen2-7b").name == "qwen2-7b"  # no _name_or_path: the folder
    odd = from_dict(raw("qwen2-7b") | {"_name_or_path": "/home/me/ckpts/My Model (v2)/"})
    assert odd.name == "my-model-v2"


def test_name_from_hub_cache_snapshot(tmp_path):
    snap = tmp_path / "models--Qwen--Qwen2-7B" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(raw("qwen2-7b")))
    assert load_config_path(snap).name == "qwen2-7b"


@pytest.mark.parametrize(
    "order",
    [
        ["a"] * 5,
        ["a", "b"] * 4,
        ["a", "a", "b"] * 3 + ["a"],
        ["m"] * 4 + ["f"] + ["m"] * 3 + ["m"] * 4 + ["f"] + ["m"] * 3,
        ["a", "b", "b", "a", "c"],
    ],
)
def test_compact_pattern_tiles_back(order):
    pattern = compact_pattern(order)
    assert expand_pattern(pattern, len(order)) == order


def test_compact_pattern_is_short():
    assert compact_pattern(["s"] * 5 + ["f"] + ["s"] * 5 + ["f"] + ["s", "s"]) == ["s*5", "f"]
    assert compact_pattern(["x"] * 48) == ["x"]


# ---------------------------------------------------------------- bad input


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "one JSON object, got a list"),
        (json.dumps({"model_type": "llama", "num_attention_heads": 32, "hidden_size": 4096,
                     "max_position_embeddings": 4096}), "missing num_hidden_layers"),
        (json.dumps({"model_type": "mystery", "hidden_size": 64}),
         "model_type 'mystery' is missing num_hidden_layers (or n_layer, n_layers, num_layers), "
         "num_attention_heads (or n_head, n_heads, num_heads, attention_heads);"),
        (json.dumps({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 64}), "missing head_dim (or hidden_size"),
        (json.dumps({"model_type": "t5", "num_layers": 6, "num_heads": 8, "d_model": 512}),
         "encoder-decoder"),
        (json.dumps({"model_type": "llama", "num_hidden_layers": "32", "num_attention_heads": 4,
                     "hidden_size": 64, "max_position_embeddings": 64}),
         'num_hidden_layers must be a positive whole number, got "32"'),
        (json.dumps({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 6,
                     "num_key_value_heads": 4, "hidden_size": 384, "max_position_embeddings": 64}),
         "kv_heads=4 must divide heads=6"),
    ],
)
def test_bad_config_names_path_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PresetError) as info:
        load_config_path(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text
    assert "write a preset YAML instead" in text


def test_every_missing_field_in_one_line(tmp_path):
    path = write(tmp_path, json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    with pytest.raises(PresetError) as info:
        load_config_path(path)
    assert str(info.value) == (
        f"{path}: model_type 'llama' is missing num_attention_heads (or n_head, n_heads, num_heads, attention_heads), "
        "head_dim (or hidden_size, n_embd, d_model, dim to derive it); write a preset YAML instead "
        "(see 'kvcalc presets show llama-3-8b' for the format)"
    )


def test_missing_fields_skip_class_defaults_and_mla():
    # Falcon's context has a class default; MLA needs no head_dim.
    falcon = {"model_type": "falcon", "num_hidden_layers": 32}
    with pytest.raises(PresetError) as info:
        from_dict(falcon)
    assert "missing num_attention_heads (or n_head, n_heads, num_heads, attention_heads), head_dim" in str(info.value)
    assert "max_position_embeddings" not in str(info.value)
    mla = {k: v for k, v in raw("deepseek-v3").items() if k not in ("hidden_size", "num_attention_heads")}
    with pytest.raises(PresetError) as info:
        from_dict(mla)
    assert "is missing num_attention_heads" in str(info.value) and "head_dim" not in str(info.value)


def test_missing_mla_field_is_named():
    data = {k: v for k, v in raw("deepseek-v3").items() if k != "qk_rope_head_dim"}
    with pytest.raises(PresetError, match="kv_lora_rank says MLA, but qk_rope_head_dim is missing"):
        from_dict(data)


def test_unknown_model_type_with_enough_fields_is_read_and_noted():
    data = raw("llama-3-8b") | {"model_type": "someones_llama"}
    spec = from_dict(data)
    assert figures(spec, 8192) == figures(config("llama-3-8b"), 8192)
    assert has_note(spec, "untested: model_type 'someones_llama' has not been tested with kvcalc")


def test_folder_without_config(tmp_path):
    with pytest.raises(PresetError, match="no config.json in this folder"):
        load_config_path(tmp_path)


def test_hf_config_stays_light():
    code = (
        "import sys, kvcalc.sources.config_json; "
        "print(','.join(m for m in ('torch', 'rich', 'typer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------- the CLI


def test_cli_estimate_config_file_and_folder(runner, kvcalc_app):
    file = CONFIGS / "gemma-3-27b" / "config.json"
    folder = CONFIGS / "gemma-3-27b"
    for target in (file, folder):
        result = runner.invoke(kvcalc_app, ["estimate", str(target), "-c", "128k"])
        assert result.exit_code == 0, result.output
        per_layer = 2 * 16 * 128 * 2
        assert f"{per_layer * (10 * 131072 + 52 * 1024):,}" in result.stdout


def test_cli_estimate_json_carries_notes(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["estimate", str(CONFIGS / "falcon-7b"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["bytes_per_token"] == 2 * 32 * 1 * 64 * 2
    assert any(note.startswith("ignored: num_kv_heads 71") for note in data["notes"])
    assert any(note.startswith("inferred: ") for note in data["notes"])


def test_cli_estimate_table_prints_notes(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["estimate", str(CONFIGS / "llama-2-7b")])
    assert result.exit_code == 0, result.output
    assert "note: inferred: MHA, 32 KV heads" in result.stdout


def test_cli_import_to_stdout(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["import", str(CONFIGS / "jamba-v0.1")])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["name"] == "jamba-v0.1"
    assert data["layers"]["kinds"]["mamba"]["state_elements"] == 8192 * 16 + 8192 * 4
    assert data["max_context"] == 262144 and "262144" in result.stdout  # integers in full


def test_cli_import_to_file_refuses_overwrite_then_forces(runner, kvcalc_app, tmp_path):
    out = tmp_path / "scout.yaml"
    first = runner.invoke(kvcalc_app, ["import", str(CONFIGS / "llama-4-scout"), "-o", str(out)])
    assert first.exit_code == 0, first.output
    assert str(out) in first.stdout
    written = out.read_text()
    assert figures(load_file(out), 131072) == figures(config("llama-4-scout"), 131072)

    out.write_text("keep me\n")
    refused = runner.invoke(kvcalc_app, ["import", str(CONFIGS / "gpt2"), "--output", str(out)])
    assert refused.exit_code == 1
    assert str(out) in refused.stderr and "--force" in refused.stderr
    assert out.read_text() == "keep me\n"

    forced = runner.invoke(kvcalc_app, ["import", str(CONFIGS / "llama-4-scout"), "-o", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.read_text() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scout.yaml"]  # no temp file left


def test_cli_import_missing_output_folder(runner, kvcalc_app, tmp_path):
    out = tmp_path / "nope" / "x.yaml"
    result = runner.invoke(kvcalc_app, ["import", str(CONFIGS / "gpt2"), "-o", str(out)])
    assert result.exit_code == 1
    assert str(tmp_path / "nope") in result.stderr
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not JSON"), ("[]", "got a list"),
     (json.dumps({"model_type": "llama", "num_attention_heads": 4}), "missing num_hidden_layers")],
)
def test_cli_bad_config_exit_1(runner, kvcalc_app, tmp_path, text, message):
    path = write(tmp_path, text)
    for command in (["estimate", str(path)], ["import", str(path)]):
        result = runner.invoke(kvcalc_app, command)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: {path}")
        assert message in result.stderr and "Traceback" not in result.output


def test_cli_import_missing_input(runner, kvcalc_app, tmp_path):
    result = runner.invoke(kvcalc_app, ["import", str(tmp_path / "absent")])
    assert result.exit_code == 1
    assert "absent" in result.stderr


# ---------------------------------------------------------------- transformers, if installed


def transformers_cache_layers(data: dict) -> list:
    """The per-layer caches transformers itself builds for this config (no weights, CPU)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    try:
        cfg = transformers.AutoConfig.for_model(**data)
    except (ValueError, KeyError) as exc:  # a model_type this transformers does not know
        pytest.skip(f"transformers {transformers.__version__} cannot read it: {exc}"[:200])
    try:
        return list(transformers.DynamicCache(config=cfg).layers)
    except (TypeError, AttributeError):
        pytest.skip(f"transformers {transformers.__version__}: DynamicCache(config=...) unsupported")


def _without(folder: str, *keys: str) -> dict:
    data = copy.deepcopy(raw(folder))
    for key in keys:
        data.get("text_config", data).pop(key)
    return data


_WINDOW_ON = {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
# Variants that exercise the rules fixtures alone do not (ids -> config dict).
VARIANTS = {
    "qwen2+window": lambda: raw("qwen2-7b") | _WINDOW_ON,
    "qwen3+window": lambda: raw("qwen3-8b") | _WINDOW_ON,
    "qwen2_moe+window": lambda: raw("qwen1.5-moe-a2.7b") | _WINDOW_ON,
    "qwen3_moe+window": lambda: raw("qwen3-30b-a3b") | _WINDOW_ON,
    "qwen2+window-default-layers": lambda: _without("qwen2-7b", "max_window_layers") | {
        "use_sliding_window": True, "sliding_window": 4096},
    "gemma3-minimal": lambda: _without("gemma-3-27b", "sliding_window_pattern", "max_position_embeddings"),
    "llama4-interval": lambda: _without("llama-4-scout", "no_rope_layers"),
    # no sliding_window: transformers' class default applies where it applies a window
    "mistral-no-window": lambda: _without("mistral-7b-v0.1", "sliding_window"),
    "mistral-window-null": lambda: raw("mistral-7b-v0.1") | {"sliding_window": None},
    "mixtral-no-window": lambda: _without("mixtral-8x7b", "sliding_window"),
    "phi3-no-window": lambda: _without("phi-3-mini-4k", "sliding_window"),
    "gemma2-no-window": lambda: _without("gemma-2-9b", "sliding_window"),
    "gemma3-no-window": lambda: _without("gemma-3-27b", "sliding_window"),
    **{f"{name}+window-default-size": (lambda folder=folder: _without(folder, "sliding_window") | {
        "use_sliding_window": True, "max_window_layers": 20})
       for name, folder in (("qwen2", "qwen2-7b"), ("qwen3", "qwen3-8b"),
                            ("qwen2_moe", "qwen1.5-moe-a2.7b"), ("qwen3_moe", "qwen3-30b-a3b"))},
    "qwen2-window-flag-missing": lambda: _without("qwen2-7b", "use_sliding_window"),
    "qwen2_moe-window-flag-missing": lambda: _without("qwen1.5-moe-a2.7b", "use_sliding_window"),
    # 0 where it means something
    "qwen2+window-max-0": lambda: raw("qwen2-7b") | _WINDOW_ON | {"max_window_layers": 0},
    "qwen2_moe+window-max-0": lambda: raw("qwen1.5-moe-a2.7b") | _WINDOW_ON | {"max_window_layers": 0},
    "jamba-offset-0": lambda: raw("jamba-v0.1") | {"attn_layer_offset": 0},
}
CACHE_CASES = {
    **{p.name: (lambda name=p.name: raw(name)) for p in CONFIGS.iterdir()
       if p.is_dir() and p.name != "bert-base"},
    **VARIANTS,
}


def kvcalc_layers(spec) -> list[tuple[str, int | None]]:
    """What each layer holds, in the terms transformers' cache layers use."""
    rows = []
    for name in spec.layers.order():
        kind = spec.layers.kinds[name]
        # transformers caches a chunked layer in a sliding-window layer of the chunk size
        size = getattr(kind, "window", None) or getattr(kind, "chunk", None)
        rows.append(("state", None) if kind.type == "none" else ("window", size) if size else ("full", None))
    return rows


def transformers_layers(layers) -> list[tuple[str, int | None]]:
    rows = []
    for layer in layers:
        cls = type(layer).__name__
        if "Linear" in cls or "Mamba" in cls or cls == "DummyLayer":  # DummyLayer: an MLP-only layer (Nemotron-H)
            rows.append(("state", None))
        elif "Sliding" in cls:
            rows.append(("window", layer.sliding_window))
        else:
            rows.append(("full", None))
    return rows


@pytest.mark.parametrize("case", sorted(CACHE_CASES))
def test_layer_kinds_agree_with_transformers_cache(case):
    """Where transformers is installed (an optional extra, CPU only): each layer's window or
    state in kvcalc's spec matches the cache layer transformers builds for the same config."""
    data = CACHE_CASES[case]()
    layers = transformers_cache_layers(data)
    assert transformers_layers(layers) == kvcalc_layers(from_dict(data))
