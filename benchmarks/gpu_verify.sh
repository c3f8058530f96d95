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
# (./gpu_out when OUT is unset) as at most 6 files, under the device tool's 8-file limit:
# device.txt, runs.jsonl and runs_tp.jsonl (one verify --json object per line), errors.txt,
# verification_table.md and pytest_cuda.txt.
#
# Runs: llama-3-8b at all 32 layers and 8k context with each cache kind; deepseek-v3 latent
# and expanded; gemma-3-27b's first 6 layers (5 local, 1 global) past the 1024 window;
# mistral-7b-v0.1 past its 4096 window with each cache kind. Then tensor parallelism over NCCL
# (verify --tp, one GPU per rank): with several GPUs, llama-3-70b at TP 2 and at the largest
# power-of-two TP up to 8 (with TP x PP 2 where the GPUs allow), deepseek-v3 and mistral-7b-v0.1
# past its window; with one GPU, TP 1 through the same code path (launcher, NCCL group,
# all-reduce). These go to runs_tp.jsonl and a second table in verification_table.md (6 files).
set -uo pipefail
cd "$(dirname "$0")/.."

SCRIPT=gpu_verify
source benchmarks/gpu_setup.sh
: >"$OUT_DIR/runs.jsonl"
: >"$OUT_DIR/errors.txt"

failed=0
runs_file="$OUT_DIR/runs.jsonl"
run() {  # run NAME ARGS...: one verify on cuda, its JSON appended to $runs_file
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
      "$name" <<<"$json" >>"$runs_file"
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

# tensor parallelism over NCCL, one GPU per rank
runs_file="$OUT_DIR/runs_tp.jsonl"
: >"$runs_file"
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  tp=2
  while [ $((tp * 2)) -le "$gpus" ] && [ $((tp * 2)) -le 8 ]; do tp=$((tp * 2)); done
  run llama-3-70b-tp2        llama-3-70b --tp 2 --layers 4 --context 8k
  [ "$tp" -gt 2 ] && run "llama-3-70b-tp$tp" llama-3-70b --tp "$tp" --layers 4 --context 8k
  [ "$gpus" -ge 4 ] && run llama-3-70b-tp2-pp2 llama-3-70b --tp 2 --pp 2 --layers 4 --context 8k
  run "deepseek-v3-tp$tp"    deepseek-v3 --tp "$tp" --layers 2 --context 8k
  run mistral-7b-v0.1-tp2    mistral-7b-v0.1 --tp 2 --layers 4 --context 6000 --cache paged
else
  run llama-3-8b-tp1-nccl          llama-3-8b --tp 1 --layers 32 --context 8k
  run deepseek-v3-tp1-nccl         deepseek-v3 --tp 1 --layers 4 --context 8k
  run mistral-7b-v0.1-tp1-pp1-nccl mistral-7b-v0.1 --tp 1 --layers 4 --context 6000 --cache paged
fi

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

tp_runs = out / "runs_tp.jsonl"
if tp_runs.exists() and tp_runs.read_text().strip():
    print()
    print("| run | TP | PP | context | cache | per-rank fit B | per-rank measured B | across ranks B | "
          "replication fit / measured | allocator delta B (all ranks) | unexplained B | match | s |")
    print("|" + " --- |" * 13)
    for line in tp_runs.read_text().splitlines():
        r = json.loads(line)
        ranks = r["ranks"]
        fit = sorted({k["expected_bytes"] for k in ranks})
        got = sorted({k["measured_bytes"] for k in ranks})
        other = sum((k["allocator"] or {}).get("other", 0) for k in ranks)
        delta = r["allocator_bytes"]
        print(f"| {r['run']} | {r['tp']} | {r['pp']} | {r['context']:,} | {r['cache']} | "
              f"{', '.join(f'{v:,}' for v in fit)} | {', '.join(f'{v:,}' for v in got)} | {r['measured_bytes']:,} | "
              f"{r['replication']:g} / {r['measured_replication']:g} | {'-' if delta is None else f'{delta:,}'} | "
              f"{other:,} | {'yes' if r['match'] else 'NO'} | {r['seconds']} |")
EOF

if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_verify_cli.py tests/test_verify_tp.py -k cuda 2>&1 \
    | tail -5 \
    | tee "$OUT_DIR/pytest_cuda.txt"
fi
exit $failed
