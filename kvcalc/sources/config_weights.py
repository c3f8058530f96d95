"""A spec's ``weights`` block (what an exact parameter count needs) from a config.json.

Only for families whose module shapes kvcalc knows exactly, as transformers builds them
(``DECODERS`` and ``BUILDERS``): a count from fields alone is either certain or absent.
Where it is absent the notes say why ("Weights not derived from config.json: ..."), and
a hand-written weights block in a preset is the way to supply one. Defaults come from
transformers' config classes (``DEFAULTS``) and are named in one "inferred:" note.

No import of the config reader: it hands over plain dicts (the language model's fields, the whole
config, the attention it built), so the arrow runs one way.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from kvcalc.sources import (
    weights_encoders,
    weights_gemma4,
    weights_hybrids,
    weights_llama_like,
    weights_moe,
    weights_remote,
)
from kvcalc.sources.weights_parts import (
    Decoder,
    Fields,
    Skip,
    base,
    decoder,
    gated,
    mha_width,
    plain,
)
from kvcalc.spec import MoE, Weights

SKIP = "Weights not derived from config.json: "

# transformers' class defaults for the fields read here, per model_type. Sizes (vocab,
# intermediate, experts) have no default: a config without them gets no weights block,
# except Gemma-3's text_config, whose released configs leave vocab_size to the class.
_TIED = {"tie_word_embeddings": True}
_UNTIED = {"tie_word_embeddings": False}
DEFAULTS: dict[str, dict[str, object]] = {
    "llama": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "mistral": _UNTIED,
    "mixtral": _UNTIED,
    "qwen2": _UNTIED,
    "qwen2_moe": {**_UNTIED, "qkv_bias": True, "decoder_sparse_step": 1, "mlp_only_layers": []},
    "qwen3": {**_UNTIED, "attention_bias": False},
    "qwen3_moe": {**_UNTIED, "attention_bias": False, "decoder_sparse_step": 1, "mlp_only_layers": []},
    "gemma": {**_TIED, "attention_bias": False},
    "gemma2": {**_TIED, "attention_bias": False},
    "gemma3_text": {**_TIED, "attention_bias": False, "vocab_size": 262208},
    "phi3": _UNTIED,
    "gpt2": {**_TIED, "add_cross_attention": False},
    "gpt_neox": {**_UNTIED, "attention_bias": True},
    "opt": {
        **_TIED, "enable_bias": True, "do_layer_norm_before": True, "_remove_final_layer_norm": False,
        "layer_norm_elementwise_affine": True,
    },
    "falcon": {**_TIED, "bias": False, "parallel_attn": True},
    "RefinedWeb": _TIED,  # remote code: PretrainedConfig's tie default; the rest must be stated
    "RefinedWebModel": _TIED,
    "deepseek_v2": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "deepseek_v3": {**_UNTIED, "attention_bias": False},
    "deepseek_v32": {**_UNTIED, "attention_bias": False},  # the indexer's weights come with the attention
    "kimi_k2": {**_UNTIED, "attention_bias": False},
    "bert": {"type_vocab_size": 2, "add_cross_attention": False},
}
# MambaConfig, FalconMambaConfig and Mamba2Config (transformers 5.24) defaults
_MAMBA = {"use_bias": False, "use_conv_bias": True, "time_step_rank": "auto"}
DEFAULTS["mamba"] = DEFAULTS["falcon_mamba"] = {**_TIED, **_MAMBA}
DEFAULTS["mamba2"] = {**_UNTIED, **_MAMBA}
DEFAULTS["bloom"] = _TIED  # BloomConfig
DEFAULTS["jamba"] = {  # JambaConfig
    **_UNTIED, "mamba_dt_rank": "auto", "mamba_proj_bias": False, "mamba_conv_bias": True, "mamba_expand": 2,
    "mamba_d_state": 16, "mamba_d_conv": 4, "num_experts": 16, "num_experts_per_tok": 2, "expert_layer_period": 2,
    "expert_layer_offset": 1,
}
DEFAULTS["qwen3_next"] = {**_UNTIED, "attention_bias": False, "decoder_sparse_step": 1, "mlp_only_layers": []}
DEFAULTS["qwen3_5_text"] = {**_UNTIED, "attention_bias": False, "attn_output_gate": True}  # Qwen3_5TextConfig
DEFAULTS["qwen3_5_moe_text"] = DEFAULTS["qwen3_5_text"]  # Qwen3_5MoeTextConfig
DEFAULTS["mpt"] = {**_TIED, "no_bias": True, "expansion_ratio": 4}  # MptConfig
DEFAULTS["gemma3"] = DEFAULTS["gemma3_text"]
# ChatGLMConfig (THUDM's configuration_chatglm.py, remote code); the head is never tied
DEFAULTS["chatglm"] = {"add_bias_linear": False, "add_qkv_bias": False, "post_layer_norm": True, "rmsnorm": True}
REMOTE_CODE = frozenset({"RefinedWeb", "RefinedWebModel"})  # Falcon's trust_remote_code configs
OWNERS = {"chatglm": "ChatGLMConfig's (THUDM's remote code)"}


DECODERS = {
    "llama": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),
    "mistral": Decoder(),
    "mixtral": Decoder(moe="mixtral"),
    "qwen2": Decoder(qkv_bias=True),
    "qwen2_moe": Decoder(qkv_bias="qkv_bias", moe="qwen", shared_expert=True),
    "qwen3": Decoder(bias="attention_bias", qk_norm=True),
    # Qwen3-Next: Qwen3-MoE's blocks with a gated shared expert; its Gated DeltaNet layers and the gate on
    # the attention output are added by _qwen3_next
    "qwen3_next": Decoder(bias="attention_bias", qk_norm=True, moe="qwen", shared_expert=True),
    "qwen3_5_text": Decoder(bias="attention_bias", qk_norm=True),  # dense Qwen3.5; _qwen3_next adds the rest
    # Qwen3.5-MoE (Qwen3_5MoeTextConfig has no decoder_sparse_step or mlp_only_layers: every layer is MoE)
    "qwen3_5_moe_text": Decoder(bias="attention_bias", qk_norm=True, moe="qwen", shared_expert=True,
                                every_layer=True),
    "gemma": Decoder(bias="attention_bias"),
    "gemma2": Decoder(bias="attention_bias", norms=4),
    "gemma3": Decoder(bias="attention_bias", norms=4, qk_norm=True),
    "gemma3_text": Decoder(bias="attention_bias", norms=4, qk_norm=True),
    "phi3": Decoder(),
    "deepseek_v2": Decoder(bias="attention_bias", mlp_bias="mlp_bias", moe="deepseek"),
    "deepseek_v3": Decoder(bias="attention_bias", moe="deepseek"),
    "kimi_k2": Decoder(bias="attention_bias", moe="deepseek"),
}

# Llama-shaped decoders of transformers 5.24 (bias switches and norms read from each modeling file; each family's
# class defaults checked against the model transformers builds, tests/test_hf_config_weights.py)
DECODERS.update({
    "granite": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),
    "granitemoe": Decoder(bias="attention_bias", moe="mixtral"),
    "smollm3": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),
    "helium": Decoder(qkv_bias="attention_bias", mlp_bias="mlp_bias"),
    "seed_oss": Decoder(qkv_bias="attention_bias", out_bias="attention_out_bias", mlp_bias="mlp_bias"),
    "ernie4_5": Decoder(bias="use_bias", mlp_bias="use_bias"),
    "arcee": Decoder(bias="attention_bias", mlp_bias="mlp_bias", mlp_kind="plain"),
    "glm": Decoder(qkv_bias="attention_bias"),
    "glm4": Decoder(qkv_bias="attention_bias", norms=4),
    "cwm": Decoder(mlp_bias="mlp_bias"),
    "exaone4": Decoder(qk_norm=True),
    "olmo2": Decoder(bias="attention_bias", qk_norm="heads"),
    "olmo3": Decoder(bias="attention_bias", qk_norm="heads"),
    "olmoe": Decoder(bias="attention_bias", qk_norm="heads", moe="mixtral", experts_key="num_experts"),
    "minimax_m2": Decoder(qk_norm="heads", moe="mixtral", router_bias=True),
    # NanoChat: weightless RMSNorms everywhere (the q/k norms too), a plain relu2 MLP without biases
    "nanochat": Decoder(bias="attention_bias", mlp_kind="plain", norms=0, final_norm=False),
})
for _type in ("granite", "granitemoe", "smollm3", "helium", "seed_oss", "ernie4_5", "arcee", "glm", "glm4", "cwm",
              "exaone4", "olmo2", "olmo3", "olmoe", "minimax_m2"):
    DEFAULTS.setdefault(_type, {})
DEFAULTS.update({
    "granite": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "granitemoe": {**_UNTIED, "attention_bias": False},
    "smollm3": {**_TIED, "attention_bias": False, "mlp_bias": False},
    "helium": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "seed_oss": {**_UNTIED, "attention_bias": True, "attention_out_bias": False, "mlp_bias": False},
    "ernie4_5": {**_TIED, "use_bias": False},
    "arcee": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "glm": {**_UNTIED, "attention_bias": True},
    "glm4": {**_UNTIED, "attention_bias": True},
    "cwm": {**_UNTIED, "mlp_bias": False},
    "exaone4": _UNTIED,
    "olmo2": {**_UNTIED, "attention_bias": False},
    "olmo3": {**_UNTIED, "attention_bias": False},
    "olmoe": {**_UNTIED, "attention_bias": False},
    "minimax_m2": _UNTIED,
    "starcoder2": {**_TIED, "use_bias": True},
    "stablelm": {**_UNTIED, "qk_layernorm": False, "use_parallel_residual": False, "use_qkv_bias": False},
    "phi": {**_UNTIED, "qk_layernorm": False},
    "cohere": {**_TIED, "attention_bias": False, "use_qk_norm": False},
    "cohere2": {**_TIED, "attention_bias": False},
    "cohere_compass_text": {**_TIED, "attention_bias": False},  # CohereCompassTextConfig (101, 104)
    "gpt_bigcode": {**_TIED, "add_cross_attention": False},
    "nanochat": {**_UNTIED, "attention_bias": False},
    "gptj": _UNTIED, "codegen": _UNTIED,
    "gpt_neo": _TIED,
})

# model_type -> why its weights are not counted, where kvcalc reads its cache
# multimodal wrappers (config.json with a text_config) whose other parts the builders count: Gemma-3's SigLIP
# tower, Qwen3.5's vision tower and merger, Llama 4's vision encoder and projector
COUNTED_WRAPPERS = frozenset({"gemma3", "qwen3_5", "qwen3_5_moe", "llama4"})
# wrapper model_type -> what counts its other parts around a language model decoder() builds (family modules' WRAPPERS)
WRAPPERS: dict = {}
NOT_DERIVED: dict[str, str] = {}  # the family modules add theirs (weights_hybrids: mimo_v2)
DEFAULTS["llama4_text"] = {**_UNTIED, "attention_bias": False, "interleave_moe_layer_step": 1}  # Llama4TextConfig


def weights_block(
    data: dict, outer: dict, model_type: str, attention: dict, count: int, hidden: int | None, notes: list[str],
    kinds: dict[str, str] | None = None,
) -> dict | None:
    """The weights block for this config, or None with a note saying why not.

    ``data`` holds the language model's fields (text_config for multimodal configs), ``outer``
    the whole config; ``attention`` and ``count`` are what the config reader already read.
    """
    own: list[str] = []
    fields = Fields(data, outer, model_type, DEFAULTS.get(model_type, {}), DECODERS.get(model_type))
    fields.kinds = kinds or {"full": "full"}  # the layer kinds the reader built: name -> full | sliding | ... | none
    try:
        if model_type in NOT_DERIVED:
            raise Skip(NOT_DERIVED[model_type])
        build = BUILDERS.get(model_type) or (decoder if model_type in DECODERS else None)
        if build is None:
            known = ", ".join(sorted((set(DECODERS) | set(BUILDERS)) - REMOTE_CODE))
            raise Skip(f"model_type {model_type or '(none)'!r} is not one kvcalc counts weights for ({known})")
        if hidden is None:
            raise Skip("no hidden_size in config.json")
        wrapper = outer.get("model_type") if outer is not data else None
        if wrapper is not None and wrapper not in COUNTED_WRAPPERS:
            others = sorted(k for k, v in outer.items() if k.endswith("_config") and k != "text_config"
                            and isinstance(v, dict))
            raise Skip(f"the {wrapper!r} checkpoint wraps the language model with parts kvcalc does not count"
                        + (f" ({', '.join(others)})" if others else "")
                        + "; counting the language model alone would understate it")
        if wrapper in WRAPPERS:  # its other parts are added by decoder(), which must be what builds this model
            if build is not decoder:
                raise Skip(f"the {wrapper!r} checkpoint's language model is {model_type!r}, which kvcalc counts with "
                           "a builder that does not add the wrapper's other parts")
            fields.wrapped = WRAPPERS[wrapper]
        block = build(fields, attention, count, hidden, own)
        Weights.model_validate(block)
    except Skip as exc:
        notes.append(SKIP + str(exc))
        return None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        notes.append(SKIP + f"weights.{where}: {problem['msg']}")
        return None
    except (TypeError, AttributeError, KeyError, ValueError, ArithmeticError) as exc:
        # a field of an unexpected JSON type or size: the count is optional, so it is left out, said
        notes.append(SKIP + f"a field has an unexpected type or value ({type(exc).__name__}: {str(exc)[:80]})")
        return None
    if fields.defaulted:
        owner = OWNERS.get(model_type) or (
            "PretrainedConfig's" if model_type in REMOTE_CODE else f"transformers' {model_type}")
        notes.append(
            f"inferred: weights use {owner} defaults for "
            f"{', '.join(fields.defaulted)} (not in config.json)"
        )
    notes.extend(own)
    return block


# --------------------------------------------------------------------------- RMSNorm decoders


# --------------------------------------------------------------------------- LayerNorm models


def _gpt2(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    mha_width(attention, hidden, "GPT-2")
    if f.flag("add_cross_attention"):
        raise Skip("add_cross_attention true: cross-attention blocks are not counted")
    inner = f.integer("n_inner") if f.present("n_inner") else 4 * hidden
    if not f.present("n_inner"):
        notes.append(f"inferred: MLP width 4 x n_embd = {inner} (n_inner is null)")
    block = base(f, "layer", 2)
    positions = f.integer("n_positions") if f.present("n_positions") else f.integer("max_position_embeddings")
    block.update(position_embeddings=positions, qkv_bias=True, output_bias=True, mlp=plain(inner, True))
    return block


def _gpt_neox(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Parallel residual or not, two LayerNorms per layer; embed_out is untied by default."""
    mha_width(attention, hidden, "GPT-NeoX")
    bias = f.flag("attention_bias")
    block = base(f, "layer", 2)
    block.update(qkv_bias=bias, output_bias=bias, mlp=plain(f.integer("intermediate_size"), True))
    return block


def _opt(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    mha_width(attention, hidden, "OPT")
    if f.present("word_embed_proj_dim") and f.integer("word_embed_proj_dim") != hidden:
        raise Skip(
            f"word_embed_proj_dim {f.data['word_embed_proj_dim']} differs from hidden_size {hidden}: the "
            "embedding is vocab x word_embed_proj_dim with project_in and project_out, which the weights "
            "schema cannot state"
        )
    affine = f.flag("layer_norm_elementwise_affine")
    bias = f.flag("enable_bias")
    final = f.flag("do_layer_norm_before") and not f.flag("_remove_final_layer_norm")
    block = base(f, "layer", 2 if affine else 0)
    max_positions = f.integer("max_position_embeddings")
    notes.append(f"inferred: {max_positions} + 2 learned positions (OPT offsets position ids by 2)")
    block.update(
        position_embeddings=max_positions + 2, final_norm=final and affine, qkv_bias=bias, output_bias=bias,
        mlp=plain(f.integer("ffn_dim"), bias),
    )
    return block


def _falcon(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Fused query_key_value; one LayerNorm (parallel attention) or two (ln_attn and ln_mlp)."""
    new_arch = f.data.get("new_decoder_architecture")
    new_arch = f.model_type == "RefinedWeb" if new_arch is None else new_arch is True
    if not new_arch:
        mha_width(attention, hidden, "old-architecture Falcon")
        if attention["kv_heads"] not in (1, attention["heads"]):
            raise Skip("num_kv_heads without multi_query or the new architecture: query_key_value stays 3 x hidden")
    bias = f.flag("bias")
    parallel = f.flag("parallel_attn")
    layer_norms = f.data.get("num_ln_in_parallel_attn")
    layer_norms = (2 if new_arch else 1) if layer_norms is None else layer_norms
    if f.model_type == "falcon" and f.present("ffn_hidden_size"):
        inner = f.integer("ffn_hidden_size")
    else:
        inner = 4 * hidden
        notes.append(f"inferred: MLP width 4 x hidden_size = {inner} (no ffn_hidden_size)")
    block = base(f, "layer", 2 if not parallel or layer_norms == 2 else 1)
    block.update(qkv_bias=bias, output_bias=bias, mlp=plain(inner, bias))
    return block


def _qwen3_next(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Qwen3-Next (transformers' Qwen3NextForCausalLM): Qwen3-MoE's decoder, where every layer keeps its MLP
    or experts and two RMSNorms, plus
    - each Gated DeltaNet layer's mixer: in_proj_qkvz hidden x (2 nk dk + 2 nv dv), in_proj_ba hidden x 2 nv,
      conv1d (2 nk dk + nv dv) x kernel (no bias), dt_bias and A_log nv each, a gated RMSNorm dv, out_proj
      nv dv x hidden;
    - each full-attention layer's output gate: q_proj is 2 x heads x head_dim wide (queries and the gate), so
      hidden x heads x head_dim more than a plain attention (extra_parameters, said in a note).
    Multi-token-prediction layers (mtp_num_hidden_layers) are not built by transformers and not counted."""
    block = decoder(f, attention, count, hidden, notes)
    if attention["kind"] == "mla":
        raise Skip("Qwen3-Next attention that is MLA")
    nk, dk, nv, dv, kernel = (f.integer(k) for k in (
        "linear_num_key_heads", "linear_key_head_dim", "linear_num_value_heads", "linear_value_head_dim",
        "linear_conv_kernel_dim"))
    mixer = (hidden * (2 * nk * dk + 2 * nv * dv) + hidden * 2 * nv + (2 * nk * dk + nv * dv) * kernel
             + 2 * nv + dv + nv * dv * hidden)
    types = f.data.get("layer_types")
    if isinstance(types, list):
        full = sum(1 for t in types if t == "full_attention")
    else:
        interval = f.integer("full_attention_interval")
        full = sum(1 for i in range(count) if (i + 1) % interval == 0)
    gated = f.model_type == "qwen3_next" or f.flag("attn_output_gate")
    gate = full * hidden * attention["heads"] * attention["head_dim"] if gated else 0
    vision = _qwen_vision(f, hidden, notes) if f.outer is not f.data and f.outer.get("vision_config") else 0
    block.update(mixer_parameters={"linear": mixer}, extra_parameters=gate + vision)
    if gate:
        notes.append(f"inferred: extra_parameters has {gate} for the attention output gate of {full} full-attention "
                     f"layers ({hidden} x {attention['heads']} heads x {attention['head_dim']}: q_proj is twice as "
                     "wide)")
    mtp = f.data.get("mtp_num_hidden_layers")
    if isinstance(mtp, int) and not isinstance(mtp, bool) and mtp > 0:
        notes.append(f"the {mtp} multi-token-prediction layer(s) in the checkpoint are not counted (transformers "
                     "does not build them; fit --mtp adds them for speculative decoding)")
    return block


def _qwen_vision(f: Fields, text_hidden: int, notes: list[str]) -> int:
    """Qwen3.5's vision tower and merger (transformers' Qwen3_5VisionModel), in the checkpoint beside the
    language model: a patch convolution in_channels x temporal_patch_size x patch_size^2 -> hidden (+ bias),
    learned positions, depth blocks of two LayerNorms, qkv and proj with biases and a plain MLP with biases,
    and a merger (a LayerNorm over hidden, then hidden x m^2 -> hidden x m^2 -> out_hidden_size with biases,
    m the spatial_merge_size). Deepstack mergers are not counted: such a config is refused."""
    v = f.outer["vision_config"]
    if not isinstance(v, dict):
        raise Skip("vision_config is not a JSON object")
    if v.get("deepstack_visual_indexes"):
        raise Skip("vision_config.deepstack_visual_indexes: deepstack mergers are not counted")
    keys = ("hidden_size", "intermediate_size", "depth", "patch_size", "temporal_patch_size", "in_channels",
            "num_position_embeddings", "spatial_merge_size", "out_hidden_size")
    missing = [k for k in keys if not isinstance(v.get(k), int) or isinstance(v.get(k), bool) or v[k] < 1]
    if missing:
        raise Skip(f"vision_config has no whole-number {', '.join(missing)}")
    h, inner, depth, patch, temporal, channels, positions, merge, out = (v[k] for k in keys)
    if out != text_hidden:  # transformers builds the merger out_hidden_size wide all the same (class defaults do)
        notes.append(f"vision_config.out_hidden_size {out} differs from the language model's hidden_size "
                     f"{text_hidden}: the merger is counted {out} wide, as transformers builds it")
    wide = h * merge * merge
    tower = (channels * temporal * patch * patch * h + h + positions * h
             + depth * (2 * 2 * h + h * 3 * h + 3 * h + h * h + h + h * inner + inner + inner * h + h)
             + 2 * h + wide * wide + wide + wide * out + out)
    notes.append(f"inferred: extra_parameters has {tower} for the vision tower and merger (hidden {h}, {depth} "
                 f"blocks, MLP {inner}, merge {merge}), which the checkpoint and engines load beside the language "
                 "model")
    return tower


def _jamba(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Jamba (transformers' JambaForCausalLM): two RMSNorms per layer, a gated MLP or, every
    expert_layer_period-th layer from expert_layer_offset, gated experts with a router; attention layers
    without biases; each Mamba layer's mixer, with I = mamba_expand x hidden, N mamba_d_state, k mamba_d_conv,
    R mamba_dt_rank ("auto": ceil(hidden / 16)): in_proj hidden x 2I, conv1d I x k (+ I bias), x_proj
    I x (R + 2N), dt_proj R x I + I, A_log I x N, D I, out_proj I x hidden, and RMSNorms of R, N and N on
    dt, B and C; mamba_proj_bias adds in_proj's and out_proj's biases."""
    if attention["kind"] == "mla":
        raise Skip("Jamba attention that is MLA")
    inner, state, kernel = f.integer("mamba_expand") * hidden, f.integer("mamba_d_state"), f.integer("mamba_d_conv")
    rank = f._get("mamba_dt_rank")
    if rank == "auto":
        rank = -(-hidden // 16)
        notes.append(f"inferred: mamba_dt_rank = ceil(hidden_size / 16) = {rank} (\"auto\")")
    elif isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise Skip(f"mamba_dt_rank is {json.dumps(rank)}, not \"auto\" or a whole number >= 1")
    mixer = (hidden * 2 * inner + inner * kernel + inner * (rank + 2 * state) + rank * inner + inner + inner * state
             + inner + inner * hidden + rank + 2 * state + (inner if f.flag("mamba_conv_bias") else 0)
             + (2 * inner + hidden if f.flag("mamba_proj_bias") else 0))
    block = base(f, "rms", 2)
    block.update(mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size")},
                 mixer_parameters={"mamba": mixer})
    experts = f.integer("num_experts")
    if experts > 1:
        period = f.integer("expert_layer_period")
        block["moe"] = {"experts": experts, "experts_per_token": f.integer("num_experts_per_tok"),
                        "intermediate_size": f.integer("intermediate_size"), "layer_period": period,
                        "layer_offset": f.integer("expert_layer_offset", least=0)}
    return block


def _bloom(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """BLOOM: a LayerNorm on the embeddings, two LayerNorms per layer, fused query_key_value and dense with
    biases, a plain 4 x hidden MLP with biases; the head tied (BloomConfig's default)."""
    mha_width(attention, hidden, "BLOOM")
    block = base(f, "layer", 2)
    block.update(embedding_norm=True, qkv_bias=True, output_bias=True, mlp=plain(4 * hidden, True))
    return block


def _mpt(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """MPT: fused Wqkv and out_proj, a plain MLP of expansion_ratio x d_model, two LayerNorms per layer
    and a final one; no_bias drops every bias, the norms' too (transformers' MptBlock)."""
    mha_width(attention, hidden, "MPT")
    bias = not f.flag("no_bias")
    block = base(f, "layer" if bias else "rms", 2)  # a bias-free LayerNorm has a weight only, as an RMSNorm
    block.update(qkv_bias=bias, output_bias=bias, mlp=plain(f.integer("expansion_ratio") * hidden, bias))
    return block


def _mamba(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Mamba, Falcon-Mamba, Mamba2 (MambaMixer / Mamba2Mixer in transformers): embeddings, one RMSNorm and
    one mixer per layer, no MLP, a final norm; the head tied as tie_word_embeddings says. Each mixer, with
    I its inner width, N state_size, k conv_kernel:
    - Mamba: in_proj hidden x 2I, conv1d I x k (+ I bias), x_proj I x (R + 2N) with R time_step_rank
      ("auto": ceil(hidden / 16)), dt_proj R x I + I, A_log I x N, D I, out_proj I x hidden.
    - Mamba2 (H heads, G groups): in_proj hidden x (2I + 2GN + H), conv1d (I + 2GN) x k (+ bias),
      dt_bias, A_log and D H each, a gated RMSNorm I, out_proj I x hidden.
    use_bias adds in_proj's and out_proj's biases. Falcon-Mamba's B, C and dt norms have no weights.
    The whole mixer is counted with the layer matrices (quantization would leave its vectors alone)."""
    use_bias, conv_bias = f.flag("use_bias"), f.flag("use_conv_bias")
    k, n = f.integer("conv_kernel"), f.integer("state_size")
    if f.model_type == "mamba2":
        heads, groups = f.integer("num_heads"), f.integer("n_groups")
        inner = heads * f.integer("head_dim")
        proj, conv_dim = 2 * inner + 2 * groups * n + heads, inner + 2 * groups * n
        mixer = (hidden * proj + conv_dim * k + 3 * heads + inner + inner * hidden
                 + (conv_dim if conv_bias else 0) + (proj + hidden if use_bias else 0))
        name = "mamba2"
    else:
        inner = f.integer("intermediate_size") if f.present("intermediate_size") else f.integer("expand") * hidden
        rank = f._get("time_step_rank")
        if rank == "auto":
            rank = -(-hidden // 16)
            notes.append(f"inferred: time_step_rank = ceil(hidden_size / 16) = {rank} (\"auto\")")
        elif isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise Skip(f"time_step_rank is {json.dumps(rank)}, not \"auto\" or a whole number >= 1")
        mixer = (hidden * 2 * inner + inner * k + inner * (rank + 2 * n) + rank * inner + inner + inner * n + inner
                 + inner * hidden + (inner if conv_bias else 0) + (2 * inner + hidden if use_bias else 0))
        name = "mamba"
    block = base(f, "rms", 1)
    block.update(mixer_parameters={name: mixer}, mlp_kinds=[])
    return block


def _chatglm(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """ChatGLM2/3 (THUDM's remote code, modeling_chatglm.py): word_embeddings padded_vocab_size x hidden and
    a separate output_layer; per GLMBlock two norms (RMSNorm when rmsnorm), query_key_value hidden x
    (heads + 2 groups) x kv_channels (a bias when add_qkv_bias or add_bias_linear), dense, and a SwiGLU MLP
    dense_h_to_4h hidden x 2 ffn_hidden_size and dense_4h_to_h (biases when add_bias_linear); final_layernorm
    when post_layer_norm. RotaryEmbedding registers inv_freq as a persistent buffer: rotary_dim // 2 wide
    (rotary_dim = kv_channels), so ceil(kv_channels / 4) values that the checkpoint stores."""
    if attention["kind"] == "mla":
        raise Skip("ChatGLM attention that is MLA")
    if f.data.get("pre_seq_len") is not None:
        raise Skip("pre_seq_len: the P-tuning prefix encoder is not counted")
    if not f.present("padded_vocab_size"):
        raise Skip("no padded_vocab_size in config.json (ChatGLM sizes its embedding by it)")
    bias = f.flag("add_bias_linear")
    rotary = f.integer("kv_channels") // 2
    inv_freq = (rotary + 1) // 2
    block = {
        "vocab_size": f.integer("padded_vocab_size"), "tied_embeddings": False,
        "norm": "rms" if f.flag("rmsnorm") else "layer", "norms_per_layer": 2, "final_norm": f.flag("post_layer_norm"),
        "qkv_bias": bias or f.flag("add_qkv_bias"), "output_bias": bias,
        "mlp": {"kind": "gated", "intermediate_size": f.integer("ffn_hidden_size"), "bias": bias},
        "extra_parameters": inv_freq,
    }
    notes.append(f"inferred: extra_parameters {inv_freq}: the rotary inv_freq buffer ChatGLM's checkpoint stores "
                 f"(kv_channels {rotary * 2} / 4)")
    return block


def _starcoder2(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """StarCoder2: two LayerNorms per layer and a final one, q/k/v/o and a plain MLP (c_fc, c_proj), every
    bias switched by use_bias; the head tied by default."""
    if attention["kind"] == "mla":
        raise Skip("StarCoder2 attention that is MLA")
    bias = f.flag("use_bias")
    block = base(f, "layer", 2)
    block.update(qkv_bias=bias, output_bias=bias, mlp=plain(f.integer("intermediate_size"), bias))
    return block


def _stablelm(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """StableLM: LayerNorms (one per layer with use_parallel_residual, else two) and a final one, q/k/v biases
    when use_qkv_bias, o_proj hidden x hidden without one, a gated MLP without biases; per-head q/k LayerNorms
    (qk_layernorm) are not counted."""
    mha_width(attention, hidden, "StableLM")
    if f.flag("qk_layernorm"):
        raise Skip("qk_layernorm true: StableLM's per-head q and k LayerNorms are not counted")
    block = base(f, "layer", 1 if f.flag("use_parallel_residual") else 2)
    block.update(qkv_bias=f.flag("use_qkv_bias"), mlp=gated(f))
    return block


def _phi(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Phi-1/1.5/2: one LayerNorm per layer (attention and MLP in parallel) and a final one, q/k/v and dense
    with biases, a plain MLP fc1/fc2 with biases, an untied lm_head with a bias (vocab_size more, in
    extra_parameters); q/k LayerNorms (qk_layernorm) are not counted."""
    if attention["kind"] == "mla":
        raise Skip("Phi attention that is MLA")
    if f.flag("qk_layernorm"):
        raise Skip("qk_layernorm true: Phi's q and k LayerNorms are not counted")
    block = base(f, "layer", 1)
    block.update(qkv_bias=True, output_bias=True, mlp=plain(f.integer("intermediate_size"), True))
    if block["tied_embeddings"]:
        raise Skip("tie_word_embeddings true: Phi's lm_head bias beside a tied weight is not counted")
    block["extra_parameters"] = block["vocab_size"]
    notes.append(f"inferred: extra_parameters {block['vocab_size']}: the lm_head's bias")
    return block


def _cohere(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Cohere (Command-R), Cohere2 and Cohere-Compass's text model: one CohereLayerNorm per layer (attention and
    MLP in parallel) and a final one, each a weight without a bias; q/k/v/o biases when attention_bias; a gated
    MLP without biases; the head tied by default (modeling_cohere_compass.py
    155-157, 266-277, 329, 422, 540). Cohere's use_qk_norm adds q and k norms of heads x head_dim and
    kv_heads x head_dim."""
    if attention["kind"] == "mla":
        raise Skip("Cohere attention that is MLA")
    bias = f.flag("attention_bias")
    block = base(f, "rms", 1)  # a LayerNorm with a weight alone counts as an RMSNorm does
    block.update(qkv_bias=bias, output_bias=bias, mlp=gated(f))
    if f.model_type == "cohere" and f.flag("use_qk_norm"):
        block.update(qk_norm=True, qk_norm_width="heads")
    return block


def _llama4(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Llama 4 (transformers' Llama4ForConditionalGeneration, the whole checkpoint): two RMSNorms per layer,
    q/k/v/o with biases when attention_bias (the q/k norm is a weightless L2 norm), on moe_layers (every
    interleave_moe_layer_step-th layer when not listed) num_local_experts gated experts of intermediate_size
    with a router without a bias and one gated shared expert of intermediate_size, elsewhere a gated MLP of
    intermediate_size_mlp; the vision encoder, its pixel-shuffle MLP and the projector (_llama4_vision)."""
    if attention["kind"] == "mla":
        raise Skip("Llama 4 attention that is MLA")
    bias = f.flag("attention_bias")
    inner = f.integer("intermediate_size")
    moe = {"experts": f.integer("num_local_experts"), "experts_per_token": f.integer("num_experts_per_tok"),
           "intermediate_size": inner, "shared_experts": 1, "shared_intermediate_size": inner}
    listed = f.data.get("moe_layers")
    if listed is not None:
        if not isinstance(listed, list) or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count
                                               for i in listed):
            raise Skip(f"moe_layers {json.dumps(listed)[:60]} is not a list of layer numbers below {count}")
        moe["layer_indices"] = sorted(set(listed))
    else:
        step = f.integer("interleave_moe_layer_step")
        moe.update(layer_period=step, layer_offset=step - 1)  # Llama4TextConfig: range(step - 1, layers, step)
    every = all(MoE.model_validate(moe).is_moe_layer(i) for i in range(count))
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias, moe=moe,
                 mlp=None if every else {"kind": "gated", "intermediate_size": f.integer("intermediate_size_mlp")})
    if f.outer is not f.data and f.outer.get("vision_config"):
        block["extra_parameters"] = _llama4_vision(f, hidden, notes)
    return block


def _llama4_vision(f: Fields, text_hidden: int, notes: list[str]) -> int:
    """Llama 4's vision encoder (Llama4VisionModel) and projector, as transformers builds them: a patch
    linear (channels x patch^2 -> hidden, no bias), a class embedding, (image / patch)^2 + 1 learned positions,
    LayerNorms before and after, per layer q/k/v/o with biases, an MLP fc1/fc2 with biases and two LayerNorms;
    the pixel-shuffle MLP fc1 intermediate_size -> projector_input_dim and fc2 projector_output_dim square,
    without biases; the projector vision_output_dim -> the text hidden size, without a bias."""
    v = f.outer["vision_config"]
    if not isinstance(v, dict):
        raise Skip("vision_config is not a JSON object")
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size",
            "projector_input_dim", "projector_output_dim", "vision_output_dim")
    missing = [k for k in keys if not isinstance(v.get(k), int) or isinstance(v.get(k), bool) or v[k] < 1]
    if missing:
        raise Skip(f"vision_config has no whole-number {', '.join(missing)}")
    h, inner, layers, image, patch, proj_in, proj_out, out = (v[k] for k in keys)
    channels = v.get("num_channels", 3)
    encoder = (channels * patch * patch * h + h + ((image // patch) ** 2 + 1) * h + 2 * 2 * h
               + layers * (4 * (h * h + h) + h * inner + inner + inner * h + h + 2 * 2 * h))
    adapter = inner * proj_in + proj_out * proj_out
    projector = out * text_hidden
    notes.append(f"inferred: extra_parameters {encoder + adapter + projector} = vision encoder {encoder} (hidden {h}, "
                 f"{layers} layers, MLP {inner}, {image}px in {patch}px patches) + pixel-shuffle MLP {adapter} + "
                 f"projector {projector}, which the checkpoint holds beside the language model")
    return encoder + adapter + projector


def _gptj(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """GPT-J and CodeGen: one LayerNorm per layer (attention and MLP in parallel) and a final one, q/k/v (fused
    in CodeGen) and out_proj without biases, a plain MLP fc_in/fc_out with biases (n_inner, or 4 x n_embd),
    an untied lm_head with a bias (vocab_size more, in extra_parameters)."""
    mha_width(attention, hidden, "GPT-J")
    inner = f.integer("n_inner") if f.present("n_inner") else 4 * hidden
    if not f.present("n_inner"):
        notes.append(f"inferred: MLP width 4 x n_embd = {inner} (n_inner is null)")
    block = base(f, "layer", 1)
    if block["tied_embeddings"]:
        raise Skip("tie_word_embeddings true: the lm_head's bias beside a tied weight is not counted")
    block.update(mlp=plain(inner, True), extra_parameters=block["vocab_size"])
    notes.append(f"inferred: extra_parameters {block['vocab_size']}: the lm_head's bias")
    return block


def _gpt_neo(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """GPT-Neo: learned positions, two LayerNorms per layer and a final one, q/k/v without biases and out_proj
    with one, a plain MLP c_fc/c_proj with biases (intermediate_size, or 4 x hidden_size); tied by default."""
    mha_width(attention, hidden, "GPT-Neo")
    inner = f.integer("intermediate_size") if f.present("intermediate_size") else 4 * hidden
    if not f.present("intermediate_size"):
        notes.append(f"inferred: MLP width 4 x hidden_size = {inner} (intermediate_size is null)")
    block = base(f, "layer", 2)
    block.update(position_embeddings=f.integer("max_position_embeddings"), output_bias=True, mlp=plain(inner, True))
    return block


BUILDERS = {
    "gptj": _gptj, "codegen": _gptj, "gpt_neo": _gpt_neo,
    "llama4_text": _llama4, "llama4": _llama4,
    "starcoder2": _starcoder2, "stablelm": _stablelm, "phi": _phi, "cohere": _cohere, "cohere2": _cohere,
    "cohere_compass_text": _cohere,
    "gpt_bigcode": _gpt2,
    "chatglm": _chatglm,
    "bloom": _bloom, "mpt": _mpt, "qwen3_next": _qwen3_next,
    "qwen3_5_text": _qwen3_next, "qwen3_5_moe_text": _qwen3_next, "jamba": _jamba,
    "mamba": _mamba, "falcon_mamba": _mamba, "mamba2": _mamba,
    "gpt2": _gpt2, "gpt_neox": _gpt_neox, "opt": _opt,
    "falcon": _falcon, "RefinedWeb": _falcon, "RefinedWebModel": _falcon,
}

# this module's own rows, before the family modules join
BUILDERS_OWN, DECODERS_OWN, NOT_DERIVED_OWN = dict(BUILDERS), dict(DECODERS), dict(NOT_DERIVED)
FAMILY_MODULES = (weights_llama_like, weights_moe, weights_encoders, weights_hybrids, weights_gemma4, weights_remote)
for _module in FAMILY_MODULES:
    for _type, _defaults in _module.DEFAULTS.items():  # may add class defaults to a type counted above
        DEFAULTS.setdefault(_type, {}).update(_defaults)
    DECODERS.update(_module.DECODERS)  # each type is built in one place: tests/test_weights_families.py
    BUILDERS.update(_module.BUILDERS)
    NOT_DERIVED.update(_module.NOT_DERIVED)
    COUNTED_WRAPPERS |= getattr(_module, "COUNTED_WRAPPERS", frozenset())  # wrappers whose parts a builder counts
    WRAPPERS.update(getattr(_module, "WRAPPERS", {}))
COUNTED_WRAPPERS |= frozenset(WRAPPERS)

__all__ = ["DEFAULTS", "SKIP", "weights_block"]
