"""KV caches that attention layers write into and read back from.

A cache holds one or more *parts* per token: K and V for dense attention and expanded MLA,
the latent c_kv and the rope key for latent MLA. Each part is stored as (B, slots, *feat).

- ``StaticCache`` preallocates its slots. A full layer gets ``context`` slots; a sliding or
  chunked layer gets a rolling buffer of W (or C) slots, position i going to slot i mod W as
  in Mistral's rolling buffer.
- ``DynamicCache`` grows by concatenation, as a naive implementation does; while it grows the
  old and the new tensor coexist, and a shared ``PeakTracker`` records that transient.
- ``PagedCache`` keeps a pool of 16-token blocks and a block table per sequence, as vLLM does;
  a sequence holds whole blocks, so its bytes are rounded up to a multiple of 16 tokens.

Quantized KV: fp8 is stored as float8_e4m3fn (one byte, no scale); int8 keeps an fp32 scale
per row (one head's vector, or one latent part, per token) and int4 packs two values per byte
with the same scale. Scales are extra bytes, kept in separate tensors so they can be reported
apart from the cache data.
"""

from __future__ import annotations

import torch

from kvcalc.errors import KvcalcError
from kvcalc.verify.measure import storage_bytes
from kvcalc.verify.plan import PAGE_TOKENS

STORAGE_DTYPES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8": torch.float8_e4m3fn,
    "int8": torch.int8,
    "int4": torch.uint8,  # two 4-bit values per byte
}
_FP8_MAX = 448.0  # largest finite float8_e4m3fn


class Codec:
    """Turns compute-dtype values into what the cache stores, and back."""

    def __init__(self, kv_dtype: str, compute_dtype: torch.dtype):
        self.kv_dtype = kv_dtype
        self.storage = STORAGE_DTYPES[kv_dtype]
        self.compute = compute_dtype
        self.scaled = kv_dtype in ("int8", "int4")

    def scale_feat(self, feat: tuple[int, ...]) -> tuple[int, ...]:
        """The per-token shape of a part's scales: one per row."""
        return feat[:-1]

    def data_feat(self, feat: tuple[int, ...]) -> tuple[int, ...]:
        if self.kv_dtype != "int4":
            return feat
        if feat[-1] % 2:
            raise KvcalcError(f"int4 packs two values per byte: a row of {feat[-1]} elements is odd")
        return (*feat[:-1], feat[-1] // 2)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (..., d) -> stored data (..., d or d/2) and a per-row scale (...) or None."""
        if self.kv_dtype == "fp8":
            return x.clamp(-_FP8_MAX, _FP8_MAX).to(self.storage), None
        if not self.scaled:
            return x.to(self.storage), None
        top = 127 if self.kv_dtype == "int8" else 7
        amax = x.abs().amax(dim=-1).float()  # (...)
        scale = torch.where(amax > 0, amax / top, torch.ones_like(amax))
        q = torch.round(x.float() / scale.unsqueeze(-1)).clamp(-top, top)
        if self.kv_dtype == "int8":
            return q.to(torch.int8), scale
        nibbles = (q + 8).to(torch.uint8)  # 1..15
        return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4), scale

    def decode(self, data: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        if not self.scaled:
            return data.to(self.compute)
        if self.kv_dtype == "int4":
            low, high = data & 0x0F, data >> 4
            q = torch.stack((low, high), dim=-1).flatten(-2).float() - 8  # (..., d)
        else:
            q = data.float()
        return (q * scale.unsqueeze(-1)).to(self.compute)

    def roundtrip(self, x: torch.Tensor) -> torch.Tensor:
        """What reading x back from the cache gives: the current step attends to that."""
        return self.decode(*self.encode(x))


class BlockScaleCodec(Codec):
    """DeepSeek-V3.2's indexer keys as its inference code caches them: float8_e4m3fn values and
    one float32 scale per ``block`` elements (amax / 448), both part of the cache's bytes."""

    def __init__(self, compute_dtype: torch.dtype, block: int):
        super().__init__("fp8", compute_dtype)
        self.scaled, self.block = True, block

    def scale_feat(self, feat):
        return (*feat[:-1], feat[-1] // self.block)

    def encode(self, x):
        blocks = x.float().unflatten(-1, (-1, self.block))  # (..., d / block, block)
        amax = blocks.abs().amax(dim=-1)  # (..., d / block)
        scale = torch.where(amax > 0, amax / _FP8_MAX, torch.ones_like(amax))
        data = (blocks / scale.unsqueeze(-1)).clamp(-_FP8_MAX, _FP8_MAX).flatten(-2).to(self.storage)
        return data, scale

    def decode(self, data, scale):
        blocks = data.float().unflatten(-1, (-1, self.block)) * scale.unsqueeze(-1)
        return blocks.flatten(-2).to(self.compute)


def indexer_codec(indexer, kv_dtype: str, compute_dtype: torch.dtype) -> Codec:
    """How an indexer's keys are stored: fp8 with block scales (DeepSeek's, vLLM's, SGLang's
    convention), another dtype without scales, or the KV cache's own codec (key_dtype null)."""
    if indexer.key_dtype is None:
        return Codec(kv_dtype, compute_dtype)
    if indexer.scale_block is None:
        return Codec(indexer.key_dtype, compute_dtype)
    if indexer.key_dtype != "fp8" or indexer.scale_bytes != 4:
        raise KvcalcError(f"verify builds block-scaled indexer keys in fp8 with fp32 scales, not "
                          f"{indexer.key_dtype} with {indexer.scale_bytes}-byte scales")
    return BlockScaleCodec(compute_dtype, indexer.scale_block)


class _Store:
    """One part's data tensor and, when quantized, its scale tensor; indexed alike."""

    def __init__(self, codec: Codec, lead: tuple[int, ...], feat: tuple[int, ...], device):
        self.codec = codec
        # empty, not zeros: only written slots are ever read
        self.data = torch.empty((*lead, *codec.data_feat(feat)), dtype=codec.storage, device=device)
        self.scale = (
            torch.empty((*lead, *codec.scale_feat(feat)), dtype=torch.float32, device=device) if codec.scaled else None
        )

    def put(self, key, x: torch.Tensor) -> None:
        data, scale = self.codec.encode(x)
        as_bytes(self.data)[key] = as_bytes(data)
        if self.scale is not None:
            self.scale[key] = scale

    def take(self, key) -> torch.Tensor:
        data = as_bytes(self.data)[key].view(self.data.dtype)
        return self.codec.decode(data, None if self.scale is None else self.scale[key])


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """float8 tensors seen as uint8 (same storage): indexing and cat kernels are not built for
    float8 on every device, and moving bytes is all a cache write or read does."""
    return t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t


def cat_tokens(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """old (B, S, ...) and new (B, T, ...) -> a new (B, S+T, ...) tensor, dtype kept."""
    return torch.cat((as_bytes(old), as_bytes(new)), dim=1).view(old.dtype)


class LayerCache:
    """One layer's cache: ``update`` writes a step's parts and returns what to attend over."""

    capacity: int  # slots per sequence

    def __init__(self, codec: Codec, batch: int, feats: list[tuple[int, ...]], device):
        self.codec, self.batch, self.feats, self.device = codec, batch, feats, device
        self.length = 0  # tokens written so far, per sequence: checked against the plan

    def update(self, parts: list[torch.Tensor], pos: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """parts: each (B, T, *feat); pos (T,). Returns parts (B, S, *feat) and their positions (S,)."""
        steps = pos.numel()
        end = self.length + steps
        if steps == 1 or end <= self.capacity:
            # nothing this step needs is overwritten: write, then read back from the cache
            self._write(parts, pos)
            self.length = end
            return self._read(), self.positions()
        # a multi-token step that wraps the ring: its early queries still need tokens the write
        # would overwrite, so attend over what was held plus the step, then write the step's tail.
        # The keys are built (torch.cat copies) before the write: what _read and positions
        # return can be views of the ring (always for positions, and for the data when the
        # storage dtype is the compute dtype), and the write overwrites those slots.
        keys = [torch.cat((h, self.codec.roundtrip(p)), dim=1) for h, p in zip(self._read(), parts)]
        positions = torch.cat((self.positions(), pos))
        keep = min(steps, self.capacity)
        self._write([p[:, -keep:] for p in parts], pos[-keep:])
        self.length = end
        return keys, positions

    def _held(self) -> int:
        return min(self.length, self.capacity)

    def positions(self) -> torch.Tensor:
        """The positions of the tokens the cache holds now (S,), in slot order."""
        raise NotImplementedError

    def data_tensors(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def scale_tensors(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def index_tensors(self) -> list[torch.Tensor]:
        """Bookkeeping that is not KV data: slot positions, block tables."""
        raise NotImplementedError


class StaticCache(LayerCache):
    """Preallocated slots; a ring of ``capacity`` slots when the layer has a window or chunk."""

    def __init__(self, codec, batch, feats, device, capacity: int):
        super().__init__(codec, batch, feats, device)
        self.capacity = capacity
        self.stores = [_Store(codec, (batch, capacity), f, device) for f in feats]  # (B, cap, *feat)
        self.slot_pos = torch.empty(capacity, dtype=torch.int64, device=device)  # position in each slot

    def _write(self, parts, pos):
        slots = pos % self.capacity  # position i goes to slot i mod capacity
        for store, part in zip(self.stores, parts):
            store.put((slice(None), slots), part)
        self.slot_pos[slots] = pos

    def _read(self):
        # slots fill in order from 0, so the written ones are always a prefix
        held = slice(0, self._held())
        return [store.take((slice(None), held)) for store in self.stores]

    def positions(self):
        return self.slot_pos[: self._held()]

    def data_tensors(self):
        return [s.data for s in self.stores]

    def scale_tensors(self):
        return [s.scale for s in self.stores if s.scale is not None]

    def index_tensors(self):
        return [self.slot_pos]


class PagedCache(StaticCache):
    """A pool of 16-token blocks per layer and a block table per sequence (vLLM's layout).

    Each sequence owns ceil(tokens/16) blocks, used as a ring when the layer has a window.
    The table is shuffled so a sequence's blocks are scattered through the pool, as they are
    after an engine has served other requests: every read and write goes through the table.
    """

    def __init__(self, codec, batch, feats, device, tokens: int, generator: torch.Generator):
        LayerCache.__init__(self, codec, batch, feats, device)
        self.blocks_per_seq = -(-tokens // PAGE_TOKENS)
        self.capacity = self.blocks_per_seq * PAGE_TOKENS
        blocks = batch * self.blocks_per_seq
        order = torch.randperm(blocks, generator=generator).to(device=device, dtype=torch.int32)
        self.block_table = order.view(batch, self.blocks_per_seq)  # (B, blocks_per_seq)
        # the pool is flat over (block, offset) so a (B, T) table lookup indexes it directly
        self.stores = [_Store(codec, (blocks * PAGE_TOKENS,), f, device) for f in feats]
        self.slot_pos = torch.empty(self.capacity, dtype=torch.int64, device=device)

    def _rows(self, slots: torch.Tensor) -> torch.Tensor:
        """Pool rows of ``slots`` (T,) for every sequence: (B, T)."""
        block = self.block_table[:, slots // PAGE_TOKENS].long()  # (B, T)
        return block * PAGE_TOKENS + slots % PAGE_TOKENS

    def _write(self, parts, pos):
        slots = pos % self.capacity
        rows = self._rows(slots)
        for store, part in zip(self.stores, parts):
            store.put(rows, part)  # part (B, T, *feat) into pool rows (B, T)
        self.slot_pos[slots] = pos

    def _read(self):
        rows = self._rows(torch.arange(self._held(), device=self.device))
        return [store.take(rows) for store in self.stores]  # each (B, S, *feat)

    def index_tensors(self):
        return [self.slot_pos, self.block_table]


class PeakTracker:
    """The largest sum of live cache storages seen while dynamic caches grow.

    Sampled at each concatenation and trim, when the old tensor and the new one are both
    alive: measured from the tensors' storages, never computed from a formula.
    """

    def __init__(self):
        self.caches: list[DynamicCache] = []
        self.peak = 0

    def observe(self, transient: list[torch.Tensor]) -> None:
        held = storage_bytes([t for c in self.caches for t in c.data_tensors() + c.scale_tensors()])
        self.peak = max(self.peak, held + storage_bytes(transient))


class DynamicCache(LayerCache):
    """Grows by torch.cat each step. A windowed layer keeps only its last ``keep`` tokens."""

    def __init__(self, codec, batch, feats, device, keep: int | None, tracker: PeakTracker):
        super().__init__(codec, batch, feats, device)
        self.keep = keep
        self.tracker = tracker
        tracker.caches.append(self)
        self.data = [
            torch.empty((batch, 0, *codec.data_feat(f)), dtype=codec.storage, device=device) for f in feats
        ]
        self.scale = [
            torch.empty((batch, 0, *codec.scale_feat(f)), dtype=torch.float32, device=device) for f in feats
        ] if codec.scaled else []
        self.pos = torch.empty(0, dtype=torch.int64, device=device)

    def update(self, parts, pos):
        encoded = [self.codec.encode(p) for p in parts]
        data = [cat_tokens(old, d) for old, (d, _) in zip(self.data, encoded)]  # (B, S+T, ...)
        scale = [cat_tokens(old, s) for old, (_, s) in zip(self.scale, encoded)]
        self.tracker.observe(data + scale)  # the old tensors (held) and the grown ones both alive
        positions = torch.cat((self.pos, pos))
        # this step attends over everything held so far, before a window trims it
        keys = [self.codec.decode(d, scale[i] if scale else None) for i, d in enumerate(data)]
        if self.keep is not None and positions.numel() > self.keep:
            # clone: a slice would keep the whole grown storage alive
            kept = [d[:, -self.keep:].clone() for d in data]
            kept_scale = [s[:, -self.keep:].clone() for s in scale]
            self.tracker.observe(data + scale + kept + kept_scale)
            data, scale, positions_kept = kept, kept_scale, positions[-self.keep:].clone()
        else:
            positions_kept = positions
        self.data, self.scale, self.pos = data, scale, positions_kept
        self.length += pos.numel()
        return keys, positions

    def positions(self):
        return self.pos

    def data_tensors(self):
        return list(self.data)

    def scale_tensors(self):
        return list(self.scale)

    def index_tensors(self):
        return [self.pos]
