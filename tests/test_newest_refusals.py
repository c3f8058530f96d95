"""The newest architectures kvcalc cannot size yet are refused by name, one line, exit 1 (issue 19):
no released config.json of MiniMax-M3, DeepSeek-V4, GLM-5.2 or Kimi-K3 was found to check a reading
against, so none is estimated."""

from __future__ import annotations

import json

import pytest

BASE = {"num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 512,
        "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("config, words", [
    ({"model_type": "minimax_m3_vl_text", "index_n_heads": 4, "index_head_dim": 128, "index_block_size": 128},
     "lightning-indexer keys"),
    ({"model_type": "minimax_m3_vl", "text_config": {**BASE, "model_type": "minimax_m3_vl_text"}},
     "lightning-indexer keys"),
    ({"model_type": "deepseek_v4", "compress_rates": [4, 128]}, "compressed sparse attention"),
    ({"model_type": "kimi_k3"}, "Kimi Delta Attention"),
    ({"model_type": "some_new_kda_model", "linear_attn_config": {"kda_layers": [1, 2, 3], "num_heads": 32}},
     "linear_attn_config: Kimi Delta Attention layers"),
    ({"model_type": "hy_v4"}, "share another layer's indexer keys"),
])
def test_refused_by_name_in_one_line(config, words, runner, kvcalc_app, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**BASE, **config}))
    result = runner.invoke(kvcalc_app, ["estimate", str(path), "-c", "1k"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_glm_dsa_layers_sharing_an_indexer_are_refused(runner, kvcalc_app, tmp_path):
    # GLM-5-style DSA: MLA with an indexer, and layers that reuse another layer's indexer keys
    config = {**BASE, "model_type": "glm_moe_dsa", "kv_lora_rank": 512, "qk_rope_head_dim": 64,
              "qk_nope_head_dim": 192, "v_head_dim": 256, "q_lora_rank": 2048, "index_head_dim": 128,
              "index_n_heads": 32, "index_topk": 2048, "indexer_types": ["full", "shared", "shared", "full"]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = runner.invoke(kvcalc_app, ["estimate", str(path), "-c", "1k"])
    assert result.exit_code == 1 and "shared" in result.stderr and "Traceback" not in result.output
