"""`kvcalc verify --tp T --dcp C`: vLLM's decode context parallelism on real ranks (gloo).

Each DCP rank caches the tokens t % C == its DCP rank of every request and attends over them;
the partial outputs are merged by their log-sum-exp. Bytes here are derived by hand: K and V x
the KV heads a rank holds x head_dim x bytes (MLA: its latent), times the slots each rank
allocates, cdiv(context, C) per request (paged: whole 16-token blocks of them).
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from kvcalc.capacity.fit import FitUsageError
from kvcalc.sources.presets import load_file, preset_dirs
from kvcalc.sources.resolve import resolve
from kvcalc.verify.tp_plan import make_tp_plan

needs_torch = pytest.mark.skipif(find_spec("torch") is None, reason="needs torch")

TINY = """\
name: tiny-dcp
source: [a test model]
parameters: tiny
max_context: 4096
dtype: fp32
hidden_size: 48
attention: {kind: gqa, heads: 8, kv_heads: 2, head_dim: 8}
layers:
  count: 3
  kinds:
    gqa: {type: full}
    mqa: {type: full, attention: {kind: mqa, heads: 4, head_dim: 6}}
    mla: {type: full, attention: {kind: mla, heads: 4, kv_lora_rank: 16, qk_rope_head_dim: 4,
                                  qk_nope_head_dim: 6, v_head_dim: 5, q_lora_rank: 12}}
  pattern: [gqa, mqa, mla]
"""
# At TP 4, fp32, per token on one GPU before DCP: GQA 1 of 2 KV heads, K and V x 8 x 4 B = 64;
# MQA its one head, 2 x 6 x 4 = 48; MLA the latent (16 + 4) x 4 = 80. Per rank: 192 B per token held.
HELD_PER_TOKEN = {"gqa": 2 * 8 * 4, "mqa": 2 * 6 * 4, "mla": (16 + 4) * 4}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-dcp.yaml"
    path.write_text(TINY)
    return path


def test_plan_llama_3_70b_dcp_halves_per_gpu_bytes():
    """TP 16 holds each of the 8 KV heads on 2 GPUs; DCP 2 makes those 2 GPUs split the tokens."""
    spec = resolve("llama-3-70b", preset_dirs(()))
    plain = make_tp_plan(spec, tp=16, context=32)
    dcp = make_tp_plan(spec, tp=16, dcp=2, context=32)
    assert [r.bytes_per_token for r in plain.ranks] == [2 * 1 * 128 * 2] * 16  # K and V x 1 head x bf16
    assert [r.bytes_per_token for r in dcp.ranks] == [2 * 1 * 128 * 2 // 2] * 16
    assert [r.expected_bytes for r in dcp.ranks] == [2 * 1 * 128 * 2 * 16] * 16  # 16 of the 32 tokens each
    assert [r.dcp_rank for r in dcp.ranks] == [0, 1] * 8


@pytest.mark.parametrize("args, words", [
    (dict(spec="llama-3-8b", tp=4, dcp=3), "must divide --tp 4"),
    (dict(spec="llama-3-70b", tp=8, dcp=2), "needs --tp above its 8 KV heads"),
    (dict(spec="mistral-7b-v0.1", tp=16, dcp=2), "sliding"),
    (dict(spec="llama-3-70b", tp=16, dcp=2, engine="sglang"), "vLLM only"),
    (dict(spec="llama-3-70b", tp=16, dcp=2, cache="dynamic"), "--cache static or paged"),
])
def test_refused(args, words):
    spec = resolve(args.pop("spec"), preset_dirs(()))
    with pytest.raises(FitUsageError, match=words):
        make_tp_plan(spec, **args)


def test_a_dcp_group_straddling_kv_heads_is_refused(tmp_path):
    """TP 12 over 4 KV heads: ranks 0-2 read head 0, so DCP group {2, 3} would mix heads 0 and 1."""
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nsource: [a test model]\nparameters: tiny\nmax_context: 4096\ndtype: fp32\n"
                    "hidden_size: 48\nattention: {kind: gqa, heads: 48, kv_heads: 4, head_dim: 8}\n"
                    "layers: {count: 1, kinds: {full: {type: full}}, pattern: [full]}\n")
    spec = load_file(path)
    with pytest.raises(FitUsageError, match="read different KV heads"):
        make_tp_plan(spec, tp=12, dcp=2)


def test_bad_input_exits_2_with_one_line(runner, kvcalc_app):
    out = runner.invoke(kvcalc_app, ["verify", "llama-3-70b", "--tp", "8", "--dcp", "2"])
    assert out.exit_code == 2
    message = out.stderr.strip()
    assert "\n" not in message and "--dcp 2 with a GQA model needs --tp above its 8 KV heads" in message


@needs_torch
def test_interleaved_cache_holds_its_tokens():
    import torch

    from kvcalc.verify.caches import Codec
    from kvcalc.verify.tp_dcp import dcp_token_problems, interleaved_cache

    codec = Codec("fp32", torch.float32)
    caches = [interleaved_cache("paged", codec, 2, [(3,)], "cpu", 21, 4, r, torch.Generator().manual_seed(0))
              for r in range(4)]
    steps = [(0, 17)] + [(t, t + 1) for t in range(17, 21)]
    for start, end in steps:
        pos = torch.arange(start, end)
        part = pos.to(torch.float32)[None, :, None].expand(2, -1, 3)
        for cache in caches:
            (held,), kpos = cache.update([part], pos)
            assert torch.equal(held[0, :, 0], kpos.to(torch.float32))  # each slot holds its own token
    # ranks 0-3 hold 6, 5, 5, 5 of the 21 tokens, in one 16-token block each
    assert [c.positions().tolist() for c in caches] == [list(range(r, 21, 4)) for r in range(4)]
    assert [c.inner.capacity for c in caches] == [16] * 4
    assert dcp_token_problems((0,), [("full", caches[1])], 21, 4, 1) == ()
    assert dcp_token_problems((0,), [("full", caches[1])], 21, 4, 2) != ()  # not rank 2's tokens


@needs_torch
@pytest.mark.parametrize("cache, slots", [("static", 11), ("paged", 16)])
def test_dcp_ranks_equal_the_single_process_layers(tiny, cache, slots):
    """TP 4 with DCP 2: two groups of two ranks; each rank caches the odd or even tokens of 21, and
    the merged outputs equal the single-process layers in float64; each rank measures fit's bytes."""
    import torch
    from test_verify_tp import reference

    from kvcalc.verify.tp import verify_tp

    spec = load_file(tiny)
    result = verify_tp(spec, tp=4, dcp=2, layers=3, context=21, batch=2, cache=cache, exact=True, keep_outputs=True)
    expected = reference(spec, batch=2, context=21)
    assert sorted(result.outputs) == [0, 1, 2, 3]
    for rank in range(4):
        torch.testing.assert_close(result.outputs[rank], expected, rtol=1e-12, atol=1e-12)
    assert expected.abs().max() > 1
    measured = verify_tp(spec, tp=4, dcp=2, layers=3, context=21, batch=2, cache=cache)
    assert measured.match, [r.token_problems for r in measured.ranks]
    assert [r.dcp_rank for r in measured.ranks] == [0, 1, 0, 1]
    for r in measured.ranks:
        # fit's per-GPU bytes per token are half the 192 held; each rank allocates `slots` per request
        assert r.bytes_per_token == 192 // 2
        assert r.analytic_bytes == 96 * 21 * 2
        assert r.measured_by_kind == {n: b * slots * 2 for n, b in HELD_PER_TOKEN.items()}
        assert r.measured_bytes == r.expected_bytes == 192 * slots * 2


@needs_torch
@pytest.mark.parametrize("layout, bytes_by_rank", [
    # stage 0 holds the GQA (1 KV head: 2 x 8 x 4 B) and MQA (2 x 6 x 4 B) layers, stage 1 the MLA latent (20 x 4 B);
    # 10 slots (cdiv(19, 2)) per request, batch 2
    (dict(pp=2), [112 * 10 * 2] * 2 + [80 * 10 * 2] * 2),
    (dict(dp=2), [192 * 10 * 2] * 4),  # two DP groups, each its own requests
])
def test_dcp_with_pipeline_stages_and_dp_ranks(tmp_path, layout, bytes_by_rank):
    import torch
    from test_verify_tp import reference

    from kvcalc.verify.tp import verify_tp
    from kvcalc.verify.tp_rank import input_seed

    path = tmp_path / "one-kv-head.yaml"
    path.write_text(TINY.replace("heads: 8, kv_heads: 2", "heads: 8, kv_heads: 1"))  # DCP 2 at TP 2
    spec = load_file(path)
    result = verify_tp(spec, tp=2, dcp=2, layers=3, context=19, batch=2, exact=True, keep_outputs=True, **layout)
    assert result.outputs
    for r in result.ranks:
        if r.rank in result.outputs:
            expected = reference(spec, batch=2, context=19, input_seed=input_seed(0, r.dp_rank))
            torch.testing.assert_close(result.outputs[r.rank], expected, rtol=1e-12, atol=1e-12)
    measured = verify_tp(spec, tp=2, dcp=2, layers=3, context=19, batch=2, **layout)
    assert measured.match
    assert [r.measured_bytes for r in measured.ranks] == bytes_by_rank
    assert [r.dcp_rank for r in measured.ranks] == [0, 1, 0, 1]


@needs_torch
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_deepseek_v3_dcp_4_and_no_process_left(runner, kvcalc_app, monkeypatch):
    import uuid

    from test_verify_tp import marked

    mark = uuid.uuid4().hex
    monkeypatch.setenv("KVCALC_TEST_MARK", mark)
    out = runner.invoke(kvcalc_app, ["verify", "deepseek-v3", "--tp", "4", "--dcp", "4", "-c", "32", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert (data["tp"], data["dcp"], data["match"]) == (4, 4, True)
    for r in data["ranks"]:  # the latent (512 + 64) x bf16, 8 of the 32 tokens on each rank, one layer
        assert r["measured_bytes"] == r["expected_bytes"] == 576 * 2 * 8
        assert r["bytes_per_token"] == 576 * 2 // 4
    assert [r["dcp_rank"] for r in data["ranks"]] == [0, 1, 2, 3]
    assert marked(mark) == []
