"""CPU and disk KV tiers, reload against recompute, and CUDA graphs (issue 22), each figure derived by
hand from the model facts and the engines' code (vLLM 0.33.0, SGLang 0.5.23, LMCache 0.5.6; docs/fit.md
section 9 cites the lines)."""

from __future__ import annotations

import json
import shlex

GiB = 1024**3
# Llama-3-70B: 80 layers, 8 KV heads of 128, bf16; at TP 4 each GPU holds 2 heads: 80 x 2 x 2 x 128 x 2 B
PER_GPU_TOKEN = 80 * 2 * 2 * 128 * 2
assert PER_GPU_TOKEN == 81_920
BASE = ["llama-3-70b", "--gpu", "h100", "--gpus", "4", "--tp", "4", "-c", "8k"]


def fit_json(runner, app, *args) -> dict:
    result = runner.invoke(app, ["fit", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(runner, app, *args) -> str:
    result = runner.invoke(app, ["fit", *args])
    assert result.exit_code == 2, result.output
    return result.stderr


def emitted(runner, app, *args) -> tuple[list[str], str]:
    result = runner.invoke(app, ["fit", *args])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln and not ln.startswith(("#", "(set", "YAML"))]
    return shlex.split(" ".join(ln.rstrip("\\").strip() for ln in lines)), result.stdout


def test_vllm_disk_tier_behind_its_cpu_tier(runner, kvcalc_app):
    # the fs tier writes one file per CPU chunk: one 16-token block of all 4 ranks' layers,
    # 16 x 81,920 x 4 = 5,242,880 B (a multiple of 4096); 10^12 B hold 190,734 of them
    tiers = fit_json(runner, kvcalc_app, *BASE, "--cpu-kv", "100GiB", "--disk-kv", "1TB")["extras"]
    disk = tiers["disk_tier"]
    assert disk["tokens"] == 10**12 // (16 * PER_GPU_TOKEN * 4) * 16 == 190_734 * 16 == 3_051_744
    assert disk["requests"] == 3_051_744 // 8192 == 372
    assert tiers["cpu_tier"]["tokens"] == 100 * GiB // 5_242_880 * 16 == 327_680
    # without a CPU tier there is nothing for the fs tier to sit behind
    assert "--cpu-kv" in refused(runner, kvcalc_app, *BASE, "--disk-kv", "1TB")


def test_lmcache_disk_and_trtllm_without_one(runner, kvcalc_app):
    # LMCache's local disk, per worker: chunks of 256 tokens of one rank's 81,920 B per token
    data = fit_json(runner, kvcalc_app, *BASE, "--kv-tier-backend", "lmcache", "--disk-kv", "5GB")
    disk = data["extras"]["disk_tier"]
    assert disk["tokens"] == 5 * 10**9 // (256 * 81_920) * 256 == 238 * 256 == 60_928
    assert "disk tier is not modelled" in refused(runner, kvcalc_app, *BASE, "--engine", "trtllm", "--disk-kv", "5GB")


def test_sglang_host_pool_by_ratio_and_by_size(runner, kvcalc_app):
    def cpu(*args):
        data = fit_json(runner, kvcalc_app, *BASE, "--engine", "sglang", *args)
        return data["extras"]["cpu_tier"], data["max_total_num_tokens"]

    # pool_host/base.py: int(device pool x ratio) tokens, then whole pages of 1 and one padding page
    tier, pool = cpu("--hicache-ratio", "2")
    assert pool > 0 and tier["tokens"] == 2 * pool + 1 and tier["ratio"] == 2
    tier, pool = cpu("--hicache-ratio", "1.5")
    assert tier["tokens"] == pool * 3 // 2 + 1
    # --hicache-size is whole GB: 100 GiB = 107,374,182,400 B is counted as 107 GB per rank
    tier, _ = cpu("--cpu-kv", "100GiB")
    assert tier["bytes"] == 107 * 10**9 and tier["tokens"] == 107 * 10**9 // 81_920 + 1 == 1_306_153
    # the size wins over the ratio, as in SGLang
    tier, _ = cpu("--cpu-kv", "5GB", "--hicache-ratio", "2")
    assert tier["tokens"] == 5 * 10**9 // 81_920 + 1 and tier["ratio"] is None


def test_sglang_file_storage_disk_tier(runner, kvcalc_app):
    # HiCacheFile: each rank's page files capped by max_size; pages of 1 token of 81,920 B
    disk = fit_json(runner, kvcalc_app, *BASE, "--engine", "sglang", "--disk-kv", "500GB")["extras"]["disk_tier"]
    assert disk["tokens"] == 500 * 10**9 // 81_920 == 6_103_515


def test_bad_tier_input_is_one_line_exit_2(runner, kvcalc_app):
    for ratio in ("0", "-1", "two", "nan", "1e3"):
        assert "--hicache-ratio" in refused(runner, kvcalc_app, *BASE, "--engine", "sglang", "--hicache-ratio", ratio)
    assert "SGLang" in refused(runner, kvcalc_app, *BASE, "--hicache-ratio", "2")  # vLLM sizes its tier in bytes
    assert "--disk-kv" in refused(runner, kvcalc_app, *BASE, "--cpu-kv", "1GB", "--disk-kv", "lots")
    assert "--hicache-size" in refused(runner, kvcalc_app, *BASE, "--engine", "sglang", "--cpu-kv", "500MB")


def test_reload_against_recompute(runner, kvcalc_app):
    tier = fit_json(runner, kvcalc_app, *BASE, "--cpu-kv", "100GiB")["extras"]["cpu_tier"]
    # reload: one GPU's 8,192 x 81,920 B over 64 GB/s (each GPU its own PCIe Gen5 x16 link)
    assert tier["reload_seconds_per_request"] == 8192 * 81_920 / (64 * 10**9)
    # recompute: 2 x active parameters x T + 80 layers x 2 x T x T x 64 heads x (128 + 128)
    layer = 8192 * 8192 + 2 * 8192 * 1024 + 8192 * 8192 + 3 * 8192 * 28672 + 2 * 8192
    params = 80 * layer + 2 * 128256 * 8192 + 8192
    assert params == 70_553_706_496
    flops = 2 * params * 8192 + 80 * 2 * 8192 * 8192 * 64 * 256
    assert tier["recompute_flops_per_request"] == flops == 1_331_873_787_674_624
    # over TP 4 at the H100 SXM's dense bf16 peak, 1,979 / 2 TFLOP/s
    assert tier["peak_flops_per_gpu"] == 1979 * 10**12 // 2 and tier["peak_dtype"] == "bf16"
    assert tier["recompute_seconds_per_request"] == flops / (4 * 989_500 * 10**9)
    assert tier["recompute_seconds_per_request"] > 30 * tier["reload_seconds_per_request"]
    fp8 = fit_json(runner, kvcalc_app, *BASE, "--cpu-kv", "100GiB", "--weights-dtype", "fp8")["extras"]["cpu_tier"]
    assert fp8["peak_dtype"] == "fp8" and fp8["peak_flops_per_gpu"] == 3958 * 10**12 // 2
    # a GPU the catalog gives no peak for: the recompute is not timed, and says why
    a10g = fit_json(runner, kvcalc_app, "llama-3-8b", "--gpu", "a10g", "-c", "4k", "--cpu-kv", "10GB")
    tier = a10g["extras"]["cpu_tier"]
    assert tier["recompute_seconds_per_request"] is None and "no dense peak" in tier["recompute_why"]


def test_catalog_flops_are_dense_and_cited(runner, kvcalc_app):
    gpus = {g["key"]: g for g in json.loads(runner.invoke(kvcalc_app, ["gpus", "--json"]).stdout)}
    for key in ("h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "b200", "gb200", "a100-40gb", "a100-80gb",
                "l40s", "l4", "a10", "l40"):
        assert gpus[key]["dense_bf16_flops"] and gpus[key]["flops_source"], key
    for g in gpus.values():
        if g.get("dense_bf16_flops") or g.get("dense_fp8_flops"):
            assert g["flops_source"], g["key"]
    # the datasheets' starred figures are with 2:4 sparsity; the catalog keeps half of them
    assert gpus["h200-sxm"]["dense_bf16_flops"] == 1979 * 10**12 // 2
    assert gpus["b200"]["dense_fp8_flops"] == 9 * 10**15 // 2
    assert gpus["a100-80gb"]["dense_bf16_flops"] == 312 * 10**12 and gpus["a100-80gb"]["dense_fp8_flops"] is None


def test_tier_flags_emitted_and_parsed_back(runner, kvcalc_app):
    w, _ = emitted(runner, kvcalc_app, *BASE, "--cpu-kv", "100GiB", "--disk-kv", "1TB", "--emit", "vllm")
    assert w[w.index("--kv-offloading-size") + 1] == "100" and w[w.index("--kv-offloading-backend") + 1] == "native"
    config = json.loads(w[w.index("--kv-transfer-config") + 1])
    assert config["kv_connector_extra_config"]["spec_name"] == "TieringOffloadingSpec"
    assert config["kv_connector_extra_config"]["secondary_tiers"][0]["type"] == "fs"
    # LMCache reads its sizes in GiB (x 1024**3), per worker
    w, text = emitted(runner, kvcalc_app, *BASE, "--cpu-kv", "100GiB", "--disk-kv", "200GiB", "--kv-tier-backend",
                      "lmcache", "--emit", "vllm")
    assert w[w.index("--kv-offloading-backend") + 1] == "lmcache" and "--kv-transfer-config" not in w
    assert "max_local_cpu_size to 100 (GiB" in text and "max_local_disk_size to 200 (GiB" in text
    w, _ = emitted(runner, kvcalc_app, *BASE, "--hicache-ratio", "1.5", "--disk-kv", "1TB", "--emit", "sglang")
    assert "--enable-hierarchical-cache" in w and w[w.index("--hicache-ratio") + 1] == "1.5"
    assert "--hicache-size" not in w and w[w.index("--hicache-storage-backend") + 1] == "file"
    assert json.loads(w[w.index("--hicache-storage-backend-extra-config") + 1])["max_size"] == 10**12
    w, _ = emitted(runner, kvcalc_app, *BASE, "--cpu-kv", "100GiB", "--emit", "sglang")
    assert w[w.index("--hicache-size") + 1] == "107"  # whole GB, as SGLang's int flag takes it
    w, text = emitted(runner, kvcalc_app, *BASE, "--cpu-kv", "5GB", "--emit", "trtllm")
    assert "host_cache_size: 5000000000" in text
    # TensorRT-LLM's LoRA settings are not followed: the command says so instead of leaving them out silently
    _, text = emitted(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "-c", "8k", "--max-loras", "2",
                      "--emit", "trtllm")
    assert "LoRA slots (its lora_config)" in text


def test_vllm_capture_sizes(runner, kvcalc_app):
    def graphs(*args):
        return fit_json(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "-c", "8k", *args)["extras"]["cuda_graphs"]

    # defaults on an H100: max_num_seqs 1024, 8,192 batched tokens: ceiling min(1024 x 1 x 2, 512) = 512;
    # 1, 2, 4, 8..248 by 8 (31), 256..512 by 16 (17); 1024 requests are past the ceiling
    g = graphs()
    assert g["sizes"] == [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)] and len(g["sizes"]) == 51
    assert g["reserve_bytes"] == GiB // 2  # a flat estimate: vLLM measures two graphs and extrapolates
    # -n 8 launches --max-num-seqs 8: ceiling 16, and 8 itself as the uniform-decode size
    assert graphs("-n", "8")["sizes"] == [1, 2, 4, 8, 16]
    # 3 speculative tokens: query length 4, ceiling 8 x 4 x 2 = 64; decode sizes 4, 8, 16, 32 join the grid
    assert graphs("-n", "8", "--num-speculative-tokens", "3")["sizes"] == [1, 2, 4, *range(8, 65, 8)]
    # LoRA: each size captured with no adapter and with max_loras + 1
    assert graphs("-n", "8", "--max-loras", "2")["graphs"] == 2 * 5
    eager = graphs("--enforce-eager")
    assert eager["sizes"] == [] and eager["reserve_bytes"] == 0
    assert graphs("--cuda-graph-max-bs", "64")["sizes"] == [1, 2, 4, *range(8, 65, 8)]
    w, _ = emitted(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "-c", "8k", "--cuda-graph-max-bs", "64",
                   "--emit", "vllm")
    assert json.loads(w[w.index("--compilation-config") + 1]) == {"max_cudagraph_capture_size": 64}


def test_sglang_graph_batch_sizes_and_their_reserve(runner, kvcalc_app):
    def fitted(*args):
        return fit_json(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "-c", "8k", "--engine", "sglang", *args)

    # an H100 (nvidia-smi 81,559 MiB) at TP 1: chunked prefill 8192, decode graphs up to 256
    plain = fitted()
    g = plain["extras"]["cuda_graphs"]
    assert g["sizes"] == [1, 2, 4, 8, 12, *range(16, 257, 8)] and len(g["sizes"]) == 36
    # prefill sizes up to 8192: 4..32 by 4 (8), 48..256 by 16 (14), 288..512 by 32 (8), 576..1024 by 64 (8),
    # 1280..4096 by 256 (12), 4608..8192 by 512 (8) = 58, at 8 MiB each; decode 256 x 2 MiB
    assert g["graphs"] == 36 + 58 and g["reserve_bytes"] == (256 * 2 + 58 * 8) * 2**20
    # the default fraction: 512 base + 8192 x 1.5 activations + 1/8 x 1024 + 512 + 464 MiB reserved
    assert plain["gpu_util"] == round((81559 - (512 + 12288 + 128 + 512 + 464)) / 81559, 3) == 0.83
    # -n 16 writes --max-running-requests 16, and SGLang clamps the decode graphs' max batch to it
    clamped = fitted("-n", "16")
    assert clamped["extras"]["cuda_graphs"]["sizes"] == [1, 2, 4, 8, 12, 16]
    assert clamped["gpu_util"] == round((81559 - (512 + 12288 + 128 + 32 + 464)) / 81559, 3) == 0.835
    assert fitted("--cuda-graph-max-bs", "64")["extras"]["cuda_graphs"]["sizes"][-1] == 64
    eager = fitted("--enforce-eager")
    assert eager["extras"]["cuda_graphs"]["sizes"] == [] and eager["gpu_util"] == round((81559 - 12928) / 81559, 3)
    w, _ = emitted(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "-c", "8k", "--cuda-graph-max-bs", "64",
                   "--emit", "sglang")
    assert w[w.index("--cuda-graph-max-bs-decode") + 1] == "64"


def test_a_size_in_gb_is_written_in_exact_gib(runner, kvcalc_app):
    # vLLM multiplies --kv-offloading-size by 2**30: 100 GB = 93.13225746154785 GiB reads back to 10^11 B exactly
    w, _ = emitted(runner, kvcalc_app, *BASE, "--cpu-kv", "100GB", "--emit", "vllm")
    value = w[w.index("--kv-offloading-size") + 1]
    assert value == "93.13225746154785" and float(value) * 2**30 == 100 * 10**9
