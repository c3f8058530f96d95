"""Cold-start time of kvcalc commands as a ratio to the floor program (floor_app.py).

Each run is a fresh interpreter, so import costs count as a user feels them. Runs are
interleaved (floor, kvcalc, floor, kvcalc, ...) so machine noise hits both alike.
Prints the median of each and the ratio of medians; the target for every command that needs no
torch is 1.0 (issue 23): no slower than the floor, with 72 presets or 200 (a temporary folder
of 128 renamed copies beside the bundled ones). Validated presets are cached between runs
(kvcalc/validated_cache.py), so the warm-up run fills the cache, as a user's first run does.

    python benchmarks/startup.py [--runs 21]
    python benchmarks/startup.py --instructions   # needs valgrind

Wall time on a shared machine drifts (the floor's median moved from 196 to 442 ms between runs
on the 2-core development machine), so ``--instructions`` counts the instructions each command
executes instead, once, under valgrind's cachegrind: the same count on every run to within 0.1%,
a ratio that does not drift with the machine. It does not count time in the kernel (reading
files, mapping memory), which the wall-time ratio includes; report both.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOOR = [sys.executable, str(HERE / "floor_app.py"), "estimate", "--context", "8192"]
EXTRA = Path(tempfile.mkdtemp(prefix="kvcalc-200-presets-"))  # 128 more: 200 with the bundled 72
CASES = {
    "estimate llama-3-70b --context 8k": (["estimate", "llama-3-70b", "--context", "8k"], 1.0),
    "compare --all --context 4k,32k,128k,1M": (["compare", "--all", "--context", "4k,32k,128k,1M"], 1.0),
    "compare --all (200 presets) -c 8k": (["compare", "--all", "--preset-dir", str(EXTRA), "-c", "8k"], 1.0),
    "fit llama-3-70b --gpu h100 --gpus 4 -c 8k": (["fit", "llama-3-70b", "--gpu", "h100", "--gpus", "4", "-c", "8k"],
                                                  1.0),
    "gpus": (["gpus"], 1.0),
    "presets": (["presets"], 1.0),
}


def make_extra_presets(count: int = 128) -> None:
    bundled = sorted((HERE.parent / "model_presets").glob("*.yaml"))
    for i in range(count):
        source = bundled[i % len(bundled)]
        name = f"copy{i}-{source.stem}"
        text = source.read_text().replace(f"name: {source.stem}\n", f"name: {name}\n", 1)
        (EXTRA / f"{name}.yaml").write_text(text)


def kvcalc_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "kvcalc", *args]


# a bare environment, so no setting of the caller's changes the runs; PYTHONPATH passes through, so a
# checkout beside the installed one can be timed (PYTHONPATH=/path/to/checkout python benchmarks/startup.py)
ENV = {"COLUMNS": "120", "PATH": "/usr/bin:/bin"} | (
    {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})


def time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=ENV)
    return time.perf_counter() - start


def instructions(cmd: list[str]) -> int:
    """Instructions one run executes in user space (valgrind --tool=cachegrind, no cache model)."""
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if match is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def count_instructions(cases: dict) -> int:
    print(f"python {sys.version.split()[0]}, instructions (valgrind cachegrind), one run each after a warm-up")
    for cmd in [FLOOR, *(kvcalc_cmd(a) for a, _ in cases.values())]:
        time_once(cmd)  # fill kvcalc's cache of validated files, as a user's first run does
    floor = instructions(FLOOR)
    print(f"{'floor (typer+rich+pydantic+yaml, one row)':45s} {floor / 1e6:8.1f} M")
    failed = False
    for name, (args, target) in cases.items():
        count = instructions(kvcalc_cmd(args))
        ratio = count / floor
        failed |= ratio > target
        print(f"kvcalc {name:38s} {count / 1e6:8.1f} M  ratio {ratio:.3f} (target <= {target}) "
              f"{'ok' if ratio <= target else 'OVER TARGET'}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--only", help="run only the case whose name starts with this")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind (deterministic) instead of timing")
    opts = parser.parse_args()

    cases = {k: v for k, v in CASES.items() if not opts.only or k.startswith(opts.only)}
    make_extra_presets()
    time.sleep(6)  # kvcalc trusts a file's status once the file is 5 s old (validated_cache.RACY_SECONDS)
    if opts.instructions:
        try:
            return count_instructions(cases)
        finally:
            shutil.rmtree(EXTRA, ignore_errors=True)
    floor: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in cases}
    for cmd in [FLOOR, *(kvcalc_cmd(a) for a, _ in cases.values())]:
        time_once(cmd)  # warm the file cache once; cold start means a fresh interpreter
    for _ in range(opts.runs):
        for name, (args, _) in cases.items():
            floor.append(time_once(FLOOR))
            times[name].append(time_once(kvcalc_cmd(args)))

    floor_median = statistics.median(floor)
    print(f"python {sys.version.split()[0]}, {opts.runs} runs each, interleaved")
    print(f"{'floor (typer+rich+pydantic+yaml, one row)':45s} median {floor_median * 1000:7.1f} ms")
    failed = False
    for name, (_, target) in cases.items():
        median = statistics.median(times[name])
        ratio = median / floor_median
        verdict = "ok" if ratio <= target else "OVER TARGET"
        failed |= ratio > target
        print(f"kvcalc {name:38s} median {median * 1000:7.1f} ms  ratio {ratio:.2f} "
              f"(target <= {target}) {verdict}")
    shutil.rmtree(EXTRA, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
