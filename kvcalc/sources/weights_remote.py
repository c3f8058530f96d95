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
    # The language model alone would be countable (DeepSeek-style MoE, sliding and full attention with their own
    # head counts), but the checkpoint holds two more parts whose shapes the config does not fix:
    # - the mimovl vision tower (vision_config): its attention width is the remote code's qk_channels, which the
    #   released vision_config leaves out (the code's default, 64 per head, not hidden_size / num_heads = 40), with
    #   per-head attention sinks (use_sink) in the windowed blocks and a patch merger into out_hidden_size;
    # - the audio encoder (audio_config): audio_channels codebook embeddings sized by speech_vocab_size, a string
    #   ("1280") the engines parse, group_size tokens folded into input_local_dim and projection_layers layers
    #   into the language model, whose exact composition only the remote code states.
    "mimo_v2": "MiMo-V2.5's checkpoint holds a mimovl vision tower (vision_config) whose attention width is the "
               "remote code's qk_channels, absent from the config, and an audio encoder (audio_config) whose "
               "codebook embeddings (audio_channels x speech_vocab_size, a string) and group projection only the "
               "remote code fixes, beside per-head attention sink biases; counting the language model alone would "
               "understate it",
}
