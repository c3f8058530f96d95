"""Every model type transformers ships as a causal LM is read (checked, or matched on its
defaults) or refused by name (kvcalc/sources/model_types.py; docs/model-types.md).

Expected bytes in the sample re-runs are derived by hand from transformers 5.24's default
configs (``AutoConfig.for_model``): GptOssConfig 36 layers alternating sliding_attention /
full_attention, 8 KV heads, head_dim 64, sliding_window 128, no dtype (float32);
OlmoConfig 32 layers, 32 heads = 32 KV heads, hidden 4096 (head_dim 4096 / 32 = 128), no dtype.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from kvcalc.sources.model_types import (
    CHECKED_TYPES,
    DEFAULTS_MATCHED,
    ENCODER_DECODER_TYPES,
    REFUSED,
    SURVEYED_TYPES,
    SURVEYED_WITH,
    UNVERIFIED,
    classify,
    unsurveyed,
)


def test_the_classes_do_not_overlap():
    groups = {"checked": CHECKED_TYPES, "matched": DEFAULTS_MATCHED, "encoder-decoder": ENCODER_DECODER_TYPES,
              "refused": frozenset(REFUSED), "unverified": frozenset(UNVERIFIED)}
    for a, left in groups.items():
        for b, right in groups.items():
            if a < b:
                assert not left & right, f"{a} and {b} share {sorted(left & right)}"


def test_every_surveyed_causal_lm_type_is_classified():
    # the recorded list, not the installed transformers: a type a later release adds is reported
    # by the survey (benchmarks/model_types.py) and by the test below, and does not fail the suite
    assert len(SURVEYED_TYPES) == 196
    unknown = sorted(t for t in SURVEYED_TYPES if classify(t) == "unknown")
    assert unknown == [], f"run benchmarks/model_types.py and classify {unknown}"


def test_a_type_transformers_adds_later_is_reported_not_failed():
    later = set(SURVEYED_TYPES) | {"brand_new_lm", "another_lm"}
    assert unsurveyed(later) == ["another_lm", "brand_new_lm"]
    assert classify("brand_new_lm") == "unknown"
    assert unsurveyed(SURVEYED_TYPES) == []


def test_the_installed_transformers_is_the_surveyed_one_or_its_new_types_are_reported():
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    new = unsurveyed(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if transformers.__version__ == SURVEYED_WITH:
        assert new == [] and set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) == SURVEYED_TYPES
    elif new:
        warnings.warn(f"transformers {transformers.__version__} adds causal-LM types the survey (run with "
                      f"{SURVEYED_WITH}) has not classified: {', '.join(new)}; run benchmarks/model_types.py",
                      stacklevel=1)


def test_the_transformers_extra_is_pinned_to_the_surveyed_release():
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    pin = re.search(r'^transformers = \["transformers([^"]*)"\]', text, re.M).group(1)
    major, minor, _ = SURVEYED_WITH.split(".")
    assert pin == f">={major}.{minor},<{major}.{int(minor) + 1}"


def test_every_reason_says_something():
    for table in (REFUSED, UNVERIFIED):
        for model_type, reason in table.items():
            assert len(reason) > 20 and "\n" not in reason, model_type


@pytest.mark.parametrize("model_type, words", [("mllama", "cross-attention"), ("gemma3n_text", "KV sharing"),
                                               ("xlstm", "no KV cache")])
def test_a_refused_type_is_one_line_through_the_cli(runner, kvcalc_app, tmp_path, model_type, words):
    config = {"model_type": model_type, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
              "hidden_size": 512, "max_position_embeddings": 2048}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = runner.invoke(kvcalc_app, ["estimate", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"model_type '{model_type}' is not supported" in lines[0] and words in lines[0]
    assert "Traceback" not in result.output


def _defaults(model_type: str, context: int):
    from transformers import AutoConfig

    from kvcalc.sources.config_json import spec_from_config
    from kvcalc.verify.reference import compare, hold

    data = AutoConfig.for_model(model_type).to_dict()
    return compare(spec_from_config(data, f"{model_type} defaults"), hold(data, context), context)


def test_sample_of_matched_types_rerun_against_transformers():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    gpt_oss = _defaults("gpt_oss", 130)
    rows = {r.kind: r for r in gpt_oss.rows}
    assert rows["sliding"].layers == rows["full"].layers == 18
    assert rows["sliding"].kvcalc_bytes == 18 * 128 * 8 * (64 + 64) * 4
    assert rows["sliding"].transformers_bytes == 18 * 127 * 8 * (64 + 64) * 4
    assert rows["full"].transformers_bytes == rows["full"].kvcalc_bytes == 18 * 130 * 8 * (64 + 64) * 4
    assert rows["sliding"].rule == "window-1" and gpt_oss.ok
    olmo = _defaults("olmo", 16)
    assert olmo.transformers_bytes == olmo.kvcalc_bytes == 32 * 16 * 32 * (128 + 128) * 4
    for model_type in ("granite", "cohere2"):
        assert model_type in DEFAULTS_MATCHED
        assert _defaults(model_type, 64).ok, model_type
