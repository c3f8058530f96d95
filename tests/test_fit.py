"""kvcalc fit: capacity as serving engines count it, every figure derived by hand.

Architecture facts come from /work/shared/reference/model_facts.yaml; engine rules from
/work/shared/reference/engines.md and docs/fit.md (vLLM: budget = ceil(util x memory) -
weights - reserve; page = block x per-token bytes per layer; blocks = budget // (layers in a
group x page); hybrid layers grouped by the smallest type's count, or the largest's when
under 1.5x; sliding layers charged cdiv(min(W - 1 + 2 x max_batched_tokens, L), B) + 1 pages).
The expected numbers below are arithmetic on those facts, never kvcalc's output.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from fitting import fit_with as fit

import kvcalc
from kvcalc.capacity.fit import FitUsageError

GiB = 1024**3


def cdiv(a, b):
    return -(-a // b)


def llama_weights_per_gpu(total, vocab, hidden, layers, tp, pp=1):
    """Bytes of bf16 weights on the fullest GPU as vLLM loads a Llama (untied, RMS norms, no
    biases): layer matrices split over TP, the 2 norms per layer and the final norm whole on
    every GPU of a stage, embedding and head split over TP by rows of the vocabulary padded to
    64, the embedding on the first stage and the head on the last."""
    embedding = vocab * hidden
    norms = layers * 2 * hidden + hidden
    linear = total - 2 * embedding - norms
    rows = cdiv(cdiv(vocab, 64) * 64, tp) * hidden
    sizes = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        sizes[-i] += 1
    fullest = 0
    for i, n in enumerate(sizes):
        here = cdiv(2 * linear * n, layers * tp) + 2 * (norms * n // layers)
        here += 2 * rows * ((i == 0) + (i == pp - 1))
        fullest = max(fullest, here)
    return fullest


LLAMA_70B_TP4 = llama_weights_per_gpu(70_553_706_496, 128256, 8192, 80, 4)


def test_llama_3_70b_on_4_x_80gib_follows_vllm_exactly():
    # the pinned case: TP 4, bf16 weights and KV, util 0.9, 8k, no reserve
    spec = kvcalc.load_preset("llama-3-70b")
    r = fit(spec, 80 * GiB, gpus=4, tp=4, context=8192, gpu_util=Fraction(9, 10), reserve=0)
    # as loaded: 68,451,041,280 matrix weights / 4, 1,318,912 norms whole, 128,256 / 4 vocabulary rows
    # of embedding and head: 34,225,520,640 + 2,637,824 + 1,050,673,152 bytes
    weights_per_gpu = LLAMA_70B_TP4
    assert r.weights_bytes_per_gpu == weights_per_gpu == 35_278_831_616
    per_token = 80 * 2 * (8 // 4) * 128 * 2  # layers x K,V x KV heads per GPU x head_dim x bf16
    assert r.kv_bytes_per_token_per_gpu == per_token == 81_920
    budget = 85_899_345_920 * 9 // 10 - weights_per_gpu
    assert r.kv_budget_bytes_per_gpu == budget
    blocks = budget // (16 * per_token)
    assert r.kv_blocks_per_gpu == blocks == 32_066
    assert r.kv_tokens == blocks * 16 == 513_056
    assert r.max_concurrency == blocks // (8192 // 16) == 62
    assert r.kv_heads_per_gpu == 2 and r.kv_replication == 1
    assert r.fits and r.max_context == 8192
    assert r.engine_log_max_concurrency == round(blocks / 512, 2)
    assert r.engine_log_kv_tokens == int(Fraction(blocks, 512) * 8192)


def test_llama_3_70b_at_tp_16_replicates_kv_heads():
    spec = kvcalc.load_preset("llama-3-70b")
    r = fit(spec, 80 * GiB, tp=16, context=8192, gpu_util=Fraction(9, 10), reserve=0)
    assert r.kv_heads_per_gpu == 1  # max(1, 8 // 16)
    assert r.kv_replication == 2  # 16 GPUs hold 16 heads of 8
    assert r.kv_bytes_per_token_per_gpu == 80 * 2 * 1 * 128 * 2 == 40_960
    weights = llama_weights_per_gpu(70_553_706_496, 128256, 8192, 80, 16)
    budget = 85_899_345_920 * 9 // 10 - weights
    assert r.kv_blocks_per_gpu == budget // (16 * 40_960)
    assert any("stored 2 times" in n for n in r.notes)


def test_trtllm_budgets_free_memory_in_32_token_blocks():
    # its KV heads are ceil(kv / tp); with the heads split or replicated evenly (every engine needs
    # that) this equals vLLM's max(1, kv // tp), so the difference is the budget's base and block
    spec = kvcalc.load_preset("llama-3-70b")
    r = fit(spec, 80 * GiB, tp=16, context=8192, engine="trtllm", reserve=0)
    assert r.kv_heads_per_gpu == cdiv(8, 16) == 1
    r = fit(spec, 80 * GiB, tp=4, context=8192, engine="trtllm", reserve=0)
    budget = (85_899_345_920 - LLAMA_70B_TP4) * 9 // 10  # a fraction of what is free after loading
    assert r.kv_budget_bytes_per_gpu == budget
    assert r.block_size == 32
    assert r.kv_blocks_per_gpu == budget // (32 * 81_920)


def test_deepseek_v3_on_8_x_h200_keeps_the_whole_latent_on_every_gpu():
    spec = kvcalc.load_preset("deepseek-v3")
    h200 = 150_109_945_856  # the catalog's H200 (torch total_memory 143156 MiB)
    weights = 700 * 10**9
    r = fit(spec, h200, gpu="h200-sxm", gpus=8, tp=8, context=131072, weights_bytes=weights, reserve=0)
    requested = cdiv(h200 * 92, 100)  # vLLM's default 0.92, rounded up as request_memory does
    budget = requested - weights // 8
    assert r.kv_budget_bytes_per_gpu == budget
    per_token = 61 * (512 + 64) * 2  # the latent is not split by TP
    assert r.kv_bytes_per_token_per_gpu == per_token == 70_272
    assert r.kv_heads_per_gpu is None and r.kv_replication == 8
    blocks = budget // (61 * 16 * 576 * 2)
    assert r.kv_blocks_per_gpu == blocks
    assert r.max_concurrency == blocks // (131072 // 16)
    assert any("latent is not split" in n for n in r.notes)


def test_gemma_3_27b_windows_in_vllm_hybrid_groups():
    # 52 local (sliding 1024) + 10 global layers; 16 KV heads x 128, bf16
    spec = kvcalc.load_preset("gemma-3-27b")
    weights = 54 * 10**9
    r = fit(spec, 80 * GiB, context=32768, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10),
            max_batched_tokens=8192)
    page = 16 * 2 * 16 * 128 * 2  # one layer's 16-token page
    group = 10  # 52 is not under 1.5 x 10, so groups of the smaller count
    budget = 85_899_345_920 * 9 // 10 - weights
    blocks = budget // (group * page)
    assert r.kv_blocks_per_gpu == blocks
    sliding = cdiv(min(1024 - 1 + 2 * 8192, 32768), 16) + 1  # 1089 pages per local group
    full = 32768 // 16
    per_request = 6 * sliding + 1 * full  # 6 local groups (52 layers, 8 padding slots), 1 global
    assert r.max_concurrency == blocks // per_request
    assert r.engine_log_max_concurrency == round(blocks / per_request, 2)
    assert any("padding layer" in n for n in r.notes)
    assert [(g["name"], g["groups"], g["pages_per_request"]) for g in r.kv_groups] == [
        ("local", 6, 6 * sliding), ("global", 1, full)]
    assert r.kv_bytes_per_request_per_gpu == per_request * group * page
    assert r.max_context == 131072  # 6 x 1089 + 131072 / 16 pages still fit: the model's own limit
    # SGLang forces Gemma-3 off its sliding-window pool: every layer is charged the whole context.
    # Its default fraction (memory_hook.py) on 81,920 MiB (no nvidia-smi total for --gpu-memory):
    # reserved 512 + 1.5 x 8192 + 1 x 1 / 8 x 1024 + 2 x 256 (decode graphs) + 8 x 58 (prefill
    # graph sizes up to 8192) = 13,904 MiB; round((81920 - 13904) / 81920, 3) = 0.830
    s = fit(spec, 80 * GiB, context=32768, weights_bytes=weights, reserve=0, engine="sglang")
    assert s.gpu_util == 0.83
    cell = 62 * 2 * 16 * 128 * 2
    budget = 85_899_345_920 * 830 // 1000 - weights  # f x the memory free before loading - weights
    assert s.kv_budget_bytes_per_gpu == budget
    assert s.kv_tokens == s.max_total_num_tokens == budget // cell
    assert s.max_concurrency == budget // (32768 * cell)
    assert s.max_running_requests == min(max(budget // cell * 512 // 32768, 2048), 4096)


def test_jamba_mamba_hybrid_raises_the_block_size():
    # 4 attention layers (8 KV x 128) and 28 Mamba layers of 163,840 state elements, bf16
    spec = kvcalc.load_preset("jamba-v0.1")
    weights = 100 * 10**9
    r = fit(spec, 141 * 10**9, context=262144, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10))
    per_token_layer = 2 * 8 * 128 * 2  # 4096 B
    # vLLM keeps kernel - 1 conv columns: SSM 8192 x 16 + conv 8192 x (4 - 1), bf16
    state = (8192 * 16 + 8192 * 3) * 2  # 311,296 B per Mamba layer
    block = 16 * cdiv(state, 16 * per_token_layer)
    assert r.block_size == block == 80
    page = block * per_token_layer  # 327,680: one page holds one state (padded)
    group = 4  # 28 Mamba layers are not under 1.5 x 4: groups of 4, 7 Mamba groups
    budget = cdiv(141 * 10**9 * 9, 10) - weights
    blocks = budget // (group * page)
    assert r.kv_blocks_per_gpu == blocks
    # attention pages + per Mamba group, with prefix caching on (mamba cache mode 'align'): the running
    # state, the last cached one and a prefill checkpoint
    per_request = cdiv(262144, block) + 7 * 3
    assert r.max_concurrency == blocks // per_request
    assert r.kv_bytes_per_token_per_gpu == 4 * per_token_layer
    assert r.state_bytes_per_request_per_gpu == 28 * state


def test_pipeline_stages_take_the_largest_share():
    spec = kvcalc.load_preset("deepseek-v3")
    r = fit(spec, 150_109_945_856, tp=8, pp=2, context=131072, weights_bytes=700 * 10**9, reserve=0)
    # 61 layers over 2 stages: 31 and 30 (vLLM gives the remainder to the stage before the last)
    assert r.kv_bytes_per_token_per_gpu == 31 * 576 * 2
    assert r.weights_bytes_per_gpu == 700 * 10**9 // 16


def test_a_model_that_does_not_fit_is_an_answer_with_the_smallest_shape():
    spec = kvcalc.load_preset("llama-3-70b")
    r = fit(spec, 24 * GiB, context=8192, gpu_util=Fraction(9, 10), reserve=0)
    assert not r.fits and r.max_concurrency == 0 and r.max_context == 0
    # bf16 weights 141.1 GB; each GPU may use 0.9 x 24 GiB = 23,192,823,398 B
    usable = 24 * GiB * 9 // 10  # what each GPU may use
    shape = r.min_gpus_shape
    weights = cdiv(141_107_412_992, shape["gpus"])
    heads = max(1, 8 // shape["tp"])
    layers = cdiv(80, shape["pp"])
    assert usable - weights >= 16 * layers * 2 * heads * 128 * 2 * (8192 // 16)
    # and no shape with fewer GPUs holds one request
    for tp in (1, 2, 4, 8, 16, 32, 64):
        for pp in range(1, 81):
            if tp * pp < shape["gpus"]:
                smaller = fit(spec, 24 * GiB, tp=tp, pp=pp, context=8192, gpu_util=Fraction(9, 10), reserve=0,
                              search_min=False)
                assert not smaller.fits, (tp, pp)


def test_weights_dtypes_and_overrides():
    from kvcalc.capacity.params import parameter_count
    from kvcalc.capacity.weights import weights_bytes

    count = parameter_count(kvcalc.load_preset("llama-3-8b"))
    assert weights_bytes(count, "bf16") == 2 * 8_030_261_248
    embeddings = 128256 * 4096  # input embedding; the untied head is the same size
    rest = 2 * embeddings + 32 * 2 * 4096 + 4096  # embeddings, head, norms: kept 16-bit
    linear = 8_030_261_248 - rest
    assert weights_bytes(count, "fp8") == linear + 2 * rest
    groups = cdiv(linear, 128)  # a 16-bit scale and a 4-bit zero point each
    assert weights_bytes(count, "int4") == linear // 2 + 2 * groups + cdiv(groups, 2) + 2 * rest
    spec = kvcalc.load_preset("llama-3-8b")
    assert fit(spec, 80 * GiB, weights_bytes=12345).weights_bytes == 12345


def test_float32_checkpoints_are_served_in_bf16():
    r = fit(kvcalc.load_preset("gpt2"), 24 * GiB, context=1024, reserve=0)
    assert r.kv_dtype == "bf16" and r.weights_dtype == "bf16"
    assert r.kv_bytes_per_token_per_gpu == 12 * 2 * 12 * 64 * 2
    assert any("float32" in n for n in r.notes)


def test_vllm_int8_kv_adds_per_token_head_scales():
    spec = kvcalc.load_preset("llama-3-8b")
    r = fit(spec, 80 * GiB, kv_dtype="int8", reserve=0, context=8192)
    assert r.kv_bytes_per_token_per_gpu == 32 * (2 * 8 * 128 * 1 + 2 * 8 * 4)
    r = fit(spec, 80 * GiB, kv_dtype="fp8", reserve=0, context=8192)
    assert r.kv_bytes_per_token_per_gpu == 32 * 2 * 8 * 128


def test_bad_shapes_are_usage_errors():
    spec = kvcalc.load_preset("llama-3-70b")
    with pytest.raises(FitUsageError, match="does not divide the 64 attention heads"):
        fit(spec, 80 * GiB, tp=3)
    with pytest.raises(FitUsageError, match="not a multiple"):
        fit(spec, 80 * GiB, tp=4, gpus=6)
    with pytest.raises(FitUsageError, match="outside"):
        fit(spec, 80 * GiB, gpu_util=Fraction(3, 2))


# --- the command line ------------------------------------------------------------------------

def run(runner, app, *args):
    return runner.invoke(app, ["fit", *args])


def test_cli_json_keys(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu-memory", "80GiB", "--gpus", "4", "--tp", "4",
                 "-c", "8k", "--gpu-util", "0.9", "--reserve", "0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    keys = ("model engine gpu gpu_memory_bytes gpus tp pp weights_dtype kv_dtype context block_size weights_bytes "
            "weights_bytes_per_gpu reserve_bytes_per_gpu kv_budget_bytes_per_gpu kv_heads_per_gpu kv_replication "
            "kv_bytes_per_token_per_gpu kv_blocks_per_gpu kv_tokens max_concurrency max_context fits min_gpus "
            "warnings notes").split()
    assert all(k in data for k in keys), [k for k in keys if k not in data]
    assert (data["kv_blocks_per_gpu"], data["kv_tokens"], data["max_concurrency"]) == (32_066, 513_056, 62)
    assert data["gpu_memory_bytes"] == 80 * GiB and data["gpu"] is None


def test_cli_gpu_names_match_loosely(runner, kvcalc_app):
    for name in ("h100", "H100-SXM", "h100_sxm", "NVIDIA H100 80GB HBM3"):
        result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", name, "--json")
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout)["gpu"] == "h100-sxm"


def test_cli_errors(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "h1000")
    assert result.exit_code == 1 and "unknown GPU 'h1000'" in result.stderr and "h100" in result.stderr
    assert "Traceback" not in result.output
    for args in (["--gpu", "h100", "--tp", "3"], ["--gpu", "h100", "--gpu-util", "1.5"],
                 ["--gpu", "h100", "--gpu-util", "0"], ["--gpu-memory", "lots"], ["--gpu", "h100", "--reserve", "x"],
                 ["--gpu", "h100", "--gpu-memory", "80GiB"], []):
        result = run(runner, kvcalc_app, "llama-3-70b", *args)
        assert result.exit_code == 2, (args, result.output)


def test_cli_not_fitting_exits_0(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "rtx-4090", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["fits"] is False and data["min_gpus"] > 1


def test_cli_table_reads_like_an_answer(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "8k")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("weights", "reserve", "KV budget", "Requests of 8K tokens", "Longest single request",
                 "vLLM will log", "--gpus 4: TP 4 x PP 1 x 1 replica holds the most requests"):
        assert text in out, text


def test_gpus_command_lists_the_catalog(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["gpus", "--json"])
    assert result.exit_code == 0
    names = {g["key"] for g in json.loads(result.stdout)}
    for needed in ("h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "b200", "gb200", "a100-40gb", "a100-80gb",
                   "l40s", "l4", "a10g", "rtx-4090", "rtx-5090", "rtx-3090", "mi300x", "mi325x"):
        assert needed in names, needed
    for gpu in json.loads(result.stdout):
        assert gpu["memory_source"] and gpu["bandwidth_source"], gpu["key"]


def test_user_gpu_catalog_adds_entries(runner, kvcalc_app, tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("gpus:\n  lab-card:\n    name: Lab card\n    memory_bytes: 1000000000\n"
                     "    memory_source: measured\n")
    result = run(runner, kvcalc_app, "gpt2", "--gpu", "LAB_CARD", "--gpu-catalog", str(extra), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["gpu_memory_bytes"] == 10**9
    extra.write_text("gpus:\n  bad:\n    name: x\n    memory_bytes: 1.5e9\n    memory_source: y\n")

    result = run(runner, kvcalc_app, "gpt2", "--gpu", "bad", "--gpu-catalog", str(extra))
    assert result.exit_code == 1 and "memory_bytes" in result.stderr


def test_safetensors_headers_give_checkpoint_bytes(runner, kvcalc_app, tmp_path):
    import shutil
    import struct
    from pathlib import Path

    folder = tmp_path / "model"
    shutil.copytree(Path(__file__).parent / "fixtures" / "configs" / "llama-3-8b", folder)

    def write(name, tensors):
        header, offset = {}, 0
        for tname, (dtype, shape, size) in tensors.items():
            header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header).encode()
        (folder / name).write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)

    write("model-00001-of-00002.safetensors", {"a": ("F8_E4M3", [4, 4], 16), "a_scale": ("F32", [1], 4)})
    write("model-00002-of-00002.safetensors", {"b": ("BF16", [8], 16)})
    (folder / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": 36},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "a_scale": "model-00001-of-00002.safetensors",
                       "b": "model-00002-of-00002.safetensors"}}))
    result = run(runner, kvcalc_app, str(folder), "--gpu", "h100", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["weights_bytes"] == 16 + 4 + 16
    assert "safetensors headers (3 tensors in 2 files)" == data["weights_source"]
    (folder / "model-00002-of-00002.safetensors").unlink()
    result = run(runner, kvcalc_app, str(folder), "--gpu", "h100")
    assert result.exit_code == 1 and "names 1 file(s) not in" in result.stderr


def test_released_fp8_checkpoints_count_fp8_weights():
    from kvcalc.capacity.params import parameter_count

    spec = kvcalc.load_preset("deepseek-v3")
    count = parameter_count(spec)
    r = fit(spec, 150_109_945_856, tp=8, context=131072, reserve=0)
    # layer matrices in fp8 (1 byte), embeddings, head, norms and routers in bf16
    assert r.weights_dtype == "fp8"
    assert r.weights_bytes == count.linear + 2 * (count.total - count.linear)
    # as loaded: fp8 layer matrices split over 8, bf16 norms, biases and routers whole on every GPU,
    # embedding and head (129,280 rows, a multiple of 64) split by rows
    rows = cdiv(129280, 8) * 7168 * 2
    matrices = count.linear  # one byte each
    # MLA's down projections (q_a 7168 x 1536, kv_a 7168 x 576) are whole on every GPU (ReplicatedLinear
    # in vLLM's and SGLang's deepseek_v2.py)
    whole = 61 * 7168 * (1536 + 576)
    assert r.weights_bytes_per_gpu == whole + cdiv(matrices - whole, 8) + 2 * count.other + 2 * rows


def test_compare_adds_requests_that_fit(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-70b", "bert-base", "-c", "8k", "--gpu", "h100",
                                        "--gpus", "4", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    spec = kvcalc.load_preset("llama-3-70b")
    from kvcalc.capacity.gpus import find_gpu

    memory = find_gpu("h100").memory_bytes
    # the default reserve as docs/fit.md derives it: activations of 8192 batched tokens, 1024
    # sequences' fp32 logits (vLLM's max_num_seqs from 70 GiB), non-torch memory (1/4 GiB, 2 GiB more
    # at TP > 1) and 1/2 GiB of CUDA graphs (profiled into the budget since vLLM 0.21)
    activations = 8192 * (4 * 8192 + (64 + 2 * 8) * 128 // 4 + 3 * 28672 // 4) * 2
    reserve = activations + 1024 * 128256 * 4 + GiB // 4 + 2 * GiB + GiB // 2
    budget = cdiv(memory * 92, 100) - LLAMA_70B_TP4 - reserve
    blocks = budget // (80 * 16 * 2 * 2 * 128 * 2)
    assert rows[0]["shape"] == {"tp": 4, "pp": 1, "replicas": 1}  # the most requests of 4 GPUs' shapes
    assert rows[0]["requests_fit"] == blocks // (8192 // 16) > 0
    assert fit(spec, memory, gpu="h100-sxm", gpus=4, tp=4, context=8192).reserve_bytes_per_gpu == reserve
    assert rows[1]["requests_fit"] is None  # an encoder holds no requests' KV
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-70b", "-c", "8k", "--gpu", "h100", "--csv"])
    header, row = result.stdout.splitlines()
    assert header.endswith(",requests_fit") and row.endswith(",0")  # 141 GB of bf16 weights on one 80 GB GPU
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-70b", "-c", "8k", "--gpu", "h100", "--gpus", "4"])
    assert "requests" in result.stdout and "4 x NVIDIA H100" in result.stdout


# --- backwards: what N requests need ------------------------------------------------------------

def test_backwards_llama_3_70b_twenty_requests():
    spec = kvcalc.load_preset("llama-3-70b")
    r = fit(spec, 80 * GiB, tp=4, context=8192, gpu_util=Fraction(9, 10), reserve=0, concurrency=20)
    kv = 20 * (8192 // 16) * 80 * (16 * 2 * 2 * 128 * 2)  # requests x pages x layers x page bytes
    assert r.required_kv_bytes_per_gpu == kv == 20 * 8192 * 81_920
    assert r.required_bytes_per_gpu == LLAMA_70B_TP4 + kv
    assert r.required_gpu_util == cdiv(100 * (LLAMA_70B_TP4 + kv), 80 * GiB) / 100 == 0.57
    assert r.fits  # 62 fit at 0.9
    r = fit(spec, 80 * GiB, tp=4, context=8192, engine="trtllm", reserve=0, concurrency=20)
    free = 80 * GiB - LLAMA_70B_TP4
    kv = 20 * 80 * (8192 // 32) * (32 * 2 * 2 * 128 * 2)  # 32-token blocks
    assert r.required_gpu_util == cdiv(100 * kv, free) / 100


def test_backwards_without_a_gpu_answers_only_the_need():
    spec = kvcalc.load_preset("gemma-3-27b")
    r = fit(spec, None, context=32768, reserve=0, weights_bytes=10**9, concurrency=3, max_batched_tokens=8192)
    page = 16 * 2 * 16 * 128 * 2
    per_request = 6 * (cdiv(1023 + 2 * 8192, 16) + 1) + 32768 // 16  # as in the forward Gemma test
    assert r.required_kv_bytes_per_gpu == 3 * per_request * 10 * page  # groups of 10 layers
    assert r.gpu_memory_bytes is None and r.max_concurrency is None and r.fits is None
    assert r.required_gpu_util is None and r.min_gpus is None


def test_backwards_fewest_gpus_uses_replicas_and_pipeline_stages():
    # llama-3-8b on L4s, 100 requests of 8k, util 0.9, no reserve. Per (tp, pp): weights on the
    # fullest GPU as loaded, vLLM's stage split, pages of 16 x 2 x kv heads x 128 x 2.
    from kvcalc.capacity.gpus import find_gpu

    memory = find_gpu("l4").memory_bytes
    spec = kvcalc.load_preset("llama-3-8b")

    def held(tp, pp):
        sizes = [32 // pp] * pp
        for i in range(2, 32 % pp + 2):
            sizes[-i] += 1
        budget = cdiv(memory * 9, 10) - llama_weights_per_gpu(8_030_261_248, 128256, 4096, 32, tp, pp)
        page = 16 * 2 * max(1, 8 // tp) * 128 * 2
        return max(budget, 0) // (max(sizes) * page) // (8192 // 16)

    best = min((tp * pp * cdiv(100, held(tp, pp)), cdiv(100, held(tp, pp)), pp, tp)
               for tp in (1, 2, 4, 8, 16, 32) for pp in range(1, 17) if held(tp, pp) > 0)
    r = fit(spec, memory, context=8192, gpu_util=Fraction(9, 10), reserve=0, concurrency=100)
    gpus, replicas, pp, tp = best
    assert r.min_gpus_shape == {"gpus": gpus, "tp": tp, "pp": pp, "replicas": replicas}
    # worked by hand: TP 2 x PP 3 (11 layers on the fullest stage) held exactly 100 when weights were
    # split evenly; with the embedding on the first stage it holds fewer, and PP 7 (5 layers) is the fewest
    assert (gpus, tp, pp) == (7, 1, 7)
    assert not r.fits and r.required_gpu_util is None


def test_cli_backwards_and_context_lists(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu-memory", "80GiB", "--tp", "4", "-n", "20", "-c",
                 "8k,32k", "--gpu-util", "0.9", "--reserve", "0", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["context"] for r in rows] == [8192, 32768]
    assert [r["concurrency"] for r in rows] == [20, 20]
    assert rows[0]["required_kv_bytes_per_gpu"] == 20 * 8192 * 81_920
    assert rows[1]["required_kv_bytes_per_gpu"] == 20 * 32768 * 81_920
    assert rows[0]["required_gpu_util"] == 0.57
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu-memory", "80GiB", "--tp", "4", "-n", "20", "-c",
                 "8k,32k")
    assert result.exit_code == 0 and "gpu-util" in result.stdout and "KV for 20" in result.stdout
    result = run(runner, kvcalc_app, "llama-3-8b", "-n", "4", "-c", "8k")
    assert result.exit_code == 0, result.output
    assert "4 requests of 8,192 tokens need" in result.stdout
    assert run(runner, kvcalc_app, "llama-3-8b", "-c", "8k").exit_code == 2  # forward needs a GPU
    assert run(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "-n", "0").exit_code == 2


# --- launch commands, parsed back into the numbers fit computed ---------------------------------

def _parse(text: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(command words, --flag values, YAML key values) from an emitted snippet."""
    import shlex

    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    yaml_values = {}
    if lines[0].startswith(("cat > ", "(set -C; cat > ")):
        end = lines.index("YAML")
        yaml_values = dict(ln.strip().split(": ", 1) for ln in lines[2:end])
        lines = lines[end + 1:]
    words = shlex.split(" ".join(ln.rstrip("\\").strip() for ln in lines))
    command = [w for w in words[: next(i for i, w in enumerate(words) if w.startswith("--"))]]
    flags = dict(zip(words[len(command)::2], words[len(command) + 1::2]))
    return command, flags, yaml_values


def test_emitted_commands_parse_back_to_fit(runner, kvcalc_app):
    args = ["llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "8k", "-n", "20", "--kv-dtype", "fp8"]
    spec = kvcalc.load_preset("llama-3-70b")
    from kvcalc.capacity.gpus import find_gpu

    memory = find_gpu("h100").memory_bytes
    for engine in ("vllm", "sglang", "trtllm"):
        result = run(runner, kvcalc_app, *args, "--emit", engine)
        assert result.exit_code == 0, result.output
        r = fit(spec, memory, gpu="h100-sxm", gpus=4, tp=4, context=8192, concurrency=20, kv_dtype="fp8",
                engine=engine)
        command, flags, yaml_values = _parse(result.stdout)
        if engine == "vllm":
            assert command == ["vllm", "serve", "meta-llama/Meta-Llama-3-70B"]
            assert int(flags["--tensor-parallel-size"]) == 4 and int(flags["--pipeline-parallel-size"]) == 1
            assert int(flags["--max-model-len"]) == 8192 and int(flags["--max-num-seqs"]) == 20
            assert float(flags["--gpu-memory-utilization"]) == r.required_gpu_util
            assert flags["--kv-cache-dtype"] == "fp8" and int(flags["--block-size"]) == r.block_size == 16
            assert int(flags["--max-num-batched-tokens"]) == r.max_batched_tokens
            assert f"--kv-cache-memory-bytes {r.required_kv_bytes_per_gpu}" in result.stdout
        elif engine == "sglang":
            assert command == ["python", "-m", "sglang.launch_server"]
            assert flags["--model-path"] == "meta-llama/Meta-Llama-3-70B" and int(flags["--tp-size"]) == 4
            assert int(flags["--context-length"]) == 8192 and int(flags["--max-running-requests"]) == 20
            assert float(flags["--mem-fraction-static"]) == r.required_gpu_util
            assert flags["--kv-cache-dtype"] == "fp8_e4m3" and int(flags["--page-size"]) == 1
        else:
            assert command == ["trtllm-serve", "meta-llama/Meta-Llama-3-70B"]
            assert int(flags["--tp_size"]) == 4 and int(flags["--max_seq_len"]) == 8192
            assert int(flags["--max_batch_size"]) == 20
            assert float(yaml_values["free_gpu_memory_fraction"]) == r.required_gpu_util
            assert int(yaml_values["tokens_per_block"]) == 32 and yaml_values["dtype"] == "fp8"
            assert int(yaml_values["max_tokens"]) == 20 * 8192
            assert flags["--extra_llm_api_options"] == "kvcalc-trtllm.yaml"
        # the memory fraction emitted really holds the requests, and one hundredth less does not,
        # launched as emitted: 20 sequences (vLLM's sampler profiles logits for that many)
        util = Fraction(round(r.required_gpu_util * 100), 100)
        assert fit(spec, memory, gpu="h100-sxm", gpus=4, tp=4, context=8192, kv_dtype="fp8", engine=engine,
                   gpu_util=util, search_min=False, max_seqs=20).max_concurrency >= 20
        assert fit(spec, memory, gpu="h100-sxm", gpus=4, tp=4, context=8192, kv_dtype="fp8", engine=engine,
                   gpu_util=util - Fraction(1, 100), search_min=False, max_seqs=20).max_concurrency < 20


def test_emit_moves_to_the_fewest_gpu_shape_and_splits_requests_over_replicas(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "l4", "-n", "100", "-c", "8k", "--gpus", "12",
                 "--tp", "2", "--emit", "vllm")
    _, flags, _ = _parse(result.stdout)
    assert int(flags["--data-parallel-size"]) == 6 and int(flags["--max-num-seqs"]) == cdiv(100, 6)
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "h100", "-c", "8k", "--emit", "vllm")
    assert "fewest-GPU shape" in result.stdout
    _, flags, _ = _parse(result.stdout)
    assert int(flags["--tensor-parallel-size"]) * int(flags["--pipeline-parallel-size"]) > 1
    result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "l4", "--emit", "sglang", "--engine", "vllm")
    assert result.exit_code == 2
    result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "l4", "--emit", "vllm", "-c", "4k,8k")
    assert result.exit_code == 2


def test_tp_must_split_or_replicate_kv_heads_evenly():
    spec = kvcalc.load_preset("phi-3-medium-4k")  # 40 heads, 10 KV heads
    with pytest.raises(FitUsageError, match="cannot split .* 10 KV heads"):
        fit(spec, 80 * GiB, tp=4)
    assert fit(spec, 80 * GiB, tp=5, reserve=0).kv_heads_per_gpu == 2
    r = fit(spec, 24 * GiB, context=4096, concurrency=200, reserve=0)
    assert r.min_gpus_shape["tp"] in (1, 2)  # 4 and 8 split 40 heads but not 10 KV heads


def test_vllm_groups_the_whole_model_across_pipeline_stages():
    # gemma-3-27b at PP 2: stages of 31 layers, each 26 local + 5 global. Whole-model groups of 10
    # (52 local in 6 groups, 10 global in 1); local layers go to groups round-robin, so stage 0
    # holds local layers 0..25 (groups 0 and 1 get 5 each) and 5 globals: 5 tensors per worker.
    spec = kvcalc.load_preset("gemma-3-27b")
    weights = 54 * 10**9
    r = fit(spec, 80 * GiB, tp=1, pp=2, context=32768, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10),
            max_batched_tokens=8192)
    page = 16 * 2 * 16 * 128 * 2
    budget = 85_899_345_920 * 9 // 10 - cdiv(weights, 2)
    assert r.kv_blocks_per_gpu == budget // (5 * page)
    # PP 2 with async scheduling and the V2 model runner (vLLM's default now): pp + 1 = 3 batches in flight
    sliding = cdiv(min(1023 + 3 * 8192, 32768), 16) + 1
    assert r.max_concurrency == r.kv_blocks_per_gpu // (6 * sliding + 32768 // 16)
    # vLLM 0.26 to 0.28 (the V1 runner for Gemma): max(2, pp) = 2 batches; before 0.26 one batch's tokens
    old = fit(spec, 80 * GiB, tp=1, pp=2, context=32768, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10),
              max_batched_tokens=8192, version="0.28.0")
    sliding = cdiv(min(1023 + 2 * 8192, 32768), 16) + 1
    assert old.max_concurrency == old.kv_blocks_per_gpu // (6 * sliding + 32768 // 16)
    old = fit(spec, 80 * GiB, tp=1, pp=2, context=32768, weights_bytes=weights, reserve=0, gpu_util=Fraction(9, 10),
              max_batched_tokens=8192, version="0.20.0")
    sliding = cdiv(min(1023 + 8192, 32768), 16) + 1
    assert old.max_concurrency == old.kv_blocks_per_gpu // (6 * sliding + 32768 // 16)
    assert r.kv_bytes_per_token_per_gpu == 31 * 2 * 16 * 128 * 2


def test_a_float32_checkpoint_is_counted_as_served_in_bf16(runner, kvcalc_app, tmp_path):
    import shutil
    import struct
    from pathlib import Path

    folder = tmp_path / "gpt2"
    shutil.copytree(Path(__file__).parent / "fixtures" / "configs" / "gpt2", folder)
    header = {"wte": {"dtype": "F32", "shape": [10, 4], "data_offsets": [0, 160]},
              "mask": {"dtype": "U8", "shape": [8], "data_offsets": [160, 168]}}
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 168)
    data = json.loads(run(runner, kvcalc_app, str(folder), "--gpu", "h100", "--json").stdout)
    assert data["weights_bytes"] == 160 // 2 + 8  # F32 held in bf16 by the engine; the rest as stored
    assert "float32 tensors at bf16" in data["weights_source"]


def test_gpu_catalog_refuses_duplicate_keys_and_clashing_aliases(runner, kvcalc_app, tmp_path):

    twice = tmp_path / "twice.yaml"
    twice.write_text("gpus:\n  card:\n    name: a\n    memory_bytes: 1000\n    memory_source: x\n"
                     "  card:\n    name: b\n    memory_bytes: 2000\n    memory_source: y\n")
    result = run(runner, kvcalc_app, "gpt2", "--gpu", "card", "--gpu-catalog", str(twice))
    assert result.exit_code == 1 and "duplicate key 'card'" in result.stderr
    clash = tmp_path / "clash.yaml"
    clash.write_text("gpus:\n  mine:\n    name: a\n    aliases: [h100]\n    memory_bytes: 1000\n"
                     "    memory_source: x\n")
    result = run(runner, kvcalc_app, "gpt2", "--gpu", "mine", "--gpu-catalog", str(clash))
    assert result.exit_code == 1 and "'h100' names both" in result.stderr


def test_emit_refuses_what_it_cannot_launch(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "llama-3-8b", "-n", "3", "--emit", "vllm")
    assert result.exit_code == 2 and "needs the GPU" in result.output
    result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "h100", "--kv-dtype", "int8", "--emit", "sglang")
    assert result.exit_code == 2 and "no int8 KV cache" in result.output
    # one L4 would need 0.98 of its memory for 5 requests of 8k: the command moves to two GPUs
    result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "l4", "-n", "5", "-c", "8k", "--emit", "vllm")
    _, flags, _ = _parse(result.stdout)
    assert float(flags["--gpu-memory-utilization"]) <= 0.92
    assert int(flags["--tensor-parallel-size"]) * int(flags["--pipeline-parallel-size"]) > 1
    # a fraction too small for even one request: the command moves too
    result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "l4", "--gpu-util", "0.5", "-c", "8k", "--emit", "vllm")
    _, flags, _ = _parse(result.stdout)
    assert int(flags["--max-num-seqs"]) >= 1 and "fewest-GPU shape" in result.stdout


def test_emit_splits_token_budgets_per_replica(runner, kvcalc_app):
    for engine, key in (("sglang", "--max-total-tokens"), ("trtllm", "max_tokens:")):
        result = run(runner, kvcalc_app, "llama-3-8b", "--gpu", "l4", "-n", "100", "-c", "8k", "--gpus", "12", "--tp",
                     "2", "--gpu-util", "0.9", "--emit", engine)
        assert f"{key} {cdiv(100, 6) * 8192}" in result.stdout, engine


def test_bars_never_outgrow_their_width():
    from kvcalc.render import bar

    assert bar(10**30, 1, 12) == "█" * 12
    assert bar(1, 10**30, 12) == "▏"


def test_emitted_fraction_is_derived_by_hand(runner, kvcalc_app):
    # 20 requests of 8k, fp8 KV, TP 4 on H100s, no reserve: the smallest fraction f with
    # ceil(f x memory) >= weights per GPU + KV, in hundredths
    from kvcalc.capacity.gpus import find_gpu

    memory = find_gpu("h100").memory_bytes
    weights = LLAMA_70B_TP4
    kv = 20 * (8192 // 16) * 80 * (16 * 2 * 2 * 128 * 1)
    hundredths = cdiv(100 * (weights + kv), memory)
    result = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "8k", "-n", "20",
                 "--kv-dtype", "fp8", "--reserve", "0", "--emit", "vllm")
    _, flags, _ = _parse(result.stdout)
    assert flags["--gpu-memory-utilization"] == f"{hundredths / 100:.2f}"
    assert f"--kv-cache-memory-bytes {kv}" in result.stdout
