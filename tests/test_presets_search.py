"""kvcalc presets --search: a filter over names, attention, sources and notes."""

import json


def names(runner, app, *args):
    result = runner.invoke(app, ["presets", *args, "--json"])
    assert result.exit_code == 0, result.output
    return [p["name"] for p in json.loads(result.stdout)]


def test_search_by_attention_and_words(runner, kvcalc_app):
    # the MLA presets, from model_facts.yaml: DeepSeek-V2, V2-Lite, V3 and Kimi-K2
    assert names(runner, kvcalc_app, "--search", "mla") == [
        "deepseek-r1", "deepseek-v2", "deepseek-v2-lite", "deepseek-v3", "deepseek-v3.2-exp", "kimi-k2",
    ]
    # several words must all match: Gemma-2 and Gemma-3 have sliding layers, Gemma-1 none
    assert names(runner, kvcalc_app, "-s", "Gemma sliding") == [
        "gemma-2-27b", "gemma-2-2b", "gemma-2-9b", "gemma-3-12b", "gemma-3-1b", "gemma-3-27b", "gemma-3-4b",
    ]
    assert "jamba-v0.1" in names(runner, kvcalc_app, "-s", "mamba")


def test_no_match_is_said(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["presets", "--search", "no-such-thing"])
    assert result.exit_code == 0 and "no preset matches" in result.stderr
