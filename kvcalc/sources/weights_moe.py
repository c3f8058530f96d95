"""Weights builders for mixture-of-experts families (see weights_parts for the building blocks).

Each family module states, for its own model types, transformers' class defaults of the fields
it reads (DEFAULTS), pre-norm decoder rows (DECODERS), builders for the rest (BUILDERS), and why a
type it reads has no count (NOT_DERIVED); config_weights merges them, and a type may appear in one
module only.

Most families here are DeepSeek-V3's MoE under another name: per MoE layer n routed gated experts, a
router (float32, hidden x n) with a per-expert e_score_correction_bias buffer, and shared experts built
as ONE gated MLP of moe_intermediate_size x n_shared (so its count equals n_shared MLPs); the other layers
keep a dense gated MLP of intermediate_size. ``_moe_decoder`` counts them from an ``Experts`` row that
names the family's fields and says which layers are MoE. All line numbers below are of transformers 5.24,
``transformers/models/<type>/modeling_<type>.py`` unless another file is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kvcalc.sources.weights_parts import (
    Decoder,
    Fields,
    Skip,
    add_extra,
    base,
    decoder,
    per_attention_layer,
    short_conv,
)
from kvcalc.spec import MoE

_TIED = {"tie_word_embeddings": True}
_UNTIED = {"tie_word_embeddings": False}


@dataclass(frozen=True)
class Experts:
    """How a family names its MoE fields, and which layers are MoE."""

    experts: str = "n_routed_experts"
    per_token: str = "num_experts_per_tok"
    inner: str = "moe_intermediate_size"  # each routed expert's width
    shared: str | None = "n_shared_experts"  # a count: one shared MLP of count x moe_intermediate_size
    shared_inner: str | None = None  # or a field stating the shared MLP's width (one shared expert)
    router_bias: bool = True  # an e_score_correction_bias buffer beside the router
    # which layers are MoE when mlp_layer_types is not given (transformers' config __post_init__ derives it):
    # "first_k": from first_k_dense_replace on; "axk": i >= first_k_dense_replace and i % moe_layer_freq == 0;
    # an int n: the first n layers dense (min(n, layers)); "all": every layer; "ernie": (i + 1) %
    # moe_layer_interval == 0 and moe_layer_start_index <= i <= moe_layer_end_index (-1: the last layer);
    # "qwen": Qwen2-MoE's mlp_only_layers and decoder_sparse_step
    rule: str | int = "first_k"
    layer_types: bool = True  # mlp_layer_types ("dense" / "sparse"), when given, decides
    first_key: str = "first_k_dense_replace"  # the "first_k" rule's field
    post_norm: bool = False  # an RMSNorm of hidden_size on each MoE block's output (A.X-K1)


# transformers' attribute_map of each config class: another name a config.json may use for a field
ALIASES: dict[str, dict[str, str]] = {
    "qwen3_moe": {"num_local_experts": "num_experts"},  # configuration_qwen3_moe.py:51
    "sarvam_mla": {"num_local_experts": "n_routed_experts", "num_experts": "n_routed_experts",
                   "num_shared_experts": "n_shared_experts"},  # configuration_sarvam_mla.py:82-88
    "sarvam_moe": {"num_local_experts": "n_routed_experts", "num_experts": "n_routed_experts",
                   "num_shared_experts": "n_shared_experts", "use_qkv_bias": "attention_bias"},
    "glm4_moe_lite": {"num_local_experts": "n_routed_experts"},
    "glm_moe_dsa": {"num_local_experts": "n_routed_experts"},
    "axk1": {"num_local_experts": "n_routed_experts"},
    "axk2": {"num_local_experts": "n_routed_experts"},
    "mimo_v2_flash": {"num_local_experts": "n_routed_experts"},
    "hy_v3": {"num_local_experts": "num_experts"},
    "exaone_moe": {"num_local_experts": "num_experts"},
}

MOE: dict[str, Experts] = {
    # DeepSeek-V3's MoE (modeling_glm4_moe_lite.py 488 shared, 507 mlp_layer_types; the config's
    # __post_init__ makes layer 0 dense, configuration_glm4_moe_lite.py 119-120)
    "glm4_moe_lite": Experts(rule=1),
    # modeling_glm_moe_dsa.py 563, 582; configuration_glm_moe_dsa.py 153-155 (first_k_dense_replace)
    "glm_moe_dsa": Experts(),
    # transformers builds sarvam_mla as DeepseekV3ForCausalLM (auto/modeling_auto.py 957):
    # modeling_deepseek_v3.py 493 (layer_idx >= first_k_dense_replace)
    "sarvam_mla": Experts(layer_types=False),
    # sarvam_moe as Glm4MoeForCausalLM (auto/modeling_auto.py 958): modeling_glm4_moe.py 382, 402
    "sarvam_moe": Experts(layer_types=False),
    # modeling_axk1.py 228 (shared), 493; configuration_axk1.py 124-130 (legacy first_k / moe_layer_freq)
    "axk1": Experts(rule="axk", post_norm=True),  # post_mlp_layernorm: modeling_axk1.py 230
    # modeling_exaone_moe.py 320 (num_shared_experts), 338-339; configuration_exaone_moe.py 126-129
    "exaone_moe": Experts(experts="num_experts", shared="num_shared_experts"),
    # modeling_hy_v3.py 346 (the bias buffer on the MoE block), 348 (shared), 374; configuration 110-113
    "hy_v3": Experts(experts="num_experts", shared="num_shared_experts", rule=1),
    # modeling_dots1.py 364 (shared), 384 (layer_idx >= first_k_dense_replace)
    "dots1": Experts(layer_types=False),
}

DEFAULTS: dict[str, dict[str, object]] = {
    "qwen3_moe": {"num_experts": 128},  # Qwen3MoeConfig.num_experts (configuration_qwen3_moe.py:100)
    "glm4_moe_lite": {**_UNTIED, "attention_bias": False},  # Glm4MoeLiteConfig
    "glm_moe_dsa": {**_UNTIED, "attention_bias": False, "first_k_dense_replace": 3},  # GlmMoeDsaConfig
    "sarvam_mla": {**_UNTIED, "attention_bias": False, "first_k_dense_replace": 1,
                   "n_shared_experts": 1},  # SarvamMLAConfig
    "sarvam_moe": {**_UNTIED, "attention_bias": False, "use_qk_norm": True, "first_k_dense_replace": 1,
                   "n_shared_experts": 1},  # SarvamMoEConfig and Glm4MoeConfig
    # AXK1Config; first_k_dense_replace and moe_layer_freq are legacy kwargs popped with these defaults
    "axk1": {**_UNTIED, "attention_bias": False, "first_k_dense_replace": 1, "moe_layer_freq": 1},
    "exaone_moe": {**_UNTIED, "first_k_dense_replace": 1, "num_shared_experts": 1},  # ExaoneMoeConfig
    "hy_v3": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "num_shared_experts": 1},  # HYV3Config
    "dots1": {**_UNTIED, "attention_bias": False, "first_k_dense_replace": 0},  # Dots1Config
    "minicpm3": {**_TIED, "attention_bias": False, "mlp_bias": False},  # MiniCPM3Config
}

DECODERS: dict[str, Decoder] = {
    # Qwen3-MoE moves here to read num_local_experts, its attribute_map alias of num_experts
    "qwen3_moe": Decoder(bias="attention_bias", qk_norm=True, moe="qwen"),
    # MLA decoders; decoder() refuses attention_bias with MLA
    "glm4_moe_lite": Decoder(bias="attention_bias"),
    "glm_moe_dsa": Decoder(bias="attention_bias"),
    "sarvam_mla": Decoder(bias="attention_bias"),
    "axk1": Decoder(bias="attention_bias"),
    # MiniCPM3: MLA and a dense gated MLP with mlp_bias (modeling_minicpm3.py 132-134, 374-376); the
    # embedding scale (scale_emb) is a number, not a weight
    "minicpm3": Decoder(bias="attention_bias", mlp_bias="mlp_bias"),
    # Glm4Moe attention: q/k/v biases on attention_bias, o_proj without (modeling_glm4_moe.py 188-197);
    # per-head q/k norms on use_qk_norm (199-201)
    "sarvam_moe": Decoder(qkv_bias="attention_bias", qk_norm="use_qk_norm"),
    # q/k/v/o without biases, per-head q/k norms (modeling_exaone_moe.py 155-161)
    "exaone_moe": Decoder(qk_norm=True),
    # q/k/v/o biases on attention_bias, per-head q/k norms (modeling_hy_v3.py 212-225); mlp_bias on the
    # dense MLP and the shared expert (118-120)
    "hy_v3": Decoder(bias="attention_bias", qk_norm=True, mlp_bias="mlp_bias"),
    # q/k/v/o biases on attention_bias, per-head q/k norms (modeling_dots1.py 197-210)
    "dots1": Decoder(bias="attention_bias", qk_norm=True),
}
BUILDERS: dict = {}
NOT_DERIVED: dict[str, str] = {}


def _aliased(f: Fields) -> Fields:
    """The same fields with transformers' attribute_map aliases read under their canonical names."""
    aliases = ALIASES.get(f.model_type, {})
    moved = {canon: f.data[alias] for alias, canon in aliases.items()
             if f.data.get(alias) is not None and f.data.get(canon) is None}
    if not moved:
        return f
    data = {**f.data, **moved}
    g = Fields(data, data if f.outer is f.data else f.outer, f.model_type, f.defaults, f.family)
    g.defaulted = f.defaulted  # the caller reports the defaults used from its own list
    return g


def _moe_layers(f: Fields, count: int, rule: Experts) -> list[int]:
    """The MoE layers' numbers, as the config class's __post_init__ and the decoder layer pick them."""
    listed = f.data.get("mlp_layer_types") if rule.layer_types else None
    if listed is not None:
        if not isinstance(listed, list) or len(listed) != count or not set(listed) <= {"dense", "sparse"}:
            raise Skip(f"mlp_layer_types {json.dumps(listed)[:60]} is not {count} of \"dense\" / \"sparse\"")
        return [i for i, kind in enumerate(listed) if kind == "sparse"]
    if rule.rule == "all":
        return list(range(count))
    if isinstance(rule.rule, int):
        return list(range(min(rule.rule, count), count))
    if rule.rule == "qwen":  # Qwen2-MoE's rule: num_experts > 0, not in mlp_only_layers, (i + 1) % step == 0
        only = f._get("mlp_only_layers")
        if not isinstance(only, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in only):
            raise Skip(f"mlp_only_layers {json.dumps(only)[:60]} is not a list of layer numbers")
        step = f.integer("decoder_sparse_step")
        if f.integer(rule.experts, least=0) == 0:
            return []
        return [i for i in range(count) if i not in only and (i + 1) % step == 0]
    if rule.rule == "ernie":
        interval, start = f.integer("moe_layer_interval"), f.integer("moe_layer_start_index", least=0)
        end = f.integer("moe_layer_end_index", least=-1)
        end = count - 1 if end == -1 else end
        return [i for i in range(count) if (i + 1) % interval == 0 and start <= i <= end]
    first = f.integer(rule.first_key, least=0)
    if rule.rule == "axk":
        freq = f.integer("moe_layer_freq")
        return [i for i in range(count) if i >= first and i % freq == 0]
    return list(range(min(first, count), count))


def _moe_decoder(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """A pre-norm decoder (its Decoder row: biases, q/k norms, the dense MLP) whose MoE layers hold routed
    gated experts, a router with or without a bias and a shared MLP, as the ``MOE`` row names them."""
    f = _aliased(f)
    rule = MOE[f.model_type]
    block = decoder(f, attention, count, hidden, notes)
    layers = _moe_layers(f, count, rule)
    if not layers:
        return block
    inner = f.integer(rule.inner)
    moe: dict = {"experts": f.integer(rule.experts), "experts_per_token": f.integer(rule.per_token),
                 "intermediate_size": inner, "router_bias": rule.router_bias}
    if rule.shared_inner:
        moe.update(shared_experts=1, shared_intermediate_size=f.integer(rule.shared_inner))
    elif rule.shared:
        shared = f.integer(rule.shared, least=0)
        if shared:
            moe.update(shared_experts=1, shared_intermediate_size=shared * inner)
    if layers == list(range(count - len(layers), count)):
        moe["first_dense_layers"] = count - len(layers)
    else:
        moe["layer_indices"] = layers
    mlp_bias = f.flag(f.family.mlp_bias) if f.family.mlp_bias else False
    if mlp_bias and moe.get("shared_experts"):
        moe_bias = len(layers) * (2 * moe["shared_intermediate_size"] + hidden)  # the shared MLP's biases
        block["extra_parameters"] = block.get("extra_parameters", 0) + moe_bias
        notes.append(f"inferred: extra_parameters has {moe_bias} for the shared expert's biases (mlp_bias) in "
                     f"{len(layers)} MoE layers")
    if rule.post_norm:
        block["extra_parameters"] = block.get("extra_parameters", 0) + len(layers) * hidden
        notes.append(f"inferred: extra_parameters has {len(layers) * hidden} for the RMSNorm on the output of "
                     f"{len(layers)} MoE blocks ({hidden} each)")
    block["moe"] = moe
    if len(layers) == count:
        block["mlp"] = None
    MoE.model_validate(moe)
    return block


def _qwen3_moe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Qwen3-MoE (the Decoder row): num_experts, or num_local_experts, its alias (configuration_qwen3_moe.py
    51); MoE when num_experts > 0 and (i + 1) % decoder_sparse_step == 0 (modeling_qwen3_moe.py 311)."""
    return decoder(_aliased(f), attention, count, hidden, notes)


def _deepseek_v32(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """DeepSeek-V3.2: DeepSeek-V3's decoder (the Decoder row in config_weights), where mlp_layer_types, when
    given, picks the MoE layers (modeling_deepseek_v32.py 609); otherwise the config derives it from
    first_k_dense_replace (configuration_deepseek_v32.py 132-135), as the Decoder row counts."""
    block = decoder(f, attention, count, hidden, notes)
    listed = f.data.get("mlp_layer_types")
    if listed is not None:
        first = block["moe"]["first_dense_layers"]
        if listed != ["dense"] * min(first, count) + ["sparse"] * max(count - first, 0):
            raise Skip(f"mlp_layer_types {json.dumps(listed)[:60]} is not first_k_dense_replace {first} dense "
                       "layers then MoE")
    return block


DECODERS["deepseek_v32"] = Decoder(bias="attention_bias", moe="deepseek")  # moved from config_weights
BUILDERS.update({"qwen3_moe": _qwen3_moe, "deepseek_v32": _deepseek_v32})
BUILDERS.update({t: _moe_decoder for t in MOE})


def _mtp_note(f: Fields, notes: list[str], *keys: str) -> bool:
    """Says the multi-token-prediction layers a checkpoint holds beside what transformers builds."""
    for key in keys:
        layers = f.data.get(key)
        if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0:
            notes.append(f"the {layers} multi-token-prediction layer(s) in the checkpoint ({key}) are not counted "
                         "(transformers does not build them; fit --mtp adds them for speculative decoding)")
            return True
    return False


def _gpt_oss(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """gpt-oss: q/k/v/o with biases on attention_bias (modeling_gpt_oss.py 272-283) and one attention sink per
    head (285); every layer MoE (336): num_local_experts experts of intermediate_size with biases on gate_up
    (2 x intermediate) and down (hidden) (75-78), a router with a bias (123-124); two RMSNorms."""
    if attention["kind"] == "mla":
        raise Skip("gpt-oss attention that is MLA")
    block = decoder(f, attention, count, hidden, notes)
    experts, inner = block["moe"]["experts"], block["moe"]["intermediate_size"]
    add_extra(block, count * attention["heads"], notes, f"the attention sinks ({count} layers x {attention['heads']} "
           "heads)")
    add_extra(block, count * experts * (2 * inner + hidden), notes,
           f"the experts' biases ({count} layers x {experts} experts x (2 x {inner} + {hidden}))")
    return block


def _mimo_v2_flash(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """MiMo-V2-Flash: q/k/v biases on attention_bias, o_proj without (modeling_mimo_v2_flash.py 352-357; the
    sliding layers' doubled KV heads come with the attention the KV reader built), an attention sink per
    head on sliding layers (360); DeepSeek-V3's MoE without shared experts (212-220) on mlp_layer_types'
    sparse layers (415; configuration_mimo_v2_flash.py 119-120: layer 0 dense), a dense MLP elsewhere. The
    checkpoint's MTP layers (model.mtp.*, ignored on load, 472) are not counted."""
    block = _moe_decoder(f, attention, count, hidden, notes)
    kinds = f.data.get("layer_types")
    if not isinstance(kinds, list) or len(kinds) != count:
        raise Skip("no layer_types list: which layers carry attention sinks is not stated")
    sliding = sum(1 for k in kinds if k == "sliding_attention")
    add_extra(block, sliding * attention["heads"], notes,
           f"the attention sinks of {sliding} sliding layers ({attention['heads']} heads each)")
    if not _mtp_note(f, notes, "num_nextn_predict_layers", "num_mtp_layers"):
        notes.append("the checkpoint's model.mtp.* multi-token-prediction weights are not counted (transformers "
                     "ignores them on load, modeling_mimo_v2_flash.py 472)")
    return block


MOE["mimo_v2_flash"] = Experts(shared=None, rule=1)
DEFAULTS.update({
    "gpt_oss": {**_UNTIED, "attention_bias": True},  # GptOssConfig
    "mimo_v2_flash": {**_UNTIED, "attention_bias": False},  # MiMoV2FlashConfig
})
DECODERS.update({
    "gpt_oss": Decoder(bias="attention_bias", moe="mixtral", router_bias=True),
    "mimo_v2_flash": Decoder(qkv_bias="attention_bias"),
})
BUILDERS.update({"gpt_oss": _gpt_oss, "mimo_v2_flash": _mimo_v2_flash})


def _ernie4_5_moe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """ERNIE-4.5-MoE: q/k/v/o, the dense MLP, the shared experts and the lm_head carry biases on use_bias
    (modeling_ernie4_5_moe.py 73-75, 222-225, 371, 635; the head's bias stays apart from a tied weight);
    moe_num_experts experts (the routed experts without biases, 305-306), a float32 router and a 1 x experts
    e_score_correction_bias parameter (282, 339), moe_num_shared_experts shared experts as one MLP (369-371),
    on layers where (i + 1) % moe_layer_interval == 0 between moe_layer_start_index and moe_layer_end_index
    (398-400; -1 the last, configuration_ernie4_5_moe.py 119-121)."""
    block = _moe_decoder(f, attention, count, hidden, notes)
    if f.flag("use_bias"):
        add_extra(block, block["vocab_size"], notes, "the lm_head's bias (use_bias)")
    return block


MOE["ernie4_5_moe"] = Experts(experts="moe_num_experts", per_token="moe_k", shared="moe_num_shared_experts",
                              rule="ernie", layer_types=False)
ALIASES["ernie4_5_moe"] = {"num_experts": "moe_num_experts", "num_experts_per_tok": "moe_k"}  # configuration 60
DEFAULTS["ernie4_5_moe"] = {**_TIED, "use_bias": False, "moe_num_shared_experts": 2, "moe_layer_start_index": 1,
                            "moe_layer_end_index": -1, "moe_layer_interval": 1}  # Ernie4_5_MoeConfig
DECODERS["ernie4_5_moe"] = Decoder(bias="use_bias", mlp_bias="use_bias")
BUILDERS["ernie4_5_moe"] = _ernie4_5_moe


def _phimoe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Phi-3.5-MoE: q/k/v/o biases on attention_bias (modeling_phimoe.py 183-193), every layer Mixtral's
    experts with a router without a bias (309-310, 465, 526), LayerNorms with weight and bias before attention
    and MLP and at the end (529-530, 601), an lm_head bias on lm_head_bias (750)."""
    block = decoder(f, attention, count, hidden, notes)
    block["norm"] = "layer"
    if f.flag("lm_head_bias"):
        add_extra(block, block["vocab_size"], notes, "the lm_head's bias (lm_head_bias)")
    return block


def _aria_text(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Aria's language model: q/k/v/o biases on attention_bias (modeling_aria.py 421-431); every layer MoE
    (494): moe_num_experts gated experts of intermediate_size without biases (287-288), a router without a
    bias (265), and moe_num_shared_experts shared experts as one gated MLP of intermediate_size x that count
    with biases on mlp_bias (242-245)."""
    block = decoder(f, attention, count, hidden, notes)
    inner, shared = f.integer("intermediate_size"), f.integer("moe_num_shared_experts", least=0)
    moe = {"experts": f.integer("moe_num_experts"), "experts_per_token": f.integer("moe_topk"),
           "intermediate_size": inner}
    if shared:
        moe.update(shared_experts=1, shared_intermediate_size=shared * inner)
        if f.flag("mlp_bias"):
            add_extra(block, count * (2 * shared * inner + hidden), notes,
                   f"the shared experts' biases (mlp_bias) in {count} layers")
    block.update(moe=moe, mlp=None)
    return block


DEFAULTS.update({
    "phimoe": {**_UNTIED, "attention_bias": False, "lm_head_bias": False},  # PhimoeConfig
    "aria_text": {**_UNTIED, "attention_bias": False, "mlp_bias": False, "moe_num_shared_experts": 2},
})
DECODERS.update({
    "phimoe": Decoder(bias="attention_bias", moe="mixtral"),
    "aria_text": Decoder(bias="attention_bias"),
})
BUILDERS.update({"phimoe": _phimoe, "aria_text": _aria_text})


def _flint(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Flint: q/k/v/o biases on attention_bias, per-head q/k norms and an attention sink per head in every
    layer (modeling_flint.py 249-264); MoE layers as Qwen2-MoE picks them (315-316): num_experts gated
    experts, a float32 router without a bias (89, 114-115) and one ungated shared expert of
    shared_expert_intermediate_size (150-158); a dense MLP of intermediate_size elsewhere (320)."""
    block = _moe_decoder(f, attention, count, hidden, notes)
    add_extra(block, count * attention["heads"], notes,
           f"the attention sinks ({count} layers x {attention['heads']} heads)")
    return block


MOE["flint"] = Experts(experts="num_experts", shared=None, shared_inner="shared_expert_intermediate_size",
                       router_bias=False, rule="qwen", layer_types=False)
DEFAULTS["flint"] = {**_UNTIED, "attention_bias": False, "decoder_sparse_step": 1, "mlp_only_layers": [0, 1]}
DECODERS["flint"] = Decoder(bias="attention_bias", qk_norm=True)
BUILDERS["flint"] = _flint


def _laguna(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Laguna: q/k/v/o biases on attention_bias, per-head q/k norms (modeling_laguna.py 339-353) and a gate
    projection g_proj without a bias, hidden x heads when gating is true or "per-head", else hidden x heads x
    head_dim (354-356); DeepSeek-V3's MoE with a bias parameter beside the router (153-154) and one shared
    expert of shared_expert_intermediate_size (223) on mlp_layer_types' sparse layers (419; layer 0 dense
    by default, configuration_laguna.py 131-132). Layer i has num_attention_heads_per_layer[i] query heads (417,
    330; q_proj, its bias, o_proj and g_proj scale with them): the heads beyond num_attention_heads, which the
    attention shape counts in every layer, go in extra_parameters; fewer in any layer in all is refused."""
    heads, d = attention["heads"], attention["head_dim"]
    per_layer = f.data.get("num_attention_heads_per_layer")
    if per_layer is None:
        per_layer = [heads] * count  # configuration_laguna.py 133-134
    if not isinstance(per_layer, list) or len(per_layer) != count or any(not _whole(h) or h < 1 for h in per_layer):
        raise Skip(f"num_attention_heads_per_layer {json.dumps(per_layer)[:60]} is not a head count per layer")
    block = _moe_decoder(f, attention, count, hidden, notes)
    gating = f._get("gating")
    per_head = gating is True or gating == "per-head"  # g_proj hidden x heads, else x heads x head_dim (354-356)
    width = sum(per_layer) * (1 if per_head else d)
    if len(set(per_layer)) == 1:  # the same gate in every layer: a layer matrix, quantized and split as the others
        block["layer_parameters"] = per_attention_layer(f, hidden * width // count)
        notes.append(f"inferred: layer_parameters has {hidden * width // count} per layer for the attention output "
                     f"gate g_proj ({hidden} x {'its heads' if per_head else 'its heads x head_dim'})")
    else:
        add_extra(block, hidden * width, notes, f"the attention output gate g_proj ({count} layers, {hidden} x "
                  f"{'its heads' if per_head else 'its heads x head_dim'} in each)")
    more = sum(per_layer) - count * heads
    if more < 0:
        raise Skip(f"num_attention_heads_per_layer has fewer heads in all ({sum(per_layer)}) than "
                   f"num_attention_heads in every layer ({count * heads}); the attention shape would overstate them")
    bias = block.get("qkv_bias", False)
    add_extra(block, more * (2 * hidden * d + (d if bias else 0)), notes,
           f"q_proj and o_proj of the {more} query heads of num_attention_heads_per_layer beyond {heads} per layer")
    return block


MOE["laguna"] = Experts(experts="num_experts", shared=None, shared_inner="shared_expert_intermediate_size", rule=1)
DEFAULTS["laguna"] = {**_UNTIED, "attention_bias": False, "gating": True}  # LagunaConfig
DECODERS["laguna"] = Decoder(bias="attention_bias", qk_norm=True)
BUILDERS["laguna"] = _laguna


def _gated_attention(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Beam and AFMoE: four RMSNorms per layer, q/k/v/o biases on attention_bias, per-head q/k norms, and an
    attention output gate gate_proj hidden x heads x head_dim without a bias (modeling_beam.py 215-233, with a
    gate_bias of one per head; modeling_afmoe.py 318-337); MoE as the ``MOE`` row says: Beam's DeepSeek-V3
    experts without shared ones on mlp_layer_types' sparse layers (modeling_beam.py 380-381, 409-414; three
    dense layers by default, configuration_beam.py 118-121); AFMoE's from num_dense_layers on with
    num_shared_experts shared as one MLP and an expert_bias parameter (modeling_afmoe.py 140, 209-211,
    405-417)."""
    block = _moe_decoder(f, attention, count, hidden, notes)
    heads, head_dim = attention["heads"], attention["head_dim"]
    gate = hidden * heads * head_dim  # a layer matrix in every layer: quantized and split as the others are
    block["layer_parameters"] = per_attention_layer(f, gate)
    notes.append(f"inferred: layer_parameters has {gate} per layer for the attention output gate ({hidden} x "
                 f"{heads} heads x {head_dim})")
    if f.model_type == "beam":
        add_extra(block, count * heads, notes, f"the gate's bias ({heads} in each of {count} layers)")
    return block


MOE["beam"] = Experts(experts="num_experts", shared=None, rule=3)
MOE["afmoe"] = Experts(experts="num_experts", shared="num_shared_experts", first_key="num_dense_layers",
                       layer_types=False)
DEFAULTS["beam"] = {**_UNTIED, "attention_bias": False}  # BeamConfig
DEFAULTS["afmoe"] = {**_UNTIED, "attention_bias": False, "num_dense_layers": 1, "num_shared_experts": 2}
DECODERS["beam"] = DECODERS["afmoe"] = Decoder(bias="attention_bias", qk_norm=True, norms=4)
BUILDERS["beam"] = BUILDERS["afmoe"] = _gated_attention


def _cohere2_moe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Cohere2-MoE: one norm per layer (attention and MLP in parallel), an RMSNorm or a LayerNorm without a
    bias, weight only either way (modeling_cohere2_moe.py 69, 357-361), q/k/v/o biases on attention_bias
    (287-298); on mlp_layer_types' sparse layers num_experts gated experts of intermediate_size, a router
    without a bias (110-111, 148) and num_shared_experts shared experts as one MLP of intermediate_size x
    that count (176-179); on dense layers a gated MLP of prefix_dense_intermediate_size (352-356; the layers
    derive from first_k_dense_replace, configuration_cohere2_moe.py 140, 156-159)."""
    block = _moe_decoder(f, attention, count, hidden, notes)
    if block["mlp"] is not None:
        block["mlp"] = {**block["mlp"], "intermediate_size": f.integer("prefix_dense_intermediate_size")}
    return block


MOE["cohere2_moe"] = Experts(experts="num_experts", inner="intermediate_size", shared="num_shared_experts",
                             router_bias=False)
DEFAULTS["cohere2_moe"] = {**_TIED, "attention_bias": False, "num_shared_experts": 0,
                           "first_k_dense_replace": 0}  # Cohere2MoeConfig; the last a kwarg popped with 0
DECODERS["cohere2_moe"] = Decoder(bias="attention_bias", norms=1)
BUILDERS["cohere2_moe"] = _cohere2_moe



def _axk2(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """A.X-K2 (modeling_axk2.py): DeepSeek-V3.2's MLA with its indexer (AXK2Indexer 208-211: wq_b, wk, a LayerNorm
    k_norm, weights_proj, as the attention shape counts it) where one q_gate_proj, 2 x q_lora_rank -> heads x
    (qk_head_dim + v_head_dim) without a bias (530-532), replaces q_b_proj (q_lora_rank -> heads x qk_head_dim,
    which the MLA shape counts): the difference, q_lora_rank x heads x (qk_head_dim + 2 v_head_dim), goes in
    layer_parameters. DeepSeek-V3's MoE (388-400: routed experts, a float32 router with an e_score_correction_bias
    buffer, n_shared_experts as one MLP) on mlp_layer_types' sparse layers (668; the config derives them from the
    legacy first_k_dense_replace and moe_layer_freq, configuration_axk2.py 140-146). input_layernorm on every layer
    and post_attention_layernorm on sparse layers are AXK2GatedRMSNorm (669-674, 94-97): an RMSNorm, which the two
    norms per layer count, and a gate MLP fc1 hidden -> gated_norm_rank and fc2 back without biases (77-78), which
    goes in extra_parameters. No post-MLP norm (unlike A.X-K1)."""
    if attention["kind"] != "mla" or not attention.get("q_lora_rank") or attention.get("indexer") is None:
        raise Skip("A.X-K2's attention is MLA with a q_lora_rank and an indexer (configuration_axk2.py 156-160), "
                   "which the attention read is not")
    block = _moe_decoder(f, attention, count, hidden, notes)
    rank, heads = attention["q_lora_rank"], attention["heads"]
    qk, v = attention["qk_nope_head_dim"] + attention["qk_rope_head_dim"], attention["v_head_dim"]
    q_gate = 2 * rank * heads * (qk + v) - rank * heads * qk  # q_gate_proj beyond the q_b_proj counted
    types = f.data.get("layer_types")  # every layer full MLA with its indexer (configuration_axk2.py 149-150)
    if types is not None and (not isinstance(types, list) or not set(types) <= {"indexed_attention", "full_attention"}):
        raise Skip(f"layer_types {json.dumps(types)[:60]} is not indexed_attention on every layer")
    block["layer_parameters"] = {"full": q_gate}
    notes.append(f"inferred: layer_parameters has {q_gate} per layer for q_gate_proj (2 x {rank} -> {heads} x ({qk} "
                 f"+ {v})) beyond the q_b_proj ({rank} -> {heads} x {qk}) the MLA shape counts")
    sparse = len(_moe_layers(_aliased(f), count, MOE["axk2"]))
    gates = (count + sparse) * 2 * hidden * f.integer("gated_norm_rank")
    add_extra(block, gates, notes, f"the gated norms' low-rank MLPs ({count} input_layernorm and {sparse} "
           f"post_attention_layernorm on sparse layers, each {hidden} -> {f.integer('gated_norm_rank')} and back)")
    return block


MOE["axk2"] = Experts(rule="axk")  # modeling_axk2.py 398-400 (shared), 668; configuration_axk2.py 140-146
# AXK2Config; first_k_dense_replace and moe_layer_freq are legacy kwargs popped with these defaults
DEFAULTS["axk2"] = {**_UNTIED, "attention_bias": False, "first_k_dense_replace": 1, "moe_layer_freq": 1,
                    "gated_norm_rank": 16}
DECODERS["axk2"] = Decoder(bias="attention_bias")  # decoder() refuses attention_bias with MLA
BUILDERS["axk2"] = _axk2


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nested(f: Fields, *keys: str) -> Fields:
    """The same fields with those of the nested objects ``keys`` (DBRX's attn_config, ffn_config) read as
    "object.field"; their class defaults stand in DEFAULTS under the same names."""
    flat = dict(f.data)
    for key in keys:
        inner = f.data.get(key)
        if inner is None:
            continue
        if not isinstance(inner, dict):
            raise Skip(f"{key} is not a JSON object")
        flat.update({f"{key}.{k}": v for k, v in inner.items()})
    g = Fields(flat, flat if f.outer is f.data else f.outer, f.model_type, f.defaults, f.family)
    g.defaulted = f.defaulted
    return g


def _dbrx(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """DBRX (modeling_dbrx.py): per layer a fused Wqkv d_model x (d_model + 2 kv_n_heads head_dim) and out_proj
    d_model x d_model without biases, head_dim d_model / n_heads (172-190); two LayerNorms without a bias (360,
    365; weight only, counted as RMSNorms are) and a final one (475); every layer DbrxFFN (406): a router
    d_model x moe_num_experts without a bias (316) and moe_num_experts gated experts w1, v1, w2 of
    ffn_hidden_size (254-256); the head is never tied (configuration_dbrx.py 158-159)."""
    f = _nested(f, "attn_config", "ffn_config")
    heads, kv = f.integer("n_heads"), f.integer("attn_config.kv_n_heads")
    if attention["kind"] == "mla" or hidden % heads or attention["heads"] != heads \
            or attention["head_dim"] != hidden // heads:
        raise Skip("DBRX's projections are d_model wide, but the attention read differs from n_heads x "
                   "d_model / n_heads")
    if attention["kv_heads"] != kv:  # the KV reader reads kv_n_heads (config_attention._dbrx_kv_heads): a guard
        raise Skip(f"attn_config.kv_n_heads is {kv}, but the attention read has {attention['kv_heads']} KV heads: "
                   "the count would use the wrong Wqkv width")
    if f.flag("tie_word_embeddings"):
        raise Skip("tie_word_embeddings true: DbrxConfig refuses it")
    block = base(f, "rms", 2)  # LayerNorm(bias=False): one weight of d_model, as an RMSNorm
    block.update(mlp=None, moe={
        "experts": f.integer("ffn_config.moe_num_experts"), "experts_per_token": f.integer("ffn_config.moe_top_k"),
        "intermediate_size": f.integer("ffn_config.ffn_hidden_size"),
    })
    notes.append("inferred: DBRX's LayerNorms have no bias (weight only)")
    return block


def _per_layer(f: Fields, key: str, count: int) -> int:
    """A whole number, or a per-layer list of one repeated whole number (Hunyuan's moe_topk)."""
    value = f._get(key)
    if isinstance(value, list):
        if len(value) != count or not value or any(not _whole(v) for v in value) or len(set(value)) != 1:
            raise Skip(f"{key} {json.dumps(value)[:60]} differs between layers (the weights schema has one MoE "
                       "shape)")
        value = value[0]
    if not _whole(value) or value < 1:
        raise Skip(f"{key} is {json.dumps(value)[:60]}, not a whole number >= 1")
    return value


def _hunyuan_v1_moe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Hunyuan-MoE (modeling_hunyuan_v1_moe.py): q/k/v/o with biases on attention_bias, head_dim read from the
    config (166-177; transformers cannot build a config without it), per-head query/key_layernorm (178-179); every
    layer HunYuanMoEV1Moe (307): a float32 router hidden x num_experts without a bias (232), num_experts gated
    experts of intermediate_size (254-255; num_local_experts is num_experts, configuration 47) and one gated
    shared MLP of intermediate_size (291, 66-74); two RMSNorms (310-311). transformers reads neither
    moe_intermediate_size nor num_shared_expert: a config where they differ from intermediate_size and 1
    describes a checkpoint transformers does not build, and is refused."""
    if not f.present("head_dim"):
        raise Skip("no head_dim: HunYuanMoEV1Attention reads config.head_dim, and transformers cannot build the "
                   "model without it")
    experts = f._get("num_experts")
    if not _whole(experts) or experts < 1:
        raise Skip(f"num_experts {json.dumps(experts)[:60]} is not a whole number (per-layer lists: transformers "
                   "builds its experts from num_local_experts, the same field, and cannot take a list)")
    inner = f.integer("intermediate_size")
    for key, want in (("moe_intermediate_size", inner), ("num_shared_expert", 1)):
        given = f.data.get(key)
        if given is not None and any(v != want for v in (given if isinstance(given, list) else [given])):
            raise Skip(f"{key} {json.dumps(given)[:60]}: transformers 5.24 builds every expert and the shared MLP "
                       f"from intermediate_size, one shared MLP, which is not this checkpoint")
    top = _per_layer(f, "moe_topk" if f.present("moe_topk") or not f.present("num_experts_per_tok")
                     else "num_experts_per_tok", count)
    if attention["kind"] == "mla":
        raise Skip("Hunyuan-MoE attention that is MLA")
    bias = f.flag("attention_bias")
    block = base(f, "rms", 2)
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias, mlp=None, moe={
        "experts": experts, "experts_per_token": top, "intermediate_size": inner,
        "shared_experts": 1, "shared_intermediate_size": inner,
    })
    return block


def _jetmoe(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """JetMoE (modeling_jetmoe.py). Attention is a mixture of experts, JetMoeMoA (267-292): a bias of hidden, per
    expert an input projection hidden -> kv_channels x num_key_value_heads (p) and an output one back, a router
    hidden x num_local_experts without a bias, and a shared kv_proj hidden x 2p (449). kvcalc's attention of
    heads = num_key_value_heads x num_experts_per_tok (k) and head_dim kv_channels counts q, k, v, o as
    2 k h p + 2 h p, which is kv_proj and k of the experts' pairs; the other (experts - k) pairs go in
    layer_parameters. The MLP is JetMoeMoE (218-232): a bias of hidden, per expert input_linear hidden ->
    2 intermediate_size and output_linear back (a gated MLP's 3 h I) and a router without a bias. Two RMSNorms
    (507-508), a final one (581); tied by default."""
    experts, top, kv, d = (f.integer(k) for k in ("num_local_experts", "num_experts_per_tok",
                                                   "num_key_value_heads", "kv_channels"))
    if attention["kind"] == "mla" or attention["heads"] != kv * top or attention["kv_heads"] != kv \
            or attention["head_dim"] != d:
        raise Skip("JetMoE's attention experts are sized by num_key_value_heads x kv_channels, but the attention "
                   "read is not num_key_value_heads x num_experts_per_tok heads of kv_channels")
    if top > experts:
        raise Skip(f"num_experts_per_tok {top} is more than num_local_experts {experts}")
    p = kv * d
    block = base(f, "rms", 2)
    block.update(mlp=None, moe={"experts": experts, "experts_per_token": top,
                                "intermediate_size": f.integer("intermediate_size")})
    block["layer_parameters"] = {"full": 2 * (experts - top) * hidden * p}
    block["inactive_layer_parameters"] = block["layer_parameters"]  # a token runs top of the experts
    notes.append(f"inferred: layer_parameters has {2 * (experts - top) * hidden * p} per layer for the "
                 f"{experts - top} attention experts beyond the {top} the q/k/v/o shape counts (each {hidden} -> "
                 f"{p} and back), left out of the active count: a token runs {top} of them")
    block["extra_parameters"] = count * (2 * hidden + hidden * experts)
    notes.append(f"inferred: extra_parameters {block['extra_parameters']} for the attention router ({hidden} x "
                 f"{experts}) and the attention and MLP output biases ({hidden} each) in {count} layers")
    return block


def _lfm3(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """LFM3 (modeling_lfm3.py): per layer (413-430) operator_norm and ffn_norm, post_operator_norm and
    post_ffn_norm on use_sandwich_norm, a gated MLP w1, w3, w2 of intermediate_size (125-132), and attention where
    layer_types is not "conv" (q/k/v/o with biases on attention_bias, per-head q_norm and k_norm, g_proj hidden x
    heads without a bias on use_attention_gate; 223-241) or a short convolution (344-365: in_proj hidden x 3 hidden,
    a depthwise conv hidden x conv_L_cache, out_proj hidden x hidden, biases on conv_bias). embedding_norm, applied
    after the last layer, is the final norm (515); tied by default."""
    if attention["kind"] == "mla":
        raise Skip("LFM3 attention that is MLA")
    types = f.data.get("layer_types")
    if types is None:  # configuration_lfm3.py 94-98
        types = ["full_attention" if i % 4 == 2 else "sliding_attention" if i % 4 == 0 and i > 0 else "conv"
                 for i in range(count)]
    if not isinstance(types, list) or len(types) != count \
            or not set(types) <= {"conv", "full_attention", "sliding_attention"}:
        raise Skip("layer_types is not conv, full_attention or sliding_attention for each layer")
    bias, conv_bias = f.flag("attention_bias"), f.flag("conv_bias")
    block = base(f, "rms", 4 if f.flag("use_sandwich_norm") else 2)
    block.update(qk_norm=True, qkv_bias=bias, output_bias=bias,
                 mlp={"kind": "gated", "intermediate_size": f.integer("intermediate_size")})
    if "conv" in types:
        block["mixer_parameters"] = {"conv": short_conv(hidden, f.integer("conv_L_cache"), conv_bias)}
    if f.flag("use_attention_gate"):
        gate = hidden * attention["heads"]
        block["layer_parameters"] = {kind: gate for kind, name in (("full", "full_attention"),
                                                                   ("sliding", "sliding_attention")) if name in types}
        notes.append(f"inferred: layer_parameters has the attention gate g_proj ({hidden} x {attention['heads']}) "
                     "in every attention layer")
    return block


DEFAULTS.update({
    # DbrxConfig, DbrxAttentionConfig, DbrxFFNConfig (configuration_dbrx.py 42, 74-76, 138)
    "dbrx": {**_UNTIED, "n_heads": 16, "attn_config.kv_n_heads": 1, "ffn_config.ffn_hidden_size": 3584,
             "ffn_config.moe_num_experts": 4, "ffn_config.moe_top_k": 1},
    "hunyuan_v1_moe": {**_UNTIED, "attention_bias": False, "num_experts": 1, "moe_topk": 1},  # HunYuanMoEV1Config
    "jetmoe": {**_TIED, "num_local_experts": 8, "num_experts_per_tok": 2, "kv_channels": 128},  # JetMoeConfig
    "lfm3": {**_TIED, "attention_bias": False, "conv_bias": False, "conv_L_cache": 7, "use_sandwich_norm": True,
             "use_attention_gate": True},  # Lfm3Config
})
BUILDERS.update({"dbrx": _dbrx, "hunyuan_v1_moe": _hunyuan_v1_moe, "jetmoe": _jetmoe, "lfm3": _lfm3})
