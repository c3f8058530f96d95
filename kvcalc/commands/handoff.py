"""kvcalc handoff: one request's KV moved from prefill to decode."""


from typing import Annotated

import typer

from kvcalc.commands.common import catalogs_of, model_of, out, print_json
from kvcalc.commands.options import (
    BlockSizeOpt,
    ContextOpt,
    EngineOpt,
    GPUCatalogOpt,
    GPUOpt,
    JsonOpt,
    KVDtypeOpt,
    ModelArg,
    PresetDirOpt,
    RevisionOpt,
)
from kvcalc.commands.parsers import link_rate, one_context, whole
from kvcalc.errors import KvcalcError


def handoff_cmd(
    model: ModelArg,
    context: ContextOpt = None,
    prefill_tp: Annotated[
        int, typer.Option("--prefill-tp", parser=whole(1, 4096), metavar="INTEGER", help="TP of the prefill side.")
    ] = 1,
    decode_tp: Annotated[
        int, typer.Option("--decode-tp", parser=whole(1, 4096), metavar="INTEGER", help="TP of the decode side.")
    ] = 1,
    link: Annotated[
        int, typer.Option("--link", parser=link_rate, metavar="RATE",
                          help="Link bandwidth, bits (400Gb/s, the default) or bytes (50GB/s) per second.")
    ] = "400Gb/s",
    kv_dtype: KVDtypeOpt = None,
    engine: EngineOpt = None,
    block_size: BlockSizeOpt = None,
    gpu: GPUOpt = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """Bytes and time to move one request's KV from prefill to decode (disaggregated)."""
    from kvcalc.capacity import engines
    from kvcalc.capacity.deployment import FitUsageError
    from kvcalc.capacity.handoff import handoff

    spec = model_of(model, preset_dir, revision)
    if spec.is_encoder:
        raise KvcalcError(f"{spec.name} is an encoder: it keeps no KV cache to hand off")
    try:
        h = handoff(spec, engines.get(engine or "vllm"), one_context(context, 8192), prefill_tp, decode_tp, kv_dtype,
                    link, block_size)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--prefill-tp/--decode-tp") from None
    held = None
    if gpu is not None:
        from kvcalc.capacity.deployment import deployment
        from kvcalc.capacity.fit import fit
        from kvcalc.capacity.gpus import find_gpu

        found = find_gpu(gpu, catalogs_of(gpu_catalog))
        d = deployment(engine or "vllm", None, gpu=found, tp=decode_tp, kv_dtype=kv_dtype, block_size=block_size)
        held = fit(spec, d, h.context, search_min=False).max_concurrency
    if json_out:
        print_json({**h.to_dict(), "decode_gpu": gpu, "decode_requests": held})
        return
    from kvcalc.units import format_bytes

    gbit = h.link_bytes_per_s * 8 / 10**9
    lines = [
        f"{h.model}: one {h.context:,}-token prompt from prefill TP {h.prefill_tp} to decode TP {h.decode_tp}, "
        f"{h.kv_dtype} KV in pages of {h.block_size} ({h.engine} layout)",
        f"Each decode GPU receives {format_bytes(h.bytes_per_decode_gpu)} ({h.bytes_per_decode_gpu:,} B); "
        f"{format_bytes(h.bytes_moved)} ({h.bytes_moved:,} B) move in all, over {h.streams} rank-to-rank stream(s).",
        f"At {gbit:g} Gb/s: {h.seconds_one_link * 1000:.1f} ms over one link, "
        f"{h.seconds_parallel * 1000:.1f} ms with each decode GPU on its own link.",
    ]
    if held is not None:
        lines.append(f"The decode group (TP {h.decode_tp} on {gpu}) holds {held:,} requests of {h.context:,} tokens "
                     f"(fit's rules and reserve); arriving one at a time over one link, it fills in "
                     f"{held * h.seconds_one_link:.2f} s.")
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
    for note in h.notes:
        out.print(f"note: {note}", markup=False, style="dim", soft_wrap=True)
