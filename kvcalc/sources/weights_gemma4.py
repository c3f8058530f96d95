"""Weights of Gemma-4: the text models and the multimodal checkpoints with their vision and audio towers.

See weights_parts for the building blocks, and weights_llama_like's docstring for what a family module states
(DEFAULTS, DECODERS, BUILDERS, NOT_DERIVED); config_weights merges them.

Shapes are transformers 5.24's: models/gemma4/modeling_gemma4.py (G below) and
models/gemma4_unified/modeling_gemma4_unified.py (U). The config reader (config_layers.py,
_with_per_layer_attention) gives a layer whose head size or KV heads differ from the model's its own kind,
named "<sliding|full>_kv<KV heads>_d<head size>"; _layer_kinds below names the kinds the same way from the
same fields, so the weights block can say which kinds lose v_proj (attention_k_eq_v).
"""

from __future__ import annotations

import json

from kvcalc.sources.weights_parts import Decoder, Fields, Skip, base, wrapper_tie

_COMMON = {"tie_word_embeddings": True, "attention_bias": False, "attention_k_eq_v": False,
           "num_kv_shared_layers": 0, "vocab_size": 262144, "global_head_dim": 512}
DEFAULTS: dict[str, dict[str, object]] = {
    # Gemma4TextConfig (configuration_gemma4.py 150-181; global_head_dim 512 in __post_init__ 208)
    "gemma4_text": {**_COMMON, "vocab_size_per_layer_input": 262144, "hidden_size_per_layer_input": 256,
                    "enable_moe_block": False},
    # Gemma4UnifiedTextConfig (configuration_gemma4_unified.py 123-149, 176): no per-layer inputs, no MoE
    "gemma4_unified_text": dict(_COMMON),
}
DEFAULTS["gemma4"] = DEFAULTS["gemma4_text"]  # a wrapper whose text_config names no model_type
DEFAULTS["gemma4_unified"] = DEFAULTS["gemma4_unified_text"]
DECODERS: dict[str, Decoder] = {}
NOT_DERIVED: dict[str, str] = {}
COUNTED_WRAPPERS = frozenset({"gemma4", "gemma4_unified"})  # their towers and embedders are counted here

# Gemma4VisionConfig, Gemma4AudioConfig (configuration_gemma4.py 299-315, 55-75) and Gemma4UnifiedVisionConfig,
# Gemma4UnifiedAudioConfig (configuration_gemma4_unified.py 256-261, 46) class defaults
VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 16, "num_attention_heads": 12,
          "num_key_value_heads": 12, "head_dim": 64, "patch_size": 16, "position_embedding_size": 10240,
          "use_clipped_linears": False, "standardize": False}
AUDIO = {"hidden_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 8, "subsampling_conv_channels": [128, 32],
         "conv_kernel_size": 5, "output_proj_dims": 1536, "use_clipped_linears": True}
UNIFIED_VISION = {"patch_size": 16, "pooling_kernel_size": 3, "mm_embed_dim": 3840, "mm_posemb_size": 1120,
                  "output_proj_dims": 3840}
UNIFIED_AUDIO_EMBED = 640  # audio_embed_dim; hidden_size and output_proj_dims are its aliases

_TYPES = {"sliding_attention": "sliding", "full_attention": "full"}


def _layer_kinds(f: Fields, attention: dict, count: int, notes: list[str]) -> list[tuple[str, str, int, int]]:
    """Per layer: (transformers' layer type, kvcalc's kind name, KV heads, head size).

    transformers: layer_types, or every 6th layer full when absent, the last layer forced full
    (configuration_gemma4.py 188-199); full layers take global_head_dim and, with attention_k_eq_v,
    num_global_key_value_heads unless per_layer_config is given (208-221); each attention reads its layer's
    (G 1155-1157)."""
    types = f.data.get("layer_types")
    if types is None:  # a sliding_window_pattern is not read, by transformers nor the config reader (noted there)
        types = ["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(count)]
    if not isinstance(types, list) or len(types) != count or any(t not in _TYPES for t in types):
        raise Skip(f"layer_types {json.dumps(types)[:60]} is not {count} of sliding_attention / full_attention")
    types = types[:-1] + ["full_attention"]
    windowless = f.data.get("use_sliding_window") is False or (
        "sliding_window" in f.data and f.data["sliding_window"] in (None, 0))
    if windowless:
        raise Skip("sliding_window is null: kvcalc reads the sliding layers as full ones, which the weights of "
                   "attention_k_eq_v's full layers need told apart")
    kv, dim = attention["kv_heads"], attention["head_dim"]
    table = f.data.get("per_layer_config")
    overrides: dict[int, dict] = {}
    if table is not None:
        if not isinstance(table, dict):
            raise Skip("per_layer_config is not an object")
        for key, value in table.items():
            if not (isinstance(key, str) and key.isdigit() and int(key) < count and isinstance(value, dict)
                    and set(value) <= {"head_dim", "num_key_value_heads"}):
                raise Skip(f"per_layer_config[{json.dumps(key)}] is not a layer's head_dim / num_key_value_heads")
            overrides[int(key)] = value
    else:
        glob = {"head_dim": f.integer("global_head_dim")}
        if f.flag("attention_k_eq_v") and f.present("num_global_key_value_heads"):
            glob["num_key_value_heads"] = f.integer("num_global_key_value_heads")
        overrides = {i: glob for i, t in enumerate(types) if t == "full_attention"}
    layers = []
    shapes: dict[str, tuple[int, int]] = {}
    for i, kind in enumerate(types):
        own = overrides.get(i, {})
        layer_kv, layer_dim = own.get("num_key_value_heads", kv), own.get("head_dim", dim)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (layer_kv, layer_dim)):
            raise Skip(f"per-layer heads of layer {i} are not whole numbers")
        if shapes.setdefault(kind, (layer_kv, layer_dim)) != (layer_kv, layer_dim):  # the reader refuses it too
            raise Skip(f"per_layer_config: the {kind} layers differ (transformers cannot build it)")
        name = _TYPES[kind] if (layer_kv, layer_dim) == (kv, dim) else f"{_TYPES[kind]}_kv{layer_kv}_d{layer_dim}"
        layers.append((kind, name, layer_kv, layer_dim))
    return layers


def _gemma4(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Gemma-4 and Gemma-4-Unified decoders (Gemma4ForCausalLM, the language model of
    Gemma4ForConditionalGeneration; the Unified ones alike). Per layer (G 1331-1358, U 455-468):
    - attention (G 1165-1189): q_proj heads x d, k_proj and v_proj KV x d (biases with attention_bias), o_proj;
      q_norm and k_norm d wide (v_norm has no weight); full layers' d and KV heads their own (_layer_kinds).
      attention_k_eq_v drops v_proj on full layers (G 1178-1185): those kinds' q, k and o are in
      layer_parameters (and the kind in shared_attention, so the schema's own attention is not counted twice),
      their norms and biases in extra_parameters.
    - four RMSNorms, a gated MLP intermediate_size wide (G 1051-1062), a layer_scalar buffer of 1 (G 1343).
    - with hidden_size_per_layer_input p (Gemma-4 only, G 1345-1350): per_layer_input_gate hidden x p,
      per_layer_projection p x hidden, post_per_layer_input_norm; and once (G 1566-1580) embed_tokens_per_layer
      vocab_size_per_layer_input x layers p, per_layer_model_projection hidden x layers p, a norm p.
    - with enable_moe_block (Gemma-4 only, G 1352-1358, 1255-1305): experts gate_up 2m x hidden and down hidden
      x m each, a router proj hidden x experts with a scale (hidden) and per_expert_scale (experts), three more
      RMSNorms; the dense MLP runs beside them, stated as one shared expert of intermediate_size.
    Then the vision and audio parts of a multimodal checkpoint (_towers)."""
    unified = f.model_type.startswith("gemma4_unified")
    if f.outer is not f.data and f.outer.get("model_type") not in (None, "gemma4_unified" if unified else "gemma4"):
        raise Skip(f"a {f.outer.get('model_type')!r} wrapper around a {f.model_type!r} language model")
    if attention["kind"] == "mla":
        raise Skip("Gemma-4 attention that is MLA")
    shared = f.integer("num_kv_shared_layers", least=0)
    if shared:
        raise Skip(f"num_kv_shared_layers {shared}: those layers have no k_proj, v_proj or k_norm of their own")
    heads = attention["heads"]
    bias = f.flag("attention_bias")
    k_eq_v = f.flag("attention_k_eq_v")
    layers = _layer_kinds(f, attention, count, notes)
    block = base(f, "rms", 4)
    if f.outer is not f.data:  # the wrapper's tie_word_embeddings decides, not text_config's (checked)
        wrapper_tie(f, True, block, notes)
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias)
    extra = count  # each layer's layer_scalar buffer
    parts = [f"{count} layer_scalar buffers"]
    layer_parameters: dict[str, int] = {}
    if k_eq_v:
        full = [(name, kv, d) for kind, name, kv, d in layers if kind == "full_attention"]
        small = 0
        for name, kv, d in full:
            layer_parameters[name] = hidden * heads * d + hidden * kv * d + heads * d * hidden
            small += 2 * d + ((heads + kv) * d + hidden if bias else 0)
        block["shared_attention"] = sorted({name for name, _, _ in full})
        extra += small
        parts.append(f"q/k norms{' and biases' if bias else ''} of the {len(full)} full layers without v_proj "
                     f"({small})")
        notes.append(f"inferred: attention_k_eq_v: full layers ({len(full)}) have no v_proj; their q, k and o "
                     "are counted as layer matrices beside the schema's attention")
    norms = 4
    inner = f.integer("intermediate_size")
    ple = 0  # an explicit null switches the per-layer inputs off, as 0 does (G 1345, 1566)
    if not unified and not ("hidden_size_per_layer_input" in f.data and f.data["hidden_size_per_layer_input"] is None):
        ple = f.integer("hidden_size_per_layer_input", least=0)
    if ple:
        norms += 1
        for name in {name for _, name, _, _ in layers}:  # per layer of each kind
            layer_parameters[name] = layer_parameters.get(name, 0) + 2 * hidden * ple
        table = f.integer("vocab_size_per_layer_input") * count * ple
        once = table + hidden * count * ple + ple
        extra += once
        parts.append(f"per-layer input embeddings {table} (vocab_size_per_layer_input x {count} x {ple}), their "
                     f"projection and norm {once - table}")
    if not unified and f.flag("enable_moe_block"):
        experts = f.integer("num_experts")
        block["moe"] = {"experts": experts, "experts_per_token": f.integer("top_k_experts"),
                        "intermediate_size": f.integer("moe_intermediate_size"),
                        "shared_experts": 1, "shared_intermediate_size": inner, "router_bias": True}
        block["mlp"] = None
        norms += 4  # three RMSNorms and the router's scale, each hidden wide
        notes.append("inferred: Gemma-4's dense MLP runs beside the experts in every layer: counted as one shared "
                     "expert; the router's per_expert_scale as its per-expert bias, its scale as a norm")
    else:
        block["mlp"] = {"kind": "gated", "intermediate_size": inner}
    block["norms_per_layer"] = norms
    if layer_parameters:
        block["layer_parameters"] = layer_parameters
    if f.outer is not f.data:
        towers = _towers(f, hidden, unified, notes)
        if towers:
            extra += towers
            parts.append(f"vision and audio parts {towers}")
    block["extra_parameters"] = extra
    notes.append(f"inferred: extra_parameters {extra} = " + " + ".join(parts))
    return block


def _whole(v: dict, key: str, defaults: dict, used: list[str], least: int = 1) -> int:
    value = v.get(key)
    if value is None:
        value = defaults[key]
        used.append(f"{key} {json.dumps(value)}")
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise Skip(f"{key} is {json.dumps(value)}, not a whole number >= {least}")
    return value


def _switch(v: dict, key: str, defaults: dict, used: list[str]) -> bool:
    value = v.get(key)
    if value is None:
        value = defaults[key]
        used.append(f"{key} {json.dumps(value)}")
    if not isinstance(value, bool):
        raise Skip(f"{key} is {json.dumps(value)}, not true or false")
    return value


def _sub(f: Fields, key: str, model_type: str) -> dict | None:
    v = f.outer.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise Skip(f"{key} is not a JSON object")
    if v.get("model_type", model_type) != model_type:
        raise Skip(f"{key} model_type {v.get('model_type')!r} is not {model_type}")
    return v


def _towers(f: Fields, text_hidden: int, unified: bool, notes: list[str]) -> int:
    total = 0
    if unified:
        v = _sub(f, "vision_config", "gemma4_unified_vision")
        if v is not None:  # Gemma4UnifiedVisionEmbedder (U 825-842) and its Gemma4UnifiedMultimodalEmbedder (U 883-897)
            used: list[str] = []
            patch = (_whole(v, "patch_size", UNIFIED_VISION, used)
                     * _whole(v, "pooling_kernel_size", UNIFIED_VISION, used)) ** 2 * 3
            width, positions = _whole(v, "mm_embed_dim", UNIFIED_VISION, used), _whole(v, "mm_posemb_size",
                                                                                       UNIFIED_VISION, used)
            out = _whole(v, "output_proj_dims", UNIFIED_VISION, used)
            # patch_ln1 and patch_dense with biases, patch_ln2, pos_embedding, pos_norm; the projection
            vision = 2 * patch + patch * width + width + 2 * width + positions * 2 * width + 2 * width
            vision += out * text_hidden
            total += vision
            notes.append(f"inferred: the encoder-free vision embedder {vision} ({patch} pixel values per patch, "
                         f"{width} wide, {positions} positions per axis)" + _used("vision_config", used))
        a = _sub(f, "audio_config", "gemma4_unified_audio")
        if a is not None:  # Gemma4UnifiedMultimodalEmbedder of audio_embed_dim (configuration 50-62)
            given = {a[k] for k in ("audio_embed_dim", "hidden_size", "output_proj_dims") if a.get(k) is not None}
            if len(given) > 1:
                raise Skip("audio_config gives audio_embed_dim, hidden_size and output_proj_dims different values")
            width = given.pop() if given else UNIFIED_AUDIO_EMBED
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise Skip(f"audio_config.audio_embed_dim is {json.dumps(width)}, not a whole number")
            total += width * text_hidden
            notes.append(f"inferred: the audio embedder {width * text_hidden} ({width}-sample frames to "
                         f"{text_hidden})" + ("" if a.get("audio_embed_dim") is not None else
                                              f" (audio_embed_dim {width}: Gemma4UnifiedAudioConfig's)"))
        return total
    v = _sub(f, "vision_config", "gemma4_vision")
    if v is not None:
        total += _vision(v, text_hidden, notes)
    a = _sub(f, "audio_config", "gemma4_audio")
    if a is not None:
        total += _audio(a, text_hidden, notes)
    return total


def _used(where: str, used: list[str]) -> str:
    return f"; {where} class defaults {', '.join(used)}" if used else ""


def _vision(v: dict, text_hidden: int, notes: list[str]) -> int:
    """Gemma4VisionModel (G 2057-2066) and embed_vision (G 2116-2130): the patch embedder's input_proj
    3 patch^2 x h and a 2 x position_embedding_size x h table (G 583-584); per layer q, k, v, o without biases,
    q_norm and k_norm head_dim wide (G 905-912), a gated MLP (G 693-695), four RMSNorms (G 970-973), and with
    use_clipped_linears four scalar buffers on each of the seven linears (G 178-182); std_bias and std_scale
    with standardize (G 2063-2065); embed_vision's projection h x the text hidden size (its norm has no weight)."""
    used: list[str] = []
    h, inner, layers = (_whole(v, k, VISION, used) for k in ("hidden_size", "intermediate_size", "num_hidden_layers"))
    heads, kv, d = (_whole(v, k, VISION, used) for k in ("num_attention_heads", "num_key_value_heads", "head_dim"))
    patch, positions = _whole(v, "patch_size", VISION, used), _whole(v, "position_embedding_size", VISION, used)
    clipped, standardize = _switch(v, "use_clipped_linears", VISION, used), _switch(v, "standardize", VISION, used)
    layer = (h * heads * d + 2 * h * kv * d + heads * d * h + 2 * d + 3 * h * inner + 4 * h
             + (7 * 4 if clipped else 0))
    tower = 3 * patch * patch * h + 2 * positions * h + layers * layer + (2 * h if standardize else 0)
    projection = h * text_hidden
    notes.append(f"inferred: the vision tower {tower} (hidden {h}, {layers} layers, MLP {inner}, {heads} heads of "
                 f"{d}) and its projection {projection}" + _used("vision_config", used))
    return tower + projection


def _audio(a: dict, text_hidden: int, notes: list[str]) -> int:
    """Gemma4AudioModel (G 1972-1981) and embed_audio (G 2116-2130): two subsampling convolutions 3 x 3 without
    biases, each with a LayerNorm weight (G 356-365), input_proj_linear (c0 // 4) c1 x h (G 394-395); per
    Conformer layer (G 521-533) two feed-forwards h x 4h and 4h x h with two RMSNorms (G 416-420), attention
    q, k, v (heads x h // heads each), post h x h, relative_k_proj, per_dim_scale (G 266-272), a light conv
    linear_start h x 2h, a depthwise conv h x kernel, linear_end h x h and two RMSNorms (G 485-496), three
    RMSNorms; with use_clipped_linears four scalar buffers on each of the ten clippable linears; output_proj
    h x output_proj_dims with a bias; embed_audio's projection output_proj_dims x the text hidden size."""
    used: list[str] = []
    h, layers, heads = (_whole(a, k, AUDIO, used) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads"))
    kernel, out = _whole(a, "conv_kernel_size", AUDIO, used), _whole(a, "output_proj_dims", AUDIO, used)
    clipped = _switch(a, "use_clipped_linears", AUDIO, used)
    channels = a.get("subsampling_conv_channels")
    if channels is None:
        channels = AUDIO["subsampling_conv_channels"]
        used.append(f"subsampling_conv_channels {json.dumps(channels)}")
    if not (isinstance(channels, list) and len(channels) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)):
        raise Skip(f"audio_config.subsampling_conv_channels is {json.dumps(channels)}, not two whole numbers")
    c0, c1 = channels
    width = heads * (h // heads)
    subsample = 9 * c0 + c0 + 9 * c0 * c1 + c1 + (c0 // 4) * c1 * h
    layer = (2 * (8 * h * h + 2 * h)  # two feed-forwards
             + 3 * h * width + h * h + h * width + h // heads  # q, k, v, post, relative_k_proj, per_dim_scale
             + 2 * h * h + h * kernel + h * h + 2 * h  # light conv
             + 3 * h + (10 * 4 if clipped else 0))
    tower = subsample + layers * layer + h * out + out
    projection = out * text_hidden
    notes.append(f"inferred: the audio tower {tower} (hidden {h}, {layers} Conformer layers) and its projection "
                 f"{projection}" + _used("audio_config", used))
    return tower + projection


BUILDERS = {"gemma4_text": _gemma4, "gemma4_unified_text": _gemma4, "gemma4": _gemma4, "gemma4_unified": _gemma4}

__all__ = ["BUILDERS", "COUNTED_WRAPPERS", "DECODERS", "DEFAULTS", "NOT_DERIVED"]
