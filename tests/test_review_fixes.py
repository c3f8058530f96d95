"""Defects a review of the DP/EP/DCP, nvfp4 and state-space work found, each pinned by a test."""

from __future__ import annotations

import json
from pathlib import Path

from fitting import fit_with as fit

import kvcalc

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
FALCON_MAMBA = str(CONFIGS / "falcon-mamba-7b" / "config.json")
MAMBA_130M = str(CONFIGS / "mamba-130m-hf" / "config.json")


def test_estimate_as_a_variant_of_a_state_space_model_is_one_line(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["estimate", FALCON_MAMBA, "--as", "gqa-4", "-c", "1k"])
    assert done.exit_code == 1 and "has no attention" in done.stderr and "Traceback" not in done.output


def test_sglang_attention_dp_emit_never_recommends_replicas_it_refuses(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "--engine", "sglang", "--tp", "8",
                                      "--dp", "8", "-c", "128k", "-n", "200", "--emit", "sglang"])
    assert done.exit_code == 0, done.output
    assert "--dp-size" not in done.stdout  # SGLang runs no replicas beside attention DP


def test_a_state_without_its_own_dtype_is_served_bf16_whatever_the_kv_dtype():
    spec = kvcalc.load_preset(MAMBA_130M)  # float32 checkpoint; 24 Mamba layers, 1536 channels, d_state 16, conv 4
    served = 24 * (1536 * 16 + 1536 * 4) * 2
    for kv in (None, "bf16", "fp8"):
        assert kvcalc.estimate(spec, context=1024, kv_dtype=kv).state_bytes == served
    assert kvcalc.estimate(spec, context=1024, kv_dtype="fp32").state_bytes == 2 * served  # run in float32


def test_state_space_tp_must_split_the_mixer_channels(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["fit", FALCON_MAMBA, "--gpu", "h100", "--tp", "7", "-c", "8k"])
    assert done.exit_code == 2 and "does not divide the 8,192 channels" in done.stderr
    picked = json.loads(runner.invoke(kvcalc_app, ["fit", FALCON_MAMBA, "--gpu", "h100", "--gpus", "6", "-c", "8k",
                                                   "--json"]).stdout)
    assert 8192 % picked["tp"] == 0


def test_speed_with_dp_reads_each_ranks_share(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "--dp", "4", "-c", "8k", "-n", "100",
                                      "--speed", "--json"])
    data = json.loads(done.stdout)
    assert data["speed"]["full"]["batch"] == 100 // 4  # 25 requests on each DP rank's GPU


def test_the_fewest_gpu_search_sizes_each_replica_for_its_own_share():
    """llama-3-8b, 20,000 requests of 1K on H100s: each shape's replicas are launched for their own
    share (vLLM's sampler holds logits for max_num_seqs sequences), so the answer is what fitting
    the shapes one by one at that share gives, not the shape sized for all 20,000 per replica."""
    spec = kvcalc.load_preset("llama-3-8b")
    gpu = __import__("kvcalc.capacity.gpus", fromlist=["find_gpu"]).find_gpu("h100")
    r = fit(spec, None, gpu=gpu, context=1024, concurrency=20000)
    shape = r.min_gpus_shape
    share = -(-20000 // shape["replicas"])
    held = fit(spec, None, gpu=gpu, tp=shape["tp"], pp=shape["pp"], context=1024, max_seqs=share,
               search_min=False).max_concurrency
    assert held * shape["replicas"] >= 20000
    one_less = shape["replicas"] - 1
    if one_less:
        fewer = fit(spec, None, gpu=gpu, tp=shape["tp"], pp=shape["pp"], context=1024,
                    max_seqs=-(-20000 // one_less), search_min=False).max_concurrency
        assert fewer * one_less < 20000
    assert shape["gpus"] < 44  # sized for 20,000 per replica it was 44 (TP 4 x PP 11)


def test_no_dp_ep_layout_line_for_engines_kvcalc_does_not_model_it_for(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["fit", "qwen3-30b-a3b", "--gpu", "h100", "-c", "8k", "-n", "400",
                                      "--engine", "trtllm"])
    assert done.exit_code == 0 and "DP-attention + EP layout" not in done.stdout


def test_gpu_and_tp_without_speed_are_refused_not_ignored(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["variants", "llama-3-8b", "-c", "8k", "--gpu", "h100", "--tp", "8"])
    assert done.exit_code == 2 and "add --speed" in done.stderr
    done = runner.invoke(kvcalc_app, ["plot", "llama-3-8b", "--tp", "2"])
    assert done.exit_code == 2 and "add --speed" in done.stderr


def test_fp32_kv_of_a_float32_model_is_no_what_if(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["fit", "gpt2", "--gpu", "h100", "-c", "1k", "--kv-dtype", "fp32"])
    assert done.exit_code == 0 and "has no fp32 KV cache" not in done.stderr


def test_the_weights_note_names_the_engine_that_loads_them(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "8k",
                                      "--engine", "sglang"])
    assert "weights per GPU as SGLang" in done.stdout and "as vLLM loads" not in done.stdout


def test_second_review_sglang_host_pool_and_nodes_and_defaults(runner, kvcalc_app):
    args = ["fit", "llama-3-70b", "--gpu", "h100", "--tp", "4", "-c", "8k", "--engine", "sglang"]
    small = runner.invoke(kvcalc_app, [*args, "--hicache-ratio", "0.5"])
    # int(403,495 x 0.5) = 201,747 tokens, whole pages of 1 plus a padding page: 201,748, under the device pool
    assert small.exit_code == 0 and "201,748 tokens" in small.stdout
    assert "no larger than the device pool" in small.stdout
    nodes = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "-c", "8k", "--nodes", "2",
                                       "--gpus-per-node", "4", "--tp", "8", "--engine", "sglang", "--emit", "sglang"])
    assert nodes.exit_code == 2 and "across nodes for vLLM only" in nodes.stderr
    graphs = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "-c", "8k", "--engine", "sglang",
                                        "--cuda-graph-max-bs", "100000"])
    assert graphs.exit_code == 2 and "default memory fraction" in graphs.stderr
    assert "--cuda-graph-max-bs" in graphs.stderr


def test_estimate_shows_a_hybrid_layers_state_in_its_column():
    from kvcalc.render import estimate_summary, estimate_table

    spec = kvcalc.load_preset("nemotron-h-8b-base-8k")  # Mamba2 layers keep a state: the column is there
    result = kvcalc.estimate(spec, context=1024, batch=4)
    grid = estimate_table(result)
    assert grid.headers[-1] == "state B"
    assert "for the batch of 4" in estimate_summary(result)


def test_what_an_emitted_command_leaves_out_is_said(runner, kvcalc_app):
    trt = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "-c", "8k", "--engine", "trtllm",
                                     "--cuda-graph-max-bs", "64", "--emit", "trtllm"])
    assert trt.exit_code == 0 and "--cuda-graph-max-bs is not written" in trt.stdout
    disk = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "-c", "8k", "--engine", "sglang",
                                      "--disk-kv", "100GB"])
    assert disk.exit_code == 0 and "also builds a host pool" in disk.stdout
