"""Engine start-up logs: read what vLLM and SGLang printed while sizing their KV cache."""

from kvcalc.logs.parse import Fact, LogError, ParsedLog, parse_log

__all__ = ["Fact", "LogError", "ParsedLog", "parse_log"]
