"""Which device to run on, how much memory it has free, and turning out-of-memory into a message."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from kvcalc.errors import KvcalcError
from kvcalc.units import format_bytes
from kvcalc.verify.plan import Needs


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'mps', checked against what this machine has."""
    available = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise KvcalcError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps (available: {available})") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise KvcalcError(f"device {name!r} is not available: no CUDA GPU found (available: {available})")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise KvcalcError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) "
                f"(available: {available})"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise KvcalcError(f"device {name!r} is not available: no Apple MPS here (available: {available})")
        return device
    raise KvcalcError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or mps (available: {available})")


def _available_ram() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB meaning KiB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_memory(device: torch.device) -> int:
    """Bytes a run may allocate: free GPU memory on CUDA, available RAM otherwise (MPS shares it)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return _available_ram()


def _too_big(needs: Needs, device: torch.device, free: int | None) -> str:
    free_text = f"{format_bytes(free)} is free" if free is not None else "it ran out of memory"
    return (
        f"verify needs about {format_bytes(needs.total)} on {device} (cache {format_bytes(needs.cache)}, "
        f"weights {format_bytes(needs.weights)}, activations {format_bytes(needs.activations)}, "
        f"scales and tables {format_bytes(needs.scales)}) but {free_text}; "
        "try fewer layers (--layers 1) or a shorter --context"
    )


def check_fits(needs: Needs, device: torch.device) -> None:
    """Refuse before allocating anything when the run's upper bound exceeds free memory."""
    free = free_memory(device)
    if needs.total > free:
        raise KvcalcError(_too_big(needs, device, free))


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextmanager
def out_of_memory_as_error(needs: Needs, device: torch.device):
    """A device OOM during the run becomes the same one-line message as the guard's."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not (_is_oom(exc) or isinstance(exc, MemoryError)):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise KvcalcError(_too_big(needs, device, None)) from None
