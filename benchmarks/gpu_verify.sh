#!/usr/bin/env bash
# The GPU figures of issue #4 in one prepared run (about 2-3 minutes on one H200).
#
#   benchmarks/gpu_verify.sh            # JSON per run into $OUT, or ./gpu_out when OUT is unset
#   PYTHON=/path/to/python benchmarks/gpu_verify.sh
#
# It installs nothing. It needs a Python with torch (CUDA build) and kvcalc's four runtime
# dependencies (typer, rich, pydantic, pyyaml); kvcalc itself runs from this checkout via
# PYTHONPATH. A GPU machine without network but without those four can be given a wheelhouse
# made beforehand for its Python (pip download --only-binary=:all: --python-version X.Y
# typer rich pydantic pyyaml -d gpu_wheels) and install it with
# pip install --no-index --find-links gpu_wheels typer rich pydantic pyyaml.
#
# Runs: llama-3-8b at all 32 layers and 8k context with each cache kind; deepseek-v3 latent
# and expanded; gemma-3-27b's first 6 layers (5 local, 1 global) past the 1024 window;
# mistral-7b-v0.1 past its 4096 window with each cache kind. Each writes one JSON object;
# the table at the end (also $OUT/verification_table.md) is drawn from those files.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT_DIR=${OUT:-./gpu_out}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export COLUMNS=160

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"; then
  echo "gpu_verify: $PY has no torch with CUDA here; nothing was run" >&2
  exit 2
fi
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('typer', 'rich', 'pydantic', 'yaml') if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "gpu_verify: $PY lacks $missing (kvcalc's runtime dependencies); see the header for a wheelhouse" >&2
  exit 2
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" \
  | tee "$OUT_DIR/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT_DIR/device.txt" 2>/dev/null

failed=0
run() {  # run NAME ARGS...: one verify on cuda, its JSON in $OUT_DIR/NAME.json
  local name=$1
  shift
  local started=$SECONDS
  timeout 240 "$PY" -m kvcalc verify "$@" --device cuda --json >"$OUT_DIR/$name.json" 2>"$OUT_DIR/$name.err"
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - started)) s ($*)"
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
for path in sorted(out.glob("*.json")):
    try:
        r = json.loads(path.read_text())
    except ValueError:
        err = (out / f"{path.stem}.err").read_text().strip().splitlines()
        print(f"| {path.stem} | | | | | | | | | | | {err[-1] if err else 'no output'} | |")
        continue
    a = r["allocator"] or {}

    def n(value):
        return "-" if value is None else f"{value:,}"

    extra = a.get("rounding", 0) + r["scale_bytes"] + r["index_bytes"]
    expected = r["block_rounded_bytes"] or r["analytic_bytes"]
    analytic = n(r["analytic_bytes"]) + (f" ({expected:,} in blocks)" if r["block_rounded_bytes"] else "")
    print(f"| {path.stem} | {r['layers']} | {r['context']:,} | {r['cache']} | {analytic} | "
          f"{n(r['measured_bytes'])} | {n(r['allocator_bytes'])} | {extra:,} | {n(a.get('whole_blocks'))} | "
          f"{n(a.get('other'))} | {n(r['peak_bytes'])} | {'yes' if r['match'] else 'NO'} | {r['seconds']} |")
EOF

if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_verify_cli.py -k cuda 2>&1 | tail -5 \
    | tee "$OUT_DIR/pytest_cuda.txt"
fi
exit $failed
