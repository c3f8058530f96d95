"""The user-facing errors: each prints as one line on stderr and exits 1."""


class KvcalcError(Exception):
    """A problem the user can fix: bad preset, unknown model, missing extra."""


class UnknownModelError(KvcalcError):
    pass


class PresetError(KvcalcError):
    """A preset or config file that cannot be read or is invalid; names the file and field."""


def torch_hint(command: str) -> str:
    """How to get PyTorch for a command that needs it; a bare `pip install torch` may pull a
    multi-gigabyte CUDA build, so the CPU-only way is said too."""
    return (f"kvcalc {command} needs PyTorch: pip install 'kvcalc[torch]' (on a CPU-only machine, pick the "
            "CPU build first: pip install torch --index-url https://download.pytorch.org/whl/cpu)")
