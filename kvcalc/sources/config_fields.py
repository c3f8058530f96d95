"""The config.json reader's vocabulary: field aliases, class defaults, and a reader that
remembers every key it looks up, so keys nobody read can be reported (``unread_notes``).

Shared by ``config_attention`` (what one layer caches per token), ``config_layers`` (which
layer holds what) and ``config_json`` (the entry point that puts them together).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import NoReturn

from kvcalc.errors import PresetError
from kvcalc.sources.model_types import (
    CHECKED_TYPES,
    DEFAULTS_MATCHED,
    ENCODER_DECODER_TYPES,
    UNVERIFIED,
    refusal,
)
from kvcalc.spec import MAX_HEADS, MAX_LAYERS, MAX_TOKENS

HINT = "write a preset YAML instead (see 'kvcalc presets show llama-3-8b' for the format)"

# One concept -> the field names configs use for it, preferred first.
ALIASES: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "n_heads", "num_heads", "attention_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    # ChatGLM/GLM-4: kv_channels is each head's width; Nemotron-H (older configs) and Zamba2
    # write attention_head_dim
    "head_dim": ("head_dim", "kv_channels", "attention_head_dim"),
    "max_position_embeddings": (
        "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx",
        "max_seq_len",
    ),
    "sliding_window_pattern": ("sliding_window_pattern", "_sliding_window_pattern"),
    # Mamba2: Nemotron-H's names first, then GraniteMoeHybrid / Bamba's
    "mamba2_heads": ("mamba_num_heads", "mamba_n_heads", "n_mamba_heads"),
    "mamba2_head_dim": ("mamba_head_dim", "mamba_d_head"),
    "mamba2_state": ("ssm_state_size", "mamba_d_state"),
    "mamba2_groups": ("n_groups", "mamba_n_groups", "mamba_ngroups"),
    "mamba2_conv": ("conv_kernel", "mamba_d_conv"),
}

# transformers' class defaults that matter when a config.json leaves the field out.
# Each use is noted ("inferred: X = v (transformers' default for ...)"). A sliding_window
# default is listed only where transformers applies it: MixtralConfig and Phi3Config default
# to no window, and the Qwen classes use theirs only with use_sliding_window true.
CLASS_DEFAULTS: dict[str, dict[str, int]] = {
    "falcon": {"max_position_embeddings": 2048},
    "RefinedWeb": {"max_position_embeddings": 2048},
    "RefinedWebModel": {"max_position_embeddings": 2048},
    "mistral": {"sliding_window": 4096},
    "gemma": {"head_dim": 256},
    "gemma2": {"head_dim": 256, "sliding_window": 4096},
    "gemma3_text": {
        "head_dim": 256, "max_position_embeddings": 131072, "sliding_window": 4096,
        "sliding_window_pattern": 6,
    },
    "qwen2": {"max_window_layers": 28, "sliding_window": 4096},
    "qwen2_moe": {"max_window_layers": 28, "sliding_window": 4096},
    "qwen3": {"head_dim": 128, "max_window_layers": 28, "sliding_window": 4096},
    "qwen3_moe": {"sliding_window": 4096},
    "qwen3_next": {"full_attention_interval": 4},
    "gemma4_text": {"sliding_window": 512},
    "gemma4_unified_text": {"sliding_window": 1024},
    "mimo_v2_flash": {"sliding_window": 129},
    "jetmoe": {"head_dim": 128},  # JetMoeConfig: kv_channels 128, which head_dim names (configuration_jetmoe.py 47, 53)
    "llama4_text": {"head_dim": 128, "attention_chunk_size": 8192, "no_rope_layer_interval": 4},
    "jamba": {
        "attn_layer_period": 8, "attn_layer_offset": 4,
        "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2,
    },
}

# A multimodal config names its language model's type only through the wrapper's type.
TEXT_MODEL_TYPES = {"gemma3": "gemma3_text", "gemma4": "gemma4_text", "llama4": "llama4_text"}


# When a config names no length at all (BLOOM: ALiBi has no position table), kvcalc does as
# vLLM does and assumes this many tokens; the note says so and estimate warns unless
# --context is given.

# Words in a config key that may change the KV cache. A key holding one of them that kvcalc
# never looked up (and IGNORED does not explain) becomes an "unread:" note: a warning, and an
# error with --strict. Length fields are not here: they change the default context, not the
# bytes per token.
KV_WORDS = (
    "head", "kv", "layer", "window", "chunk", "pattern", "block", "attention", "attn", "latent",
    "lora", "sliding", "global", "local", "swa", "mamba", "ssm", "linear", "hybrid", "query",
    "nope", "group", "index", "compress", "loop", "recurrent", "shared",
)
# Keys with a KV word that do not change what is cached, each pattern with its reason; a key
# inside MPT's attn_config is matched as "attn_config.key".
IGNORED: tuple[tuple[str, str], ...] = (
    (r"norm", "normalisation placement or epsilon: no cache effect"),
    (r"dropout|pdrop|layerdrop", "training-time dropout"),
    (r"bias", "biases change weights, not the cache"),
    (r"expert|moe|mlp_only|topk_group|n_group", "mixture-of-experts routing and placement: the MLP, not attention"),
    (r"softcap|softmax|scalar|scaling|logit", "attention score arithmetic: the same K and V are cached"),
    (r"rope_(theta|scaling|local_base_freq|ratio)", "position-encoding frequency: no cache effect"),
    (r"(^|\.)(use_mamba_kernels|use_mambapy|use_associative_scan|use_flash_attn|attn_impl|_attn_implementation)$",
     "kernel choice"),
    (r"(^|\.)(attn_uses_sequence_id|use_bidirectional_attention)$",
     "the attention mask, not what is cached (Gemma-3 and Gemma-4 read it: bidirectional, an encoder)"),
    (r"^mamba_dt_rank$", "Mamba's time-step projection rank: weights, not state"),
    (r"^parallel_attn$", "attention and MLP side by side (Falcon): the same cache"),
    (r"^sliding_window_size$", "Gemma-2's legacy name for sliding_window (MiMo-V2's is read)"),
    (r"^mtp_layers_block_type$|^num_nextn_predict_layers$|^mtp_num_hidden_layers$",
     "multi-token-prediction layers, loaded only for speculative decoding: not counted"),
    (r"token_index$|token_id$", "a special token's id in the vocabulary, not a size"),
    (r"(^|\.)(output_attentions|output_hidden_states)$", "what the forward returns, not what it caches"),
    (r"(^|\.)chunk_size_feed_forward$", "feed-forward chunking: the MLP, not the cache"),
    (r"per_layer_input", "per-layer input embeddings (Gemma-3n, Gemma-4): weights, not the cache"),
    (r"^for_llm_compressor$", "a flag for the llm-compressor tool: how weights were quantized"),
    (r"^(mamba_)?chunk_size$", "Mamba2's scan chunk length: how the state is computed, not its size"),
    (r"^mamba_hidden_act$", "the Mamba mixer's activation"),
    (r"^attention_value_scale$", "MiMo-V2 scales values inside attention: the same K and V are cached"),
    (r"(^|\.)clip_qkv$", "clamps the q, k, v values (DBRX, MPT, OLMo): the same K and V are cached"),
    (r"^attention_projection_layout$", "fused or split q/k/v weights: the same K and V are cached"),
    (r"^block_(auto_adjust_ff_dim|ff_dim|multiple_of|ffn_dim_multiplier|use_swiglu)$",
     "LFM2's feed-forward sizing: the MLP, not the cache"),
    (r"^block_(dim|mlp_init_scale|out_init_scale|use_xavier_init)$",
     "LFM2's block width and initialisation, which Lfm2Config does not read (hidden_size decides)"),
    (r"^attention_multiplier$", "Granite's attention score multiplier: the same K and V are cached"),
    (r"^shared_intermediate_size$", "the shared MLP's width (Granite-4.0-H): the MLP, not attention"),
    (r"^attn_output_gate$", "a gate on the attention output (Qwen3-Next, Qwen3.5): the same K and V are cached"),
    (r"^num_mem_blocks$", "Zamba2's shared attention blocks: weights shared by the hybrid layers, each of which "
                          "keeps its own K and V"),
    (r"^use_shared_attention_adapter$|^adapter_rank$",
     "LoRA adapters on Zamba2's shared blocks: weights, not the cache"),
    (r"^attention_hidden_size$", "Zamba2's attention input width (2 x hidden_size): the projections' input, not what "
                                 "is cached"),
    (r"^num_query_groups$", "a Megatron name Zamba2Config writes (num_attention_heads); num_key_value_heads decides"),
    (r"^hybrid_layer_ids$", "Zamba2Config's list of the hybrid layers, derived from layers_block_type (read)"),
    (r"^(attention_in|attention_out|ssm_in|ssm_out|lm_head|embedding|key)_multiplier$|^(ssm|mlp)_multipliers$",
     "Falcon-H1's muP multipliers: they scale activations; the same K, V and state are cached"),
    (r"^audio_chunk_size$", "MOSS-Transcribe-Diarize's Whisper encoder window in raw audio samples "
                            "(configuration_moss_transcribe_diarize.py 77-78): the audio input, not the cache"),
    (r"^linear_(a_log_min|a_log_max|dt_min|dt_max|dt_init_floor)$",
     "OLMo-Hybrid's Gated DeltaNet initialisation ranges (modeling_olmo_hybrid.py 618-626): weights, not the state"),
    (r"^linear_allow_neg_eigval$", "OLMo-Hybrid scales the delta rule's beta by 2 (modeling_olmo_hybrid.py 705): "
                                   "the same state is kept"),
    (r"^num_dense_layers$", "LFM2-MoE's first layers with a dense MLP instead of experts (modeling_lfm2_moe.py 482): "
                            "the MLP, not the cache"),
    (r"^mamba_use_mlp$", "Falcon-H1's MLP switch (transformers builds the MLP regardless): the MLP, not the cache"),
)

ZERO_ALLOWED = frozenset({"attn_layer_offset", "max_window_layers"})
# the most a field may say before kvcalc refuses it; anything else: MAX_TOKENS (2^40)
LIMITS = {
    "num_hidden_layers": MAX_LAYERS, "num_attention_heads": MAX_HEADS, "num_key_value_heads": MAX_HEADS,
    "multi_query_group_num": MAX_HEADS,
    "attn_layer_period": MAX_LAYERS, "attn_layer_offset": MAX_LAYERS, "max_window_layers": MAX_LAYERS,
}


# --------------------------------------------------------------------------- field access


@dataclass
class Reader:
    """The language model's fields, with aliases, class defaults and notes of what was inferred."""

    data: dict  # the language model's own fields (text_config for multimodal configs)
    outer: dict  # the whole config (dtype and _name_or_path may live only here)
    origin: str
    model_type: str
    notes: list[str] = field(default_factory=list)
    _memo: dict = field(default_factory=dict, repr=False)

    def once(self, key: str, compute):
        """``compute(self)`` the first time, the same answer (and notes) after that."""
        if key not in self._memo:
            self._memo[key] = compute(self)
        return self._memo[key]

    def fail(self, problem: str) -> NoReturn:
        fail_config(self.origin, problem)

    def find(self, concept: str) -> tuple[str, object] | None:
        """(field name, value) of the first alias present with a non-null value. Every alias
        is looked at, so a second one that disagrees is noted rather than left unread."""
        found = None
        for key in ALIASES.get(concept, (concept,)):
            value = self.data.get(key)
            if value is None:
                continue
            if found is None:
                found = key, value
            elif value != found[1]:
                note_once(self, f"ignored: {key} {shown_json(value)} ({found[0]} {shown_json(found[1])} wins)")
        return found

    def has(self, concept: str) -> bool:
        return self.find(concept) is not None

    def integer(self, concept: str, *, default: bool = True) -> int | None:
        """A positive integer field (0 too where ZERO_ALLOWED), else transformers' class
        default (noted), else None."""
        found = self.find(concept)
        if found is not None:
            key, value = found
            least = 0 if concept in ZERO_ALLOWED else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                what = "a whole number >= 0" if least == 0 else "a positive whole number"
                self.fail(f"{key} must be {what}, got {shown_json(value)}")
            most = LIMITS.get(concept, MAX_TOKENS)
            if value > most:  # before anything is sized by it: a count of 10**12 must not build a list
                self.fail(f"{key} {shown_json(value)} is more than any real model has (at most {most:,})")
            return value
        fallback = self.class_default(concept) if default else None
        if fallback is not None:
            self.notes.append(
                f"inferred: {concept} = {fallback} (transformers' default for "
                f"{self.model_type}; not in config.json)"
            )
        return fallback

    def class_default(self, concept: str) -> int | None:
        return CLASS_DEFAULTS.get(self.model_type, {}).get(concept)

    def available(self, concept: str) -> bool:
        """In the config (under any alias) or given by a class default; nothing is noted."""
        return self.has(concept) or self.class_default(concept) is not None

    def describe(self, concept: str) -> str:
        names = ALIASES.get(concept, (concept,))
        return names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")

    def what(self) -> str:
        return f"model_type {self.model_type!r}" if self.model_type else "this config (no model_type)"

    def flag(self, key: str, default: bool | None = None) -> bool | None:
        value = self.data.get(key, self.outer.get(key, default))
        return value if value is None else bool(value)

    def is_encoder_decoder(self) -> bool:
        return bool(self.outer.get("is_encoder_decoder")) or self.model_type in ENCODER_DECODER_TYPES


def require(r: Reader) -> None:
    """Every field a spec cannot do without, all missing ones named in a single error."""
    # JetMoeConfig derives num_attention_heads (configuration_jetmoe.py 72): its configs may leave it out
    missing = [r.describe(c) for c in ("num_attention_heads",) if not r.available(c) and r.model_type != "jetmoe"]
    if not r.available("num_hidden_layers") and not _pattern_gives_count(r):
        missing.insert(0, r.describe("num_hidden_layers"))
    if r.data.get("kv_lora_rank") is None and not (r.available("head_dim") or r.available("hidden_size")):
        missing.append(f"head_dim (or {', '.join(ALIASES['hidden_size'])} to derive it)")
    if missing:
        r.fail(f"{r.what()} is missing {', '.join(missing)}")


def _pattern_gives_count(r: Reader) -> bool:
    """Nemotron-H may leave num_hidden_layers out: its pattern has one entry per layer."""
    return isinstance(r.data.get("hybrid_override_pattern"), str) or isinstance(r.data.get("layers_block_type"), list)


def make_reader(data: dict, origin: str) -> Reader:
    """Pick the language model's fields: the top level, or ``text_config`` when it holds them."""
    outer_type = data.get("model_type")
    outer_type = outer_type if isinstance(outer_type, str) else ""
    text = data.get("text_config")
    has_own_layers = any(data.get(k) is not None for k in ALIASES["num_hidden_layers"])
    outer = Tracked(data)
    if isinstance(text, dict) and not has_own_layers:
        inner_type = text.get("model_type")
        model_type = inner_type if isinstance(inner_type, str) else TEXT_MODEL_TYPES.get(outer_type, outer_type)
        reader = Reader(Tracked(text), outer, origin, model_type)
        reader.notes.append(f"read text_config: the language model inside this {outer_type or 'config'}")
    else:
        reader = Reader(outer, outer, origin, outer_type)
    for model_type in dict.fromkeys((reader.model_type, outer_type)):  # a wrapper's type may be the refused one
        refused = refusal(model_type)
        if refused:
            reader.fail(f"model_type {model_type!r} is not supported: {refused}")
    if not reader.model_type:
        reader.notes.append("inferred: no model_type in config.json; read by field names alone")
    elif reader.model_type in DEFAULTS_MATCHED:
        reader.notes.append(
            f"untested: model_type {reader.model_type!r} is checked only on transformers' default config for it "
            "(docs/model-types.md), not on a released one; check the notes, or kvcalc verify --reference transformers"
        )
    elif reader.model_type not in CHECKED_TYPES:
        why = UNVERIFIED.get(reader.model_type)
        reader.notes.append(
            f"untested: model_type {reader.model_type!r} has not been tested with kvcalc; it was "
            "read by field names alone, check the notes" + (f" (unchecked: {why})" if why else "")
        )
    return reader


class Tracked(dict):
    """A config's fields that remember every key looked up (get, [], in), so the keys nobody
    read can be listed afterwards without a second hand-kept list of what kvcalc reads."""

    def __init__(self, data: dict):
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)


def unread_notes(r: Reader) -> list[str]:
    """An "unread:" note for each key that may change the KV cache and that nothing read."""
    sources = [("", r.data)] if r.outer is r.data else [("", r.data), ("", r.outer)]
    sources += [(f"{name}.", value) for _, source in list(sources) for name, value in
                dict.items(source) if isinstance(value, Tracked)]
    notes = []
    for prefix, source in sources:
        for key, value in dict.items(source):
            if (value is None or isinstance(value, Tracked) or key in source.read
                    or not any(word in str(key).lower() for word in KV_WORDS)
                    or any(re.search(pattern, f"{prefix}{key}".lower()) for pattern, _ in IGNORED)):
                continue
            notes.append(unread_note(f"{prefix}{key}", value))
    return notes


def unread_note(key: str, value) -> str:
    """The note for a key that may change the KV cache and that kvcalc did not read."""
    return (
        f"unread: {key} = {shown_json(value)} may change the KV cache, and kvcalc "
        "does not read it; check the numbers (--strict makes this an error)"
    )


def unread_keys(notes) -> list[str]:
    """The config keys that ``unread:`` notes name."""
    return [note.split()[1] for note in notes if note.startswith("unread: ")]



def note_once(r: Reader, note: str) -> None:
    if note not in r.notes:
        r.notes.append(note)



def shown_json(value, limit: int = 40) -> str:
    try:
        text = json.dumps(value)
    except ValueError:  # an integer past the digit limit
        text = "a number too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fail_config(origin: str, problem: str) -> NoReturn:
    raise PresetError(f"{origin}: {problem}; {HINT}")


def json_type(value: object) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


