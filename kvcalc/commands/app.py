"""The Typer app, the one error boundary, and the registration of the commands."""


from typing import Annotated

import typer
from typer.core import TyperGroup

from kvcalc import __version__
from kvcalc.commands.common import err, out
from kvcalc.commands.parsers import whole
from kvcalc.errors import KvcalcError
from kvcalc.terminal import one_line


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
    metavars already say what to type, so help shows those and nothing else.

    Typer has no public switch for these labels (its plain, non-Rich help keeps ``<str>`` and
    the braces too), so this is the one place kvcalc reaches into Typer's internals: two
    methods of TyperOption and TyperArgument, each patched only where it exists, so other
    Typer versions are left as they are; tests/test_hardening.py (``test_help_shows_every_word``)
    fails if an upgrade brings the labels back."""
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
    help="Exact KV-cache memory for transformer models, and the evidence for it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# name: (module under kvcalc.commands, function); the order of `kvcalc --help` (Typer lists groups last).
COMMANDS = {
    "estimate": ("estimate", "estimate_cmd"),
    "compare": ("compare", "compare_cmd"),
    "variants": ("variants", "variants_cmd"),
    "plot": ("plot", "plot_cmd"),
    "fit": ("fit", "fit_cmd"),
    "explain": ("explain", "explain_cmd"),
    "handoff": ("handoff", "handoff_cmd"),
    "gpus": ("gpus", "gpus_cmd"),
    "import": ("import_config", "import_cmd"),
    "verify": ("verify", "verify_cmd"),
    "bench": ("bench", "bench_cmd"),
    "presets": ("presets", None),  # a group: list (its callback) and show
}
_registered: set[str] = set()


def register(names=None) -> typer.Typer:
    """Add the commands ``names`` (default: all) to ``app``, importing only their modules.

    A run registers just the command it names (``main``), so it builds the options of one
    command, not of twelve; ``kvcalc --help``, an unknown name and tests register them all."""
    from importlib import import_module

    for name in COMMANDS if names is None else names:
        if name in _registered or name not in COMMANDS:
            continue
        module, function = COMMANDS[name]
        found = import_module(f"kvcalc.commands.{module}")
        if function is None:
            group = typer.Typer(cls=KvcalcGroup, help=found.HELP)
            group.callback(invoke_without_command=True)(found.presets_list)
            group.command("show")(found.presets_show)
            app.add_typer(group, name=name)
        else:
            app.command(name)(getattr(found, function))
        _registered.add(name)
    return app


def command_named(args: list[str]) -> str | None:
    """The command a command line names (its first word that is not a root option or its value)."""
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--width":
            i += 2
            continue
        if not word.startswith("-"):
            return word if word in COMMANDS else None
        i += 1
    return None


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
        typer.Option("--width", parser=whole(40, 10_000), metavar="INTEGER",
                     help="Draw tables this many columns wide (default: the terminal's; no limit when piped)."),
    ] = None,
) -> None:
    """Exact KV-cache memory for transformer models, and the evidence for it."""
    if width is not None:
        out.width = width


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
    named = command_named(sys.argv[1:])
    register(None if named is None else [named])
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
