"""Layer kinds as an engine sees them: what one layer of a kind holds on one GPU.

``LayerType`` is one kind's layers on a GPU with its charge rule (full, sliding, chunked, or a
constant state), its bytes per token and its state bytes, as the engine stores them (the
engine decides KV heads per GPU, scale bytes and how many conv columns a state keeps). It
owns what it holds: ``held(length)`` tokens of a request of ``length``. Engines turn that
into pages by their own rules (``engines/``).
"""

from typing import NamedTuple

from kvcalc.dtypes import DTYPE_BITS, serving_dtype, state_dtype
from kvcalc.errors import KvcalcError
from kvcalc.spec import ModelSpec, NoKVLayer


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class LayerType(NamedTuple):
    """The layers on one GPU that share a charge rule: a kind name with its span and widths."""

    name: str
    kind: str  # full | sliding | chunked | none
    span: int | None
    layers: int
    token_bits: int  # one token in one layer on one GPU, scales included (0 for no-KV layers)
    state_bytes: int  # one request's constant state in one no-KV layer on one GPU
    mixer: str | None = None  # for a state: mamba, mamba2, gated_deltanet, short_conv, linear

    @property
    def attends(self) -> bool:
        return self.kind != "none"

    def held(self, length: int, extra: int = 0) -> int:
        """Tokens one request of ``length`` keeps in one layer; ``extra`` tokens still in flight
        beyond a window or chunk (an engine that frees old pages only after the step)."""
        if self.kind == "sliding":
            return min(self.span - 1 + extra, length)
        if self.kind == "chunked":
            return min(self.span + extra, length)
        if self.kind == "none":
            return 0
        return length


def state_bits(kind: NoKVLayer, model_dtype: str, conv_columns_kept: int = 0) -> int:
    """Bits of one request's state in one layer: the conv part (``conv_channels`` x kept columns,
    in ``conv_dtype`` or the model's serving dtype) plus the rest in ``state_dtype`` (or the model's).
    ``conv_columns_kept`` 0 keeps the kernel's full width, as transformers does; engines keep
    ``kernel - 1`` columns (pass -1)."""
    conv_total = kind.conv_channels * kind.conv_kernel
    rest = kind.state_elements - conv_total
    model = serving_dtype(model_dtype)
    columns = kind.conv_kernel + conv_columns_kept if kind.conv_kernel else 0
    conv_bits = kind.conv_channels * columns * DTYPE_BITS[kind.conv_dtype or model]
    return rest * DTYPE_BITS[kind.state_dtype or model] + conv_bits


def kind_counts(spec: ModelSpec, layers: range) -> dict[str, int]:
    """Kind name -> how many of ``layers`` (model order) are of it."""
    order = spec.layers.order()
    counts: dict[str, int] = {}
    for index in layers:
        counts[order[index]] = counts.get(order[index], 0) + 1
    return counts


def layer_types(spec: ModelSpec, layers: range, tp: int, engine, kv_dtype: str,
                mla_layout: str = "latent", platform: str = "cuda") -> list[LayerType]:
    """Each kind's layers among ``layers``, as ``engine`` stores one token (or one state) on a GPU."""
    types = []
    for name, n in kind_counts(spec, layers).items():
        kind = spec.layers.kinds[name]
        if isinstance(kind, NoKVLayer):
            # the model dtype engines serve in (a float32 checkpoint in bf16): a state without its own dtype keeps it
            state = engine.state_bytes(kind, state_dtype(spec.dtype, kv_dtype), tp, platform)
            types.append(LayerType(name, "none", None, n, 0, state, kind.mixer))
        elif getattr(kind, "state", None) is not None:
            raise KvcalcError(
                f"{spec.name}: layer kind {name!r} holds a KV cache and a Mamba state together (Falcon-H1, Zamba2): "
                "how an engine pages such layers (vLLM registers the attention and the mixer as two layers sharing "
                "one page size) is not modelled, so fit gives no number; estimate counts the bytes (verify builds the "
                "attention part only)")
        else:
            bits = engine.token_bits(spec.attention_of(name), tp, kv_dtype, mla_layout)
            types.append(LayerType(name, kind.type, getattr(kind, "span", None), n, bits, 0))
    return types


def stage_layers(count: int, pp: int) -> list[range]:
    """vLLM's get_pp_indices: equal shares, the remainder to the stages before the last."""
    sizes = [count // pp] * pp
    for i in range(2, count % pp + 2):
        sizes[-i] += 1
    ranges, start = [], 0
    for size in sizes:
        ranges.append(range(start, start + size))
        start += size
    return ranges
