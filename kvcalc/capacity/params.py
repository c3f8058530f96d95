"""Exact parameter counts from a preset's architecture, and the bytes they take.

The count follows the shapes of the model code: embeddings (and an untied head), per
layer the attention projections (dense or MLA), the norms, the MLP or the experts, the
constant-state mixers of no-KV layers, and the final norm. Nothing is estimated: a preset
without a ``weights`` block has no count, and callers say so.
"""

from typing import NamedTuple

from kvcalc.spec import DenseAttention, MLAAttention, ModelSpec, NoKVLayer, Weights


class ParamCount(NamedTuple):
    """Parameters by part. ``linear`` is what weight quantization shrinks (the matrices
    inside the layers); embeddings, the head, norms, biases and routers stay 16-bit."""

    total: int
    active: int  # per token: routed experts not chosen are left out
    embedding: int  # input embeddings (token, position, token type) and their norm
    head: int  # the untied output projection (0 when tied)
    linear: int  # weight matrices inside the layers (attention, MLP, experts, mixers)
    other: int  # norms, biases, routers, extra parameters
    moe_layers: int
    expert_parameters: int  # one routed expert's weights
    routed: int = 0  # matrix weights of every routed expert, all layers (part of ``linear``)

    def to_dict(self) -> dict:
        return {
            "total": self.total, "active": self.active, "embedding": self.embedding, "head": self.head,
            "linear": self.linear, "other": self.other,
        }


def _norm(weights: Weights, width: int) -> int:
    return width * (2 if weights.norm == "layer" else 1)


def attention_parameters(attention, hidden: int, weights: Weights) -> tuple[int, int]:
    """(matrix weights, biases and norms) of one attention layer's projections."""
    if isinstance(attention, MLAAttention):
        a = attention
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            q = hidden * a.q_lora_rank + a.q_lora_rank * a.heads * qk_head
            q_norm = a.q_lora_rank
        else:
            q, q_norm = hidden * a.heads * qk_head, 0
        kv = hidden * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank * a.heads * (
            a.qk_nope_head_dim + a.v_head_dim
        )
        o = a.heads * a.v_head_dim * hidden
        matrices, small = q + kv + o, q_norm + a.kv_lora_rank
        if a.indexer is not None:
            index_matrices, index_small = indexer_parameters(a, hidden)
            matrices, small = matrices + index_matrices, small + index_small
        return matrices, small
    assert isinstance(attention, DenseAttention)
    # q and k are head_dim wide per head; v (and so o's input) v_dim
    q_width = attention.heads * attention.head_dim
    k_width = attention.kv_heads * attention.head_dim
    v_width = attention.kv_heads * attention.v_dim
    o_width = attention.heads * attention.v_dim
    matrices = hidden * (q_width + k_width + v_width) + o_width * hidden
    small = 0
    if weights.qkv_bias:
        small += q_width + k_width + v_width
    if weights.output_bias:
        small += hidden
    if weights.qk_norm:
        small += (2 * attention.head_dim if weights.qk_norm_width == "head"
                  else (attention.heads + attention.kv_heads) * attention.head_dim)
    return matrices, small


def indexer_parameters(a: MLAAttention, hidden: int) -> tuple[int, int]:
    """(matrix weights, 16-bit rest) of DeepSeek-V3.2's lightning indexer in one layer, shaped as in
    deepseek-ai/DeepSeek-V3.2-Exp inference/model.py (class Indexer) and transformers'
    DeepseekV32Indexer: wq_b (q_lora_rank -> heads x head_dim), wk (hidden -> head_dim), k_norm
    (a LayerNorm: weight and bias, head_dim each) and weights_proj (hidden -> heads; kept in bf16 in
    the released checkpoint, so it is counted with the parts quantization leaves alone)."""
    ix = a.indexer
    q_in = a.q_lora_rank or hidden  # the queries come from the compressed query when there is one
    matrices = q_in * ix.heads * ix.head_dim + hidden * ix.head_dim
    return matrices, 2 * ix.head_dim + hidden * ix.heads


def _mlp(kind: str, hidden: int, inner: int) -> int:
    return (3 if kind == "gated" else 2) * hidden * inner


def mlp_parameters(weights: Weights, hidden: int, index: int) -> tuple[int, int, int]:
    """(matrix weights, biases and router, inactive expert weights) of layer ``index``'s MLP."""
    moe = weights.moe
    if moe is not None and moe.is_moe_layer(index):
        expert = _mlp(moe.expert_kind, hidden, moe.intermediate_size)
        shared_inner = moe.shared_intermediate_size or moe.intermediate_size
        shared = moe.shared_experts * _mlp(moe.expert_kind, hidden, shared_inner)
        router = hidden * moe.experts + (moe.experts if moe.router_bias else 0)
        gate = hidden if moe.shared_expert_gate and moe.shared_experts else 0
        inactive = (moe.experts - moe.experts_per_token) * expert
        return moe.experts * expert + shared, router + gate, inactive
    mlp = weights.mlp
    inner = mlp.intermediate_size if weights.mlp_sizes is None else weights.mlp_sizes[index]
    if not inner:  # mlp_sizes 0: this layer has no MLP
        return 0, 0, 0
    matrices = _mlp(mlp.kind, hidden, inner)
    bias = 0
    if mlp.bias:
        bias = (2 if mlp.kind == "gated" else 1) * inner + hidden
    return matrices, bias, 0


_COUNTED: dict[int, tuple[ModelSpec, ParamCount | None]] = {}  # id -> (the spec, kept alive; its count)


def parameter_count(spec: ModelSpec) -> ParamCount | None:
    """The model's exact parameter count, or None when its preset has no weights block.
    Specs are frozen, so a count is kept per spec object (``fit`` asks again for every shape)."""
    seen = _COUNTED.get(id(spec))
    if seen is not None and seen[0] is spec:
        return seen[1]
    if len(_COUNTED) > 256:
        _COUNTED.clear()
    count = _count(spec)
    _COUNTED[id(spec)] = (spec, count)
    return count


def _count(spec: ModelSpec) -> ParamCount | None:
    w = spec.weights
    if w is None:
        return None
    hidden = spec.hidden_size
    width = w.embedding_size or hidden  # the embeddings' own width (narrower in ELECTRA-small, RemBERT)
    embedding = (w.vocab_size + w.position_embeddings + w.token_type_embeddings) * width
    if w.embedding_norm:
        embedding += _norm(w, width)
    head = 0 if w.tied_embeddings else w.vocab_size * hidden
    linear = other = 0
    if w.embedding_projection:  # embedding width -> hidden_size, with a bias
        linear, other = width * hidden, hidden
    layers = whole_model_parts(spec)
    linear += layers.linear
    other += layers.other
    if w.final_norm:
        other += _norm(w, hidden)
    other += w.extra_parameters
    total = embedding + head + linear + other
    expert = _mlp(w.moe.expert_kind, hidden, w.moe.intermediate_size) if w.moe else 0
    routed = layers.moe_layers * w.moe.experts * expert if w.moe else 0
    return ParamCount(
        total=total,
        active=total - layers.inactive,
        embedding=embedding,
        head=head,
        linear=linear,
        other=other,
        moe_layers=layers.moe_layers,
        expert_parameters=expert,
        routed=routed,
    )


class LayerParts(NamedTuple):
    """What some of the layers hold (a pipeline stage's: engines split stages by layer count, and
    layers differ: MLP widths per block, MLP-only and mixer layers, MoE every other layer)."""

    linear: int  # matrix weights: attention, mixers, MLPs, experts, per-layer parameters
    other: int  # norms, biases, routers
    inactive: int  # routed experts' weights a token does not use
    moe_layers: int
    attention: int  # of ``linear``, attention and mixer matrices split over attention TP
    replicated: int  # of ``linear``, those every GPU holds whole (MLA's down projections, the indexer)
    routed: int  # of ``linear``, the routed experts'
    shared: int  # of ``linear``, the shared experts'


def layer_parts(spec: ModelSpec, indices: range) -> LayerParts:
    """The parts of layers ``indices`` (embeddings, head, final norm and extra parameters are not in any layer)."""
    w = spec.weights
    hidden = spec.hidden_size
    order = spec.layers.order()
    linear = other = inactive = moe_layers = attention = replicated = routed = shared = 0
    per_kind: dict[str, tuple[int, int, int]] = {}  # name -> (matrices, small, held whole)
    expert = _mlp(w.moe.expert_kind, hidden, w.moe.intermediate_size) if w.moe else 0
    for index in indices:
        name = order[index]
        norms = w.norms_per_layer if w.layer_norms is None else w.layer_norms[index]
        other += norms * _norm(w, hidden)
        if name not in per_kind:
            kind = spec.layers.kinds[name]
            if isinstance(kind, NoKVLayer):
                per_kind[name] = (w.mixer_parameters[name], 0, 0)
            elif name in w.shared_attention:  # a shared block, counted once in extra_parameters
                per_kind[name] = (0, 0, 0)
            else:
                a = spec.attention_of(name)
                matrices, small = attention_parameters(a, hidden, w)
                per_kind[name] = (matrices, small, _held_whole(a, hidden))
        matrices, small, whole = per_kind[name]
        own = w.layer_parameters.get(name, 0)
        inactive += w.inactive_layer_parameters.get(name, 0)
        linear += matrices + own
        attention += matrices - whole + own
        replicated += whole
        other += small
        if w.mlp_kinds is not None and name not in w.mlp_kinds:
            continue  # a layer without an MLP (Mamba)
        matrices, small, unused = mlp_parameters(w, hidden, index)
        linear += matrices
        other += small
        inactive += unused
        is_moe = bool(unused) or (w.moe is not None and w.moe.is_moe_layer(index))
        moe_layers += is_moe
        if is_moe:
            routed += w.moe.experts * expert
            shared += w.moe.shared_experts * _mlp(w.moe.expert_kind, hidden,
                                                  w.moe.shared_intermediate_size or w.moe.intermediate_size)
    return LayerParts(linear, other, inactive, moe_layers, attention, replicated, routed, shared)


_PARTS: dict[tuple[int, int, int], tuple[ModelSpec, LayerParts]] = {}  # (id, start, stop) -> (spec, kept alive; parts)


def stage_parts(spec: ModelSpec, indices: range) -> LayerParts:
    """layer_parts of ``indices``, once per spec object and range (fit asks for every shape it tries)."""
    key = (id(spec), indices.start, indices.stop)
    seen = _PARTS.get(key)
    if seen is not None and seen[0] is spec and indices.step == 1:
        return seen[1]
    if len(_PARTS) > 1024:
        _PARTS.clear()
    parts = layer_parts(spec, indices)
    if indices.step == 1:
        _PARTS[key] = (spec, parts)
    return parts


def whole_model_parts(spec: ModelSpec) -> LayerParts:
    """layer_parts of every layer, once per spec object."""
    return stage_parts(spec, range(spec.layers.count))


def _held_whole(a, hidden: int) -> int:
    """Attention matrices every GPU holds whole: MLA's down projections (q_a and kv_a, ReplicatedLinear in vLLM's
    deepseek_v2.py 494/518 and 966/1059 and SGLang's fused_qkv_a_proj_with_mqa, deepseek_v2.py 2070) and
    DeepSeek-V3.2's indexer (vLLM deepseek_v2.py 703/717: wq_b replicated, wk with disable_tp)."""
    if not isinstance(a, MLAAttention):
        return 0
    down = hidden * ((a.q_lora_rank or 0) + a.kv_lora_rank + a.qk_rope_head_dim)
    return down + (indexer_parameters(a, hidden)[0] if a.indexer is not None else 0)
