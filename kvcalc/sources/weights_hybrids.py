"""Weights builders for more families (see weights_parts for the building blocks).

Each family module states, for its own model types, transformers' class defaults of the fields
it reads (DEFAULTS), pre-norm decoder rows (DECODERS), builders for the rest (BUILDERS), and why a
type it reads has no count (NOT_DERIVED); config_weights merges them, and a type may appear in one
module only.
"""

from __future__ import annotations

from kvcalc.sources.weights_parts import Decoder

DEFAULTS: dict[str, dict[str, object]] = {}
DECODERS: dict[str, Decoder] = {}
BUILDERS: dict = {}
NOT_DERIVED: dict[str, str] = {}
