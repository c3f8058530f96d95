"""kvcalc import: a config.json turned into a preset YAML."""


import re
from pathlib import Path
from typing import Annotated

import typer

from kvcalc.commands.common import out, revision_of
from kvcalc.commands.options import ForceOpt, OutputOpt, RevisionOpt


def import_cmd(
    path: Annotated[str, typer.Argument(
        metavar="PATH|ORG/NAME",
        help="A Hugging Face config.json, a folder holding one, or a Hub id (only config.json is fetched).")],
    output_name: OutputOpt = None,
    force: ForceOpt = False,
    revision: RevisionOpt = None,
) -> None:
    """Turn a config.json (file, folder or Hub id) into a preset YAML to review and keep."""
    from kvcalc.files import check_target, write_text
    from kvcalc.sources.config_json import load_config_path, preset_yaml
    from kvcalc.sources.resolve import is_hub_ref, load_hub

    output = None if output_name is None else Path(output_name)
    if output is not None:
        check_target(output, force=force, given=output_name)
    revision = revision_of(revision, [path])
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

    name = output.stem.lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise typer.BadParameter(f"{output.name}: a preset's file name is its name: lowercase letters, digits, "
                                 "'.', '_' and '-', starting with a letter or digit", param_hint="--output")
    if name == spec.name:
        return spec
    note = f"named {name} after its file (config.json suggested {spec.name})"
    return spec.model_copy(update={"name": name, "notes": [*spec.notes, note]})
