"""A model's attention and layer pattern, as validated data.

MHA, MQA and GQA are one shape (``DenseAttention``): K and V per KV head, with MHA
meaning kv_heads == heads and MQA meaning kv_heads == 1. MLA caches a compressed
latent instead and gets its own variant (``MLAAttention``).
"""

# No postponed annotations: pydantic evaluates every field's annotation string when a class is
# built (about 5 ms of start-up for these 14 classes); the classes are declared in order instead.
import re
from functools import lru_cache
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kvcalc.dtypes import DTYPE_BITS, KVDtype

# Upper bounds where a value cannot be real: a tiny file must never cost gigabytes or minutes.
MAX_LAYERS = 100_000
MAX_HEADS = 65_536
MAX_WIDTH = 2**24  # hidden sizes, head sizes, ranks, MLP widths, vocabularies
MAX_TOKENS = 2**40  # contexts, windows, chunks, positions
MAX_ELEMENTS = 2**44  # states and parameter counts

Positive = Annotated[int, Field(gt=0, le=MAX_WIDTH)]
NonNegative = Annotated[int, Field(ge=0, le=MAX_WIDTH)]
Heads = Annotated[int, Field(gt=0, le=MAX_HEADS)]
LayerCount = Annotated[int, Field(gt=0, le=MAX_LAYERS)]
Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
NonNegativeTokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Elements = Annotated[int, Field(ge=0, le=MAX_ELEMENTS)]


class _Frozen(BaseModel):
    # strict: integers only where integers are meant (not true, 32.0 or '32'), as config.json is read
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class DenseAttention(_Frozen):
    """MHA, MQA or GQA: every layer caches K and V for ``kv_heads`` heads."""

    kind: Literal["mha", "mqa", "gqa"]
    heads: Heads
    kv_heads: Heads | None = None  # MHA defaults to heads, MQA to 1
    head_dim: Positive  # each K head's width (and each query head's)
    v_head_dim: Positive | None = None  # each V head's width when it differs from K's; None: head_dim
    indexer: ClassVar[None] = None  # only MLA has one; read as an attribute, never from a file

    @model_validator(mode="before")
    @classmethod
    def _default_kv_heads(cls, data):
        if isinstance(data, dict) and data.get("kv_heads") is None:
            if data.get("kind") == "mha":
                data = {**data, "kv_heads": data.get("heads")}
            elif data.get("kind") == "mqa":
                data = {**data, "kv_heads": 1}
        return data

    @model_validator(mode="after")
    def _check_heads(self):
        if self.kv_heads is None:
            raise ValueError("gqa needs kv_heads")
        if self.kind == "mha" and self.kv_heads != self.heads:
            raise ValueError(
                f"mha means kv_heads == heads, got kv_heads={self.kv_heads}, heads={self.heads}"
            )
        if self.kind == "mqa" and self.kv_heads != 1:
            raise ValueError(f"mqa means kv_heads == 1, got kv_heads={self.kv_heads}")
        if self.heads % self.kv_heads:
            raise ValueError(
                f"kv_heads={self.kv_heads} must divide heads={self.heads}"
            )
        return self

    @property
    def v_dim(self) -> int:
        """Each V head's width: v_head_dim when given, else head_dim."""
        return self.head_dim if self.v_head_dim is None else self.v_head_dim

    def kv_elements_per_token(self, mla_layout: str = "latent") -> int:
        """K and V elements one token adds to one layer's cache: kv_heads x (k_dim + v_dim)."""
        return self.kv_heads * (self.head_dim + self.v_dim)

    def kv_rows_per_token(self, mla_layout: str = "latent") -> list[tuple[int, int]]:
        """(rows, width) one token adds to one layer: a K and a V vector per KV head."""
        return [(self.kv_heads, self.head_dim), (self.kv_heads, self.v_dim)]


def head_widths(attention: DenseAttention) -> str:
    """'128' when K and V heads are equally wide, 'k192/v128' when they differ."""
    a = attention
    return str(a.head_dim) if a.v_dim == a.head_dim else f"k{a.head_dim}/v{a.v_dim}"


class Indexer(_Frozen):
    """DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2, model_type deepseek_v32):
    per layer, a small scorer picks the ``topk`` earlier tokens each query attends to, and it
    caches one key per token beside the MLA latent: its own cache, sized here.

    What is cached per token and layer, by source:

    - DeepSeek's inference code (deepseek-ai/DeepSeek-V3.2-Exp, inference/model.py, class
      Indexer): ``k_cache`` (batch, seq, index_head_dim) in float8_e4m3fn and ``k_scale_cache``
      (batch, seq, index_head_dim // 128) in float32: 128 + 4 = 132 B for index_head_dim 128.
      One key per token, shared by all index_n_heads query heads (``wk`` projects to a single
      head); every tensor-parallel rank holds all of it (``wk`` is not split).
    - vLLM (vllm/model_executor/models/deepseek_v2.py, DeepseekV32IndexerCache): one "head" of
      index_head_dim + index_head_dim // 128 x 4 bytes (uint8) per token: 132 B, the same bytes.
    - SGLang (NSATokenToKVPool's index_k_with_scale_buffer): 128 fp8 bytes + 4 scale bytes, 132 B.
    - transformers (models/deepseek_v32, DeepseekV32Indexer): the key is kept unquantized, in
      the model dtype, with no scale: index_head_dim x 2 = 256 B in bf16
      (``key_dtype: null, scale_block: null`` describes it).

    kvcalc's default is the first three (fp8 key, an fp32 scale per 128 elements).
    """

    heads: Heads  # index_n_heads: the indexer's query heads; keys are not per head
    head_dim: Positive  # index_head_dim: each cached key's width
    topk: Tokens | None = None  # index_topk: tokens each query keeps; does not change the cache
    key_dtype: KVDtype | None = "fp8"  # the cached key's dtype; None: the KV cache's dtype
    scale_block: Positive | None = 128  # one scale per this many key elements; None: no scale
    scale_bytes: Annotated[int, Field(gt=0, le=8)] = 4  # each scale's bytes (fp32 in the sources above)

    @model_validator(mode="after")
    def _check_block(self):
        if self.scale_block is not None and self.head_dim % self.scale_block:
            raise ValueError(f"scale_block={self.scale_block} must divide head_dim={self.head_dim}")
        return self

    def bits_per_token(self, kv_dtype: str) -> int:
        """One layer's indexer cache for one token, in bits: the key and its scales."""
        key = self.head_dim * DTYPE_BITS[self.key_dtype or kv_dtype]
        scales = self.head_dim // self.scale_block * self.scale_bytes * 8 if self.scale_block else 0
        return key + scales


class MLAAttention(_Frozen):
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2); with an ``indexer``, DeepSeek
    Sparse Attention (DeepSeek-V3.2)."""

    kind: Literal["mla"]
    heads: Heads
    kv_lora_rank: Positive
    qk_rope_head_dim: Positive
    qk_nope_head_dim: Positive
    v_head_dim: Positive
    q_lora_rank: Positive | None = None  # None: queries are not compressed
    indexer: Indexer | None = None  # DeepSeek-V3.2's lightning indexer: its key cache is apart

    def kv_elements_per_token(self, mla_layout: str = "latent") -> int:
        if mla_layout == "expanded":
            # per-head K (nope + rope) and per-head V, as a naive implementation caches
            return self.heads * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)
        # one latent c_kv plus the shared rope key
        return self.kv_lora_rank + self.qk_rope_head_dim

    def kv_rows_per_token(self, mla_layout: str = "latent") -> list[tuple[int, int]]:
        if mla_layout == "expanded":
            return [(self.heads, self.qk_nope_head_dim + self.qk_rope_head_dim), (self.heads, self.v_head_dim)]
        return [(1, self.kv_lora_rank), (1, self.qk_rope_head_dim)]


class NoAttention(_Frozen):
    """A model without attention (Mamba, Mamba2, Falcon-Mamba): every layer keeps a constant state
    and no KV cache; it has no heads to count."""

    kind: Literal["none"]
    indexer: ClassVar[None] = None


Attention = Annotated[DenseAttention | MLAAttention | NoAttention, Field(discriminator="kind")]


class NoKVLayer(_Frozen):
    """Linear attention or Mamba: no KV cache, a constant state per sequence."""

    type: Literal["none"]
    state_elements: Elements = 0  # the whole state as transformers holds it, conv part included
    state_dtype: KVDtype | None = None  # None: the model's dtype
    # the conv part of the state (conv_channels x conv_kernel of state_elements), kept in conv_dtype
    # (None: the model's); engines keep kernel - 1 columns of it (vLLM's and SGLang's conv state)
    conv_channels: Elements = 0
    conv_kernel: Annotated[int, Field(ge=0, le=4096)] = 0
    conv_dtype: KVDtype | None = None
    mixer: Literal["mamba", "mamba2", "gated_deltanet", "short_conv", "linear"] | None = None
    description: str | None = None
    # what the other layer kinds have, absent here: read as attributes (a miss costs a pydantic __getattr__)
    attention: ClassVar[None] = None
    span: ClassVar[None] = None
    state: ClassVar[None] = None

    @model_validator(mode="after")
    def _check_conv(self):
        if bool(self.conv_channels) != bool(self.conv_kernel):
            raise ValueError("conv_channels and conv_kernel go together")
        if self.conv_channels * self.conv_kernel > self.state_elements:
            raise ValueError(f"the conv state ({self.conv_channels} x {self.conv_kernel}) is larger than "
                             f"state_elements ({self.state_elements})")
        return self

    def bits(self, model_dtype: str) -> int:
        """One request's state in one layer as transformers holds it (full conv kernel)."""
        conv = self.conv_channels * self.conv_kernel
        return ((self.state_elements - conv) * DTYPE_BITS[self.state_dtype or model_dtype]
                + conv * DTYPE_BITS[self.conv_dtype or model_dtype])


class FullLayer(_Frozen):
    """Attends to every earlier token: holds the whole context. With a ``state``, the layer also runs a
    Mamba2 mixer and keeps its constant state beside the KV cache (Falcon-H1's parallel hybrid layers,
    Zamba2's hybrid layers with a shared attention block), described as a no-KV layer would be."""

    type: Literal["full"]
    attention: Attention | None = None  # None: the model's attention
    state: NoKVLayer | None = None
    span: ClassVar[None] = None  # no window: it holds the whole context


class SlidingLayer(_Frozen):
    """Attends to the last ``window`` tokens: holds min(context, window)."""

    type: Literal["sliding"]
    window: Tokens
    attention: Attention | None = None
    state: ClassVar[None] = None  # no Mamba state beside it

    @property
    def span(self) -> int:
        """The most tokens a layer of this kind ever holds."""
        return self.window


class ChunkedLayer(_Frozen):
    """Attends within aligned chunks of ``chunk`` tokens: holds min(context, chunk)."""

    type: Literal["chunked"]
    chunk: Tokens
    attention: Attention | None = None
    state: ClassVar[None] = None

    @property
    def span(self) -> int:
        return self.chunk



LayerKind = Annotated[
    FullLayer | SlidingLayer | ChunkedLayer | NoKVLayer, Field(discriminator="type")
]

_REPEAT = re.compile(r"^\s*([A-Za-z0-9_-]{1,64})\s*(?:\*\s*([0-9]{1,12}))?\s*$", re.ASCII)


def expand_pattern(pattern: list[str], count: int) -> list[str]:
    """["local*5", "global"] tiled over ``count`` layers, the last tile cut short. The unit's
    length is checked against ``count`` before anything is expanded."""
    runs = []
    for item in pattern:
        match = _REPEAT.match(item) if isinstance(item, str) else None
        if not match:
            raise ValueError(f"pattern item {_short(item)} is not NAME or NAME*N")
        name, times = match.group(1), int(match.group(2) or 1)
        if times < 1:
            raise ValueError(f"pattern item {item!r} repeats fewer than once")
        runs.append((name, times))
    length = sum(times for _, times in runs)
    if length > count:
        raise ValueError(f"pattern has {length} layers, more than count={count}")
    unit = [name for name, times in runs for _ in range(times)]
    return [unit[i % len(unit)] for i in range(count)]


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Layers(_Frozen):
    """How many layers, which kinds exist, and the order they come in."""

    count: LayerCount
    kinds: dict[str, LayerKind] = Field(default_factory=lambda: {"full": FullLayer(type="full")}, max_length=64)
    pattern: list[str] = Field(default_factory=lambda: ["full"], min_length=1, max_length=MAX_LAYERS)

    @model_validator(mode="after")
    def _check_pattern(self):
        order = expand_pattern(self.pattern, self.count)
        unknown = sorted(set(order) - set(self.kinds))
        if unknown:
            raise ValueError(f"pattern names {', '.join(unknown)}, not in kinds ({', '.join(self.kinds)})")
        unused = [name for name in self.kinds if name not in order]
        if unused:
            raise ValueError(f"kinds {', '.join(unused)} never appear in the pattern")
        return self

    def order(self) -> list[str]:
        """The kind name of each layer, layer 0 first."""
        return list(_expanded(tuple(self.pattern), self.count))


@lru_cache(maxsize=256)
def _expanded(pattern: tuple[str, ...], count: int) -> tuple[str, ...]:
    """expand_pattern, once per pattern and count: fit and compare ask a spec's order many times."""
    return tuple(expand_pattern(list(pattern), count))


class DenseMLP(_Frozen):
    """The dense feed-forward block: gated (gate, up, down) or plain (up, down)."""

    kind: Literal["gated", "plain"]
    intermediate_size: Positive
    bias: bool = False


class MoE(_Frozen):
    """Mixture of experts: routed experts (each a gated MLP, or a plain one of up and down), shared experts
    of the same kind, a router. The MoE layers: from first_dense_layers on, every layer_period-th from
    layer_offset, or exactly those in layer_indices (Nemotron-H's E layers) when it is given."""

    experts: Heads
    experts_per_token: Heads
    intermediate_size: Positive  # per routed expert
    shared_experts: NonNegative = 0
    shared_intermediate_size: Positive | None = None  # None: intermediate_size
    shared_expert_gate: bool = False  # a hidden x 1 gate on the shared experts' output
    router_bias: bool = False  # a per-expert bias kept beside the router
    first_dense_layers: Annotated[int, Field(ge=0, le=MAX_LAYERS)] = 0  # layers 0..k-1 keep the dense MLP
    layer_period: LayerCount = 1
    layer_offset: Annotated[int, Field(ge=0, le=MAX_LAYERS)] = 0
    # the MoE layers by number, instead of first_dense_layers / layer_period / layer_offset
    layer_indices: list[Annotated[int, Field(ge=0, lt=MAX_LAYERS)]] | None = Field(default=None, max_length=MAX_LAYERS)
    expert_kind: Literal["gated", "plain"] = "gated"  # plain: up and down only (Nemotron-H's relu2 experts)

    @model_validator(mode="after")
    def _check(self):
        if self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token={self.experts_per_token} is more than experts={self.experts}")
        if self.layer_indices is not None:
            if self.first_dense_layers or self.layer_period != 1 or self.layer_offset:
                raise ValueError("layer_indices goes without first_dense_layers, layer_period and layer_offset")
            if len(set(self.layer_indices)) != len(self.layer_indices):
                raise ValueError("layer_indices names a layer twice")
        return self

    def is_moe_layer(self, index: int) -> bool:
        if self.layer_indices is not None:
            return index in self.layer_indices
        return (
            index >= self.first_dense_layers
            and index >= self.layer_offset
            and (index - self.layer_offset) % self.layer_period == 0
        )


class Weights(_Frozen):
    """What an exact parameter count needs beyond the attention shapes (see capacity/params.py)."""

    vocab_size: Positive
    tied_embeddings: bool
    dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "mxfp4"] | None = None  # the released checkpoint's
    # layer matrices (fp8 for DeepSeek-V3); None: the model dtype
    position_embeddings: NonNegativeTokens = 0  # learned absolute positions (GPT-2, BERT)
    token_type_embeddings: NonNegative = 0  # BERT
    embedding_norm: bool = False
    # the width of the input embeddings (word, position, token type) and their norm when narrower than
    # hidden_size (ELECTRA-small's embedding_size, RemBERT's input_embedding_size); None: hidden_size
    embedding_size: Positive | None = None
    # a Linear embedding width -> hidden_size with a bias after the embeddings (ELECTRA's embeddings_project,
    # RemBERT's embedding_hidden_mapping_in): its matrix counted with the layer matrices, its bias with the rest
    embedding_projection: bool = False
    norm: Literal["rms", "layer"] = "rms"  # layer norms carry a bias too
    norms_per_layer: NonNegative = 2
    final_norm: bool = True
    qk_norm: bool = False  # per-head q and k norms of width head_dim
    # "heads": the q and k norms span every head (heads x head_dim and kv_heads x head_dim: OLMo-2, MiniMax-M2)
    qk_norm_width: Literal["head", "heads"] = "head"
    qkv_bias: bool = False
    output_bias: bool = False
    mlp: DenseMLP | None = None  # None only when every layer that has one is MoE
    moe: MoE | None = None
    # the layer kinds whose layers have the MLP or experts; None: every layer (a Mamba layer has none)
    mlp_kinds: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=64)
    mixer_parameters: dict[str, Elements] = Field(default_factory=dict)  # per no-KV layer, by kind
    # per layer of a kind (any kind), beside its attention or mixer and its MLP: a Mamba2 mixer running beside
    # attention (Falcon-H1), a hybrid layer's own Mamba2 block and linear projection (Zamba2); layer matrices
    layer_parameters: dict[Annotated[str, Field(max_length=64)], Elements] = Field(default_factory=dict, max_length=64)
    # of layer_parameters, per layer of a kind, what a token does not use: experts not chosen (JetMoE's attention
    # experts beyond the top-k); left out of the active count
    inactive_layer_parameters: dict[Annotated[str, Field(max_length=64)], Elements] = Field(default_factory=dict,
                                                                                            max_length=64)
    # layer kinds whose attention is a block shared between layers (Zamba2's num_mem_blocks): its weights are
    # counted once, in extra_parameters, not per layer
    shared_attention: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=64)
    # per layer, layer 0 first: the dense MLP's width (mlp.kind and mlp.bias), 0 for a layer without one
    # (Nemotron-NAS's block_configs ffn_mult); None: mlp.intermediate_size in every layer that has an MLP
    mlp_sizes: list[NonNegative] | None = Field(default=None, max_length=MAX_LAYERS)
    # per layer, layer 0 first: how many norms it has (a block without attention has none before it);
    # None: norms_per_layer in every layer
    layer_norms: list[NonNegative] | None = Field(default=None, max_length=MAX_LAYERS)
    extra_parameters: Elements = 0  # parts outside this schema, explained in the notes


class ModelSpec(_Frozen):
    """One model, as a preset file or an imported config describes it."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    source: Annotated[list[str], Field(min_length=1)]
    parameters: str
    max_context: Tokens
    dtype: KVDtype
    architecture: Literal["decoder", "encoder"] = "decoder"
    # config.json's model_type, where engines treat a family apart (SGLang's sliding-window pool)
    model_type: Annotated[str, Field(max_length=64)] | None = None
    hidden_size: Positive | None = None
    attention: Attention
    layers: Layers
    weights: Weights | None = None  # None: the parameter count is not derived (notes say why)
    notes: list[str] = Field(default_factory=list)

    @field_validator("source", "notes", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_attention(self):
        if self.attention.kind != "none":
            return self
        attending = sorted(name for name, kind in self.layers.kinds.items() if not isinstance(kind, NoKVLayer))
        if attending:
            raise ValueError(f"attention kind none, but layer kinds {', '.join(attending)} attend")
        return self

    @model_validator(mode="after")
    def _check_weights(self):
        w = self.weights
        if w is None:
            return self
        if self.hidden_size is None:
            raise ValueError("weights need hidden_size")
        order = self.layers.order()
        no_kv = {name for name, kind in self.layers.kinds.items() if isinstance(kind, NoKVLayer)}
        missing = sorted(no_kv - set(w.mixer_parameters))
        if missing:
            raise ValueError(f"weights.mixer_parameters needs the no-KV layer kinds {', '.join(missing)}")
        unknown = sorted(set(w.mixer_parameters) - no_kv)
        if unknown:
            raise ValueError(f"weights.mixer_parameters names {', '.join(unknown)}, not a no-KV layer kind")
        unknown = sorted(set(w.mlp_kinds or ()) - set(self.layers.kinds))
        if unknown:
            raise ValueError(f"weights.mlp_kinds names {', '.join(unknown)}, not a layer kind")
        over = sorted(k for k, n in w.inactive_layer_parameters.items() if n > w.layer_parameters.get(k, 0))
        if over:
            raise ValueError(f"weights.inactive_layer_parameters of {', '.join(over)} is more than its "
                             "layer_parameters")
        unknown = sorted((set(w.layer_parameters) | set(w.shared_attention)) - set(self.layers.kinds))
        if unknown:
            raise ValueError(f"weights.layer_parameters or shared_attention names {', '.join(unknown)}, "
                             "not a layer kind")
        for field in ("mlp_sizes", "layer_norms"):
            listed = getattr(w, field)
            if listed is not None and len(listed) != len(order):
                raise ValueError(f"weights.{field} has {len(listed)} entries, not one per layer ({len(order)})")
        if w.mlp_sizes is not None and (w.mlp is None or w.moe is not None):
            raise ValueError("weights.mlp_sizes needs weights.mlp (its kind) and no moe")
        with_mlp = [i for i, name in enumerate(order) if w.mlp_kinds is None or name in w.mlp_kinds]
        if w.mlp is None and with_mlp and (w.moe is None or not all(w.moe.is_moe_layer(i) for i in with_mlp)):
            raise ValueError("weights.mlp is needed: some layers are not MoE")
        return self

    @property
    def is_encoder(self) -> bool:
        return self.architecture == "encoder"

    @property
    def attends(self) -> bool:
        """False for a pure state-space model (attention kind none): no layer keeps a KV cache."""
        return self.attention.kind != "none"

    def attention_of(self, kind_name: str) -> DenseAttention | MLAAttention:
        """The attention a layer kind uses: its own override or the model's."""
        kind = self.layers.kinds[kind_name]
        own = getattr(kind, "attention", None)
        return own if own is not None else self.attention


__all__ = [
    "Attention",
    "ChunkedLayer",
    "DTYPE_BITS",
    "DenseAttention",
    "DenseMLP",
    "FullLayer",
    "Indexer",
    "LayerKind",
    "Layers",
    "MLAAttention",
    "MoE",
    "ModelSpec",
    "NoAttention",
    "NoKVLayer",
    "SlidingLayer",
    "Weights",
    "expand_pattern",
    "head_widths",
]
