"""Parallel layouts as MoE and MLA models are served (issue 21): data-parallel attention, expert
parallelism, decode context parallelism.

Engine rules from vLLM 0.33.0 and SGLang 0.5.23 (docs/engines/parallel.md cites the lines); model
facts from ../shared/reference/model_facts.yaml and the presets' released configs. Every expected
number below is derived here by hand; none is kvcalc's output.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from fitting import fit_with as fit

import kvcalc

H200 = 150_109_945_856  # the catalog's CUDA total for an H200 SXM (torch's 143156 MiB)
H200_SMI_MIB = 143771  # nvidia-smi's total, which SGLang's default fraction uses
K128 = 131072


def cdiv(a, b):
    return -(-a // b)


# --- DeepSeek-V3 (model_facts.yaml; config_671B.json) -------------------------------------------
# hidden 7168, 61 layers (3 dense with intermediate 18432, 58 MoE), 256 routed experts + 1 shared of
# intermediate 2048, vocabulary 129,280 (a multiple of 64), untied; MLA: 128 heads, q_lora_rank 1536,
# kv_lora_rank 512, rope 64, nope 128, v 128. Layer matrices fp8 (1 byte), the rest bf16 (2 bytes).
H, L, DENSE, MOE, V = 7168, 61, 3, 58, 129280
REPLICATED = L * H * (1536 + 512 + 64)  # q_a_proj and kv_a_proj_with_mqa: whole on every GPU
ATTENTION = L * (1536 * 128 * (128 + 64) + 512 * 128 * (128 + 128) + 128 * 128 * H)  # q_b, kv_b, o
DENSE_MLP = DENSE * 3 * H * 18432 + MOE * 3 * H * 2048  # dense MLPs and the shared expert
ROUTED = MOE * 256 * 3 * H * 2048
OTHER = L * 2 * H + L * (1536 + 512) + MOE * (H * 256 + 256) + H  # norms, MLA norms, routers + bias, final norm
ROWS = V * H  # one embedding or head, whole
DS_TOKEN = L * (512 + 64) * 2  # the latent, bf16: 70,272 B per token on every GPU of an attention group


def test_deepseek_parts_add_up_to_its_parameter_count():
    from kvcalc.capacity.params import parameter_count

    count = parameter_count(kvcalc.load_preset("deepseek-v3"))
    assert count.linear == REPLICATED + ATTENTION + DENSE_MLP + ROUTED
    assert count.total == count.linear + OTHER + 2 * ROWS


# vLLM TP 8: every matrix split 8 ways but MLA's down projections; embedding and head by rows
VLLM_TP8_WEIGHTS = REPLICATED + cdiv(ATTENTION + DENSE_MLP + ROUTED, 8) + 2 * OTHER + 2 * (V // 8 * H * 2)
# vLLM --data-parallel-size 8 --enable-expert-parallel (TP 1): all whole but routed experts over 8
VLLM_DP8_WEIGHTS = REPLICATED + ATTENTION + DENSE_MLP + ROUTED // 8 + 2 * OTHER + 2 * ROWS * 2
# SGLang --tp 8 --attn-dp-size 8 --ep 8: attention and input embedding over attention TP 1 (whole),
# dense MLPs, shared and routed experts and the head over TP 8
SGLANG_DP8_WEIGHTS = REPLICATED + ATTENTION + cdiv(DENSE_MLP + ROUTED, 8) + 2 * OTHER + 2 * ROWS + V // 8 * H * 2


def _vllm_pool(weights):
    """vLLM 0.33: budget ceil(total x 0.92) - weights - reserve (0 here); one group of 61 layers, pages of
    16 tokens x 1,152 B; a request of 128K takes 8,192 pages."""
    budget = cdiv(H200 * 92, 100) - weights
    blocks = budget // (L * 16 * 1152)
    return blocks * 16, blocks // (K128 // 16)


def _sglang_pool(weights, fraction):
    """SGLang 0.5.23: f x P - weights, P the total (reserve 0); page 1; a 70,272-byte cell per token."""
    budget = H200 * fraction.numerator // fraction.denominator - weights
    tokens = budget // DS_TOKEN
    return tokens, tokens // K128


def test_deepseek_v3_8xh200_128k_vllm_tp8_against_dp8_ep8():
    spec = kvcalc.load_preset("deepseek-v3")
    tp8 = fit(spec, H200, gpu="h200", tp=8, context=K128, reserve=0, search_min=False)
    dp8 = fit(spec, H200, gpu="h200", tp=1, dp=8, ep=8, context=K128, reserve=0, search_min=False)
    assert (tp8.gpus, dp8.gpus) == (8, 8)  # each DP rank a whole TP group of 1
    assert (dp8.dp, dp8.ep, dp8.dcp, dp8.attention_tp) == (8, 8, 1, 1)
    # the latent is whole on every GPU either way: no gain per token, the gain is in the weights
    assert tp8.kv_bytes_per_token_per_gpu == dp8.kv_bytes_per_token_per_gpu == DS_TOKEN == 70_272
    assert tp8.weights_bytes_per_gpu == VLLM_TP8_WEIGHTS
    assert dp8.weights_bytes_per_gpu == VLLM_DP8_WEIGHTS
    tokens8, requests8 = _vllm_pool(VLLM_TP8_WEIGHTS)
    tokens_dp, requests_dp = _vllm_pool(VLLM_DP8_WEIGHTS)
    assert (tp8.kv_pool_per_rank, tp8.max_concurrency, tp8.total_concurrency) == (tokens8, requests8, requests8)
    assert (dp8.kv_pool_per_rank, dp8.max_concurrency) == (tokens_dp, requests_dp)
    assert dp8.total_concurrency == 8 * requests_dp  # each DP rank its own pool and requests
    assert dp8.total_concurrency >= 4 * tp8.total_concurrency


def test_deepseek_v3_8xh200_128k_sglang_tp8_against_attention_dp8_ep8():
    spec = kvcalc.load_preset("deepseek-v3")
    tp8 = fit(spec, H200, engine="sglang", gpu="h200", smi_memory=H200_SMI_MIB * 2**20, tp=8, context=K128,
              reserve=0, search_min=False)
    dp8 = fit(spec, H200, engine="sglang", gpu="h200", smi_memory=H200_SMI_MIB * 2**20, tp=8, dp=8, ep=8,
              context=K128, reserve=0, search_min=False)
    assert (tp8.gpus, dp8.gpus) == (8, 8)  # attention DP sits inside the TP group
    assert (dp8.attention_tp, tp8.attention_tp) == (1, 8)
    assert tp8.kv_bytes_per_token_per_gpu == dp8.kv_bytes_per_token_per_gpu == DS_TOKEN
    assert tp8.weights_bytes_per_gpu == VLLM_TP8_WEIGHTS  # SGLang places everything over TP 8 without DP
    assert dp8.weights_bytes_per_gpu == SGLANG_DP8_WEIGHTS
    # the default fraction (memory_hook.py): 512 + 8192 x 1.5 + TP 8 / 8 x 1024 + decode graphs 512 x 2
    # + MLA prefill graphs 1536 MiB; DP attention adds 512 x 8 x 3 + 512 x 8 x 1.5 (max_bs 512 > 300)
    plain = 512 + 8192 * 1.5 + 1024 + 1024 + 1536
    dp_reserve = plain + 512 * 8 * 3 + 512 * 8 * 1.5
    f_tp8 = Fraction(str(round((H200_SMI_MIB - plain) / H200_SMI_MIB, 3)))
    f_dp8 = Fraction(str(round((H200_SMI_MIB - dp_reserve) / H200_SMI_MIB, 3)))
    assert (f_tp8, f_dp8) == (Fraction("0.886"), Fraction("0.758"))
    assert (tp8.gpu_util, dp8.gpu_util) == (0.886, 0.758)
    tokens8, requests8 = _sglang_pool(VLLM_TP8_WEIGHTS, f_tp8)
    tokens_dp, requests_dp = _sglang_pool(SGLANG_DP8_WEIGHTS, f_dp8)
    assert (tp8.kv_pool_per_rank, tp8.total_concurrency) == (tokens8, requests8)
    assert (dp8.kv_pool_per_rank, dp8.max_concurrency, dp8.total_concurrency) == (tokens_dp, requests_dp,
                                                                                  8 * requests_dp)
    # SGLang's own heuristic reserves 18 GiB more per GPU for DP attention: at its defaults the DP layout
    # holds fewer than 4x TP 8's requests (the guess; the code decides). At TP 8's fraction it does.
    assert dp8.total_concurrency < 4 * tp8.total_concurrency
    same = fit(spec, H200, engine="sglang", gpu="h200", tp=8, dp=8, ep=8, context=K128, reserve=0,
               gpu_util=f_tp8, search_min=False)
    assert same.total_concurrency == 8 * _sglang_pool(SGLANG_DP8_WEIGHTS, f_tp8)[1]
    assert same.total_concurrency >= 4 * tp8.total_concurrency


def test_vllm_dp_with_tp_replicates_deepseeks_shared_experts():
    # DP 2 x TP 4 with EP: sequence-parallel MoE (config/parallel.py use_sequence_parallel_moe: EP, TP > 1,
    # DP > 1, the default allgather_reducescatter backend) holds the shared experts whole on every GPU
    spec = kvcalc.load_preset("deepseek-v3")
    r = fit(spec, H200, tp=4, dp=2, ep=8, context=K128, reserve=0, search_min=False)
    shared = MOE * 3 * H * 2048
    dense_only = DENSE * 3 * H * 18432
    assert r.weights_bytes_per_gpu == (REPLICATED + shared + cdiv(ATTENTION + dense_only, 4) + ROUTED // 8
                                       + 2 * OTHER + 2 * (V // 4 * H * 2))
    # without EP the MoE layers are tensor parallel over tp x dp = 8 and the shared experts split over TP 4
    plain = fit(spec, H200, tp=4, dp=2, context=K128, reserve=0, search_min=False)
    assert plain.weights_bytes_per_gpu == (REPLICATED + cdiv(ATTENTION + dense_only + shared, 4) + ROUTED // 8
                                           + 2 * OTHER + 2 * (V // 4 * H * 2))


def test_sglang_max_running_requests_per_attention_dp_rank():
    # kv_cache_configurator.py 3119-3133: per DP worker clamp(int(T / context x 512), 2048, 4096), at most
    # T // 2, T the rank's own pool; a given --max-running-requests is divided by attn_dp_size (3128)
    spec = kvcalc.load_preset("deepseek-v3")
    r = fit(spec, H200, engine="sglang", gpu="h200", tp=8, dp=8, ep=8, context=K128, reserve=0,
            search_min=False)
    t = r.kv_pool_per_rank
    assert r.max_running_requests == min(min(max(t * 512 // K128, 2048), 4096), t // 2)


# --- Llama-3-70B with DCP (vLLM): 80 layers, 64 heads, 8 KV heads of 128, bf16 ----------------------
LLAMA_TOKEN_PER_HEAD = 80 * 2 * 128 * 2  # K and V of one KV head in every layer: 40,960 B


def test_llama_3_70b_dcp_2_inside_tp_8_is_refused_as_vllm_refuses_it():
    # vLLM config/model.py: DCP for GQA needs TP above the KV heads (TP 8 = 8 KV heads holds no copies)
    spec = kvcalc.load_preset("llama-3-70b")
    with pytest.raises(ValueError, match="needs --tp above its 8 KV heads"):
        fit(spec, H200, tp=8, dcp=2, context=K128, search_min=False)


def test_llama_3_70b_dcp_2_halves_kv_per_token_per_gpu_past_the_head_count():
    # TP 16 over 8 KV heads: each GPU holds 1 head, every head twice; DCP 2 interleaves each request's
    # tokens over those two copies (pages of 16 tokens per GPU cover 32 tokens of a request)
    spec = kvcalc.load_preset("llama-3-70b")
    tp16 = fit(spec, H200, tp=16, context=K128, reserve=0, search_min=False)
    dcp = fit(spec, H200, tp=16, dcp=2, context=K128, reserve=0, search_min=False)
    assert tp16.kv_bytes_per_token_per_gpu == LLAMA_TOKEN_PER_HEAD == 40_960
    assert dcp.kv_bytes_per_token_per_gpu == LLAMA_TOKEN_PER_HEAD // 2
    assert dcp.weights_bytes_per_gpu == tp16.weights_bytes_per_gpu
    assert (tp16.kv_replication, dcp.kv_replication) == (2.0, 1.0)
    page = 80 * 16 * 128 * 2 * 2  # one page of 16 tokens, one KV head, every layer: 655,360 B
    blocks = tp16.kv_budget_bytes_per_gpu // page
    assert dcp.kv_blocks_per_gpu == tp16.kv_blocks_per_gpu == blocks
    assert tp16.max_concurrency == blocks // (K128 // 16)
    assert dcp.max_concurrency == blocks // (K128 // 32)
    assert dcp.kv_pool_per_rank == blocks * 32


@pytest.mark.parametrize("tp, dcp, rule", [
    (16, 4, "more than tp // kv_heads = 16 // 8 = 2"),
    (16, 3, "must divide --tp 16"),
])
def test_dcp_rules_for_gqa(tp, dcp, rule):
    spec = kvcalc.load_preset("llama-3-70b")
    with pytest.raises(ValueError, match=rule.replace("(", r"\(").replace(")", r"\)")):
        fit(spec, H200, tp=tp, dcp=dcp, context=K128, search_min=False)


def test_dcp_on_mla_divides_the_latent():
    spec = kvcalc.load_preset("deepseek-v3")
    r = fit(spec, H200, tp=8, dcp=8, context=K128, reserve=0, search_min=False)
    assert r.kv_bytes_per_token_per_gpu == DS_TOKEN // 8 == 8_784
    assert r.max_concurrency == r.kv_blocks_per_gpu // (K128 // (16 * 8))


# --- Qwen3-235B-A22B with EP 8: 94 layers, all MoE (128 experts of 1536), 64 heads, 4 KV heads of 128 --
def test_qwen3_235b_ep8():
    spec = kvcalc.load_preset("qwen3-235b-a22b")
    h, layers, v = 4096, 94, 151936
    attention = layers * (h * 64 * 128 + 2 * h * 4 * 128 + 64 * 128 * h)
    routed = layers * 128 * 3 * h * 1536
    other = layers * (2 * h + 2 * 128 + h * 128) + h  # norms, q/k norms, router; final norm
    # vLLM TP 8 --enable-expert-parallel (ep = tp x dp = 8): the same bytes as TP 8, experts whole 16 each
    tp8 = fit(spec, H200, tp=8, ep=8, context=32768, reserve=0, search_min=False)
    per_gpu = cdiv((attention + routed) * 2, 8) + 2 * other + 2 * (v // 8 * h * 2)
    assert tp8.weights_bytes_per_gpu == per_gpu
    assert tp8.kv_bytes_per_token_per_gpu == layers * 1 * 2 * 128 * 2  # 4 KV heads over 8: 1 per GPU
    # vLLM DP 2 x TP 4 with EP 8: attention over 4 (one KV head each, none copied), experts over 8
    dp2 = fit(spec, H200, tp=4, dp=2, ep=8, context=32768, reserve=0, search_min=False)
    assert dp2.gpus == 8 and dp2.kv_replication == 1.0
    assert dp2.weights_bytes_per_gpu == (cdiv(attention * 2, 4) + cdiv(routed * 2, 8) + 2 * other
                                         + 2 * (v // 4 * h * 2))
    assert dp2.total_concurrency == 2 * dp2.max_concurrency
    # SGLang TP 8 EP 8: routed experts over EP x MoE TP = 8, as at TP 8 alone
    sg = fit(spec, H200, engine="sglang", tp=8, ep=8, context=32768, reserve=0, search_min=False)
    assert sg.weights_bytes_per_gpu == tp8.weights_bytes_per_gpu


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, engine, options, rule", [
    ("deepseek-v3", "sglang", {"tp": 8, "dp": 3}, "--dp 3 must divide --tp 8"),
    ("llama-3-70b", "vllm", {"tp": 8, "ep": 8}, "has none"),
    ("deepseek-v3", "vllm", {"tp": 8, "ep": 4}, "tp x dp = 8"),
    ("deepseek-v3", "trtllm", {"tp": 8, "dp": 8}, "not modelled for trtllm"),
    ("deepseek-v3", "sglang", {"tp": 8, "dcp": 2}, "vLLM only"),
])
def test_layouts_engines_refuse(model, engine, options, rule):
    from kvcalc.capacity.deployment import FitUsageError

    with pytest.raises(FitUsageError, match=rule):
        fit(kvcalc.load_preset(model), H200, engine=engine, context=K128, search_min=False, **options)


def test_json_rows_name_the_engines_dp_ep_layout(runner, kvcalc_app):
    out = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "--gpus", "8", "-c", "128k", "--json"])
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("dp", "ep", "dcp", "attention_tp", "kv_pool_per_rank"):
        assert key in data
    rows = {(r["tp"], r["dp"], r["ep"]): r for r in data["layouts"]}
    picked = [r for r in data["layouts"] if r["engine_pick"]]
    assert len(picked) == 1 and (picked[0]["tp"], picked[0]["dp"], picked[0]["ep"]) == (1, 8, 8)
    dp8 = rows[(1, 8, 8)]
    assert dp8["weights_bytes_per_gpu"] == VLLM_DP8_WEIGHTS  # the reserve does not enter the weights
    assert dp8["gpus"] == 8 and dp8["total_requests"] == 8 * dp8["requests_per_rank"]


# --- the command line: layout flags emitted and parsed back; bad input exits 2 ------------------------
def _flags(text: str) -> dict[str, str | None]:
    """--flag -> value (None for a bare switch) from an emitted command."""
    import shlex

    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    words = shlex.split(" ".join(ln.rstrip("\\").strip() for ln in lines))
    out = {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[w] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_emit_vllm_dp_ep_parses_back(runner, kvcalc_app):
    args = ["fit", "deepseek-v3", "--gpu", "h200", "--gpus", "8", "--dp", "8", "--ep", "8", "-c", "128k"]
    data = json.loads(runner.invoke(kvcalc_app, [*args, "--json"]).stdout)
    assert (data["tp"], data["dp"], data["ep"], data["gpus"]) == (1, 8, 8, 8)
    out = runner.invoke(kvcalc_app, [*args, "--emit", "vllm"])
    assert out.exit_code == 0, out.stderr
    flags = _flags(out.stdout)
    assert flags["--tensor-parallel-size"] == "1" and flags["--data-parallel-size"] == "8"
    assert "--enable-expert-parallel" in flags and flags["--enable-expert-parallel"] is None
    # no -n: vLLM's own default (1024 on a GPU of 70 GiB or more), per DP rank; the pool's count is said beside it
    assert int(flags["--max-num-seqs"]) == 1024
    assert f"the pool holds {data['max_concurrency']:,} requests of the full context" in out.stdout
    assert data["total_concurrency"] == 8 * data["max_concurrency"]
    with_n = _flags(runner.invoke(kvcalc_app, [*args, "-n", "16", "--emit", "vllm"]).stdout)
    assert int(with_n["--max-num-seqs"]) == cdiv(16, 8)  # -n 16 over 8 DP ranks, as vLLM takes it (per rank)


def test_emit_sglang_attention_dp_parses_back(runner, kvcalc_app):
    args = ["fit", "deepseek-v3", "--engine", "sglang", "--gpu", "h200", "--tp", "8", "--dp", "8", "--ep", "8",
            "-c", "128k", "-n", "8"]
    data = json.loads(runner.invoke(kvcalc_app, [*args, "--json"]).stdout)
    out = runner.invoke(kvcalc_app, [*args[:2], *args[4:], "--emit", "sglang"])
    assert out.exit_code == 0, out.stderr
    flags = _flags(out.stdout)
    assert (flags["--tp-size"], flags["--attn-dp-size"], flags["--ep-size"]) == ("8", "8", "8")
    # 8 requests over 8 attention-DP ranks: 1 each (what each holds at SGLang's default fraction, test
    # above); SGLang divides --max-running-requests by attn_dp_size, so the flag is the total
    assert data["fits"] and data["max_concurrency"] >= 1
    assert flags["--max-running-requests"] == str(cdiv(8, 8) * 8)
    assert data["concurrency"] == 8 and data["attention_tp"] == 1


def test_emit_vllm_dcp_parses_back(runner, kvcalc_app):
    out = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h200", "--tp", "16", "--dcp", "2", "-c", "128k",
                                     "--emit", "vllm"])
    assert out.exit_code == 0, out.stderr
    flags = _flags(out.stdout)
    assert flags["--decode-context-parallel-size"] == "2" and flags["--tensor-parallel-size"] == "16"


@pytest.mark.parametrize("args, rule", [
    (["deepseek-v3", "--engine", "sglang", "--tp", "8", "--dp", "3"], "must divide --tp 8"),
    (["llama-3-70b", "--tp", "8", "--ep", "8"], "has none"),
    (["llama-3-70b", "--tp", "8", "--dcp", "2"], "8 KV heads"),
])
def test_bad_layouts_exit_2_with_the_rule(runner, kvcalc_app, args, rule):
    out = runner.invoke(kvcalc_app, ["fit", *args, "--gpu", "h200", "-c", "128k"])
    assert out.exit_code == 2
    assert rule in " ".join(out.stderr.split()) and "Traceback" not in out.stderr


def test_n_searches_the_dp_ep_layout_too(runner, kvcalc_app):
    out = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "-c", "128k", "-n", "48", "--json"])
    data = json.loads(out.stdout)
    m = data["min_gpus_layout"]
    # the DP + EP layout of 8 GPUs holds 24 (test above); 48 need two such instances, 16 GPUs, unless a
    # smaller instance holds more per GPU: whichever kvcalc names must hold the 48 it was asked for
    assert m["instances"] * m["requests_per_instance"] >= 48
    assert m["gpus"] == m["instances"] * (m["tp"] * m["dp"])


# --- verify --dp: real ranks on gloo, each DP rank its own requests ------------------------------------
needs_torch = pytest.mark.skipif(__import__("importlib.util").util.find_spec("torch") is None, reason="needs torch")


@needs_torch
@pytest.mark.parametrize("engine, tp, dp, attention_tp, world", [("vllm", 2, 2, 2, 4), ("sglang", 4, 2, 2, 4)])
def test_verify_dp_ranks_hold_their_own_requests(tiny, engine, tp, dp, attention_tp, world):
    """vLLM's DP ranks are whole TP groups (world tp x dp); SGLang's attention DP splits one TP group
    (world tp, attention TP tp / dp). Each DP rank's outputs equal the single-process layers on its
    own inputs, in float64, and each rank's caches measure fit's per-GPU bytes."""
    import torch
    from test_verify_tp import TINY_TP2, reference

    from kvcalc.sources.presets import load_file
    from kvcalc.verify.tp import verify_tp
    from kvcalc.verify.tp_rank import input_seed

    spec = load_file(tiny)
    result = verify_tp(spec, tp=tp, dp=dp, engine=engine, layers=6, context=20, batch=2, exact=True,
                       keep_outputs=True)
    assert (result.world, result.dp, result.tp) == (world, dp, attention_tp)
    assert len(result.ranks) == world
    outputs = {}
    for r in result.ranks:
        outputs.setdefault(r.dp_rank, []).append(result.outputs[r.rank])
    assert sorted(outputs) == list(range(dp))
    for d, outs in outputs.items():
        expected = reference(spec, batch=2, context=20, input_seed=input_seed(0, d))
        for got in outs:
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert not torch.equal(outputs[0][0], outputs[1][0])  # two DP ranks, two sets of requests
    # the cache in the model's fp32 (exact runs keep it in float64): each rank measures fit's per-GPU bytes,
    # at attention TP 2 by hand (test_verify_tp.TINY_TP2), 20 tokens (windows 8) x batch 2
    measured = verify_tp(spec, tp=tp, dp=dp, engine=engine, layers=6, context=20, batch=2)
    assert measured.match and len(measured.ranks) == world
    held = {n: (8 if n in ("mqa", "mlc") else 20) for n in TINY_TP2}
    for r in measured.ranks:
        assert r.measured_by_kind == {n: TINY_TP2[n] * held[n] * 2 for n in TINY_TP2}


@pytest.fixture
def tiny(tmp_path):
    from test_verify_tp import TINY

    path = tmp_path / "tiny-tp.yaml"
    path.write_text(TINY)
    return path


def test_verify_dp_bad_input_exits_2(runner, kvcalc_app):  # a usage error first, with or without torch
    out = runner.invoke(kvcalc_app, ["verify", "llama-3-8b", "--engine", "sglang", "--tp", "4", "--dp", "3"])
    assert out.exit_code == 2 and "must divide --tp 4" in " ".join(out.stderr.split())


@needs_torch
@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/environ").exists(), reason="reads /proc")
def test_verify_dp_leaves_no_process_behind(runner, kvcalc_app, monkeypatch):
    import uuid

    from test_verify_tp import marked

    mark = uuid.uuid4().hex
    monkeypatch.setenv("KVCALC_TEST_MARK", mark)
    out = runner.invoke(kvcalc_app, ["verify", "deepseek-v3", "--engine", "sglang", "--tp", "4", "--dp", "2",
                                     "-c", "16", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert (data["tp"], data["dp"], data["attention_tp"], data["match"]) == (4, 2, 2, True)
    for r in data["ranks"]:  # MLA's latent whole on every rank: (512 + 64) x bf16 x 16 tokens, one layer
        assert r["measured_bytes"] == r["expected_bytes"] == 576 * 2 * 16
    assert marked(mark) == []


def test_backwards_lines_never_say_no_shape_when_one_was_found(runner, kvcalc_app):
    """A dense model has a fewest-GPU shape and no DP + EP layout: the answer names the shape and
    does not also say that no shape holds a request (a regression of the layout line)."""
    done = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "-c", "8k", "-n", "64"])
    assert done.exit_code == 0, done.output
    assert "The fewest GPUs of this kind that hold 64" in done.stdout
    assert "No shape of up to 512 GPUs" not in done.stdout and "DP-attention + EP layout" not in done.stdout
    moe = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "-c", "128k", "-n", "16"])
    assert "The fewest GPUs of this kind that hold 16" in moe.stdout and "In the DP-attention + EP layout" in moe.stdout
    assert "No shape of up to 512 GPUs" not in moe.stdout
