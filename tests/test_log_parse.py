"""kvcalc.logs.parse against real start-up logs (tests/fixtures/engine_logs/, vllm_cpu/pages.jsonl),
variants of them as people paste them, and input that is not a log.

Expectations come from the log text (INDEX.yaml's hand-read figures, or a plain regex over the
line), never from the parser itself.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from kvcalc.errors import KvcalcError
from kvcalc.logs import LogError, ParsedLog, parse_log
from kvcalc.logs import parse as parse_mod

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = FIXTURES / "engine_logs"
INDEX = yaml.safe_load((LOGS / "INDEX.yaml").read_text())["logs"]
RUNS = [json.loads(line) for line in (FIXTURES / "vllm_cpu" / "pages.jsonl").open()]


def parse_text(text: str) -> ParsedLog:
    return parse_log(io.BytesIO(text.encode()))


def figures(log: ParsedLog) -> list[tuple[str, object, int, str | None]]:
    return [(f.name, f.value, f.line, f.worker) for facts in log.facts.values() for f in facts]


# --- the real fixtures against INDEX.yaml -------------------------------------------------------------------

# INDEX key -> the facts that carry it (the first is the one INDEX's name means; the others say the same thing
# in another line: the concurrency line states the max model length, SGLang's chunk is vLLM's batch)
INDEX_FACTS = {
    "version": ("version",),
    "tp": ("tp",), "pp": ("pp",), "dp": ("dp",),
    "gpu_memory_utilization": ("gpu_memory_utilization",),
    "enforce_eager": ("enforce_eager",),
    "kv_cache_dtype": ("kv_cache_dtype",),
    "max_model_len": ("max_model_len", "max_concurrency_len", "context_len"),
    "max_num_batched_tokens": ("max_num_batched_tokens", "chunked_prefill_size"),
    "weights_gib": ("weights_gib",),
    "activation_peak_gib": ("torch_peak_gib",),
    "non_torch_gib": ("non_torch_gib",),
    "cuda_graph_gib": ("cuda_graph_gib", "cuda_graph_estimate_gib"),
    "available_kv_gib": ("available_kv_gib",),
    "kv_cache_size_tokens": ("kv_cache_tokens",),
    "max_concurrency": ("max_concurrency",),
    "max_concurrency_len": ("max_concurrency_len",),
    "mem_fraction_static": ("mem_fraction_static",),
    "max_total_num_tokens": ("max_total_num_tokens",),
    "max_running_requests": ("max_running_requests",),
    "kv_alloc_tokens": ("kv_alloc_tokens",),
    "k_size_gb": ("k_size_gib",),
    "v_size_gb": ("v_size_gib",),
    "available_gpu_mem_gb": ("available_gpu_mem_gib",),
}
MEASURED = {k for k in INDEX_FACTS if k not in ("version", "tp", "pp", "dp", "enforce_eager", "kv_cache_dtype")}


def same(parsed: object, indexed: object) -> bool:
    if isinstance(parsed, Decimal):
        return not isinstance(indexed, bool) and parsed == Decimal(str(indexed))
    return parsed == indexed


def printed_in(text: str, value: object) -> bool:
    """The figure appears in the log as a number of its own (plain or with thousands commas)."""
    forms = {str(value)} | ({f"{value:,}"} if isinstance(value, int) else set())
    return any(re.search(rf"(?<![\d.,]){re.escape(f)}(?!\d|\.\d)", text) for f in forms)


@pytest.mark.parametrize("entry", INDEX, ids=[e["file"] for e in INDEX])
def test_every_figure_read_equals_the_one_a_human_read(entry):
    log = parse_log(LOGS / entry["file"])
    assert log.engine == entry["engine"]
    assert log.lines_read == len((LOGS / entry["file"]).read_text().splitlines())
    assert not log.truncated
    for key, names in INDEX_FACTS.items():
        if entry.get(key) is None:
            continue
        found = sorted((f for n in names for f in log.facts.get(n, ())), key=lambda f: f.line)
        if found:  # the first figure of its kind, in log order, is the one INDEX quotes
            assert same(found[0].value, entry[key]), (key, found[0], entry[key])
        elif key in MEASURED:  # a figure INDEX has, printed in the log, must be read
            assert not printed_in((LOGS / entry["file"]).read_text(), entry[key]), (key, entry[key])


@pytest.mark.parametrize("entry", INDEX, ids=[e["file"] for e in INDEX])
def test_the_model_read_is_the_one_indexed(entry):
    log = parse_log(LOGS / entry["file"])
    for fact in log.facts.get("model", ()):
        assert Path(fact.value).name in entry["model"]


def test_every_line_with_a_figure_reads_as_the_plain_regex_says():
    # an independent reading of the lines most logs have, over every fixture
    patterns = {
        "available_kv_gib": r"Available KV cache memory: (-?[\d.]+) GiB",
        "kv_cache_tokens": r"KV cache size: ([\d,]+) tokens",
        "max_concurrency": r"per request: ([\d.]+)x",
        "kv_alloc_tokens": r"#tokens: (\d+),",
        "weights_gib": r"(?:Model loading took|Loading model weights took|mem usage=) ?([\d.]+) G",
        "pool_end_avail_gib": r"Memory pool end\. avail mem=([\d.]+) GB",
    }
    for path in sorted(LOGS.glob("*.log")):
        log = parse_log(path)
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for name, pattern in patterns.items():
                if name == "weights_gib" and "Load weight end" not in line and "took" not in line:
                    continue
                m = re.search(pattern, line)
                got = [f.value for f in log.facts.get(name, ()) if f.line == lineno]
                if m:
                    want = int(m.group(1).replace(",", "")) if "tokens" in name else Decimal(m.group(1))
                    assert got == [want], (path.name, lineno, name)
                else:
                    assert got == [], (path.name, lineno, name)


def test_every_rank_keeps_its_own_figure():
    path = LOGS / "vllm-pr27521-openpangu-ultra-moe-tp8-ep.log"
    want = [(m["worker"], Decimal(m["gib"]), n) for n, line in enumerate(path.read_text().splitlines(), 1)
            for m in [re.match(r"\((?P<worker>\S+) pid=\d+\).*Available KV cache memory: (?P<gib>[\d.]+) GiB", line)]
            if m]
    log = parse_log(path)
    assert [(f.worker, f.value, f.line) for f in log.facts["available_kv_gib"]] == want
    assert len({w for w, _, _ in want}) == 5 and Decimal("6.44") in {g for _, g, _ in want}
    # the rank the terminal cut before its figure is not read
    assert not [f for f in log.facts["available_kv_gib"] if f.worker == "Worker_DP0_TP5_EP5"]


def test_sglang_ranks_in_the_bracket_are_the_worker():
    path = LOGS / "sglang-pr11716-tp8.log"
    log = parse_log(path)
    want = [(m[1], int(m[2])) for m in re.finditer(r"\[[\d-]+ [\d:]+ (TP\d)\] KV Cache is allocated\. #tokens: (\d+)",
                                                    path.read_text())]
    assert [(f.worker, f.value) for f in log.facts["kv_alloc_tokens"]] == want
    assert [f.worker for f in log.facts["graph_begin_avail_gib"]] == ["TP7", "TP2", "TP0"]


def test_vllm_launch_arguments_from_the_non_default_args_line():
    path = LOGS / "vllm-club3090-295-qwen36-27b-int4-3090-tp2.log"
    args = path.read_text().splitlines()[0]
    log = parse_log(path)
    for key, name in [("tensor_parallel_size", "tp"), ("max_model_len", "max_model_len"),
                      ("max_num_batched_tokens", "max_num_batched_tokens"), ("max_num_seqs", "max_num_seqs")]:
        assert log.values(name) == [int(re.search(rf"'{key}': (\d+)", args).group(1))]
    assert log.values("kv_cache_dtype") == [re.search(r"'kv_cache_dtype': '(\w+)'", args).group(1)]
    assert log.values("enable_prefix_caching") == [True]
    assert log.values("speculative_config") == [re.search(r"'speculative_config': (\{[^}]*\})", args).group(1)]
    assert log.first("tp").worker == "APIServer"


def test_the_cut_engine_config_line_gives_its_version_and_nothing_more():
    path = LOGS / "vllm-club3090-612-qwen36-35b-a3b-nvfp4-5090-tp1.log"
    line2 = path.read_text().splitlines()[1]
    assert line2.endswith("with config: mo")
    log = parse_log(path)
    assert [(f.value, f.line) for f in log.facts["version"]] == [(re.search(r"\(v([\d.]+)\)", line2).group(1), 2)]
    assert [f.line for f in log.facts["model"]] == [1]  # from non-default args, not the cut "mo"


@pytest.mark.parametrize("run", RUNS, ids=[r["case"] for r in RUNS])
def test_vllm_cpu_run_lines(run):
    lines = list(dict.fromkeys(v for v in run["logs"].values() if isinstance(v, str)))
    log = parse_text("\n".join(lines) + "\n")
    assert log.engine == "vllm"
    assert log.values("kv_cache_tokens") == [run["logs"]["log_kv_cache_tokens"]]
    assert log.values("kv_cache_device") == [run["logs"]["log_device"]] == ["CPU"]
    assert [float(v) for v in log.values("max_concurrency")] == [run["logs"]["log_max_concurrency"]]
    assert log.values("max_concurrency_len") == [run["requested"]["max_model_len"]]
    assert log.first("kv_cache_tokens").worker == re.match(r"\((\w+) pid=", run["logs"]["kv_cache_size_line"])[1]
    notice = run["logs"].get("block_size_notice")
    if notice:
        assert log.values("block_size") == [int(re.search(r"block size to (\d+) tokens", notice).group(1))]


# --- as people paste them ---------------------------------------------------------------------------------


def all_fixture_text(name: str) -> str:
    return (LOGS / name).read_text()


def colour(line: str, esc: str) -> str:
    line = re.sub(r"^(\([^)]*\))", rf"{esc}[1;36m\1{esc}[0;0m", line)
    return re.sub(r"\b(INFO|WARNING|ERROR|DEBUG)\b", rf"{esc}[32m\1{esc}[0m", line)


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
def test_colours_crlf_and_redraws_change_nothing(name):
    text = all_fixture_text(name)
    plain = parse_text(text)
    lines = text.splitlines()
    variants = {
        "ansi": "\n".join(colour(line, "\x1b") for line in lines) + "\n",
        "ansi without ESC": "\n".join(colour(line, "") for line in lines) + "\n",
        "crlf": "\r\n".join(lines) + "\r\n",
        "progress bar before each line": "\n".join(f"Loading: 50%\r{line}" for line in lines) + "\n",
    }
    for label, variant in variants.items():
        got = parse_text(variant)
        assert figures(got) == figures(plain), label
        assert got.engine == plain.engine, label
    # the text kept for each fact is the clean line
    for facts in parse_text(variants["ansi"]).facts.values():
        for f in facts:
            assert "\x1b" not in f.text and "[0;0m" not in f.text


PREFIXES = [
    ("", None),
    ("(EngineCore_DP0 pid=1133552) INFO 10-03 16:22:17 [gpu_worker.py:298] ", "EngineCore_DP0"),
    ("(Worker_TP1 pid=148) INFO 05-14 00:04:17 [gpu_worker.py:460] ", "Worker_TP1"),
    ("(VllmWorker rank=1 pid=2345) INFO 06-01 09:20:16 [gpu_worker.py:227] ", "VllmWorker rank=1"),
    ("(VllmWorkerProcess pid=777) INFO 03-01 10:00:00 worker.py:267] ", "VllmWorkerProcess pid=777"),
    ("(RayWorkerWrapper pid=99, ip=10.0.0.2) INFO 03-01 10:00:00 worker.py:267] ", "RayWorkerWrapper pid=99"),
    ("[2026-01-02 10:11:12 TP0] ", "TP0"),
    ("[2025-07-10 12:00:00 DP1 TP3] ", "DP1 TP3"),
    ("DEBUG 10-03 16:22:17 [gpu_worker.py:298] ", None),
    ("vllm-1  | (EngineCore_DP0 pid=7) INFO 10-03 16:22:17 [gpu_worker.py:298] ", "EngineCore_DP0"),
    ("2025-10-03T16:22:17.123456789Z (EngineCore_DP0 pid=7) INFO 10-03 16:22:17 [gpu_worker.py:298] ",
     "EngineCore_DP0"),
]


@pytest.mark.parametrize(("prefix", "worker"), PREFIXES)
def test_prefix_styles(prefix, worker):
    body = "Available KV cache memory: 6.51 GiB"  # vllm-lmcache1739, as printed
    log = parse_text(prefix + body + "\n")
    assert [(f.value, f.worker, f.line) for f in log.facts["available_kv_gib"]] == [(Decimal("6.51"), worker, 1)]


def test_two_workers_interleaved_keep_their_own_figures():
    lines = all_fixture_text("vllm-lmcache1739-qwen3-14b-tp1.log").splitlines()
    tp0 = [line.replace("(EngineCore_DP0 pid=1133552)", "(Worker_TP0 pid=10)") for line in lines]
    tp1 = [line.replace("(EngineCore_DP0 pid=1133552)", "(Worker_TP1 pid=11)").replace("6.51 GiB", "6.49 GiB")
           for line in lines]
    text = "\n".join(x for pair in zip(tp0, tp1) for x in pair) + "\n"
    log = parse_text(text)
    assert [(f.worker, str(f.value), f.line) for f in log.facts["available_kv_gib"]] == [
        ("Worker_TP0", "6.51", 1), ("Worker_TP1", "6.49", 2)]
    assert [f.worker for f in log.facts["kv_cache_tokens"]] == ["Worker_TP0", "Worker_TP1"]


def figure_lines():
    """(line, label, figure) for every real line whose figure has printed text after it."""
    out = []
    for path in sorted(LOGS.glob("*.log")):
        for line in path.read_text().splitlines():
            for label, figure in re.findall(r"(Available KV cache memory: |KV cache size: |per request: |K size: "
                                            r"|#tokens: |Model loading took |avail mem=|mem usage=)(-?[\d.,]+\d)[ x]",
                                            line):
                out.append((line, label, figure))
    return out


@pytest.mark.parametrize(("line", "label", "figure"), figure_lines())
def test_a_line_cut_inside_its_number_is_recorded_as_cut(line, label, figure):
    start = line.index(label + figure) + len(label)
    whole = parse_text(line + "\n")
    named = {f.name for facts in whole.facts.values() for f in facts if figure.replace(",", "") in f.text}
    for end in range(start + 1, start + len(figure) + 1):  # "6", "6.", "6.5", "6.51"
        cut = parse_text(line[:end] + "\n")
        for name, facts in cut.facts.items():
            if name not in ("cut", "engine"):
                for f in facts:  # what was read is what the whole line says
                    assert f.value in whole.values(name), (line[:end], name, f.value)
        assert cut.values("cut"), line[:end]
        assert set(cut.values("cut")) <= named | set(parse_mod.FACTS)
        assert any("cut" in note for note in cut.notes)


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
def test_a_log_cut_by_a_terminal_never_gives_a_wrong_figure(name):
    lines = all_fixture_text(name).splitlines()
    whole = parse_text("\n".join(lines) + "\n")
    want = {(f.name, f.line): f.value for facts in whole.facts.values() for f in facts}
    widths = sorted({len(line) for line in lines})
    for width in range(40, max(widths)):
        cut_lines = [line[:width] for line in lines]
        longest = [line for line in cut_lines if len(line) == width]
        if len(longest) < 3 or len({re.sub(r"\d+", "", line) for line in longest}) < 2:
            continue  # fewer than three lines cut at one width is no terminal's doing
        log = parse_text("\n".join(cut_lines) + "\n")
        for facts in log.facts.values():
            for f in facts:
                if f.name not in ("cut", "engine"):
                    assert want.get((f.name, f.line)) == f.value, (width, f)


def test_the_one_line_form_of_v028_and_a_cut_concurrency():
    line = "(EngineCore pid=9) INFO 09-01 10:00:00 [kv_cache_utils.py:1169] GPU KV cache size: 1,234,560 tokens, " \
           "Maximum concurrency for 131,072 tokens per request: 9.42x"
    log = parse_text(line + "\n")
    assert (log.values("kv_cache_tokens"), log.values("max_concurrency_len"), log.values("max_concurrency")) == (
        [1234560], [131072], [Decimal("9.42")])
    cut = parse_text(line[:-2] + "\n")  # "...: 9.4"
    assert cut.values("max_concurrency") == [] and cut.values("cut") == ["max_concurrency"]
    assert cut.values("max_concurrency_len") == [131072]


# --- the format strings of every release (vllm.md sections 4, 5, 7; sglang.md section 6) -----------------

FORMS = [
    ("Model loading took 14.99 GiB memory and 14.429680 seconds", {"weights_gib": "14.99"}),
    ("Model loading took 29.0947 GB and 5.012 seconds", {"weights_gib": "29.0947"}),
    ("Model loading took 14.9889 GiB and 18.506763 seconds", {"weights_gib": "14.9889"}),
    ("Memory profiling takes 17.96 seconds. Total non KV cache memory: 17.12GiB; torch peak memory increase: "
     "1.89GiB; non-torch forward increase memory: 0.25GiB; weights memory: 14.99GiB.",
     {"non_kv_gib": "17.12", "torch_peak_gib": "1.89", "non_torch_gib": "0.25", "weights_gib": "14.99"}),
    ("Memory profiling takes 31.20 seconds. Total non KV cache memory: 63.53GiB; torch peak memory increase: "
     "2.04GiB; total consumed (from mem_get_info): 61.49GiB; weights memory: 55.87GiB.",
     {"non_kv_gib": "63.53", "torch_peak_gib": "2.04", "total_consumed_gib": "61.49", "weights_gib": "55.87"}),
    ("Initial free memory: 78.53 GiB; Requested memory: 0.900000 (util), 71.29 GiB",
     {"initial_free_gib": "78.53", "gpu_memory_utilization": "0.900000", "requested_gib": "71.29"}),
    ("Initial free memory 77.91 GiB, reserved 5.32 GiB memory for KV Cache as specified by kv_cache_memory_bytes "
     "config and skipped memory profiling.", {"initial_free_gib": "77.91", "kv_reserved_gib": "5.32"}),
    ("Free memory after profiling: 9.12 GiB (total), 8.01 GiB (within requested)", {"free_after_profile_gib": "9.12"}),
    ("the current vLLM instance can use total_gpu_memory (79.22GiB) x gpu_memory_utilization (0.90) = 71.29GiB",
     {"total_gpu_gib": "79.22", "gpu_memory_utilization": "0.90", "requested_gib": "71.29"}),
    ("model weights take 15.27GiB; non_torch_memory takes 0.06GiB; PyTorch activation peak memory takes 1.40GiB; "
     "the rest of the memory reserved for KV Cache is 5.33GiB.",
     {"weights_gib": "15.27", "non_torch_gib": "0.06", "torch_peak_gib": "1.40", "available_kv_gib": "5.33"}),
    ("# cuda blocks: 2000, # CPU blocks: 2048", {"num_gpu_blocks": 2000, "num_cpu_blocks": 2048}),
    ("Graph capturing finished in 20 secs, took 0.65 GiB", {"cuda_graph_gib": "0.65"}),
    ("CUDA graph pool memory: 0.50 GiB (actual), 0.80 GiB (estimated), difference: 0.30 GiB (60.0%).",
     {"cuda_graph_gib": "0.50", "cuda_graph_estimate_gib": "0.80"}),
    ("CUDA graph memory profiling is disabled (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0).",
     {"cuda_graph_profiling": False}),
    ("Multiplying the GPU KV cache size by the cp_world_size 4 (pcp_world_size 2 * dcp_world_size 2).",
     {"cp_world_size": 4, "pcp_world_size": 2, "dcp_world_size": 2}),
    ("Memory after warmup: 10.00 GiB free, 50.00 GiB committed to the KV cache, 2.00 GiB kept for transient "
     "activations (1.50 GiB allocated at peak, 0.50 GiB of torch reservation growth); 3125 KV cache blocks "
     "(48.83 GiB) fit within the requested 72.00 GiB. Torch may reserve up to 1.00 GiB.",
     {"num_gpu_blocks": 3125, "kv_cache_gib": "48.83", "requested_gib": "72.00"}),
    ("vLLM API server version 0.10.1", {"version": "0.10.1"}),
    ("Initializing a V1 LLM engine (v0.9.1) with config: model='Qwen/Qwen3-8B', speculative_config=None, "
     "tokenizer='Qwen/Qwen3-8B', dtype=torch.bfloat16, max_seq_len=40960, tensor_parallel_size=2, "
     "pipeline_parallel_size=1, data_parallel_size=1, quantization=None, enforce_eager=False, kv_cache_dtype=auto, "
     "served_model_name=Qwen/Qwen3-8B, enable_prefix_caching=True, compilation_config={\"level\": 3}",
     {"version": "0.9.1", "model": "Qwen/Qwen3-8B", "dtype": "bfloat16", "max_model_len": 40960, "tp": 2, "pp": 1,
      "dp": 1, "enforce_eager": False, "kv_cache_dtype": "auto", "enable_prefix_caching": True}),
    ("Using max model len 131072", {"max_model_len": 131072}),
    ("Chunked prefill is enabled with max_num_batched_tokens=8192.", {"max_num_batched_tokens": 8192}),
    ("Using default MoE config. Config file not found at /x/configs/E=128,N=768,device_name=NVIDIA_H100_80GB_HBM3.json",
     {"gpu_name": "NVIDIA H100 80GB HBM3"}),
    ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)", {"gpu_name": "NVIDIA H100 80GB HBM3"}),
    ("|   0  NVIDIA A100-SXM4-80GB          On  |   00000000:07:00.0 Off |                    0 |",
     {"gpu_name": "NVIDIA A100-SXM4-80GB"}),
    ("$ vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 4 --max-model-len 32768 "
     "--gpu-memory-utilization 0.85 --kv-cache-dtype fp8 --enforce-eager --max-num-seqs 64",
     {"model": "meta-llama/Llama-3.1-8B-Instruct", "tp": 4, "max_model_len": 32768,
      "gpu_memory_utilization": "0.85", "kv_cache_dtype": "fp8", "enforce_eager": True, "max_num_seqs": 64}),
    # SGLang
    ("[2025-10-16 09:06:10 TP0] server_args=ServerArgs(model_path='Qwen/Qwen3-8B', tokenizer_path='Qwen/Qwen3-8B', "
     "dtype='auto', kv_cache_dtype='fp8_e4m3', context_length=None, mem_fraction_static=0.871, "
     "max_running_requests=None, max_total_tokens=None, chunked_prefill_size=8192, max_prefill_tokens=16384, "
     "tp_size=4, pp_size=1, dp_size=2, page_size=1, disable_radix_cache=False, disable_cuda_graph=False, "
     "speculative_algorithm='EAGLE', sglang_version=None)",
     {"model": "Qwen/Qwen3-8B", "dtype": "auto", "kv_cache_dtype": "fp8_e4m3", "mem_fraction_static": "0.871",
      "chunked_prefill_size": 8192, "max_prefill_tokens": 16384, "tp": 4, "pp": 1, "dp": 2, "page_size": 1,
      "enable_prefix_caching": True, "enforce_eager": False, "speculative_config": "EAGLE"}),
    ("server_args={'model_path': 'zai-org/GLM-5-FP8', 'tp_size': 8, 'mem_fraction_static': 0.88}",
     {"model": "zai-org/GLM-5-FP8", "tp": 8, "mem_fraction_static": "0.88"}),
    ("python -m sglang.launch_server --model-path Qwen/Qwen3-8B --tp 2 --mem-fraction-static 0.8 "
     "--chunked-prefill-size 4096 --disable-radix-cache",
     {"model": "Qwen/Qwen3-8B", "tp": 2, "mem_fraction_static": "0.8", "chunked_prefill_size": 4096,
      "enable_prefix_caching": False}),
    ("Load weight end. elapsed=787.55 s, type=Qwen4ExpForConditionalGeneration, quant=modelopt_fp4, "
     "avail mem=29.01 GB, mem usage=82.97 GB.", {"load_end_avail_gib": "29.01", "weights_gib": "82.97"}),
    ("KV Cache is allocated. #tokens: 2795207, KV size: 12.34 GB",
     {"kv_alloc_tokens": 2795207, "kv_size_gib": "12.34"}),
    ("Use sliding window memory pool. full_layer_tokens=123456, swa_layer_tokens=98765",
     {"swa_full_tokens": 123456, "swa_tokens": 98765}),
    ("Mamba Cache is allocated. max_mamba_cache_size: 22, conv_state size: 0.06GB, ssm_state size: 3.23GB "
     "intermediate_ssm_state_cache size: 2.25GB",
     {"mamba_cache_size": 22, "mamba_conv_gib": "0.06", "mamba_ssm_gib": "3.23"}),
    ("Capture target decode cuda graph end. bs=[1, 2, 4], elapsed=12.00 s, mem usage=0.92 GB, avail mem=10.10 GB.",
     {"cuda_graph_gib": "0.92", "graph_end_avail_gib": "10.10"}),
    ("DP attention is enabled. chunked prefill size is adjusted from 8192 to 2048.", {"chunked_prefill_size": 2048}),
]


@pytest.mark.parametrize(("line", "want"), FORMS, ids=[f"{i}-{line[:40]}" for i, (line, _) in enumerate(FORMS)])
def test_every_release_form(line, want):
    log = parse_text(line + "\n")
    got = {name: [str(v) if isinstance(v, Decimal) else v for v in log.values(name)] for name in want}
    assert got == {name: [value] for name, value in want.items()}
    assert not log.values("cut")


def test_a_sentence_naming_vllm_serve_names_no_model():
    line = ("(APIServer pid=17287) INFO 12-06 22:39:59 [factories.py:89] Scale-out endpoints are disabled. "
            "Restart vllm serve with --enable-scale-out to enable them.")  # vLLM 0.32.0 on CPU
    assert parse_text(line + "\n").values("model") == []
    assert parse_text("vllm serve ./models/llama --tp 2\n").values("model") == ["./models/llama"]


def test_engine_and_version_of_sglang_and_vllm_logs():
    assert parse_text("[2026-01-02 10:11:12 TP0] Load weight begin. avail mem=78.00 GB\n").engine == "sglang"
    assert parse_text("INFO 01-30 03:19:14 kv_cache_utils.py:395] # GPU blocks: 1381\n").engine == "vllm"
    both = parse_text("Available KV cache memory: 1.00 GiB\nGPU KV cache size: 100 tokens\n"
                      "KV Cache is allocated. #tokens: 5, K size: 1.00 GB, V size: 1.00 GB\n")
    assert both.engine == "vllm" and any("both vLLM and SGLang" in n for n in both.notes)


# --- not logs, and logs that are not what kvcalc reads ------------------------------------------------------


def test_a_readme_is_not_a_start_up_log(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# kvcalc\n\nEstimate the KV cache of a model.\n\n```\npip install kvcalc\n```\n\n"
                      "It knows the rules of vLLM and SGLang releases.\n")
    log = parse_log(readme)
    assert log.engine is None and log.facts == {} and log.lines_read == 9
    assert log.notes == ["no vLLM or SGLang start-up lines found"]


@pytest.mark.parametrize(("text", "engine"), [
    ("llama_model_loader: loaded meta data with 29 key-value pairs\nllama_kv_cache: size = 512.00 MiB\n", "llama.cpp"),
    ("2025-01-01T00:00:00.000Z  INFO text_generation_launcher: Args { model_id: \"x\" }\n", "TGI"),
    ("[TensorRT-LLM][INFO] Max KV cache pages per sequence: 64\n", "TensorRT-LLM"),
])
def test_another_engine_is_named(text, engine):
    log = parse_text(text)
    assert log.engine is None and any(engine in n for n in log.notes)


def test_binary_junk_is_refused(tmp_path):
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + bytes(range(256)) * 300)
    with pytest.raises(LogError, match="binary") as e:
        parse_log(junk)
    assert isinstance(e.value, KvcalcError) and "\n" not in str(e.value)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes((i * 131 + 7) % 128 + 128 for i in range(100_000)))  # no NUL, not UTF-8
    with pytest.raises(LogError, match="binary"):
        parse_log(noise)


def test_an_empty_file_reads_as_nothing(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    log = parse_log(empty)
    assert (log.engine, log.facts, log.lines_read, log.truncated, log.notes) == (None, {}, 0, False,
                                                                                  ["the log is empty"])


def test_a_truncated_log_reads_what_it_has():
    text = all_fixture_text("vllm-lmcache1739-qwen3-14b-tp1.log")
    end = text.index("42,656") + 3  # the download stopped inside "GPU KV cache size: 42,656 tokens"
    log = parse_text(text[:end])
    assert log.values("available_kv_gib") == [Decimal(re.search(r"memory: ([\d.]+) GiB", text).group(1))]
    assert log.values("kv_cache_tokens") == [] and log.values("cut") == ["kv_cache_tokens"]
    assert log.lines_read == 2 and not log.truncated


def test_missing_file_folder_device_and_fifo_are_refused(tmp_path):
    with pytest.raises(LogError, match="no such file"):
        parse_log(tmp_path / "nope.log")
    with pytest.raises(LogError, match="folder"):
        parse_log(tmp_path)
    if os.path.exists("/dev/null"):
        with pytest.raises(LogError, match="device"):
            parse_log("/dev/null")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.log"
        os.mkfifo(fifo)
        started = time.monotonic()
        with pytest.raises(LogError, match="named pipe"):
            parse_log(fifo)  # no writer: a blocking open would hang here
        assert time.monotonic() - started < 5


def test_standard_input_as_bytes_text_and_text_over_bytes():
    text = all_fixture_text("sglang-29575-maxtotal.log")
    want = figures(parse_text(text))
    assert figures(parse_log(io.StringIO(text))) == want
    assert figures(parse_log(io.TextIOWrapper(io.BytesIO(text.encode()), encoding="ascii"))) == want
    bad = parse_log(io.BytesIO(b"\xc3\x28\xfa not utf-8\n" + text.encode()))
    assert figures(bad) == [(n, v, line + 1, w) for n, v, line, w in want]


def test_gzip_and_utf16_logs(tmp_path):
    text = all_fixture_text("vllm-aiperf449-131k.log")
    want = figures(parse_text(text))
    gz = tmp_path / "vllm.log.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert figures(parse_log(gz)) == want
    utf16 = tmp_path / "vllm-powershell.log"
    utf16.write_bytes(text.replace("\n", "\r\n").encode("utf-16"))
    assert figures(parse_log(utf16)) == want


def test_to_dict_is_json_with_line_and_text():
    path = LOGS / "vllm-lmcache1739-qwen3-14b-tp1.log"
    lines = path.read_text().splitlines()
    out = json.loads(json.dumps(parse_log(path).to_dict()))
    fact = out["facts"]["available_kv_gib"][0]
    assert fact == {"value": 6.51, "printed": "6.51", "line": 1, "text": lines[0], "worker": "EngineCore_DP0"}
    assert out["facts"]["kv_cache_tokens"][0]["value"] == 42656
    assert out["engine"] == "vllm" and out["truncated"] is False and out["lines_read"] == 3


def test_a_long_line_keeps_an_excerpt_around_its_figure():
    line = "(APIServer pid=1) INFO non-default args: {" + ", ".join(f"'k{i}': {i}" for i in range(300)) \
        + ", 'max_model_len': 4096}"
    fact = parse_text(line + "\n").first("max_model_len")
    assert fact.value == 4096 and "'max_model_len': 4096" in fact.text and len(fact.text) < 400


# --- size: bounded time and memory ------------------------------------------------------------------------

MEASURE = """
import resource, sys, time
from kvcalc.logs import parse_log
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
log = parse_log(sys.argv[1])
took = time.monotonic() - started
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(log.lines_read, log.truncated, round(took, 2), grown, len(log.values("available_kv_gib")), "|".join(log.notes))
"""


def measure(path: Path) -> tuple[int, bool, float, int, int, str]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split(" ", 5)
    return int(out[0]), out[1] == "True", float(out[2]), int(out[3]), int(out[4]), out[5].strip()


def test_a_300_mb_log_stops_at_the_line_cap_in_bounded_time_and_memory(tmp_path):
    block = all_fixture_text("vllm-pr27521-openpangu-ultra-moe-tp8-ep.log") * 4000
    big = tmp_path / "big.log"
    with big.open("w") as f:
        while f.tell() < 310 * 1024**2:
            f.write(block)
    lines, truncated, took, grown_kib, kept, notes = measure(big)
    assert (lines, truncated) == (parse_mod.MAX_LINES, True)
    assert kept == parse_mod.MAX_FACTS_PER_NAME and "stopped reading after 200,000 lines" in notes
    assert took < 15 and grown_kib < 64 * 1024  # ru_maxrss is in KiB on Linux


def test_a_300_mb_log_of_over_long_lines_reads_in_bounded_memory(tmp_path):
    big = tmp_path / "long-lines.log"
    figure_line = b"(Worker_TP0 pid=1) INFO 01-01 00:00:00 [gpu_worker.py:1] Available KV cache memory: 1.25 GiB\n"
    with big.open("wb") as f:
        for _ in range(300):
            f.write(b"x" * (1024 * 1024 - 1) + b"\n")
        f.write(figure_line)
    lines, truncated, took, grown_kib, kept, notes = measure(big)
    assert (lines, truncated, kept) == (301, False, 1)
    assert "300 lines longer than 64 KiB" in notes
    assert took < 15 and grown_kib < 64 * 1024


def test_the_byte_cap_stops_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(parse_mod, "MAX_BYTES", 1000)
    text = all_fixture_text("vllm-pr27521-openpangu-ultra-moe-tp8-ep.log")  # 1,210 bytes
    log = parse_text(text)
    assert log.truncated and any("stopped reading after" in n for n in log.notes)
    assert log.lines_read == text[:1000].count("\n")


def test_a_figure_that_ends_a_line_cut_by_a_terminal_is_not_read():
    lines = all_fixture_text("vllm-pr12569-llama31-70b-w8a8-v1-early.log").splitlines()
    blocks = next(line for line in lines if "# GPU blocks:" in line)
    width = len(blocks) - 2  # "# GPU blocks: 1381" shows as "# GPU blocks: 13"
    assert sum(len(line) >= width for line in lines) >= 3  # every line is cut at that width
    log = parse_text("\n".join(line[:width] for line in lines) + "\n")
    assert log.values("num_gpu_blocks") == [] and "num_gpu_blocks" in log.values("cut")
    assert any("cut by a terminal" in note for note in log.notes)
    whole = parse_text("\n".join(lines) + "\n")  # uncut, the same figure ends its line and is read
    assert whole.values("num_gpu_blocks") == [int(blocks.rsplit(" ", 1)[1])]
