"""The GPU catalog: memory as the driver reports it, peak bandwidth, and a source for each.

The bundled catalog is ``gpus.yaml`` beside this file (shipped in the wheel); users add or
override entries with their own YAML files of the same shape (``--gpu-catalog FILE`` or
``KVCALC_GPU_CATALOG``). Names match case-insensitively, with '-', '_' and spaces alike.
"""

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from kvcalc.errors import KvcalcError, PresetError

BUNDLED = Path(__file__).with_name("gpus.yaml")


# No postponed annotations: pydantic would evaluate each field's string when the class is built.
class GPU(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str
    aliases: list[str] = Field(default_factory=list)
    vendor: Literal["nvidia", "amd", "intel", "other"] = "nvidia"
    memory_bytes: Annotated[StrictInt, Field(gt=0)]
    memory_source: str
    # nvidia-smi's total (NVML), which SGLang's default memory fraction is computed on; None: unknown
    smi_memory_bytes: Annotated[StrictInt, Field(gt=0)] | None = None
    smi_memory_source: str | None = None
    bandwidth_bytes_per_s: Annotated[StrictInt, Field(gt=0)] | None = None
    bandwidth_source: str | None = None
    # dense (not sparse) tensor-core peaks from the datasheet: what recomputing a prefill is timed at
    dense_bf16_flops: Annotated[StrictInt, Field(gt=0)] | None = None
    dense_fp8_flops: Annotated[StrictInt, Field(gt=0)] | None = None
    flops_source: str | None = None
    compute_capability: Annotated[str, Field(pattern=r"^[0-9]{1,2}\.[0-9]$")] | None = None  # NVIDIA's, e.g. "9.0"
    notes: list[str] = Field(default_factory=list)
    key: str = ""  # the catalog name, filled in on load


class UnknownGPUError(KvcalcError):
    pass


def normalize(name: str) -> str:
    """'H100_SXM', 'h100 sxm' and 'H100-SXM' all read 'h100-sxm'."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _load(path: Path) -> dict[str, GPU]:
    from kvcalc.readers import read_text
    from kvcalc.validated_cache import cached

    return cached("gpus", str(path.resolve()), lambda: read_text(path), lambda text: _validate(text, path),
                  (__name__,))


def _validate(text: str, path: Path) -> dict[str, GPU]:
    from kvcalc.readers import load_yaml

    data = load_yaml(text, str(path))
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), dict):
        raise PresetError(f"{path}: a GPU catalog is a mapping with a 'gpus' mapping inside")
    entries = {}
    for key, fields in data["gpus"].items():
        if not isinstance(fields, dict):
            raise PresetError(f"{path}: gpus.{key}: expected a mapping of fields")
        try:
            entries[normalize(str(key))] = GPU.model_validate({**fields, "key": normalize(str(key))})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PresetError(f"{path}: gpus.{key}.{where}: {first['msg']}") from None
    return entries


def catalog(extra_files: tuple[Path, ...] = ()) -> dict[str, GPU]:
    """Canonical name -> GPU; user files override bundled entries of the same name."""
    merged = dict(_load(BUNDLED))
    for path in extra_files:
        if not Path(path).is_file():
            from kvcalc.files import why_not_a_file

            raise PresetError(f"GPU catalog {path}: {why_not_a_file(Path(path))}")
        for key, gpu in _load(Path(path)).items():
            known = merged.get(key)
            if known is not None and "aliases" not in gpu.model_fields_set:
                gpu = gpu.model_copy(update={"aliases": known.aliases})  # an override keeps the built-in names
            merged[key] = gpu
    return merged


def find_gpu(name: str, extra_files: tuple[Path, ...] = ()) -> GPU:
    """A GPU by canonical name or alias; unknown names suggest the closest ones."""
    gpus = catalog(extra_files)
    wanted = normalize(name)
    names: dict[str, GPU] = dict(gpus)
    for key, gpu in gpus.items():
        for alias in gpu.aliases:
            other = names.get(normalize(alias))
            if other is not None and other.key != key:
                raise PresetError(f"GPU catalog: '{alias}' names both {other.key} and {key}; "
                                  "rename the alias in one of them")
            names[normalize(alias)] = gpu
    if wanted in names:
        return names[wanted]
    from difflib import get_close_matches  # only on the error path

    close = get_close_matches(wanted, list(names), n=4, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownGPUError(
        f"unknown GPU '{name}'{hint}; 'kvcalc gpus' lists them, or give --gpu-memory 24GiB"
    )
