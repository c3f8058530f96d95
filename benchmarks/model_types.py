"""Survey: every model type transformers ships as a causal LM, read by kvcalc and checked against
the cache transformers itself holds.

For each type in ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``: ``AutoConfig.for_model(type)`` (the
class defaults), read by kvcalc (``spec_from_config``), then ``kvcalc verify --reference
transformers``'s comparison (the model built on the meta device, one forward). The table goes
to docs/model-types.md; a Python summary of the verdicts goes to stdout.

    .venv/bin/python benchmarks/model_types.py [TYPE ...] [--out docs/model-types.md]

The context is 64 tokens, or 2 past the largest window or chunk when that is at most 8192, so
the window rule is exercised; nothing in the config is shrunk. Each type gets 90 s.

A type the installed transformers ships and the recorded survey has not seen
(``kvcalc.sources.model_types.SURVEYED_TYPES``, taken with ``SURVEYED_WITH``) is marked ``new``
in the table and listed on stdout: classify it, then record the new release and its types.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LIMIT_S = 90
MAX_CONTEXT = 8192


class TimedOut(BaseException):  # not an Exception: no handler below may swallow it
    pass


def _alarm(signum, frame):
    raise TimedOut


def survey_one(model_type: str) -> dict:
    from transformers import AutoConfig

    from kvcalc.errors import KvcalcError
    from kvcalc.sources.config_json import spec_from_config
    from kvcalc.spec import ChunkedLayer, SlidingLayer
    from kvcalc.verify.reference import compare, hold

    row = {"type": model_type, "kvcalc": "", "result": "", "detail": "", "context": None, "seconds": 0.0,
           "weights": "-"}
    try:
        data = AutoConfig.for_model(model_type).to_dict()
    except Exception as exc:  # a config class that needs arguments
        row.update(kvcalc="-", result="error", detail=f"AutoConfig.for_model: {type(exc).__name__}: {exc}")
        return row
    try:
        spec = spec_from_config(data, origin=f"{model_type} defaults")
    except KvcalcError as exc:
        text = str(exc)
        refused = "is not supported" in text or "encoder-decoder" in text
        row.update(kvcalc="refused" if refused else "cannot read", result="-", detail=text.split(": ", 1)[-1])
        return row
    row["weights"] = weights_verdict(data, spec)
    untested = any(n.startswith("untested:") for n in spec.notes)
    unread = [n for n in spec.notes if n.startswith("unread:")]
    row["kvcalc"] = "encoder" if spec.is_encoder else ("read, untested" if untested else "read, checked")
    if unread:
        row["kvcalc"] += f", {len(unread)} unread"
    spans = [k.span for k in spec.layers.kinds.values() if isinstance(k, SlidingLayer | ChunkedLayer)]
    context = max([64] + [s + 2 for s in spans if s + 2 <= MAX_CONTEXT])
    context = min(context, spec.max_context) if spec.max_context >= 64 else context
    row["context"] = context
    try:
        held = hold(data, context)
        result = compare(spec, held, context)
    except KvcalcError as exc:
        row.update(result="error", detail=str(exc))
        return row
    exact = all(r.difference == 0 for r in result.rows)
    row["result"] = "match" if exact else ("explained" if result.ok else "diff")
    why = [f"{r.name}: {r.reason}" for r in result.rows if r.reason]
    row["detail"] = "; ".join(why + [n.split(":")[0] for n in result.notes])
    return row


def meta_parameters(data: dict, encoder: bool) -> int:
    """Parameters plus persistent buffers of the model transformers builds from ``data`` on the meta device:
    the causal-LM class, the image-text class where the config has a vision tower (the whole checkpoint),
    the base model for an encoder (kvcalc counts BertModel); the whole checkpoint, as kvcalc counts it, for Moshi
    (MoshiForConditionalGeneration: text decoder, depth decoder, audio embeddings, Mimi codec) and Emu3
    (Emu3ForConditionalGeneration: the text model and the VQ-VAE). As tests/test_hf_config_weights.py counts."""
    import warnings

    import torch
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    cfg = transformers.AutoConfig.for_model(**data)
    auto = transformers.AutoModelForCausalLM
    if encoder:
        auto = transformers.AutoModel
    elif data.get("vision_config") and data["model_type"] in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        auto = transformers.AutoModelForImageTextToText
    elif data["model_type"] == "moshi":
        auto = transformers.MoshiForConditionalGeneration  # the causal-LM mapping names the text decoder alone
    elif data["model_type"] == "emu3":  # Emu3's checkpoints: the text model and the VQ-VAE
        auto = transformers.Emu3ForConditionalGeneration
        if cfg.vocabulary_map is None:  # tokenizer data, no weights; Emu3Model reads it on construction
            cfg.vocabulary_map = {}
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = auto.from_config(cfg) if hasattr(auto, "from_config") else auto(cfg)
    saved = set(model.state_dict())
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for name, b in model.named_buffers() if name in saved))


def weights_verdict(data: dict, spec) -> str:
    """`equal`, `kvcalc N, transformers M`, `not derived` (kvcalc gives no count) or `error: ...`."""
    from kvcalc.capacity.params import parameter_count

    count = parameter_count(spec)
    if count is None:
        return "not derived"
    try:
        built = meta_parameters(data, spec.is_encoder)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "equal" if built == count.total else f"kvcalc {count.total:,}, transformers {built:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("types", nargs="*")
    parser.add_argument("--out", default=str(ROOT / "docs" / "model-types.md"))
    args = parser.parse_args()
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from kvcalc.sources.model_types import SURVEYED_WITH, unsurveyed

    types = args.types or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    # types this transformers adds since the recorded survey: reported, to be classified by hand
    new = set(unsurveyed(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES))
    if new:
        print(f"NEW since the survey with transformers {SURVEYED_WITH}: {', '.join(sorted(new))}", flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    rows = []
    for model_type in types:
        start = time.monotonic()
        signal.alarm(LIMIT_S)
        try:
            row = survey_one(model_type)
        except TimedOut:
            row = {"type": model_type, "kvcalc": "?", "result": "error", "detail": f"over {LIMIT_S} s",
                   "context": None, "weights": "-"}
        finally:
            signal.alarm(0)
        if model_type in new:
            row["kvcalc"] = f"new, {row['kvcalc']}"
        row["seconds"] = round(time.monotonic() - start, 1)
        rows.append(row)
        print(f"{model_type:28} {row['kvcalc']:24} {row['result']:10} {row['weights'][:40]:40} {row['detail'][:120]}",
              flush=True)
    if not args.types:
        _write(Path(args.out), rows, transformers.__version__)
    if new:
        print(f"NEW TYPES = {sorted(new)!r}  (classify them in kvcalc/sources/model_types.py, then record "
              "SURVEYED_WITH and SURVEYED_TYPES)")
    print("SUMMARY = " + repr({r["type"]: (r["kvcalc"], r["result"], r["weights"], r["detail"]) for r in rows}))


def _write(path: Path, rows: list[dict], version: str) -> None:
    counts: dict[str, int] = {}
    weights: dict[str, int] = {}
    for r in rows:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
        verdict = r["weights"] if r["weights"] in ("equal", "not derived", "-") else (
            "error" if r["weights"].startswith("error") else "differs")
        weights[verdict] = weights.get(verdict, 0) + 1
    lines = [
        "# Every transformers causal-LM type, read by kvcalc and checked against transformers",
        "",
        f"Written by `benchmarks/model_types.py` with transformers {version}: each type in",
        "`MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`, its config class's defaults (`AutoConfig.for_model(type)`),",
        "read by kvcalc, then built on the meta device and run for one forward",
        "(`kvcalc verify --reference transformers`, see docs/reference-check.md). The context is 64",
        "tokens, or 2 past the largest window or chunk up to 8192, so the window rule shows.",
        "",
        "kvcalc column: `new` first where the type is not in the recorded survey (model_types.SURVEYED_TYPES),",
        "`read, checked` (a type tests check against real configs), `read, untested`",
        "(read by field names alone), `encoder`, `refused` (kvcalc names the type and the reason, see",
        "`kvcalc/sources/model_types.py`), `cannot read` (the defaults lack a field kvcalc needs).",
        "Result column: `match` (equal bytes in every layer kind), `explained` (every difference is a",
        "known convention, named in the detail), `diff` (a difference nobody explained), `error`",
        "(transformers could not build or run the model on meta tensors; the reason is given), `-` (not run).",
        "Weights column: the parameter count `fit` derives from the same config (kvcalc/sources/config_weights.py)",
        "against the parameters and persistent buffers of the model transformers builds on the meta device (the",
        "image-text class where the config has a vision tower): `equal`, both numbers where they differ,",
        "`not derived` (kvcalc gives no count: no builder for the family yet, or a part it cannot state; fit says",
        "so), `error` (transformers could not build it), `-` (kvcalc does not read the type).",
        "",
        "Totals: " + ", ".join(f"{k or 'none'} {v}" for k, v in sorted(counts.items())) + f" of {len(rows)} types.",
        "Weights: " + ", ".join(f"{k} {v}" for k, v in sorted(weights.items())) + ".",
        "",
        "| type | kvcalc | result | weights | context | detail |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        detail = r["detail"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['type']} | {r['kvcalc']} | {r['result']} | {r['weights']} | {r['context'] or ''} "
                     f"| {detail} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
