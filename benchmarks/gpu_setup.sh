# Sourced by gpu_verify.sh and gpu_bench.sh (after `cd` to the checkout, with SCRIPT set to
# the caller's name): the Python to use, the output folder, kvcalc's dependencies from the
# carried .whl/ (the GPU image has no pydantic), and a refusal when there is no CUDA.
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-./gpu_out}
mkdir -p "$OUT_DIR"
export COLUMNS=160
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/kvcalc-site .whl/*.whl || { echo "$SCRIPT: installing .whl/ failed" >&2; exit 2; }
  export PYTHONPATH="/tmp/kvcalc-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"; then
  echo "$SCRIPT: $PY has no torch with CUDA here; nothing was run" >&2
  exit 2
fi
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('typer', 'rich', 'pydantic', 'yaml') if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "$SCRIPT: $PY lacks $missing (kvcalc's runtime dependencies); run benchmarks/gpu_wheels.sh and carry .whl" >&2
  exit 2
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" \
  | tee "$OUT_DIR/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT_DIR/device.txt" 2>/dev/null
