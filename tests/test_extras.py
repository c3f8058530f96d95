"""What else the engine holds (issue 22): MTP layers, LoRA slots, a draft model, a shared prefix, a CPU
tier and the prefill -> decode handoff, each derived by hand from the model facts and the engines'
code (vLLM 0.33.0 and SGLang 0.5.23; docs/fit.md section 9 cites the lines)."""

from __future__ import annotations

import json
import shlex
from fractions import Fraction

from fitting import fit_with as fit

import kvcalc
from kvcalc.capacity.extras import LORA_TARGETS, LoRA, lora_bytes_per_gpu, lora_parameters
from kvcalc.capacity.fit import Extras
from kvcalc.capacity.params import parameter_count

GiB = 1024**3
H100 = 85_045_477_376
H200 = 150_109_945_856


def cdiv(a, b):
    return -(-a // b)


def test_deepseek_v3_with_its_mtp_layer():
    from kvcalc.capacity.deployment import deployment
    from kvcalc.capacity.fit import fit as plain_fit

    spec = kvcalc.load_preset("deepseek-v3")
    d = deployment("vllm", H200, tp=8, reserve=0)
    base = plain_fit(spec, d, 32768, search_min=False)
    mtp = plain_fit(spec, d, 32768, search_min=False, extras=Extras(mtp=1))
    assert mtp.kv_bytes_per_token_per_gpu == 62 * (512 + 64) * 2 == 71_424  # 61 layers and the MTP layer
    # one more MoE decoder layer, by hand: MLA projections (q_a, q_b, kv_a, kv_b, o) and their norms,
    # 256 routed experts, 1 shared, the router with its bias, 2 layer norms (hidden 7168)
    h = 7168
    attention = h * 1536 + 1536 * 128 * 192 + h * 576 + 512 * 128 * 256 + 128 * 128 * h + 1536 + 512
    expert = 3 * h * 2048
    layer = attention + 257 * expert + h * 256 + 256 + 2 * h
    assert parameter_count(kvcalc.capacity.extras.with_extra_layers(spec, 1)).total - \
        parameter_count(spec).total == layer
    eh_proj = (2 * h * h + 3 * h) * 2  # eh_proj and three norms, bf16, whole on every GPU
    assert mtp.extras["mtp_weights_bytes_per_gpu"] == eh_proj == 205_563_904
    assert mtp.weights_bytes_per_gpu > base.weights_bytes_per_gpu
    # the budget loses the replicated eh_proj besides the layer's share
    assert base.kv_budget_bytes_per_gpu - mtp.kv_budget_bytes_per_gpu == \
        (mtp.weights_bytes_per_gpu - base.weights_bytes_per_gpu) + eh_proj


def test_lora_on_llama_3_8b():
    spec = kvcalc.load_preset("llama-3-8b")
    # per layer, rank x (in + out): q 4096+4096, k 4096+1024, v 4096+1024, o 4096+4096,
    # gate and up 4096+14336, down 14336+4096; 32 layers
    per_layer = 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    assert lora_parameters(spec, 16) == 32 * per_layer == 41_943_040
    assert 2 * lora_parameters(spec, 16) == 83_886_080  # bf16
    assert lora_bytes_per_gpu(spec, LoRA(4, 16), 1) == 4 * 83_886_080 == 335_544_320
    # TP 2: B split for q, k, v, gate, up (column parallel), A split for o and down (row parallel)
    split = 16 * (4096 + 2048) + 16 * (4096 + 512) * 2 + 16 * (2048 + 4096) + 16 * (4096 + 7168) * 2 \
        + 16 * (7168 + 4096)
    assert lora_bytes_per_gpu(spec, LoRA(4, 16), 2) == 4 * 32 * split * 2 == 226_492_416
    # vLLM's default also adapts the embedding and head: rank x (vocab + hidden) each, whole on every GPU
    head = 16 * (128256 + 4096)
    assert lora_bytes_per_gpu(spec, LoRA(4, 16, LORA_TARGETS), 1) == 335_544_320 + 4 * 2 * head * 2 == 369_426_432


def test_lora_slots_come_out_of_the_budget(runner, kvcalc_app):
    base = json.loads(runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "-c", "8k", "--json"]).stdout)
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "-c", "8k", "--max-loras", "4",
                                        "--lora-targets", "q,k,v,o,gate,up,down", "--json"])
    lora = json.loads(result.stdout)
    assert lora["extras"]["lora_bytes_per_gpu"] == 335_544_320
    assert base["kv_budget_bytes_per_gpu"] - lora["kv_budget_bytes_per_gpu"] == 335_544_320
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-8b", "--gpu", "h100", "--max-loras", "4",
                                        "--max-lora-rank", "1024"])
    assert result.exit_code == 2 and "--max-lora-rank" in result.stderr  # vLLM's largest rank is 512
    result = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "--gpus", "8", "--max-loras", "1",
                                        "--lora-targets", "q,k"])
    assert result.exit_code == 2 and "MLA" in result.stderr


def test_a_draft_model_shares_the_pool():
    target, draft = kvcalc.load_preset("llama-3-70b"), kvcalc.load_preset("llama-3.2-1b")
    plain = fit(target, 80 * GiB, tp=4, context=8192, reserve=0, gpu_util=Fraction(9, 10), search_min=False)
    from kvcalc.capacity.deployment import deployment
    from kvcalc.capacity.fit import fit as plain_fit

    d = deployment("vllm", 80 * GiB, tp=4, reserve=0, gpu_util=Fraction(9, 10))
    r = plain_fit(target, d, 8192, search_min=False, extras=Extras(draft=draft))
    draft_weights = cdiv(1_235_814_400 * 2, 4)  # its bf16 parameters split like the target's
    assert r.extras["draft_weights_bytes_per_gpu"] == draft_weights
    assert plain.kv_budget_bytes_per_gpu - r.kv_budget_bytes_per_gpu == draft_weights
    # vLLM: 80 target layers (2 KV heads x 128 per GPU) and 16 draft layers (2 x 64): groups of 16, the
    # draft's narrower pages hold 32 tokens; a request of 8K takes 5 x 512 + 1 x 256 pages
    assert [(g["name"], g["groups"], g["pages_per_request"]) for g in r.kv_groups] == [
        ("full", 5, 5 * 512), ("draft/full", 1, 256)]
    page = 16 * 2 * 2 * 128 * 2
    assert r.max_concurrency == r.kv_budget_bytes_per_gpu // (16 * page) // (5 * 512 + 256)


def test_a_draft_with_another_vocabulary_is_refused(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "--draft",
                                        "qwen3-0.6b"])
    assert result.exit_code == 2 and "vocabulary" in result.stderr


def test_a_shared_prefix_is_held_once():
    spec = kvcalc.load_preset("llama-3-8b")
    plain = fit(spec, H100, context=8192, reserve=0, search_min=False)
    from kvcalc.capacity.deployment import deployment
    from kvcalc.capacity.fit import fit as plain_fit

    shared = plain_fit(spec, deployment("vllm", H100, reserve=0), 8192, search_min=False,
                       extras=Extras(shared_prefix=4096))
    blocks = plain.kv_blocks_per_gpu
    # 4,096 shared tokens are 256 whole pages held once; each request adds its own 256
    assert shared.max_concurrency == (blocks - 256) // (512 - 256)
    assert plain.max_concurrency == blocks // 512


def test_a_cpu_tier_for_llama_3_70b_in_vllm(runner, kvcalc_app):
    # vLLM native offloading: chunks of one 16-token block of every rank's layers,
    # 16 x 81,920 B x 4 ranks = 5,242,880 B (a multiple of 4096); 100 GiB // that = 20,480 chunks
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "--tp", "4", "-c", "8k",
                                        "--cpu-kv", "100GiB", "--json"])
    tier = json.loads(result.stdout)["extras"]["cpu_tier"]
    assert tier["tokens"] == 100 * GiB // (16 * 81_920 * 4) * 16 == 327_680
    assert tier["requests"] == 327_680 // 8192 == 40
    assert abs(tier["reload_seconds_per_request"] - 8192 * 81_920 / 64e9) < 1e-12
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--cpu-kv", "lots"])
    assert result.exit_code == 2


def test_handoff_llama_3_70b_tp4_to_tp4(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["handoff", "llama-3-70b", "-c", "8k", "--prefill-tp", "4", "--decode-tp", "4",
                                        "--link", "400Gb/s", "--json"])
    assert result.exit_code == 0, result.output
    h = json.loads(result.stdout)
    assert h["bytes_moved"] == 80 * 2 * 8 * 128 * 2 * 8192 == 2_684_354_560
    assert h["bytes_per_decode_gpu"] == 2_684_354_560 // 4
    assert round(h["seconds_one_link"] * 1000, 1) == 53.7  # 2,684,354,560 B at 50 GB/s
    # MLA: every decode GPU holds the whole latent, so TP 8 moves it eight times
    h = json.loads(runner.invoke(kvcalc_app, ["handoff", "deepseek-v3", "-c", "8k", "--decode-tp", "8",
                                              "--prefill-tp", "8", "--json"]).stdout)
    assert h["bytes_per_decode_gpu"] == 61 * 576 * 2 * 8192 and h["bytes_moved"] == 8 * h["bytes_per_decode_gpu"]


def test_emitted_flags_parse_back(runner, kvcalc_app):
    def words(args):
        result = runner.invoke(kvcalc_app, ["fit", *args])
        assert result.exit_code == 0, result.output
        lines = [ln for ln in result.stdout.splitlines() if ln and not ln.startswith("#")]
        return shlex.split(" ".join(ln.rstrip("\\").strip() for ln in lines))

    w = words(["llama-3-70b", "--gpu", "h100", "--gpus", "4", "--tp", "4", "-c", "8k", "--max-loras", "2",
               "--draft", "llama-3.2-1b", "--cpu-kv", "100GiB", "--emit", "vllm"])
    assert "--enable-lora" in w and w[w.index("--max-loras") + 1] == "2" and w[w.index("--max-lora-rank") + 1] == "16"
    assert json.loads(w[w.index("--speculative-config") + 1]) == {"model": "meta-llama/Llama-3.2-1B",
                                                                    "num_speculative_tokens": 1}
    assert w[w.index("--kv-offloading-size") + 1] == "100"
    w = words(["deepseek-v3", "--gpu", "h200", "--gpus", "8", "--tp", "8", "-c", "8k", "--mtp", "1", "--emit", "vllm"])
    assert json.loads(w[w.index("--speculative-config") + 1]) == {"method": "mtp", "num_speculative_tokens": 1}
    w = words(["deepseek-v3", "--gpu", "h200", "--gpus", "8", "--tp", "8", "-c", "8k", "--mtp", "1", "--cpu-kv",
               "50GB", "--emit", "sglang"])
    assert w[w.index("--speculative-algorithm") + 1] == "NEXTN" and "--enable-hierarchical-cache" in w
    assert w[w.index("--hicache-size") + 1] == "50"
    w = words(["llama-3-8b", "--gpu", "h100", "-c", "8k", "--max-loras", "4", "--emit", "sglang"])
    assert w[w.index("--max-loras-per-batch") + 1] == "4"


def test_other_tier_backends(runner, kvcalc_app):
    def tier(*args):
        result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "--tp", "4", "-c",
                                            "8k", "--cpu-kv", "5GB", *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["extras"]["cpu_tier"]

    # LMCache (max_local_cpu_size per worker): chunks of 256 tokens of one rank's 81,920 B per token
    assert tier("--kv-tier-backend", "lmcache")["tokens"] == 5 * 10**9 // (256 * 81_920) * 256 == 60_928
    # TensorRT-LLM's host_cache_size per rank: whole 32-token blocks
    assert tier("--engine", "trtllm")["tokens"] == 5 * 10**9 // (32 * 81_920) * 32 == 61_024
    # SGLang HiCache (--hicache-size 5 GB per rank, pool_host/base.py): int(5e9 // 81,920) = 61,035 tokens
    # in pages of 1, plus one padding page
    assert tier("--engine", "sglang")["tokens"] == 5 * 10**9 // 81_920 + 1 == 61_036
    result = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--cpu-kv", "5GB", "--engine", "sglang",
                                        "--kv-tier-backend", "native"])
    assert result.exit_code == 2 and "sglang takes hicache" in result.stderr


def test_handoff_says_what_the_decode_group_holds(runner, kvcalc_app):
    fitted = json.loads(runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "--tp", "4",
                                                   "-c", "8k", "--json"]).stdout)
    h = json.loads(runner.invoke(kvcalc_app, ["handoff", "llama-3-70b", "-c", "8k", "--prefill-tp", "4", "--decode-tp",
                                              "4", "--gpu", "h100", "--json"]).stdout)
    assert h["decode_requests"] == fitted["max_concurrency"] > 0


def test_sglang_under_speculative_decoding(runner, kvcalc_app):
    # DeepSeek-V3 with its MTP layer on 8 x H200 in SGLang: the NextN layer's latent joins every token's
    # cell (70,272 + 1,152 = 71,424 B), and running requests default to 48 (speculative_hook.py)
    result = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "--gpus", "8", "--tp", "8", "-c", "8k",
                                        "--engine", "sglang", "--mtp", "1", "--json"])
    data = json.loads(result.stdout)
    assert data["kv_bytes_per_token_per_gpu"] == 61 * 1152 + 1152 == 71_424
    assert data["max_running_requests"] == 48
    assert data["max_total_num_tokens"] == data["kv_budget_bytes_per_gpu"] // 71_424


def test_multi_module_mtp_keeps_lookahead_in_sliding_windows(runner, kvcalc_app):
    def sliding_pages(*args):
        result = runner.invoke(kvcalc_app, ["fit", "gpt-oss-20b", "--gpu", "h100", "-c", "8k", "--max-batched-tokens",
                                            "2048", *args, "--json"])
        assert result.exit_code == 0, result.output
        return {g["name"]: g["pages_per_request"] for g in json.loads(result.stdout)["kv_groups"]}["sliding"]

    # gpt-oss-20b's window is 128; with async scheduling and the V2 runner 2 batches of 2,048 tokens are in
    # flight: pages = cdiv(128 - 1 + retained + 4096, 16) + 1. vLLM retains num_speculative_tokens - 1 more
    # when min(MTP modules, num_speculative_tokens) > 1 (kv_cache_planning.py, config/speculative.py);
    # num_speculative_tokens defaults to the module count
    assert sliding_pages("--mtp", "1") == cdiv(128 - 1 + 0 + 4096, 16) + 1 == 265
    assert sliding_pages("--mtp", "3") == cdiv(128 - 1 + 2 + 4096, 16) + 1 == 266
    assert sliding_pages("--mtp", "3", "--num-speculative-tokens", "1") == 265  # min(3, 1) = 1: one module's worth


def test_lora_on_the_mlp_counts_only_layers_that_have_one():
    """Nemotron-H-8B: 52 layers, of which 24 are MLP-only ('ffn', 4096 -> 21504, relu2: up and down),
    24 Mamba and 4 attention (weights.mlp_kinds). Rank 16 on up and down: 24 x 16 x (4096 + 21504) each."""
    from kvcalc.capacity.extras import lora_parameters

    spec = kvcalc.load_preset("nemotron-h-8b-base-8k")
    assert lora_parameters(spec, 16, ("up", "down")) == 2 * 24 * 16 * (4096 + 21504)
