"""`kvcalc verify` as a user runs it, on CPU (and on CUDA where there is one).

Expected bytes are derived by hand: K and V x KV heads x head_dim x tokens x batch x bytes
per element, or the MLA latent (512 + 64) per token.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from kvcalc.sources.presets import load_file  # noqa: E402
from kvcalc.verify import TORCH_MISSING  # noqa: E402
from kvcalc.verify.runner import verify  # noqa: E402

PRESETS = Path(__file__).parent.parent / "model_presets"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = """\
name: tiny-local-global
source: [a test model]
parameters: tiny
max_context: 4096
dtype: fp32
hidden_size: 64
attention: {kind: gqa, heads: 4, kv_heads: 2, head_dim: 16}
layers:
  count: 4
  kinds:
    local: {type: sliding, window: 24}
    global: {type: full}
  pattern: [local*3, global]
"""
TINY_PER_TOKEN = 2 * 2 * 16 * 4  # K and V x 2 KV heads x 16 x fp32 = 256 B per token per layer


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-local-global.yaml"
    path.write_text(TINY)
    return str(path)


def run(runner, app, *args):
    return runner.invoke(app, ["verify", *args])


def run_json(runner, app, *args):
    result = run(runner, app, *args, "--json")
    assert result.exit_code in (0, 1), result.output
    return result, json.loads(result.stdout)


def flat(text):
    """Output with Rich's line wrapping undone, for phrases that may wrap."""
    return " ".join(text.split())


def test_llama_3_8b(runner, kvcalc_app):
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "--context", "64")
    assert result.exit_code == 0
    expected = 2 * 8 * 128 * 64 * 1 * 2  # one layer, 8 KV heads x 128, 64 tokens, bf16
    assert data["analytic_bytes"] == data["measured_bytes"] == expected
    assert data["match"] is True
    for key in ("model", "device", "cache", "layers", "context", "batch", "analytic_bytes",
                "measured_bytes", "allocator_bytes", "peak_bytes", "match"):
        assert key in data
    assert (data["model"], data["device"], data["cache"], data["layers"], data["context"], data["batch"]) == (
        "llama-3-8b", "cpu", "static", 1, 64, 1)
    assert data["allocator_bytes"] is None and data["peak_bytes"] is None
    assert data["full_model_bytes"] == 32 * expected


def test_table_and_verdict(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "-c", "64", "-b", "2")
    assert result.exit_code == 0, result.output
    expected = 2 * 8 * 128 * 64 * 2 * 2
    assert f"{expected:,}" in result.stdout
    assert "MATCH" in result.stdout
    assert "full model, all 32 layers" in result.stdout


def test_gemma_3_six_layers(runner, kvcalc_app):
    _, data = run_json(runner, kvcalc_app, "gemma-3-27b", "--layers", "6", "-c", "64")
    # 5 local + 1 global layer, all below the 1024 window: 6 x 64 tokens x 16 KV heads x 128, bf16
    assert data["measured_bytes"] == data["analytic_bytes"] == 6 * 64 * 2 * 16 * 128 * 2
    assert [(g["name"], g["layers"]) for g in data["groups"]] == [("local", 5), ("global", 1)]
    assert data["match"] is True


@pytest.mark.parametrize("layout, per_token", [
    ("latent", 512 + 64),  # c_kv and the rope key
    ("expanded", 128 * (128 + 64) + 128 * 128),  # per-head K (nope + rope) and V
])
def test_deepseek_v3_layouts(runner, kvcalc_app, layout, per_token):
    _, data = run_json(runner, kvcalc_app, "deepseek-v3", "--mla-layout", layout, "-c", "16")
    assert data["measured_bytes"] == data["analytic_bytes"] == per_token * 16 * 2
    assert data["mla_layout"] == layout
    assert data["match"] is True


def test_window_wraps_the_rolling_buffer(runner, kvcalc_app, tiny):
    # 100 tokens through a 24-token window: 3 local layers hold 24 each, the global one 100
    _, data = run_json(runner, kvcalc_app, tiny, "--layers", "4", "-c", "100", "-b", "2")
    assert data["measured_bytes"] == (3 * 24 + 100) * TINY_PER_TOKEN * 2
    assert data["match"] is True


def test_paged_rounds_to_whole_blocks(runner, kvcalc_app, tiny):
    result, data = run_json(runner, kvcalc_app, tiny, "--layers", "4", "-c", "100", "--cache", "paged")
    assert data["analytic_bytes"] == (3 * 24 + 100) * TINY_PER_TOKEN
    # 24 -> 2 blocks (32 tokens), 100 -> 7 blocks (112 tokens)
    assert data["block_rounded_bytes"] == data["measured_bytes"] == (3 * 32 + 112) * TINY_PER_TOKEN
    assert data["match"] is True and result.exit_code == 0
    text = run(runner, kvcalc_app, tiny, "--layers", "4", "-c", "100", "--cache", "paged").stdout
    assert f"whole 16-token blocks hold {(3 * 8 + 12) * TINY_PER_TOKEN:,} B more" in text


def test_dynamic_final_and_peak(runner, kvcalc_app, tiny):
    _, data = run_json(runner, kvcalc_app, tiny, "--layers", "4", "-c", "100", "--cache", "dynamic")
    assert data["measured_bytes"] == data["analytic_bytes"] == (3 * 24 + 100) * TINY_PER_TOKEN
    # the last decode step of the global layer: 3 x 24 local tokens held, its old 99 tokens
    # and the grown 100 alive together
    assert data["cache_peak_bytes"] == (3 * 24 + 99 + 100) * TINY_PER_TOKEN
    assert data["match"] is True


@pytest.mark.parametrize("kv_dtype, per_token, scales", [
    ("int8", TINY_PER_TOKEN // 4, 2 * 2 * 4),  # one fp32 scale per token, head and K/V
    ("int4", TINY_PER_TOKEN // 8, 2 * 2 * 4),
    ("fp8", TINY_PER_TOKEN // 4, 0),
])
def test_quantized_kv(runner, kvcalc_app, tiny, kv_dtype, per_token, scales):
    _, data = run_json(runner, kvcalc_app, tiny, "--layers", "4", "-c", "40", "--kv-dtype", kv_dtype)
    assert data["measured_bytes"] == data["analytic_bytes"] == (3 * 24 + 40) * per_token
    assert data["scale_bytes"] == (3 * 24 + 40) * scales
    assert data["match"] is True


def test_a_wrong_cache_is_caught(runner, kvcalc_app, monkeypatch):
    import kvcalc.verify.runner as runner_module

    right = runner_module.cache_tokens
    monkeypatch.setattr(runner_module, "cache_tokens", lambda kind, context: right(kind, context) + 1)
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "-c", "32")
    assert result.exit_code == 1
    assert data["match"] is False
    assert data["measured_bytes"] - data["analytic_bytes"] == 2 * 8 * 128 * 2  # one token too many
    text = run(runner, kvcalc_app, "llama-3-8b", "-c", "32")
    assert text.exit_code == 1 and "MISMATCH" in text.stdout


def test_a_wrong_dynamic_cache_is_caught(runner, kvcalc_app, monkeypatch):
    from kvcalc.verify.caches import DynamicCache

    right = DynamicCache.update

    def one_token_too_many(self, parts, pos):
        if self.length == 0:  # the prefill stores its first token twice
            parts, pos = [torch.cat((p[:, :1], p), dim=1) for p in parts], torch.cat((pos[:1], pos))
        return right(self, parts, pos)

    monkeypatch.setattr(DynamicCache, "update", one_token_too_many)
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "-c", "32", "--cache", "dynamic")
    assert result.exit_code == 1 and data["match"] is False
    assert data["measured_bytes"] - data["analytic_bytes"] == 2 * 8 * 128 * 2  # one token too many
    text = run(runner, kvcalc_app, "llama-3-8b", "-c", "32", "--cache", "dynamic")
    assert text.exit_code == 1 and "MISMATCH" in text.stdout


def test_a_wrong_paged_cache_is_caught(runner, kvcalc_app, monkeypatch):
    import kvcalc.verify.runner as runner_module
    from kvcalc.verify.plan import PAGE_TOKENS

    right = runner_module.PagedCache
    monkeypatch.setattr(runner_module, "PagedCache",
                        lambda *args, tokens, **kw: right(*args, tokens=tokens + PAGE_TOKENS, **kw))
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "-c", "32", "--cache", "paged")
    assert result.exit_code == 1 and data["match"] is False
    assert data["measured_bytes"] - data["block_rounded_bytes"] == 16 * 2 * 8 * 128 * 2  # one block too many
    text = run(runner, kvcalc_app, "llama-3-8b", "-c", "32", "--cache", "paged")
    assert text.exit_code == 1 and "MISMATCH" in text.stdout


@pytest.mark.parametrize("cache", ["static", "dynamic", "paged"])
def test_a_skipped_decode_step_is_caught(runner, kvcalc_app, monkeypatch, cache):
    import kvcalc.verify.runner as runner_module

    right = runner_module.run_steps
    monkeypatch.setattr(runner_module, "run_steps", lambda plan: right(plan)[:-1])
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "-c", "32", "--cache", cache)
    assert result.exit_code == 1 and data["match"] is False
    assert data["token_problems"] == ["layer 0 (full) was written with 31 of 32 tokens"]
    if cache != "dynamic":  # preallocated: the bytes alone would have passed
        assert data["measured_bytes"] == (data["block_rounded_bytes"] or data["analytic_bytes"])
    text = run(runner, kvcalc_app, "llama-3-8b", "-c", "32", "--cache", cache)
    assert text.exit_code == 1 and "written with 31 of 32 tokens" in flat(text.stdout)


def test_a_ring_holding_the_wrong_positions_is_caught(monkeypatch, tiny):
    import kvcalc.verify.runner as runner_module

    # the last step writes position 38 again instead of 39: 40 tokens written, but the
    # 24-slot ring still holds position 15 where 39 belongs
    right = runner_module.run_steps
    monkeypatch.setattr(runner_module, "run_steps", lambda plan: right(plan)[:-1] + [(38, 39)])
    result = verify(load_file(Path(tiny)), context=40, layers=1)
    assert not result.match and result.measured_bytes == result.analytic_bytes
    assert result.token_problems == ("layer 0 (local) does not hold exactly the last 24 positions (16-39)",)


def test_config_json_notes_are_kept(runner, kvcalc_app):
    falcon = str(Path(__file__).parent / "fixtures" / "configs" / "falcon-7b")
    result, data = run_json(runner, kvcalc_app, falcon, "-c", "16")
    assert result.exit_code == 0 and data["match"] is True
    assert any("ignored: num_kv_heads 71" in note for note in data["notes"])
    assert any(note.startswith("note: inferred: head_dim") for note in data["notes"])
    assert "ignored: num_kv_heads 71" in flat(run(runner, kvcalc_app, falcon, "-c", "16").stdout)


def test_only_no_kv_layers_built_is_nothing_to_verify(runner, kvcalc_app):
    # jamba's layers 0-3 are Mamba; layer 4 is its first attention layer
    result = run(runner, kvcalc_app, "jamba-v0.1", "--layers", "2")
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "MATCH" not in text
    assert "Nothing to verify: no KV layer among those built (layers 0, 1)" in text
    assert "try --layers 5 to reach layer 4" in text and "leave out --layers" in text
    _, data = run_json(runner, kvcalc_app, "jamba-v0.1", "--layers", "2")
    assert data["no_kv_layer"] is True and data["first_kv_layer"] == 4 and data["match"] is True


def test_all_shows_no_kv_layer_runs(runner, kvcalc_app, monkeypatch):
    import kvcalc.sources.presets

    bundled = kvcalc.sources.presets.available
    monkeypatch.setattr(kvcalc.sources.presets, "available",
                        lambda dirs: {n: p for n, p in bundled(dirs).items() if n in ("gpt2", "jamba-v0.1")})
    result = run(runner, kvcalc_app, "--all", "--layers", "1", "-c", "16")
    assert result.exit_code == 0, result.output
    assert "2 of 2 passed (1 with no KV layer built: nothing to verify)" in result.stdout
    jamba = next(line for line in result.stdout.splitlines() if "jamba-v0.1" in line)
    assert "no KV layer" in jamba and "match" not in jamba


def test_scales_are_outside_the_comparison(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "-c", "16", "--kv-dtype", "int8")
    assert result.exit_code == 0, result.output
    scales = 16 * 2 * 8 * 4  # one fp32 scale per token, K/V and KV head
    assert (f"MATCH: measured {16 * 2 * 8 * 128:,} B equals the analytic bytes ({16 * 2 * 8 * 128:,} B). "
            f"int8 scales ({scales:,} B) are reported apart, not part of this comparison.") in flat(result.stdout)


@pytest.mark.parametrize("context", [40, 100], ids=["decode-trim-peaks", "prefill-peaks"])
def test_memory_guard_bounds_a_windowed_dynamic_cache(tiny, context):
    from kvcalc.verify.plan import make_plan, run_needs

    # tiny's three 24-token sliding layers: at 100 tokens the prefill grows the third to 96
    # tokens beside its trimmed copy and two full windows, 2.3x what the caches end with
    spec = load_file(Path(tiny))
    result = verify(spec, context=context, cache="dynamic", layers=3)
    assert result.match
    needs = run_needs(make_plan(spec, context=context, cache="dynamic", layers=3), 4)
    assert result.cache_peak_bytes <= needs.cache


def test_encoder_has_nothing_to_verify(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "bert-base")
    assert result.exit_code == 0, result.output
    assert "nothing to verify" in result.stdout
    _, data = run_json(runner, kvcalc_app, "bert-base")
    assert data["encoder"] is True and data["measured_bytes"] == 0 and data["match"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_no_cuda(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "--device", "cuda")
    assert result.exit_code == 1
    assert "'cuda' is not available" in result.stderr and "available: cpu" in result.stderr


def test_cuda_index_beyond_the_devices(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "--device", "cuda:7")
    assert result.exit_code == 1
    assert "'cuda:7'" in result.stderr and "available: cpu" in result.stderr


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_no_mps(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "--device", "mps")
    assert result.exit_code == 1
    assert "'mps' is not available" in result.stderr and "available: cpu" in result.stderr


def test_unknown_device(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "--device", "abacus")
    assert result.exit_code == 1
    assert "'abacus'" in result.stderr and "available: cpu" in result.stderr


def test_memory_guard_refuses_before_allocating(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3.1-405b", "--context", "1M", "--batch", "4096")
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("error: verify needs about")
    assert "TiB" in message and "is free" in message
    assert "--layers" in message and "--context" in message
    assert len(message.splitlines()) == 1


def test_out_of_memory_during_the_run_is_the_same_message(runner, kvcalc_app, monkeypatch):
    import kvcalc.verify.runner as runner_module

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner_module, "_run", oom)
    result = run(runner, kvcalc_app, "llama-3-8b", "-c", "16")
    assert result.exit_code == 1
    assert "verify needs about" in result.stderr and "--layers" in result.stderr


def test_without_torch_the_message_is_exact():
    code = (
        "import sys\nsys.modules['torch'] = None\nfrom kvcalc.cli import app\n"
        "app(['verify', 'llama-3-8b'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {TORCH_MISSING}"
    assert TORCH_MISSING.startswith("kvcalc verify needs PyTorch: pip install 'kvcalc[torch]' (on a CPU-only")
    assert "--index-url https://download.pytorch.org/whl/cpu" in TORCH_MISSING


def test_model_or_all(runner, kvcalc_app):
    assert run(runner, kvcalc_app).exit_code == 2
    assert run(runner, kvcalc_app, "gpt2", "--all").exit_code == 2


def test_all_with_progress_and_summary(runner, kvcalc_app, monkeypatch, tiny):
    import kvcalc.sources.presets

    bundled = kvcalc.sources.presets.available
    pick = ("gpt2", "bert-base", "jamba-v0.1")
    monkeypatch.setattr(kvcalc.sources.presets, "available",
                        lambda dirs: {n: p for n, p in bundled(dirs).items() if n in pick})
    result = run(runner, kvcalc_app, "--all", "-c", "32")
    assert result.exit_code == 0, result.output
    assert "3 of 3 passed (1 encoders: nothing to verify)" in result.stdout
    assert "encoder" in result.stdout
    _, data = run_json(runner, kvcalc_app, "--all", "-c", "32", "--cache", "paged")
    assert [d["model"] for d in data] == ["bert-base", "gpt2", "jamba-v0.1"]
    assert all(d["match"] for d in data)


def test_all_fails_when_one_preset_fails(runner, kvcalc_app, monkeypatch):
    import kvcalc.sources.presets
    import kvcalc.verify.runner as runner_module

    bundled = kvcalc.sources.presets.available
    monkeypatch.setattr(kvcalc.sources.presets, "available",
                        lambda dirs: {n: p for n, p in bundled(dirs).items() if n in ("gpt2", "gemma-2b")})
    right = runner_module.cache_tokens
    monkeypatch.setattr(runner_module, "cache_tokens",
                        lambda kind, context: right(kind, context) + (context == 17))
    result = run(runner, kvcalc_app, "--all", "-c", "17")
    assert result.exit_code == 1
    assert "0 of 2 passed" in result.stdout and "MISMATCH" in result.stdout


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_verifies_on_cpu(path):
    result = verify(load_file(path), device="cpu", context=16)
    assert result.match, (result.measured_bytes, result.expected_bytes)
    assert result.measured_bytes == result.analytic_bytes


def test_help(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["verify", "--help"])
    assert result.exit_code == 0
    for option in ("--device", "--context", "--batch", "--layers", "--cache", "--kv-dtype", "--mla-layout",
                   "--all", "--json"):
        assert option in result.stdout


@cuda
@pytest.mark.parametrize("cache", ["static", "dynamic", "paged"])
def test_cuda_allocator_agrees(runner, kvcalc_app, cache):
    _, data = run_json(runner, kvcalc_app, "llama-3-8b", "--device", "cuda", "--layers", "2", "-c", "1000",
                       "--cache", cache)
    assert data["device"] == "cuda:0"
    assert data["allocator_bytes"] is not None and data["peak_bytes"] is not None
    assert data["allocator"]["other"] == 0
    assert data["allocator_bytes"] >= data["measured_bytes"]
    assert data["match"] is True


@cuda
def test_cuda_deepseek_latent(runner, kvcalc_app):
    _, data = run_json(runner, kvcalc_app, "deepseek-v3", "--device", "cuda", "-c", "512")
    assert data["measured_bytes"] == 512 * (512 + 64) * 2
    assert data["match"] is True
