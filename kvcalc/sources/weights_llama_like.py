"""Weights builders for more families (see weights_parts for the building blocks).

Each family module states, for its own model types, transformers' class defaults of the fields
it reads (DEFAULTS), pre-norm decoder rows (DECODERS), builders for the rest (BUILDERS), and why a
type it reads has no count (NOT_DERIVED); config_weights merges them, and a type may appear in one
module only.

This module: Llama-shaped decoders of transformers 5.24 and their near relatives (extra per-layer
vectors, LayerNorms, plain MLPs, attention sinks, MoE variants of the same decoder). Line numbers cite
transformers/models/<type>/modeling_<type>.py of transformers 5.24; the types that transformers builds as
LlamaForCausalLM (exaone, internlm3, iquestcoder; models/auto/modeling_auto.py) cite modeling_llama.py.
"""

from __future__ import annotations

import json
import math

from kvcalc.sources.weights_parts import Decoder, Fields, Skip, add_extra, base, plain, wrapper_tie

_TIED = {"tie_word_embeddings": True}
_UNTIED = {"tie_word_embeddings": False}

# transformers' class defaults (configuration_<type>.py, 5.24) of the fields read here
DEFAULTS: dict[str, dict[str, object]] = {
    "apertus": {**_UNTIED, "attention_bias": False, "hidden_act": "xielu"},
    "apertus1p5_text": {**_UNTIED, "attention_bias": False, "hidden_act": "xielu"},
    "bitnet": {**_UNTIED, "attention_bias": False},
    "diffllama": {**_UNTIED, "attention_bias": False},
    "hrm_text": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "H_cycles": 2,
                 "L_cycles": 3},  # HrmTextConfig
    "doge": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "is_moe": False, "num_experts": 16384},
    "emu3_text_model": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "exaone": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "flex_olmo": {**_UNTIED, "attention_bias": False},
    "granite_swa": {**_TIED, "attention_bias": False, "mlp_bias": False},
    "granitemoe_swa": {**_UNTIED, "attention_bias": False, "shared_intermediate_size": 0},
    "granitemoeshared": {**_UNTIED, "attention_bias": False, "shared_intermediate_size": 0},
    "hunyuan_v1_dense": {**_UNTIED, "attention_bias": False},
    "hyperclovax": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "use_post_norm": True},
    "internlm3": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "iquestcoder": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "jais2": {**_UNTIED, "attention_bias": True, "mlp_bias": True},
    "kolibri1": _UNTIED,
    "lara_mini": {**_TIED, "attention_bias": False},
    "mellum": {**_UNTIED, "attention_bias": False},
    "ministral": _UNTIED,
    "ministral3": _UNTIED,
    "nemotron": {**_UNTIED, "attention_bias": False, "mlp_bias": False},
    "olmo": {**_UNTIED, "attention_bias": False},
    "persimmon": {**_UNTIED, "qk_layernorm": True},
    "solar_open": {**_UNTIED, "attention_bias": False, "n_shared_experts": 1},
    "vaultgemma": {**_TIED, "attention_bias": False},
    "youtu": {**_TIED, "attention_bias": False},
}

DECODERS: dict[str, Decoder] = {
    # LlamaForCausalLM (modeling_llama.py 151-163 attention_bias on q/k/v/o; 48-51 mlp_bias on the MLP)
    "exaone": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),
    "iquestcoder": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),
    "emu3_text_model": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),  # modeling_emu3.py 144-155, 226-228
    "ministral": Decoder(),  # modeling_ministral.py 151-154: no biases; 229-230 two norms
    "ministral3": Decoder(),  # modeling_ministral3.py 123-126, 221-222
    "hunyuan_v1_dense": Decoder(bias="attention_bias", qk_norm=True),  # 167-180: per-head query/key_layernorm
    # olmo: OlmoLayerNorm has neither weight nor bias (modeling_olmo.py 49-60), the final norm too (345)
    "olmo": Decoder(bias="attention_bias", norms=0, final_norm=False),
    # vaultgemma: input_layernorm and pre_feedforward_layernorm only (242-244); Gemma's embed_scale is not saved
    "vaultgemma": Decoder(bias="attention_bias"),
    # flex_olmo: every layer FlexOlmoSparseMoeBlock (355) of num_experts gated experts of intermediate_size
    # (296-305), a router without a bias (281); q/k norms across all heads (225-226); two norms (357-358)
    "flex_olmo": Decoder(bias="attention_bias", qk_norm="heads", moe="mixtral", experts_key="num_experts"),
}

NOT_DERIVED: dict[str, str] = {}


def _either(f: Fields, keys: tuple[str, ...], **kw) -> int:
    """A whole number stated under any of ``keys`` (a config's attribute_map aliases), else the first's default."""
    for key in keys:
        if f.present(key):
            return f.integer(key, **kw)
    return f.integer(keys[0], **kw)


def _flag_either(f: Fields, keys: tuple[str, ...]) -> bool:
    for key in keys:
        if f.present(key):
            return f.flag(key)
    return f.flag(keys[0])


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_mla(attention: dict, family: str) -> None:
    if attention["kind"] == "mla":
        raise Skip(f"{family} attention that is MLA")


# --------------------------------------------------------------------------- dense decoders


def _apertus(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Apertus (modeling_apertus.py; Apertus-1.5's text model the same, modeling_apertus1p5.py 361-550): q/k/v/o
    with biases when attention_bias (210-221), per-head q_norm and k_norm (222-223), a plain MLP up/down without
    biases (49-50), two RMSNorms (277-278). The xIELU activation (hidden_act "xielu", 52-53) keeps two parameters
    alpha_p and alpha_n and two saved buffers beta and eps per layer (activations.py XIELUActivation 249-254)."""
    _no_mla(attention, "Apertus")
    bias = f.flag("attention_bias")
    block = base(f, "rms", 2)
    output = f.data.get("output_vocab_size") if f.model_type == "apertus1p5_text" else None
    if output is not None and output != block["vocab_size"]:
        # Apertus1p5ForCausalLM's lm_head is hidden x (output_vocab_size or vocab_size) (modeling_apertus1p5.py 737)
        if not _whole(output) or output < 1:
            raise Skip(f"output_vocab_size is {json.dumps(output)}, not a whole number >= 1")
        if block["tied_embeddings"]:
            raise Skip("output_vocab_size differs from vocab_size with tied embeddings: the tie cannot hold")
        vocab = block["vocab_size"]
        block["vocab_size"] = min(vocab, output)  # the embeddings and head are each at least this many rows
        add_extra(block, abs(vocab - output) * hidden, notes,
                   f"the {abs(vocab - output)} rows the {'embeddings' if vocab > output else 'lm_head'} have beyond "
                   f"the {'lm_head' if vocab > output else 'embeddings'} (vocab_size {vocab}, output_vocab_size "
                   f"{output}; vocab_size states the smaller)")
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias, mlp=plain(f.integer("intermediate_size"), False))
    if f._get("hidden_act") == "xielu":
        add_extra(block, 4 * count, notes, f"the xIELU activation's alpha_p, alpha_n, beta and eps in {count} layers")
    return block


def _bitnet(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """BitNet (modeling_bitnet.py): Llama's decoder (gated MLP 70-72, q/k/v/o with attention_bias 165-176, two
    norms 230-231) with two more RMSNorms per layer: attn_sub_norm over hidden_size (177) before o_proj and
    ffn_sub_norm over intermediate_size (74) before down_proj. Counted as transformers builds it (full-precision
    matrices; a packed ternary checkpoint's weight_scale tensors are not)."""
    _no_mla(attention, "BitNet")
    bias = f.flag("attention_bias")
    inner = f.integer("intermediate_size")
    block = base(f, "rms", 3)  # input, post-attention and attn_sub_norm (hidden_size wide)
    block.update(qkv_bias=bias, output_bias=bias, mlp={"kind": "gated", "intermediate_size": inner})
    return add_extra(block, count * inner, notes, f"ffn_sub_norm ({inner} wide) in {count} layers")


def _diffllama(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """DiffLlama (modeling_diffllama.py): Llama's decoder (209-220, 58-60, 344-345) with four head_dim vectors per
    layer, lambda_q1, lambda_k1, lambda_q2, lambda_k2 (238-241); its groupnorm has no weight (242)."""
    _no_mla(attention, "DiffLlama")
    bias = f.flag("attention_bias")
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias,
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size")})
    d = attention["head_dim"]
    return add_extra(block, count * 4 * d, notes, f"the differential attention's four lambda vectors of {d} in "
                      f"{count} layers")


def _doge(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Doge (modeling_doge.py): q/k/v/o with attention_bias (252-268), per-head q_norm and k_norm (269-270), per
    layer a vector A of kv_heads (262) and dt_proj kv_heads x head_dim -> kv_heads (263-265, with attention_bias),
    two RMSNorms (445, 449) and two residual scales of hidden_size (447, 451); a gated MLP with mlp_bias (370-372).
    With is_moe the MLP is DogeCDMoE (380-402): the same gated MLP, a router_gate hidden x 2 floor(sqrt(num_experts))
    without a bias and two embeddings num_experts x hidden (down_embed, up_embed), all counted as active."""
    _no_mla(attention, "Doge")
    bias = f.flag("attention_bias")
    block = base(f, "rms", 4)  # two RMSNorms and the two residual scales, each hidden_size wide
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias,
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size"), "bias": f.flag("mlp_bias")})
    kv, d = attention["kv_heads"], attention["head_dim"]
    dt = kv + kv * d * kv + (kv if bias else 0)
    notes.append("inferred: norms_per_layer 4: two RMSNorms and the input and post-attention residual scales")
    if f.flag("is_moe"):
        experts = f.integer("num_experts")
        keys = math.isqrt(experts)  # math.floor(math.sqrt(num_experts)), modeling_doge.py 388
        add_extra(block, count * (hidden * 2 * keys + 2 * experts * hidden), notes,
                   f"the CDMoE router_gate ({hidden} x 2 x {keys}) and down_embed and up_embed ({experts} x {hidden} "
                   f"each) in {count} layers; every row counted as active, though a token reads "
                   "num_experts_per_tok of them")
    return add_extra(block, count * dt, notes, f"A and dt_proj ({kv} x {d} -> {kv}) in {count} layers")


def _hyperclovax(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """HyperCLOVA X (modeling_hyperclovax.py): Llama's decoder (194-205, 255-257) with post_norm1 and post_norm2
    after attention and MLP when use_post_norm (276-281)."""
    _no_mla(attention, "HyperCLOVA X")
    bias = f.flag("attention_bias")
    block = base(f, "rms", 4 if f.flag("use_post_norm") else 2)
    block.update(qkv_bias=bias, output_bias=bias,
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size"), "bias": f.flag("mlp_bias")})
    return block


def _internlm3(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """InternLM3, built as LlamaForCausalLM: attention_bias (its config.json: qkv_bias) on q/k/v/o, mlp_bias
    (bias) on the MLP (configuration_internlm3.py 82 maps the names; 99-103 requires them equal)."""
    _no_mla(attention, "InternLM3")
    bias = _flag_either(f, ("attention_bias", "qkv_bias"))
    mlp_bias = _flag_either(f, ("mlp_bias", "bias"))
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias,
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size"), "bias": mlp_bias})
    return block


def _granite_swa(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Granite-SWA (modeling_granite_swa.py): Granite's decoder (137-148, 227-229, 244-245) with a learnable
    per-head attention sink in every layer, sliding or not (153). GraniteMoE-SWA (modeling_granitemoe_swa.py):
    the same attention (217-233) over GraniteMoE's experts (_granitemoe)."""
    block = _granitemoe(f, attention, count, hidden, notes) if f.model_type == "granitemoe_swa" else None
    if block is None:
        _no_mla(attention, "Granite-SWA")
        bias = f.flag("attention_bias")
        block = base(f, "rms", 2)
        block.update(qkv_bias=bias, output_bias=bias,
                     mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size"),
                          "bias": f.flag("mlp_bias")})
    heads = attention["heads"]
    return add_extra(block, count * heads, notes, f"the attention sinks ({heads} per layer) in {count} layers")


def _granitemoe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """GraniteMoE-Shared (modeling_granitemoeshared.py) and GraniteMoE-SWA: every layer num_local_experts gated
    experts of intermediate_size (140-149) behind a router without a bias (130), and, when shared_intermediate_size
    is not 0, a gated shared MLP input_linear hidden -> 2 x shared and output_linear (70-86, 344), without a gate;
    q/k/v/o with attention_bias (280-291); two RMSNorms (340-341)."""
    _no_mla(attention, "GraniteMoE")
    bias = f.flag("attention_bias")
    moe = {"experts": f.integer("num_local_experts"), "experts_per_token": f.integer("num_experts_per_tok"),
           "intermediate_size": f.integer("intermediate_size")}
    shared = f.integer("shared_intermediate_size", least=0)
    if shared:
        moe.update(shared_experts=1, shared_intermediate_size=shared)
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias, mlp=None, moe=moe)
    return block


def _nemotron(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Nemotron (modeling_nemotron.py): LayerNorm1P, a LayerNorm with weight and bias (61-72), twice per layer
    (299-300) and at the end (382); q/k/v/o with attention_bias (244-247); a plain up/down MLP with mlp_bias
    (178-179)."""
    _no_mla(attention, "Nemotron")
    bias = f.flag("attention_bias")
    block = base(f, "layer", 2)
    block.update(qkv_bias=bias, output_bias=bias, mlp=plain(f.integer("intermediate_size"), f.flag("mlp_bias")))
    return block


def _jais2(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Jais-2 (modeling_jais2.py): two LayerNorms with biases per layer (205-206) and a final one (316); q/k/v/o
    with attention_bias (142-153); a plain up/down MLP with mlp_bias (50-51)."""
    _no_mla(attention, "Jais-2")
    bias = f.flag("attention_bias")
    block = base(f, "layer", 2)
    block.update(qkv_bias=bias, output_bias=bias, mlp=plain(f.integer("intermediate_size"), f.flag("mlp_bias")))
    return block


def _persimmon(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Persimmon (modeling_persimmon.py): query_key_value hidden x 3 hidden and dense, both with biases (202-203);
    per-head q_layernorm and k_layernorm, LayerNorms with biases, when qk_layernorm (207-213); a plain MLP with
    biases (143-144); two LayerNorms per layer (307-308) and a final one (383). Fuyu (modeling_fuyu.py 57-59) adds
    vision_embed_tokens, a linear patch_size^2 x num_channels -> hidden with a bias."""
    if attention["kind"] == "mla" or attention["heads"] * attention["head_dim"] != hidden \
            or attention["kv_heads"] != attention["heads"]:
        raise Skip("Persimmon's query_key_value is 3 x hidden_size wide, but the heads differ from it")
    block = base(f, "layer", 2)
    block.update(qkv_bias=True, output_bias=True, mlp=plain(f.integer("intermediate_size"), True))
    if f.flag("qk_layernorm"):
        d = attention["head_dim"]
        add_extra(block, count * 4 * d, notes,
                   f"q_layernorm and k_layernorm (weight and bias of {d}) in {count} layers")
    outer = f.outer
    if outer is not f.data and outer.get("model_type") == "fuyu":
        keys = ("patch_size", "num_channels")
        if any(isinstance(outer.get(k), bool) or not isinstance(outer.get(k), int) or outer[k] < 1 for k in keys):
            raise Skip("Fuyu's config has no whole-number patch_size and num_channels")
        patch = outer["patch_size"] ** 2 * outer["num_channels"]
        add_extra(block, patch * hidden + hidden, notes,
                   f"Fuyu's vision_embed_tokens ({patch} -> {hidden} with a bias)")
    return block


# --------------------------------------------------------------------------- MoE and hybrid decoders


def _mellum(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Mellum (modeling_mellum.py): q/k/v/o with attention_bias (215-226), per-head q_norm and k_norm (227-228),
    two RMSNorms (374-375); where mlp_layer_types says "sparse" (all, by default) num_experts gated experts of
    moe_intermediate_size (275-284) and a router without a bias (321), elsewhere a gated MLP of intermediate_size
    (349-357). Multi-token-prediction layers (num_mtp_layers) are not built by transformers and not counted."""
    _no_mla(attention, "Mellum")
    kinds = f.data.get("mlp_layer_types")
    if kinds is None:
        kinds = ["sparse"] * count  # configuration_mellum.py 118-119
        notes.append("inferred: every layer sparse (no mlp_layer_types; MellumConfig's default)")
    if not isinstance(kinds, list) or len(kinds) != count or any(k not in ("sparse", "dense") for k in kinds):
        raise Skip(f"mlp_layer_types {json.dumps(kinds)[:60]} is not \"sparse\" or \"dense\" for each of "
                   f"{count} layers")
    bias = f.flag("attention_bias")
    moe = {"experts": _either(f, ("num_local_experts", "num_experts")),
           "experts_per_token": f.integer("num_experts_per_tok"),
           "intermediate_size": f.integer("moe_intermediate_size"),
           "layer_indices": [i for i, k in enumerate(kinds) if k == "sparse"]}
    block = base(f, "rms", 2)
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias, moe=moe,
                 mlp=None if "dense" not in kinds else {"kind": "gated",
                                                        "intermediate_size": f.integer("intermediate_size")})
    _mtp_note(f, ("num_mtp_layers", "num_nextn_predict_layers"), notes)
    return block


def _mtp_note(f: Fields, keys: tuple[str, ...], notes: list[str]) -> None:
    for key in keys:
        mtp = f.data.get(key)
        if isinstance(mtp, int) and not isinstance(mtp, bool) and mtp > 0:
            notes.append(f"the {mtp} multi-token-prediction layer(s) ({key}) in the checkpoint are not counted "
                         "(transformers does not build them)")
            return


def _kolibri1(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Kolibri-1 (modeling_kolibri1.py): q/k/v/o without biases (154-157), per-head q_norm and k_norm (159-160),
    four RMSNorms per layer (325-328); every layer Kolibri1SparseMoeBlock (324): num_experts gated experts of
    moe_intermediate_size (228-237), a router with an e_score_correction_bias buffer (274-275) and one gated shared
    expert of shared_expert_intermediate_size without a gate (307)."""
    _no_mla(attention, "Kolibri-1")
    moe = {"experts": _either(f, ("num_local_experts", "num_experts")),
           "experts_per_token": f.integer("num_experts_per_tok"),
           "intermediate_size": f.integer("moe_intermediate_size"), "router_bias": True,
           "shared_experts": 1, "shared_intermediate_size": f.integer("shared_expert_intermediate_size")}
    block = base(f, "rms", 4)
    block.update(qk_norm=True, mlp=None, moe=moe)
    return block


def _solar_open(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Solar-Open (modeling_solar_open.py): q/k/v with attention_bias, o_proj without (292-301); two RMSNorms
    (51-52); every layer SolarOpenMoE (50): n_routed_experts gated experts of moe_intermediate_size (145-154), a
    router with an e_score_correction_bias buffer (109, 114) and a gated shared MLP of moe_intermediate_size x
    n_shared_experts (194-196), counted as n_shared_experts shared experts of moe_intermediate_size."""
    _no_mla(attention, "Solar-Open")
    inner = f.integer("moe_intermediate_size")
    moe = {"experts": _either(f, ("n_routed_experts", "num_local_experts")),
           "experts_per_token": f.integer("num_experts_per_tok"), "intermediate_size": inner, "router_bias": True,
           "shared_experts": f.integer("n_shared_experts"), "shared_intermediate_size": inner}
    block = base(f, "rms", 2)
    block.update(qkv_bias=f.flag("attention_bias"), mlp=None, moe=moe)
    return block


def _lara_mini(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Lara-Mini (modeling_lara_mini.py): every layer two RMSNorms (828-829) and LaraMiniSparseMoeBlock (827):
    num_experts gated experts of moe_intermediate_size (726-735), a router without a bias (772) and one gated
    shared expert of shared_expert_intermediate_size without a gate (807); attention layers q/k/v/o with
    attention_bias and per-head q/k norms (226-239); each Gated DeltaNet layer (562-609): in_proj_qkv hidden x
    (2 nk dk + nv dv), in_proj_z hidden x nv dv, in_proj_b and in_proj_a hidden x nv, conv1d (2 nk dk + nv dv) x
    kernel without a bias, dt_bias and A_log nv each, a gated RMSNorm dv, out_proj nv dv x hidden."""
    _no_mla(attention, "Lara-Mini")
    bias = f.flag("attention_bias")
    nk, dk, nv, dv, kernel = (f.integer(k) for k in (
        "linear_num_key_heads", "linear_key_head_dim", "linear_num_value_heads", "linear_value_head_dim",
        "linear_conv_kernel_dim"))
    conv = 2 * nk * dk + nv * dv
    mixer = hidden * conv + hidden * nv * dv + 2 * hidden * nv + conv * kernel + 2 * nv + dv + nv * dv * hidden
    moe = {"experts": _either(f, ("num_experts", "num_local_experts")),
           "experts_per_token": f.integer("num_experts_per_tok"),
           "intermediate_size": f.integer("moe_intermediate_size"),
           "shared_experts": 1, "shared_intermediate_size": f.integer("shared_expert_intermediate_size")}
    block = base(f, "rms", 2)
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias, mlp=None, moe=moe, mixer_parameters={"linear": mixer})
    return block


def _youtu(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Youtu-LLM (modeling_youtu.py): DeepSeek-V3's MLA attention (279-313; with attention_bias, biases on
    q_a_proj (q_lora_rank, when there is one), kv_a_proj_with_mqa (kv_lora_rank + qk_rope_head_dim) and o_proj
    (hidden), 286-312) and a dense gated MLP in every layer (119-127, 404-405)."""
    if attention["kind"] != "mla":
        raise Skip("Youtu attention that is not MLA")
    block = base(f, "rms", 2)
    block["mlp"] = {"kind": "gated", "intermediate_size": f.integer("intermediate_size")}
    if f.flag("attention_bias"):
        per_layer = (attention.get("q_lora_rank") or 0) + attention["kv_lora_rank"] + attention["qk_rope_head_dim"] \
            + hidden
        add_extra(block, count * per_layer, notes, f"the MLA projections' biases (attention_bias; {per_layer} per "
                   f"layer) in {count} layers")
    return block


def _hrm_text(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """HRM-Text (modeling_hrm_text.py): two stacks, L_module and H_module (408-409), of num_layers_per_stack
    layers (279-287) run H_cycles x (L_cycles + 1) times, so the cache has num_hidden_layers = that many x
    num_layers_per_stack slots (configuration_hrm_text.py 110-115) while the weights are the two stacks' once.
    Each real layer: q, k, v and an output gate gate_proj, hidden -> heads x head_dim, and o_proj back, biases on
    attention_bias (164-185); a gated MLP with mlp_bias (70-72); its RMSNorms, and each stack's final_norm, have
    no weight (49-60). Besides: z_L_init, a hidden-wide parameter (411), and an untied lm_head by default (544).
    Stated as: the attention kind shared (its weights once, in extra_parameters), the MLP on the first
    2 x num_layers_per_stack layers alone (mlp_sizes), no norms."""
    if attention["kind"] == "mla":
        raise Skip("HRM-Text attention that is MLA")
    # an older config without num_layers_per_stack states the per-stack count as num_hidden_layers, which
    # HrmTextConfig then rewrites to the cache slots (configuration_hrm_text.py 109-115)
    stack = f.integer("num_layers_per_stack" if f.present("num_layers_per_stack") else "num_hidden_layers")
    high, low = f.integer("H_cycles"), f.integer("L_cycles", least=0)
    if count != stack * high * (low + 1) or 2 * stack > count:
        raise Skip(f"the cache read has {count} layers, not num_layers_per_stack x H_cycles x (L_cycles + 1) = "
                   f"{stack * high * (low + 1)}: which layers share weights is not certain")
    heads, d = f.integer("num_attention_heads"), attention["head_dim"]
    if attention["heads"] != heads or attention["kv_heads"] != heads:
        raise Skip("HRM-Text's k and v are num_attention_heads wide, but the attention read differs")
    bias, inner = f.flag("attention_bias"), f.integer("intermediate_size")
    block = base(f, "rms", 0)
    block.update(final_norm=False, shared_attention=["full"],
                 mlp={"kind": "gated", "intermediate_size": inner, "bias": f.flag("mlp_bias")},
                 mlp_sizes=[inner] * (2 * stack) + [0] * (count - 2 * stack))
    width = heads * d
    layer = 5 * hidden * width + (4 * width + hidden if bias else 0)
    add_extra(block, 2 * stack * layer, notes, f"the attention (q, k, v, gate_proj and o_proj, {heads} heads of "
               f"{d}) of the 2 x {stack} real layers, once though {count} cache slots run them; not split into "
               "matrices for quantization")
    add_extra(block, hidden, notes, f"z_L_init ({hidden})")
    notes.append(f"inferred: the MLP is counted on {2 * stack} layers (mlp_sizes), the two stacks' real layers; "
                 "its norms have no weights")
    return block


BUILDERS: dict = {
    "hrm_text": _hrm_text,
    "apertus": _apertus, "apertus1p5_text": _apertus, "bitnet": _bitnet, "diffllama": _diffllama, "doge": _doge,
    "hyperclovax": _hyperclovax, "internlm3": _internlm3, "granite_swa": _granite_swa,
    "granitemoe_swa": _granite_swa, "granitemoeshared": _granitemoe, "nemotron": _nemotron, "jais2": _jais2,
    "persimmon": _persimmon, "mellum": _mellum, "kolibri1": _kolibri1, "solar_open": _solar_open,
    "lara_mini": _lara_mini, "youtu": _youtu,
}

# multimodal wrappers whose other parts a builder here counts (Fuyu's vision_embed_tokens, _persimmon)
COUNTED_WRAPPERS = frozenset({"fuyu"})

# Emu3VQVAEConfig's defaults (configuration_emu3.py 60-71), transformers 5.24
_EMU3_VQ = {"codebook_size": 32768, "embed_dim": 4, "latent_channels": 4, "double_latent": False, "in_channels": 3,
            "out_channels": 3, "temporal_downsample_factor": 4, "base_channels": 256,
            "channel_multiplier": [1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [3], "hidden_size": 1024}


def _emu3_vq_fields(f: Fields, notes: list[str]) -> dict:
    v = f.outer.get("vq_config")
    if v is None:
        v = {}
    if not isinstance(v, dict):
        raise Skip("vq_config is not a JSON object")
    values, defaulted = {}, []
    for key, default in _EMU3_VQ.items():
        value = v.get(key)
        if value is None:
            value = default
            defaulted.append(f"{key} {json.dumps(default)}")
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, list):  # a list of whole numbers; attn_resolutions may be empty
            ok = isinstance(value, list) and all(_whole(x) and x >= 0 for x in value) and (
                bool(value) or key == "attn_resolutions")
        else:
            ok = _whole(value) and value >= 1
        if not ok:
            raise Skip(f"vq_config.{key} is {json.dumps(value)[:40]}, not what Emu3VQVAEConfig takes")
        values[key] = value
    if defaulted:
        notes.append(f"inferred: vq_config uses Emu3VQVAEConfig's defaults for {', '.join(defaulted)}")
    return values


def _emu3(f: Fields, block: dict, text_hidden: int, notes: list[str]) -> None:
    """Emu3 (Emu3ForConditionalGeneration, modeling_emu3.py 1490-1498): beside the text model (Emu3TextModel,
    the emu3_text_model row) the frozen VQ-VAE Emu3VQVAE (971-986), every part with its bias:
    - the encoder (783-821): conv_in in_channels -> base 3x3; per level l of channel_multiplier m, num_res_blocks
      (R) resnet blocks (493-536: two affine GroupNorms, two 3x3 convs, a 1x1 nin_shortcut where the widths
      differ), after each an attention block and a GroupNorm on attn_resolutions levels (666-694), a 3x3 stride-2
      downsample conv but on the last level (700-701); the middle block (632-651: two resnet blocks, an attention
      block, a GroupNorm); norm_out; conv_out -> latent (2 x latent_channels with double_latent); log2(temporal
      factor) Conv3d (4, 3, 3) temporal downsamples and R temporal resnet blocks (444-475: two BatchNorm3d, whose
      running_mean, running_var and num_batches_tracked buffers the checkpoint keeps, two Conv3d 3x3x3);
    - the decoder (853-891): R temporal resnet blocks and log2(factor) Conv3d 3x3x3 upsamples on latent_channels,
      conv_in, the middle block and, per level from the last, R + 1 resnet blocks, attention blocks with the
      same rule (725-761), where every norm is a SpatialNorm (366-393: a GroupNorm and two 1x1 convs from
      embed_dim), a 3x3 upsample conv but on level 0; norm_out a SpatialNorm, conv_out -> out_channels;
    - the attention blocks (556-577): q, k, v, out_proj of vq_config.hidden_size square with biases;
    - the codebook codebook_size x embed_dim (293), quant_conv and post_quant_conv, Conv3d (3, 1, 1) between
      latent_channels and embed_dim (979-984).
    The head ties by Emu3Config's tie_word_embeddings (modeling_utils.py 2492 reads the whole config; default
    false, configuration_emu3.py 138), not text_config's."""
    v = _emu3_vq_fields(f, notes)
    base_ch, mult, res, attn_levels = v["base_channels"], v["channel_multiplier"], v["num_res_blocks"], \
        v["attn_resolutions"]
    quant, latent, width = v["embed_dim"], v["latent_channels"], v["hidden_size"]
    if any(c * base_ch % 32 for c in mult) or base_ch % 32:
        raise Skip("vq_config's channel widths are not multiples of 32 (GroupNorm's 32 groups, modeling_emu3.py 507)")

    def conv2d(i: int, o: int, k: int) -> int:
        return i * o * k * k + o

    def conv3d(i: int, o: int, kt: int, k: int) -> int:
        return i * o * kt * k * k + o

    def spatial(c: int) -> int:  # Emu3VQVAESpatialNorm: GroupNorm, conv_y and conv_b 1x1 from embed_dim
        return 2 * c + 2 * conv2d(quant, c, 1)

    def resnet(i: int, o: int, spatial_norm: bool) -> int:
        norms = spatial(i) + spatial(o) if spatial_norm else 2 * i + 2 * o
        return norms + conv2d(i, o, 3) + conv2d(o, o, 3) + (conv2d(i, o, 1) if i != o else 0)

    def temporal(c: int) -> int:  # two BatchNorm3d (weight, bias, running mean and var, num_batches_tracked)
        return 2 * (4 * c + 1) + 2 * conv3d(c, c, 3, 3)

    attention = 4 * (width * width + width)
    steps = v["temporal_downsample_factor"].bit_length() - 1  # int(math.log2(factor)), 808 and 866
    top = base_ch * mult[-1]
    out = 2 * latent if v["double_latent"] else latent
    encoder = conv2d(v["in_channels"], base_ch, 3)
    channels = base_ch
    for level, m in enumerate(mult):
        for _ in range(res):
            encoder += resnet(channels, base_ch * m, False)
            channels = base_ch * m
            if level in attn_levels:
                encoder += attention + 2 * channels
        if level != len(mult) - 1:
            encoder += conv2d(channels, channels, 3)
    encoder += 2 * resnet(top, top, False) + attention + 2 * top  # the middle block
    encoder += 2 * top + conv2d(top, out, 3) + steps * conv3d(out, out, 4, 3) + res * temporal(out)
    decoder = res * temporal(latent) + steps * conv3d(latent, latent, 3, 3) + conv2d(latent, top, 3)
    decoder += 2 * resnet(top, top, True) + attention + spatial(top)  # the middle block
    channels = top
    for level in reversed(range(len(mult))):
        for _ in range(res + 1):
            decoder += resnet(channels, base_ch * mult[level], True)
            channels = base_ch * mult[level]
            if level in attn_levels:
                decoder += attention + spatial(channels)
        if level != 0:
            decoder += conv2d(channels, channels, 3)
    decoder += spatial(base_ch * mult[0]) + conv2d(base_ch * mult[0], v["out_channels"], 3)
    rest = v["codebook_size"] * quant + conv3d(latent, quant, 3, 1) + conv3d(quant, latent, 3, 1)
    vq = encoder + decoder + rest
    block["extra_parameters"] = block.get("extra_parameters", 0) + vq
    wrapper_tie(f, False, block, notes)
    notes.append(f"inferred: extra_parameters has {vq} for Emu3's VQ-VAE (encoder {encoder}, decoder {decoder}, "
                 f"codebook and quant convs {rest}), which the checkpoint holds beside the text model")


# wrapper model_type -> what adds its other parts around the language model decoder() builds (config_weights)
WRAPPERS = {"emu3": _emu3}

__all__ = ["BUILDERS", "COUNTED_WRAPPERS", "DECODERS", "DEFAULTS", "NOT_DERIVED", "WRAPPERS"]
