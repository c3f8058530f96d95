"""One CLI shape: every option declared once, the same name meaning the same thing in every
command; every command listed with one line; a run builds only the command it names."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import typer


def _commands():
    from kvcalc.cli import app

    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        found[name] = command
        for sub, inner in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = inner
    return found


def test_every_option_name_has_one_help_text_and_one_bound():
    seen = defaultdict(set)
    for command in _commands().values():
        for param in command.params:
            if param.param_type_name != "option":
                continue
            for opt in param.opts:
                seen[opt].add((getattr(param, "help", None), getattr(param, "metavar", None)))
    differing = {opt: uses for opt, uses in seen.items() if len(uses) > 1}
    assert not differing, differing


def test_the_names_the_issue_named_mean_one_thing():
    commands = _commands()
    for name in ("estimate", "compare", "variants", "plot", "verify", "bench"):
        opts = {opt for p in commands[name].params for opt in p.opts}
        assert "--batch" in opts and "--kv-dtype" in opts, name
    assert "--dtype" not in {opt for p in commands["bench"].params for opt in p.opts}
    assert "--batch" not in {opt for p in commands["fit"].params for opt in p.opts}  # -n is fit's requests
    compare = {opt for p in commands["compare"].params for opt in p.opts}
    assert {"--tp", "--engine", "--gpu-memory", "--gpus"} <= compare


def test_help_lists_every_command_on_one_line():
    from kvcalc.commands.app import COMMANDS

    done = subprocess.run([sys.executable, "-m", "kvcalc", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "100", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}, check=True)
    listed = done.stdout.split("Commands")[1]
    rows = [line for line in listed.splitlines() if line.startswith("│ ")]
    assert [row.split()[1] for row in rows] == list(COMMANDS)  # one row each, nothing wrapped


def test_a_run_registers_only_the_command_it_names():
    code = ("import sys; sys.argv = ['kvcalc', 'gpus', '--json']\n"
            "import kvcalc.commands.app as app\n"
            "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(app._registered), file=sys.stderr)\n"
            "print('kvcalc.commands.fit' in sys.modules, 'kvcalc.capacity.fit' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.split("\n")[:2] == ["['gpus']", "False False"]


def test_the_house_reads_top_down_with_no_circle():
    """Between kvcalc's parts (commands, capacity, sources, verify, logs, ... and the top modules) the
    imports, at module level or inside functions, form no circle; only commands and cli reach commands."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "kvcalc"
    edges: dict[str, set[str]] = {}

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    for path in root.rglob("*.py"):
        module = part("kvcalc." + ".".join(path.relative_to(root).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("kvcalc.") and part(name) != module:
                    edges.setdefault(module, set()).add(part(name))
    reaching_commands = {m for m, targets in edges.items() if "kvcalc.commands" in targets}
    assert reaching_commands <= {"kvcalc.cli", "kvcalc.__main__"}

    def cycle_from(start, node, seen):
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [node, nxt]
            if nxt not in seen:
                seen.add(nxt)
                found = cycle_from(start, nxt, seen)
                if found:
                    return [node, *found]
        return None

    circles = {m: c for m in edges if (c := cycle_from(m, m, set()))}
    assert not circles, circles


def test_each_command_module_parses_and_renders_only_in_under_400_lines():
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "kvcalc" / "commands"
    sizes = {path.name: len(path.read_text().splitlines()) for path in folder.glob("*.py")}
    assert max(sizes.values()) < 400, sizes
