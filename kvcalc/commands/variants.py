"""kvcalc variants: one model under each attention design."""


from typing import Annotated

import typer

from kvcalc.commands.common import bandwidth_of, model_of, out, print_inferences, print_json, warn
from kvcalc.commands.options import (
    BandwidthOpt,
    BatchOpt,
    ContextOpt,
    GPUCatalogOpt,
    GPUOpt,
    JsonOpt,
    KVDtypeOpt,
    ModelArg,
    PresetDirOpt,
    RevisionOpt,
    SpeedOpt,
    TPOpt,
)
from kvcalc.commands.parsers import items, one_context, whole
from kvcalc.estimate import spec_warnings


def _group_count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text.strip()!r} is not a KV-head count (try 2,4,8)")
    return int(text)


def variants_cmd(
    model: ModelArg,
    context: ContextOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups", metavar="LIST", help="GQA KV-head counts to show, e.g. 2,4,8 (default: all divisors)."
        ),
    ] = None,
    mla_rank: Annotated[
        int | None,
        typer.Option("--mla-rank", parser=whole(1, 2**24), metavar="INTEGER",
                     help="kv_lora_rank of the MLA rows (default 4 x head_dim).")
    ] = None,
    rope_dim: Annotated[
        int | None,
        typer.Option("--rope-dim", parser=whole(1, 2**24), metavar="INTEGER",
                     help="Rope part of the MLA rows (default head_dim / 2).")
    ] = None,
    json_out: JsonOpt = False,
    speed: SpeedOpt = False,
    gpu: GPUOpt = None,
    tp: TPOpt = None,
    bandwidth: BandwidthOpt = None,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """MODEL under each attention design: MHA, GQA-n, MQA, MLA latent and expanded."""
    from kvcalc.render import variants_table
    from kvcalc.variants import check_groups, compare_variants

    spec = model_of(model, preset_dir, revision)
    warn(spec_warnings(spec, context is not None))
    if not speed and (gpu is not None or tp is not None or bandwidth is not None):
        raise typer.BadParameter("--gpu, --tp and --bandwidth are for the decode ceiling: add --speed",
                                 param_hint="--speed")
    context, tp = one_context(context), tp or 1
    group_list = None
    if groups is not None:
        try:
            group_list = [_group_count(g) for g in items(groups, "--groups", "2,4,8")]
            check_groups(spec, group_list)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--groups") from None
    rows = compare_variants(spec, context, batch, kv_dtype, group_list, mla_rank, rope_dim)
    if spec.is_encoder and not json_out:
        out.print(f"{spec.name} is an encoder: it keeps no KV cache, so every variant is 0 B.", markup=False)
        return
    speeds = None
    if speed:
        from kvcalc.capacity.speed import variant_speeds

        rate = bandwidth_of(gpu, gpu_catalog, bandwidth)
        speeds = variant_speeds(spec, [row.variant for row in rows], rate, context, batch, tp, kv_dtype,
                                mla_rank, rope_dim)
    if json_out:
        objects = [{"model": spec.name, **row.to_dict()} for row in rows]
        for obj, sp in zip(objects, speeds or []):
            obj["speed"] = {**sp.to_dict(), "speedup_vs_mha": sp.tokens_per_s / speeds[0].tokens_per_s}
        print_json(objects)
        return
    r = rows[0].result
    tokens = f"{r.context:,} token" + ("s" if r.context != 1 else "")
    title = f"{spec.name} · {tokens} · batch {r.batch} · {r.kv_dtype} · attention variants"
    out.print(variants_table(rows, spec, title, speeds))
    if speeds:
        from kvcalc.render_fit import variant_speed_caption

        out.print(variant_speed_caption(speeds), markup=False, style="dim", soft_wrap=True)
    print_inferences([spec])
