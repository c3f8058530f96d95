"""Weights builders for hybrid families: Mamba2 mixers beside attention (Bamba, Granite-4.0-H, Falcon-H1,
Zamba2's shared blocks, Nemotron-H), short convolutions (LFM2), Gated DeltaNet (OLMo-Hybrid), and
Nemotron-NAS's per-block widths (see weights_parts for the building blocks).

Each family module states, for its own model types, transformers' class defaults of the fields
it reads (DEFAULTS), pre-norm decoder rows (DECODERS), builders for the rest (BUILDERS), and why a
type it reads has no count (NOT_DERIVED); config_weights merges them, and a type may appear in one
module only. Shapes are cited from transformers 5.24's modeling files (models/<type>/modeling_<type>.py).

A builder names the no-KV layer kinds the config reader makes (config_layers.py: "mamba2", "linear",
"conv", "ffn", "no_attention", "linear_replaced"; "hybrid" for a layer with attention and a Mamba2
mixer), so each reads the layer order from the same fields the reader reads.
"""

from __future__ import annotations

import json

from kvcalc.sources.weights_parts import (
    Decoder,
    Fields,
    Skip,
    base,
    decoder,
    mamba2_mixer,
    plain,
    short_conv,
    siglip_tower,
    wrapper_tie,
)

_TIED = {"tie_word_embeddings": True}
_UNTIED = {"tie_word_embeddings": False}
DEFAULTS: dict[str, dict[str, object]] = {
    # BambaConfig
    "bamba": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "mamba_conv_bias": True,
              "mamba_proj_bias": False},
    # GraniteMoeHybridConfig
    "granitemoehybrid": {**_UNTIED, "attention_bias": False, "mamba_conv_bias": True, "mamba_proj_bias": False},
    # FalconH1Config
    "falcon_h1": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "mamba_conv_bias": True,
                  "mamba_proj_bias": False, "projectors_bias": False, "mamba_rms_norm": False},
    # Zamba2Config
    "zamba2": {**_TIED, "add_bias_linear": False, "num_mem_blocks": 1, "use_shared_attention_adapter": False,
               "adapter_rank": 128},
    # Lfm2Config, Lfm2MoeConfig
    "lfm2": {**_TIED, "conv_bias": False, "block_auto_adjust_ff_dim": True, "block_multiple_of": 256},
    "lfm2_moe": {**_TIED, "conv_bias": False, "use_expert_bias": True},
    # OlmoHybridConfig
    "olmo_hybrid": {**_UNTIED, "attention_bias": False},
    # Phi4MultimodalConfig
    "phi4_multimodal": _UNTIED,
    # NemotronHConfig
    "nemotron_h": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "use_bias": False,
                   "mamba_proj_bias": False, "use_conv_bias": True, "n_shared_experts": 1},
}
DECODERS: dict[str, Decoder] = {}
NOT_DERIVED: dict[str, str] = {
}

# layer type names of config.json (layers_block_type, layer_types; transformers' legacy names too) -> what each
# layer holds, as config_layers.LAYER_TYPES reads them
_LAYER_TYPES = {
    "full_attention": "attention", "attention": "attention", "full": "attention",
    "sliding_attention": "attention", "chunked_attention": "attention",
    "linear_attention": "state", "mamba": "state", "linear": "state",
    "conv": "conv", "mlp": "mlp", "moe": "moe", "hybrid": "hybrid",
}


def _listed_types(f: Fields, count: int, *keys: str) -> list[str] | None:
    """Each layer's type from the first of ``keys`` that config.json states (None: none does)."""
    for key in keys:
        value = f.data.get(key)
        if value is None:
            continue
        if (not isinstance(value, list) or len(value) < count
                or any(not isinstance(v, str) or v not in _LAYER_TYPES for v in value[:count])):
            raise Skip(f"{key} {json.dumps(value)[:60]} does not name a known type for each of the {count} layers")
        return [_LAYER_TYPES[v] for v in value[:count]]
    return None


def _dense(attention: dict, family: str) -> None:
    if attention["kind"] == "mla":
        raise Skip(f"{family} attention that is MLA")


def _mamba_width(f: Fields, hidden: int, heads_key: str) -> tuple[int, int]:
    """(heads, head_dim) of a Mamba2 mixer mamba_expand x hidden_size wide (Bamba, Granite-4.0-H): the config
    classes require mamba_n_heads x mamba_d_head to equal that width ("auto": the width / mamba_n_heads)."""
    heads, inner = f.integer(heads_key), f.integer("mamba_expand") * hidden
    head = f.data.get("mamba_d_head", "auto")
    if inner % heads or (head != "auto" and head != inner // heads):
        raise Skip(f"{heads_key} {heads} x mamba_d_head {json.dumps(head)} is not mamba_expand x hidden_size {inner}")
    return heads, inner // heads


# --------------------------------------------------------------------------- Mamba2 beside attention


def _bamba(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Bamba (modeling_bamba.py): every layer two RMSNorms (input_layernorm, pre_ff_layernorm, 849-850) and a gated
    MLP (BambaMLP 811-813, mlp_bias), then a Mamba2 mixer (BambaMixer 616-644: conv bias mamba_conv_bias, in_proj
    and out_proj biases mamba_proj_bias, a gated RMSNorm) or attention (182-207, attention_bias) where
    attn_layer_indices says (BambaConfig.layers_block_type); final_layernorm; lm_head untied by default."""
    _dense(attention, "Bamba")
    types = _listed_types(f, count, "layers_block_type", "layer_types")
    if types is None:
        listed = f.data.get("attn_layer_indices") or []
        if not isinstance(listed, list):
            raise Skip("attn_layer_indices is not a list")
        types = ["attention" if i in listed else "state" for i in range(count)]
    heads, head_dim = _mamba_width(f, hidden, "mamba_n_heads")
    proj_bias = f.flag("mamba_proj_bias")
    mixer = mamba2_mixer(hidden, heads, head_dim, f.integer("mamba_d_state"), f.integer("mamba_n_groups"),
                         f.integer("mamba_d_conv"), f.flag("mamba_conv_bias"), in_bias=proj_bias, out_bias=proj_bias)
    bias = f.flag("attention_bias")
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias,
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size"), "bias": f.flag("mlp_bias")},
                 mixer_parameters={"mamba2": mixer} if "state" in types else {})
    return block


def _granitemoehybrid(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Granite-4.0-H (modeling_granitemoehybrid.py, GraniteMoeHybridDecoderLayer 943-961): every layer two RMSNorms,
    a Mamba2 mixer (GraniteMoeHybridMambaLayer 505-565, biases as Bamba's) or attention (138-149, attention_bias)
    as layer_types says (all Mamba2 by default), a gated shared MLP input_linear hidden x 2 shared_intermediate_size
    and output_linear (747-763, no biases), and with num_local_experts > 0 gated experts of intermediate_size
    (gate_up_proj, down_proj, 850-851) and a router num_local_experts x hidden without a bias (832)."""
    _dense(attention, "Granite-4.0-H")
    types = _listed_types(f, count, "layers_block_type", "layer_types") or ["state"] * count
    heads, head_dim = _mamba_width(f, hidden, "mamba_n_heads")
    proj_bias = f.flag("mamba_proj_bias")
    mixer = mamba2_mixer(hidden, heads, head_dim, f.integer("mamba_d_state"), f.integer("mamba_n_groups"),
                         f.integer("mamba_d_conv"), f.flag("mamba_conv_bias"), in_bias=proj_bias, out_bias=proj_bias)
    bias = f.flag("attention_bias")
    shared = f.integer("shared_intermediate_size")
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias, mixer_parameters={"mamba2": mixer} if "state" in types else {})
    experts = f.integer("num_local_experts", least=0)
    if experts:
        block["moe"] = {"experts": experts, "experts_per_token": f.integer("num_experts_per_tok"),
                        "intermediate_size": f.integer("intermediate_size"), "shared_experts": 1,
                        "shared_intermediate_size": shared}
    else:  # the shared MLP alone: a dense gated MLP
        block["mlp"] = {"kind": "gated", "intermediate_size": shared}
    return block


def _falcon_h1(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Falcon-H1 (modeling_falcon_h1.py, FalconH1DecoderLayer 867-884): every layer attention (169-193,
    attention_bias), a Mamba2 mixer beside it and a gated MLP (828-836, mlp_bias), two RMSNorms; final_layernorm.
    The mixer (FalconH1Mixer 596-653) is mamba_d_ssm wide (mamba_expand x hidden_size when null; 1024, the class
    default, when absent), in_proj's bias mamba_proj_bias, out_proj's projectors_bias, conv bias mamba_conv_bias,
    and a gated RMSNorm only with mamba_rms_norm. The muP multipliers are numbers, not weights: mup_vector is a
    buffer registered persistent=False (1041), so not in the checkpoint."""
    _dense(attention, "Falcon-H1")
    types = _listed_types(f, count, "layers_block_type")
    if types is not None and set(types) != {"hybrid"}:
        raise Skip("layers_block_type names layers other than \"hybrid\" (FalconH1Config builds every layer alike)")
    if "mamba_d_ssm" not in f.data:
        inner = 1024
        notes.append("inferred: the Mamba2 mixer is 1024 wide (FalconH1Config's mamba_d_ssm default)")
    elif f.data["mamba_d_ssm"] is None:
        inner = f.integer("mamba_expand") * hidden
    else:
        inner = f.integer("mamba_d_ssm")
    heads = f.integer("mamba_n_heads")
    head = f.data.get("mamba_d_head", "auto")
    if inner % heads or (head != "auto" and head != inner // heads):
        raise Skip(f"mamba_n_heads {heads} x mamba_d_head {json.dumps(head)} is not the mixer width {inner}")
    mixer = mamba2_mixer(hidden, heads, inner // heads, f.integer("mamba_d_state"), f.integer("mamba_n_groups"),
                         f.integer("mamba_d_conv"), f.flag("mamba_conv_bias"), in_bias=f.flag("mamba_proj_bias"),
                         out_bias=f.flag("projectors_bias"), norm=f.flag("mamba_rms_norm"))
    bias = f.flag("attention_bias")
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias, layer_parameters={"hybrid": mixer},
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size"), "bias": f.flag("mlp_bias")})
    return block


def _zamba2(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Zamba2 (modeling_zamba2.py). Every layer a Zamba2MambaDecoderLayer (998-1001): a Mamba2 mixer (655-704:
    conv bias always, in_proj and out_proj biases add_bias_linear, a gated RMSNorm) and one RMSNorm; a "hybrid"
    layer (Zamba2HybridLayer 1021-1028, get_layers 1225-1262) adds a linear hidden x hidden (no bias) and runs a
    shared transformer block. min(num_mem_blocks, hybrid layers) distinct blocks (the rest tied to them), each
    (Zamba2AttentionDecoderLayer 913-921): input_layernorm 2 x hidden, attention over 2 x hidden wide input
    (243-246: q, k, v 2h -> heads x 2h/heads, o -> hidden, no biases), pre_ff_layernorm hidden, a gated MLP
    gate_up_proj hidden x 2I and down_proj (884-885, biases add_bias_linear); and per hybrid layer its own
    adapters (each in one block's list): gate_up hidden x r + r x 2I (891-894), and with
    use_shared_attention_adapter q, k, v 2h x r + r x 2h each (258-269). The shared blocks and adapters go in
    extra_parameters (said in a note); the hybrid layers' attention is not counted per layer (shared_attention)."""
    _dense(attention, "Zamba2")
    types = _listed_types(f, count, "layers_block_type")
    if types is None:
        raise Skip("no layers_block_type: which layers run the shared block is not stated")
    if set(types) - {"state", "hybrid"}:
        raise Skip("layers_block_type names layers other than Mamba2 and hybrid")
    heads = f.integer("n_mamba_heads")
    inner = f.integer("mamba_expand") * hidden
    if inner % heads:
        raise Skip(f"n_mamba_heads {heads} does not divide mamba_expand x hidden_size {inner}")
    bias = f.flag("add_bias_linear")
    mixer = mamba2_mixer(hidden, heads, inner // heads, f.integer("mamba_d_state"), f.integer("mamba_ngroups"),
                         f.integer("mamba_d_conv"), True, in_bias=bias, out_bias=bias)
    wide = 2 * hidden  # Zamba2Config.attention_hidden_size
    q_heads, kv_heads, head_dim = attention["heads"], attention["kv_heads"], attention["head_dim"]
    if head_dim != wide // q_heads:
        raise Skip(f"head_dim {head_dim} is not 2 x hidden_size / num_attention_heads (Zamba2Config sets it)")
    mlp = f.integer("intermediate_size") if f.present("intermediate_size") else 4 * hidden
    if not f.present("intermediate_size"):
        notes.append(f"inferred: the shared MLP is 4 x hidden_size = {mlp} wide (intermediate_size is null)")
    hybrid = types.count("hybrid")
    blocks = min(f.integer("num_mem_blocks"), hybrid)
    per_block = (wide * (q_heads + 2 * kv_heads) * head_dim + q_heads * head_dim * hidden  # attention
                 + hidden * 2 * mlp + mlp * hidden + (2 * mlp + hidden if bias else 0)  # gated MLP
                 + wide + hidden)  # input_layernorm (2h), pre_ff_layernorm
    if not f.flag("tie_word_embeddings", outer=True):
        # modeling_zamba2.py 1225-1262: the shared blocks are tied across the hybrid layers only when the head is
        # tied to the embedding; untied, transformers builds a copy per hybrid layer, which Zyphra's code does not
        raise Skip("tie_word_embeddings false: transformers then keeps a copy of the shared blocks per hybrid layer "
                   "(modeling_zamba2.py 1225-1262), Zyphra's released models share them; implementations differ")
    rank = f.integer("adapter_rank")
    adapters = hybrid * (hidden * rank + rank * 2 * mlp
                         + (3 * 2 * wide * rank if f.flag("use_shared_attention_adapter") else 0))
    block = base(f, "rms", 1)
    block.update(mlp=None, mlp_kinds=[], mixer_parameters={"mamba2": mixer} if "state" in types else {},
                 layer_parameters={"hybrid": mixer + hidden * hidden} if hybrid else {},
                 shared_attention=["hybrid"] if hybrid else [], extra_parameters=blocks * per_block + adapters)
    if hybrid:
        notes.append(f"inferred: extra_parameters {blocks * per_block + adapters} = {blocks} shared transformer "
                     f"block(s) of {per_block} (attention over 2 x hidden_size, MLP {mlp}, two norms) + the "
                     f"adapters of {hybrid} hybrid layers ({adapters}); each hybrid layer's own Mamba2 block and "
                     "linear projection are counted with it")
    return block


def _nemotron_h(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Nemotron-H (modeling_nemotron_h.py, NemotronHBlock 945-957): one mixer per layer (hybrid_override_pattern:
    M Mamba2, * attention, - a relu2 MLP of up and down, E a mixture of experts; or layers_block_type, as
    NemotronHConfig states it when no pattern is given: linear_attention, full_attention, mlp, moe), one RMSNorm
    before each, a final norm, the head untied by default. An E layer (NemotronHMoE): n_routed_experts relu2
    experts of up and down (moe_intermediate_size), a float32 router n_routed_experts x hidden with its
    e_score_correction_bias buffer, one relu2 shared MLP of moe_shared_expert_intermediate_size, no gate on it.
    A latent projection (moe_latent_size) is not counted: such configs are left out. MTP layers
    (num_nextn_predict_layers) are not built (_keys_to_ignore_on_load_unexpected "mtp.*") and not counted."""
    pattern = f.data.get("hybrid_override_pattern")
    if pattern is None:
        types = _listed_types(f, count, "layers_block_type")
        if types is None:
            raise Skip("neither hybrid_override_pattern nor layers_block_type: the layer order is not stated")
        chars = {"state": "M", "attention": "*", "mlp": "-", "moe": "E"}
        if set(types) - set(chars):
            raise Skip("layers_block_type names a layer type Nemotron-H does not build")
        pattern = "".join(chars[t] for t in types)
    if not isinstance(pattern, str):
        raise Skip("hybrid_override_pattern is not a string: the layer order of the weights is not stated")
    if f.flag("use_bias") or f.flag("mamba_proj_bias"):
        raise Skip("a Mamba projection bias (use_bias or mamba_proj_bias true) is not counted")
    if attention["kind"] != "gqa" and attention["kind"] not in ("mha", "mqa"):
        raise Skip("Nemotron-H attention that is not dense")
    mixer = mamba2_mixer(hidden, f.integer("mamba_num_heads"), f.integer("mamba_head_dim"),
                         f.integer("ssm_state_size"), f.integer("n_groups"), f.integer("conv_kernel"),
                         f.flag("use_conv_bias"))
    # modeling_nemotron_h.py 883-886: q, k, v and o never have a bias, and the head is never tied (_tied_weights_keys
    # {}, 1159), whatever attention_bias and tie_word_embeddings say; NVIDIA's remote code honours both
    for key in ("attention_bias", "tie_word_embeddings"):
        if f.flag(key, outer=key == "tie_word_embeddings"):
            raise Skip(f"{key} true: transformers ignores it (modeling_nemotron_h.py 883-886, 1159), NVIDIA's remote "
                       "code honours it; implementations differ")
    bias = False
    mlp_bias = f.flag("mlp_bias")
    block = base(f, "rms", 1)
    kinds = {"M": "mamba2", "-": "ffn", "E": "ffn"}
    block.update(qkv_bias=bias, output_bias=bias,
                 mlp=plain(f.integer("intermediate_size"), mlp_bias) if "-" in pattern else None,
                 mlp_kinds=["ffn"] if set(pattern) & {"-", "E"} else [],
                 mixer_parameters={kinds[c]: (mixer if c == "M" else 0) for c in sorted(set(pattern) & set(kinds))})
    if "E" in pattern:
        if f.data.get("moe_latent_size") is not None:
            raise Skip("moe_latent_size: the experts' latent projections are not counted")
        if mlp_bias:
            raise Skip("mlp_bias true with experts: the experts' weights have no biases but the shared MLP's do")
        shared = f.integer("n_shared_experts", least=0)
        if shared != 1:
            raise Skip(f"n_shared_experts {shared}: transformers builds one shared MLP whatever it says")
        block["moe"] = {
            "experts": f.integer("n_routed_experts"), "experts_per_token": f.integer("num_experts_per_tok"),
            "intermediate_size": f.integer("moe_intermediate_size"), "expert_kind": "plain",
            "shared_experts": 1, "shared_intermediate_size": f.integer("moe_shared_expert_intermediate_size"),
            "router_bias": True, "layer_indices": [i for i, c in enumerate(pattern) if c == "E"],
        }
    return block


# --------------------------------------------------------------------------- LFM2, OLMo-Hybrid


def _lfm2(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """LFM2 and LFM2-MoE (modeling_lfm2.py, modeling_lfm2_moe.py): every layer two RMSNorms (operator_norm,
    ffn_norm) and attention (q, k, v, out_proj without biases, per-head q_layernorm and k_layernorm; 213-218) or a
    short convolution (Lfm2ShortConv 329-338: in_proj hidden x 3 hidden, a depthwise conv hidden x conv_L_cache,
    out_proj hidden x hidden, biases when conv_bias) as layer_types says (else full_attn_idxs: attention there, a
    convolution elsewhere; neither: every layer attention, Lfm2Config); embedding_norm, applied after the last
    layer, is the final norm; tied unless tie_embedding or tie_word_embeddings says otherwise.
    - LFM2's gated MLP w1, w3, w2 (Lfm2MLP 111-125): intermediate_size, with block_auto_adjust_ff_dim
      int(2 I / 3), then with a block_ffn_dim_multiplier int(multiplier x that) rounded up to block_multiple_of.
    - LFM2-MoE (Lfm2MoeDecoderLayer 480-484): layers below num_dense_layers a gated MLP of intermediate_size, the
      rest num_experts gated experts of moe_intermediate_size, a router without a bias and, with
      use_expert_bias, an expert_bias buffer (200-205)."""
    _dense(attention, "LFM2")
    types = _listed_types(f, count, "layer_types")
    if types is None:
        idxs = f.data.get("full_attn_idxs")
        if idxs is not None and not isinstance(idxs, list):
            raise Skip("full_attn_idxs is not a list")
        types = ["attention" if idxs is None or i in idxs else "conv" for i in range(count)]
    if set(types) - {"attention", "conv"}:
        raise Skip("layer_types names layers other than attention and conv")
    tie = f.data.get("tie_embedding")  # Lfm2Config.__post_init__ pops it into tie_word_embeddings, which it wins
    if tie is None:
        block = base(f, "rms", 2)
    elif isinstance(tie, bool):
        block = {"vocab_size": f.integer("vocab_size"), "tied_embeddings": tie, "norm": "rms", "norms_per_layer": 2}
    else:
        raise Skip(f"tie_embedding is {json.dumps(tie)}, not true or false")
    bias = f.flag("conv_bias")
    conv = short_conv(hidden, f.integer("conv_L_cache"), bias)
    block.update(qk_norm=True, mixer_parameters={"conv": conv} if "conv" in types else {})
    # Lfm2Config.__post_init__ (configuration_lfm2.py 91): a released config's block_ff_dim wins over intermediate_size
    inner = f.integer("block_ff_dim" if f.model_type == "lfm2" and f.present("block_ff_dim") else "intermediate_size")
    if f.model_type == "lfm2_moe":
        block["mlp"] = {"kind": "gated", "intermediate_size": inner}
        block["moe"] = {"experts": f.integer("num_experts"), "experts_per_token": f.integer("num_experts_per_tok"),
                        "intermediate_size": f.integer("moe_intermediate_size"),
                        "first_dense_layers": f.integer("num_dense_layers", least=0),
                        "router_bias": f.flag("use_expert_bias")}
        return block
    if f.flag("block_auto_adjust_ff_dim"):
        adjusted = 2 * inner // 3  # int(2 * I / 3): 2I / 3 is never within a rounding step of a whole number
        multiplier = f.data.get("block_ffn_dim_multiplier", 1.0)  # Lfm2Config's default 1.0; null: none
        if multiplier is not None:
            if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or multiplier <= 0:
                raise Skip(f"block_ffn_dim_multiplier is {json.dumps(multiplier)}, not a positive number")
            step = f.integer("block_multiple_of")
            adjusted = int(multiplier * adjusted)  # as Lfm2MLP computes it
            adjusted = step * ((adjusted + step - 1) // step)
        notes.append(f"inferred: the MLP is {adjusted} wide (intermediate_size {inner} adjusted as Lfm2MLP does: "
                     "block_auto_adjust_ff_dim)")
        inner = adjusted
    block["mlp"] = {"kind": "gated", "intermediate_size": inner}
    return block


def _olmo_hybrid(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """OLMo-Hybrid (modeling_olmo_hybrid.py): every layer a gated MLP (752-760, no biases) and two RMSNorms
    (attention layers: post_attention_layernorm and post_feedforward_layernorm, 775-776; linear layers:
    input_layernorm and post_attention_layernorm, 815-816); attention (181-194: q, k, v, o with attention_bias,
    q_norm and k_norm over all heads) or a Gated DeltaNet (OlmoHybridGatedDeltaNet 585-631: q and k hidden x
    nk dk, v and g hidden x nv dv, a and b hidden x nv, o nv dv x hidden, no biases, conv1d (2 nk dk + nv dv) x
    kernel without a bias, A_log and dt_bias nv each, a gated RMSNorm dv) as layer_types says (else
    OlmoHybridConfig's: every fourth layer attention, the last one at least); a final norm."""
    _dense(attention, "OLMo-Hybrid")
    types = _listed_types(f, count, "layer_types")
    if types is None:
        types = ["attention" if i % 4 == 3 else "state" for i in range(count)]
        if "attention" not in types:
            types[-1] = "attention"
    if set(types) - {"attention", "state"}:
        raise Skip("layer_types names layers other than attention and linear attention")
    nk, dk, nv, dv, kernel = (f.integer(k) for k in (
        "linear_num_key_heads", "linear_key_head_dim", "linear_num_value_heads", "linear_value_head_dim",
        "linear_conv_kernel_dim"))
    mixer = (2 * hidden * nk * dk + 2 * hidden * nv * dv + 2 * hidden * nv + nv * dv * hidden
             + (2 * nk * dk + nv * dv) * kernel + 2 * nv + dv)
    bias = f.flag("attention_bias")
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias, qk_norm=True, qk_norm_width="heads",
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size")},
                 mixer_parameters={"linear": mixer} if "state" in types else {})
    return block


# --------------------------------------------------------------------------- Nemotron-NAS (DeciLM remote code)


def _ffn_width(ffn_mult: float, hidden: int) -> int:
    """DeciLM's _ffn_mult_to_intermediate_size (nvidia/Llama-3_3-Nemotron-Super-49B-v1 modeling_decilm.py; the
    same rule in vLLM's and SGLang's nemotron_nas.py): int(2 x ffn_mult x hidden / 3) rounded up to 256."""
    width = int(2 * ffn_mult * hidden / 3)
    return width if width % 256 == 0 else width + 256 - width % 256


def _nemotron_nas(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Nemotron-NAS (DeciLM remote code, modeling_decilm.py DeciLMDecoderLayer; vLLM's nemotron_nas.py and SGLang's
    DeciLMDecoderLayer build it alike): per block, unless attention.no_op, input_layernorm and either Llama
    attention with num_attention_heads / n_heads_in_group KV heads (attention_bias) or, with replace_with_linear,
    one linear hidden x hidden without a bias; unless ffn.no_op, post_attention_layernorm and either a gated MLP of
    _ffn_mult_to_intermediate_size(ffn_mult) (mlp_bias) or, with replace_with_linear, one linear hidden x hidden;
    embed_tokens, a final norm and an lm_head untied as tie_word_embeddings says."""
    _dense(attention, "Nemotron-NAS")
    blocks = f.data.get("block_configs")
    if not isinstance(blocks, list) or len(blocks) != count:
        raise Skip(f"block_configs does not list one block per layer ({count})")
    sizes, norms, linear_ffn = [], [], 0
    for i, b in enumerate(blocks):
        attn, ffn = (b.get(k) if isinstance(b, dict) else None for k in ("attention", "ffn"))
        if not isinstance(attn, dict) or not isinstance(ffn, dict):
            raise Skip(f"block_configs[{i}] has no attention and ffn objects")
        norms.append((attn.get("no_op") is not True) + (ffn.get("no_op") is not True))
        if ffn.get("no_op") is True:
            sizes.append(0)
        elif ffn.get("replace_with_linear") is True:
            sizes.append(0)
            linear_ffn += 1
        else:
            mult = ffn.get("ffn_mult")
            if isinstance(mult, bool) or not isinstance(mult, int | float) or mult <= 0:
                raise Skip(f"block_configs[{i}].ffn.ffn_mult is {json.dumps(mult)}, not a positive number")
            sizes.append(_ffn_width(mult, hidden))
        if ffn.get("sparsify") is not None or attn.get("sparsify") is not None:
            raise Skip(f"block_configs[{i}] sparsify: a sparsified block's stored weights are not counted")
    if not any(sizes):
        raise Skip("no block has an MLP")
    bias = f.flag("attention_bias")
    replaced = any(isinstance(b["attention"], dict) and b["attention"].get("no_op") is not True
                   and b["attention"].get("replace_with_linear") is True for b in blocks)
    skipped = any(b["attention"].get("no_op") is True for b in blocks)
    mixers = ({"no_attention": 0} if skipped else {}) | ({"linear_replaced": hidden * hidden} if replaced else {})
    block = base(f, "rms", 2)
    block.update(qkv_bias=bias, output_bias=bias, layer_norms=norms, mlp_sizes=sizes, mixer_parameters=mixers,
                 mlp={"kind": "gated", "intermediate_size": max(sizes), "bias": f.flag("mlp_bias")})
    widths = sorted(set(s for s in sizes if s))
    notes.append(f"inferred: per-block MLP widths from block_configs ffn_mult (DeciLM's int(2 x ffn_mult x "
                 f"hidden_size / 3) rounded up to 256): {', '.join(str(w) for w in widths)}")
    if linear_ffn:
        block["extra_parameters"] = linear_ffn * hidden * hidden
        notes.append(f"inferred: extra_parameters {linear_ffn * hidden * hidden}: the {linear_ffn} blocks whose MLP is "
                     f"one linear {hidden} x {hidden} (ffn replace_with_linear)")
    return block


# --------------------------------------------------------------------------- towers beside a language model


def _sub(f: Fields, key: str, defaults: dict[str, object], aliases: dict[str, str], notes: list[str]) -> dict:
    """The sub-config ``key`` of the whole config (vision_config, audio_config), each of ``defaults``' fields
    read under its name or its attribute_map alias, the config class's default where neither is stated (said
    in a note). Whole numbers must be >= 1 (>= 0 where the default is 0), flags true or false."""
    sub = f.outer.get(key) or {}
    if not isinstance(sub, dict):
        raise Skip(f"{key} is not a JSON object")
    values, defaulted = {}, []
    for name, default in defaults.items():
        value = sub.get(name)
        if value is None and name in aliases:
            value = sub.get(aliases[name])
        if value is None:
            value = default
            defaulted.append(f"{name} {json.dumps(default)}")
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise Skip(f"{key}.{name} is {json.dumps(value)[:40]}, not true or false")
        elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)
                                           or value < min(default, 1)):
            raise Skip(f"{key}.{name} is {json.dumps(value)[:40]}, not a whole number >= {min(default, 1)}")
        values[name] = value
    if defaulted:
        notes.append(f"inferred: {key} uses its config class's defaults for {', '.join(defaulted)}")
    return values


# GotOcr2VisionConfig (configuration_got_ocr2.py), transformers 5.24
_GOT_VISION = {"hidden_size": 768, "output_channels": 256, "num_hidden_layers": 12, "num_attention_heads": 12,
               "num_channels": 3, "image_size": 1024, "patch_size": 16, "qkv_bias": True, "use_abs_pos": True,
               "use_rel_pos": True, "window_size": 14, "mlp_dim": 3072}


def _got_ocr2(f: Fields, block: dict, text_hidden: int, notes: list[str]) -> None:
    """GOT-OCR2 (GotOcr2ForConditionalGeneration, modeling_got_ocr2.py): beside the language model (AutoModel
    of text_config, 512-520), the SAM-style vision tower GotOcr2VisionEncoder: a patch Conv2d with a bias (342),
    with use_abs_pos a learned (image / patch)^2 x hidden position grid (416-425), per layer two LayerNorms
    (218, 220), qkv hidden x 3 hidden (a bias when qkv_bias) and proj with a bias (98-99), with use_rel_pos
    rel_pos_h and rel_pos_w of (2s - 1) x head_dim each, s the window_size or, on global layers
    (global_attn_indexes, or window_size 0), image / patch (87-91, 106-108), an MLP lin1, lin2 with biases
    (71-72); the neck conv1 1x1 hidden -> output_channels and conv2 3x3, no biases, each followed by a
    LayerNorm with a bias (389-392); the projector conv_upsampler1 3x3 output_channels -> 2 x that and
    conv_upsampler2 3x3 -> the text hidden size, no biases, and a Linear text hidden square with a bias
    (467-473). The head ties by GotOcr2Config's tie_word_embeddings (default true)."""
    v = _sub(f, "vision_config", _GOT_VISION, {}, notes)
    listed = (f.outer.get("vision_config") or {}).get("global_attn_indexes", [2, 5, 8, 11])
    if not isinstance(listed, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in listed):
        raise Skip("vision_config.global_attn_indexes is not a list of layer numbers")
    h, out, layers, heads = v["hidden_size"], v["output_channels"], v["num_hidden_layers"], v["num_attention_heads"]
    grid, window = v["image_size"] // v["patch_size"], v["window_size"]
    head_dim = h // heads
    tower = v["num_channels"] * v["patch_size"] ** 2 * h + h + (grid * grid * h if v["use_abs_pos"] else 0)
    for i in range(layers):
        side = grid if i in listed or window == 0 else window
        tower += (2 * 2 * h + 3 * h * h + (3 * h if v["qkv_bias"] else 0) + h * h + h
                  + (2 * (2 * side - 1) * head_dim if v["use_rel_pos"] else 0)
                  + 2 * h * v["mlp_dim"] + v["mlp_dim"] + h)
    tower += h * out + 2 * out + out * out * 9 + 2 * out  # the neck
    projector = out * 2 * out * 9 + 2 * out * text_hidden * 9 + text_hidden * text_hidden + text_hidden
    block["extra_parameters"] = block.get("extra_parameters", 0) + tower + projector
    wrapper_tie(f, True, block, notes)
    notes.append(f"inferred: extra_parameters has {tower + projector} = GOT-OCR2's vision tower {tower} (hidden {h}, "
                 f"{layers} layers, MLP {v['mlp_dim']}, {v['image_size']}px in {v['patch_size']}px patches, window "
                 f"{window}, neck {out}) + projector {projector}")


# MossTranscribeDiarizeAudioConfig (its attribute_map names d_model, encoder_layers, encoder_ffn_dim) and
# MossTranscribeDiarizeConfig, transformers 5.24
_MOSS_AUDIO = {"num_mel_bins": 80, "num_hidden_layers": 24, "intermediate_size": 4096, "hidden_size": 1024,
               "max_source_positions": 1500}
_MOSS_ALIASES = {"hidden_size": "d_model", "num_hidden_layers": "encoder_layers",
                 "intermediate_size": "encoder_ffn_dim"}


def _moss_transcribe_diarize(f: Fields, block: dict, text_hidden: int, notes: list[str]) -> None:
    """MOSS-Transcribe-Diarize (MossTranscribeDiarizeForConditionalGeneration, modeling_moss_transcribe_diarize.py):
    beside the language model (AutoModel of text_config, 389-391), the Whisper-style audio tower: conv1
    num_mel_bins -> d and conv2 d -> d, kernel 3, with biases (283-284), embed_positions max_source_positions x d
    (a frozen parameter, 286), per layer q, v, out with biases and k without (134-137), two LayerNorms (194,
    200), fc1 and fc2 with biases (198-199), a final LayerNorm (289); the projector linear_1 d x audio_merge_size
    -> the text hidden size and linear_2 text hidden square, biases when projector_bias, and a LayerNorm with a
    bias (56-61). The head ties by MossTranscribeDiarizeConfig's tie_word_embeddings (default true, 523)."""
    a = _sub(f, "audio_config", _MOSS_AUDIO, _MOSS_ALIASES, notes)
    d, layers, inner = a["hidden_size"], a["num_hidden_layers"], a["intermediate_size"]
    tower = (a["num_mel_bins"] * d * 3 + d + d * d * 3 + d + a["max_source_positions"] * d
             + layers * (4 * d * d + 3 * d + 2 * 2 * d + 2 * d * inner + inner + d) + 2 * d)
    merge = f.outer.get("audio_merge_size", 4)
    bias = f.outer.get("projector_bias", True)
    if isinstance(merge, bool) or not isinstance(merge, int) or merge < 1 or not isinstance(bias, bool):
        raise Skip("audio_merge_size or projector_bias is not a whole number >= 1 and true or false")
    if "audio_merge_size" not in f.outer or "projector_bias" not in f.outer:
        notes.append("inferred: MossTranscribeDiarizeConfig's audio_merge_size 4 and projector_bias true where "
                     "config.json leaves them out")
    projector = d * merge * text_hidden + text_hidden * text_hidden + (2 * text_hidden if bias else 0) + 2 * text_hidden
    block["extra_parameters"] = block.get("extra_parameters", 0) + tower + projector
    wrapper_tie(f, True, block, notes)
    notes.append(f"inferred: extra_parameters has {tower + projector} = the Whisper-style audio tower {tower} "
                 f"(d_model {d}, {layers} layers, FFN {inner}) + projector {projector}")


# Phi4MultimodalVisionConfig and Phi4MultimodalAudioConfig (configuration_phi4_multimodal.py), transformers 5.24
_PHI4_VISION = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                "num_channels": 3, "image_size": 448, "patch_size": 14}
_PHI4_AUDIO = {"hidden_size": 1024, "intermediate_size": 1536, "num_blocks": 24, "num_attention_heads": 16,
               "ext_pw_out_channel": 1024, "depthwise_separable_out_channel": 1024, "depthwise_multiplier": 1,
               "kernel_size": 3, "input_size": 80, "time_reduction": 8, "bias_max_distance": 1000,
               "bias_symmetric": False, "nemo_conv_channels": 1024, "downsample_rate": 1}


def _phi4_multimodal(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Phi-4-multimodal (Phi4MultimodalForCausalLM, modeling_phi4_multimodal.py, the whole checkpoint): Phi-3's
    decoder (qkv_proj and o_proj without biases 1232-1233, gate_up_proj and down_proj without 1130-1131, two
    RMSNorms, a final one; lm_head untied by default, 1584) and embed_tokens_extend (1328-1337) holding the image
    and the audio embedding (_phi4_image, _phi4_audio)."""
    if attention["kind"] == "mla":
        raise Skip("Phi-4-multimodal attention that is MLA")
    f.family = Decoder()
    block = decoder(f, attention, count, hidden, notes)
    image, audio = _phi4_image(f, hidden, notes), _phi4_audio(f, hidden, notes)
    block["extra_parameters"] = image + audio
    return block


def _phi4_image(f: Fields, text_hidden: int, notes: list[str]) -> int:
    """Phi4MultimodalImageEmbedding (455-477): the SigLIP tower img_processor (Phi4MultimodalVisionModel 387-398):
    a patch Conv2d with a bias (271-277), (image / patch)^2 learned positions (278), per layer q/k/v/out with
    biases (101-104), fc1 and fc2 with biases (58-59), two LayerNorms (144, 146), post_layernorm (397) and the
    pooling head, always built (398; 367-370: a probe, a torch MultiheadAttention in_proj 3h x h + 3h and
    out_proj h x h + h, a LayerNorm, the MLP); img_projection_up h -> the text hidden size and img_projection_down
    square, with biases (474-475), and the global and sub-image feature extensors, h each (476-477)."""
    v = _sub(f, "vision_config", _PHI4_VISION, {}, notes)
    h, inner, layers = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    tower = siglip_tower(h, inner, layers, v["image_size"], v["patch_size"], v["num_channels"], pooling_head=True)
    projection = h * text_hidden + text_hidden + text_hidden * text_hidden + text_hidden + 2 * h
    notes.append(f"inferred: extra_parameters has {tower + projection} for the image embedding: SigLIP tower {tower} "
                 f"(hidden {h}, {layers} layers, MLP {inner}, {v['image_size']}px in {v['patch_size']}px patches, its "
                 f"pooling head) + projections and feature extensors {projection}")
    return tower + projection


def _phi4_audio(f: Fields, text_hidden: int, notes: list[str]) -> int:
    """Phi4MultimodalAudioEmbedding (1044-1059): the Conformer encoder (Phi4MultimodalAudioModel 912-921): the
    global_mean and global_invstd buffers, input_size each (834-835, persistent); NeMo subsampling (753-776): a
    3x3 Conv2d 1 -> C, then log2(time_reduction) - 1 times a depthwise 3x3 Conv2d and a pointwise 1x1, biases on
    all, and out C x nemo_final_size -> hidden with a bias (nemo_final_size: input_size halved, rounding up,
    log2(time_reduction) times, configuration_phi4_multimodal.py 146-149); the relative attention bias, an
    Embedding of bias_max_distance (twice that unless bias_symmetric) x heads (805-807); per block (725-734) two
    MLPs (a LayerNorm, gate_up_proj hidden -> 2 x intermediate_size and down_proj, biases; 594-597), q/k/v/o
    with biases (621-624), the conv module (699-709: a LayerNorm; the GLU's ext_pw_conv_1d hidden -> 2E with a
    bias and b1, b2 of E (684-687); the depthwise conv hidden -> hidden x depthwise_multiplier, kernel_size,
    and the pointwise conv to depthwise_separable_out_channel, biases (662-673); ext_pw_conv_1d hidden -> E with
    a bias), two LayerNorms; then up_proj_for_speech and up_proj_for_vision_speech hidden x downsample_rate ->
    the text hidden size and the two down projections square, all with biases (1052-1059)."""
    a = _sub(f, "audio_config", _PHI4_AUDIO, {}, notes)
    h, inner, heads = a["hidden_size"], a["intermediate_size"], a["num_attention_heads"]
    ext, kernel, mult, sep = (a[k] for k in ("ext_pw_out_channel", "kernel_size", "depthwise_multiplier",
                                              "depthwise_separable_out_channel"))
    steps = a["time_reduction"].bit_length() - 1  # int(math.log2(time_reduction))
    if steps < 1:
        raise Skip(f"audio_config.time_reduction {a['time_reduction']} is below 2")
    final = a["input_size"]
    for _ in range(steps):
        final = (final - 1) // 2 + 1  # math.floor((n - 1) / 2 + 1)
    c = a["nemo_conv_channels"]
    width = heads * (h // heads)
    subsampling = c * 9 + c + (steps - 1) * (c * 9 + c + c * c + c) + c * final * h + h
    buckets = a["bias_max_distance"] * (1 if a["bias_symmetric"] else 2)
    block = (2 * (2 * h + h * 2 * inner + 2 * inner + inner * h + h)  # feed_forward_in and feed_forward_out
             + 3 * (h * width + width) + width * h + h  # q, k, v, o
             + 2 * h + h * 2 * ext + 2 * ext + 2 * ext  # conv module: LayerNorm, the GLU's conv, b1 and b2
             + h * mult * kernel + h * mult + h * mult * sep + sep + h * ext + ext  # depthwise, pointwise, ext_pw
             + 2 * 2 * h)  # layer_norm_att, layer_norm
    encoder = 2 * a["input_size"] + subsampling + buckets * heads + a["num_blocks"] * block
    up = h * a["downsample_rate"]
    projections = 2 * (up * text_hidden + text_hidden + text_hidden * text_hidden + text_hidden)
    notes.append(f"inferred: extra_parameters has {encoder + projections} for the audio embedding: Conformer encoder "
                 f"{encoder} (hidden {h}, {a['num_blocks']} blocks, MLP {inner}) + speech and vision-speech "
                 f"projections {projections}")
    return encoder + projections


# wrapper model_type -> what counts its other parts, when its language model is one decoder() builds
WRAPPERS = {"got_ocr2": _got_ocr2, "moss_transcribe_diarize": _moss_transcribe_diarize}


BUILDERS: dict = {
    "bamba": _bamba, "granitemoehybrid": _granitemoehybrid, "falcon_h1": _falcon_h1, "zamba2": _zamba2,
    "nemotron_h": _nemotron_h, "lfm2": _lfm2, "lfm2_moe": _lfm2, "olmo_hybrid": _olmo_hybrid,
    "nemotron-nas": _nemotron_nas, "phi4_multimodal": _phi4_multimodal,
}
