#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels that benchmarks/gpu_verify.sh installs on the GPU
# machine (no network there; its image has torch, pyyaml and pytest but no pydantic, and its
# typer/rich may be older than kvcalc's). They land in .whl/ (git-ignored): name it in the
# device run's `carry`. The GPU image's python is 3.12 on x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl typer==0.29.2 rich==15.0.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 typing-extensions==4.16.0 shellingham==1.5.4 annotated-doc==0.0.7 \
  markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
ls .whl
