"""Read a Hugging Face config.json into a ModelSpec, offline: no hub, no torch, no terminal.

The fields decide, not the model_type: each concern (sizes, head_dim, KV heads, MLA, layer
pattern, dtype, context) has one small reader that looks for the field names real configs
use (``ALIASES``). A model_type only matters where transformers itself gives it a meaning
the fields do not carry: Falcon's KV-head rule, Gemma-2's alternation, the class defaults
of a few config classes (``CLASS_DEFAULTS``), and which families are encoders.

The parameter count's ``weights`` block comes from ``config_weights``, for the families whose
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
from pathlib import Path

import yaml
from pydantic import ValidationError

from kvcalc.errors import PresetError
from kvcalc.estimate import UNKNOWN_CONTEXT_NOTE
from kvcalc.sources.config_attention import model_attention
from kvcalc.sources.config_fields import (
    ALIASES,
    HINT,
    Reader,
    fail_config,
    json_type,
    make_reader,
    require,
    shown_json,
    unread_notes,
)
from kvcalc.sources.config_layers import layer_count, layers_block
from kvcalc.sources.config_ssm import is_pure_ssm, ssm_count, ssm_layers
from kvcalc.sources.config_weights import weights_block
from kvcalc.sources.model_types import DECODER_CAPABLE, ENCODER_TYPES
from kvcalc.spec import ModelSpec

UNKNOWN_CONTEXT = 2048
TORCH_DTYPES = {
    "float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
}
# A config without torch_dtype/dtype predates them (GPT-2, BERT): such checkpoints are fp32,
# and transformers loads them in fp32 unless told otherwise.
DEFAULT_DTYPE = "fp32"


# --------------------------------------------------------------------------- reading a file


def load_config_path(path: Path) -> ModelSpec:
    """A config.json, or a folder holding one, as a ModelSpec."""
    path = Path(path)
    try:
        file = path / "config.json" if path.is_dir() else path
        if path.is_dir() and not file.is_file():
            raise PresetError(f"{path}: no config.json in this folder")
        if not file.is_file():
            from kvcalc.files import why_not_a_file

            raise PresetError(f"{file}: {why_not_a_file(file)}")
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
        fail_config(origin, f"a config.json holds one JSON object, got a {json_type(data)}")
    reader = make_reader(data, origin)
    if reader.is_encoder_decoder():
        reader.fail(
            f"model_type {reader.model_type!r} is an encoder-decoder model; kvcalc reads "
            "decoder-only and encoder-only configs"
        )
    if is_pure_ssm(reader):  # Mamba, Falcon-Mamba, Mamba2: no attention, a constant state per layer
        count = ssm_count(reader)
        attention, encoder = {"kind": "none"}, False
        layers = ssm_layers(reader, count)
    else:
        require(reader)
        count = layer_count(reader)
        attention = model_attention(reader)
        encoder = _reads_as_encoder(reader)
        if encoder:
            reader.notes.append(
                f"encoder-only (model_type {reader.model_type}): it keeps no KV cache between steps"
            )
            layers = {"count": count}
        else:
            layers = layers_block(reader, count)
            if reader.model_type in NO_CACHE_DECODERS:
                reader.notes.append(NO_CACHE_DECODERS[reader.model_type])
    hidden = reader.integer("hidden_size")
    kinds = {name: kind.get("type") for name, kind in (layers.get("kinds") or {"full": {"type": "full"}}).items()}
    weights = weights_block(reader.data, reader.outer, reader.model_type, attention, count, hidden, reader.notes,
                            kinds=kinds)
    spec = {
        "name": _name(data, origin),
        "source": _sources(data, origin),
        "parameters": _parameters(reader),
        "max_context": _max_context(reader),
        "dtype": _dtype(reader),
        "architecture": "encoder" if encoder else "decoder",
        "model_type": str(reader.model_type)[:64] if reader.model_type else None,
        "hidden_size": hidden,
        "attention": attention,
        "layers": layers,
        "weights": weights,
        "notes": reader.notes + unread_notes(reader),
    }
    try:
        return ModelSpec.model_validate(spec)
    except ValidationError as exc:
        from kvcalc.sources.validation import describe_validation_error

        reader.fail(describe_validation_error(exc, spec))


# --------------------------------------------------------------------------- the rest

# Causal decoders whose transformers class keeps no KV cache and that no engine kvcalc models
# serves: kvcalc counts the K and V a caching implementation would hold, and says so.
NO_CACHE_DECODERS = {
    # modeling_openai.py 98-103: Attention.forward projects K and V from the whole input, and
    # OpenAIGPTModel.forward (317-328) takes no cache; vLLM and SGLang have no GPT-1 model
    "openai-gpt": (
        "no cache kept: transformers' OpenAIGPTLMHeadModel (GPT-1) keeps no KV cache, it recomputes attention over "
        "the whole context at every step, and neither vLLM nor SGLang serves GPT-1; kvcalc counts the K and V of "
        "every layer that an implementation caching its causal attention would hold (as for GPT-2)"
    ),
}


def _reads_as_encoder(r: Reader) -> bool:
    """Encoder-only types, and the BERT family unless is_decoder is true: with is_decoder false (every class
    default) their attention is bidirectional and they build no cache (modeling_bert.py 361, 643;
    modeling_bert_generation.py 302, 514-517); with it true, causal self-attention caches K and V in every layer.
    Gemma-3 and Gemma-4 configs with bidirectional attention (EmbeddingGemma) are encoders too."""
    if r.model_type in DECODER_CAPABLE:
        decoder = r.data.get("is_decoder", r.outer.get("is_decoder", False))
        if not isinstance(decoder, bool):  # transformers' configs take a bool only
            r.fail(f"is_decoder must be true or false, got {shown_json(decoder)}")
        if not decoder:
            return True
        if r.data.get("add_cross_attention", r.outer.get("add_cross_attention")) is True:
            r.fail("is_decoder with add_cross_attention true: its cross-attention caches the encoder's states, "
                   "which kvcalc does not count")
        r.notes.append(f"inferred: is_decoder true: {r.model_type}'s causal self-attention caches K and V in every "
                       "layer (a decoder, not an encoder)")
        return False
    if r.model_type in ENCODER_TYPES:
        return True
    return _bidirectional(r)


def _bidirectional(r: Reader) -> bool:
    """Gemma-3 with use_bidirectional_attention true, Gemma-4 with "all" (EmbeddingGemma and the like): every
    layer attends both ways (configuration_gemma3.py 101-102, configuration_gemma4.py 184-186, which also halve
    the window), an embedding model that keeps no cache between steps."""
    value = r.data.get("use_bidirectional_attention")
    if value is None:
        return False
    if r.model_type in ("gemma3", "gemma3_text") and value is True or (
            r.model_type.startswith("gemma4") and value == "all"):
        r.notes.append(f"inferred: use_bidirectional_attention {shown_json(value)}: every layer attends both ways "
                       "(an embedding model), read as an encoder")
        return True
    return False


def _dtype(r: Reader) -> str:
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


def _max_context(r: Reader) -> int:
    found = r.integer("max_position_embeddings")
    if found is not None:
        return found
    r.notes.append(
        f"{UNKNOWN_CONTEXT_NOTE}: config.json has no length field (none of "
        f"{', '.join(ALIASES['max_position_embeddings'])}); vLLM assumes {UNKNOWN_CONTEXT} tokens, "
        "and so does kvcalc unless --context is given"
    )
    return UNKNOWN_CONTEXT


def _parameters(r: Reader) -> str:
    stated = r.outer.get("num_parameters")
    if isinstance(stated, int) and not isinstance(stated, bool) and stated > 0:
        return f"{stated:,} (num_parameters in config.json)"
    return "unknown (imported from config.json)"


def _name(data: dict, origin: str) -> str:
    """From _name_or_path's last component, else the folder (a hub cache's repo name)."""
    raw = data.get("_name_or_path")
    if isinstance(raw, str) and raw.strip(" ./\\"):
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


# --------------------------------------------------------------------------- writing a preset


def preset_yaml(spec: ModelSpec) -> str:
    """The spec as a preset YAML that ``presets.load_file`` reads back to the same spec."""
    data = spec.model_dump(mode="json", exclude_none=True)
    header = (
        "# Imported by 'kvcalc import' from a Hugging Face config.json.\n"
        "# Review it, above all the notes that say what was inferred, then keep it as a preset.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


__all__ = ["load_config_path", "preset_yaml", "spec_from_config"]
