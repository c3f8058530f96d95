"""Serving engines' rules, one module each; ``get`` builds one for a name and version."""

from __future__ import annotations

ENGINE_NAMES = ("vllm", "sglang", "trtllm")


def get(name: str, version: str | None = None):
    """The engine ``name`` at ``version`` (None: the newest release kvcalc follows); an unknown
    version raises ValueError listing the known ones."""
    if name == "vllm":
        from kvcalc.capacity.engines.vllm import VLLM

        return VLLM(version)
    if name == "sglang":
        from kvcalc.capacity.engines.sglang import SGLang

        return SGLang(version)
    if name == "trtllm":
        from kvcalc.capacity.engines.trtllm import TensorRTLLM

        return TensorRTLLM(version)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")


def versions(name: str) -> tuple[str, ...]:
    if name == "vllm":
        from kvcalc.capacity.engines.vllm import RELEASES

        return tuple(r.version for r in RELEASES)
    if name == "sglang":
        from kvcalc.capacity.engines.sglang import VERSIONS

        return VERSIONS
    from kvcalc.capacity.engines.trtllm import VERSIONS

    return VERSIONS
