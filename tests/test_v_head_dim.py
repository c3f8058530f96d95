"""Dense attention whose V heads are not as wide as its K heads (``v_head_dim``), through every
command: estimate, params, fit under TP, variants, compare, the labels, and verify's real layers.

The model: Xiaomi MiMo-V2-Flash's attention shape, 64 query heads, 4 KV heads, K heads 192 wide
and V heads 128 (head_dim 192, v_head_dim 128 in its config.json). Every expected number is
worked out by hand below from those published sizes.

SOURCE of MIMO_V2_FLASH below: the config.json of https://huggingface.co/XiaomiMiMo/MiMo-V2-Flash
(model_type mimo_v2_flash), its model-wide attention fields as public code that loads that
checkpoint quotes them field by field (the hub-spelling test configs of MiMo-V2-Flash ports for
mlx and Rust engines): 48 layers, hidden 4096, 64 heads, 4 KV heads, head_dim 192, v_head_dim 128,
max_position_embeddings 262144, bfloat16. Its swa_* fields and hybrid_layer_pattern (the
sliding layers' own 8 KV heads) belong to the layer reader and to that family's own fixture in
tests/fixtures/configs/, so they are left out here: this file checks the model-wide widths.
"""

from __future__ import annotations

import pytest
from fitting import fit_with as fit

from kvcalc.capacity.params import attention_parameters, parameter_count
from kvcalc.compare import compare_rows
from kvcalc.estimate import estimate
from kvcalc.render import attention_label
from kvcalc.sources.config_json import spec_from_config
from kvcalc.spec import DenseAttention, ModelSpec, Weights
from kvcalc.variants import compare_variants

MIMO_V2_FLASH = {
    "architectures": ["MiMoV2FlashForCausalLM"], "model_type": "mimo_v2_flash", "hidden_size": 4096,
    "num_hidden_layers": 48, "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 192,
    "v_head_dim": 128, "max_position_embeddings": 262144, "torch_dtype": "bfloat16",
}


def k192_v128(layers: int = 48, **extra) -> ModelSpec:
    return ModelSpec.model_validate({
        "name": "k192-v128",
        "source": "test: MiMo-V2-Flash's full-attention shape",
        "parameters": "test",
        "max_context": 262144,
        "dtype": "bf16",
        "hidden_size": 4096,
        "attention": {"kind": "gqa", "heads": 64, "kv_heads": 4, "head_dim": 192, "v_head_dim": 128},
        "layers": {"count": layers},
        **extra,
    })


# ---- the formula ------------------------------------------------------------------------


def test_bytes_per_token_by_hand():
    # per layer: 4 KV heads x (192 K + 128 V) elements x 2 bytes (bf16) = 2,560 B; 48 layers
    assert estimate(k192_v128(), context=1).bytes_per_token == 48 * 4 * (192 + 128) * 2 == 122_880


def test_total_at_a_context_and_batch():
    # 122,880 B per token x 1,000 tokens x 3 sequences
    result = estimate(k192_v128(), context=1000, batch=3)
    assert result.total_bytes == 48 * 4 * (192 + 128) * 2 * 1000 * 3 == 368_640_000


def test_fp8_halves_it_and_equal_widths_match_plain_head_dim():
    assert estimate(k192_v128(), context=1, kv_dtype="fp8").bytes_per_token == 48 * 4 * (192 + 128) * 1
    same = DenseAttention(kind="gqa", heads=64, kv_heads=4, head_dim=128, v_head_dim=128)
    plain = DenseAttention(kind="gqa", heads=64, kv_heads=4, head_dim=128)
    assert same.kv_elements_per_token() == plain.kv_elements_per_token() == 2 * 4 * 128


def test_v_head_dim_is_bounded_and_strict():
    with pytest.raises(ValueError):
        DenseAttention(kind="gqa", heads=64, kv_heads=4, head_dim=192, v_head_dim=0)
    with pytest.raises(ValueError):
        DenseAttention(kind="gqa", heads=64, kv_heads=4, head_dim=192, v_head_dim="128")


# ---- parameters -------------------------------------------------------------------------


def test_attention_parameters_use_each_width():
    a = k192_v128().attention
    w = Weights(vocab_size=152576, tied_embeddings=False, mlp={"kind": "gated", "intermediate_size": 16384})
    matrices, small = attention_parameters(a, 4096, w)
    q = 4096 * 64 * 192  # q_proj: hidden x heads x head_dim
    k = 4096 * 4 * 192  # k_proj: hidden x kv_heads x head_dim
    v = 4096 * 4 * 128  # v_proj: hidden x kv_heads x v_dim
    o = 64 * 128 * 4096  # o_proj: heads x v_dim x hidden
    assert matrices == q + k + v + o == 89_128_960
    assert small == 0


def test_qkv_bias_and_the_whole_count():
    w = {"vocab_size": 1000, "tied_embeddings": True, "qkv_bias": True,
         "mlp": {"kind": "gated", "intermediate_size": 8192}}
    spec = k192_v128(layers=2, weights=w)
    count = parameter_count(spec)
    attention = 4096 * 64 * 192 + 4096 * 4 * 192 + 4096 * 4 * 128 + 64 * 128 * 4096
    bias = 64 * 192 + 4 * 192 + 4 * 128  # q, k, v biases
    mlp = 3 * 4096 * 8192
    norms = 2 * 4096  # two RMS norms per layer
    assert count.total == 1000 * 4096 + 2 * (attention + bias + mlp + norms) + 4096


# ---- fit under tensor parallelism ---------------------------------------------------------


@pytest.mark.parametrize("tp, heads_per_gpu", [(1, 4), (2, 2), (4, 1), (8, 1)])
def test_fit_per_gpu_bytes_per_token(tp, heads_per_gpu):
    result = fit(k192_v128(), None, tp=tp, context=4096, reserve=0, weights_bytes=0, search_min=False)
    # each GPU holds max(1, 4 // tp) KV heads of 192 + 128 elements, 2 bytes each, in all 48 layers
    assert result.kv_heads_per_gpu == heads_per_gpu
    assert result.kv_bytes_per_token_per_gpu == 48 * heads_per_gpu * (192 + 128) * 2


def test_fit_int8_scales_count_k_and_v_once_each():
    # vLLM int8: 1 byte per element plus an fp32 scale per token, head, K and V
    result = fit(k192_v128(), None, tp=1, context=4096, kv_dtype="int8", reserve=0, weights_bytes=0,
                 search_min=False)
    assert result.kv_bytes_per_token_per_gpu == 48 * (4 * (192 + 128) * 1 + 2 * 4 * 4)


def test_fit_nvfp4_scales_follow_each_width():
    # nvfp4: half a byte per element plus an fp8 scale per 16 values of K and of V (vLLM's
    # nvfp4_kv_cache_full_dim: head_size // 2 + head_size // 16 bytes a side)
    result = fit(k192_v128(), None, tp=1, context=4096, kv_dtype="nvfp4", reserve=0, weights_bytes=0,
                 search_min=False)
    per_layer = 4 * (192 + 128) // 2 + 4 * (192 // 16 + 128 // 16) * 1
    assert result.kv_bytes_per_token_per_gpu == 48 * per_layer


def test_fit_int4_is_vllms_int4_per_token_head():
    # vLLM int4_per_token_head: half a byte per element plus an inline fp32 scale per token, head,
    # K and V (triton_attn.py customize_spec: (hs_k // 2 + hs_v // 2) + 2 * 4 bytes per head)
    result = fit(k192_v128(), None, tp=1, context=4096, kv_dtype="int4", reserve=0, weights_bytes=0,
                 search_min=False)
    assert result.kv_bytes_per_token_per_gpu == 48 * 4 * ((192 // 2 + 128 // 2) + 2 * 4)


def test_estimate_counts_nvfp4_as_fit_does_and_int4_without_scales():
    import kvcalc

    spec = kvcalc.load_preset("llama-3-70b")  # 80 layers, 8 KV heads of 128
    assert kvcalc.estimate(spec, context=8192, kv_dtype="int4").bytes_per_token == 80 * 8 * 256 // 2  # 81,920
    nvfp4 = 80 * 8 * (256 // 2 + 2 * (128 // 16))  # 92,160: an fp8 scale per 16 values of K and of V
    assert kvcalc.estimate(spec, context=8192, kv_dtype="nvfp4").bytes_per_token == nvfp4
    r = fit(spec, None, tp=1, context=8192, kv_dtype="nvfp4", reserve=0, weights_bytes=0, search_min=False)
    assert r.kv_bytes_per_token_per_gpu == nvfp4


# ---- labels, variants, compare ----------------------------------------------------------


def test_labels_show_both_widths():
    spec = k192_v128()
    assert attention_label(spec.attention) == "gqa 64 heads / 4 KV x k192/v128"
    assert compare_rows([spec], [1])[0].kv_label() == "4 x k192/v128"
    plain = DenseAttention(kind="gqa", heads=64, kv_heads=4, head_dim=128)
    assert attention_label(plain) == "gqa 64 heads / 4 KV x 128"


def test_variants_keep_the_models_k_and_v_widths():
    rows = {r.variant: r for r in compare_variants(k192_v128(), context=1)}
    assert rows["mha"].result.bytes_per_token == 48 * 64 * (192 + 128) * 2
    assert rows["mqa"].result.bytes_per_token == 48 * 1 * (192 + 128) * 2
    assert rows["gqa-4"].is_actual and rows["gqa-4"].result.bytes_per_token == 48 * 4 * (192 + 128) * 2
    assert rows["mqa"].attention == "1 KV x k192/v128"
    # MLA what-ifs: rank 4 x 192, rope 192 / 2, per head K 192 + 96 and V 128
    assert rows["mla-latent"].result.bytes_per_token == 48 * (4 * 192 + 96) * 2
    assert rows["mla-expanded"].result.bytes_per_token == 48 * 64 * (192 + 96 + 128) * 2


# ---- config.json ------------------------------------------------------------------------


def test_mimo_config_reads_k_and_v_widths():
    spec = spec_from_config(MIMO_V2_FLASH, "mimo-v2-flash/config.json")
    a = spec.attention
    assert (a.kind, a.heads, a.kv_heads, a.head_dim, a.v_head_dim) == ("gqa", 64, 4, 192, 128)
    assert not [n for n in spec.notes if n.startswith("unread:")]
    # no layer_types: as MiMoV2FlashConfig builds them, layers 0, 5, 11, ..., 47 (9) are full with
    # 4 KV heads, the other 39 slide with twice the KV heads; (192 + 128) x 2 bytes each
    assert estimate(spec, context=1).bytes_per_token == 9 * 4 * (192 + 128) * 2 + 39 * 8 * (192 + 128) * 2
    # the sliding layers hold MiMoV2FlashConfig's default window of 129 tokens
    assert estimate(spec, context=4096).total_bytes == (9 * 4096 * 4 + 39 * 129 * 8) * 320 * 2


def test_equal_v_head_dim_is_left_unset():
    data = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
            "hidden_size": 1024, "head_dim": 128, "v_head_dim": 128, "max_position_embeddings": 4096,
            "torch_dtype": "bfloat16"}
    spec = spec_from_config(data, "equal.json")
    assert spec.attention.v_head_dim is None
    assert not [n for n in spec.notes if "v_head_dim" in n]


def test_bad_v_head_dim_is_one_line_error():
    from kvcalc.errors import PresetError

    data = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
            "hidden_size": 1024, "head_dim": 128, "v_head_dim": -3, "max_position_embeddings": 4096}
    with pytest.raises(PresetError, match="v_head_dim must be a positive whole number") as info:
        spec_from_config(data, "bad.json")
    assert "\n" not in str(info.value)


# ---- verify: real layers, measured ----------------------------------------------------------


def test_verify_measures_v_of_its_own_width():
    pytest.importorskip("torch")
    from kvcalc.verify.runner import verify

    small = ModelSpec.model_validate({
        "name": "k48-v32", "source": "test", "parameters": "test", "max_context": 4096, "dtype": "fp32",
        "hidden_size": 128,
        "attention": {"kind": "gqa", "heads": 8, "kv_heads": 2, "head_dim": 48, "v_head_dim": 32},
        "layers": {"count": 2},
    })
    for cache in ("static", "dynamic", "paged"):
        r = verify(small, context=40, batch=2, cache=cache, layers=2)
        assert r.match, cache
        # 2 layers x 2 KV heads x (48 + 32) elements x 4 bytes x 40 tokens x 2 sequences
        tokens = 48 if cache == "paged" else 40  # paged: whole 16-token blocks
        assert r.measured_bytes == 2 * 2 * (48 + 32) * 4 * tokens * 2


def test_dense_layer_caches_v_at_v_dim():
    torch = pytest.importorskip("torch")
    from kvcalc.verify.caches import Codec, StaticCache
    from kvcalc.verify.layers import DenseLayer

    a = DenseAttention(kind="gqa", heads=4, kv_heads=2, head_dim=12, v_head_dim=6)
    layer = DenseLayer(a, 16, torch.float64, "cpu", torch.Generator().manual_seed(0))
    cache = StaticCache(Codec("fp32", torch.float64), 1, layer.cache_feats(), "cpu", capacity=5)
    out = layer(torch.randn(1, 5, 16, dtype=torch.float64), torch.arange(5), cache)
    assert out.shape == (1, 5, 16)
    k, v = cache.data_tensors()
    assert tuple(k.shape) == (1, 5, 2, 12) and tuple(v.shape) == (1, 5, 2, 6)
    assert tuple(layer.wv.shape) == (16, 2 * 6) and tuple(layer.wo.shape) == (4 * 6, 16)


def test_kv_formats_by_their_engine_names(runner, kvcalc_app):
    def fit_cli(*args):
        return runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpus", "4", "--tp", "4", "-c", "8k", *args])

    vllm_int4 = fit_cli("--gpu", "h100", "--kv-dtype", "int4", "--emit", "vllm")
    assert vllm_int4.exit_code == 0 and "--kv-cache-dtype int4_per_token_head" in vllm_int4.stdout
    vllm_nvfp4 = fit_cli("--gpu", "h100", "--kv-dtype", "nvfp4", "--emit", "vllm")  # vLLM runs it on SM90 (FA2)
    assert vllm_nvfp4.exit_code == 0 and "--kv-cache-dtype nvfp4" in vllm_nvfp4.stdout
    refused = fit_cli("--gpu", "h100", "--kv-dtype", "nvfp4", "--emit", "sglang")  # SGLang: SM100/SM120 only
    assert refused.exit_code == 2 and "compute capability 10.0" in refused.stderr
    blackwell = fit_cli("--gpu", "b200", "--kv-dtype", "nvfp4", "--emit", "sglang")
    assert blackwell.exit_code == 0 and "--kv-cache-dtype nvfp4" in blackwell.stdout
    warned = fit_cli("--gpu", "h100", "--kv-dtype", "int4", "--engine", "sglang")
    assert warned.exit_code == 0 and "SGLang 0.5.23 has no int4 KV cache" in warned.stderr
    no_emit = fit_cli("--gpu", "h100", "--kv-dtype", "int4", "--emit", "sglang")
    assert no_emit.exit_code == 2


def test_verify_refuses_nvfp4_in_one_line(runner, kvcalc_app):
    done = runner.invoke(kvcalc_app, ["verify", "llama-3-8b", "-c", "64", "--kv-dtype", "nvfp4"])
    assert done.exit_code == 2 and "nvfp4 is counted by estimate and fit" in done.stderr
