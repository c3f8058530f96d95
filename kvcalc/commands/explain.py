"""kvcalc explain: an engine's start-up log read line by line against kvcalc's rules."""


from typing import Annotated

import typer

from kvcalc.commands.common import catalogs_of, out, preset_dirs_of, print_json
from kvcalc.commands.options import GPUCatalogOpt, GPUOpt, JsonOpt, PresetDirOpt, TPOpt
from kvcalc.errors import KvcalcError
from kvcalc.terminal import clean

KV_FACTS = ("available_kv_gib", "kv_cache_tokens", "max_concurrency", "max_total_num_tokens", "kv_alloc_tokens",
            "k_size_gib", "kv_size_gib", "weights_gib")


def explain_cmd(
    log: Annotated[str, typer.Argument(metavar="LOG", help="A vLLM or SGLang start-up log file, or - for stdin.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="MODEL",
                     help="The model, when its name in the log matches no preset (preset, path or Hub id)."),
    ] = None,
    gpu: GPUOpt = None,
    tp: TPOpt = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """Read an engine's start-up log: each memory figure, checked against kvcalc's rules.

    --gpu and --tp are for a log that does not name its GPU or TP.
    """
    import sys

    from kvcalc.logs.explain import explain
    from kvcalc.logs.parse import parse_log

    parsed = parse_log(sys.stdin.buffer if log == "-" else log)
    where = "stdin" if log == "-" else log
    if parsed.engine is None:
        raise KvcalcError(f"{where}: no vLLM or SGLang start-up lines in {parsed.lines_read:,} lines read"
                          + (f" ({parsed.notes[0]})" if parsed.notes else ""))
    found = [name for name in KV_FACTS if parsed.facts.get(name)]
    if not found:
        settings = [name for name in ("version", "model", "tp", "max_model_len", "gpu_memory_utilization",
                                      "mem_fraction_static") if parsed.facts.get(name)]
        raise KvcalcError(f"{where}: a {parsed.engine} log ({parsed.lines_read:,} lines) with no memory or KV-cache "
                          f"lines; found {', '.join(settings) or 'no settings'}; missing the lines a start-up prints "
                          "once the KV cache is sized (cut before them?)")
    if tp is not None:
        from kvcalc.logs.parse import Fact

        logged = parsed.first("tp")
        if logged is not None and logged.value != tp:
            raise typer.BadParameter(f"the log says TP {logged.value} (line {logged.line})", param_hint="--tp")
        parsed.facts["tp"] = [Fact("tp", tp, 0, "--tp (given on the command line)", None)]
    spec, label = _log_model(parsed, model, preset_dirs_of(preset_dir))
    found_gpu = _log_gpu(parsed, gpu, gpu_catalog)
    result = explain(parsed, spec, found_gpu, label)
    if json_out:
        print_json({**result.to_dict(), "log": parsed.to_dict()})
        return
    from kvcalc.render_explain import explain_lines

    for line in explain_lines(result, parsed):
        out.print(line, markup=False, soft_wrap=True)


def _log_model(parsed, given: str | None, dirs):
    """(spec, label): --model as any MODEL; else the bundled preset the log's model name names.
    Nothing the log names is read or fetched."""
    from kvcalc.logs.explain import preset_for
    from kvcalc.sources.presets import available
    from kvcalc.sources.resolve import resolve

    if given is not None:
        return resolve(given, dirs), given
    logged = parsed.first("model")
    name = preset_for(str(logged.value) if logged else None, available(dirs))
    if name is None:
        return None, None
    return resolve(name, dirs), f"{name} (preset matched by name to {clean(str(logged.value))!r})"


def _log_gpu(parsed, given: str | None, catalogs):
    from kvcalc.capacity.gpus import UnknownGPUError, find_gpu

    if given is not None:
        return find_gpu(given, catalogs_of(catalogs))
    logged = parsed.first("gpu_name")
    if logged is None:
        return None
    try:
        return find_gpu(str(logged.value).replace("NVIDIA_", "NVIDIA "), catalogs_of(catalogs))
    except UnknownGPUError:
        return None
