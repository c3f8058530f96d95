#!/usr/bin/env bash
# Decode-speed figures of issue #12 on a GPU in one prepared run (under 10 minutes; every run
# is capped). Same set-up as gpu_verify.sh: `bash benchmarks/gpu_wheels.sh` here once, then
#   run(command="bash benchmarks/gpu_bench.sh", carry=[".whl"], timeout_s=600)
# Results in $OUT (./gpu_out when unset): device.txt, bench.jsonl (one `kvcalc bench --json`
# object per line), errors.txt and speed_table.md (paste it into docs/speed.md).
#
# Runs, bf16, fused SDPA (enable_gqa) and MLA absorbed: llama-3-70b as mha, gqa-8, mqa and
# mla-latent, and deepseek-v3 as its own latent, mla-expanded and mha, each at 32K and 128K
# context with batch 1 and 16. Goals: the largest variant reaches 70% of the copy bandwidth;
# measured speed-ups track the predicted ones within 20%. Record what it measures either way.
set -uo pipefail
cd "$(dirname "$0")/.."

SCRIPT=gpu_bench
source benchmarks/gpu_setup.sh
: >"$OUT_DIR/bench.jsonl"
: >"$OUT_DIR/errors.txt"

failed=0
run() {  # run NAME ARGS...: one bench on cuda, its JSON appended to bench.jsonl
  local name=$1
  shift
  if [ "$SECONDS" -gt 500 ]; then
    echo "$name: skipped, the time budget is spent ($*)" | tee -a "$OUT_DIR/errors.txt"
    failed=1
    return
  fi
  local started=$SECONDS json
  json=$(timeout 90 "$PY" -m kvcalc bench "$@" --device cuda --dtype bf16 --steps 20 --warmup 5 --json \
    2>>"$OUT_DIR/errors.txt")
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - started)) s ($*)"
  if [ -n "$json" ]; then
    "$PY" -c "import json, sys; d = json.loads(sys.stdin.read()); d['run'] = sys.argv[1]; print(json.dumps(d))" \
      "$name" <<<"$json" >>"$OUT_DIR/bench.jsonl"
  else
    echo "$name: exit $rc, no JSON" >>"$OUT_DIR/errors.txt"
  fi
  [ "$rc" -eq 0 ] || failed=1
}

for ctx in 32k 128k; do
  for b in 1 16; do
    run "llama-3-70b-$ctx-b$b" llama-3-70b --variants mha,gqa-8,mqa,mla-latent -c "$ctx" -b "$b"
    run "deepseek-v3-$ctx-b$b" deepseek-v3 --variants mha,mla-latent,mla-expanded -c "$ctx" -b "$b"
  done
done

"$PY" - "$OUT_DIR" <<'PYEOF' | tee "$OUT_DIR/speed_table.md"
import json, sys
from pathlib import Path

print("| run | variant | per layer ms | achieved GB/s | of peak | speed-up vs MHA measured | predicted (layers) | "
      "predicted (whole model) |")
print("|" + " --- |" * 8)
for line in (Path(sys.argv[1]) / "bench.jsonl").read_text().splitlines():
    r = json.loads(line)
    for v in r["variants"]:
        def x(value):
            return "-" if value is None else f"{value:.2f}x"
        print(f"| {r['run']} | {v['variant']} | {v['layer_s'] * 1e3:.3f} | {v['bandwidth'] / 1e9:,.0f} | "
              f"{v['peak_fraction']:.0%} | {x(v['measured_speedup'])} | {x(v['predicted_speedup'])} | "
              f"{x(v['model_predicted_speedup'])} |")
    print(f"| {r['run']} | peak {r['peak_bytes_per_s'] / 1e9:,.0f} GB/s ({r['peak_source']}); {'; '.join(r['notes'])} "
          "| | | | | | |")
PYEOF
exit $failed
