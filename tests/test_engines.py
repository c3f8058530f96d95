"""Each engine's own arithmetic, derived by hand from its code (docs/fit.md cites the lines).

vLLM rules from its released wheels (kv_cache_interface.py MambaSpec and SlidingWindowSpec,
kv_cache_planning.py grouping, platforms/interface.py _align_hybrid_block_size, the Mamba
mixers' prefill checkpoint blocks); SGLang 0.5.23 from arg_groups/memory_hook.py,
mem_cache/kv_cache_configurator.py and model_executor/pool_configurator.py. Model facts from
../shared/reference/model_facts.yaml and the presets' released configs. No expected number
below is kvcalc's output.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from fitting import fit_with as fit

import kvcalc
from kvcalc.capacity.deployment import Switches

GiB = 1024**3
H100 = 85_045_477_376  # the catalog's CUDA total for an H100 SXM
H100_SMI_MIB = 81559  # nvidia-smi's total, which SGLang's default fraction uses


def cdiv(a, b):
    return -(-a // b)


# --- Nemotron-H in vLLM: Mamba2 states in float32, pages with and without prefix caching --------

# 52 layers: 4 attention (8 KV heads x 128), 24 Mamba2 (128 heads x 64 x state 128, conv channels
# 8192 + 2 x 8 x 128 = 10240, kernel 4), 24 MLP-only; SSM state in float32 (mamba_ssm_cache_dtype)
NEMOTRON_SSM = 128 * 64 * 128 * 4  # 4,194,304 B
NEMOTRON_CONV_VLLM = 10240 * (4 - 1) * 2  # vLLM keeps kernel - 1 columns, bf16: 61,440 B
NEMOTRON_STATE = NEMOTRON_SSM + NEMOTRON_CONV_VLLM  # 4,255,744 B per layer
NEMOTRON_TOKEN = 2 * 8 * 128 * 2  # 4,096 B per attention layer


def test_fit_keeps_nemotron_h_float32_state():
    spec = kvcalc.load_preset("nemotron-h-8b-base-8k")
    r = fit(spec, H100, context=8192, weights_bytes=16 * 10**9, reserve=0)
    assert r.state_bytes_per_request_per_gpu == 24 * NEMOTRON_STATE == 102_137_856  # not halved to bf16
    # estimate counts the state as transformers holds it: the full kernel of conv columns
    assert kvcalc.estimate(spec, context=8192).state_bytes == 24 * (NEMOTRON_SSM + 10240 * 4 * 2) == 102_629_376


@pytest.mark.parametrize(("prefix", "version", "mamba_pages"), [
    (None, None, 3),  # default: prefix caching on, mode 'align': running + cached + Mamba2's prefill checkpoint
    (False, None, 1),  # mode 'none': one state page
    (None, "0.29.0", 2),  # before 0.32.0 Mamba2 had no checkpoint page
])
def test_nemotron_h_pages_in_vllm(prefix, version, mamba_pages):
    spec = kvcalc.load_preset("nemotron-h-8b-base-8k")
    weights = 16 * 10**9
    r = fit(spec, H100, gpu="h100-sxm", context=8192, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10),
            version=version, switches=Switches(prefix_caching=prefix))
    block = 16 * cdiv(NEMOTRON_STATE, 16 * NEMOTRON_TOKEN)  # a page of 16-aligned tokens holds one state
    assert r.block_size == block == 1040
    page = block * NEMOTRON_TOKEN  # 4,259,840 B; each Mamba2 state padded to it
    group = 4  # 24 Mamba2 layers are not under 1.5 x 4 attention layers: groups of 4, 6 Mamba2 groups
    budget = cdiv(H100 * 9, 10) - weights
    blocks = budget // (group * page)
    assert r.kv_blocks_per_gpu == blocks
    per_request = cdiv(8192, block) + 6 * mamba_pages
    assert r.max_concurrency == blocks // per_request
    assert r.engine_log_max_concurrency == round(blocks / per_request, 2)
    assert r.engine_log_kv_tokens == int(Fraction(blocks, per_request) * 8192)


# --- Qwen3-Next in vLLM: Gated DeltaNet, its FlashInfer checkpoint on Hopper ---------------------

# 48 layers: 12 full attention (2 KV heads x 256), 36 Gated DeltaNet (32 value heads x 128 x 128
# recurrent state, conv dim 2 x 16 x 128 + 32 x 128 = 8192, kernel 4), bf16 (vLLM's 'auto' SSM dtype)
QWEN_STATE = 32 * 128 * 128 * 2 + 8192 * 3 * 2  # 1,048,576 + 49,152 = 1,097,728 B
QWEN_TOKEN = 2 * 2 * 256 * 2  # 2,048 B per full layer


@pytest.mark.parametrize(("gpu", "prefix", "alignment", "gdn_pages"), [
    ("h100-sxm", None, 64, 3),  # Hopper, align: lcm(16, 64) blocks and a checkpoint page (0.33.0)
    ("h100-sxm", False, 16, 1),  # mode 'none': no checkpoint alignment, one page
    ("a100-80gb", None, 16, 2),  # its prefill runs on Triton: no checkpoint page
])
def test_qwen3_next_pages_in_vllm(gpu, prefix, alignment, gdn_pages):
    from kvcalc.capacity.gpus import find_gpu

    memory = find_gpu(gpu).memory_bytes
    spec = kvcalc.load_preset("qwen3-next-80b-a3b")
    weights = 40 * 10**9
    r = fit(spec, memory, gpu=gpu, context=32768, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10),
            max_batched_tokens=8192, switches=Switches(prefix_caching=prefix))
    block = alignment * cdiv(QWEN_STATE, alignment * QWEN_TOKEN)
    assert r.block_size == block
    page = block * QWEN_TOKEN
    group = 12  # 36 linear layers are not under 1.5 x 12: groups of 12, 3 linear groups
    blocks = (cdiv(memory * 9, 10) - weights) // (group * page)
    assert r.kv_blocks_per_gpu == blocks
    per_request = cdiv(32768, block) + 3 * gdn_pages
    assert r.max_concurrency == blocks // per_request
    assert r.state_bytes_per_request_per_gpu == 36 * QWEN_STATE


def test_qwen3_next_hopper_block_by_hand():
    # the first case above in numbers: 64 x cdiv(1,097,728, 131,072) = 576 tokens; 57 + 9 pages at 32K
    assert 64 * cdiv(QWEN_STATE, 64 * QWEN_TOKEN) == 576 and cdiv(32768, 576) == 57


def test_vllm_versions_and_unknown_ones(runner, kvcalc_app):
    spec = kvcalc.load_preset("llama-3-8b")
    assert fit(spec, H100, context=8192, reserve=0).gpu_util == 0.92
    assert fit(spec, H100, context=8192, reserve=0, version="0.19.1").gpu_util == 0.9  # 0.92 from 0.20.0
    r = fit(spec, H100, context=8192, reserve=0)
    assert r.engine_version == "0.33.0" and r.deployment["engine_version"] == "0.33.0"
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "--engine-version", "0.9.9"])
    assert result.exit_code == 2 and "0.18.0" in result.stderr and "0.33.0" in result.stderr
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "--engine-version", "0.34.0"])
    assert result.exit_code == 2 and "after warmup" in result.stderr
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "--engine", "sglang",
                                        "--engine-version", "0.4.0"])
    assert result.exit_code == 2 and "0.5.23" in result.stderr


def test_gemma_window_charge_by_version():
    # gemma-3-27b, 52 sliding (1024) + 10 full, at 32K with 8192 batched tokens, PP 1
    spec = kvcalc.load_preset("gemma-3-27b")
    for version, in_flight in (("0.25.0", 8192), ("0.26.0", 2 * 8192)):  # 0.26.0: every batch in flight
        r = fit(spec, 80 * GiB, context=32768, weights_bytes=54 * 10**9, reserve=0, max_batched_tokens=8192,
                version=version)
        sliding = cdiv(min(1023 + in_flight, 32768), 16) + 1
        assert r.kv_groups[0]["pages_per_request"] == 6 * sliding


# --- SGLang: its default fraction, budget and pools ---------------------------------------------

@pytest.mark.parametrize(("tp", "fraction"), [(1, 0.830), (4, 0.819)])
def test_sglang_default_fraction_on_an_h100(tp, fraction):
    # memory_hook.py on nvidia-smi's 81,559 MiB (the 80-90 GiB tier: chunked prefill 8192, decode
    # graphs up to 256 below TP 4, 512 from it); prefill graph sizes up to 8192: 8 + 14 + 8 + 8 + 12
    # + 8 = 58 sizes at 8 MiB each
    max_bs = 256 if tp < 4 else 512
    reserved = 512 + 1.5 * 8192 + tp * 1 / 8 * 1024 + 2 * max_bs + 8 * 58
    assert reserved == (13904 if tp == 1 else 14800)
    assert round((H100_SMI_MIB - reserved) / H100_SMI_MIB, 3) == fraction
    spec = kvcalc.load_preset("llama-3-8b")
    r = fit(spec, H100, gpu="h100-sxm", smi_memory=H100_SMI_MIB * 2**20, tp=tp, context=8192, engine="sglang",
            reserve=0, weights_bytes=16_060_522_496)
    assert r.gpu_util == fraction
    # budget = A - P x (1 - f) = f x P - weights, P the memory free before loading (here all of it)
    f = Fraction(str(fraction))
    budget = H100 * f.numerator // f.denominator - cdiv(16_060_522_496, tp)
    assert r.kv_budget_bytes_per_gpu == budget
    cell = 32 * 2 * (8 // tp) * 128 * 2  # K and V of the KV heads on this GPU, every layer
    tokens = budget // cell
    assert r.max_total_num_tokens == r.kv_tokens == tokens
    assert r.max_concurrency == tokens // 8192
    # a slot cap, not requests of the context: clamp(int(T / 8192 x 512), 2048, 4096), at most T // 2
    assert r.max_running_requests == min(max(tokens * 512 // 8192, 2048), 4096)


def test_sglang_fraction_without_cuda_graphs_and_on_an_h200():
    spec = kvcalc.load_preset("llama-3-8b")
    eager = fit(spec, H100, gpu="h100-sxm", smi_memory=H100_SMI_MIB * 2**20, context=8192, engine="sglang",
                reserve=0, switches=Switches(enforce_eager=True))
    # no decode or prefill graphs: 512 + 12288 + 128 = 12928, under the 10 GiB floor? no: 12928 > 10240
    assert eager.gpu_util == round((H100_SMI_MIB - 12928) / H100_SMI_MIB, 3) == 0.841
    h200 = fit(spec, 150_109_945_856, gpu="h200-sxm", smi_memory=143771 * 2**20, context=8192, engine="sglang",
               reserve=0)
    assert h200.gpu_util == round((143771 - 13904) / 143771, 3) == 0.903


def test_sglang_sliding_window_pool_for_gpt_oss():
    # gpt-oss-120b: 18 sliding (window 128) + 18 full layers, 8 KV heads x 64, bf16; SGLang's SWA pool:
    # cell = 18 x 2048 + 0.8 x 18 x 2048 = 66,355.2 B; full tokens int(B // cell), SWA tokens x 0.8
    spec = kvcalc.load_preset("gpt-oss-120b")
    weights = 65_248_815_744
    r = fit(spec, H100, context=8192, engine="sglang", reserve=0, gpu_util=Fraction(9, 10), weights_bytes=weights)
    budget = H100 * 9 // 10 - weights
    full = budget * 5 // 331_776  # B / 66,355.2 = 5B / 331,776
    swa = full * 4 // 5
    assert r.max_total_num_tokens == r.kv_tokens == full
    assert r.engine_log["swa_tokens"] == swa
    assert r.max_concurrency == min(full // 8192, swa // 128)
    # Gemma-3 is forced off that pool: every layer charged the whole context
    gemma = fit(kvcalc.load_preset("gemma-3-12b"), H100, context=8192, engine="sglang", reserve=0,
                gpu_util=Fraction(9, 10), weights_bytes=24 * 10**9)
    assert any("forced off its sliding-window pool" in n for n in gemma.notes)
    assert gemma.kv_tokens == (H100 * 9 // 10 - 24 * 10**9) // (48 * 2 * 8 * 256 * 2)


def test_sglang_hybrid_mamba_pool_for_qwen3_next():
    # state per slot: 36 layers x (conv 8192 x 3 bf16 + SSM 32 x 128 x 128 float32) = 77,266,944 B;
    # the state pool takes 0.9/1.9 of the budget, one slot more for padding; 5 slots per running request
    spec = kvcalc.load_preset("qwen3-next-80b-a3b")
    weights = 40 * 10**9
    r = fit(spec, 150_109_945_856, context=32768, engine="sglang", reserve=0, gpu_util=Fraction(9, 10),
            weights_bytes=weights)
    s = 36 * (8192 * 3 * 2 + 32 * 128 * 128 * 4)
    assert s == 77_266_944 and r.state_bytes_per_request_per_gpu == s
    budget = 150_109_945_856 * 9 // 10 - weights
    slots = (budget * 9 // 19 - s) // s
    tokens = (budget - (slots + 1) * s) // (12 * 2 * 2 * 256 * 2)
    assert r.engine_log["max_mamba_cache_size"] == slots
    assert r.max_total_num_tokens == tokens
    assert r.max_concurrency == min(tokens // 32768, slots // 5)
    assert r.max_running_requests == min(max(tokens * 512 // 32768, 2048), 4096, tokens // 2, slots // 5)


# --- the shape of --gpus N ------------------------------------------------------------------------

def test_gpus_that_do_not_divide_the_heads_get_the_best_shape(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "6", "-c", "8k", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tp"] * data["pp"] * data["replicas"] <= 6 and 64 % data["tp"] == 0
    assert any(n.startswith("--gpus 6: TP") for n in data["notes"])
    for key in ("engine_version", "deployment", "reserve_parts", "max_total_num_tokens", "max_running_requests"):
        assert key in data
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--tp", "3"])
    assert result.exit_code == 2  # an explicit TP that cannot split the heads is still a usage error


def test_compare_requests_never_fall_as_gpus_grow(runner, kvcalc_app):
    held = []
    for n in range(1, 9):
        result = runner.invoke(kvcalc_app, ["compare", "llama-3-70b", "-c", "8k", "--gpu", "h100", "--gpus", str(n),
                                            "--json"])
        held.append(json.loads(result.stdout)[0]["requests_fit"])
    assert held == sorted(held) and held[0] == 0 and held[-1] > 100, held


def test_sglang_json_has_its_log_figures(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "-c", "8k", "--engine", "sglang",
                                        "--json"])
    data = json.loads(result.stdout)
    assert data["engine"] == "sglang" and data["engine_version"] == "0.5.23"
    assert data["gpu_util"] == 0.83  # its own default on nvidia-smi's total
    assert data["max_total_num_tokens"] > 0 and 2048 <= data["max_running_requests"] <= 4096
    assert set(data["reserve_parts"]) == {"cuda_context"}


def test_sglang_deepseek_v32_fp8_layout():
    # kv_cache_configurator.py 3439-3474: the fp8 latent is 512 + 512 / 128 x 4 (scales) + 64 x 2 (rope in
    # bf16) = 656 B, plus the indexer's 128 fp8 + 4 scale bytes = 132 B, in each of 61 layers
    spec = kvcalc.load_preset("deepseek-v3.2-exp")
    r = fit(spec, 150_109_945_856, tp=8, context=8192, engine="sglang", kv_dtype="fp8", reserve=0,
            weights_bytes=8 * 80 * 10**9, gpu_util=Fraction(9, 10))
    assert r.kv_bytes_per_token_per_gpu == 61 * (656 + 132) == 48_068


def test_emitted_vllm_command_carries_the_switches_it_was_counted_with(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", "nemotron-h-8b-base-8k", "--gpu", "h100", "-c", "8k",
                                        "--weights-bytes", "16GB", "--no-enable-prefix-caching", "--enforce-eager",
                                        "--emit", "vllm"])
    assert result.exit_code == 0, result.output
    assert "  --no-enable-prefix-caching" in result.stdout and "  --enforce-eager" in result.stdout
    assert "vLLM 0.33.0's rules" in result.stdout
