"""Weights of remote-code families transformers does not ship (their modelling code read from the model
repository or from the engines).

See weights_parts for the building blocks, and weights_llama_like's docstring for what a family module states
(DEFAULTS, DECODERS, BUILDERS, NOT_DERIVED); config_weights merges them.
"""

from __future__ import annotations

from kvcalc.sources.weights_parts import Decoder

DEFAULTS: dict[str, dict[str, object]] = {}
DECODERS: dict[str, Decoder] = {}
BUILDERS: dict = {}
NOT_DERIVED: dict[str, str] = {
    "mimo_v2": "MiMo-V2.5's checkpoint holds a vision encoder (vision_config, the remote code's mimovl tower) and "
               "an audio encoder (audio_config) whose modeling code is not in transformers and whose shapes the "
               "config alone does not fix, beside per-head attention sink biases; counting the language model "
               "alone would understate it",
}
