"""What the caches really occupy: their storages, and on CUDA the allocator's own counters.

Measured bytes are read from the tensors the layers wrote into (each storage counted once),
never recomputed from the KV formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CUDA_BLOCK = 512  # the CUDA caching allocator rounds every block up to a multiple of this


def _storages(tensors) -> dict[tuple[str, int], int]:
    """Unique storages by device and address -> their size in bytes."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return seen


def storage_bytes(tensors) -> int:
    """Bytes of the storages behind ``tensors``; views of one storage count once."""
    return sum(_storages(tensors).values())


def storage_count(tensors) -> int:
    """How many distinct, non-empty storages are behind ``tensors``."""
    return sum(1 for n in _storages(tensors).values() if n)


def rounded_bytes(tensors) -> int:
    """The same storages with each rounded up to the CUDA allocator's 512-byte blocks."""
    return sum(-(-n // CUDA_BLOCK) * CUDA_BLOCK for n in _storages(tensors).values() if n)


def cuda_block_bytes(tensors, device: torch.device) -> int | None:
    """Sizes of the allocator blocks that hold ``tensors``, from its snapshot (None if unreadable).

    A block can be larger than its 512-rounded request: the allocator hands out a whole cached
    block when the remainder would be too small to split (1 MiB or less in the large pool).
    """
    wanted = {ptr for (_, ptr), n in _storages(tensors).items() if n}
    found: dict[int, int] = {}
    try:
        for segment in torch.cuda.memory_snapshot():
            if segment.get("device", device.index) != device.index:
                continue
            address = segment["address"]
            for block in segment["blocks"]:
                start = block.get("address", address)
                if start in wanted and block.get("state") == "active_allocated":
                    found[start] = block["size"]
                address = start + block["size"]
    except Exception:  # an allocator backend without snapshots (cudaMallocAsync), or a new format
        return None
    return sum(found.values()) if len(found) == len(wanted) else None


@dataclass
class CudaCounters:
    """memory_allocated() around cache creation and fill; max_memory_allocated() during it."""

    device: torch.device
    base: int = 0
    delta: int | None = None
    peak: int | None = None

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        self.base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> None:
        torch.cuda.synchronize(self.device)
        self.delta = torch.cuda.memory_allocated(self.device) - self.base
        self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
