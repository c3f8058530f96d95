"""Read a Hugging Face config.json into a ModelSpec, offline: no hub, no torch, no terminal.

The fields decide, not the model_type: each concern (sizes, head_dim, KV heads, MLA, layer
pattern, dtype, context) has one small reader that looks for the field names real configs
use (``ALIASES``). A model_type only matters where transformers itself gives it a meaning
the fields do not carry: Falcon's KV-head rule, Gemma-2's alternation, the class defaults
of a few config classes (``CLASS_DEFAULTS``), and which families are encoders.

The parameter count's ``weights`` block comes from ``hf_weights``, for the families whose
shapes it knows exactly; other configs get none, and a note says why.

Nothing is guessed silently: whatever kvcalc infers or ignores is written into the spec's
``notes`` ("inferred: ...", "ignored: ..."), which the table and the JSON both show. The
reader remembers every key it looks up; a key that may change the KV cache (``KV_WORDS``)
and that nothing looked up becomes an "unread: ..." note, which the CLI prints as a warning
(an error with --strict). What cannot be read is a PresetError naming the file, exactly
what is missing, and how to write a preset instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import yaml
from pydantic import ValidationError

from kvcalc.errors import PresetError
from kvcalc.estimate import UNKNOWN_CONTEXT_NOTE
from kvcalc.hf_weights import weights_block
from kvcalc.spec import MAX_HEADS, MAX_LAYERS, MAX_TOKENS, ModelSpec

HINT = "write a preset YAML instead (see 'kvcalc presets show llama-3-8b' for the format)"

# One concept -> the field names configs use for it, preferred first.
ALIASES: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "head_dim": ("head_dim", "kv_channels"),  # ChatGLM/GLM-4: kv_channels is each head's width
    "max_position_embeddings": (
        "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx",
        "max_seq_len",
    ),
    "sliding_window_pattern": ("sliding_window_pattern", "_sliding_window_pattern"),
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
    "llama4_text": {"head_dim": 128, "attention_chunk_size": 8192, "no_rope_layer_interval": 4},
    "jamba": {
        "attn_layer_period": 8, "attn_layer_offset": 4,
        "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2,
    },
}

# A multimodal config names its language model's type only through the wrapper's type.
TEXT_MODEL_TYPES = {"gemma3": "gemma3_text", "llama4": "llama4_text"}

FALCON_TYPES = frozenset({"falcon", "RefinedWeb", "RefinedWebModel"})
ENCODER_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "distilbert", "albert", "electra",
    "camembert", "deberta", "deberta-v2", "mpnet", "modernbert", "ernie", "nomic_bert",
})
ENCODER_DECODER_TYPES = frozenset({
    "t5", "mt5", "umt5", "longt5", "bart", "mbart", "marian", "pegasus", "whisper",
    "blenderbot", "m2m_100", "switch_transformers",
})
# Model types whose config.json kvcalc's tests check against real configs.
CHECKED_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next",
    "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "gpt2", "gpt_neox", "opt",
    "deepseek_v2", "deepseek_v3", "kimi_k2", "llama4", "llama4_text", "jamba",
    "bloom", "mpt", "chatglm",
}) | FALCON_TYPES | ENCODER_TYPES

# When a config names no length at all (BLOOM: ALiBi has no position table), kvcalc does as
# vLLM does and assumes this many tokens; the note says so and estimate warns unless
# --context is given.
UNKNOWN_CONTEXT = 2048

# Words in a config key that may change the KV cache. A key holding one of them that kvcalc
# never looked up (and IGNORED does not explain) becomes an "unread:" note: a warning, and an
# error with --strict. Length fields are not here: they change the default context, not the
# bytes per token.
KV_WORDS = (
    "head", "kv", "layer", "window", "chunk", "pattern", "block", "attention", "attn", "latent",
    "lora", "sliding", "global", "local", "swa", "mamba", "ssm", "linear", "hybrid", "query",
    "nope", "group",
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
    (r"(^|\.)(use_mamba_kernels|use_flash_attn|attn_impl|_attn_implementation)$", "kernel choice"),
    (r"(^|\.)(attn_uses_sequence_id|use_bidirectional_attention)$", "the attention mask, not what is cached"),
    (r"^mamba_dt_rank$", "Mamba's time-step projection rank: weights, not state"),
    (r"^parallel_attn$", "attention and MLP side by side (Falcon): the same cache"),
    (r"^sliding_window_size$", "Gemma-2's legacy name; transformers reads sliding_window"),
)

TORCH_DTYPES = {
    "float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
}
# A config without torch_dtype/dtype predates them (GPT-2, BERT): such checkpoints are fp32,
# and transformers loads them in fp32 unless told otherwise.
DEFAULT_DTYPE = "fp32"

# layer_types values, as transformers writes them (and the legacy names it still reads).
LAYER_TYPES = {
    "full_attention": "full", "attention": "full", "full": "full",
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "linear_attention": "state", "mamba": "state", "linear": "state",
}

MLA_FIELDS = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
DELTANET_FIELDS = (
    "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
    "linear_num_key_heads", "linear_conv_kernel_dim",
)
MAMBA_FIELDS = ("mamba_expand", "mamba_d_state", "mamba_d_conv")
# Integer fields where 0 means something: Jamba's layer 0 is attention; no layer is below
# max_window_layers 0. Every other integer field must be at least 1.
ZERO_ALLOWED = frozenset({"attn_layer_offset", "max_window_layers"})
# the most a field may say before kvcalc refuses it; anything else: MAX_TOKENS (2^40)
LIMITS = {
    "num_hidden_layers": MAX_LAYERS, "num_attention_heads": MAX_HEADS, "num_key_value_heads": MAX_HEADS,
    "multi_query_group_num": MAX_HEADS,
    "attn_layer_period": MAX_LAYERS, "attn_layer_offset": MAX_LAYERS, "max_window_layers": MAX_LAYERS,
}


# --------------------------------------------------------------------------- reading a file


def load_config_path(path: Path) -> ModelSpec:
    """A config.json, or a folder holding one, as a ModelSpec."""
    path = Path(path)
    try:
        file = path / "config.json" if path.is_dir() else path
        if path.is_dir() and not file.is_file():
            raise PresetError(f"{path}: no config.json in this folder")
        if not file.is_file():
            raise PresetError(f"{file}: no such file or folder")
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise PresetError(f"{str(path)[:80]}: not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    from kvcalc.readers import load_json, read_text

    try:
        data = load_json(read_text(file), str(file))
    except PresetError as exc:
        raise PresetError(f"{exc}; {HINT}" if "not JSON" in str(exc) else str(exc)) from None
    return spec_from_config(data, origin=str(file))


def spec_from_config(data: object, origin: str) -> ModelSpec:
    """A parsed config.json as a ModelSpec. ``origin`` is its path, used in errors and names."""
    if not isinstance(data, dict):
        _fail(origin, f"a config.json holds one JSON object, got a {_json_type(data)}")
    reader = _reader(data, origin)
    if reader.is_encoder_decoder():
        reader.fail(
            f"model_type {reader.model_type!r} is an encoder-decoder model; kvcalc reads "
            "decoder-only and encoder-only configs"
        )
    _require(reader)
    count, heads = reader.integer("num_hidden_layers"), reader.integer("num_attention_heads")
    attention = _mla(reader, heads) or _dense(reader, heads)
    encoder = reader.model_type in ENCODER_TYPES
    if encoder:
        reader.notes.append(
            f"encoder-only (model_type {reader.model_type}): it keeps no KV cache between steps"
        )
        layers = {"count": count}
    else:
        layers = _layers(reader, count)
    hidden = reader.integer("hidden_size")
    weights = weights_block(reader.data, reader.outer, reader.model_type, attention, count, hidden, reader.notes)
    spec = {
        "name": _name(data, origin),
        "source": _sources(data, origin),
        "parameters": _parameters(reader),
        "max_context": _max_context(reader),
        "dtype": _dtype(reader),
        "architecture": "encoder" if encoder else "decoder",
        "hidden_size": hidden,
        "attention": attention,
        "layers": layers,
        "weights": weights,
        "notes": reader.notes + _unread(reader),
    }
    try:
        return ModelSpec.model_validate(spec)
    except ValidationError as exc:
        from kvcalc.presets import describe_validation_error

        reader.fail(describe_validation_error(exc, spec))


# --------------------------------------------------------------------------- field access


@dataclass
class _Reader:
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
        _fail(self.origin, problem)

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
                _note_once(self, f"ignored: {key} {_shown_json(value)} ({found[0]} {_shown_json(found[1])} wins)")
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
                self.fail(f"{key} must be {what}, got {_shown_json(value)}")
            most = LIMITS.get(concept, MAX_TOKENS)
            if value > most:  # before anything is sized by it: a count of 10**12 must not build a list
                self.fail(f"{key} {_shown_json(value)} is more than any real model has (at most {most:,})")
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


def _require(r: _Reader) -> None:
    """Every field a spec cannot do without, all missing ones named in a single error."""
    missing = [r.describe(c) for c in ("num_hidden_layers", "num_attention_heads") if not r.available(c)]
    if r.data.get("kv_lora_rank") is None and not (r.available("head_dim") or r.available("hidden_size")):
        missing.append(f"head_dim (or {', '.join(ALIASES['hidden_size'])} to derive it)")
    if missing:
        r.fail(f"{r.what()} is missing {', '.join(missing)}")


def _reader(data: dict, origin: str) -> _Reader:
    """Pick the language model's fields: the top level, or ``text_config`` when it holds them."""
    outer_type = data.get("model_type")
    outer_type = outer_type if isinstance(outer_type, str) else ""
    text = data.get("text_config")
    has_own_layers = any(data.get(k) is not None for k in ALIASES["num_hidden_layers"])
    outer = _Tracked(data)
    if isinstance(text, dict) and not has_own_layers:
        inner_type = text.get("model_type")
        model_type = inner_type if isinstance(inner_type, str) else TEXT_MODEL_TYPES.get(outer_type, outer_type)
        reader = _Reader(_Tracked(text), outer, origin, model_type)
        reader.notes.append(f"read text_config: the language model inside this {outer_type or 'config'}")
    else:
        reader = _Reader(outer, outer, origin, outer_type)
    if not reader.model_type:
        reader.notes.append("inferred: no model_type in config.json; read by field names alone")
    elif reader.model_type not in CHECKED_TYPES:
        reader.notes.append(
            f"untested: model_type {reader.model_type!r} has not been tested with kvcalc; it was "
            "read by field names alone, check the notes"
        )
    return reader


class _Tracked(dict):
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


def _unread(r: _Reader) -> list[str]:
    """An "unread:" note for each key that may change the KV cache and that nothing read."""
    sources = [("", r.data)] if r.outer is r.data else [("", r.data), ("", r.outer)]
    sources += [(f"{name}.", value) for _, source in list(sources) for name, value in
                dict.items(source) if isinstance(value, _Tracked)]
    notes = []
    for prefix, source in sources:
        for key, value in dict.items(source):
            if (value is None or isinstance(value, dict) or key in source.read
                    or not any(word in str(key).lower() for word in KV_WORDS)
                    or any(re.search(pattern, f"{prefix}{key}".lower()) for pattern, _ in IGNORED)):
                continue
            notes.append(
                f"unread: {prefix}{key} = {_shown_json(value)} may change the KV cache, and kvcalc "
                "does not read it; check the numbers (--strict makes this an error)"
            )
    return notes


def unread_keys(notes) -> list[str]:
    """The config keys that ``unread:`` notes name."""
    return [note.split()[1] for note in notes if note.startswith("unread: ")]


# --------------------------------------------------------------------------- attention


def _dense(r: _Reader, heads: int) -> dict:
    head_dim = _head_dim(r, heads)
    kv_heads = _kv_heads(r, heads)
    kind = "mha" if kv_heads == heads else "mqa" if kv_heads == 1 else "gqa"
    return {"kind": kind, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}


def _head_dim(r: _Reader, heads: int) -> int:
    """An explicit head_dim wins: Gemma, Qwen3 and others differ from hidden_size / heads."""
    explicit = r.integer("head_dim")
    if explicit is not None:
        return explicit
    hidden = r.integer("hidden_size")  # present: _require checked
    if hidden % heads:
        r.fail(
            f"no head_dim, and hidden_size {hidden} is not a multiple of "
            f"num_attention_heads {heads}, so head_dim cannot be derived"
        )
    r.notes.append(
        f"inferred: head_dim = hidden_size / num_attention_heads = {hidden} / {heads} = {hidden // heads}"
    )
    return hidden // heads


def _kv_heads(r: _Reader, heads: int) -> int:
    found = r.find("num_key_value_heads")
    stated = r.integer("num_key_value_heads") if found else None
    if r.model_type in FALCON_TYPES:
        return _falcon_kv_heads(r, heads, found, stated)
    if stated is not None:
        return stated
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


def _glm_kv_heads(r: _Reader, heads: int) -> int | None:
    """ChatGLM2/3 and GLM-4: multi_query_attention true caches multi_query_group_num K/V
    heads (each kv_channels wide); false caches one per query head."""
    switch = r.data.get("multi_query_attention")
    groups = r.data.get("multi_query_group_num")
    if switch is None and groups is None:
        return None
    if switch is not None and not isinstance(switch, bool):
        r.fail(f"multi_query_attention must be true or false, got {_shown_json(switch)}")
    if switch is None or switch:
        if groups is None:
            r.fail("multi_query_attention is true, but multi_query_group_num is missing")
        count = r.integer("multi_query_group_num", default=False)
        if switch is None:
            r.notes.append(f"inferred: {count} KV heads from multi_query_group_num (no multi_query_attention)")
        return count
    if groups is not None:
        r.notes.append(f"ignored: multi_query_group_num {_shown_json(groups)} because multi_query_attention is false")
    r.notes.append(f"inferred: MHA, {heads} KV heads (multi_query_attention is false)")
    return heads


# MPT's attn_config.attn_type (llm-foundry's names) -> how many K/V heads it caches
MPT_ATTN_TYPES = ("multihead_attention", "multiquery_attention", "grouped_query_attention")


def _mpt_kv_heads(r: _Reader, heads: int) -> int | None:
    """MPT keeps its attention settings in the attn_config object: multihead caches every head,
    multiquery one, grouped_query attn_config.kv_n_heads."""
    block = r.data.get("attn_config")
    if not isinstance(block, dict):
        return None
    block = r.data["attn_config"] = _Tracked(block)  # its keys are checked for unread ones too
    kind = block.get("attn_type", "multihead_attention")
    if kind not in MPT_ATTN_TYPES:
        r.fail(f"attn_config.attn_type {_shown_json(kind)} is not one kvcalc knows ({', '.join(MPT_ATTN_TYPES)})")
    if kind == "multiquery_attention":
        r.notes.append("inferred: MQA, 1 KV head (attn_config.attn_type multiquery_attention)")
        return 1
    if kind == "grouped_query_attention":
        count = block.get("kv_n_heads")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= heads:
            r.fail(f"attn_config.kv_n_heads must be a whole number from 1 to {heads}, got {_shown_json(count)}")
        return count
    block.get("kv_n_heads")  # read, and moot: multihead attention caches every head
    r.notes.append(f"inferred: MHA, {heads} KV heads (attn_config.attn_type {kind}"
                   + ("" if "attn_type" in dict.keys(block) else ", MPT's default") + ")")
    return heads


def _falcon_kv_heads(r: _Reader, heads: int, found, stated: int | None) -> int:
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


def _mla(r: _Reader, heads: int) -> dict | None:
    """DeepSeek-V2/V3 and Kimi-K2: a latent of kv_lora_rank + qk_rope_head_dim per token."""
    if r.data.get("kv_lora_rank") is None:
        return None
    missing = [name for name in MLA_FIELDS if r.data.get(name) is None]
    if missing:
        r.fail(f"kv_lora_rank says MLA, but {', '.join(missing)} is missing")
    dims = {name: r.integer(name, default=False) for name in MLA_FIELDS}
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
    return {"kind": "mla", "heads": heads, **dims, "q_lora_rank": q_lora}


# --------------------------------------------------------------------------- layer pattern


def _layers(r: _Reader, count: int) -> dict:
    """Each layer's kind in order, folded into the shortest pattern that tiles to it."""
    order = _layer_order(r, count)
    kinds: dict[str, dict] = {}
    names: list[str] = []
    for token in order:
        name, kind = _kind(r, token)
        kinds.setdefault(name, kind)
        names.append(name)
    return {"count": count, "kinds": kinds, "pattern": compact_pattern(names)}


def _layer_order(r: _Reader, count: int) -> list[str]:
    """'full' | 'sliding' | 'chunked' | 'state' for each layer, layer 0 first."""
    layer_types = r.data.get("layer_types")
    if layer_types is not None:
        order = _from_layer_types(r, layer_types, count)
        pattern = r.find("sliding_window_pattern")  # transformers builds layer_types from it; the list decides
        if pattern is not None and order != [
            "full" if isinstance(pattern[1], int) and pattern[1] > 0 and (i + 1) % pattern[1] == 0 else "sliding"
            for i in range(count)
        ]:
            r.notes.append(f"ignored: {pattern[0]} {_shown_json(pattern[1])}: layer_types decides, and differs")
        return order
    if r.has("attn_layer_period") or r.model_type == "jamba":
        period, offset = r.integer("attn_layer_period"), r.integer("attn_layer_offset")
        if period is None or offset is None:
            r.fail("a Jamba-style config needs attn_layer_period and attn_layer_offset")
        if offset >= period:  # JambaConfig refuses it too: no layer would be attention
            r.fail(f"attn_layer_offset {offset} must be smaller than attn_layer_period {period}")
        return ["full" if i % period == offset else "state" for i in range(count)]
    if r.has("full_attention_interval") or r.model_type == "qwen3_next":
        interval = r.integer("full_attention_interval")
        return ["full" if (i + 1) % interval == 0 else "state" for i in range(count)]
    if r.model_type.startswith("llama4") or r.has("no_rope_layers") or r.has("attention_chunk_size"):
        return _llama4_order(r, count)
    if r.has("sliding_window_pattern") or r.model_type == "gemma3_text":
        every = r.integer("sliding_window_pattern")
        return ["full" if (i + 1) % every == 0 else "sliding" for i in range(count)]
    if r.model_type == "gemma2":
        r.notes.append("inferred: Gemma-2 alternation, layer 0 sliding, layer 1 full, and so on")
        return ["sliding" if i % 2 == 0 else "full" for i in range(count)]
    if r.once("window", _window) is None:
        return ["full"] * count
    if r.model_type in QWEN_WINDOW_RULES or r.data.get("use_sliding_window") is not None:
        return _qwen_window_order(r, count)
    return ["sliding"] * count  # Mistral, Mixtral, Phi-3: the window applies to every layer


# Which layers a Qwen-family config with use_sliding_window true slides, as transformers'
# config classes build layer_types: (rule text, predicate on layer i and max_window_layers).
QWEN_WINDOW_RULES = {
    "qwen2": ("layers i >= max_window_layers", lambda i, m: i >= m),
    "qwen3": ("layers i >= max_window_layers", lambda i, m: i >= m),
    "qwen2_moe": ("even layers i < max_window_layers", lambda i, m: i % 2 == 0 and i < m),
    "qwen3_moe": ("every layer", lambda i, m: True),
}


def _qwen_window_order(r: _Reader, count: int) -> list[str]:
    rule, slides = QWEN_WINDOW_RULES.get(r.model_type, QWEN_WINDOW_RULES["qwen2"])
    limit = r.integer("max_window_layers") if "max_window_layers" in rule else 0
    if limit is None:  # neither the field nor a class default: the window applies everywhere
        (rule, slides), limit = QWEN_WINDOW_RULES["qwen3_moe"], 0
    r.notes.append(
        f"inferred: use_sliding_window is true, so the window applies to {rule}"
        + (f" ({limit})" if "max_window_layers" in rule else "")
        + f", as transformers builds {r.model_type or 'qwen2'} layers"
    )
    return ["sliding" if slides(i, limit) else "full" for i in range(count)]


def _from_layer_types(r: _Reader, layer_types: object, count: int) -> list[str]:
    if not isinstance(layer_types, list) or len(layer_types) < count:
        r.fail(f"layer_types must list one type per layer ({count}), got {json.dumps(layer_types)[:80]}")
    order = []
    for i, name in enumerate(layer_types[:count]):
        token = LAYER_TYPES.get(name) if isinstance(name, str) else None
        if token is None:
            r.fail(
                f"layer_types[{i}] is {json.dumps(name)}, not a layer type kvcalc knows "
                f"({', '.join(sorted(LAYER_TYPES))})"
            )
        order.append(token)
    return order


def _llama4_order(r: _Reader, count: int) -> list[str]:
    """Llama-4 iRoPE: no_rope_layers[i] == 1 is a RoPE layer with chunked attention, 0 a NoPE
    global layer; without the list, every no_rope_layer_interval-th layer is global."""
    flags = r.data.get("no_rope_layers")
    if flags:  # transformers treats an empty list like a missing one
        if not isinstance(flags, list) or len(flags) < count or any(f not in (0, 1) for f in flags[:count]):
            r.fail(f"no_rope_layers must list 0 or 1 for each of the {count} layers")
        return ["chunked" if f else "full" for f in flags[:count]]
    interval = r.integer("no_rope_layer_interval")
    if interval is None:
        r.fail("a Llama-4-style config needs no_rope_layers or no_rope_layer_interval")
    return ["full" if (i + 1) % interval == 0 else "chunked" for i in range(count)]


def _window(r: _Reader) -> int | None:
    """The sliding window in tokens, or None when there is none or it is switched off.

    A missing sliding_window takes the class default where transformers applies one (noted);
    an explicit null means no window. The Qwen classes default use_sliding_window to false.
    """
    value = r.data.get("sliding_window")
    switch = r.data.get("use_sliding_window")
    if switch is False or (switch is None and r.model_type in QWEN_WINDOW_RULES):
        r.data.get("max_window_layers")  # read, and moot: it only says which layers a window covers
        if value:
            why = "is false" if switch is False else f"is not set (false by default for {r.model_type})"
            r.notes.append(f"ignored: sliding_window {value} because use_sliding_window {why}")
        return None
    if value is None and "sliding_window" in r.data:
        return None  # an explicit null: no window
    return r.integer("sliding_window") if value != 0 else None


def _kind(r: _Reader, token: str) -> tuple[str, dict]:
    """A layer token as (kind name, kind definition), downgrading windowless layers to full."""
    if token == "sliding":
        window = r.once("window", _window)
        if window is not None:
            return "sliding", {"type": "sliding", "window": window}
        _note_once(r, "inferred: sliding layers hold the whole context (no sliding_window applies)")
        return "full", {"type": "full"}
    if token == "chunked":
        chunk = r.once("chunk", _chunk)
        if chunk is not None:
            return "chunked", {"type": "chunked", "chunk": chunk}
        _note_once(r, "inferred: chunked layers hold the whole context (attention_chunk_size is null)")
        return "full", {"type": "full"}
    if token == "state":
        return r.once("state", _state)
    return "full", {"type": "full"}


def _chunk(r: _Reader) -> int | None:
    if "attention_chunk_size" in r.data and r.data["attention_chunk_size"] is None:
        return None  # an explicit null: no chunking
    return r.integer("attention_chunk_size")


def _note_once(r: _Reader, note: str) -> None:
    if note not in r.notes:
        r.notes.append(note)


def _state(r: _Reader) -> tuple[str, dict]:
    if any(r.data.get(k) is not None for k in DELTANET_FIELDS):
        missing = [k for k in DELTANET_FIELDS if r.data.get(k) is None]
        if missing:
            r.fail(f"linear-attention layers need {', '.join(missing)}")
        nk, dk, nv, dv, kernel = (
            r.integer(k, default=False) for k in (
                "linear_num_key_heads", "linear_key_head_dim", "linear_num_value_heads",
                "linear_value_head_dim", "linear_conv_kernel_dim",
            )
        )
        recurrent, conv_dim = nv * dk * dv, 2 * nk * dk + nv * dv
        return "linear", {
            "type": "none",
            "state_elements": recurrent + conv_dim * kernel,
            "description": (
                f"Gated DeltaNet layer: recurrent state {nv} value heads x {dk} x {dv} = {recurrent} "
                f"plus conv state (conv dim 2*{nk}*{dk} + {nv}*{dv} = {conv_dim}) x kernel {kernel} "
                f"= {conv_dim * kernel}"
            ),
        }
    if any(r.data.get(k) is not None for k in MAMBA_FIELDS) or r.model_type == "jamba":
        hidden = r.integer("hidden_size")
        expand, d_state, d_conv = (r.integer(k) for k in MAMBA_FIELDS)
        missing = [k for k, v in zip(("hidden_size", *MAMBA_FIELDS), (hidden, expand, d_state, d_conv)) if v is None]
        if missing:
            r.fail(f"Mamba layers need {', '.join(missing)}")
        inner = expand * hidden
        return "mamba", {
            "type": "none",
            "state_elements": inner * d_state + inner * d_conv,
            "description": (
                f"Mamba layer: SSM state d_inner x d_state = {inner} x {d_state} = {inner * d_state} "
                f"plus conv state d_inner x d_conv = {inner} x {d_conv} = {inner * d_conv}"
            ),
        }
    r.fail(
        "some layers have no KV cache (linear attention or Mamba), but the config has neither "
        f"Gated DeltaNet fields ({', '.join(DELTANET_FIELDS)}) nor Mamba fields ({', '.join(MAMBA_FIELDS)})"
    )


def _shown_json(value, limit: int = 40) -> str:
    try:
        text = json.dumps(value)
    except ValueError:  # an integer past the digit limit
        text = "a number too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_pattern(order: list[str]) -> list[str]:
    """The shortest repeating unit of ``order``, run-length encoded: ["sliding*5", "full"].

    The unit tiles over the layers with the last tile cut short, as ``expand_pattern`` reads
    it; when nothing shorter repeats, the unit is every layer. The shortest period comes from
    the prefix function (Knuth-Morris-Pratt), in time linear in the layers.
    """
    n = len(order)
    border = [0] * n  # border[i]: the longest proper prefix of order[: i + 1] that is also its suffix
    for i in range(1, n):
        k = border[i - 1]
        while k and order[i] != order[k]:
            k = border[k - 1]
        border[i] = k + (order[i] == order[k])
    period = n - border[-1] if n else 1
    pattern: list[str] = []
    for name in order[:period]:
        if pattern and pattern[-1].split("*")[0] == name:
            base, _, times = pattern[-1].partition("*")
            pattern[-1] = f"{base}*{int(times or 1) + 1}"
        else:
            pattern.append(name)
    return pattern


# --------------------------------------------------------------------------- the rest


def _dtype(r: _Reader) -> str:
    for source in (r.data, r.outer):
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if value is None:
                continue
            name = str(value).removeprefix("torch.")
            if name in TORCH_DTYPES:
                return TORCH_DTYPES[name]
            r.notes.append(
                f"inferred: dtype {DEFAULT_DTYPE} ({key} {json.dumps(value)} is not a KV cache type "
                "kvcalc knows; use --kv-dtype)"
            )
            return DEFAULT_DTYPE
    r.notes.append(
        f"inferred: dtype {DEFAULT_DTYPE} (no torch_dtype or dtype in config.json; such "
        "checkpoints load as float32)"
    )
    return DEFAULT_DTYPE


def _max_context(r: _Reader) -> int:
    found = r.integer("max_position_embeddings")
    if found is not None:
        return found
    r.notes.append(
        f"{UNKNOWN_CONTEXT_NOTE}: config.json has no length field (none of "
        f"{', '.join(ALIASES['max_position_embeddings'])}); vLLM assumes {UNKNOWN_CONTEXT} tokens, "
        "and so does kvcalc unless --context is given"
    )
    return UNKNOWN_CONTEXT


def _parameters(r: _Reader) -> str:
    stated = r.outer.get("num_parameters")
    if isinstance(stated, int) and not isinstance(stated, bool) and stated > 0:
        return f"{stated:,} (num_parameters in config.json)"
    return "unknown (imported from config.json)"


def _name(data: dict, origin: str) -> str:
    """From _name_or_path's last component, else the folder (a hub cache's repo name)."""
    raw = data.get("_name_or_path")
    if isinstance(raw, str) and raw.strip(" /\\"):
        candidate = raw.strip().rstrip("/\\").replace("\\", "/").split("/")[-1]
    else:
        path = Path(origin)
        folder = path.parent if path.suffix.lower() == ".json" else path
        candidate = folder.resolve().name if folder.name in ("", ".") else folder.name
        repo = folder.parent.parent.name
        if folder.parent.name == "snapshots" and repo.startswith("models--"):
            candidate = repo.rsplit("--", 1)[-1]
    name = re.sub(r"[^a-z0-9._-]+", "-", candidate.lower()).strip("-._")
    return name or "imported-model"


def _sources(data: dict, origin: str) -> list[str]:
    sources = [origin]
    raw = data.get("_name_or_path")
    if isinstance(raw, str) and raw.strip() and raw != origin:
        sources.append(raw)
    return sources


def _fail(origin: str, problem: str) -> NoReturn:
    raise PresetError(f"{origin}: {problem}; {HINT}")


def _json_type(value: object) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# --------------------------------------------------------------------------- writing a preset


def preset_yaml(spec: ModelSpec) -> str:
    """The spec as a preset YAML that ``presets.load_file`` reads back to the same spec."""
    data = spec.model_dump(mode="json", exclude_none=True)
    header = (
        "# Imported by 'kvcalc import' from a Hugging Face config.json.\n"
        "# Review it, above all the notes that say what was inferred, then keep it as a preset.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


__all__ = [
    "ALIASES",
    "CLASS_DEFAULTS",
    "compact_pattern",
    "load_config_path",
    "preset_yaml",
    "spec_from_config",
    "unread_keys",
]
