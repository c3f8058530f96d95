"""DeepSeek-V3.2's lightning-indexer keys: a cache of their own beside the MLA latent.

Conventions (sources in kvcalc/spec.py, class Indexer): DeepSeek's inference code
(deepseek-ai/DeepSeek-V3.2-Exp, inference/model.py: k_cache float8_e4m3fn of index_head_dim and
k_scale_cache float32 of index_head_dim // 128), vLLM (DeepseekV32IndexerCache: head_size
128 + 128 // 128 x 4, uint8) and SGLang (index_k_with_scale_buffer) all cache 128 + 4 = 132 B per
token and layer for index_head_dim 128; transformers' deepseek_v32 keeps the key in the model
dtype (128 x 2 = 256 B in bf16). Every expected number below is worked out from those facts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fitting import fit_with as fit

from kvcalc.capacity.params import attention_parameters
from kvcalc.errors import PresetError
from kvcalc.estimate import estimate
from kvcalc.render import estimate_summary, estimate_table
from kvcalc.sources.config_json import load_config_path, spec_from_config
from kvcalc.spec import Indexer, ModelSpec, Weights

FIXTURE = Path(__file__).parent / "fixtures" / "configs" / "deepseek-v3.2-exp"
INDEXER = {"heads": 64, "head_dim": 128, "topk": 2048}


def v32(layers: int = 61, indexer: dict | None = None, **extra) -> ModelSpec:
    return ModelSpec.model_validate({
        "name": "dsa", "source": "test: DeepSeek-V3.2-Exp's attention", "parameters": "test",
        "max_context": 163840, "dtype": "bf16", "hidden_size": 7168,
        "attention": {"kind": "mla", "heads": 128, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
                      "qk_nope_head_dim": 128, "v_head_dim": 128, "q_lora_rank": 1536,
                      "indexer": INDEXER if indexer is None else indexer},
        "layers": {"count": layers},
        **extra,
    })


# ---- schema ------------------------------------------------------------------------------


def test_default_is_fp8_with_an_fp32_scale_per_128():
    ix = Indexer(heads=64, head_dim=128)
    assert (ix.key_dtype, ix.scale_block, ix.scale_bytes) == ("fp8", 128, 4)
    assert ix.bits_per_token("bf16") == (128 * 1 + 128 // 128 * 4) * 8  # 132 B


def test_transformers_convention_follows_the_kv_dtype():
    ix = Indexer(heads=64, head_dim=128, key_dtype=None, scale_block=None)
    assert ix.bits_per_token("bf16") == 128 * 2 * 8
    assert ix.bits_per_token("fp8") == 128 * 1 * 8


@pytest.mark.parametrize("bad", [
    {"heads": 64, "head_dim": 128, "scale_block": 96},  # does not divide 128
    {"heads": 64, "head_dim": 128, "typo": 1},
    {"heads": 64, "head_dim": 128, "key_dtype": "fp6"},
    {"heads": 64, "head_dim": "128"},
    {"heads": 0, "head_dim": 128},
    {"heads": 64, "head_dim": 128, "scale_bytes": 9},
])
def test_bad_indexers_are_refused(bad):
    with pytest.raises(ValueError):
        Indexer.model_validate(bad)


# ---- estimate --------------------------------------------------------------------------


def test_its_own_line_in_the_total():
    result = estimate(v32(), context=1000, batch=2)
    full, index = result.groups
    assert (full.name, index.name, index.kind, index.of) == ("full", "indexer", "indexer", "full")
    assert full.bytes_per_token == 61 * (512 + 64) * 2 == 70_272
    assert index.bytes_per_token == 61 * (128 + 4) == 8_052
    assert index.bytes == 61 * 132 * 1000 * 2
    assert result.bytes_per_token == 61 * (576 * 2 + 132)
    assert result.total_bytes == 61 * (576 * 2 + 132) * 1000 * 2
    assert result.layer_count == 61


def test_the_kv_dtype_does_not_change_the_indexer_but_the_transformers_convention_follows_it():
    assert estimate(v32(), context=1, kv_dtype="fp8").bytes_per_token == 61 * (576 * 1 + 132)
    plain = v32(indexer={**INDEXER, "key_dtype": None, "scale_block": None})
    assert estimate(plain, context=1).bytes_per_token == 61 * (576 * 2 + 128 * 2)
    assert estimate(plain, context=1, kv_dtype="fp8").bytes_per_token == 61 * (576 + 128)


def test_expanded_layout_keeps_the_indexer():
    result = estimate(v32(), context=1, mla_layout="expanded")
    assert result.bytes_per_token == 61 * (128 * (128 + 64 + 128) * 2 + 132)


def test_topk_does_not_change_the_cache():
    assert (estimate(v32(indexer={**INDEXER, "topk": 1}), context=4096).total_bytes
            == estimate(v32(indexer={**INDEXER, "topk": None}), context=4096).total_bytes)


def test_table_json_and_summary_show_the_line_and_the_convention():
    from io import StringIO

    from rich.console import Console

    result = estimate(v32(), context=1000)
    data = json.loads(json.dumps(result.to_dict()))
    assert [g["name"] for g in data["groups"]] == ["full", "indexer"]
    assert data["groups"][1]["bytes"] == 61 * 132 * 1000
    assert any("fp8" in c and "transformers" in c and "132 B" in c for c in data["conventions"])
    out = StringIO()
    Console(file=out, width=200).print(estimate_table(result))
    text = out.getvalue()
    assert "indexer keys (full)" in text and f"{61 * 132 * 1000:,}" in text
    assert "   61   " in text.splitlines()[-1]  # the total counts 61 layers, not 122
    summary = estimate_summary(result)
    assert f"{61 * 132 * 1000:,} B" in summary and "note: indexer:" in summary


# ---- parameters ------------------------------------------------------------------------


def test_indexer_weights_are_counted_with_the_attention():
    w = Weights(vocab_size=129280, tied_embeddings=False, mlp={"kind": "gated", "intermediate_size": 18432})
    with_ix, small_ix = attention_parameters(v32().attention, 7168, w)
    without, small = attention_parameters(v32().attention.model_copy(update={"indexer": None}), 7168, w)
    # wq_b 1536 x (64 x 128) and wk 7168 x 128 are matrices; k_norm's weight and bias (128 each)
    # and weights_proj 7168 x 64 (bf16 in the checkpoint) stay with the 16-bit rest
    assert with_ix - without == 1536 * 64 * 128 + 7168 * 128
    assert small_ix - small == 2 * 128 + 7168 * 64


# ---- fit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tp", [1, 2, 8])
def test_fit_counts_the_indexer_whole_on_every_gpu(tp):
    result = fit(v32(), None, tp=tp, context=4096, reserve=0, weights_bytes=0, search_min=False)
    # the 576-element latent in bf16 and the 132-byte indexer key, neither split by TP
    assert result.kv_bytes_per_token_per_gpu == 61 * (576 * 2 + 132)
    assert any("indexer keys (132 B per token and layer" in n and "not split" in n for n in result.notes)


# ---- config.json -----------------------------------------------------------------------


def test_fixture_reads_the_indexer():
    spec = load_config_path(FIXTURE)
    ix = spec.attention.indexer
    assert (ix.heads, ix.head_dim, ix.topk, ix.key_dtype, ix.scale_block) == (64, 128, 2048, "fp8", 128)
    assert not [n for n in spec.notes if n.startswith("unread:")]
    assert any(n.startswith("ignored: index_topk 2048") for n in spec.notes)
    assert any(n.startswith("inferred: indexer keys cached as fp8") and "132" in n for n in spec.notes)
    assert estimate(spec, context=1).bytes_per_token == 61 * (576 * 2 + 132)


def _config(**fields) -> dict:
    data = json.loads((FIXTURE / "config.json").read_text())
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def test_missing_indexer_field_is_one_line_error():
    with pytest.raises(PresetError, match="index_head_dim says a sparse-attention indexer, but index_n_heads"):
        spec_from_config(_config(index_n_heads=None, index_topk=None), "x/config.json")


def test_bad_indexer_widths_are_errors():
    with pytest.raises(PresetError, match="index_head_dim 96 is not a multiple of 128"):
        spec_from_config(_config(index_head_dim=96), "x/config.json")
    with pytest.raises(PresetError, match="index_n_heads must be a positive whole number"):
        spec_from_config(_config(index_n_heads=0), "x/config.json")


def test_no_indexer_fields_no_indexer():
    spec = spec_from_config(_config(index_head_dim=None, index_n_heads=None, index_topk=None), "x/config.json")
    assert spec.attention.indexer is None


# ---- verify: real key caches beside the latent ------------------------------------------------


def small_dsa(layers: int = 2) -> ModelSpec:
    return ModelSpec.model_validate({
        "name": "small-dsa", "source": "test", "parameters": "test", "max_context": 4096, "dtype": "fp32",
        "hidden_size": 64,
        "attention": {"kind": "mla", "heads": 4, "kv_lora_rank": 32, "qk_rope_head_dim": 8,
                      "qk_nope_head_dim": 16, "v_head_dim": 16, "q_lora_rank": 24,
                      "indexer": {"heads": 4, "head_dim": 256, "topk": 8}},
        "layers": {"count": layers},
    })


@pytest.mark.parametrize("cache", ["static", "dynamic", "paged"])
@pytest.mark.parametrize("layout", ["latent", "expanded"])
def test_verify_measures_the_indexer_keys(cache, layout):
    pytest.importorskip("torch")
    from kvcalc.verify.runner import verify

    r = verify(small_dsa(), context=40, batch=2, cache=cache, mla_layout=layout, layers=2)
    assert r.match and not r.token_problems
    index = next(g for g in r.groups if g.kind == "indexer")
    tokens = 48 if cache == "paged" else 40  # paged: whole 16-token blocks
    # 2 layers x (256 fp8 bytes + 256 / 128 fp32 scales x 4 bytes) x tokens x 2 sequences
    assert index.measured_bytes == index.expected_bytes == 2 * (256 + 2 * 4) * tokens * 2
    assert r.scale_bytes == 0  # the indexer's scales are part of its cache, not reported apart


def test_verify_transformers_convention_stores_the_key_in_the_kv_dtype():
    pytest.importorskip("torch")
    from kvcalc.verify.runner import verify

    spec = small_dsa(1)
    plain = spec.model_copy(update={"attention": spec.attention.model_copy(update={
        "indexer": Indexer(heads=4, head_dim=256, topk=8, key_dtype=None, scale_block=None)})})
    r = verify(plain, context=20, kv_dtype="bf16")
    assert r.match
    assert next(g for g in r.groups if g.kind == "indexer").measured_bytes == 256 * 2 * 20


def test_the_top_k_narrows_attention():
    torch = pytest.importorskip("torch")
    from kvcalc.verify.caches import StaticCache, indexer_codec
    from kvcalc.verify.layers import IndexerKeys, allowed, make_weight

    a = small_dsa().attention
    gen = torch.Generator().manual_seed(0)
    ix = IndexerKeys(a, 64, torch.float32, "cpu", lambda name, shape: make_weight(shape, torch.float32, "cpu", gen))
    cache = StaticCache(indexer_codec(a.indexer, "fp32", torch.float32), 1, ix.cache_feats(), "cpu", capacity=20)
    x = torch.randn(1, 20, 64, generator=gen)
    pos = torch.arange(20)
    keep = ix(x, torch.randn(1, 20, 24, generator=gen), pos, pos, allowed(pos, pos), cache)
    # each query keeps min(its position + 1, topk 8) keys, never a later one
    assert keep.sum(-1).tolist() == [[min(t + 1, 8) for t in range(20)]]
    assert not (keep & ~allowed(pos, pos)).any()
    k, scale = cache.data_tensors()[0], cache.scale_tensors()[0]
    assert k.dtype == torch.float8_e4m3fn and tuple(k.shape) == (1, 20, 256)
    assert scale.dtype == torch.float32 and tuple(scale.shape) == (1, 20, 2)


def test_block_scaled_keys_round_trip_within_fp8():
    torch = pytest.importorskip("torch")
    from kvcalc.verify.caches import BlockScaleCodec

    codec = BlockScaleCodec(torch.float32, 128)
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(1)) * 50
    back = codec.roundtrip(x)
    # e4m3 keeps 3 mantissa bits: within 1/16 of each block's largest value
    amax = x.view(3, 2, 128).abs().amax(-1, keepdim=True)
    assert ((back - x).view(3, 2, 128).abs() <= amax / 16).all()


def test_verify_tp_refuses_the_indexer_in_one_line():
    pytest.importorskip("torch")
    from kvcalc.errors import KvcalcError
    from kvcalc.verify.tp_plan import make_tp_plan

    with pytest.raises(KvcalcError, match="does not build small-dsa's sparse-attention indexer") as info:
        make_tp_plan(small_dsa(), tp=2)
    assert "\n" not in str(info.value)
