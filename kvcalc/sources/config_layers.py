"""Which layers of a config.json hold what: full, sliding, chunked, or a constant state
(Mamba, linear attention), as transformers builds each family, folded into a pattern."""

from __future__ import annotations

import json

from kvcalc.sources.config_fields import Reader, note_once, shown_json

LAYER_TYPES = {
    "full_attention": "full", "attention": "full", "full": "full",
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "linear_attention": "state", "mamba": "state", "linear": "state",
}

DELTANET_FIELDS = (
    "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
    "linear_num_key_heads", "linear_conv_kernel_dim",
)
MAMBA_FIELDS = ("mamba_expand", "mamba_d_state", "mamba_d_conv")
# Integer fields where 0 means something: Jamba's layer 0 is attention; no layer is below
# max_window_layers 0. Every other integer field must be at least 1.

def layers_block(r: Reader, count: int) -> dict:
    """Each layer's kind in order, folded into the shortest pattern that tiles to it."""
    order = _layer_order(r, count)
    kinds: dict[str, dict] = {}
    names: list[str] = []
    for token in order:
        name, kind = _kind(r, token)
        kinds.setdefault(name, kind)
        names.append(name)
    return {"count": count, "kinds": kinds, "pattern": compact_pattern(names)}


def _layer_order(r: Reader, count: int) -> list[str]:
    """'full' | 'sliding' | 'chunked' | 'state' for each layer, layer 0 first."""
    layer_types = r.data.get("layer_types")
    if layer_types is not None:
        order = _from_layer_types(r, layer_types, count)
        pattern = r.find("sliding_window_pattern")  # transformers builds layer_types from it; the list decides
        if pattern is not None and order != [
            "full" if isinstance(pattern[1], int) and pattern[1] > 0 and (i + 1) % pattern[1] == 0 else "sliding"
            for i in range(count)
        ]:
            r.notes.append(f"ignored: {pattern[0]} {shown_json(pattern[1])}: layer_types decides, and differs")
        return order
    if r.has("attn_layer_period") or r.model_type == "jamba":
        period, offset = r.integer("attn_layer_period"), r.integer("attn_layer_offset")
        if period is None or offset is None:
            r.fail("a Jamba-style config needs attn_layer_period and attn_layer_offset")
        if offset >= period:  # JambaConfig refuses it too: no layer would be attention
            r.fail(f"attn_layer_offset {offset} must be smaller than attn_layer_period {period}")
        return ["full" if i % period == offset else "state" for i in range(count)]
    if r.has("full_attention_interval") or r.model_type == "qwen3_next":
        interval = r.integer("full_attention_interval")
        return ["full" if (i + 1) % interval == 0 else "state" for i in range(count)]
    if r.model_type.startswith("llama4") or r.has("no_rope_layers") or r.has("attention_chunk_size"):
        return _llama4_order(r, count)
    if r.has("sliding_window_pattern") or r.model_type == "gemma3_text":
        every = r.integer("sliding_window_pattern")
        return ["full" if (i + 1) % every == 0 else "sliding" for i in range(count)]
    if r.model_type == "gemma2":
        r.notes.append("inferred: Gemma-2 alternation, layer 0 sliding, layer 1 full, and so on")
        return ["sliding" if i % 2 == 0 else "full" for i in range(count)]
    if r.once("window", _window) is None:
        return ["full"] * count
    if r.model_type in QWEN_WINDOW_RULES or r.data.get("use_sliding_window") is not None:
        return _qwen_window_order(r, count)
    return ["sliding"] * count  # Mistral, Mixtral, Phi-3: the window applies to every layer


# Which layers a Qwen-family config with use_sliding_window true slides, as transformers'
# config classes build layer_types: (rule text, predicate on layer i and max_window_layers).
QWEN_WINDOW_RULES = {
    "qwen2": ("layers i >= max_window_layers", lambda i, m: i >= m),
    "qwen3": ("layers i >= max_window_layers", lambda i, m: i >= m),
    "qwen2_moe": ("even layers i < max_window_layers", lambda i, m: i % 2 == 0 and i < m),
    "qwen3_moe": ("every layer", lambda i, m: True),
}


def _qwen_window_order(r: Reader, count: int) -> list[str]:
    rule, slides = QWEN_WINDOW_RULES.get(r.model_type, QWEN_WINDOW_RULES["qwen2"])
    limit = r.integer("max_window_layers") if "max_window_layers" in rule else 0
    if limit is None:  # neither the field nor a class default: the window applies everywhere
        (rule, slides), limit = QWEN_WINDOW_RULES["qwen3_moe"], 0
    r.notes.append(
        f"inferred: use_sliding_window is true, so the window applies to {rule}"
        + (f" ({limit})" if "max_window_layers" in rule else "")
        + f", as transformers builds {r.model_type or 'qwen2'} layers"
    )
    return ["sliding" if slides(i, limit) else "full" for i in range(count)]


def _from_layer_types(r: Reader, layer_types: object, count: int) -> list[str]:
    if not isinstance(layer_types, list) or len(layer_types) < count:
        r.fail(f"layer_types must list one type per layer ({count}), got {json.dumps(layer_types)[:80]}")
    order = []
    for i, name in enumerate(layer_types[:count]):
        token = LAYER_TYPES.get(name) if isinstance(name, str) else None
        if token is None:
            r.fail(
                f"layer_types[{i}] is {json.dumps(name)}, not a layer type kvcalc knows "
                f"({', '.join(sorted(LAYER_TYPES))})"
            )
        order.append(token)
    return order


def _llama4_order(r: Reader, count: int) -> list[str]:
    """Llama-4 iRoPE: no_rope_layers[i] == 1 is a RoPE layer with chunked attention, 0 a NoPE
    global layer; without the list, every no_rope_layer_interval-th layer is global."""
    flags = r.data.get("no_rope_layers")
    if flags:  # transformers treats an empty list like a missing one
        if not isinstance(flags, list) or len(flags) < count or any(f not in (0, 1) for f in flags[:count]):
            r.fail(f"no_rope_layers must list 0 or 1 for each of the {count} layers")
        return ["chunked" if f else "full" for f in flags[:count]]
    interval = r.integer("no_rope_layer_interval")
    if interval is None:
        r.fail("a Llama-4-style config needs no_rope_layers or no_rope_layer_interval")
    return ["full" if (i + 1) % interval == 0 else "chunked" for i in range(count)]


def _window(r: Reader) -> int | None:
    """The sliding window in tokens, or None when there is none or it is switched off.

    A missing sliding_window takes the class default where transformers applies one (noted);
    an explicit null means no window. The Qwen classes default use_sliding_window to false.
    """
    value = r.data.get("sliding_window")
    switch = r.data.get("use_sliding_window")
    if switch is False or (switch is None and r.model_type in QWEN_WINDOW_RULES):
        r.data.get("max_window_layers")  # read, and moot: it only says which layers a window covers
        if value:
            why = "is false" if switch is False else f"is not set (false by default for {r.model_type})"
            r.notes.append(f"ignored: sliding_window {value} because use_sliding_window {why}")
        return None
    if value is None and "sliding_window" in r.data:
        return None  # an explicit null: no window
    return r.integer("sliding_window") if value != 0 else None


def _kind(r: Reader, token: str) -> tuple[str, dict]:
    """A layer token as (kind name, kind definition), downgrading windowless layers to full."""
    if token == "sliding":
        window = r.once("window", _window)
        if window is not None:
            return "sliding", {"type": "sliding", "window": window}
        note_once(r, "inferred: sliding layers hold the whole context (no sliding_window applies)")
        return "full", {"type": "full"}
    if token == "chunked":
        chunk = r.once("chunk", _chunk)
        if chunk is not None:
            return "chunked", {"type": "chunked", "chunk": chunk}
        note_once(r, "inferred: chunked layers hold the whole context (attention_chunk_size is null)")
        return "full", {"type": "full"}
    if token == "state":
        return r.once("state", _state)
    return "full", {"type": "full"}


def _chunk(r: Reader) -> int | None:
    if "attention_chunk_size" in r.data and r.data["attention_chunk_size"] is None:
        return None  # an explicit null: no chunking
    return r.integer("attention_chunk_size")



def _state(r: Reader) -> tuple[str, dict]:
    if any(r.data.get(k) is not None for k in DELTANET_FIELDS):
        missing = [k for k in DELTANET_FIELDS if r.data.get(k) is None]
        if missing:
            r.fail(f"linear-attention layers need {', '.join(missing)}")
        nk, dk, nv, dv, kernel = (
            r.integer(k, default=False) for k in (
                "linear_num_key_heads", "linear_key_head_dim", "linear_num_value_heads",
                "linear_value_head_dim", "linear_conv_kernel_dim",
            )
        )
        recurrent, conv_dim = nv * dk * dv, 2 * nk * dk + nv * dv
        return "linear", {
            "type": "none",
            "state_elements": recurrent + conv_dim * kernel,
            "description": (
                f"Gated DeltaNet layer: recurrent state {nv} value heads x {dk} x {dv} = {recurrent} "
                f"plus conv state (conv dim 2*{nk}*{dk} + {nv}*{dv} = {conv_dim}) x kernel {kernel} "
                f"= {conv_dim * kernel}"
            ),
        }
    if any(r.data.get(k) is not None for k in MAMBA_FIELDS) or r.model_type == "jamba":
        hidden = r.integer("hidden_size")
        expand, d_state, d_conv = (r.integer(k) for k in MAMBA_FIELDS)
        missing = [k for k, v in zip(("hidden_size", *MAMBA_FIELDS), (hidden, expand, d_state, d_conv)) if v is None]
        if missing:
            r.fail(f"Mamba layers need {', '.join(missing)}")
        inner = expand * hidden
        return "mamba", {
            "type": "none",
            "state_elements": inner * d_state + inner * d_conv,
            "description": (
                f"Mamba layer: SSM state d_inner x d_state = {inner} x {d_state} = {inner * d_state} "
                f"plus conv state d_inner x d_conv = {inner} x {d_conv} = {inner * d_conv}"
            ),
        }
    r.fail(
        "some layers have no KV cache (linear attention or Mamba), but the config has neither "
        f"Gated DeltaNet fields ({', '.join(DELTANET_FIELDS)}) nor Mamba fields ({', '.join(MAMBA_FIELDS)})"
    )


def compact_pattern(order: list[str]) -> list[str]:
    """The shortest repeating unit of ``order``, run-length encoded: ["sliding*5", "full"].

    The unit tiles over the layers with the last tile cut short, as ``expand_pattern`` reads
    it; when nothing shorter repeats, the unit is every layer. The shortest period comes from
    the prefix function (Knuth-Morris-Pratt), in time linear in the layers.
    """
    n = len(order)
    border = [0] * n  # border[i]: the longest proper prefix of order[: i + 1] that is also its suffix
    for i in range(1, n):
        k = border[i - 1]
        while k and order[i] != order[k]:
            k = border[k - 1]
        border[i] = k + (order[i] == order[k])
    period = n - border[-1] if n else 1
    pattern: list[str] = []
    for name in order[:period]:
        if pattern and pattern[-1].split("*")[0] == name:
            base, _, times = pattern[-1].partition("*")
            pattern[-1] = f"{base}*{int(times or 1) + 1}"
        else:
            pattern.append(name)
    return pattern


