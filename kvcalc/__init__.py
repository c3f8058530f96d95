"""kvcalc: exact KV-cache sizes for transformer models, and the evidence for them.

    >>> import kvcalc
    >>> spec = kvcalc.load_preset("llama-3-70b")
    >>> kvcalc.estimate(spec, context=8192).total_bytes
    2684354560
"""

__version__ = "0.1.0"

from kvcalc.estimate import Estimate, GroupEstimate, estimate  # noqa: E402
from kvcalc.spec import ModelSpec  # noqa: E402


def load_preset(name_or_path: str, preset_dirs=(), revision: str | None = None) -> ModelSpec:
    """A bundled or user preset by name (case-insensitive), a preset/config file by path, or
    a Hugging Face Hub id (``org/name``, at ``revision``; only config.json is fetched)."""
    from kvcalc.sources.presets import preset_dirs as _dirs
    from kvcalc.sources.resolve import resolve

    return resolve(name_or_path, _dirs(tuple(preset_dirs)), revision)


def list_presets(preset_dirs=()) -> list[str]:
    """The names of every preset reachable (bundled plus ``preset_dirs``)."""
    from kvcalc.sources.presets import available
    from kvcalc.sources.presets import preset_dirs as _dirs

    return list(available(_dirs(tuple(preset_dirs))))


__all__ = ["Estimate", "GroupEstimate", "ModelSpec", "__version__", "estimate", "list_presets", "load_preset"]
