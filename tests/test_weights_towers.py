"""Weights of the parts round one refused: narrow embeddings with a projection (ELECTRA-small, RemBERT,
RoFormer), Moshi's whole checkpoint, and the towers of Phi-4-multimodal, GOT-OCR2 and
MOSS-Transcribe-Diarize (kvcalc/sources/weights_encoders.py, weights_hybrids.py).

1. Against transformers itself, where installed: the model benchmarks/model_types.py ``meta_parameters``
   builds on the meta device (``AutoModel`` for an encoder, the image-text class where the config has a
   vision tower, else the causal-LM class; Moshi: MoshiForConditionalGeneration, the whole checkpoint), its
   parameters and persistent buffers summed, for each type's class defaults and variants.
2. By hand: per builder shape, the expected total written out as arithmetic from the config's fields.
"""

from __future__ import annotations

import warnings

import pytest

from kvcalc.capacity.params import parameter_count
from kvcalc.sources.config_json import spec_from_config
from kvcalc.sources.config_weights import SKIP


def spec_of(data: dict):
    return spec_from_config(data, "test/config.json")


def total(data: dict) -> int:
    spec = spec_of(data)
    count = parameter_count(spec)
    assert count is not None, [n for n in spec.notes if n.startswith(SKIP)]
    return count.total


def skip_note(data: dict) -> str:
    spec = spec_of(data)
    notes = [n for n in spec.notes if n.startswith(SKIP)]
    assert spec.weights is None and len(notes) == 1, spec.notes
    return notes[0]


# ---------------------------------------------------------------- 2. by hand


def bert_layer(h: int, inner: int) -> int:
    """One BERT-shaped post-norm layer: q/k/v/o with biases, a plain MLP with biases, two LayerNorms."""
    return 4 * (h * h + h) + 2 * h * inner + inner + h + 2 * 2 * h


def test_electra_small_narrow_embeddings():
    # ElectraConfig's defaults are ELECTRA-small's: embedding_size 128 below hidden_size 256
    data = {"model_type": "electra", "vocab_size": 30522, "embedding_size": 128, "hidden_size": 256,
            "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 1024,
            "max_position_embeddings": 512, "type_vocab_size": 2}
    e, h = 128, 256
    # words, positions, token types and their LayerNorm e wide; embeddings_project e -> h with a bias; no pooler
    expected = (30522 + 512 + 2) * e + 2 * e + e * h + h + 12 * bert_layer(h, 1024)
    assert total(data) == expected
    assert round(expected / 1e6, 1) == 13.5  # ELECTRA-small's 14M in the paper (Table 1), 13.5M as built
    spec = spec_of(data)
    assert parameter_count(spec).embedding == (30522 + 512 + 2) * e + 2 * e
    # equal widths: no projection
    assert total(data | {"embedding_size": 256}) == (30522 + 512 + 2) * h + 2 * h + 12 * bert_layer(h, 1024)


def test_rembert_input_embeddings_and_mapping():
    # google/rembert's shape (RemBertConfig's defaults)
    data = {"model_type": "rembert", "vocab_size": 250300, "hidden_size": 1152, "input_embedding_size": 256,
            "output_embedding_size": 1664, "num_hidden_layers": 32, "num_attention_heads": 18,
            "intermediate_size": 4608, "max_position_embeddings": 512, "type_vocab_size": 2}
    e, h = 256, 1152
    # embeddings and LayerNorm e wide, embedding_hidden_mapping_in e -> h with a bias, 32 layers, the pooler;
    # output_embedding_size sizes only the LM head RemBertModel has not
    expected = (250300 + 512 + 2) * e + 2 * e + e * h + h + 32 * bert_layer(h, 4608) + h * h + h
    assert total(data) == expected
    assert total(data | {"output_embedding_size": 2048}) == expected
    # the mapping is built even when the widths agree
    assert total(data | {"input_embedding_size": h}) == (
        (250300 + 512 + 2) * h + 2 * h + h * h + h + 32 * bert_layer(h, 4608) + h * h + h)


def test_roformer_narrow_embeddings():
    data = {"model_type": "roformer", "vocab_size": 50000, "embedding_size": 384, "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "max_position_embeddings": 1536, "type_vocab_size": 2}
    e, h = 384, 768
    # words and token types + LayerNorm e wide, embeddings_project, the 1536 x 64 sinusoidal parameter
    expected = (50000 + 2) * e + 2 * e + e * h + h + 1536 * 64 + 12 * bert_layer(h, 3072)
    assert total(data) == expected
