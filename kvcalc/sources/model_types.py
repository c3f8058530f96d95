"""Which config.json model types kvcalc has checked, and which it refuses by name.

A type in ``CHECKED_TYPES`` is read and its numbers are checked by tests against real
configs. A type in ``REFUSED`` is one whose cache kvcalc cannot describe right today: its
config is refused with the reason, never estimated. Any other type is read by field names
alone, and a note says it is untested.
"""

from __future__ import annotations

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

# model_type -> why kvcalc refuses it (the error names the type and says this).
REFUSED: dict[str, str] = {}


def refusal(model_type: str) -> str | None:
    """Why a model type is refused, or None when kvcalc reads it."""
    return REFUSED.get(model_type)
