"""kvcalc estimate: the exact KV cache of one model, or of a what-if variant of it."""


from typing import Annotated

import typer

from kvcalc.commands.common import check_strict, layout_for, model_of, no_windows_spec, out, print_json, warn
from kvcalc.commands.options import (
    BatchOpt,
    ContextOpt,
    JsonOpt,
    KVDtypeOpt,
    MLALayoutOpt,
    ModelArg,
    NoWindowsOpt,
    PresetDirOpt,
    RevisionOpt,
    StrictOpt,
)
from kvcalc.commands.parsers import one_context
from kvcalc.estimate import estimate
from kvcalc.terminal import clean


def estimate_cmd(
    model: ModelArg,
    context: ContextOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = None,
    as_variant: Annotated[
        str | None,
        typer.Option(
            "--as", metavar="VARIANT",
            help="What if: estimate the model as mha, gqa-N, mqa, mla-latent or mla-expanded.",
        ),
    ] = None,
    no_windows: NoWindowsOpt = False,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
) -> None:
    """The exact KV cache of MODEL at a context and batch, per layer group."""
    from kvcalc.render import attention_label, estimate_summary, estimate_table

    spec = model_of(model, preset_dir, revision)
    check_strict([spec], strict)
    if as_variant is not None:
        spec, layout = _as_variant(spec, as_variant)
        if mla_layout is not None and as_variant.lower().startswith("mla-") and mla_layout != layout:
            raise typer.BadParameter(f"--as {as_variant} already says the MLA layout; it conflicts with "
                                     f"--mla-layout {mla_layout}", param_hint="--mla-layout")
        if as_variant.lower().startswith("mla-"):  # other variants have no MLA layout to speak of
            mla_layout = layout
    mla_layout = layout_for([spec], mla_layout)
    if no_windows:
        spec = no_windows_spec(spec)
    result = estimate(spec, context=one_context(context), batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout)
    warn(result.warnings)
    if json_out:
        print_json({**result.to_dict(), "notes": list(spec.notes)})
        return
    if not result.encoder:
        out.print(estimate_table(result, attention_label(spec.attention, result.mla_layout)))
    out.print(estimate_summary(result), markup=False)
    for note in spec.notes:
        if not note.startswith("Weights:"):  # the parameter arithmetic is fit's; --json keeps every note
            out.print(f"note: {clean(note)}", markup=False, style="dim")


def _as_variant(spec, name: str):
    from kvcalc.variants import build_variant

    try:
        variant = build_variant(spec, name.lower())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as") from None
    what = "hypothetical " if variant.hypothetical else ""
    note = f"what-if: {spec.name} as {variant.name} ({what}variant; the model's own design is " \
           f"{_actual(spec)})"
    notes = [note, *spec.notes]
    return variant.spec.model_copy(update={"notes": notes}), variant.mla_layout


def _actual(spec) -> str:
    from kvcalc.variants import actual_name

    return actual_name(spec)
