"""KV-reading fixes found while counting weights: DBRX's attn_config.kv_n_heads, JetMoE's derived head count,
GLM-4-MoE-Lite's head_dim that is its qk_rope_head_dim, and HRM-Text's cache slots in an older config.

Every expected byte count is written out by hand from the config's own fields (layers x KV heads x (K + V
width) x bytes, or layers x MLA latent x bytes); where transformers can run the model on the meta device, the
same config goes through ``kvcalc verify --reference transformers`` too (skipped without torch/transformers).
"""

from __future__ import annotations

import copy
import json

import pytest

from kvcalc.errors import PresetError
from kvcalc.estimate import estimate
from kvcalc.sources.config_json import spec_from_config
from kvcalc.sources.config_weights import SKIP


def read(data: dict):
    return spec_from_config(data, "test/config.json")


def per_token(data: dict) -> int:
    return estimate(read(data), context=1).bytes_per_token


def unread(spec) -> list[str]:
    return [n for n in spec.notes if n.startswith("unread:")]


def verify(tmp_path, data: dict, tokens: int) -> dict:
    """kvcalc's cache beside what transformers 5.24 holds after a forward of ``tokens`` on the meta device."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from kvcalc.cli import app

    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["verify", str(path), "--reference", "transformers", "-c", str(tokens), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------- 1. DBRX: attn_config.kv_n_heads

# databricks/dbrx-instruct's config.json fields (as in tests/test_weights_moe2.py DBRX_INSTRUCT)
DBRX_INSTRUCT = {
    "architectures": ["DbrxForCausalLM"], "model_type": "dbrx", "d_model": 6144, "n_heads": 48, "n_layers": 40,
    "max_seq_len": 32768, "vocab_size": 100352,
    "attn_config": {"clip_qkv": 8, "kv_n_heads": 8, "rope_theta": 500000},
    "ffn_config": {"ffn_hidden_size": 10752, "moe_num_experts": 16, "moe_top_k": 4},
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def test_dbrx_instruct_caches_kv_n_heads():
    spec = read(DBRX_INSTRUCT)
    assert (spec.attention.heads, spec.attention.kv_heads, spec.attention.head_dim) == (48, 8, 6144 // 48)
    # K and V x 40 layers x kv_n_heads 8 x head_dim 6144 / 48 = 128 x 2 bytes (bf16); it was 48 KV heads: 983,040
    assert per_token(DBRX_INSTRUCT) == 2 * 40 * 8 * 128 * 2 == 163_840
    assert unread(spec) == []  # clip_qkv clamps values, it does not change what is cached
    assert not any(n.startswith(SKIP) for n in spec.notes)  # and the weights are counted (test_weights_moe2)


def test_dbrx_kv_n_heads_default_is_one():
    # DbrxAttentionConfig.kv_n_heads defaults to 1 (configuration_dbrx.py 42), a missing attn_config too
    no_kv = copy.deepcopy(DBRX_INSTRUCT)
    del no_kv["attn_config"]["kv_n_heads"]
    assert read(no_kv).attention.kv_heads == 1
    assert per_token(no_kv) == 2 * 40 * 1 * 128 * 2
    assert any("DbrxAttentionConfig's default is 1" in n for n in read(no_kv).notes)
    bare = {k: v for k, v in DBRX_INSTRUCT.items() if k != "attn_config"}
    assert per_token(bare) == 2 * 40 * 1 * 128 * 2


def test_dbrx_top_level_kv_heads_never_decide():
    data = DBRX_INSTRUCT | {"num_key_value_heads": 48}  # DbrxConfig overwrites it from kv_n_heads (153)
    spec = read(data)
    assert spec.attention.kv_heads == 8
    assert any(n.startswith("ignored: num_key_value_heads 48") for n in spec.notes)


@pytest.mark.parametrize("bad", [0, 7, 96, "8", True])
def test_dbrx_bad_kv_n_heads_is_refused(bad):
    data = copy.deepcopy(DBRX_INSTRUCT)
    data["attn_config"]["kv_n_heads"] = bad
    with pytest.raises(PresetError, match="attn_config.kv_n_heads must be"):
        read(data)


def test_dbrx_cache_is_what_transformers_holds(tmp_path):
    data = {"model_type": "dbrx", "d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 100, "max_seq_len": 128,
            "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8},
            "ffn_config": {"ffn_hidden_size": 32, "moe_num_experts": 4, "moe_top_k": 2}, "torch_dtype": "bfloat16"}
    result = verify(tmp_path, data, 8)
    # 2 layers x 8 tokens x 2 KV heads x (16 + 16) (head_dim 64 / 4) x 2 bytes
    assert result["ok"] and result["kvcalc_bytes"] == result["transformers_bytes"] == 2 * 8 * 2 * (16 + 16) * 2


# ---------------------------------------------------------------- 2. JetMoE: heads = kv heads x experts per token

# jetmoe/jetmoe-8b's config.json fields as recalled (no stored copy was found): no num_attention_heads
JETMOE_8B = {
    "architectures": ["JetMoEForCausalLM"], "model_type": "jetmoe", "vocab_size": 32000, "hidden_size": 2048,
    "num_hidden_layers": 24, "num_key_value_heads": 16, "kv_channels": 128, "intermediate_size": 5632,
    "num_local_experts": 8, "num_experts_per_tok": 2, "max_position_embeddings": 4096, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}


def test_jetmoe_without_num_attention_heads_is_read():
    spec = read(JETMOE_8B)  # refused before: num_attention_heads missing
    assert (spec.attention.heads, spec.attention.kv_heads, spec.attention.head_dim) == (16 * 2, 16, 128)
    # K and V x 24 layers x 16 KV heads x kv_channels 128 x 2 bytes
    assert per_token(JETMOE_8B) == 2 * 24 * 16 * 128 * 2


@pytest.mark.parametrize("stated", [16, 64])
def test_jetmoe_stated_heads_are_recomputed(stated):
    spec = read(JETMOE_8B | {"num_attention_heads": stated})
    assert spec.attention.heads == 16 * 2  # num_key_value_heads x num_experts_per_tok
    assert any(n.startswith(f"ignored: num_attention_heads {stated}") for n in spec.notes)
    assert not any(n.startswith(SKIP) for n in spec.notes)  # the weights builder's shape check holds now
    assert per_token(JETMOE_8B | {"num_attention_heads": stated}) == 2 * 24 * 16 * 128 * 2


def test_jetmoe_class_defaults():
    # JetMoeConfig: num_key_value_heads 16, num_experts_per_tok 2, kv_channels 128 (configuration_jetmoe.py 52-58)
    left_out = ("num_key_value_heads", "num_experts_per_tok", "kv_channels")
    data = {k: v for k, v in JETMOE_8B.items() if k not in left_out}
    spec = read(data)
    assert (spec.attention.heads, spec.attention.kv_heads, spec.attention.head_dim) == (32, 16, 128)
    assert per_token(data) == 2 * 24 * 16 * 128 * 2


def test_jetmoe_heads_and_kv_width_are_what_transformers_builds():
    # transformers cannot run JetMoE on the meta device (model_types.UNVERIFIED), so the built shapes are compared
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    one_layer = JETMOE_8B | {"num_hidden_layers": 1}
    for data in (one_layer, one_layer | {"num_attention_heads": 64}):
        spec = read(data)
        config = transformers.JetMoeConfig(**{k: v for k, v in data.items() if k != "architectures"})
        if "num_attention_heads" not in data:  # JetMoeConfig derives it (configuration_jetmoe.py 72)
            assert config.num_attention_heads == spec.attention.heads == 16 * 2
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        attention = model.model.layers[0].self_attention
        # the query heads the model runs: top-k experts x (num_key_value_heads x kv_channels) / kv_channels
        assert attention.top_k * attention.kv_projection_size // attention.head_dim == spec.attention.heads == 32
        # kv_proj makes K and V of num_key_value_heads x kv_channels each (modeling_jetmoe.py 442, 449)
        assert attention.kv_proj.out_features == 2 * spec.attention.kv_heads * spec.attention.head_dim == 2 * 16 * 128


# ---------------------------------------------------------------- 3. GLM-4-MoE-Lite: head_dim is qk_rope_head_dim

# zai-org/GLM-4.7-Flash's attention fields (its config.json states no head_dim)
GLM_47_FLASH = {
    "architectures": ["Glm4MoeLiteForCausalLM"], "model_type": "glm4_moe_lite", "vocab_size": 154880,
    "hidden_size": 2048, "intermediate_size": 10240, "moe_intermediate_size": 1536, "num_hidden_layers": 47,
    "num_attention_heads": 20, "num_key_value_heads": 20, "q_lora_rank": 768, "kv_lora_rank": 512,
    "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "v_head_dim": 256, "n_routed_experts": 64,
    "n_shared_experts": 1, "num_experts_per_tok": 4, "max_position_embeddings": 202752, "torch_dtype": "bfloat16",
}


def test_glm47_flash_latent():
    # 47 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes
    assert per_token(GLM_47_FLASH) == 47 * (512 + 64) * 2
    assert per_token(GLM_47_FLASH | {"head_dim": 64}) == 47 * (512 + 64) * 2


def test_glm4_moe_lite_head_dim_sizes_the_rope_key():
    # Glm4MoeLiteConfig.attribute_map sends head_dim to qk_rope_head_dim: head_dim 128 wins over 64
    spec = read(GLM_47_FLASH | {"head_dim": 128})
    assert spec.attention.qk_rope_head_dim == 128
    assert per_token(GLM_47_FLASH | {"head_dim": 128}) == 47 * (512 + 128) * 2
    assert unread(spec) == []
    alone = {k: v for k, v in GLM_47_FLASH.items() if k != "qk_rope_head_dim"} | {"head_dim": 64}
    assert per_token(alone) == 47 * (512 + 64) * 2  # head_dim alone names the rope width


def test_glm4_moe_lite_head_dim_is_what_transformers_holds(tmp_path):
    data = {"model_type": "glm4_moe_lite", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
            "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
            "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "head_dim": 16,
            "v_head_dim": 16, "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 1,
            "topk_group": 1, "max_position_embeddings": 128, "torch_dtype": "bfloat16"}
    result = verify(tmp_path, data, 8)
    # 2 layers x 8 tokens x (kv_lora_rank 32 + head_dim 16, not qk_rope_head_dim 8) x 2 bytes
    assert result["ok"] and result["kvcalc_bytes"] == result["transformers_bytes"] == 2 * 8 * (32 + 16) * 2


@pytest.mark.parametrize("model_type", ["deepseek_v2", "deepseek_v3", "youtu", "minicpm3", "glm_moe_dsa", "sarvam_mla"])
def test_other_mla_types_keep_qk_rope_head_dim(model_type):
    # their config classes keep head_dim apart from qk_rope_head_dim (or pop it), and their attention sizes the
    # rope key from qk_rope_head_dim
    data = GLM_47_FLASH | {"model_type": model_type, "head_dim": 128}
    spec = read(data)
    assert spec.attention.qk_rope_head_dim == 64
    assert per_token(data) == 47 * (512 + 64) * 2
    assert any(n.startswith("ignored: head_dim 128") for n in spec.notes) and unread(spec) == []


# ---------------------------------------------------------------- 4. HRM-Text: cache slots of an older config

HRM_OLD = {"model_type": "hrm_text", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 16, "H_cycles": 2, "L_cycles": 1,
           "max_position_embeddings": 128, "torch_dtype": "bfloat16"}


def test_hrm_text_older_config_counts_every_slot():
    spec = read(HRM_OLD)  # no num_layers_per_stack: num_hidden_layers 2 is the per-stack count
    assert spec.layers.count == 2 * 2 * (1 + 1)  # num_layers_per_stack x H_cycles x (L_cycles + 1)
    # 8 slots x 4 heads x (16 + 16) x 2 bytes
    assert per_token(HRM_OLD) == 8 * 4 * (16 + 16) * 2
    assert not any(n.startswith(SKIP) for n in spec.notes)  # the weights read the stack count the same way


def test_hrm_text_defaults_and_new_format():
    # HrmTextConfig defaults: H_cycles 2, L_cycles 3 (configuration_hrm_text.py 93-94)
    old = {k: v for k, v in HRM_OLD.items() if k not in ("H_cycles", "L_cycles")}
    assert read(old).layers.count == 2 * 2 * (3 + 1)
    new = HRM_OLD | {"num_layers_per_stack": 2, "num_hidden_layers": 8}  # as HrmTextConfig saves itself
    assert read(new).layers.count == 8
    assert per_token(new) == per_token(HRM_OLD)


def test_hrm_text_inconsistent_pair_is_refused():
    with pytest.raises(PresetError, match="num_hidden_layers 6 is not num_layers_per_stack 2"):
        read(HRM_OLD | {"num_layers_per_stack": 2, "num_hidden_layers": 6})


def test_hrm_text_older_config_is_what_transformers_holds(tmp_path):
    result = verify(tmp_path, HRM_OLD, 8)
    # 8 slots x 8 tokens x 4 heads x (16 + 16) x 2 bytes
    assert result["ok"] and result["kvcalc_bytes"] == result["transformers_bytes"] == 8 * 8 * 4 * (16 + 16) * 2
