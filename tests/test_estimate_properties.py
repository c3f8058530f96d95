"""Invariants of the arithmetic, over random models (hypothesis).

Each property is stated from what the attention designs mean, not from the code:
linear in batch, linear in context until a window saturates, MQA == GQA with one KV
head, MHA == GQA * heads / kv_heads, fp8 is half of bf16, int4 half of fp8.
"""

from hypothesis import given
from hypothesis import strategies as st

from kvcalc.estimate import estimate
from kvcalc.sources.presets import spec_from_data


def make_spec(heads, kv_heads, head_dim, layers, kind="gqa", window=None, dtype="bf16"):
    kinds = {"full": {"type": "full"}}
    pattern = ["full"]
    if window:
        kinds = {"local": {"type": "sliding", "window": window}, "full": {"type": "full"}}
        pattern = ["local", "full"]
    attention = {"kind": kind, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}
    return spec_from_data(
        {
            "name": "prop",
            "source": ["test"],
            "parameters": "-",
            "max_context": 1 << 30,
            "dtype": dtype,
            "attention": attention,
            "layers": {"count": layers, "kinds": kinds, "pattern": pattern},
        },
        origin="prop",
    )


@st.composite
def gqa_models(draw):
    kv_heads = draw(st.integers(1, 16))
    group = draw(st.integers(1, 8))
    head_dim = draw(st.sampled_from([64, 80, 96, 128, 256]))
    layers = draw(st.integers(2, 128))
    return kv_heads * group, kv_heads, head_dim, layers


contexts = st.integers(1, 1 << 20)
batches = st.integers(1, 256)


@given(gqa_models(), contexts, batches)
def test_linear_in_batch(model, context, batch):
    spec = make_spec(*model)
    one = estimate(spec, context=context, batch=1).total_bytes
    assert estimate(spec, context=context, batch=batch).total_bytes == one * batch


@given(gqa_models(), contexts, st.integers(2, 64))
def test_linear_in_context_without_window(model, context, factor):
    spec = make_spec(*model)
    base = estimate(spec, context=context)
    assert estimate(spec, context=context * factor).total_bytes == base.total_bytes * factor
    assert base.total_bytes == base.bytes_per_token * context


@given(gqa_models(), st.integers(1, 8192), st.integers(1, 1 << 20))
def test_sliding_layer_linear_then_saturates(model, window, context):
    heads, kv_heads, head_dim, layers = model
    layers += layers % 2  # whole local/full pairs
    spec = make_spec(heads, kv_heads, head_dim, layers, window=window)
    per_layer_token = 2 * kv_heads * head_dim * 2
    result = estimate(spec, context=context)
    local, full = result.groups
    assert local.tokens == min(context, window)
    assert full.tokens == context
    assert local.bytes == (layers // 2) * per_layer_token * min(context, window)
    # below the window the whole model is linear in context
    if 2 * context <= window:
        assert estimate(spec, context=2 * context).total_bytes == 2 * result.total_bytes
    # past it, the local layers stop growing
    if context >= window:
        grown = estimate(spec, context=context + 1000).groups[0]
        assert grown.bytes == local.bytes


@given(gqa_models())
def test_mqa_equals_gqa_with_one_kv_head(model):
    heads, _, head_dim, layers = model
    mqa = make_spec(heads, 1, head_dim, layers, kind="mqa")
    gqa = make_spec(heads, 1, head_dim, layers, kind="gqa")
    assert estimate(mqa, context=4096).total_bytes == estimate(gqa, context=4096).total_bytes


@given(gqa_models(), contexts)
def test_mha_is_gqa_times_group_size(model, context):
    heads, kv_heads, head_dim, layers = model
    mha = estimate(make_spec(heads, heads, head_dim, layers, kind="mha"), context=context)
    gqa = estimate(make_spec(heads, kv_heads, head_dim, layers), context=context)
    assert mha.total_bytes * kv_heads == gqa.total_bytes * heads


@given(gqa_models(), contexts, batches)
def test_dtype_widths(model, context, batch):
    spec = make_spec(*model)
    size = {d: estimate(spec, context=context, batch=batch, kv_dtype=d).total_bytes
            for d in ("fp32", "bf16", "fp16", "fp8", "int8", "int4")}
    assert size["fp8"] * 2 == size["bf16"] == size["fp16"] == size["fp32"] // 2
    assert size["int8"] == size["fp8"] == size["int4"] * 2


def test_mla_latent_ignores_heads_and_expanded_grows_with_them():
    def mla(heads):
        return spec_from_data(
            {
                "name": "mla", "source": ["t"], "parameters": "-", "max_context": 4096, "dtype": "bf16",
                "attention": {"kind": "mla", "heads": heads, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
                              "qk_nope_head_dim": 128, "v_head_dim": 128},
                "layers": {"count": 10},
            },
            origin="t",
        )

    assert estimate(mla(16)).bytes_per_token == estimate(mla(128)).bytes_per_token == 10 * 576 * 2
    assert estimate(mla(128), mla_layout="expanded").bytes_per_token == 10 * 128 * (128 + 64 + 128) * 2
