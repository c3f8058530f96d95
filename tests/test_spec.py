"""Schema rules: the preset format rejects what cannot be a real model, with a dotted field."""

import pytest
from pydantic import ValidationError

from kvcalc.errors import PresetError
from kvcalc.sources.presets import spec_from_data
from kvcalc.spec import expand_pattern

BASE = {
    "name": "toy",
    "source": ["hand-written for a test"],
    "parameters": "1M",
    "max_context": 1024,
    "dtype": "bf16",
    "attention": {"kind": "gqa", "heads": 8, "kv_heads": 2, "head_dim": 64},
    "layers": {"count": 4},
}


def with_(**changes):
    return {**BASE, **changes}


def problem(data) -> str:
    with pytest.raises(PresetError) as info:
        spec_from_data(data, origin="toy.yaml")
    return str(info.value)


def test_valid_base():
    spec = spec_from_data(BASE, origin="toy.yaml")
    assert spec.attention.kv_heads == 2
    assert spec.layers.order() == ["full"] * 4


def test_kv_heads_must_divide_heads():
    msg = problem(with_(attention={"kind": "gqa", "heads": 8, "kv_heads": 3, "head_dim": 64}))
    assert msg.startswith("toy.yaml: attention: ")
    assert "kv_heads=3 must divide heads=8" in msg


def test_mqa_means_one_kv_head_and_mha_means_all():
    assert "mqa means kv_heads == 1" in problem(
        with_(attention={"kind": "mqa", "heads": 8, "kv_heads": 2, "head_dim": 64})
    )
    assert "mha means kv_heads == heads" in problem(
        with_(attention={"kind": "mha", "heads": 8, "kv_heads": 2, "head_dim": 64})
    )
    mqa = spec_from_data(with_(attention={"kind": "mqa", "heads": 8, "head_dim": 64}), "t")
    mha = spec_from_data(with_(attention={"kind": "mha", "heads": 8, "head_dim": 64}), "t")
    assert (mqa.attention.kv_heads, mha.attention.kv_heads) == (1, 8)


def test_typo_is_an_unknown_field_with_its_path():
    data = with_(attention={"kind": "gqa", "heads": 8, "kv_heads": 2, "head_dim": 64, "n_layer": 3})
    assert "attention.n_layer: unknown field" in problem(data)


def test_unknown_attention_kind():
    assert "attention" in problem(with_(attention={"kind": "mxa", "heads": 8, "head_dim": 64}))


def test_nested_field_path_drops_union_tag():
    data = with_(
        layers={"count": 4, "kinds": {"local": {"type": "sliding", "window": 0}}, "pattern": ["local"]}
    )
    assert "layers.kinds.local.window: Input should be greater than 0" in problem(data)


def test_pattern_must_name_known_kinds_and_use_all():
    msg = problem(with_(layers={"count": 4, "pattern": ["full", "other"]}))
    assert "not in kinds" in msg and "other" in msg
    msg = problem(
        with_(layers={"count": 4, "kinds": {"full": {"type": "full"}, "spare": {"type": "full"}}})
    )
    assert "spare" in msg and "never appear" in msg


def test_missing_source_and_negative_context():
    data = dict(BASE)
    del data["source"]
    assert "source: Field required" in problem(data)
    assert "max_context" in problem(with_(max_context=-1))


def test_uppercase_name_rejected():
    assert "name" in problem(with_(name="Toy"))


def test_expand_pattern_tiles_and_cuts_the_last_tile():
    order = expand_pattern(["local*5", "global"], 62)
    assert len(order) == 62
    assert [i for i, kind in enumerate(order) if kind == "global"] == list(range(5, 62, 6))
    assert order[60:] == ["local", "local"]
    with pytest.raises(ValueError):
        expand_pattern(["a*3"], 2)
    with pytest.raises(ValueError):
        expand_pattern(["a**3"], 4)


def test_frozen():
    spec = spec_from_data(BASE, origin="t")
    with pytest.raises(ValidationError):
        spec.max_context = 5


def test_local_and_global_layers_may_differ_in_heads_and_head_dim():
    from kvcalc.estimate import estimate

    data = with_(
        layers={
            "count": 6,
            "kinds": {
                "local": {"type": "sliding", "window": 512},
                "global": {"type": "full",
                           "attention": {"kind": "gqa", "heads": 8, "kv_heads": 1, "head_dim": 512}},
            },
            "pattern": ["local*2", "global"],
        }
    )
    spec = spec_from_data(data, origin="toy.yaml")
    result = estimate(spec, context=1024)
    local, glob = result.groups
    # local: the model's attention, 2 KV heads x 64, 4 layers, 512 tokens held, bf16
    assert local.bytes == 4 * 512 * 2 * 2 * 64 * 2
    # global: its own attention, 1 KV head x 512, 2 layers, all 1024 tokens
    assert glob.bytes == 2 * 1024 * 2 * 1 * 512 * 2
    assert result.bytes_per_token == 4 * 2 * 2 * 64 * 2 + 2 * 2 * 1 * 512 * 2
    bad = with_(layers={"count": 2, "kinds": {"full": {"type": "full", "attention": {
        "kind": "gqa", "heads": 8, "kv_heads": 3, "head_dim": 64}}}})
    assert "layers.kinds.full.attention: kv_heads=3 must divide heads=8" in problem(bad)
