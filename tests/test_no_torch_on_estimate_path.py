"""estimate, compare and fit must start without torch: checked in a fresh interpreter,
because other tests in this process import torch."""

import subprocess
import sys

CHECK = (
    "import sys, kvcalc.cli, kvcalc.estimate, kvcalc.sources.presets, kvcalc.render\n"
    "heavy = sorted(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules)\n"
    "print(','.join(heavy))\n"
)


def test_import_cli_leaves_torch_out():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_running_estimate_leaves_torch_out():
    code = (
        "import sys\nfrom kvcalc.cli import app\n"
        "try:\n    app(['estimate', 'deepseek-v3', '-c', '8k', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'CLEAN')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("CLEAN")


def test_running_fit_leaves_torch_out():
    code = (
        "import sys\nfrom kvcalc.cli import app\n"
        "for args in (['fit', 'llama-3-70b', '--gpu', 'h100', '--gpus', '4', '--json'], ['gpus'],\n"
        "             ['compare', 'gpt2', '--gpu', 'l4']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules)\n"
        "print('HEAVY ' + ','.join(heavy) if heavy else 'CLEAN')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("CLEAN")
