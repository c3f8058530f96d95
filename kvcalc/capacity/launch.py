"""Ready-to-run launch commands for vLLM, SGLang and TensorRT-LLM from a ``fit`` result.

Flag names are each engine's own (read from its argument parser; docs/fit.md cites the
files). Numbers are plain integers, since the engines read suffixes differently (vLLM's
``M`` is 2**20, SGLang's 10**6). A setting an engine has no flag for is left out with a
comment, never invented. What kvcalc assumed is written beside each flag.
"""

from __future__ import annotations

from kvcalc.capacity import engines
from kvcalc.capacity.fit import FitResult
from kvcalc.capacity.layers import serving_dtype
from kvcalc.spec import ModelSpec


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def model_reference(spec: ModelSpec, given: str) -> tuple[str, str | None]:
    """(what to pass as the model, shell-quoted; a comment or None): a config.json's folder as a
    path that cannot read as an option (``./`` kept or added), a Hub id only when it is one
    (``org/name`` in the Hub's spelling), else the Hub id of the spec's first Hugging Face
    source, else a placeholder. Nothing from a path, preset or config becomes an engine flag."""
    import shlex
    from pathlib import Path

    from kvcalc.sources.hub import is_hub_id

    hub = "https://huggingface.co/"
    path = Path(given)
    if path.name == "config.json" or path.is_dir():
        folder = str(path.parent if path.name == "config.json" else path)
        if not Path(folder).is_absolute() and not folder.startswith(("./", "../")):
            folder = "./" + folder  # Path drops the ./ that keeps '-name' a path
        return shlex.quote(folder), None  # engines take the model's folder
    if "/" in given and not path.exists():
        if is_hub_id(given) and not given.startswith("-"):
            return shlex.quote(given), None
        return "MODEL", f"replace MODEL with the model's Hub id or local path ({given!r} is not a Hub id)"
    for source in spec.source:
        if source.startswith(hub):
            repo = source[len(hub):].split("/blob/")[0].split(" ")[0]
            if is_hub_id(repo) and not repo.startswith("-"):
                return shlex.quote(repo), None
    return "MODEL", "replace MODEL with the model's Hub id or local path"


def check_kv_dtype(engine: str, kv_dtype: str) -> None:
    """A KV dtype the engine cannot cache in is a usage error: a command without it would run
    at another size than the one counted."""
    names = engines.get(engine).kv_cache_dtypes
    if kv_dtype not in names and kv_dtype not in ("bf16", "fp16"):
        raise ValueError(f"{engine} has no {kv_dtype} KV cache flag (it takes {', '.join(names)}, or auto: the "
                         "model's dtype as served, bf16 or fp16 for a float32 checkpoint); kvcalc's command does not "
                         "change the model's --dtype, so choose one of those")


def _kv_dtype(engine: str, r: FitResult, spec: ModelSpec) -> tuple[str | None, str]:
    if r.kv_dtype == serving_dtype(spec.dtype):
        return "auto", f"the model's {r.kv_dtype}"
    return engines.get(engine).kv_cache_dtypes.get(r.kv_dtype), r.kv_dtype


def launch(r: FitResult, spec: ModelSpec, given: str, engine: str, moved: str | None = None) -> str:
    """The command (and, for TensorRT-LLM, its YAML file) as shell text; ``moved`` says why the
    shape is not the one asked for."""
    model, model_note = model_reference(spec, given)
    # per rank: data-parallel ranks and replicas share the requests (the engine's flag may take a total)
    ranks = r.replicas * r.dp
    requests = -(-r.concurrency // ranks) if r.concurrency is not None else r.max_concurrency
    util = r.required_gpu_util if r.concurrency is not None else r.gpu_util
    unit = "replica" if r.dp == 1 else "DP rank"
    each = f" ({requests} per {unit})" if ranks > 1 and r.concurrency is not None else (
        f" per {unit}" if ranks > 1 else "")
    asked = r.concurrency if r.concurrency is not None else requests
    layout = "".join(f", {k} {v}" for k, v in (("DP", r.dp), ("EP", r.ep), ("DCP", r.dcp)) if v > 1)
    head = [f"# kvcalc fit: {r.model}, {_count(r.gpus, 'GPU')}, TP {r.tp} x PP {r.pp}{layout}, "
            f"{_count(asked, 'request')}"
            f"{each} of {r.context} tokens, {engine} rules"]
    if moved:
        head.append(f"# {moved}")
    if model_note:
        head.append(f"# {model_note}")
    if not requests:
        head.append("# WARNING: not one request fits on this shape or any of up to 512 GPUs")
    if util is None or util > r.gpu_util:
        head.append("# WARNING: no memory fraction up to --gpu-util holds these requests on this shape, and no "
                    "shape of up to 512 GPUs does; the fraction below is --gpu-util")
        util = r.gpu_util
    kv_value, kv_what = _kv_dtype(engine, r, spec)
    launched = requests if r.concurrency is not None else None  # per rank as asked (-n), else the engine's
    lines = engines.get(engine, r.engine_version).launch_lines(r, model, launched, util, kv_value, kv_what)
    return "\n".join(head + lines) + "\n"
