"""The building blocks of a weights block: typed reads of config fields, the pre-norm decoder
with a gated MLP or experts (``Decoder`` rows), and the pieces the family builders share.

Each family module (``config_weights`` and the ``weights_*`` modules beside it) builds on these;
``config_weights.weights_block`` picks the builder for a model_type. Nothing here knows a table of
families: a ``Fields`` carries its type's class defaults and ``Decoder`` row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from kvcalc.spec import MoE


@dataclass(frozen=True)
class Decoder:
    """A pre-norm RMSNorm decoder with a gated MLP: which biases, norms and MoE it has."""

    bias: str | None = None  # the field switching q, k, v and o biases on
    qkv_bias: str | bool = False  # q, k, v biases alone: always (True) or this field
    out_bias: str | None = None  # o's bias alone (Seed-OSS's attention_out_bias)
    mlp_bias: str | None = None
    mlp_kind: str = "gated"  # "plain": up and down only (relu2 MLPs)
    norms: int = 2
    qk_norm: bool | str = False  # True: per-head norms; "heads": across all heads; a field name: switched by it
    experts_key: str = "num_local_experts"  # the expert count of a Mixtral-style MoE
    router_bias: bool = False  # a Mixtral-style router with a per-expert e_score_correction_bias (MiniMax-M2)
    final_norm: bool = True  # False: the final norm has no weight (NanoChat's norms are weightless)
    moe: str | None = None  # "mixtral", "qwen" or "deepseek"
    shared_expert: bool = False  # Qwen2-MoE: one gated shared expert
    every_layer: bool = False  # every layer MoE, no decoder_sparse_step or mlp_only_layers (Qwen3.5-MoE)


class Skip(Exception):
    """No certain count: the message says why."""


class Fields:
    """Typed reads of the language model's fields; class defaults used are remembered."""

    def __init__(self, data: dict, outer: dict, model_type: str, defaults: dict[str, object],
                 family: Decoder | None = None):
        self.data, self.outer, self.model_type = data, outer, model_type
        self.defaults, self.family = defaults, family  # the type's class defaults; its Decoder row, if any
        # what adds the parts a wrapper's checkpoint holds beside the language model decoder() builds: it updates
        # the block (extra_parameters, the head's tie as the wrapper's config class says it); None: no wrapper's
        self.wrapped: Callable[[Fields, dict, int, list[str]], None] | None = None
        self.kinds: dict[str, str] = {"full": "full"}  # the reader's layer kinds: name -> full | sliding | none ...
        self.defaulted: list[str] = []

    def _get(self, key: str, *, outer: bool = False):
        for source in (self.data, self.outer) if outer else (self.data,):
            if source.get(key) is not None:
                return source[key]
        defaults = self.defaults
        if key not in defaults:
            raise Skip(f"no {key} in config.json")
        value = defaults[key]
        if f"{key} {json.dumps(value)}" not in self.defaulted:
            self.defaulted.append(f"{key} {json.dumps(value)}")
        return value

    def integer(self, key: str, *, least: int = 1) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise Skip(f"{key} is {json.dumps(value)}, not a whole number >= {least}")
        return value

    def flag(self, key: str, *, outer: bool = False) -> bool:
        value = self._get(key, outer=outer)
        if not isinstance(value, bool):
            raise Skip(f"{key} is {json.dumps(value)}, not true or false")
        return value

    def present(self, key: str) -> bool:
        return self.data.get(key) is not None


def decoder(f: Fields, attention: dict, count: int, hidden: int, notes: list[str]) -> dict:
    """Llama, Mistral, Qwen, Gemma, Phi-3, DeepSeek: embeddings, RMSNorms, a gated MLP or experts."""
    family = f.family
    bias = f.flag(family.bias) if family.bias else False
    if attention["kind"] == "mla" and bias:
        raise Skip("attention_bias true with MLA: which MLA projections carry a bias differs between implementations")
    qkv_bias = f.flag(family.qkv_bias) if isinstance(family.qkv_bias, str) else family.qkv_bias
    mlp_bias = f.flag(family.mlp_bias) if family.mlp_bias else False
    if mlp_bias and family.moe:
        raise Skip("mlp_bias true in an MoE model: DeepSeek's own code has no MLP biases")
    moe, every_layer = moe_block(f, count, family, notes)
    block = base(f, "rms", family.norms)
    block["final_norm"] = family.final_norm
    qk_norm = f.flag(family.qk_norm) if isinstance(family.qk_norm, str) and family.qk_norm != "heads" \
        else bool(family.qk_norm)
    out_bias = bias or (f.flag(family.out_bias) if family.out_bias else False)
    block.update(qk_norm=qk_norm, qkv_bias=bias or qkv_bias, output_bias=out_bias)
    if family.qk_norm == "heads":
        block["qk_norm_width"] = "heads"
    block["mlp"] = None if every_layer else {
        "kind": family.mlp_kind, "intermediate_size": f.integer("intermediate_size"), "bias": mlp_bias,
    }
    block["moe"] = moe
    if f.wrapped is not None:  # a wrapper's other parts (GOT-OCR2's vision tower, ...): config_weights.WRAPPERS
        f.wrapped(f, block, hidden, notes)
    if f.model_type in ("gemma3", "gemma3_text") and f.outer is not f.data and f.outer.get("vision_config"):
        if not isinstance(f.outer["vision_config"], dict):
            raise Skip("vision_config is not a JSON object")
        block["extra_parameters"] = siglip(f, hidden, notes, pooling_head=True)
    return block


def moe_block(f: Fields, count: int, family: Decoder, notes: list[str]) -> tuple[dict | None, bool]:
    """The MoE block and whether every layer is MoE (then there is no dense MLP)."""
    if family.moe is None:
        return None, False
    if family.moe == "mixtral":  # every layer; intermediate_size is each expert's
        moe = {"experts": f.integer(family.experts_key), "intermediate_size": f.integer("intermediate_size"),
               "router_bias": family.router_bias}
    elif family.moe == "qwen":
        experts = f.integer("num_experts", least=0)
        only_dense = [] if family.every_layer else f._get("mlp_only_layers")
        if only_dense:  # a layer list the period/offset schema cannot state in general
            raise Skip(f"mlp_only_layers {json.dumps(only_dense)[:60]} makes the MoE layers irregular")
        if experts == 0:
            return None, False
        step = 1 if family.every_layer else f.integer("decoder_sparse_step")
        moe = {  # transformers: layer i is MoE when (i + 1) % decoder_sparse_step == 0
            "experts": experts, "intermediate_size": f.integer("moe_intermediate_size"),
            "layer_period": step, "layer_offset": step - 1,
        }
        if family.shared_expert:
            moe.update(
                shared_experts=1, shared_intermediate_size=f.integer("shared_expert_intermediate_size"),
                shared_expert_gate=True,
            )
    else:  # DeepSeek: layers >= first_k_dense_replace, every moe_layer_freq-th
        if f.present("moe_layer_freq"):
            freq = f.integer("moe_layer_freq")
        else:  # transformers' DeepSeek code has no such field (modeling_deepseek_v3.py 493); released configs say 1
            freq = 1
            notes.append("inferred: every layer from first_k_dense_replace on is MoE, as transformers' DeepSeek code "
                         "builds it (no moe_layer_freq in config.json; DeepSeek's released configs state 1)")
        if freq != 1:
            raise Skip(
                f"moe_layer_freq {freq}: DeepSeek's own code makes every {freq}th layer MoE, "
                "transformers' makes every layer MoE"
            )
        method = f.data.get("topk_method")
        moe = {
            "experts": f.integer("n_routed_experts"), "intermediate_size": f.integer("moe_intermediate_size"),
            "shared_experts": f.integer("n_shared_experts", least=0),
            "shared_intermediate_size": f.integer("moe_intermediate_size"),
            "first_dense_layers": f.integer("first_k_dense_replace", least=0),
            # noaux_tc routing keeps e_score_correction_bias beside the router, one per expert
            "router_bias": method == "noaux_tc" if method is not None else f.model_type != "deepseek_v2",
        }
        if method is None and f.model_type != "deepseek_v2":
            notes.append("inferred: a per-expert e_score_correction_bias (no topk_method; DeepSeek-V3 routing)")
    moe["experts_per_token"] = f.integer("num_experts_per_tok")
    every = all(MoE.model_validate(moe).is_moe_layer(i) for i in range(count))
    return moe, every


def siglip(f: Fields, text_hidden: int, notes: list[str], *, pooling_head: bool = False) -> int:
    """Gemma 3's SigLIP vision tower and projector, as transformers builds them. pooling_head: count the
    attention pooling head SiglipVisionTransformer builds unless vision_use_head is false (its class default
    is true; modeling_siglip.py 567-569, SiglipMultiheadAttentionPoolingHead 624-630: a probe, a
    torch MultiheadAttention in_proj 3h x h + 3h and out_proj h x h + h, a LayerNorm, SiglipMLP fc1 and fc2
    with biases); without it such a config is refused."""
    v = f.outer["vision_config"]
    if v.get("model_type", "siglip_vision_model") != "siglip_vision_model":
        raise Skip(f"vision_config model_type {v.get('model_type')!r} is not siglip_vision_model")
    head = v.get("vision_use_head", True)
    if not isinstance(head, bool):
        raise Skip(f"vision_config.vision_use_head is {json.dumps(head)}, not true or false")
    if head and not pooling_head:
        raise Skip("vision_config.vision_use_head is not false (SigLIP's pooling head is not counted)")
    missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size")
               if not isinstance(v.get(k), int) or isinstance(v.get(k), bool) or v[k] < 1]
    if missing:
        raise Skip(f"vision_config has no whole-number {', '.join(missing)}")
    h, inner, layers, image, patch = (
        v[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size")
    )
    channels = v.get("num_channels", 3)
    tower = siglip_tower(h, inner, layers, image, patch, channels, pooling_head=bool(head))
    projector = h * text_hidden + h  # mm_input_projection_weight and mm_soft_emb_norm
    if head:
        said = "true" if "vision_use_head" in v else "absent, SiglipVisionConfig default true"
        notes.append(f"inferred: the SigLIP tower includes its attention pooling head ({_pooling_head(h, inner)}; "
                     f"vision_use_head {said})")
    notes.append(
        f"inferred: extra_parameters {tower + projector} = SigLIP vision tower {tower} (hidden {h}, "
        f"{layers} layers, MLP {inner}, {image}px in {patch}px patches, {channels} channels) + projector "
        f"{projector}"
    )
    return tower + projector


def base(f: Fields, norm: str, norms: int) -> dict:
    return {
        "vocab_size": f.integer("vocab_size"),
        "tied_embeddings": f.flag("tie_word_embeddings", outer=True),
        "norm": norm,
        "norms_per_layer": norms,
    }


def mha_width(attention: dict, hidden: int, family: str) -> None:
    """GPT-2, GPT-NeoX, OPT, BERT and old Falcon size their projections by hidden_size."""
    if attention["kind"] == "mla" or attention["heads"] * attention["head_dim"] != hidden:
        raise Skip(f"{family} projections are hidden_size wide, but heads x head_dim differs from it")


def gated(f: Fields) -> dict:
    return {"kind": "gated", "intermediate_size": f.integer("intermediate_size")}


def plain(inner: int, bias: bool) -> dict:
    return {"kind": "plain", "intermediate_size": inner, "bias": bias}


def mamba2_mixer(hidden: int, heads: int, head_dim: int, state: int, groups: int, kernel: int, conv_bias: bool, *,
                 in_bias: bool = False, out_bias: bool = False, norm: bool = True) -> int:
    """One Mamba2 mixer (transformers' Mamba2Mixer, NemotronHMamba2Mixer, BambaMixer, GraniteMoeHybridMambaLayer,
    Zamba2MambaMixer, FalconH1Mixer), I = heads x head_dim: in_proj hidden x (2I + 2GN + H) (+ a bias when
    in_bias), conv1d (I + 2GN) x kernel (+ a bias), dt_bias, A_log and D H each, a gated RMSNorm I (norm:
    Falcon-H1 builds it only with mamba_rms_norm), out_proj I x hidden (+ a bias when out_bias)."""
    inner = heads * head_dim
    conv_dim = inner + 2 * groups * state
    projection = 2 * inner + 2 * groups * state + heads
    return (hidden * projection + (projection if in_bias else 0) + conv_dim * kernel + (conv_dim if conv_bias else 0)
            + 3 * heads + (inner if norm else 0) + inner * hidden + (hidden if out_bias else 0))


def wrapper_tie(f: Fields, default: bool, block: dict, notes: list[str]) -> None:
    """transformers ties the head by the whole config's tie_word_embeddings (modeling_utils.py 2492:
    self.config), the wrapper class's default when config.json leaves it out, not text_config's."""
    tie = f.outer.get("tie_word_embeddings")
    if tie is None:
        tie = default
        notes.append(f"inferred: tie_word_embeddings {json.dumps(default)} (the {f.outer['model_type']} config "
                     "class's default; transformers ties by the whole config's value)")
    elif not isinstance(tie, bool):
        raise Skip(f"tie_word_embeddings is {json.dumps(tie)}, not true or false")
    block["tied_embeddings"] = tie


def add_extra(block: dict, amount: int, notes: list[str], what: str) -> dict:
    """Adds a part outside the schema, counted exactly from fields, to extra_parameters and says it."""
    if amount:
        block["extra_parameters"] = block.get("extra_parameters", 0) + amount
        notes.append(f"inferred: extra_parameters has {amount} for {what}")
    return block


def per_attention_layer(f: Fields, amount: int) -> dict[str, int]:
    """layer_parameters of ``amount`` in every layer that attends (each kind that is not a no-KV layer)."""
    return {name: amount for name, kind in f.kinds.items() if kind != "none"}


def siglip_tower(h: int, inner: int, layers: int, image: int, patch: int, channels: int, *,
                 pooling_head: bool) -> int:
    """A SigLIP vision tower (modeling_siglip.py): the patch conv with a bias, (image / patch)^2 learned positions,
    per layer q/k/v/out and fc1/fc2 with biases and two LayerNorms, the post-layernorm, and with ``pooling_head``
    the attention pooling head (624-630)."""
    tower = (channels * patch * patch * h + h + (image // patch) ** 2 * h
             + layers * (4 * (h * h + h) + h * inner + inner + inner * h + h + 2 * 2 * h) + 2 * h)
    return tower + (_pooling_head(h, inner) if pooling_head else 0)


def _pooling_head(h: int, inner: int) -> int:
    """SiglipMultiheadAttentionPoolingHead: a probe, in_proj 3h x h + 3h, out_proj h x h + h, a LayerNorm, the MLP."""
    return h + 3 * h * h + 3 * h + h * h + h + 2 * h + h * inner + inner + inner * h + h


def short_conv(hidden: int, kernel: int, bias: bool) -> int:
    """LFM2's and LFM3's short convolution: in_proj hidden x 3 hidden, a depthwise conv hidden x kernel, out_proj
    hidden x hidden, and with conv_bias their biases (3 hidden, hidden, hidden)."""
    return 4 * hidden * hidden + hidden * kernel + (5 * hidden if bias else 0)
