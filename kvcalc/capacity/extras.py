"""What else an engine holds beside the target's weights and KV: LoRA adapter slots, speculative
layers (a draft model, MTP heads), a shared prompt prefix, and the prefill-to-decode handoff.

Pure arithmetic on specs. Each rule says which engine code it follows (docs/fit.md, section 9).
"""

from typing import NamedTuple

from kvcalc.capacity.layers import cdiv
from kvcalc.spec import DenseAttention, MLAAttention, ModelSpec, NoKVLayer

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down", "embed", "lm_head")
PROJECTIONS = LORA_TARGETS[:7]
COLUMN_PARALLEL = {"q", "k", "v", "gate", "up"}  # split by output rows under TP; o and down by input columns


class ExtrasError(ValueError):
    """An option the model cannot take (exit 2 at the CLI)."""


class LoRA(NamedTuple):
    slots: int  # adapters held on the GPU at once (vLLM --max-loras, SGLang --max-loras-per-batch)
    rank: int  # --max-lora-rank: every slot is sized for it
    targets: tuple[str, ...] = PROJECTIONS


def lora_modules(spec: ModelSpec, targets: tuple[str, ...]) -> list[tuple[str, int, int, int]]:
    """(module, input width, output width, layers that have it) for each targeted projection."""
    if spec.hidden_size is None:
        raise ExtrasError(f"{spec.name}: LoRA needs hidden_size, which this model does not state")
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ExtrasError(f"--lora-targets {','.join(unknown)}: choose from {','.join(LORA_TARGETS)}")
    hidden = spec.hidden_size
    order = spec.layers.order()
    attending = [n for n in order if not isinstance(spec.layers.kinds[n], NoKVLayer)]
    found = []
    for kind in dict.fromkeys(attending):
        a = spec.attention_of(kind)
        if isinstance(a, MLAAttention):
            if any(t in targets for t in ("q", "k", "v", "o")):
                raise ExtrasError(f"{spec.name}: LoRA on MLA's projections is not modelled; target gate,up,down "
                                  "only, or a model with dense attention")
            continue
        assert isinstance(a, DenseAttention)
        n = attending.count(kind)
        widths = {"q": (hidden, a.heads * a.head_dim), "k": (hidden, a.kv_heads * a.head_dim),
                  "v": (hidden, a.kv_heads * a.v_dim), "o": (a.heads * a.v_dim, hidden)}
        found += [(t, *widths[t], n) for t in ("q", "k", "v", "o") if t in targets]
    w = spec.weights
    mlp_targets = [t for t in ("gate", "up", "down") if t in targets]
    if mlp_targets:
        if w is None:
            raise ExtrasError(f"{spec.name}: LoRA on the MLP needs its width (no weights block)")
        with_mlp = [i for i in range(len(order)) if w.mlp_kinds is None or order[i] in w.mlp_kinds]  # not Mamba's
        dense = [i for i in with_mlp if w.moe is None or not w.moe.is_moe_layer(i)]
        if w.moe is not None and len(dense) < len(with_mlp):
            if not dense:
                raise ExtrasError(f"{spec.name}: every layer is mixture-of-experts; LoRA on experts is not "
                                  "modelled (target q,k,v,o)")
        if dense and w.mlp is not None:
            # per-layer widths where the weights block lists them (Nemotron-NAS's mlp_sizes; 0: no MLP there),
            # one entry per distinct width with the layers that have it
            sizes = [w.mlp.intermediate_size if w.mlp_sizes is None else w.mlp_sizes[i] for i in dense]
            for inner in dict.fromkeys(s for s in sizes if s):
                shapes = {"gate": (hidden, inner), "up": (hidden, inner), "down": (inner, hidden)}
                if w.mlp.kind != "gated":
                    shapes.pop("gate")
                found += [(t, *shapes[t], sizes.count(inner)) for t in mlp_targets if t in shapes]
    if w is not None:  # embedding and head LoRA: full vocabulary, one each
        found += [(t, w.vocab_size, hidden, 1) if t == "embed" else (t, hidden, w.vocab_size, 1)
                  for t in ("embed", "lm_head") if t in targets]
    return found


def lora_parameters(spec: ModelSpec, rank: int, targets: tuple[str, ...] = PROJECTIONS) -> int:
    """One adapter's parameters: rank x (in + out) per targeted projection per layer."""
    return sum(n * rank * (i + o) for _, i, o, n in lora_modules(spec, targets))


def lora_bytes_per_gpu(spec: ModelSpec, lora: LoRA, tp: int, dtype_bytes: int = 2) -> int:
    """Adapter slots on one GPU: A (rank x in) and B (out x rank) per projection and layer, B split over
    TP for column-parallel projections (q, k, v, gate, up) and A for row-parallel ones (o, down), as
    vLLM's and SGLang's LoRA layers shard them; every slot sized for the maximum rank."""
    total = 0
    for module, i, o, n in lora_modules(spec, lora.targets):
        if module in ("embed", "lm_head"):  # vLLM keeps these LoRA buffers whole on every GPU
            per = lora.rank * (i + o)
        elif module in COLUMN_PARALLEL:
            per = lora.rank * i + cdiv(o, tp) * lora.rank
        else:
            per = lora.rank * cdiv(i, tp) + o * lora.rank
        total += n * per
    return lora.slots * total * dtype_bytes


def handoff_bytes(kv_bytes_per_token: int, state_bytes: int, prompt: int) -> int:
    """What a prefill node sends a decode node for one request: the prompt's KV in every layer
    (per GPU when ``kv_bytes_per_token`` is per GPU) and any constant state."""
    return kv_bytes_per_token * prompt + state_bytes


def shared_prefix_blocks(prefix: int, block: int) -> int:
    """Pages of a shared prompt prefix that prefix caching keeps once: whole pages only (a page is
    shared when every token in it matches)."""
    return prefix // block


def with_extra_layers(spec: ModelSpec, n: int, name: str = "mtp") -> ModelSpec:
    """``spec`` with ``n`` more layers of its last layer's kind appended (MTP heads: one more decoder
    layer each, as DeepSeek's and GLM's next-token-prediction modules are)."""
    order = spec.layers.order()
    data = spec.model_dump()
    data["layers"]["count"] = spec.layers.count + n
    data["layers"]["pattern"] = order + [order[-1]] * n
    data["name"] = spec.name
    if name:
        data["notes"] = list(spec.notes) + [f"{n} MTP layer(s) of kind {order[-1]} added (--mtp)"]
    return ModelSpec.model_validate(data)



def chunked_tokens(size: int, chunk_tokens: int, chunk_bytes: int, align: int = 1) -> int:
    """Tokens a tier of ``size`` bytes holds in whole chunks of ``chunk_tokens`` tokens, each chunk
    ``chunk_bytes`` rounded up to ``align``."""
    chunk = cdiv(chunk_bytes, align) * align
    return size // chunk * chunk_tokens if chunk else 0
