"""kvcalc bench: timed decode steps through a model's attention layers."""


from typing import Annotated, Literal

import typer

from kvcalc.commands.common import err, model_of, out, print_json
from kvcalc.commands.options import (
    BatchOpt,
    ContextOpt,
    DeviceOpt,
    JsonOpt,
    KVDtypeOpt,
    ModelArg,
    PresetDirOpt,
    RevisionOpt,
)
from kvcalc.commands.parsers import items, one_context, whole
from kvcalc.errors import KvcalcError, torch_hint
from kvcalc.terminal import clean

BENCH_DTYPES = ("fp32", "bf16", "fp16")  # weights and cache alike (default: fp32 on CPU, bf16 on a GPU)


def bench_cmd(
    model: ModelArg,
    variants: Annotated[
        str | None,
        typer.Option("--variants", metavar="LIST",
                     help="Variants to time: mha,gqa-8,mqa,mla-latent,mla-expanded (default: the model's own)."),
    ] = None,
    context: ContextOpt = None,
    batch: BatchOpt = 1,
    device: DeviceOpt = "cpu",
    kv_dtype: KVDtypeOpt = None,
    steps: Annotated[
        int,
        typer.Option("--steps", parser=whole(1), metavar="INTEGER",
                     help="Timed decode steps per layer.")
    ] = 20,
    warmup: Annotated[
        int,
        typer.Option("--warmup", parser=whole(0), metavar="INTEGER",
                     help="Untimed steps first.")
    ] = 3,
    kernel: Annotated[
        Literal["auto", "sdpa", "grouped"],
        typer.Option("--kernel", help="Attention: sdpa (fused, enable_gqa) or grouped matmuls; auto: sdpa on CUDA."),
    ] = "auto",
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
) -> None:
    """Time decode steps through MODEL's attention layers, per attention variant.

    Reports time per step per layer and for all attention layers (scaled), bytes read, achieved
    bandwidth against the device's peak, and the measured speed-up over MHA beside the predicted one.
    """
    if kv_dtype is not None and kv_dtype not in BENCH_DTYPES:
        raise typer.BadParameter(f"bench builds its layers in {', '.join(BENCH_DTYPES)}, not {kv_dtype}",
                                 param_hint="--kv-dtype")
    context = one_context(context, 4096)
    try:
        import torch  # noqa: F401  (the kvcalc[torch] extra)
    except ImportError:
        raise KvcalcError(torch_hint("bench")) from None
    from rich.progress import Progress

    from kvcalc.bench.report import bench_lines, bench_table
    from kvcalc.bench.runner import bench

    spec = model_of(model, preset_dir, revision)
    names = None
    if variants is not None:
        from kvcalc.variants import build_variant

        names = list(dict.fromkeys(v.lower() for v in items(variants, "--variants", "mha,gqa-8,mqa")))
        try:
            for name in names:
                build_variant(spec, name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--variants") from None
        if not names:
            raise typer.BadParameter("the list of variants is empty (try mha,gqa-8,mqa)", param_hint="--variants")
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("bench", total=None)
        result = bench(spec, names, context=context, batch=batch, device=device, dtype=kv_dtype, steps=steps,
                       warmup=warmup, kernel=kernel,
                       progress=lambda what: bar.update(task, description=f"bench {what}"))
    if json_out:
        print_json(result.to_dict())
        return
    out.print(bench_table(result))
    for line in bench_lines(result):
        out.print(line, markup=False, style="dim", soft_wrap=True)
    for note in result.notes:
        out.print(f"note: {clean(note)}", markup=False, style="dim", soft_wrap=True)
