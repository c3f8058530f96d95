"""Weights of Gemma-4: the text models and the multimodal checkpoints with their vision and audio towers.

See weights_parts for the building blocks, and weights_llama_like's docstring for what a family module states
(DEFAULTS, DECODERS, BUILDERS, NOT_DERIVED); config_weights merges them.
"""

from __future__ import annotations

from kvcalc.sources.weights_parts import Decoder

DEFAULTS: dict[str, dict[str, object]] = {}
DECODERS: dict[str, Decoder] = {}
BUILDERS: dict = {}
NOT_DERIVED: dict[str, str] = {
    # Gemma-4 (modeling_gemma4.py): besides the decoder kvcalc counts for Gemma-3
    "gemma4_text": "Gemma-4's per-layer input embeddings (embed_tokens_per_layer, per_layer_model_projection, each "
                   "layer's per_layer_input_gate and per_layer_projection), its layer_scalar weights and full "
                   "layers whose heads differ in size from the sliding ones are not counted yet",
    "gemma4_unified_text": "Gemma-4's layer_scalar weights and full-attention layers whose heads differ in size from "
                           "the sliding ones are not counted yet",
    "gemma4": "Gemma-4's per-layer input embeddings, layer_scalar weights, its full layers' own head sizes, and the "
              "vision and audio towers (vision_config, audio_config) are not counted yet",
    "gemma4_unified": "Gemma-4's layer_scalar weights, its full layers' own head sizes, and the vision and audio "
                      "towers (vision_config, audio_config) are not counted yet",
}
