"""`kvcalc verify MODEL --reference transformers`: the cache transformers itself holds, beside kvcalc's.

transformers builds the model's own class from its config on the meta device: every tensor has
a shape and a dtype but no memory and no values, so no weights are needed and ``numel() *
element_size()`` of each cache tensor is exact. One forward of ``context`` tokens fills the
cache object the model returns; every tensor it holds is summed per layer, whatever the layer
class (keys and values, sliding windows, Mamba and linear-attention states, indexer keys).

Data-dependent operations (MoE routing through ``nonzero``) cannot run on meta tensors. The
MLP and MoE blocks do not change what the cache holds, so when the first forward fails they
are replaced by a pass-through and the forward is run again; the result says so.

Two halves: ``hold`` and ``load_reference`` import torch and transformers (lazily, inside the
functions); ``compare`` and everything after it are pure integer arithmetic on a ModelSpec and
the per-layer byte counts, so they are tested without torch.

Known conventions that make transformers differ from kvcalc, each recognised by its exact bytes:

* transformers 5.x (``DynamicSlidingWindowLayer``, also used for chunked layers) keeps the last
  ``window - 1`` tokens after a forward: the next token's K and V are concatenated before
  attention, so ``window - 1`` earlier ones suffice. kvcalc counts ``window`` tokens, what a
  layer attends to and what vLLM's sliding-window pages hold.
* transformers' MLA models (DeepSeek-V2/V3, Kimi-K2) cache per-head K (nope + rope) and V, which
  is kvcalc's ``--mla-layout expanded``; vLLM and SGLang cache the latent, kvcalc's default.
* a cache that holds ``heads`` K/V heads rather than ``kv_heads`` (KV heads repeated to the
  query heads) is named as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kvcalc.dtypes import DTYPE_BITS
from kvcalc.errors import KvcalcError, PresetError
from kvcalc.spec import ChunkedLayer, MLAAttention, ModelSpec, NoKVLayer, SlidingLayer

TRANSFORMERS_HINT = (
    "kvcalc verify --reference transformers needs transformers and PyTorch: pip install 'kvcalc[transformers,torch]'"
)
PRESET_REFUSAL = (
    "a preset is kvcalc's own description: the transformers reference builds the model from a config.json, "
    "so give a config.json path or folder, or a Hub id org/name"
)
# Names a decoder layer gives its feed-forward block, across transformers' causal LMs.
MLP_NAMES = frozenset({"mlp", "block_sparse_moe", "feed_forward", "moe", "ffn", "mlp_block", "dense"})
INDEXER_PREFIX = "indexer_"  # transformers' DynamicIndexedLayer: indexer_keys beside keys and values
TORCH_DTYPES = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


class ReferenceError(KvcalcError):
    """transformers could not build or run the model: the one-line reason, never a number."""


# --------------------------------------------------------------------------- torch side


@dataclass(frozen=True)
class Part:
    """One tensor a cache layer holds: the attribute it hangs on, its element type and size."""

    attr: str  # keys, values, conv_states, recurrent_states, ...
    dtype: str  # kvcalc's name (fp32, bf16, fp16) or torch's for others
    elements: int
    bytes: int
    shape: tuple[int, ...] = ()  # as held: (batch, heads, tokens, head size) for transformers' K and V


@dataclass(frozen=True)
class Held:
    """What transformers' cache held after one forward: bytes per cache layer, and how it got there."""

    layers: tuple[tuple[Part, ...], ...]  # per cache layer: every tensor it holds
    classes: tuple[str, ...]  # per cache layer: its class (DynamicLayer, LinearAttentionLayer, ...)
    dtype: str  # the element type of the first tensor held, in kvcalc's names (or torch's); "" if none
    model_class: str
    cache_class: str
    version: str
    passthrough: tuple[str, ...] = ()  # module classes replaced by a pass-through
    model_type: str = ""  # the config's, so a known convention of that family can be named

    @property
    def per_layer(self) -> tuple[int, ...]:
        return tuple(sum(p.bytes for p in parts) for parts in self.layers)


def load_config(ref: str, dirs, revision: str | None = None) -> tuple[ModelSpec, dict, str]:
    """(kvcalc's spec, the config.json as a dict, where it came from) for a config.json path or
    folder or a Hub id; a preset name or YAML is refused (``PRESET_REFUSAL``)."""
    from kvcalc.readers import load_json, read_text
    from kvcalc.sources.config_json import spec_from_config
    from kvcalc.sources.resolve import is_hub_ref, load_hub, looks_like_path, resolve

    if looks_like_path(ref) and is_hub_ref(ref):
        from kvcalc.sources.hub import fetch_config

        spec = load_hub(ref, revision)
        file = fetch_config(ref, revision).path
    else:
        path = Path(ref)
        if not looks_like_path(ref) or not (path.is_dir() or path.suffix.lower() == ".json"):
            resolve(ref, dirs, revision)  # an unknown name or an unreadable file fails here, as everywhere
            raise PresetError(f"{ref}: {PRESET_REFUSAL}")
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            from kvcalc.files import why_not_a_file

            raise PresetError(f"{path}: no config.json in this folder" if path.is_dir()
                              else f"{file}: {why_not_a_file(file)}")
        spec = None
    data = load_json(read_text(file), str(file))
    if spec is None:
        spec = spec_from_config(data, origin=str(file))
    return spec, data, str(file)


def hold(config: dict, context: int, batch: int = 1, dtype: str | None = None) -> Held:
    """Build ``config``'s causal-LM class on the meta device, run one forward of ``batch`` x
    ``context`` tokens, and count the bytes of every tensor the returned cache holds."""
    try:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise KvcalcError(TRANSFORMERS_HINT) from None
    import logging
    import warnings

    logging.getLogger("transformers").setLevel(logging.ERROR)
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise ReferenceError("config.json has no model_type: transformers cannot pick a class")
    try:
        fields = {k: v for k, v in config.items() if k != "model_type"}
        built = AutoConfig.for_model(model_type, **fields)
    except Exception as exc:
        raise ReferenceError(f"transformers cannot read this config ({model_type}): {_one_line(exc)}") from None
    built.use_cache = True
    if dtype is not None:
        built.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(built)
        except Exception as exc:
            raise ReferenceError(
                f"transformers cannot build {model_type} on the meta device: {_one_line(exc)}"
            ) from None
        model.eval()
        ids = torch.zeros((batch, context), dtype=torch.long, device="meta")  # (B, T)
        replaced: tuple[str, ...] = ()
        try:
            cache = _forward(model, ids)
        except Exception as first:
            cache, replaced = _forward_passed_through(model, ids, first)
    layers, classes = _walk(cache, torch) if cache is not None else ((), ())
    first = next((p.dtype for parts in layers for p in parts), "")  # "": nothing held
    return Held(
        layers=layers, classes=classes, dtype=TORCH_DTYPES.get(first, first), model_class=type(model).__name__,
        cache_class="no cache" if cache is None else type(cache).__name__, version=transformers.__version__,
        passthrough=replaced, model_type=model_type,
    )


def _forward(model, ids):
    import torch

    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    for name in ("cache", "past_key_values"):  # 5.24 names it cache; earlier 5.x past_key_values
        value = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if value is not None:
            return value
    return None


def _forward_passed_through(model, ids, first: Exception):
    """The forward again with the MLP/MoE blocks passed through: first returning the hidden states,
    then (for blocks whose callers unpack two values, as routers with scores) a pair."""
    replaced = _pass_through(model, pair=False)
    if not replaced:
        raise ReferenceError(f"{type(model).__name__} cannot run on the meta device: {_one_line(first)}") from None
    try:
        return _forward(model, ids), replaced
    except ValueError as exc:
        if "unpack" not in str(exc):
            raise _still_failing(model, exc) from None
    except Exception as exc:
        raise _still_failing(model, exc) from None
    _pass_through(model, pair=True)
    try:
        return _forward(model, ids), replaced
    except Exception as exc:
        raise _still_failing(model, exc) from None


def _still_failing(model, exc: Exception) -> ReferenceError:
    return ReferenceError(f"{type(model).__name__} cannot run on the meta device, even with its MLP/MoE blocks "
                          f"passed through: {_one_line(exc)}")


def _pass_through(model, pair: bool) -> tuple[str, ...]:
    """Replace every decoder layer's MLP/MoE block by a module that returns its input unchanged
    (with ``pair``, and a None beside it): what a layer caches comes from its attention, never
    from its feed-forward block."""
    import torch

    class PassThrough(torch.nn.Module):
        def forward(self, hidden_states=None, *args, **kwargs):
            out = hidden_states if hidden_states is not None else args[0]
            return (out, None) if pair else out

    replaced = {}
    for _, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            feed_forward = child_name in MLP_NAMES and "Attention" not in type(child).__name__
            if feed_forward and not isinstance(child, torch.nn.Linear):
                replaced[getattr(child, "replaced", type(child).__name__)] = None
                stand_in = PassThrough()
                stand_in.replaced = getattr(child, "replaced", type(child).__name__)
                setattr(module, child_name, stand_in)
    return tuple(replaced)


def _walk(cache, torch) -> tuple[tuple[tuple[Part, ...], ...], tuple[str, ...]]:
    """Every tensor each cache layer holds, in attributes, dicts, lists and tuples, each counted
    once; 0-dim tensors are bookkeeping (a window size, a length), not cache."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise ReferenceError(f"{type(cache).__name__} has no per-layer list (.layers); kvcalc cannot walk it")
    held, classes = [], []
    for layer in layers:
        seen, parts = set(), []
        for attr, value in sorted(vars(layer).items()):
            for tensor in _tensors(value, torch):
                if id(tensor) in seen or tensor.dim() == 0 or tensor.numel() == 0:
                    continue
                seen.add(id(tensor))
                dtype = TORCH_DTYPES.get(str(tensor.dtype), str(tensor.dtype))
                parts.append(Part(attr, dtype, tensor.numel(), tensor.numel() * tensor.element_size(),
                                  tuple(tensor.shape)))
        held.append(tuple(parts))
        classes.append(type(layer).__name__)
    return tuple(held), tuple(classes)


def _tensors(value, torch, depth: int = 0):
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 2 and isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item, torch, depth + 1)
    elif depth < 2 and isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item, torch, depth + 1)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- the comparison (no torch)


@dataclass(frozen=True)
class KindRow:
    """One kvcalc layer kind: its bytes in kvcalc and in transformers, and why they differ."""

    name: str
    kind: str  # full | sliding | chunked | none | extra (cache layers kvcalc does not count)
    layers: int
    kvcalc_bytes: int  # KV bytes, plus the constant state of no-KV layers
    transformers_bytes: int
    reason: str | None  # None: equal
    explained: bool
    rule: str | None = None  # the convention's short name: window-1, mla-expanded, mla-latent, repeated-kv, dtype

    @property
    def difference(self) -> int:
        """transformers minus kvcalc."""
        return self.transformers_bytes - self.kvcalc_bytes


@dataclass(frozen=True)
class Comparison:
    model: str
    context: int
    batch: int
    dtype: str
    mla_layout: str | None
    transformers_version: str
    model_class: str
    cache_class: str
    rows: tuple[KindRow, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def kvcalc_bytes(self) -> int:
        return sum(r.kvcalc_bytes for r in self.rows)

    @property
    def transformers_bytes(self) -> int:
        return sum(r.transformers_bytes for r in self.rows)

    @property
    def ok(self) -> bool:
        """Every difference is explained (or there is none)."""
        return all(r.explained for r in self.rows)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rows"] = [{**asdict(r), "difference": r.difference} for r in self.rows]
        data["notes"] = list(self.notes)
        data.update(kvcalc_bytes=self.kvcalc_bytes, transformers_bytes=self.transformers_bytes,
                    difference=self.transformers_bytes - self.kvcalc_bytes, ok=self.ok)
        return data


def compare(spec: ModelSpec, held: Held, context: int, batch: int = 1, mla_layout: str = "latent") -> Comparison:
    """kvcalc's estimate beside what transformers held, kind by kind; each difference is
    explained only when a known convention gives transformers' bytes exactly."""
    from kvcalc.estimate import estimate

    dtype = held.dtype if held.dtype in DTYPE_BITS else spec.dtype
    result = estimate(spec, context=context, batch=batch, kv_dtype=dtype, mla_layout=mla_layout)
    order = spec.layers.order()
    notes = []
    if held.passthrough:
        notes.append(
            f"the MLP/MoE blocks ({', '.join(held.passthrough)}) were replaced by a pass-through: routing cannot "
            "run on meta tensors, and a feed-forward block changes nothing a layer caches"
        )
    if held.dtype and held.dtype != dtype:
        notes.append(f"transformers' cache holds {held.dtype}, which kvcalc has no width for; compared in {dtype}")
    rows = []
    indexed = {g.of for g in result.groups if g.of is not None}
    for group in result.groups:
        base = group.of or group.name  # an indexer group's layers are those of its kind
        indices = [i for i, name in enumerate(order) if name == base]
        parts = [p for i in indices if i < len(held.layers) for p in held.layers[i]]
        if base in indexed:  # the indexer's keys are their own row, the K/V theirs
            parts = [p for p in parts if p.attr.startswith(INDEXER_PREFIX) == (group.of is not None)]
        kind = spec.layers.kinds[base]
        mine = group.bytes + group.state_bytes
        if group.of is not None:
            rule, reason, explained = _explain_indexer(spec.attention_of(base).indexer, group, mine, parts, batch,
                                                       dtype)
        else:
            rule, reason, explained = _explain(spec, held.model_type, group.name, kind, len(indices), mine, parts,
                                               context, batch,
                                               dtype, mla_layout)
        rows.append(KindRow(group.name, group.kind if group.of else kind.type, len(indices), mine,
                            sum(p.bytes for p in parts), reason, explained, rule))
    extra = held.per_layer[len(order):]
    if extra and sum(extra):
        rows.append(KindRow(
            "(more layers)", "extra", len(extra), 0, sum(extra),
            f"transformers' cache has {len(held.per_layer)} layers holding data, kvcalc counts {len(order)}", False,
        ))
    return Comparison(
        model=spec.name, context=context, batch=batch, dtype=dtype, mla_layout=result.mla_layout,
        transformers_version=held.version, model_class=held.model_class, cache_class=held.cache_class,
        rows=tuple(rows), notes=tuple(notes),
    )


# Families whose recurrent state transformers keeps wider than the model dtype while engines keep
# the model dtype, as kvcalc counts it. Elsewhere a state dtype that differs is not explained: it
# may be kvcalc that misread the state's dtype (Nemotron-H's float32 mamba_ssm_cache_dtype).
STATE_DTYPE_CONVENTIONS = {
    "qwen3_next": "transformers keeps the Gated DeltaNet recurrent state in float32; vLLM keeps the model dtype "
                  "unless --mamba-ssm-cache-dtype says otherwise (default auto), as kvcalc counts",
    "jamba": "transformers keeps the Mamba state in float32; vLLM keeps the model dtype unless "
             "--mamba-ssm-cache-dtype says otherwise (default auto), as kvcalc counts",
    "falcon_h1": "transformers' Falcon-H1 mixer keeps its recurrent state in float32; vLLM keeps the model dtype "
                 "unless --mamba-ssm-cache-dtype says otherwise (default auto), as kvcalc counts",
    "zamba2": "transformers' Zamba2 mixer keeps its recurrent state in float32; vLLM keeps the model dtype "
              "unless --mamba-ssm-cache-dtype says otherwise (default auto), as kvcalc counts",
}
KV_ATTRS = ("keys", "values")  # a transformers cache layer's K and V; the rest of a hybrid layer is its state


def _explain(spec, model_type, name, kind, layers, mine, parts, context, batch, dtype, mla_layout):
    """(rule, reason, explained) for one kind. Equal bytes need no reason; otherwise each known
    convention (and each pair of them) is tried, and one that gives transformers' bytes exactly
    is the reason. Nothing else is explained."""
    measured = sum(p.bytes for p in parts)
    elements = sum(p.elements for p in parts)
    if measured == mine:
        return None, None, True
    if not parts:
        from kvcalc.sources.config_json import NO_CACHE_DECODERS

        if model_type in NO_CACHE_DECODERS and not spec.is_encoder:  # the estimate's note says it too
            return "no-cache", (f"transformers' {model_type} keeps no KV cache (it recomputes attention over the "
                                "whole context at every step); kvcalc counts what a caching engine would hold"), True
        return None, "transformers' cache holds nothing for these layers (no cache returned, or none kept here)", False
    if spec.is_encoder:
        return None, f"kvcalc reads this as an encoder (no cache kept), transformers held {measured:,} bytes", False
    if isinstance(kind, NoKVLayer):
        mine_elements = kind.state_elements * layers * batch
        if elements == mine_elements:
            reason = _dtype_reason(parts, kind.state_dtype or dtype, mine_elements, "state")
            convention = STATE_DTYPE_CONVENTIONS.get(model_type)
            if convention:
                return "dtype", f"{reason} ({convention})", True
            return "dtype", (f"{reason}; which dtype an engine keeps for model_type {model_type or '(none)'} is not "
                             "a convention kvcalc knows: check the config's state dtype field"), False
        return None, (f"transformers holds {elements:,} state elements ({_attrs(parts)}), kvcalc counts "
                f"{mine_elements:,}"), False
    if getattr(kind, "state", None) is not None:
        return _explain_hybrid(model_type, kind.state, layers, mine, parts, batch, spec.dtype)
    attention = spec.attention_of(name)
    bits = DTYPE_BITS[dtype]
    spans = [(min(context, kind.span or context), None, None)]  # span: None for a full layer
    if isinstance(kind, SlidingLayer | ChunkedLayer) and context >= kind.span:
        what = "window" if isinstance(kind, SlidingLayer) else "chunk"
        spans.append((min(context, kind.span - 1), "window-1", (
            f"transformers keeps the last {what} - 1 = {kind.span - 1} tokens of each {kind.type} layer after a "
            f"forward (DynamicSlidingWindowLayer: the next token is appended before attention); kvcalc counts "
            f"{kind.span}, what the layer attends to")))
    widths = [(attention.kv_elements_per_token(mla_layout), None, None)]
    if isinstance(attention, MLAAttention):
        other = "latent" if mla_layout == "expanded" else "expanded"
        widths.append((attention.kv_elements_per_token(other), f"mla-{other}", (
            f"transformers caches MLA expanded: per-head K ({attention.qk_nope_head_dim} + "
            f"{attention.qk_rope_head_dim}) and V ({attention.v_head_dim}) for {attention.heads} heads, kvcalc's "
            "--mla-layout expanded" if other == "expanded" else
            f"transformers caches MLA compressed: the latent ({attention.kv_lora_rank}) and the shared rope key "
            f"({attention.qk_rope_head_dim}) per token, kvcalc's --mla-layout latent (as vLLM and SGLang)")))
    elif attention.kv_heads < attention.heads and _holds_heads(parts, attention):
        widths.append((attention.heads * (attention.head_dim + attention.v_dim), "repeated-kv", (
            f"transformers holds all {attention.heads} heads' K and V, not the {attention.kv_heads} KV heads "
            "(KV heads repeated to the query heads)")))
    for tokens, rule_tokens, why_tokens in spans:
        for width, rule_width, why_width in widths:
            count = width * layers * tokens * batch
            if -(-count * bits // 8) == measured and (why_tokens or why_width):
                rule = " + ".join(r for r in (rule_width, rule_tokens) if r)
                return rule, "; ".join(r for r in (why_width, why_tokens) if r), True
            if count == elements and why_tokens is None and why_width is None:
                return "dtype", _dtype_reason(parts, dtype, count, "K/V"), True
    why = f"no known convention gives transformers' {measured:,} bytes ({_attrs(parts)}); kvcalc: {mine:,}"
    return None, why, False


def _holds_heads(parts, attention) -> bool:
    """Every K and V tensor held is (batch, heads, tokens, size) with the query heads' count and
    kvcalc's K and V widths: only then are the KV heads repeated, rather than bytes that happen
    to agree (a wider global head_dim over fewer heads gives the same product)."""
    kv = [p for p in parts if p.attr in ("keys", "values")]
    widths = {"keys": attention.head_dim, "values": attention.v_dim}
    return bool(kv) and all(len(p.shape) == 4 and p.shape[1] == attention.heads and p.shape[3] == widths[p.attr]
                            for p in kv)


def _explain_indexer(indexer, group, mine, parts, batch, dtype):
    """DeepSeek-V3.2's indexer keys: transformers keeps them unquantized in the model dtype, one
    key of index_head_dim per token and layer, with no scales."""
    measured = sum(p.bytes for p in parts)
    if measured == mine:
        return None, None, True
    count = indexer.head_dim * group.layers * group.tokens * batch
    if sum(p.elements for p in parts) == count and measured == count * DTYPE_BITS[dtype] // 8:
        return "indexer-unquantized", (
            f"transformers keeps each indexer key unquantized in {dtype} ({indexer.head_dim} elements, no scale); "
            "kvcalc counts the key as DeepSeek's inference code, vLLM and SGLang cache it (its key dtype and "
            "scales, see the estimate's conventions)"), True
    why = f"no known convention gives transformers' {measured:,} indexer bytes ({_attrs(parts)}); kvcalc: {mine:,}"
    return None, why, False


def _explain_hybrid(model_type, state, layers, mine, parts, batch, dtype):
    """A layer holding K/V and a Mamba state (Falcon-H1, Zamba2): equal K/V bytes and equal state
    elements, with the state in another dtype, is explained where the family's convention is known.
    ``dtype`` is the model's, which the estimate keeps a state without its own dtype in."""
    state_mine = -(-state.bits(dtype) * layers * batch // 8)
    kv_parts = [p for p in parts if p.attr in KV_ATTRS]
    state_parts = [p for p in parts if p.attr not in KV_ATTRS]
    kv_same = sum(p.bytes for p in kv_parts) == mine - state_mine
    state_elements = state.state_elements * layers * batch
    if kv_same and sum(p.elements for p in state_parts) == state_elements:
        reason = _dtype_reason(state_parts, state.state_dtype or dtype, state_elements, "state")
        convention = STATE_DTYPE_CONVENTIONS.get(model_type)
        if convention:
            return "dtype", f"{reason} ({convention})", True
        return "dtype", (f"{reason}; which dtype an engine keeps for model_type {model_type or '(none)'} is not a "
                         "convention kvcalc knows"), False
    return None, (f"transformers holds {_attrs(parts)}; kvcalc counts {mine - state_mine:,} B of K/V and "
                  f"{state_elements:,} state elements"), False


def _dtype_reason(parts, dtype: str, elements: int, what: str) -> str:
    """Same elements, other element types: which tensors transformers keeps in which type."""
    wider = sorted({f"{p.attr} in {p.dtype}" for p in parts if p.dtype != dtype})
    return (f"the same {elements:,} {what} elements; transformers keeps {', '.join(wider)}, kvcalc counts "
            f"every element in {dtype}")


def _attrs(parts) -> str:
    totals: dict[str, int] = {}
    for p in parts:
        totals[f"{p.attr} {p.dtype}"] = totals.get(f"{p.attr} {p.dtype}", 0) + p.elements
    return ", ".join(f"{k} {v:,}" for k, v in totals.items()) or "nothing"


# --------------------------------------------------------------------------- rendering (no torch)


def reference_table(c: Comparison):
    from rich.table import Table
    from rich.text import Text

    from kvcalc.units import format_bytes

    table = Table(title=Text(f"{c.model}: kvcalc vs transformers {c.transformers_version}, "
                             f"{c.context} tokens x {c.batch}, {c.dtype}"))
    for column in ("kind", "layers", "kvcalc", "transformers", "difference", "why"):
        table.add_column(column, justify="right" if column in ("layers", "kvcalc", "transformers", "difference")
                         else "left", overflow="fold")
    for r in c.rows:
        why = "equal" if r.difference == 0 else (r.rule if r.explained else "UNEXPLAINED")
        table.add_row(Text(f"{r.name} ({r.kind})"), str(r.layers), _bytes_cell(r.kvcalc_bytes, format_bytes),
                      _bytes_cell(r.transformers_bytes, format_bytes), f"{r.difference:+,}",
                      Text(why, style=None if r.explained else "bold red"))
    return table


def _bytes_cell(n: int, format_bytes) -> str:
    return f"{n:,} ({format_bytes(n)})"


def reference_lines(c: Comparison) -> list[str]:
    lines = [f"transformers built {c.model_class} on the meta device (no memory, no weights); cache {c.cache_class}"]
    lines += [f"{r.name}: {r.reason}" for r in c.rows if r.reason]
    lines += [f"note: {n}" for n in c.notes]
    return lines


def reference_verdict(c: Comparison) -> str:
    if all(r.difference == 0 for r in c.rows):
        return f"MATCH: transformers holds exactly kvcalc's {c.kvcalc_bytes:,} bytes"
    if c.ok:
        return (f"EXPLAINED: transformers holds {c.transformers_bytes:,} bytes, kvcalc {c.kvcalc_bytes:,}; "
                "every difference is a known convention")
    bad = ", ".join(r.name for r in c.rows if not r.explained)
    return f"UNEXPLAINED: {bad} differ and no known convention says why"
