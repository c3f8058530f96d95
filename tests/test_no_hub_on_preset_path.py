"""Preset names and file paths start as fast as before Hub ids existed: huggingface_hub
is imported only when an org/name is read from the Hub. Checked in a fresh interpreter,
because other tests in this process import it."""

import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "configs" / "llama-3-8b"


def test_presets_and_paths_leave_huggingface_hub_out():
    code = (
        "import sys\nfrom kvcalc.cli import app\n"
        f"for args in (['estimate', 'llama-3-8b', '-c', '8k', '--json'], ['estimate', {str(FIXTURE)!r}, '--json'],\n"
        f"             ['compare', 'gpt2', {str(FIXTURE / 'config.json')!r}],\n"
        "             ['fit', 'llama-3-70b', '--gpu', 'h100', '--gpus', '4'], ['presets', 'show', 'gpt2'],\n"
        "             ['estimate', 'no-such-model'], ['estimate', './no/such', '--revision', 'v1']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
        "print('HUB' if 'huggingface_hub' in sys.modules else 'CLEAN')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("CLEAN"), out.stdout[-500:]
