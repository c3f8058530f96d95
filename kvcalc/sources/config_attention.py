"""What one layer caches per token, from a config.json: dense K/V heads and head sizes
(MHA, MQA, GQA, with each family's switches) or an MLA latent."""

from __future__ import annotations

from kvcalc.sources.config_fields import Reader, Tracked, shown_json
from kvcalc.sources.model_types import FALCON_TYPES

MLA_FIELDS = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


def model_attention(r: Reader) -> dict:
    """The model-wide attention (MLA, else dense), read once per config: the layer reader asks
    for it again when layers carry their own heads, without a second set of notes."""
    def read(r: Reader) -> dict:
        heads = _jetmoe_heads(r) if r.model_type == "jetmoe" else r.integer("num_attention_heads")
        return mla_attention(r, heads) or dense_attention(r, heads)

    return r.once("attention", read)


def _jetmoe_heads(r: Reader) -> int:
    """JetMoE's attention runs num_key_value_heads x num_experts_per_tok query heads of kv_channels: each of the
    top-k attention experts projects to num_key_value_heads x kv_channels (modeling_jetmoe.py 281-282, 461-466),
    and K and V come from kv_proj, num_key_value_heads wide (442, 449). JetMoeConfig derives num_attention_heads
    the same way when config.json leaves it out (configuration_jetmoe.py 72; class defaults 16 and 2, lines 52
    and 58); a stated value is kept on the config but read by nothing in the model (444 only stores it)."""
    for name in ("num_key_value_heads", "num_experts_per_tok"):
        if name in r.data and r.data[name] is None:  # JetMoeConfig's fields are ints: transformers refuses null
            r.fail(f"{name} is null, not a whole number (transformers' JetMoeConfig refuses it)")
    kv = r.integer("num_key_value_heads", default=False)
    top = r.integer("num_experts_per_tok", default=False)
    for name, value, default in (("num_key_value_heads", kv, 16), ("num_experts_per_tok", top, 2)):
        if value is None:
            r.notes.append(f"inferred: {name} = {default} (JetMoeConfig's default; not in config.json)")
    kv, top = kv or 16, top or 2
    heads = kv * top
    found = r.find("num_attention_heads")
    if found is not None and found[1] != heads:
        r.notes.append(f"ignored: {found[0]} {shown_json(found[1])}: JetMoE's attention runs num_key_value_heads x "
                       f"num_experts_per_tok = {kv} x {top} = {heads} query heads, whatever the config says")
    else:
        r.notes.append(f"inferred: num_attention_heads = num_key_value_heads x num_experts_per_tok = {kv} x {top} "
                       f"= {heads} (JetMoeConfig derives it)")
    return heads


def dense_dict(heads: int, kv_heads: int, head_dim: int, v_dim: int | None = None) -> dict:
    """A DenseAttention as data: MHA when every head has its K/V, MQA with one, GQA between;
    ``v_head_dim`` only where V's width differs from K's."""
    kind = "mha" if kv_heads == heads else "mqa" if kv_heads == 1 else "gqa"
    attention = {"kind": kind, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}
    if v_dim is not None and v_dim != head_dim:
        attention["v_head_dim"] = v_dim
    return attention


def dense_attention(r: Reader, heads: int) -> dict:
    head_dim = _head_dim(r, heads)
    return dense_dict(heads, _kv_heads(r, heads), head_dim, _v_head_dim(r, head_dim))


def _v_head_dim(r: Reader, head_dim: int) -> int | None:
    """Dense attention whose V heads are narrower or wider than K's (Xiaomi MiMo-V2-Flash:
    head_dim 192, v_head_dim 128): each token caches kv_heads x (head_dim + v_head_dim).
    None when the config does not say, or says the same width as K."""
    if r.data.get("v_head_dim") is None:
        return None
    v_dim = r.integer("v_head_dim", default=False)
    return None if v_dim == head_dim else v_dim


def _head_dim(r: Reader, heads: int) -> int:
    """An explicit head_dim wins: Gemma, Qwen3 and others differ from hidden_size / heads."""
    if r.model_type == "zamba2":  # Zamba2Config.__post_init__: attention over 2 x hidden_size (the shared block
        hidden = r.integer("hidden_size")  # sees the layer input and the first embeddings, concatenated)
        if hidden is None or (2 * hidden) % heads:
            r.fail(f"Zamba2's head width 2 x hidden_size / num_attention_heads needs {heads} to divide 2 x hidden_size")
        # Zamba2Config writes kv_channels = hidden_size / heads too, which the head_dim aliases would prefer
        r.notes[:] = [n for n in r.notes if not n.startswith(("ignored: attention_head_dim", "ignored: kv_channels"))]
        for key in ("attention_head_dim", "kv_channels", "head_dim"):
            stated = r.data.get(key)
            if stated is not None and stated != 2 * hidden // heads:
                r.notes.append(f"ignored: {key} {shown_json(stated)}: Zamba2's attention heads are 2 x hidden_size / "
                               f"num_attention_heads = {2 * hidden // heads} wide, as Zamba2Config sets "
                               "attention_head_dim")
        r.notes.append(f"inferred: head_dim = 2 x hidden_size / num_attention_heads = 2 x {hidden} / {heads} = "
                       f"{2 * hidden // heads} (Zamba2's shared attention reads the hidden state and the embeddings "
                       "side by side)")
        return 2 * hidden // heads
    explicit = r.integer("head_dim")
    if explicit is not None:
        return explicit
    hidden = r.integer("hidden_size")  # present: require checked
    if hidden % heads:
        r.fail(
            f"no head_dim, and hidden_size {hidden} is not a multiple of "
            f"num_attention_heads {heads}, so head_dim cannot be derived"
        )
    r.notes.append(
        f"inferred: head_dim = hidden_size / num_attention_heads = {hidden} / {heads} = {hidden // heads}"
    )
    return hidden // heads


def _kv_heads(r: Reader, heads: int) -> int:
    found = r.find("num_key_value_heads")
    stated = r.integer("num_key_value_heads") if found else None
    if r.model_type in FALCON_TYPES:
        return _falcon_kv_heads(r, heads, found, stated)
    if r.model_type == "dbrx":
        return _dbrx_kv_heads(r, heads, found)
    if r.model_type == "jetmoe":  # _jetmoe_heads read it, or noted JetMoeConfig's default
        return stated or 16
    if stated is not None:
        return stated
    nas = _block_configs_kv_heads(r, heads)
    if nas is not None:
        return nas
    glm = _glm_kv_heads(r, heads)
    if glm is not None:
        return glm
    mpt = _mpt_kv_heads(r, heads)
    if mpt is not None:
        return mpt
    if r.flag("multi_query"):
        r.notes.append("inferred: MQA, 1 KV head (multi_query is true)")
        return 1
    r.notes.append(f"inferred: MHA, {heads} KV heads (no num_key_value_heads in config.json)")
    return heads


def _block_configs_kv_heads(r: Reader, heads: int) -> int | None:
    """Nemotron-NAS: no model-wide KV head count; each block's n_heads_in_group sets its own
    (config_layers gives every layer kind its attention). The model-wide figure shown is the
    one most attending blocks use."""
    blocks = r.data.get("block_configs")
    if not isinstance(blocks, list):
        return None
    groups = [
        block["attention"].get("n_heads_in_group") for block in blocks
        if isinstance(block, dict) and isinstance(block.get("attention"), dict)
        and not block["attention"].get("no_op") and not block["attention"].get("replace_with_linear")
    ]
    groups = [g for g in groups if isinstance(g, int) and not isinstance(g, bool) and g > 0 and heads % g == 0]
    if not groups:
        return None  # config_layers refuses what is malformed, naming the block
    common = max(set(groups), key=groups.count)
    r.notes.append(
        f"inferred: {heads // common} KV heads shown for the model (num_attention_heads {heads} / "
        f"n_heads_in_group {common}, the most common of block_configs); each layer kind has its own"
    )
    return heads // common


def _glm_kv_heads(r: Reader, heads: int) -> int | None:
    """ChatGLM2/3 and GLM-4: multi_query_attention true caches multi_query_group_num K/V
    heads (each kv_channels wide); false caches one per query head."""
    switch = r.data.get("multi_query_attention")
    groups = r.data.get("multi_query_group_num")
    if switch is None and groups is None:
        return None
    if switch is not None and not isinstance(switch, bool):
        r.fail(f"multi_query_attention must be true or false, got {shown_json(switch)}")
    if switch is None or switch:
        if groups is None:
            r.fail("multi_query_attention is true, but multi_query_group_num is missing")
        count = r.integer("multi_query_group_num", default=False)
        if switch is None:
            r.notes.append(f"inferred: {count} KV heads from multi_query_group_num (no multi_query_attention)")
        return count
    if groups is not None:
        r.notes.append(f"ignored: multi_query_group_num {shown_json(groups)} because multi_query_attention is false")
    r.notes.append(f"inferred: MHA, {heads} KV heads (multi_query_attention is false)")
    return heads


# MPT's attn_config.attn_type (llm-foundry's names) -> how many K/V heads it caches
MPT_ATTN_TYPES = ("multihead_attention", "multiquery_attention", "grouped_query_attention")


def _mpt_kv_heads(r: Reader, heads: int) -> int | None:
    """MPT keeps its attention settings in the attn_config object: multihead caches every head,
    multiquery one, grouped_query attn_config.kv_n_heads."""
    block = r.data.get("attn_config")
    if not isinstance(block, dict):
        return None
    block = r.data["attn_config"] = Tracked(block)  # its keys are checked for unread ones too
    kind = block.get("attn_type", "multihead_attention")
    if kind not in MPT_ATTN_TYPES:
        r.fail(f"attn_config.attn_type {shown_json(kind)} is not one kvcalc knows ({', '.join(MPT_ATTN_TYPES)})")
    if kind == "multiquery_attention":
        r.notes.append("inferred: MQA, 1 KV head (attn_config.attn_type multiquery_attention)")
        return 1
    if kind == "grouped_query_attention":
        count = block.get("kv_n_heads")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= heads:
            r.fail(f"attn_config.kv_n_heads must be a whole number from 1 to {heads}, got {shown_json(count)}")
        return count
    block.get("kv_n_heads")  # read, and moot: multihead attention caches every head
    r.notes.append(f"inferred: MHA, {heads} KV heads (attn_config.attn_type {kind}"
                   + ("" if "attn_type" in dict.keys(block) else ", MPT's default") + ")")
    return heads


def _dbrx_kv_heads(r: Reader, heads: int, found) -> int:
    """DBRX's attn_config is DbrxAttentionConfig, not MPT's: no attn_type, and DbrxAttention caches
    attn_config.kv_n_heads K/V heads (modeling_dbrx.py 181, 188), 1 when left out (configuration_dbrx.py 42;
    a missing attn_config is DbrxAttentionConfig(), 141-142). DbrxConfig then writes num_key_value_heads from
    it (153), so a top-level num_key_value_heads never decides."""
    block = r.data.get("attn_config")
    if block is not None and not isinstance(block, dict):
        r.fail(f"attn_config must be a JSON object, got {shown_json(block)}")
    block = r.data["attn_config"] = Tracked(block or {})  # its keys are checked for unread ones too
    count = block.get("kv_n_heads")
    if count is None and "kv_n_heads" in block:  # DbrxAttentionConfig's field is an int: transformers refuses null
        r.fail("attn_config.kv_n_heads is null, not a whole number (transformers' DbrxAttentionConfig refuses it)")
    if count is None:
        count = 1
        r.notes.append("inferred: 1 KV head (attn_config.kv_n_heads is not in config.json; DbrxAttentionConfig's "
                       "default is 1)")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= heads or heads % count:
        r.fail(f"attn_config.kv_n_heads must be a whole number from 1 to {heads} that divides n_heads {heads}, "
               f"got {shown_json(count)}")
    if found is not None and found[1] != count:
        r.notes.append(f"ignored: {found[0]} {shown_json(found[1])}: DbrxConfig sets num_key_value_heads from "
                       f"attn_config.kv_n_heads {count}")
    return count


def _falcon_kv_heads(r: Reader, heads: int, found, stated: int | None) -> int:
    """transformers' FalconAttention: num_kv_heads only counts with the new decoder
    architecture or without multi_query; otherwise there is one KV head."""
    new_arch = r.flag("new_decoder_architecture", r.model_type == "RefinedWeb")
    if r.data.get("new_decoder_architecture") is None and r.model_type == "RefinedWeb":
        r.notes.append("inferred: new decoder architecture (old Falcon-40B format, model_type RefinedWeb)")
    multi_query = r.flag("multi_query")
    if multi_query is None:
        multi_query = True
        if not new_arch:
            r.notes.append("inferred: multi_query true (FalconConfig's default; not in config.json)")
    if new_arch or not multi_query:
        if stated is not None:
            return stated
        r.notes.append(f"inferred: MHA, {heads} KV heads (no num_kv_heads in config.json)")
        return heads
    if found is not None and stated != 1:
        r.notes.append(
            f"ignored: {found[0]} {stated}: with multi_query true and new_decoder_architecture "
            "false, Falcon uses one KV head"
        )
    return 1


def mla_attention(r: Reader, heads: int) -> dict | None:
    """DeepSeek-V2/V3 and Kimi-K2: a latent of kv_lora_rank + qk_rope_head_dim per token."""
    if r.data.get("kv_lora_rank") is None:
        return None
    rope_alias = _mla_head_dim(r)
    missing = [name for name in MLA_FIELDS if r.data.get(name) is None
               and not (name == "qk_rope_head_dim" and rope_alias is not None)]
    if missing:
        r.fail(f"kv_lora_rank says MLA, but {', '.join(missing)} is missing")
    dims = {name: r.integer(name, default=False) for name in MLA_FIELDS if r.data.get(name) is not None}
    if rope_alias is not None:
        stated = dims.get("qk_rope_head_dim")
        dims["qk_rope_head_dim"] = rope_alias
        r.notes.append(
            f"inferred: qk_rope_head_dim = head_dim = {rope_alias}" + (
                "" if stated in (None, rope_alias) else f" (not the stated qk_rope_head_dim {stated})")
            + ": Glm4MoeLiteConfig maps head_dim onto qk_rope_head_dim (configuration_glm4_moe_lite.py 78), "
            "and kv_a_proj_with_mqa and the cached rope key are that wide (modeling_glm4_moe_lite.py 262, 323)")
    dims = {name: dims[name] for name in MLA_FIELDS}
    q_lora = r.integer("q_lora_rank", default=False)
    kv_field = r.find("num_key_value_heads")
    if kv_field is not None:
        r.notes.append(
            f"ignored: {kv_field[0]} {kv_field[1]}: MLA caches one latent of kv_lora_rank + "
            f"qk_rope_head_dim = {dims['kv_lora_rank'] + dims['qk_rope_head_dim']} elements "
            "per token and layer"
        )
    mtp = r.data.get("num_nextn_predict_layers")
    if isinstance(mtp, int) and mtp > 0:
        r.notes.append(
            f"ignored: num_nextn_predict_layers {mtp}: the multi-token-prediction layer is not "
            "counted, neither its KV cache nor its weights (it adds a layer only when used for "
            "speculative decoding; transformers does not load it)"
        )
    attention = {"kind": "mla", "heads": heads, **dims, "q_lora_rank": q_lora}
    indexer = _indexer(r)
    if indexer is not None:
        attention["indexer"] = indexer
    return attention


# MLA types whose config class keeps head_dim apart from qk_rope_head_dim (transformers 5.24): DeepseekV2Config,
# DeepseekV3Config, YoutuConfig, MiniCPM3Config and GlmMoeDsaConfig set head_dim = qk_rope_head_dim in
# __post_init__ (configuration_deepseek_v2.py 124, _deepseek_v3.py 123, _youtu.py 102, _minicpm3.py 119,
# _glm_moe_dsa.py 151), SarvamMLAConfig pops it (configuration_sarvam_mla.py 132), and their attention sizes
# kv_a_proj_with_mqa and the cached rope key from config.qk_rope_head_dim; a head_dim in config.json only feeds
# the rotary embedding. Glm4MoeLiteConfig alone aliases head_dim to qk_rope_head_dim (attribute_map).
MLA_HEAD_DIM_APART = ("deepseek_v2", "deepseek_v3", "youtu", "minicpm3", "glm_moe_dsa", "sarvam_mla")


def _mla_head_dim(r: Reader) -> int | None:
    """GLM-4-MoE-Lite's head_dim is its qk_rope_head_dim (Glm4MoeLiteConfig.attribute_map, configuration
    77-78): a head_dim in config.json replaces qk_rope_head_dim whatever the order (transformers 5.24 builds
    kv_a_proj_with_mqa kv_lora_rank + head_dim wide). Returns that head_dim, or None elsewhere; the types of
    MLA_HEAD_DIM_APART read head_dim here and say it does not size the cache."""
    if r.data.get("head_dim") is None:
        return None
    if r.model_type == "glm4_moe_lite":
        return r.integer("head_dim", default=False)
    if r.model_type in MLA_HEAD_DIM_APART:
        stated = r.data["head_dim"]
        if stated != r.data.get("qk_rope_head_dim"):
            r.notes.append(f"ignored: head_dim {shown_json(stated)}: {r.model_type}'s attention sizes the cached rope "
                           "key from qk_rope_head_dim, not head_dim (its config class keeps them apart)")
    return None


INDEXER_FIELDS = ("index_head_dim", "index_n_heads")


def _every_layer_indexes(r: Reader) -> None:
    """kvcalc counts indexer keys on every MLA layer. GLM's DSA configs may let layers share
    another layer's indexer ("shared": no indexer of their own), by indexer_types, or, as
    transformers' GlmMoeDsaConfig derives them, index_topk_pattern ("FSSF...") or
    index_topk_freq with index_skip_topk_offset; such a config is refused, not miscounted."""
    kinds = r.data.get("indexer_types")
    source = "indexer_types"
    if kinds is None and r.data.get("index_topk_pattern") is not None:
        pattern, source = r.data["index_topk_pattern"], "index_topk_pattern"
        kinds = [{"F": "full", "S": "shared"}.get(c, c) for c in pattern] if isinstance(pattern, str) else pattern
    elif kinds is None and r.data.get("index_topk_freq") is not None:
        freq, offset = r.data["index_topk_freq"], r.data.get("index_skip_topk_offset", 2)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (freq, offset)):
            r.fail("index_topk_freq and index_skip_topk_offset must be whole numbers")
        count = r.data.get("num_hidden_layers")
        count = count if isinstance(count, int) and not isinstance(count, bool) and 0 < count <= 100_000 else 0
        kinds = ["full" if max(i - offset + 1, 0) % max(freq, 1) == 0 else "shared" for i in range(count)]
        source = f"index_topk_freq {freq}"
    if kinds is None:
        return
    if not isinstance(kinds, list) or any(kind != "full" for kind in kinds):
        shown = sorted({str(kind) for kind in kinds}) if isinstance(kinds, list) else kinds
        r.fail(f"{source} gives {shown_json(shown)} layers: a layer that shares another layer's indexer keeps no "
               "indexer cache of its own, and kvcalc counts one on every MLA layer")
    r.notes.append(f"inferred: {source}: every layer runs its own indexer and caches its keys")


def _indexer(r: Reader) -> dict | None:
    """DeepSeek-V3.2's lightning indexer: one index_head_dim key per token and layer, cached
    beside the latent. index_topk (how many tokens each query keeps) is read and changes nothing
    cached. The cached dtype is not in config.json: kvcalc takes DeepSeek's, vLLM's and SGLang's
    fp8 key plus an fp32 scale per 128 elements, and says so."""
    present = [name for name in (*INDEXER_FIELDS, "index_topk") if r.data.get(name) is not None]
    if not present:
        return None
    missing = [name for name in INDEXER_FIELDS if name not in present]
    if missing:
        r.fail(f"{present[0]} says a sparse-attention indexer, but {', '.join(missing)} is missing")
    _every_layer_indexes(r)
    head_dim = r.integer("index_head_dim", default=False)
    heads = r.integer("index_n_heads", default=False)
    topk = r.integer("index_topk", default=False)
    if head_dim % 128:
        r.fail(f"index_head_dim {head_dim} is not a multiple of 128, the indexer's fp8 scale block")
    r.notes.append(
        f"inferred: indexer keys cached as fp8 + one fp32 scale per 128 elements = {head_dim + head_dim // 128 * 4} "
        f"B per token and layer (DeepSeek's inference code, vLLM, SGLang; transformers keeps {head_dim} "
        "bf16 values); config.json does not name the dtype"
    )
    if topk is not None:
        r.notes.append(f"ignored: index_topk {topk}: it picks which tokens attention reads, not what is cached")
    return {"heads": heads, "head_dim": head_dim, "topk": topk}


