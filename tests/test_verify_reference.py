"""`kvcalc verify MODEL --reference transformers`: transformers' own cache beside kvcalc's.

Fixtures are the released configs in tests/fixtures/configs (sources in its README.md). Every
expected byte count is derived by hand from those configs' numbers:
layers x tokens x KV heads x (K width + V width) x bytes per element, the MLA latent
(kv_lora_rank 512 + rope 64) per token, or a Gated DeltaNet state of conv + recurrent elements.

transformers 5.24 facts checked here (transformers/cache_utils.py): DynamicSlidingWindowLayer
keeps ``full_key_states[:, :, -sliding_window + 1:, :]``, so window - 1 tokens after a
forward; DeepSeek-V3's attention (models/deepseek_v3/modeling_deepseek_v3.py) calls
``cache.update(kv_nope, k_rot, ...)`` with the latent (1 x 512) and the rope key (1 x 64),
so 5.24 caches MLA compressed; LinearAttentionLayer keeps the recurrent state in float32.

The comparison logic is tested without torch; the meta-device runs skip without
torch and transformers. Contexts stay small (a meta forward costs no memory, and about a
second per model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvcalc.sources.config_json import load_config_path
from kvcalc.verify.reference import Held, Part, compare

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def _held(per_layer: list[list[Part]], model_type: str = "") -> Held:
    return Held(layers=tuple(tuple(p) for p in per_layer), classes=("DynamicLayer",) * len(per_layer),
                dtype="bf16", model_class="M", cache_class="DynamicCache", version="test", model_type=model_type)


def _kv(tokens: int, kv_heads: int, width: int, dtype: str = "bf16", size: int = 2) -> list[Part]:
    n = tokens * kv_heads * width
    shape = (1, kv_heads, tokens, width)
    return [Part("keys", dtype, n, n * size, shape), Part("values", dtype, n, n * size, shape)]


# --------------------------------------------------------------------------- no torch: the explanations


def test_window_minus_one_is_explained_only_at_its_exact_bytes():
    # Mistral-7B-v0.1: 32 layers, 8 KV heads, head_dim 4096 / 32 = 128, window 4096, bf16
    spec = load_config_path(CONFIGS / "mistral-7b-v0.1")
    good = compare(spec, _held([_kv(4095, 8, 128)] * 32), context=4100)
    row = good.rows[0]
    assert row.kvcalc_bytes == 32 * 4096 * 8 * (128 + 128) * 2
    assert row.transformers_bytes == 32 * 4095 * 8 * (128 + 128) * 2
    assert row.difference == -32 * 8 * (128 + 128) * 2
    assert (row.rule, row.explained, good.ok) == ("window-1", True, True)
    assert "window - 1 = 4095" in row.reason
    bad = compare(spec, _held([_kv(4094, 8, 128)] * 32), context=4100)  # two tokens short: no convention
    assert not bad.ok and bad.rows[0].rule is None and "no known convention" in bad.rows[0].reason


def test_window_rule_is_not_offered_below_the_window():
    spec = load_config_path(CONFIGS / "mistral-7b-v0.1")
    result = compare(spec, _held([_kv(99, 8, 128)] * 32), context=100)  # 100 < 4096: all 100 are kept
    assert not result.ok


def test_repeated_kv_heads_are_named():
    # Llama-3-8B: 32 layers, 32 query heads, 8 KV heads, head_dim 128
    spec = load_config_path(CONFIGS / "llama-3-8b")
    result = compare(spec, _held([_kv(16, 32, 128)] * 32), context=16)
    row = result.rows[0]
    assert row.transformers_bytes == 32 * 16 * 32 * 256 * 2 and row.kvcalc_bytes == 32 * 16 * 8 * 256 * 2
    assert row.rule == "repeated-kv" and result.ok


def test_equal_bytes_over_other_shapes_are_not_called_repeated_kv_heads():
    # 8 KV heads of 512 hold as many bytes as 32 heads of 128, but are not repeated heads: a wider
    # head size kvcalc missed (Gemma-4's global_head_dim) must stay unexplained
    spec = load_config_path(CONFIGS / "llama-3-8b")
    result = compare(spec, _held([_kv(16, 8, 512)] * 32), context=16)
    assert result.rows[0].transformers_bytes == 32 * 16 * 32 * 256 * 2
    assert result.rows[0].rule is None and not result.ok


def test_a_wider_state_type_with_the_same_elements_is_named():
    # Qwen3-Next-80B-A3B: 48 layers, every 4th full (12), 36 Gated DeltaNet layers. Per linear layer:
    # conv (2 x 16 x 128 + 32 x 128) x kernel 4 = 32,768 elements; recurrent 32 x 128 x 128 = 524,288
    spec = load_config_path(CONFIGS / "qwen3-next-80b-a3b")
    conv, recurrent = (2 * 16 * 128 + 32 * 128) * 4, 32 * 128 * 128
    linear = [Part("conv_states", "bf16", conv, conv * 2), Part("recurrent_states", "fp32", recurrent, recurrent * 4)]
    layers = [_kv(8, 2, 256) if i % 4 == 3 else linear for i in range(48)]
    result = compare(spec, _held(layers, "qwen3_next"), context=8)
    rows = {r.name: r for r in result.rows}
    state = next(r for r in result.rows if r.kind == "none")
    assert state.kvcalc_bytes == 36 * (conv + recurrent) * 2
    assert state.transformers_bytes == 36 * (conv * 2 + recurrent * 4)
    assert state.rule == "dtype" and "recurrent_states in fp32" in state.reason
    assert rows["full"].difference == 0 and rows["full"].kvcalc_bytes == 12 * 8 * 2 * (256 + 256) * 2
    assert result.ok
    # the same held tensors for a family with no known convention: a state dtype kvcalc may have
    # misread (as it once did Nemotron-H's float32 SSM state) is shown, not explained
    other = compare(spec, _held(layers, "someones_hybrid"), context=8)
    state = next(r for r in other.rows if r.kind == "none")
    assert state.rule == "dtype" and not state.explained and not other.ok


def test_more_cache_layers_than_kvcalc_counts_is_unexplained():
    spec = load_config_path(CONFIGS / "llama-3-8b")
    result = compare(spec, _held([_kv(16, 8, 128)] * 33), context=16)
    assert [r.name for r in result.rows] == ["full", "(more layers)"]
    assert result.rows[0].difference == 0 and not result.rows[1].explained and not result.ok


# --------------------------------------------------------------------------- transformers on the meta device


def _need_transformers():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")


def _run(name: str, context: int, mla_layout: str = "latent"):
    from kvcalc.verify.reference import hold

    data = json.loads((CONFIGS / name / "config.json").read_text())
    return compare(load_config_path(CONFIGS / name), hold(data, context), context, 1, mla_layout)


def test_llama_3_8b_matches():
    _need_transformers()
    result = _run("llama-3-8b", 16)
    assert result.kvcalc_bytes == result.transformers_bytes == 32 * 16 * 8 * (128 + 128) * 2
    assert result.model_class == "LlamaForCausalLM" and result.ok


def test_mistral_sliding_layers_hold_window_minus_one():
    _need_transformers()
    result = _run("mistral-7b-v0.1", 4100)
    (row,) = result.rows
    assert row.transformers_bytes == 32 * 4095 * 8 * (128 + 128) * 2
    assert row.kvcalc_bytes == 32 * 4096 * 8 * (128 + 128) * 2
    assert row.rule == "window-1" and result.ok


def test_gemma_2_9b_per_kind():
    _need_transformers()
    # 42 layers alternating sliding (window 4096) and full, 8 KV heads, head_dim 256, bf16
    rows = {r.name: r for r in _run("gemma-2-9b", 4100).rows}
    sliding = next(r for r in rows.values() if r.kind == "sliding")
    full = next(r for r in rows.values() if r.kind == "full")
    assert (sliding.layers, full.layers) == (21, 21)
    assert sliding.transformers_bytes == 21 * 4095 * 8 * (256 + 256) * 2
    assert sliding.kvcalc_bytes == 21 * 4096 * 8 * (256 + 256) * 2
    assert full.transformers_bytes == full.kvcalc_bytes == 21 * 4100 * 8 * (256 + 256) * 2


def test_qwen3_next_linear_state_in_fp32():
    _need_transformers()
    result = _run("qwen3-next-80b-a3b", 8)
    state = next(r for r in result.rows if r.kind == "none")
    conv, recurrent = (2 * 16 * 128 + 32 * 128) * 4, 32 * 128 * 128
    assert state.transformers_bytes == 36 * (conv * 2 + recurrent * 4)
    assert state.kvcalc_bytes == 36 * (conv + recurrent) * 2
    assert state.rule == "dtype" and result.ok


def test_deepseek_v3_mla_latent_in_5_24_and_the_expanded_difference_explained():
    _need_transformers()
    # 61 layers, latent 512 + rope 64 per token; expanded: 128 heads x (128 + 64 + 128)
    latent = _run("deepseek-v3", 8)
    assert latent.transformers_bytes == latent.kvcalc_bytes == 61 * 8 * (512 + 64) * 2
    expanded = _run("deepseek-v3", 8, "expanded")
    (row,) = expanded.rows
    assert row.kvcalc_bytes == 61 * 8 * 128 * (128 + 64 + 128) * 2
    assert row.transformers_bytes == 61 * 8 * (512 + 64) * 2
    assert row.rule == "mla-latent" and "latent (512)" in row.reason and expanded.ok


# --------------------------------------------------------------------------- the CLI


def test_cli_table_and_exit(runner, kvcalc_app):
    _need_transformers()
    result = runner.invoke(kvcalc_app, ["verify", str(CONFIGS / "gemma-2-9b"), "--reference", "transformers",
                                        "-c", "4100"])
    assert result.exit_code == 0, result.output
    assert "window-1" in result.stdout and "EXPLAINED" in result.stdout
    assert f"{-21 * 8 * 512 * 2:+,}" in result.stdout  # one token of 21 sliding layers


def test_cli_json(runner, kvcalc_app):
    _need_transformers()
    result = runner.invoke(kvcalc_app, ["verify", str(CONFIGS / "mistral-7b-v0.1" / "config.json"),
                                        "--reference", "transformers", "-c", "4097", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["context"] == 4097
    (row,) = data["rows"]
    assert row["transformers_bytes"] == 32 * 4095 * 8 * 256 * 2 and row["kvcalc_bytes"] == 32 * 4096 * 8 * 256 * 2
    assert row["difference"] == -32 * 8 * 256 * 2 and row["rule"] == "window-1"


def test_cli_refuses_a_preset_in_one_line(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["verify", "llama-3-8b", "--reference", "transformers"])
    assert result.exit_code == 1
    assert "config.json" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_refuses_options_it_cannot_honour(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["verify", str(CONFIGS / "llama-3-8b"), "--reference", "transformers",
                                        "--tp", "2"])
    assert result.exit_code == 2 and "--tp" in result.stderr


def test_cli_without_transformers_gives_the_install_hint(tmp_path):
    import subprocess
    import sys

    # a sitecustomize that hides transformers, in a child process (this one may have imported it)
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, *a):\n"
        "        if name == 'transformers' or name.startswith('transformers.'):\n"
        "            raise ImportError('hidden')\nsys.meta_path.insert(0, _Hide())\n"
    )
    import os

    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).parent.parent}"}
    proc = subprocess.run([sys.executable, "-m", "kvcalc", "verify", str(CONFIGS / "llama-3-8b"), "--reference",
                           "transformers"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "pip install 'kvcalc[transformers,torch]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_deepseek_v32_indexer_keys_are_their_own_row():
    _need_transformers()
    # DeepSeek-V3.2-Exp (fixture from its released config): 61 layers, latent 512 + 64, index_head_dim 128.
    # kvcalc: fp8 key + one fp32 scale per 128 = 128 + 4 bytes; transformers 5.24 keeps the key in bf16, no scale
    result = _run("deepseek-v3.2-exp", 16)
    rows = {r.name: r for r in result.rows}
    assert rows["full"].transformers_bytes == rows["full"].kvcalc_bytes == 61 * 16 * (512 + 64) * 2
    assert rows["indexer"].kvcalc_bytes == 61 * 16 * (128 + 4)
    assert rows["indexer"].transformers_bytes == 61 * 16 * 128 * 2
    assert rows["indexer"].rule == "indexer-unquantized" and result.ok
