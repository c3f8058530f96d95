"""Which layers of a config.json hold what: full, sliding, chunked, or a constant state
(Mamba, linear attention), as transformers builds each family, folded into a pattern."""

from __future__ import annotations

import json

from kvcalc.sources.config_attention import dense_dict, model_attention
from kvcalc.sources.config_fields import Reader, note_once, shown_json, unread_note
from kvcalc.spec import MAX_LAYERS

MAX_KINDS = 64  # Layers.kinds holds at most this many

LAYER_TYPES = {
    "full_attention": "full", "attention": "full", "full": "full",
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "linear_attention": "state", "mamba": "state", "linear": "state",
    # MLA with a sparse-attention indexer (DeepSeek-V3.2 and kin, as transformers 5.24 writes
    # layer_types): a full layer whose indexer keys the attention reader counts
    "indexed_attention": "indexed",
    # LFM2's gated short convolution: a constant conv state, no K/V
    "conv": "conv",
    # Nemotron-H's layers_block_type (transformers' NemotronHConfig): a layer that is only an
    # MLP or a mixture of experts has neither attention nor a recurrent state
    "mlp": "ffn", "moe": "ffn",
    # Zamba2's and Falcon-H1's layers_block_type: a Mamba2 mixer and attention in one layer (HYBRID_TYPES)
    "hybrid": "hybrid",
}
# model types whose "hybrid" layers kvcalc reads: a full-attention KV cache and a Mamba2 state in one layer
HYBRID_TYPES = ("zamba2", "falcon_h1")
# Nemotron-H's hybrid_override_pattern, one character per layer, as NemotronHConfig and
# vLLM's nemotron_h.py read it: M a Mamba2 mixer, * attention, - an MLP, E a mixture of experts.
HYBRID_OVERRIDE_CHARS = {"M": "state", "*": "full", "-": "ffn", "E": "ffn"}

DELTANET_FIELDS = (
    "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
    "linear_num_key_heads", "linear_conv_kernel_dim",
)
MAMBA_FIELDS = ("mamba_expand", "mamba_d_state", "mamba_d_conv")
# Mamba2 (Nemotron-H, Granite-4.0-H, Bamba): a head count is what sets it apart from Mamba1
MAMBA2_HEADS = ("mamba_num_heads", "mamba_n_heads", "n_mamba_heads")
# Integer fields where 0 means something: Jamba's layer 0 is attention; no layer is below
# max_window_layers 0. Every other integer field must be at least 1.

def layer_count(r: Reader) -> int:
    """num_hidden_layers, or for Nemotron-H without it the length of hybrid_override_pattern or
    layers_block_type (NemotronHConfig derives the count from the pattern)."""
    count = r.integer("num_hidden_layers")
    if count is not None:
        return _hrm_text_slots(r, count) if r.model_type == "hrm_text" else count
    # require() let a missing count through only with one of these
    field = "hybrid_override_pattern" if isinstance(r.data.get("hybrid_override_pattern"), str) else "layers_block_type"
    pattern = r.data[field]
    r.notes.append(f"inferred: num_hidden_layers = {len(pattern)}, one per entry of {field}")
    return len(pattern)


def _hrm_text_slots(r: Reader, count: int) -> int:
    """HRM-Text runs its two stacks of num_layers_per_stack layers H_cycles x (L_cycles + 1) times, each run in a
    cache slot of its own (modeling_hrm_text.py 486-515). HrmTextConfig without num_layers_per_stack (an older
    config) takes num_hidden_layers as the per-stack count and rewrites num_hidden_layers to the slots
    (configuration_hrm_text.py 109-115; defaults H_cycles 2, L_cycles 3, lines 93-94). A config with both must
    state them consistently: DynamicCache pre-allocates num_hidden_layers layers, and a slot past them fails."""
    cycles = {}
    for key, default, least in (("H_cycles", 2, 1), ("L_cycles", 3, 0)):
        value = r.data.get(key)
        if value is None and key in r.data:
            r.fail(f"{key} is null, not a whole number (transformers' HrmTextConfig refuses it)")
        if value is None:
            value = default
            r.notes.append(f"inferred: {key} = {default} (HrmTextConfig's default; not in config.json)")
        elif isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_LAYERS:
            r.fail(f"{key} must be a whole number from {least} to {MAX_LAYERS:,}, got {shown_json(value)}")
        cycles[key] = value
    runs = cycles["H_cycles"] * (cycles["L_cycles"] + 1)
    stack = r.data.get("num_layers_per_stack")
    if stack is None:
        if runs * count > MAX_LAYERS:  # before a list of layers is built from it
            r.fail(f"num_hidden_layers {count} x H_cycles x (L_cycles + 1) = {runs * count:,} cache layers is more "
                   f"than any real model has (at most {MAX_LAYERS:,})")
        r.notes.append(f"inferred: {runs * count} cache layers = num_hidden_layers {count} per stack x H_cycles "
                       f"{cycles['H_cycles']} x (L_cycles {cycles['L_cycles']} + 1), as HrmTextConfig reads a "
                       "config without num_layers_per_stack")
        return runs * count
    if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1 or stack * runs != count:
        r.fail(f"num_hidden_layers {count} is not num_layers_per_stack {shown_json(stack)} x H_cycles "
               f"{cycles['H_cycles']} x (L_cycles {cycles['L_cycles']} + 1), the cache slots HRM-Text runs")
    r.notes.append(f"inferred: {count} cache layers = num_layers_per_stack {stack} x H_cycles {cycles['H_cycles']} "
                   f"x (L_cycles {cycles['L_cycles']} + 1): each stack layer runs once per cycle")
    return count


def layers_block(r: Reader, count: int) -> dict:
    """Each layer's kind in order, folded into the shortest pattern that tiles to it."""
    order = _with_per_layer_attention(r, _layer_order(r, count))
    kinds: dict[str, dict] = {}
    names: list[str] = []
    for token in order:
        name, kind = token if isinstance(token, tuple) else _kind(r, token)
        if kinds.setdefault(name, kind) != kind:  # a reader names two different kinds alike: a bug, say so
            r.fail(f"layer kind {name!r} is defined twice, differently")
        names.append(name)
    if len(kinds) > MAX_KINDS:
        r.fail(f"{len(kinds)} distinct layer kinds (more than the {MAX_KINDS} a spec holds)")
    return {"count": count, "kinds": kinds, "pattern": compact_pattern(names)}


def _layer_order(r: Reader, count: int) -> list:
    """'full' | 'sliding' | 'chunked' | 'state' | 'ffn' for each layer, layer 0 first, or a
    (name, kind) pair where a layer carries its own attention (block_configs, swa_* fields)."""
    _refuse_parallel_hybrids(r)
    if r.data.get("block_configs") is not None:
        return block_configs_order(r, count)
    pattern = r.data.get("hybrid_override_pattern")
    if pattern is not None:
        return _with_local_global(r, _hybrid_override_order(r, pattern, count))
    block_types = r.data.get("layers_block_type")
    if block_types is None and r.model_type == "falcon_h1":
        r.notes.append("inferred: every layer runs attention and a Mamba2 mixer side by side (Falcon-H1; "
                       "FalconH1Config's layers_block_type is \"hybrid\" for each)")
        return ["hybrid"] * count
    if block_types is not None:
        return _with_local_global(r, _from_layer_types(r, block_types, count, "layers_block_type"))
    if r.data.get("hybrid_layer_pattern") is not None:
        return _with_local_global(r, _hybrid_layer_pattern_order(r, count))
    if r.data.get("attn_layer_indices") is not None or r.model_type == "bamba":
        return _attn_layer_indices_order(r, count)
    layer_types = r.data.get("layer_types")
    if layer_types is not None:
        if _is_gemma4(r) and isinstance(layer_types, list) and len(layer_types) > count:
            # PreTrainedConfig.validate_layer_type (configuration_utils.py 703-718) refuses it when
            # transformers builds the config: num_hidden_layers must equal len(layer_types)
            r.fail(f"layer_types lists {len(layer_types)} layers, but num_hidden_layers is {count}; transformers "
                   "refuses a config whose counts differ (PreTrainedConfig.validate_layer_type)")
        order = _from_layer_types(r, layer_types, count)
        pattern = r.find("sliding_window_pattern")  # transformers builds layer_types from it; the list decides
        if pattern is not None and order != [
            "full" if isinstance(pattern[1], int) and pattern[1] > 0 and (i + 1) % pattern[1] == 0 else "sliding"
            for i in range(count)
        ]:
            r.notes.append(f"ignored: {pattern[0]} {shown_json(pattern[1])}: layer_types decides, and differs")
        interval = r.data.get("full_attention_interval")  # Qwen3-Next / Qwen3.5 build layer_types from it
        if interval is not None and order != [
            "full" if isinstance(interval, int) and interval > 0 and (i + 1) % interval == 0 else "state"
            for i in range(count)
        ]:
            r.notes.append(f"ignored: full_attention_interval {shown_json(interval)}: layer_types decides, and differs")
        idxs = r.data.get("full_attn_idxs")  # LFM2 builds layer_types from it when layer_types is absent
        if idxs is not None and (not isinstance(idxs, list) or order != _lfm2_order(idxs, count)):
            r.notes.append(f"ignored: full_attn_idxs {shown_json(idxs)}: layer_types decides, and differs")
        if r.model_type in QWEN_LAYER_TYPES:
            _qwen_layer_types(r, order)
        every = r.data.get("global_attn_every_n_layers") if r.model_type == "modernbert-decoder" else None
        if r.model_type == "modernbert-decoder":
            r.data.get("local_attention")  # read: the window of the sliding layers there are (none here, maybe)
        if every is not None and order != [
            "full" if isinstance(every, int) and every > 0 and i % every == 0 else "sliding" for i in range(count)
        ]:  # ModernBertDecoderConfig builds layer_types from it only when they are absent
            r.notes.append(f"ignored: global_attn_every_n_layers {shown_json(every)}: layer_types decides, and differs")
        if _is_gemma4(r) and order and order[-1] != "full":
            order[-1] = "full"
            r.notes.append("inferred: the last layer is full attention, as transformers' Gemma-4 forces it "
                           "(layer_types ends in a sliding layer)")
        return _with_local_global(r, order)
    if r.data.get("full_attn_idxs") is not None:  # LFM2 without layer_types, as Lfm2Config builds them
        idxs = r.data["full_attn_idxs"]
        if (not isinstance(idxs, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in idxs)
                or any(not 0 <= i < count for i in idxs)):
            r.fail(f"full_attn_idxs must list layer numbers below {count}, got {shown_json(idxs)}")
        r.notes.append("inferred: layers in full_attn_idxs are attention, the rest short convolutions (no "
                       "layer_types; as transformers' Lfm2Config builds them)")
        return _lfm2_order(idxs, count)
    if _is_gemma4(r) or r.model_type == "mimo_v2_flash":
        return _with_local_global(r, _class_pattern(r, count))
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
    if r.model_type == "modernbert-decoder":
        return _modernbert_order(r, count)
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


# The Qwen config classes that build layer_types from use_sliding_window, sliding_window and
# max_window_layers when config.json has none (configuration_qwen2.py 83-93, configuration_qwen3.py
# 86-96, configuration_qwen2_moe.py 112-119); with layer_types given, the list decides.
QWEN_LAYER_TYPES = ("qwen2", "qwen3", "qwen2_moe")


def _qwen_layer_types(r: Reader, order: list[str]) -> None:
    """use_sliding_window and max_window_layers beside layer_types (transformers 5.x writes all three; GOT-OCR2's
    and MOSS-Transcribe-Diarize's text_config): read, and noted where the list is not what they build."""
    switch, limit = r.data.get("use_sliding_window"), r.data.get("max_window_layers")
    window = r.data.get("sliding_window", r.class_default("sliding_window"))
    if limit is None:
        limit = r.class_default("max_window_layers")
    _, slides = QWEN_WINDOW_RULES[r.model_type]
    on = switch is True and (r.model_type == "qwen2_moe" or window is not None)  # qwen2_moe does not look at it
    if isinstance(limit, bool) or not isinstance(limit, int):
        return  # nothing to compare with; the list decides
    if "sliding" in order and not on:  # Qwen2Config: sliding_window None unless use_sliding_window (5.24)
        r.fail(f"layer_types lists sliding layers, but use_sliding_window is {shown_json(switch)}: transformers "
               "then gives them no window (sliding_window None) and cannot run them")
    built = ["sliding" if on and slides(i, limit) else "full" for i in range(len(order))]
    if built != order:
        r.notes.append(f"ignored: use_sliding_window {shown_json(switch)} and max_window_layers {shown_json(limit)}: "
                       "layer_types decides, and differs")


def _modernbert_order(r: Reader, count: int) -> list[str]:
    """ModernBERT-decoder without layer_types: layer i is full where i % global_attn_every_n_layers == 0
    (3 when absent), the rest sliding, as ModernBertDecoderConfig builds them (configuration_modernbert_decoder.py
    102-109)."""
    every = r.data.get("global_attn_every_n_layers")
    if every is None and "global_attn_every_n_layers" in r.data:  # transformers fails on i % None (102-109)
        r.fail("global_attn_every_n_layers is null, not a whole number (transformers cannot build its layers)")
    if every is None:
        every = 3
        r.notes.append("inferred: global_attn_every_n_layers = 3 (ModernBertDecoderConfig's default; not in "
                       "config.json)")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        r.fail(f"global_attn_every_n_layers must be a positive whole number, got {shown_json(every)}")
    r.data.get("local_attention")  # read: the window of the sliding layers, if any
    r.notes.append("inferred: no layer_types; as transformers' ModernBertDecoderConfig builds them, "
                   + ("every layer is full attention" if every == 1 else
                      f"layers 0, {every}, {2 * every}, ... are full attention, the rest sliding"))
    return ["full" if i % every == 0 else "sliding" for i in range(count)]


def _modernbert_window(r: Reader) -> int:
    """ModernBertDecoderConfig sets sliding_window = local_attention // 2 whatever config.json says
    (configuration_modernbert_decoder.py 112); the attention of a sliding layer reads it (modeling 246)."""
    local = r.integer("local_attention", default=False)
    if local is None:
        if "local_attention" in r.data:  # null: transformers sets sliding_window -1
            r.fail("local_attention is null: transformers' ModernBertDecoderConfig then sets sliding_window -1 for "
                   "the sliding layers, a window kvcalc cannot size")
        local = 128
        r.notes.append("inferred: local_attention = 128 (ModernBertDecoderConfig's default; not in config.json)")
    window = local // 2
    stated = r.data.get("sliding_window")
    if stated is not None and stated != window:
        r.notes.append(f"ignored: sliding_window {shown_json(stated)}: transformers' ModernBertDecoderConfig sets it "
                       f"to local_attention // 2 = {window}")
    if window < 1:
        r.fail(f"local_attention {local}: a window of local_attention // 2 = 0 tokens")
    r.notes.append(f"inferred: sliding window = local_attention // 2 = {local} // 2 = {window} (as transformers' "
                   "ModernBertDecoderConfig sets it)")
    return window


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


def _from_layer_types(r: Reader, layer_types: object, count: int, field: str = "layer_types") -> list[str]:
    if not isinstance(layer_types, list) or len(layer_types) < count:
        r.fail(f"{field} must list one type per layer ({count}), got {json.dumps(layer_types)[:80]}")
    if field == "layers_block_type" and len(layer_types) != count:  # NemotronHConfig counts layers by the list
        r.fail(f"layers_block_type has {len(layer_types)} layers, but num_hidden_layers is {count}")
    order = []
    for i, name in enumerate(layer_types[:count]):
        if name == "hybrid" and r.model_type not in HYBRID_TYPES:
            r.fail(
                f"{field}[{i}] is \"hybrid\": a layer that holds both a Mamba state and a KV cache, which kvcalc "
                f"reads for {' and '.join(HYBRID_TYPES)} only"
            )
        token = LAYER_TYPES.get(name) if isinstance(name, str) else None
        if token is None:
            r.fail(
                f"{field}[{i}] is {json.dumps(name)}, not a layer type kvcalc knows "
                f"({', '.join(sorted(LAYER_TYPES))})"
            )
        order.append(token)
    return order


def _class_pattern(r: Reader, count: int) -> list[str]:
    """The layer order transformers' config class builds when config.json has no layer_types:
    Gemma-4 makes every sliding_window_pattern-th layer (6) full, and the last layer full;
    MiMo-V2-Flash makes layer 0 and every sixth layer full."""
    if _is_gemma4(r):
        # configuration_gemma4.py 188-193 (configuration_gemma4_unified.py 156-161): a fixed
        # sliding_window_pattern = 6; a sliding_window_pattern in config.json is not read
        stated = r.find("sliding_window_pattern")
        if stated is not None and stated[1] != GEMMA4_EVERY:
            r.notes.append(f"ignored: {stated[0]} {shown_json(stated[1])}: transformers' Gemma-4 does not read it "
                           f"and makes every {GEMMA4_EVERY}th layer full")
        order = ["full" if (i + 1) % GEMMA4_EVERY == 0 or i == count - 1 else "sliding" for i in range(count)]
        r.notes.append(f"inferred: no layer_types; as transformers' Gemma-4 builds them, every {GEMMA4_EVERY}th "
                       "layer and the last are full attention, the rest sliding")
        return order
    r.notes.append("inferred: no layer_types; as transformers' MiMoV2FlashConfig builds them, layer 0 and every "
                   "sixth layer are full attention, the rest sliding")
    return ["full" if i == 0 or (i + 1) % 6 == 0 else "sliding" for i in range(count)]


def _hybrid_override_order(r: Reader, pattern: object, count: int) -> list[str]:
    """Nemotron-H: one character per layer; NemotronHConfig takes the layer count from the
    pattern's length, so a num_hidden_layers that disagrees is an error, not a guess."""
    if not isinstance(pattern, str) or not pattern:
        r.fail(f"hybrid_override_pattern must be a string, one character per layer, got {shown_json(pattern)}")
    unknown = sorted(set(pattern) - set(HYBRID_OVERRIDE_CHARS))
    if unknown:
        r.fail(
            f"hybrid_override_pattern holds {', '.join(map(repr, unknown))}, not a layer kvcalc knows "
            "(M Mamba2, * attention, - MLP, E mixture of experts)"
        )
    if len(pattern) != count:
        r.fail(f"hybrid_override_pattern has {len(pattern)} layers, but num_hidden_layers is {count}")
    return [HYBRID_OVERRIDE_CHARS[c] for c in pattern]


def _lfm2_order(idxs: list, count: int) -> list[str]:
    return ["full" if i in idxs else "conv" for i in range(count)]


def _attn_layer_indices_order(r: Reader, count: int) -> list[str]:
    """Bamba: attn_layer_indices names the full-attention layers, every other layer is Mamba2, as
    transformers' BambaConfig.layers_block_type builds it (none listed: every layer Mamba2)."""
    indices = r.data.get("attn_layer_indices")
    if indices is None:
        r.notes.append("inferred: no attn_layer_indices: every layer is a Mamba2 layer, as transformers' "
                       "BambaConfig builds it")
        return ["state"] * count
    if (not isinstance(indices, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in indices)
            or any(not 0 <= i < count for i in indices) or len(set(indices)) != len(indices)):
        r.fail(f"attn_layer_indices must list distinct layer numbers below {count}, got {shown_json(indices)}")
    return ["full" if i in set(indices) else "state" for i in range(count)]


def _hybrid_layer_pattern_order(r: Reader, count: int) -> list[str]:
    """MiMo-V2 (MiMo-V2-Flash, MiMo-V2.5): hybrid_layer_pattern[i] is 1 for a sliding-window
    layer and 0 for a global one, as transformers' MiMoV2FlashConfig and SGLang read it."""
    flags = r.data["hybrid_layer_pattern"]
    if not isinstance(flags, list) or len(flags) != count or any(f not in (0, 1) or isinstance(f, bool) for f in flags):
        r.fail(f"hybrid_layer_pattern must list 0 (full) or 1 (sliding) for each of the {count} layers")
    chunk = r.data.get("attention_chunk_size")
    if chunk is not None:
        r.notes.append(
            f"ignored: attention_chunk_size {shown_json(chunk)}: hybrid_layer_pattern decides which "
            "layers slide, and no layer attends in chunks (transformers drops this field for MiMo-V2)"
        )
    return ["sliding" if f else "full" for f in flags]


def _refuse_parallel_hybrids(r: Reader) -> None:
    """Falcon-H1 runs attention and a Mamba2 mixer side by side in every layer: each layer holds
    a KV cache and a state, which no single layer kind of kvcalc's describes. Kimi's KDA layers
    (linear_attn_config, Kimi-Linear and Kimi-K3) keep a state kvcalc does not size."""
    if r.data.get("linear_attn_config") is not None:
        r.fail(
            "linear_attn_config: Kimi Delta Attention layers (Kimi-Linear, Kimi-K3) keep a recurrent state "
            "beside the MLA layers' latent, which kvcalc does not size"
        )
    if r.model_type != "falcon_h1" and r.data.get("mamba_d_ssm") is not None:
        r.fail(
            "mamba_d_ssm: Falcon-H1-style layers run attention and a Mamba2 mixer in parallel, which kvcalc "
            f"reads for model_type falcon_h1 only, not {r.model_type or '(none)'}"
        )


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
    if r.model_type == "modernbert-decoder":
        return _modernbert_window(r)
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
    size = r.data.get("sliding_window_size")
    if value is None and r.model_type.startswith("mimo_v2") and isinstance(size, int) and not isinstance(size, bool) \
            and size > 0:
        # MiMo-V2: transformers sets sliding_window = sliding_window_size + 1 (the earlier tokens and the query)
        r.notes.append(f"inferred: sliding window = sliding_window_size + 1 = {size + 1} (no sliding_window; "
                       "transformers reads it so: the earlier tokens plus the current one)")
        return size + 1
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
    if token == "hybrid":
        return r.once("hybrid", _hybrid)
    if token == "indexed":
        return r.once("indexed", _indexed)
    if token == "conv":
        return r.once("conv", _short_conv)
    if token == "ffn":
        return "ffn", {
            "type": "none",
            "description": "MLP or mixture-of-experts layer: no attention and no recurrent state",
        }
    return "full", {"type": "full"}


def _hybrid(r: Reader) -> tuple[str, dict]:
    """A layer that runs attention and a Mamba2 mixer (Falcon-H1: side by side in every layer; Zamba2: a
    shared attention block, then the layer's own Mamba2 mixer): its KV cache holds the whole context, as a
    full layer's does, and its state is the Mamba2 layer's. transformers 5.24 keeps both in one cache layer
    (LinearAttentionAndFullAttentionLayer); vLLM registers the attention and the mixer as two layers."""
    _, state = r.once("state", _state)
    kind = {"type": "full", "state": state}
    return "hybrid", kind


def _indexed(r: Reader) -> tuple[str, dict]:
    """layer_types "indexed_attention": an MLA layer with its indexer (read with the attention)."""
    if r.data.get("kv_lora_rank") is None or r.data.get("index_head_dim") is None:
        r.fail("layer_types says indexed_attention, but kvcalc reads an indexer only beside MLA "
               "(kv_lora_rank with index_head_dim, index_n_heads)")
    return "full", {"type": "full"}  # the indexer itself is read with the attention (config_attention)


def _short_conv(r: Reader) -> tuple[str, dict]:
    """LFM2's short-convolution layer: a depthwise conv over hidden_size channels whose state
    holds conv_L_cache columns, as transformers allocates it (vLLM keeps conv_L_cache - 1)."""
    hidden, kernel = r.integer("hidden_size"), r.integer("conv_L_cache", default=False)
    if hidden is None or kernel is None:
        r.fail("conv layers (LFM2's short convolution) need hidden_size and conv_L_cache")
    r.data.get("conv_bias")  # read, and moot: a bias is a weight, not state
    note_once(r, (
        f"inferred: each conv layer's state holds conv_L_cache ({kernel}) columns of hidden_size ({hidden}), as "
        f"transformers allocates it; vLLM keeps conv_L_cache - 1 ({kernel - 1}), {hidden} elements less per layer"
    ))
    return "conv", {
        "type": "none",
        "state_elements": hidden * kernel,
        "conv_channels": hidden, "conv_kernel": kernel, "mixer": "short_conv",
        "description": (
            f"short-convolution layer: conv state hidden_size x conv_L_cache = {hidden} x {kernel} = {hidden * kernel}"
        ),
    }


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
        return "linear", with_state_dtype(r, {
            "type": "none",
            "state_elements": recurrent + conv_dim * kernel,
            "conv_channels": conv_dim, "conv_kernel": kernel, "mixer": "gated_deltanet",
            "description": (
                f"Gated DeltaNet layer: recurrent state {nv} value heads x {dk} x {dv} = {recurrent} "
                f"plus conv state (conv dim 2*{nk}*{dk} + {nv}*{dv} = {conv_dim}) x kernel {kernel} "
                f"= {conv_dim * kernel}"
            ),
        }, "Gated DeltaNet")
    if any(r.data.get(k) is not None for k in MAMBA2_HEADS):
        return _mamba2_state(r)
    if any(r.data.get(k) is not None for k in MAMBA_FIELDS) or r.model_type == "jamba":
        hidden = r.integer("hidden_size")
        expand, d_state, d_conv = (r.integer(k) for k in MAMBA_FIELDS)
        missing = [k for k, v in zip(("hidden_size", *MAMBA_FIELDS), (hidden, expand, d_state, d_conv)) if v is None]
        if missing:
            r.fail(f"Mamba layers need {', '.join(missing)}")
        inner = expand * hidden
        return "mamba", with_state_dtype(r, {
            "type": "none",
            "state_elements": inner * d_state + inner * d_conv,
            "conv_channels": inner, "conv_kernel": d_conv, "mixer": "mamba",
            "description": (
                f"Mamba layer: SSM state d_inner x d_state = {inner} x {d_state} = {inner * d_state} "
                f"plus conv state d_inner x d_conv = {inner} x {d_conv} = {inner * d_conv}"
            ),
        }, "Mamba")
    r.fail(
        "some layers have no KV cache (linear attention or Mamba), but the config has neither "
        f"Gated DeltaNet fields ({', '.join(DELTANET_FIELDS)}) nor Mamba fields ({', '.join(MAMBA_FIELDS)})"
    )


# --------------------------------------------------------------------------- Mamba2


# config.json dtype names -> kvcalc's, for mamba_ssm_cache_dtype and the model dtype beside it
STATE_DTYPES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def _mamba2_state(r: Reader) -> tuple[str, dict]:
    """A Mamba2 layer's constant state, as transformers allocates it (NemotronH, GraniteMoeHybrid,
    Bamba): SSM state heads x head_dim x d_state, and a conv state over the conv channels
    (heads x head_dim + 2 x n_groups x d_state) x conv_kernel. vLLM keeps conv_kernel - 1
    columns of the conv state instead (a note says so)."""
    heads = r.integer("mamba2_heads", default=False)
    head_dim = _mamba2_head_dim(r, heads)
    d_state, groups, kernel = (r.integer(c, default=False) for c in ("mamba2_state", "mamba2_groups", "mamba2_conv"))
    missing = [r.describe(c) for c, v in (("mamba2_state", d_state), ("mamba2_groups", groups),
                                           ("mamba2_conv", kernel)) if v is None]
    if missing:
        r.fail(f"Mamba2 layers need {', '.join(missing)}")
    inner = heads * head_dim
    _check_expand(r, inner)
    ssm, conv_dim = heads * head_dim * d_state, inner + 2 * groups * d_state
    conv = conv_dim * kernel
    description = (
        f"Mamba2 layer: SSM state {heads} heads x {head_dim} x {d_state} = {ssm} plus conv state "
        f"({inner} + 2 x {groups} groups x {d_state} = {conv_dim} channels) x kernel {kernel} = {conv}"
    )
    note_once(r, (
        f"inferred: Mamba2 conv state holds conv_kernel ({kernel}) columns, as transformers allocates "
        f"it; vLLM keeps conv_kernel - 1 ({kernel - 1}), {conv_dim} elements less per Mamba2 layer"
    ))
    kind = {"type": "none", "state_elements": ssm + conv, "conv_channels": conv_dim, "conv_kernel": kernel,
            "mixer": "mamba2", "description": description}
    return "mamba2", with_state_dtype(r, kind, "Mamba2")


def _mamba2_head_dim(r: Reader, heads: int) -> int:
    if r.model_type == "zamba2":  # Zamba2Config.__post_init__ sets it, whatever config.json says
        expand, hidden = r.data.get("mamba_expand", 2), r.integer("hidden_size")
        if not isinstance(expand, int) or isinstance(expand, bool) or hidden is None or (expand * hidden) % heads:
            r.fail("Zamba2's Mamba2 head width is mamba_expand x hidden_size / n_mamba_heads, which must divide")
        if "mamba_expand" not in r.data:
            r.notes.append("inferred: mamba_expand 2 (Zamba2Config's default)")
        head_dim = expand * hidden // heads
        stated = r.data.get("mamba_headdim")
        if stated is not None and stated != head_dim:
            r.notes.append(f"ignored: mamba_headdim {shown_json(stated)}: Zamba2Config sets it to mamba_expand x "
                           f"hidden_size / n_mamba_heads = {head_dim}")
        r.notes.append(f"inferred: Mamba2 head width = mamba_expand x hidden_size / n_mamba_heads = {expand} x "
                       f"{hidden} / {heads} = {head_dim} (as Zamba2Config sets mamba_headdim)")
        return head_dim
    if r.model_type == "falcon_h1":
        return _falcon_h1_head_dim(r, heads)
    if r.data.get("mamba_d_head") == "auto":  # GraniteMoeHybrid / Bamba: expand x hidden / heads
        expand, hidden = r.integer("mamba_expand", default=False), r.integer("hidden_size")
        if expand is None or hidden is None or (expand * hidden) % heads:
            r.fail("mamba_d_head \"auto\" needs mamba_expand x hidden_size divisible by mamba_n_heads")
        r.notes.append(f"inferred: mamba_d_head = mamba_expand x hidden_size / mamba_n_heads = "
                       f"{expand} x {hidden} / {heads} = {expand * hidden // heads}")
        return expand * hidden // heads
    head_dim = r.integer("mamba2_head_dim", default=False)
    if head_dim is None:
        r.fail(f"Mamba2 layers need {r.describe('mamba2_head_dim')}")
    return head_dim


def _falcon_h1_head_dim(r: Reader, heads: int) -> int:
    """FalconH1Config: the mixer is mamba_d_ssm wide (mamba_expand x hidden_size when it is null);
    mamba_d_head "auto" is that width / mamba_n_heads, and heads x mamba_d_head must equal it."""
    d_ssm = r.data.get("mamba_d_ssm", 1024)
    if d_ssm is None:
        expand, hidden = r.data.get("mamba_expand", 2), r.integer("hidden_size")
        d_ssm = expand * hidden if isinstance(expand, int) and hidden else None
    if not isinstance(d_ssm, int) or isinstance(d_ssm, bool) or d_ssm < 1:
        r.fail(f"mamba_d_ssm {shown_json(d_ssm)} is not a whole number (nor mamba_expand x hidden_size)")
    if "mamba_d_ssm" not in r.data:
        r.notes.append("inferred: mamba_d_ssm 1024 (FalconH1Config's default)")
    head = r.data.get("mamba_d_head", "auto")
    if head == "auto":
        if d_ssm % heads:
            r.fail(f"mamba_d_head \"auto\" needs mamba_n_heads {heads} to divide the mixer width {d_ssm}")
        r.notes.append(f"inferred: mamba_d_head = mixer width / mamba_n_heads = {d_ssm} / {heads} = {d_ssm // heads}")
        return d_ssm // heads
    head = r.integer("mamba2_head_dim", default=False)
    if head is None or head * heads != d_ssm:
        r.fail(f"mamba_n_heads x mamba_d_head ({heads} x {shown_json(r.data.get('mamba_d_head'))}) must equal the "
               f"mixer width {d_ssm}, as FalconH1Config requires")
    return head


def _check_expand(r: Reader, inner: int) -> None:
    """NemotronH sizes its Mamba2 mixer by heads x head_dim; an expand that says otherwise is
    not what the layers are built with (Nemotron-3-Nano: expand 2 x 2688 vs 64 x 64)."""
    for key in ("expand", "mamba_expand"):
        expand = r.data.get(key)
        if isinstance(expand, int) and not isinstance(expand, bool) and isinstance(r.data.get("hidden_size"), int):
            if expand * r.data["hidden_size"] != inner:
                r.notes.append(
                    f"ignored: {key} {expand}: the Mamba2 mixer is heads x head_dim = {inner} wide, "
                    f"not {key} x hidden_size = {expand * r.data['hidden_size']}"
                )


# The keys a config.json names its recurrent (SSM) state's dtype with, and who reads each:
# - mamba_ssm_dtype: Qwen3.5 / Qwen3.6 (Gated DeltaNet, "float32" in every released config) and
#   Kimi's KDA configs. vLLM's Qwen3.5 config hook copies it into cache_config.mamba_ssm_cache_dtype
#   while that is "auto"; SGLang's configs/mamba_utils.py (mamba2_state_dtype) reads it from the
#   config or its text_config for every linear-attention and Mamba2 model.
# - mamba_ssm_cache_dtype: Nemotron-H (NemotronHConfig, default "float32"; vLLM reads it too).
# The conv part of the state stays in the model dtype (vLLM's mamba_cache_dtype "auto"; transformers
# allocates it in the model dtype; SGLang's SGLANG_MAMBA_CONV_DTYPE default is bfloat16).
STATE_DTYPE_KEYS = ("mamba_ssm_dtype", "mamba_ssm_cache_dtype")
# where other engines keep an undeclared state otherwise, by mixer (said in the note)
ENGINE_STATE_DEFAULTS = {
    "Gated DeltaNet": "; SGLang keeps it in float32 unless mamba_ssm_dtype says otherwise, and transformers' "
                      "Gated DeltaNet computes it in float32 (twice the bytes)",
    "Mamba2": "; SGLang keeps it in float32 unless mamba_ssm_dtype says otherwise (twice the bytes in bf16 models)",
    "Mamba": " and transformers allocates it",
}


def with_state_dtype(r: Reader, kind: dict, mixer: str) -> dict:
    """``kind`` with its recurrent state in the dtype the config names (the conv part in the model's).

    Absent both keys the state is in the model dtype, as transformers allocates Mamba and Mamba2
    states and as vLLM keeps them ("auto"); a note names the engines that differ."""
    ssm_dtype = r.once("state_dtype", _state_dtype)
    model = _model_dtype(r)
    if ssm_dtype is None:
        note_once(r, (
            f"inferred: the {mixer} recurrent state is kept in the model dtype (no mamba_ssm_dtype or "
            "mamba_ssm_cache_dtype in config.json), as vLLM keeps it by default (\"auto\")"
            + ENGINE_STATE_DEFAULTS.get(mixer, "")
        ))
        return kind
    key, name = ssm_dtype
    if model is None or name == model:
        return {**kind, "state_dtype": name}
    return {**kind, "state_dtype": name, "conv_dtype": model, "description": (
        f"{kind['description']}; the recurrent state is kept in {name} ({key}) and the conv state in {model}"
    )}


def _state_dtype(r: Reader) -> tuple[str, str] | None:
    """(key, dtype) of the recurrent state as config.json names it, or Nemotron-H's class default."""
    found = [(key, r.data.get(key)) for key in STATE_DTYPE_KEYS if r.data.get(key) is not None]
    if not found and r.model_type == "nemotron_h":
        r.notes.append("inferred: mamba_ssm_cache_dtype float32 (NemotronHConfig's default, which vLLM reads too; "
                       "not in config.json)")
        return "mamba_ssm_cache_dtype", "fp32"
    if not found:
        return None
    names = []
    for key, value in found:
        name = STATE_DTYPES.get(str(value).removeprefix("torch."))
        if name is None:
            r.fail(f"{key} {shown_json(value)} is not a dtype kvcalc knows (float32, bfloat16, float16)")
        names.append((key, name))
    if len({name for _, name in names}) > 1:
        r.fail(f"{names[0][0]} and {names[1][0]} name different state dtypes ({found[0][1]}, {found[1][1]}); "
               "kvcalc cannot tell which one the engines use")
    return names[0]


def _model_dtype(r: Reader) -> str | None:
    for source in (r.data, r.outer):
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if value is not None:
                return STATE_DTYPES.get(str(value).removeprefix("torch."))
    return None


# --------------------------------------------------------------------------- own attention per kind

SWA_FIELDS = ("swa_num_attention_heads", "swa_num_key_value_heads", "swa_head_dim", "swa_v_head_dim")
GLOBAL_FIELDS = ("num_global_key_value_heads", "global_head_dim")


def _with_local_global(r: Reader, order: list[str]) -> list:
    """Sliding and full layers that carry their own K/V heads and head sizes: MiMo-V2's swa_*
    fields for the sliding layers, num_global_key_value_heads / global_head_dim for the full
    ones. Each such kind gets its own attention; other configs pass through untouched."""
    swa = any(r.data.get(k) is not None for k in SWA_FIELDS)
    glob = any(r.data.get(k) is not None for k in GLOBAL_FIELDS) and not _is_gemma4(r)
    # transformers' MiMoV2FlashConfig keeps no swa_* fields: its attention gives sliding layers
    # twice num_key_value_heads, as MiMo-V2-Flash's own config states in swa_num_key_value_heads
    doubled = r.model_type == "mimo_v2_flash" and r.data.get("swa_num_key_value_heads") is None
    if not (swa or glob or doubled):
        return order
    if r.data.get("kv_lora_rank") is not None:
        r.fail("swa_* or global_* head fields beside MLA's kv_lora_rank: kvcalc cannot tell which layers are MLA")
    model = model_attention(r)
    heads, kv, head_dim = model["heads"], model["kv_heads"], model["head_dim"]
    v_dim = r.integer("v_head_dim", default=False)
    full = _dense(r, heads, r.integer("num_global_key_value_heads", default=False) or kv,
                  r.integer("global_head_dim", default=False) or head_dim, v_dim)
    local_kv = r.integer("swa_num_key_value_heads", default=False) or kv
    if doubled:
        local_kv = 2 * kv
        r.notes.append(
            f"inferred: sliding layers cache 2 x num_key_value_heads = {local_kv} KV heads (no "
            "swa_num_key_value_heads; transformers' MiMoV2Flash attention doubles them there)"
        )
    local = _dense(
        r, r.integer("swa_num_attention_heads", default=False) or heads,
        local_kv,
        r.integer("swa_head_dim", default=False) or head_dim,
        r.integer("swa_v_head_dim", default=False) or v_dim,
    )
    _window_size_note(r)
    out: list = []
    for token in order:
        if token == "full":
            out.append(("full", {"type": "full", "attention": full}))
        elif token == "sliding":
            window = r.once("window", _window)
            if window is None:
                note_once(r, "inferred: sliding layers hold the whole context (no sliding_window applies)")
                out.append(("full_local", {"type": "full", "attention": local}))
            else:
                out.append(("sliding", {"type": "sliding", "window": window, "attention": local}))
        else:
            out.append(token)
    return out


def _window_size_note(r: Reader) -> None:
    """MiMo-V2 states the window twice; transformers 5.24 reads sliding_window_size as the
    tokens before the query and attends to one more, SGLang's reference does the same."""
    size = r.data.get("sliding_window_size")
    window = r.data.get("sliding_window")
    if size is None:
        return
    if window is not None and window != size:
        r.notes.append(f"ignored: sliding_window_size {shown_json(size)} (sliding_window {shown_json(window)} wins)")
    if isinstance(size, int):
        r.notes.append(
            f"inferred: sliding layers hold {window if isinstance(window, int) else size} tokens; transformers "
            f"5.24 attends to sliding_window_size {size} earlier tokens plus the current one ({size + 1})"
        )


def _dense(r: Reader, heads: int, kv: int, head_dim: int, v_dim: int | None) -> dict:
    if heads % kv:
        r.fail(f"{kv} KV heads do not divide {heads} query heads")
    return dense_dict(heads, kv, head_dim, v_dim)


# --------------------------------------------------------------------------- per_layer_config (Gemma-4)

GEMMA4_EVERY = 6  # Gemma4TextConfig's fixed sliding_window_pattern (configuration_gemma4.py 189)
GEMMA4_GLOBAL_HEAD_DIM = 512  # Gemma4TextConfig's global_head_dim when a config leaves it out
PER_LAYER_FIELDS = ("head_dim", "num_key_value_heads")


def _is_gemma4(r: Reader) -> bool:
    return r.model_type.startswith("gemma4")


def _with_per_layer_attention(r: Reader, order: list) -> list:
    """Layers with their own head size or KV heads, as transformers' Gemma-4 builds them: an
    explicit per_layer_config ({"5": {"head_dim": 512, "num_key_value_heads": 2}, ...}) decides;
    without one, Gemma-4's full layers take global_head_dim (512 by default) and, only with
    attention_k_eq_v, num_global_key_value_heads."""
    shared = r.data.get("num_kv_shared_layers")
    if isinstance(shared, int) and not isinstance(shared, bool) and shared > 0:
        r.fail(f"num_kv_shared_layers {shared}: the last {shared} layers reuse earlier layers' K/V and keep none "
               "of their own (and the layers they read keep the whole context); kvcalc counts a cache in every layer")
    overrides = _per_layer_config(r, len(order)) if r.data.get("per_layer_config") is not None else (
        _gemma4_globals(r, order) if _is_gemma4(r) else None)
    if not overrides:
        return order
    model = model_attention(r)
    if model["kind"] == "mla":
        r.fail("per_layer_config or Gemma-4 global heads beside MLA's kv_lora_rank: kvcalc reads them for dense "
               "attention only")
    heads, kv, head_dim = model["heads"], model["kv_heads"], model["head_dim"]
    if _is_gemma4(r):
        _gemma4_homogeneous(r, order, overrides, kv, head_dim)
    out = list(order)
    for index, override in sorted(overrides.items()):
        token = order[index]
        if not isinstance(token, str) or token not in ("full", "sliding", "chunked"):
            r.fail(f"per_layer_config gives layer {index} its own attention, but it is not an attention layer")
        name, kind = _kind(r, token)
        layer_kv, layer_dim = override.get("num_key_value_heads", kv), override.get("head_dim", head_dim)
        if (layer_kv, layer_dim) == (kv, head_dim):
            continue
        attention = _dense(r, heads, layer_kv, layer_dim, None)
        out[index] = (f"{name}_kv{layer_kv}_d{layer_dim}", {**kind, "attention": attention})
    k_eq_v = r.data.get("attention_k_eq_v")
    if k_eq_v is True:
        r.notes.append(
            "inferred: attention_k_eq_v: full layers take V from K's projection; transformers still caches K and V "
            "apart, as kvcalc counts (an engine that kept one tensor would hold half on those layers)"
        )
    return out


def _gemma4_homogeneous(r: Reader, order: list, overrides: dict[int, dict], kv: int, head_dim: int) -> None:
    """transformers' Gemma-4 reads one config per layer type (per_layer_config[layer_type]: modeling_gemma4.py
    1096, modeling_gemma4_unified.py 203), which raises unless every layer of that type has the same overrides
    (integrations/heterogeneity/configuration_utils.py 234-242; overrides equal to the global value are dropped
    first, 137-147): layers of one type with different heads are a model transformers 5.24 cannot build."""
    seen: dict[str, tuple[int, tuple[int, int]]] = {}
    for index, token in enumerate(order):
        if token not in ("full", "sliding"):
            continue
        own = overrides.get(index, {})
        shape = (own.get("num_key_value_heads", kv), own.get("head_dim", head_dim))
        first = seen.setdefault(token, (index, shape))
        if first[1] != shape:
            kind = f"{token}_attention"
            r.fail(f"per_layer_config gives the {kind} layers different heads (layer {first[0]}: {first[1][0]} KV "
                   f"heads of {first[1][1]}, layer {index}: {shape[0]} of {shape[1]}); transformers 5.24 cannot "
                   f"build it ('Layer type {kind} is not homogeneous across layers')")


def _per_layer_config(r: Reader, count: int) -> dict[int, dict]:
    table = r.data["per_layer_config"]
    if not isinstance(table, dict):
        r.fail(f"per_layer_config must map layer numbers to objects, got {shown_json(table)}")
    overrides: dict[int, dict] = {}
    for key, value in table.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and int(key) < count):
            r.fail(f"per_layer_config key {shown_json(key)} is not a layer number below {count}")
        if not isinstance(value, dict):
            r.fail(f"per_layer_config[{key}] must be an object, got {shown_json(value)}")
        unknown = sorted(set(value) - set(PER_LAYER_FIELDS))
        if unknown:
            r.fail(f"per_layer_config[{key}] sets {', '.join(unknown)}, which kvcalc does not read "
                   f"(it reads {', '.join(PER_LAYER_FIELDS)})")
        for field, number in value.items():
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                r.fail(f"per_layer_config[{key}].{field} must be a positive whole number, got {shown_json(number)}")
        overrides[int(key)] = value
    for field in ("global_head_dim", "num_global_key_value_heads"):
        if r.data.get(field) is not None:
            r.notes.append(f"ignored: {field} {shown_json(r.data[field])}: per_layer_config decides each layer")
    return overrides


def _gemma4_globals(r: Reader, order: list) -> dict[int, dict]:
    global_dim = r.integer("global_head_dim", default=False)
    if global_dim is None:
        global_dim = GEMMA4_GLOBAL_HEAD_DIM
        r.notes.append(f"inferred: global_head_dim = {global_dim} (transformers' default for Gemma-4; not in "
                       "config.json): full layers cache heads of this size")
    override = {"head_dim": global_dim}
    global_kv = r.integer("num_global_key_value_heads", default=False)
    if global_kv is not None:
        if r.data.get("attention_k_eq_v") is True:
            override["num_key_value_heads"] = global_kv
        else:
            r.notes.append(f"ignored: num_global_key_value_heads {global_kv}: transformers' Gemma-4 uses it only "
                           "with attention_k_eq_v true")
    return {i: override for i, token in enumerate(order) if token == "full"}


# --------------------------------------------------------------------------- block_configs

# The keys of a DeciLM / Nemotron-NAS block's "attention" object (transformers-style configs of
# Llama-3.1-Nemotron-51B, Llama-3.3-Nemotron-Super-49B, Llama-3.1-Nemotron-Ultra-253B).
DECI_ATTENTION_KEYS = frozenset({
    "n_heads_in_group", "no_op", "replace_with_linear", "num_sink_tokens", "sparsify",
    "unshifted_sink", "use_prefill_window_in_sink_attention", "window_length",
})


def block_configs_order(r: Reader, count: int) -> list[tuple[str, dict]]:
    """One (name, kind) per layer from block_configs: no_op and replace_with_linear blocks keep
    no cache; the others cache num_attention_heads / n_heads_in_group KV heads, over a window
    where window_length says so. Each distinct shape is one kind."""
    blocks = r.data["block_configs"]
    if not isinstance(blocks, list) or len(blocks) != count:
        r.fail(f"block_configs must list one block per layer ({count}), got {shown_json(blocks)}")
    model = model_attention(r)
    if model["kind"] == "mla":
        r.fail("block_configs beside MLA's kv_lora_rank: kvcalc reads per-block heads for dense attention only")
    heads, head_dim = model["heads"], model["head_dim"]
    order: list[tuple[str, dict]] = []
    for i, block in enumerate(blocks):
        attention = block.get("attention") if isinstance(block, dict) else None
        if not isinstance(attention, dict):
            r.fail(f"block_configs[{i}].attention must be an object, got {shown_json(attention)}")
        where = f"block_configs[{i}].attention"
        for key in sorted(set(attention) - DECI_ATTENTION_KEYS):
            if attention[key] is not None:
                note_once(r, unread_note(f"block_configs[].attention.{key}", attention[key]))
        order.append(_deci_block(r, attention, where, heads, head_dim))
    _deci_notes(r, blocks)
    return order


def _deci_block(r: Reader, attention: dict, where: str, heads: int, head_dim: int) -> tuple[str, dict]:
    if attention.get("no_op") is True:
        return "no_attention", {"type": "none", "description": "block without attention (no_op): no cache"}
    if attention.get("replace_with_linear") is True:
        return "linear_replaced", {
            "type": "none", "description": "attention replaced by a linear layer (replace_with_linear): no cache",
        }
    if attention.get("num_sink_tokens") is not None:
        r.fail(f"{where}.num_sink_tokens {shown_json(attention['num_sink_tokens'])}: sink attention keeps "
               "sink tokens beside a window, which kvcalc cannot describe")
    group = attention.get("n_heads_in_group")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1 or heads % group:
        r.fail(f"{where}.n_heads_in_group must be a whole number dividing num_attention_heads "
               f"{heads}, got {shown_json(group)}")
    kv = heads // group
    dense = _dense(r, heads, kv, head_dim, None)
    window = attention.get("window_length")
    if window is None:
        return f"full_kv{kv}", {"type": "full", "attention": dense}
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        r.fail(f"{where}.window_length must be a positive whole number, got {shown_json(window)}")
    return f"sliding_kv{kv}_w{window}", {"type": "sliding", "window": window, "attention": dense}


def _deci_notes(r: Reader, blocks: list) -> None:
    attentions = [b["attention"] for b in blocks]
    skipped = sum(1 for a in attentions if a.get("no_op") is True)
    linear = sum(1 for a in attentions if a.get("no_op") is not True and a.get("replace_with_linear") is True)
    r.notes.append(
        f"inferred: per-layer attention from block_configs: {len(blocks) - skipped - linear} of "
        f"{len(blocks)} layers cache K/V (num_attention_heads / n_heads_in_group KV heads each), "
        f"{skipped} have no attention (no_op), {linear} replace it with a linear layer"
    )
    if r.data.get("num_key_value_heads") is None:
        r.notes.append("ignored: the model-wide KV head count: each block's n_heads_in_group decides")
    if any(a.get("sparsify") is not None for a in attentions):
        r.notes.append("ignored: block_configs[].attention.sparsify: weight sparsity, not what is cached")
    if any(a.get(k) is True for a in attentions for k in ("unshifted_sink", "use_prefill_window_in_sink_attention")):
        r.notes.append("ignored: block_configs sink switches: no block has num_sink_tokens")


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


