"""`kvcalc verify --tp N [--pp P]`: fit's per-GPU figures on real tensor-parallel shards.

Per-GPU bytes here are derived by hand: K and V x the KV heads one GPU holds x head_dim x
bytes, or MLA's 512 + 64 latent whole on every GPU. The sharded runs start real processes with
torch.distributed (gloo on 127.0.0.1); the numerics compare them with the single-process
layers in float64.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from importlib.util import find_spec
from pathlib import Path

import pytest
from fitting import fit_with as fit

from kvcalc.capacity.fit import FitUsageError
from kvcalc.sources.presets import load_file, preset_dirs
from kvcalc.sources.resolve import resolve
from kvcalc.verify.plan import reduced_spec
from kvcalc.verify.tp_plan import (
    LAUNCHER_BYTES,
    PROCESS_BYTES,
    check_ram,
    kv_heads_read,
    make_tp_plan,
    query_heads,
    total_needs,
)

needs_torch = pytest.mark.skipif(find_spec("torch") is None, reason="needs torch")
linux = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")

TINY = """\
name: tiny-tp
source: [a test model]
parameters: tiny
max_context: 4096
dtype: fp32
hidden_size: 48
attention: {kind: gqa, heads: 8, kv_heads: 2, head_dim: 8}
layers:
  count: 6
  kinds:
    mha: {type: full, attention: {kind: mha, heads: 4, head_dim: 8}}
    gqa: {type: full, attention: {kind: gqa, heads: 8, kv_heads: 4, head_dim: 6}}
    rep: {type: full}
    mqa: {type: sliding, window: 8, attention: {kind: mqa, heads: 4, head_dim: 8}}
    mla: {type: full, attention: {kind: mla, heads: 4, kv_lora_rank: 16, qk_rope_head_dim: 4,
                                  qk_nope_head_dim: 6, v_head_dim: 5, q_lora_rank: 12}}
    mlc: {type: chunked, chunk: 8, attention: {kind: mla, heads: 8, kv_lora_rank: 8, qk_rope_head_dim: 4,
                                               qk_nope_head_dim: 4, v_head_dim: 4}}
  pattern: [mha, gqa, rep, mqa, mla, mlc]
"""
# One layer of each: MHA, GQA divided, GQA replicated past TP 2 (2 KV heads), MQA with a
# window, MLA with low-rank queries, MLA in chunks. At TP 2, fp32, per token on one GPU:
TINY_TP2 = {
    "mha": 2 * 2 * 8 * 4,  # K and V x 2 of 4 heads x 8 x 4 B
    "gqa": 2 * 2 * 6 * 4,  # 2 of 4 KV heads
    "rep": 2 * 1 * 8 * 4,  # 1 of 2 KV heads
    "mqa": 2 * 1 * 8 * 4,  # its one KV head on both GPUs
    "mla": (16 + 4) * 4,  # the latent, whole
    "mlc": (8 + 4) * 4,
}
WINDOWED = {"mqa", "mlc"}  # hold 8 tokens


def spec_of(name):
    return resolve(name, preset_dirs(()))


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-tp.yaml"
    path.write_text(TINY)
    return path


# ---- the plan: fit's per-GPU bytes for exactly the layers each rank builds (no torch) --------


@pytest.mark.parametrize("tp, heads", [(2, 4), (8, 1), (16, 1)])
def test_llama_3_70b_per_gpu_bytes(tp, heads):
    tpp = make_tp_plan(spec_of("llama-3-70b"), tp=tp)
    per_token = 2 * heads * 128 * 2  # K and V x heads on one GPU x 128 x bf16
    assert len(tpp.ranks) == tp
    for r in tpp.ranks:
        assert r.layer_indices == (0,)
        assert r.bytes_per_token == per_token
        assert r.analytic_bytes == per_token * 256
    assert tpp.plan.analytic.total_bytes == 2 * 8 * 128 * 2 * 256  # one copy: all 8 KV heads
    copies = tp * heads / 8
    assert tpp.analytic_bytes == copies * tpp.plan.analytic.total_bytes
    share = tpp.ranks[0].kinds[0]
    assert share.replication == copies == (2.0 if tp == 16 else 1.0)


def test_deepseek_v3_latent_on_every_gpu():
    tpp = make_tp_plan(spec_of("deepseek-v3"), tp=4, context=64)
    assert [r.analytic_bytes for r in tpp.ranks] == [(512 + 64) * 2 * 64] * 4
    assert tpp.ranks[0].kinds[0].kv_heads_per_gpu is None and tpp.ranks[0].kinds[0].replication == 4.0


def test_mistral_past_its_window():
    tpp = make_tp_plan(spec_of("mistral-7b-v0.1"), tp=2, context=5000)
    share = tpp.ranks[0].kinds[0]
    assert (share.tokens, share.bytes_per_token) == (4096, 2 * 4 * 128 * 2)
    assert [r.analytic_bytes for r in tpp.ranks] == [2 * 4 * 128 * 2 * 4096] * 2


def test_stages_agree_with_fit_on_the_built_model():
    """The fullest stage's per-token bytes are what fit reports for the built layers at TP x PP."""
    spec = spec_of("gemma-3-27b")
    tpp = make_tp_plan(spec, tp=2, pp=2, layers=6)
    assert tpp.stages == ((0, 1, 2), (3, 4, 5))
    built = reduced_spec(spec, list(tpp.plan.layer_names))
    whole = fit(built, None, tp=2, pp=2, context=256, kv_dtype="bf16", reserve=0, weights_bytes=0, search_min=False)
    assert max(r.bytes_per_token for r in tpp.ranks) == whole.kv_bytes_per_token_per_gpu


def test_pipeline_default_layers():
    # one layer of each kind when that is enough stages, else the first pp layers
    assert make_tp_plan(spec_of("gemma-3-27b"), pp=2).stages == ((0,), (5,))
    tpp = make_tp_plan(spec_of("mistral-7b-v0.1"), tp=2, pp=2)
    assert tpp.stages == ((0,), (1,)) and [r.rank for r in tpp.ranks] == [0, 1, 2, 3]
    assert [(r.stage, r.tp_rank) for r in tpp.ranks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert "built the model's first 2 layers" in tpp.notes[0]


def test_megatron_split():
    assert [query_heads(64, 16, r) for r in (0, 15)] == [range(0, 4), range(60, 64)]
    # 8 KV heads, TP 16: ranks 0 and 1 share KV head 0 (held twice)
    assert [kv_heads_read(64, 8, query_heads(64, 16, r)) for r in (0, 1, 2)] == [range(0, 1)] * 2 + [range(1, 2)]
    assert kv_heads_read(32, 8, query_heads(32, 2, 1)) == range(4, 8)


@pytest.mark.parametrize("args, words", [
    (dict(tp=3), "does not divide the 64 attention heads"),
    (dict(tp=2, kv_dtype="int8"), "int8/int4"),
    (dict(tp=2, layers=1, pp=2), "--pp 2 needs at least 2 layers"),
    (dict(pp=100), "more than the 80 layers"),
])
def test_refused_shapes(args, words):
    with pytest.raises(FitUsageError, match=words):
        make_tp_plan(spec_of("llama-3-70b"), **args)


def test_expanded_mla_is_refused():
    with pytest.raises(FitUsageError, match="expanded"):
        make_tp_plan(spec_of("deepseek-v3"), tp=2, mla_layout="expanded")


def test_memory_guard_covers_all_ranks_together():
    tpp = make_tp_plan(spec_of("llama-3-70b"), tp=16)
    needs = total_needs(tpp, 4)
    one = total_needs(make_tp_plan(spec_of("llama-3-70b"), tp=1), 4)
    assert needs.weights > one.weights  # the replicated KV projections count on every rank
    total = needs.total + LAUNCHER_BYTES + 16 * PROCESS_BYTES["fork"]
    check_ram(tpp, 4, total, on_cpu=True)
    with pytest.raises(Exception, match="16 rank.* needs about .* of RAM .* the launcher and 16 rank processes"):
        check_ram(tpp, 4, total - 1, on_cpu=True)
    # ranks started as fresh interpreters each load torch
    with pytest.raises(Exception, match="needs about"):
        check_ram(tpp, 4, total, on_cpu=True, start="exec")


# ---- real ranks -------------------------------------------------------------------------------


def run(runner, app, *args):
    return runner.invoke(app, ["verify", *args])


def run_json(runner, app, *args):
    result = run(runner, app, *args, "--json")
    assert result.exit_code in (0, 1), result.output
    return result, json.loads(result.stdout)


def marked(mark: str, exclude: tuple[int, ...] = ()) -> list[int]:
    """Live (not zombie) processes started with KVCALC_TEST_MARK=mark in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"KVCALC_TEST_MARK={mark}".encode() in env and state != "Z":
            found.append(int(entry))
    return found


@pytest.fixture
def mark(monkeypatch):
    value = uuid.uuid4().hex
    monkeypatch.setenv("KVCALC_TEST_MARK", value)
    return value


def reference(spec, batch, context, seed=0, input_seed=None):
    """The single-process layers (DenseLayer, MLALayer) with the same global weights, in float64,
    run through the same prefill and decode steps: every step's output, (B, context, hidden).
    ``input_seed``: the inputs' seed when not the weights' (a data-parallel rank's own requests)."""
    import torch

    from kvcalc.spec import ChunkedLayer, SlidingLayer
    from kvcalc.verify.caches import Codec, StaticCache
    from kvcalc.verify.layers import rms_norm
    from kvcalc.verify.tp_layers import WeightSlices, full_layer

    f64, hidden = torch.float64, spec.hidden_size
    inputs = seed if input_seed is None else input_seed
    x0 = torch.randn(batch, context, hidden, generator=torch.Generator().manual_seed(inputs), dtype=f64)
    built = []
    for index, name in enumerate(spec.layers.order()):
        kind = spec.layers.kinds[name]
        window = kind.window if isinstance(kind, SlidingLayer) else None
        chunk = kind.chunk if isinstance(kind, ChunkedLayer) else None
        layer = full_layer(spec.attention_of(name), hidden, WeightSlices(seed, f"layer{index}", f64, "cpu"),
                           window=window, chunk=chunk)
        codec = Codec("fp32", f64)
        codec.storage = f64
        built.append((layer, StaticCache(codec, batch, layer.cache_feats(), "cpu",
                                         capacity=min(context, window or chunk or context))))
    steps = [(0, context - 4)] + [(t, t + 1) for t in range(context - 4, context)]
    outs = []
    with torch.inference_mode():
        for start, end in steps:
            x, pos = x0[:, start:end], torch.arange(start, end)
            for layer, cache in built:
                x = x + layer(rms_norm(x), pos, cache)
            outs.append(x)
    return torch.cat(outs, dim=1)


@needs_torch
def test_weight_slices_are_slices_of_one_weight():
    import torch

    from kvcalc.verify.tp_layers import WeightSlices

    make = WeightSlices(7, "layer3", torch.float64, "cpu")
    whole = make("wq", (300, 400))  # 120,000 elements: the 65,521-element table wraps mid-row
    part = make("wq", (300, 400), rows=range(50, 260), cols=range(123, 317))
    assert torch.equal(part, whole[50:260, 123:317])
    assert not torch.equal(make("wk", (300, 400)), whole)


@needs_torch
@pytest.mark.parametrize("tp, pp", [(4, 1), (2, 2)])
def test_sharded_layers_equal_the_single_process_layers(tiny, tp, pp):
    """MHA, GQA divided and replicated, MQA, MLA (with and without low-rank queries), windows and
    chunks: the all-reduced shards, through the pipeline, give the single-process output."""
    import torch

    from kvcalc.verify.tp import verify_tp

    spec = load_file(tiny)
    result = verify_tp(spec, tp=tp, pp=pp, layers=6, context=20, batch=2, exact=True, keep_outputs=True)
    last = [r.rank for r in result.ranks if r.stage == pp - 1]
    assert sorted(result.outputs) == last
    expected = reference(spec, batch=2, context=20)
    for rank in last:
        torch.testing.assert_close(result.outputs[rank], expected, rtol=1e-12, atol=1e-12)
    assert result.outputs[last[0]].abs().max() > 1  # outputs, not zeros
    # at TP 4 the 2-KV-head kind is held twice and MQA's one head four times
    kv = {r.rank: r.kv_heads for r in result.ranks}
    if tp == 4:
        assert [kv[r]["rep"] for r in range(4)] == [(0, 1), (0, 1), (1, 2), (1, 2)]
        assert [kv[r]["mqa"] for r in range(4)] == [(0, 1)] * 4
        assert kv[0]["mla"] is None


@needs_torch
def test_llama_3_70b_tp16_holds_each_kv_head_twice(runner, kvcalc_app):
    result, data = run_json(runner, kvcalc_app, "llama-3-70b", "--tp", "16", "-c", "32")
    assert result.exit_code == 0, result.output
    per_rank = 2 * 1 * 128 * 32 * 2  # one KV head per GPU, 32 tokens, bf16
    for key in ("model", "device", "cache", "layers", "context", "batch", "analytic_bytes", "measured_bytes",
                "allocator_bytes", "peak_bytes", "match", "tp", "pp", "ranks", "replication"):
        assert key in data
    assert (data["tp"], data["pp"], data["device"], data["backend"]) == (16, 1, "cpu", "gloo")
    assert [(r["rank"], r["measured_bytes"], r["analytic_bytes"], r["match"]) for r in data["ranks"]] == [
        (i, per_rank, per_rank, True) for i in range(16)]
    assert data["measured_bytes"] == data["analytic_bytes"] == 16 * per_rank
    assert data["unsharded_bytes"] == 8 * per_rank  # one copy of the 8 KV heads
    assert data["replication"] == data["measured_replication"] == 2.0
    assert [r["kv_heads"]["full"] for r in data["ranks"][:4]] == [[0, 1], [0, 1], [1, 2], [1, 2]]
    assert data["match"] is True


@needs_torch
def test_deepseek_v3_tp4_table(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "deepseek-v3", "--tp", "4", "-c", "24")
    assert result.exit_code == 0, result.output
    per_rank = (512 + 64) * 2 * 24
    text = " ".join(result.stdout.split())
    assert text.count(f"latent 1,152 {per_rank:,} {per_rank:,} ok") == 4
    assert "keep MLA's latent whole on every GPU, so TP 4 holds it 4 times" in text
    assert f"the 4 ranks hold {4 * per_rank:,} B measured, 4 x the {per_rank:,} B of one copy" in text
    assert "MATCH: every rank's measured KV equals fit's per-GPU bytes (4 of 4 ranks" in text
    if os.cpu_count() < 4:
        assert "4 ranks on" in text and "they take turns" in text


@needs_torch
@pytest.mark.parametrize("cache, tokens, windowed", [("paged", 32, 16), ("dynamic", 20, 8)])
def test_every_kind_at_tp2_with_windows(runner, kvcalc_app, tiny, cache, tokens, windowed):
    _, data = run_json(runner, kvcalc_app, str(tiny), "--tp", "2", "--layers", "6", "-c", "20", "--cache", cache)
    per_rank = sum(b * (windowed if k in WINDOWED else tokens) for k, b in TINY_TP2.items())
    expected = [r["expected_bytes"] for r in data["ranks"]]
    assert expected == [r["measured_bytes"] for r in data["ranks"]] == [per_rank, per_rank]
    exact = sum(b * (8 if k in WINDOWED else 20) for k, b in TINY_TP2.items())
    assert data["analytic_bytes"] == 2 * exact
    assert data["match"] is True
    assert {g["name"]: g["measured_bytes"] for g in data["groups"]} == {
        k: 2 * b * (windowed if k in WINDOWED else tokens) for k, b in TINY_TP2.items()}


@needs_torch
def test_a_wrong_rank_cache_is_caught(runner, kvcalc_app, monkeypatch):
    import kvcalc.verify.tp as tp

    monkeypatch.setattr(tp, "_FAULT", {"rank": 1, "kind": "extra-slot"})
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "--tp", "2", "-c", "32")
    assert result.exit_code == 1 and data["match"] is False
    ranks = data["ranks"]
    assert ranks[0]["match"] is True and ranks[1]["match"] is False
    assert ranks[1]["measured_bytes"] - ranks[1]["analytic_bytes"] == 2 * 4 * 128 * 2  # one token too many


@needs_torch
@linux
def test_a_failing_rank_ends_every_process(runner, kvcalc_app, monkeypatch, mark):
    import kvcalc.verify.tp as tp

    monkeypatch.setattr(tp, "_FAULT", {"rank": 1, "kind": "raise"})
    result = run(runner, kvcalc_app, "llama-3-8b", "--tp", "4", "-c", "16")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: rank 1: RuntimeError: injected fault"
    assert marked(mark) == []


@needs_torch
@linux
def test_no_process_is_left_behind(runner, kvcalc_app, mark):
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "--tp", "2", "--pp", "2", "-c", "16")
    assert result.exit_code == 0 and data["match"] is True
    assert data["stages"] == [[0], [1]]
    assert marked(mark) == []


@needs_torch
@linux
def test_ctrl_c_ends_every_process(mark):
    driver = (
        "import kvcalc.verify.tp as tp\n"
        "tp._FAULT = {'rank': 0, 'kind': 'sleep', 'seconds': 60}\n"
        "from kvcalc.cli import app\n"
        "app(['verify', 'llama-3-8b', '--tp', '2', '-c', '16'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while len(marked(mark, exclude=(proc.pid,))) < 3 and time.monotonic() < deadline:  # launcher + 2 ranks
            time.sleep(0.1)
        assert len(marked(mark, exclude=(proc.pid,))) == 3
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert marked(mark) == []


@needs_torch
@linux
def test_a_killed_parent_takes_its_ranks_along(mark):
    """SIGKILL leaves the parent no time to clean up: the launcher's lifeline (its stdin) closes."""
    driver = (
        "import kvcalc.verify.tp as tp\n"
        "tp._FAULT = {'rank': 1, 'kind': 'sleep', 'seconds': 60}\n"
        "from kvcalc.cli import app\n"
        "app(['verify', 'llama-3-8b', '--tp', '2', '-c', '16'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(marked(mark, exclude=(proc.pid,))) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(marked(mark, exclude=(proc.pid,))) == 3
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked(mark) == []


@needs_torch
def test_ranks_started_without_fork(tiny):
    """The path for platforms without a safe fork: each rank a fresh interpreter."""
    from kvcalc.verify.tp import verify_tp

    result = verify_tp(load_file(tiny), tp=2, layers=3, context=12, start="exec")
    assert result.match and len({r.pid for r in result.ranks}) == 2


@needs_torch
def test_option_errors(runner, kvcalc_app):
    for args, code, words in [
        (["llama-3-70b", "--tp", "3"], 2, "does not divide"),
        (["llama-3-70b", "--tp", "2", "--kv-dtype", "int4"], 2, "int8/int4"),
        (["llama-3-70b", "--engine", "trtllm"], 2, "give --tp"),
        (["--all", "--tp", "2"], 2, "--all verifies on one device"),
        (["llama-3-70b", "--tp", "2", "--device", "mps"], 1, "mps"),
    ]:
        result = run(runner, kvcalc_app, *args)
        assert result.exit_code == code, (args, result.output)
        assert words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@needs_torch
def test_more_ranks_than_gpus(monkeypatch):
    import torch

    import kvcalc.verify.tp as tp
    from kvcalc.errors import KvcalcError

    monkeypatch.setattr(tp, "resolve_device", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H200")
    with pytest.raises(KvcalcError, match=r"4 rank\(s\) need 4 GPU\(s\).*this machine has 1: cuda:0 \(NVIDIA H200\)"):
        tp.rank_devices("cuda", 4)


@needs_torch
def test_memory_guard_refuses_before_any_process(runner, kvcalc_app, mark):
    started = time.perf_counter()
    result = run(runner, kvcalc_app, "llama-3-70b", "--tp", "8", "-c", "4M")
    assert result.exit_code == 1
    assert "8 rank(s) needs about" in result.stderr and "of RAM" in result.stderr
    assert time.perf_counter() - started < 5
    if Path("/proc/self/environ").exists():
        assert marked(mark) == []


@needs_torch
@pytest.mark.skipif(find_spec("torch") is None or not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_tp(runner, kvcalc_app):
    import torch

    tp = 2 if torch.cuda.device_count() >= 2 else 1
    result, data = run_json(runner, kvcalc_app, "llama-3-8b", "--tp", str(tp), "-c", "64", "--device", "cuda")
    assert data["backend"] == "nccl" and data["match"] is True, result.output
    assert all(r["allocator"]["other"] == 0 for r in data["ranks"])
