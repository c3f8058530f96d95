#!/usr/bin/env bash
# The GPU figures of issue #4 in one prepared run (about 2-3 minutes on one H200; every run
# is capped so the whole script ends inside the device tool's 10-minute command limit).
#
#   bash benchmarks/gpu_wheels.sh            # here, once: kvcalc's dependencies into .whl/
#   then, with the device tool:  run(command="bash benchmarks/gpu_verify.sh", carry=[".whl"],
#                                    timeout_s=600)
#
# kvcalc runs from this checkout via PYTHONPATH. When .whl/ is present its wheels are
# installed into /tmp/kvcalc-site first (the GPU image has no pydantic). Results go to $OUT
# (./gpu_out when OUT is unset) as at most 5 files, under the device tool's 8-file limit:
# device.txt, runs.jsonl (one verify --json object per line), errors.txt,
# verification_table.md and pytest_cuda.txt.
#
# Runs: llama-3-8b at all 32 layers and 8k context with each cache kind; deepseek-v3 latent
# and expanded; gemma-3-27b's first 6 layers (5 local, 1 global) past the 1024 window;
# mistral-7b-v0.1 past its 4096 window with each cache kind.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT_DIR=${OUT:-./gpu_out}
mkdir -p "$OUT_DIR"
export COLUMNS=160
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/kvcalc-site .whl/*.whl || { echo "gpu_verify: installing .whl/ failed" >&2; exit 2; }
  export PYTHONPATH="/tmp/kvcalc-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
: >"$OUT_DIR/runs.jsonl"
: >"$OUT_DIR/errors.txt"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"; then
  echo "gpu_verify: $PY has no torch with CUDA here; nothing was run" >&2
  exit 2
fi
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('typer', 'rich', 'pydantic', 'yaml') if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "gpu_verify: $PY lacks $missing (kvcalc's runtime dependencies); run benchmarks/gpu_wheels.sh and carry .whl" >&2
  exit 2
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" \
  | tee "$OUT_DIR/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT_DIR/device.txt" 2>/dev/null

failed=0
run() {  # run NAME ARGS...: one verify on cuda, its JSON appended to runs.jsonl
  local name=$1
  shift
  if [ "$SECONDS" -gt 420 ]; then  # leave time for the table and the CUDA tests
    echo "$name: skipped, the time budget is spent ($*)" | tee -a "$OUT_DIR/errors.txt"
    failed=1
    return
  fi
  local started=$SECONDS json
  json=$(timeout 60 "$PY" -m kvcalc verify "$@" --device cuda --json 2>>"$OUT_DIR/errors.txt")
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - started)) s ($*)"
  if [ -n "$json" ]; then
    "$PY" -c "import json, sys; d = json.loads(sys.stdin.read()); d['run'] = sys.argv[1]; print(json.dumps(d))" \
      "$name" <<<"$json" >>"$OUT_DIR/runs.jsonl"
  else
    echo "$name: exit $rc, no JSON" >>"$OUT_DIR/errors.txt"
  fi
  [ "$rc" -eq 0 ] || failed=1
}

run llama-3-8b-static   llama-3-8b --layers 32 --context 8k --cache static
run llama-3-8b-dynamic  llama-3-8b --layers 32 --context 8k --cache dynamic
run llama-3-8b-paged    llama-3-8b --layers 32 --context 8k --cache paged
run deepseek-v3-latent    deepseek-v3 --layers 4 --context 8k --mla-layout latent
run deepseek-v3-expanded  deepseek-v3 --layers 4 --context 8k --mla-layout expanded
run deepseek-v3-latent-paged  deepseek-v3 --layers 4 --context 8k --mla-layout latent --cache paged
run gemma-3-27b-static  gemma-3-27b --layers 6 --context 8k --cache static
run gemma-3-27b-paged   gemma-3-27b --layers 6 --context 8k --cache paged
run mistral-7b-v0.1-static   mistral-7b-v0.1 --layers 4 --context 6000 --cache static
run mistral-7b-v0.1-dynamic  mistral-7b-v0.1 --layers 4 --context 6000 --cache dynamic
run mistral-7b-v0.1-paged    mistral-7b-v0.1 --layers 4 --context 6000 --cache paged

"$PY" - "$OUT_DIR" <<'EOF' | tee "$OUT_DIR/verification_table.md"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("| run | layers | context | cache | analytic B | measured B | allocator delta B | "
      "512-B rounding + bookkeeping B | whole blocks B | unexplained B | peak B | match | s |")
print("|" + " --- |" * 13)
for line in (out / "runs.jsonl").read_text().splitlines():
    r = json.loads(line)
    a = r["allocator"] or {}

    def n(value):
        return "-" if value is None else f"{value:,}"

    extra = a.get("rounding", 0) + r["scale_bytes"] + r["index_bytes"]
    expected = r["block_rounded_bytes"] or r["analytic_bytes"]
    analytic = n(r["analytic_bytes"]) + (f" ({expected:,} in blocks)" if r["block_rounded_bytes"] else "")
    print(f"| {r['run']} | {r['layers']} | {r['context']:,} | {r['cache']} | {analytic} | "
          f"{n(r['measured_bytes'])} | {n(r['allocator_bytes'])} | {extra:,} | {n(a.get('whole_blocks'))} | "
          f"{n(a.get('other'))} | {n(r['peak_bytes'])} | {'yes' if r['match'] else 'NO'} | {r['seconds']} |")
EOF

if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_verify_cli.py -k cuda 2>&1 | tail -5 \
    | tee "$OUT_DIR/pytest_cuda.txt"
fi
exit $failed
