"""Every preset's exact parameter count, derived by hand and checked against published totals.

Expected totals are written as arithmetic from /work/shared/reference/model_facts.yaml and
the model code (norms, biases, tied heads), never computed by kvcalc. Published totals are
a Hub parameter count or a bf16 checkpoint's safetensors ``total_size`` / 2 bytes.

Per layer, dense attention is q + k + v + o = h*H*d + 2*h*KV*d + H*d*h; a gated MLP is
3*h*I, a plain one 2*h*I; an RMSNorm has h weights, a LayerNorm 2*h.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kvcalc.capacity.params import parameter_count
from kvcalc.sources.presets import load_file

PRESET_DIR = Path(__file__).parent.parent / "model_presets"
PRESET_FILES = sorted(PRESET_DIR.glob("*.yaml"))
RAW = {path.stem: yaml.safe_load(path.read_text()) for path in PRESET_FILES}
WITH_WEIGHTS = sorted(name for name, raw in RAW.items() if raw.get("weights") is not None)


def count_of(name: str):
    return parameter_count(load_file(PRESET_DIR / f"{name}.yaml"))


EXPECTED_TOTAL = {
    # Llama: SwiGLU, two RMSNorms per layer, untied head, no biases.
    "llama-2-7b": (
        2 * 32000 * 4096  # embedding + head, vocab 32000
        + 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096)  # MHA, FFN 11008
        + 4096
    ),
    "llama-2-70b": (
        2 * 32000 * 8192
        + 80 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192)  # q+o, k+v (8 KV heads)
        + 8192
    ),
    "llama-3-8b": (
        2 * 128256 * 4096  # vocab 128256
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096)
        + 4096
    ),
    "llama-3-70b": (
        2 * 128256 * 8192
        + 80 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192)
        + 8192
    ),
    "llama-3.1-405b": (
        2 * 128256 * 16384
        + 126 * (2 * 16384 * 16384 + 2 * 16384 * 8 * 128 + 3 * 16384 * 53248 + 2 * 16384)  # FFN 53248
        + 16384
    ),
    # Llama 4 Scout: 16 experts + 1 shared of 8192 and a 5120 x 16 router in all 48 layers;
    # the vision encoder (850,960,896) and projector (4096*5120) of the checkpoint, derived in the preset.
    "llama-4-scout": (
        2 * 202048 * 5120
        + 48 * (2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + 17 * 3 * 5120 * 8192 + 5120 * 16 + 2 * 5120)
        + 5120
        + (
            588 * 1408 + 1408 + 577 * 1408 + 2 * 2 * 1408  # patch linear, class emb, positions, pre/post LN
            + 34 * (4 * (1408 * 1408 + 1408) + 1408 * 5632 + 5632 + 5632 * 1408 + 1408 + 2 * 2 * 1408)
            + 5632 * 4096 + 4096 * 4096  # pixel-shuffle adapter MLP
            + 4096 * 5120  # multi-modal projector
        )
    ),
    # Mistral
    "mistral-7b-v0.1": (
        2 * 32000 * 4096 + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096) + 4096
    ),
    "mixtral-8x7b": (
        2 * 32000 * 4096
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 8 * 3 * 4096 * 14336 + 4096 * 8 + 2 * 4096)  # 8 experts, router
        + 4096
    ),
    # Llama 3.1 / 3.2 (3.2 ties the head to the embedding: counted once).
    "llama-3.1-8b": (
        2 * 128256 * 4096
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 3 * 4096 * 14336 + 2 * 4096)
        + 4096
    ),
    "llama-3.1-70b": (
        2 * 128256 * 8192
        + 80 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 3 * 8192 * 28672 + 2 * 8192)
        + 8192
    ),
    "llama-3.2-1b": (
        128256 * 2048 + 16 * (2 * 2048 * 32 * 64 + 2 * 2048 * 8 * 64 + 3 * 2048 * 8192 + 2 * 2048) + 2048
    ),
    "llama-3.2-3b": (
        128256 * 3072 + 28 * (2 * 3072 * 24 * 128 + 2 * 3072 * 8 * 128 + 3 * 3072 * 8192 + 2 * 3072) + 3072
    ),
    # Mistral-Nemo: head_dim 128 with hidden 5120, vocab 131072.
    "mistral-nemo-12b": (
        2 * 131072 * 5120
        + 40 * (2 * 5120 * 32 * 128 + 2 * 5120 * 8 * 128 + 3 * 5120 * 14336 + 2 * 5120)
        + 5120
    ),
    "qwen2.5-14b": (
        2 * 152064 * 5120
        + 48 * (2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + (40 * 128 + 2 * 8 * 128) + 3 * 5120 * 13824 + 2 * 5120)
        + 5120
    ),
    "qwen3-32b": (
        2 * 151936 * 5120
        + 64 * (2 * 5120 * 64 * 128 + 2 * 5120 * 8 * 128 + 2 * 128 + 3 * 5120 * 25600 + 2 * 5120)
        + 5120
    ),
    # Qwen3-MoE: 128 experts and a bias-free router in every layer, q/k norms.
    "qwen3-30b-a3b": (
        2 * 151936 * 2048
        + 48 * (2 * 2048 * 32 * 128 + 2 * 2048 * 4 * 128 + 2 * 128 + 128 * 3 * 2048 * 768 + 2048 * 128 + 2 * 2048)
        + 2048
    ),
    "qwen3-235b-a22b": (
        2 * 151936 * 4096
        + 94 * (2 * 4096 * 64 * 128 + 2 * 4096 * 4 * 128 + 2 * 128 + 128 * 3 * 4096 * 1536 + 4096 * 128 + 2 * 4096)
        + 4096
    ),
    # Qwen2/2.5: biases on q, k, v (28*128 + 2*4*128 per layer for the 7B).
    "qwen2-7b": (
        2 * 152064 * 3584
        + 28 * (2 * 3584 * 28 * 128 + 2 * 3584 * 4 * 128 + (28 * 128 + 2 * 4 * 128) + 3 * 3584 * 18944 + 2 * 3584)
        + 3584
    ),
    "qwen2.5-7b": (
        2 * 152064 * 3584
        + 28 * (2 * 3584 * 28 * 128 + 2 * 3584 * 4 * 128 + (28 * 128 + 2 * 4 * 128) + 3 * 3584 * 18944 + 2 * 3584)
        + 3584
    ),
    "qwen2-72b": (
        2 * 152064 * 8192
        + 80 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + (8192 + 2 * 8 * 128) + 3 * 8192 * 29568 + 2 * 8192)
        + 8192
    ),
    # Qwen3: no biases, q_norm and k_norm of head_dim 128.
    "qwen3-8b": (
        2 * 151936 * 4096
        + 36 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128 + 2 * 128 + 3 * 4096 * 12288 + 2 * 4096)
        + 4096
    ),
    # Qwen3-Next: 36 Gated DeltaNet layers (33,718,464 each, derived in the preset), 12 gated full-attention
    # layers whose q_proj is doubled (queries + output gate), 512 experts + 1 shared of 512 everywhere.
    "qwen3-next-80b-a3b": (
        2 * 151936 * 2048
        + 36 * (2048 * (2 * 2048 + 2 * 4096) + 2048 * 64 + 8192 * 4 + 32 + 32 + 128 + 4096 * 2048)
        + 12 * (2048 * 2 * 16 * 256 + 2 * 2048 * 2 * 256 + 16 * 256 * 2048 + 2 * 256)
        + 48 * (512 * 3 * 2048 * 512 + 3 * 2048 * 512 + 2048 * 512 + 2048 + 2 * 2048)  # experts, shared, router, gate
        + 2048
    ),
    # Phi-3: fused qkv_proj and gate_up_proj, no biases, vocab 32064.
    "phi-3-mini-4k": 2 * 32064 * 3072 + 32 * (4 * 3072 * 3072 + 3 * 3072 * 8192 + 2 * 3072) + 3072,
    "phi-3-medium-4k": (
        2 * 32064 * 5120 + 40 * (2 * 5120 * 5120 + 2 * 5120 * 10 * 128 + 3 * 5120 * 17920 + 2 * 5120) + 5120
    ),
    # Gemma: tied embeddings (counted once), GeGLU, head_dim 256.
    "gemma-2b": 256000 * 2048 + 18 * (2 * 2048 * 8 * 256 + 2 * 2048 * 256 + 3 * 2048 * 16384 + 2 * 2048) + 2048,
    "gemma-7b": 256000 * 3072 + 28 * (4 * 3072 * 16 * 256 + 3 * 3072 * 24576 + 2 * 3072) + 3072,
    # Gemma 2: four RMSNorms per layer.
    "gemma-2-9b": (
        256000 * 3584 + 42 * (2 * 3584 * 16 * 256 + 2 * 3584 * 8 * 256 + 3 * 3584 * 14336 + 4 * 3584) + 3584
    ),
    "gemma-2-27b": (
        256000 * 4608 + 46 * (2 * 4608 * 32 * 128 + 2 * 4608 * 16 * 128 + 3 * 4608 * 36864 + 4 * 4608) + 4608
    ),
    # Gemma 3 (the -it checkpoint): vocab 262208, four norms, q/k norms, plus SigLIP tower and projector.
    "gemma-3-27b": (
        262208 * 5376
        + 62 * (2 * 5376 * 32 * 128 + 2 * 5376 * 16 * 128 + 2 * 128 + 3 * 5376 * 21504 + 4 * 5376)
        + 5376
        + (
            3 * 14 * 14 * 1152 + 1152 + 4096 * 1152  # patch conv, 64 x 64 positions
            + 27 * (4 * (1152 * 1152 + 1152) + 1152 * 4304 + 4304 + 4304 * 1152 + 1152 + 2 * 2 * 1152)
            + 2 * 1152  # post-layernorm
            + 1152 * 5376 + 1152  # projector and its soft-embedding norm
        )
    ),
    # GPT-2: tied head, 1024 learned positions, LayerNorms, biases everywhere.
    "gpt2": (
        50257 * 768 + 1024 * 768
        + 12 * (4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 2 * 2 * 768)
        + 2 * 768
    ),
    "gpt2-medium": (
        50257 * 1024 + 1024 * 1024
        + 24 * (4 * 1024 * 1024 + 4 * 1024 + 2 * 1024 * 4096 + 4096 + 1024 + 2 * 2 * 1024)
        + 2 * 1024
    ),
    "gpt2-large": (
        50257 * 1280 + 1024 * 1280
        + 36 * (4 * 1280 * 1280 + 4 * 1280 + 2 * 1280 * 5120 + 5120 + 1280 + 2 * 2 * 1280)
        + 2 * 1280
    ),
    "gpt2-xl": (
        50257 * 1600 + 1024 * 1600
        + 48 * (4 * 1600 * 1600 + 4 * 1600 + 2 * 1600 * 6400 + 6400 + 1600 + 2 * 2 * 1600)
        + 2 * 1600
    ),
    # BERT (BertModel): word, 512 positions, 2 token types, embedding LayerNorm; post-norm layers; pooler.
    "bert-base": (
        (30522 + 512 + 2) * 768 + 2 * 768
        + 12 * (4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 2 * 2 * 768)
        + 768 * 768 + 768
    ),
    "bert-large": (
        (30522 + 512 + 2) * 1024 + 2 * 1024
        + 24 * (4 * 1024 * 1024 + 4 * 1024 + 2 * 1024 * 4096 + 4096 + 1024 + 2 * 2 * 1024)
        + 1024 * 1024 + 1024
    ),
    # Falcon: tied head, LayerNorms, no Linear biases, plain GELU MLP of 4 x hidden.
    "falcon-7b": (
        65024 * 4544 + 32 * (4544 * (71 + 2) * 64 + 71 * 64 * 4544 + 2 * 4544 * 18176 + 2 * 4544) + 2 * 4544
    ),
    "falcon-40b": (
        65024 * 8192 + 60 * (8192 * (128 + 16) * 64 + 128 * 64 * 8192 + 2 * 8192 * 32768 + 2 * 2 * 8192) + 2 * 8192
    ),
    # PaLM: tied, MQA with head 256, parallel block with one bias-free norm, SwiGLU of 4 x d_model.
    "palm-8b": 256000 * 4096 + 32 * (2 * 4096 * 16 * 256 + 2 * 4096 * 256 + 3 * 4096 * 16384 + 4096) + 4096,
    "palm-62b": 256000 * 8192 + 64 * (2 * 8192 * 32 * 256 + 2 * 8192 * 256 + 3 * 8192 * 32768 + 8192) + 8192,
    "palm-540b": (
        256000 * 18432 + 118 * (2 * 18432 * 48 * 256 + 2 * 18432 * 256 + 3 * 18432 * 73728 + 18432) + 18432
    ),
    # MLA (DeepSeek): q_a + q_a_norm + q_b, kv_a (latent + rope key) + kv_a_norm + kv_b, o.
    "deepseek-v2": (
        2 * 102400 * 5120
        + 60 * (
            5120 * 1536 + 1536 + 1536 * 128 * 192
            + 5120 * (512 + 64) + 512 + 512 * 128 * (128 + 128)
            + 128 * 128 * 5120
            + 2 * 5120
        )
        + 3 * 5120 * 12288  # layer 0 dense
        + 59 * ((160 + 2) * 3 * 5120 * 1536 + 5120 * 160)  # 160 routed + 2 shared experts, router
        + 5120
    ),
    "deepseek-v2-lite": (
        2 * 102400 * 2048
        + 27 * (
            2048 * 16 * 192  # no q compression
            + 2048 * (512 + 64) + 512 + 512 * 16 * (128 + 128)
            + 16 * 128 * 2048
            + 2 * 2048
        )
        + 3 * 2048 * 10944
        + 26 * ((64 + 2) * 3 * 2048 * 1408 + 2048 * 64)
        + 2048
    ),
    "deepseek-v3": (
        2 * 129280 * 7168
        + 61 * (
            7168 * 1536 + 1536 + 1536 * 128 * 192
            + 7168 * (512 + 64) + 512 + 512 * 128 * (128 + 128)
            + 128 * 128 * 7168
            + 2 * 7168
        )
        + 3 * 3 * 7168 * 18432  # layers 0-2 dense
        + 58 * ((256 + 1) * 3 * 7168 * 2048 + 7168 * 256 + 256)  # router + e_score_correction_bias
        + 7168
    ),
    "kimi-k2": (
        2 * 163840 * 7168
        + 61 * (
            7168 * 1536 + 1536 + 1536 * 64 * 192
            + 7168 * (512 + 64) + 512 + 512 * 64 * (128 + 128)
            + 64 * 128 * 7168
            + 2 * 7168
        )
        + 3 * 7168 * 18432
        + 60 * ((384 + 1) * 3 * 7168 * 2048 + 7168 * 384 + 384)
        + 7168
    ),
    # Jamba: 4 attention layers, 28 Mamba mixers of 105,308,448 (derived in the preset), MoE on odd layers.
    "jamba-v0.1": (
        2 * 65536 * 4096
        + 4 * (2 * 4096 * 4096 + 2 * 4096 * 8 * 128)
        + 28 * (
            4096 * 2 * 8192 + 8192 * 4 + 8192 + 8192 * (256 + 2 * 16) + 256 * 8192 + 8192
            + 8192 * 16 + 8192 + 8192 * 4096 + 256 + 16 + 16
        )
        + 16 * 3 * 4096 * 14336  # even layers: dense
        + 16 * (16 * 3 * 4096 * 14336 + 4096 * 16)  # odd layers: 16 experts and a router
        + 32 * 2 * 4096
        + 4096
    ),
    # Llama-3.3-Nemotron-Super-49B: 49 of 80 blocks attend (64 heads, 8 KV heads of 128) with an input_layernorm,
    # 31 are no_op; every block a gated MLP of int(2 x ffn_mult x 8192 / 3) rounded up to 256 (block_configs):
    # 28672 in 49 blocks, 14336 in 6, 7168 in 10, 5632 in 8, 2816 in 6, 17920 in 1; untied head.
    "llama-3.3-nemotron-super-49b-v1": (
        2 * 128256 * 8192
        + 49 * (2 * 8192 * 8192 + 2 * 8192 * 8 * 128 + 8192)
        + 80 * 8192
        + 3 * 8192 * (49 * 28672 + 6 * 14336 + 10 * 7168 + 8 * 5632 + 6 * 2816 + 17920)
        + 8192
    ),
}

# (experts - experts_per_token) x one expert x MoE layers, left out of the active count.
EXPECTED_INACTIVE = {
    "mixtral-8x7b": 32 * (8 - 2) * 3 * 4096 * 14336,
    "llama-4-scout": 48 * (16 - 1) * 3 * 5120 * 8192,
    "qwen3-next-80b-a3b": 48 * (512 - 10) * 3 * 2048 * 512,
    "deepseek-v2": 59 * (160 - 6) * 3 * 5120 * 1536,
    "deepseek-v2-lite": 26 * (64 - 6) * 3 * 2048 * 1408,
    "deepseek-v3": 58 * (256 - 8) * 3 * 7168 * 2048,
    "kimi-k2": 60 * (384 - 8) * 3 * 7168 * 2048,
    "jamba-v0.1": 16 * (16 - 2) * 3 * 4096 * 14336,
    "qwen3-30b-a3b": 48 * (128 - 8) * 3 * 2048 * 768,
    "qwen3-235b-a22b": 94 * (128 - 8) * 3 * 4096 * 1536,
}

# Published exact totals. bf16 safetensors total_size / 2, or the Hub's parameter count.
PUBLISHED_TOTAL = {
    "llama-3-8b": 8_030_261_248,  # issue anchor; Meta-Llama-3-8B index total_size 16,060,522,496 / 2
    "llama-3-70b": 70_553_706_496,  # issue anchor; Hub count of Llama-3.x-70B (same shapes)
    "mistral-7b-v0.1": 7_241_732_096,  # issue anchor
    "mixtral-8x7b": 46_702_792_704,  # issue anchor; Hub safetensors total of Mixtral-8x7B-Instruct-v0.1
    "llama-2-7b": 6_738_415_616,  # Hub / GGUF general.parameter_count of Llama-2-7b
    "llama-2-70b": 68_976_648_192,  # togethercomputer/llama-2-70b parameter count
    "llama-3.1-405b": 405_853_388_800,  # Hub safetensors total of meta-llama/Llama-3.1-405B
    "llama-4-scout": 108_641_793_536,  # Hub safetensors total of Llama-4-Scout-17B-16E-Instruct (vision included)
    "qwen2-7b": 7_615_616_512,  # same shapes as Qwen2.5-7B-Instruct, Hub safetensors total
    "qwen2.5-7b": 7_615_616_512,  # Hub safetensors total of Qwen/Qwen2.5-7B-Instruct
    "qwen2-72b": 72_706_203_648,  # Qwen2-72B-Instruct / Qwen2.5-72B-Instruct parameter count
    "qwen3-8b": 8_190_735_360,  # Hub safetensors total of Qwen/Qwen3-8B
    "llama-3.1-8b": 8_030_261_248,  # Hub count of meta-llama/Llama-3.1-8B-Instruct
    "llama-3.1-70b": 70_553_706_496,  # Hub count of Llama-3.x-70B (same shapes)
    "llama-3.2-1b": 1_235_814_400,  # Hub count of meta-llama/Llama-3.2-1B
    "llama-3.2-3b": 3_212_749_824,  # Hub safetensors BF16 count of meta-llama/Llama-3.2-3B-Instruct
    "mistral-nemo-12b": 12_247_782_400,  # Hub count of mistralai/Mistral-Nemo-Instruct-2407
    "qwen2.5-14b": 14_770_033_664,  # GGUF general.parameter_count of Qwen2.5-14B-Instruct
    "qwen3-32b": 32_762_123_264,  # Hub count of Qwen/Qwen3-32B (KerasHub qwen3_32b_en params)
    "qwen3-30b-a3b": 30_532_122_624,  # Hub count of Qwen/Qwen3-30B-A3B (GGUF general.parameter_count)
    "qwen3-235b-a22b": 235_093_634_560,  # Hub safetensors total of Qwen/Qwen3-235B-A22B
    # Qwen3-Coder-Next, the same architecture, whose checkpoint carries no MTP module.
    "qwen3-next-80b-a3b": 79_674_391_296,
    "phi-3-mini-4k": 3_821_079_552,  # Hub safetensors total of microsoft/Phi-3-mini-4k-instruct
    "phi-3-medium-4k": 13_960_238_080,  # parameter count of unsloth/Phi-3-medium-4k-instruct
    "gemma-2b": 2_506_172_416,  # KerasHub gemma_2b_en preset params
    "gemma-7b": 8_537_680_896,  # KerasHub gemma_7b_en preset params; Hub count of gemma-7b-it
    "gemma-2-9b": 9_241_705_984,  # Hub safetensors total of google/gemma-2-9b
    "gemma-2-27b": 27_227_128_320,  # KerasHub gemma2_27b_en preset params
    "gemma-3-27b": 27_432_406_640,  # Hub count of gemma-3-27b-it (vision tower included)
    "gpt2": 124_439_808,  # GPT2LMHeadModel parameter count (HF card: 124M)
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "bert-base": 109_482_240,  # BertModel.from_pretrained("bert-base-uncased"), pooler included
    "bert-large": 335_141_888,  # BertModel.from_pretrained("bert-large-uncased")
    "deepseek-v2": 235_741_434_880,  # Hub safetensors total of deepseek-ai/DeepSeek-V2
    "deepseek-v2-lite": 15_706_484_224,  # Hub safetensors total of deepseek-ai/DeepSeek-V2-Lite
    # microsoft/MAI-DS-R1: the DeepSeek-V3 architecture in bf16 without the MTP module (README: 671B).
    "deepseek-v3": 671_026_419_200,
    # Fireworks' paramCount for Kimi K2 Instruct, and a header recount of the K2-Instruct shards.
    "kimi-k2": 1_026_408_232_448,
    # A Jamba-architecture checkpoint with Jamba-v0.1's config fields: total_size 103,140,646,656 / 2;
    # the Open LLM Leaderboard lists ai21labs/Jamba-v0.1 at 51.57B.
    "jamba-v0.1": 51_570_323_328,
}

# PaLM paper Table 1, in billions to two decimals.
PALM_PAPER = {"palm-8b": 8.63, "palm-62b": 62.50, "palm-540b": 540.35}


def test_every_preset_has_weights_or_says_why():
    for name, raw in RAW.items():
        if raw.get("weights") is None:
            notes = raw.get("notes") or []
            assert any(str(note).startswith("Weights not derived") for note in notes), name


def test_every_preset_with_weights_has_a_hand_derived_total():
    from test_presets import batch_tables

    assert sorted(set(EXPECTED_TOTAL) | set(batch_tables("EXPECTED_TOTAL"))) == WITH_WEIGHTS


def _merged(name: str, own: dict) -> dict:
    """This file's table and the same table of every later batch (tests/test_presets_*.py)."""
    from test_presets import batch_tables

    return {**batch_tables(name), **own}


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_total_matches_the_hand_derivation(name):
    count = count_of(name)
    assert isinstance(count.total, int) and isinstance(count.active, int)
    assert count.total == _merged("EXPECTED_TOTAL", EXPECTED_TOTAL)[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTAL))
def test_total_matches_the_published_count(name):
    assert count_of(name).total == PUBLISHED_TOTAL[name]


@pytest.mark.parametrize("name", sorted(PALM_PAPER))
def test_palm_rounds_to_the_paper(name):
    # Within two units of the printed 0.01B: palm-540b is 540,356,474,880, which rounds to 540.36;
    # without its 119 * 18432 layer-norm scales it would be 540.354B, so the paper seems to leave them out.
    assert abs(count_of(name).total - PALM_PAPER[name] * 10**9) < 0.01 * 10**9


def test_falcon_checkpoints_store_the_tied_head_twice():
    # The Hub counts 7,217,189,760 and 41,835,970,560: lm_head is saved beside word_embeddings,
    # then tied at load, so the loaded model holds one 65024 x hidden matrix.
    assert count_of("falcon-7b").total + 65024 * 4544 == 7_217_189_760
    assert count_of("falcon-40b").total + 65024 * 8192 == 41_835_970_560


def test_qwen3_next_checkpoint_adds_the_mtp_module():
    # Qwen/Qwen3-Next-80B-A3B-Instruct's Hub count, 81,324,862,720, includes one MTP block:
    # fc 2*2048 -> 2048, two pre-fc norms, one gated full-attention decoder layer with the
    # MoE, and its final norm. transformers ignores mtp.* weights.
    mtp = (
        2 * 2048 * 2048 + 2 * 2048
        + 2048 * 2 * 16 * 256 + 2 * 2048 * 2 * 256 + 16 * 256 * 2048 + 2 * 256
        + 512 * 3 * 2048 * 512 + 3 * 2048 * 512 + 2048 * 512 + 2048 + 2 * 2048
        + 2048
    )
    assert count_of("qwen3-next-80b-a3b").total + mtp == 81_324_862_720


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_active_leaves_out_unchosen_experts(name):
    count = count_of(name)
    inactive = _merged("EXPECTED_INACTIVE", EXPECTED_INACTIVE)
    if name in inactive:
        assert count.active == _merged("EXPECTED_TOTAL", EXPECTED_TOTAL)[name] - inactive[name]
        assert count.active < count.total
    else:
        assert count.active == count.total


def test_every_moe_preset_has_an_expected_active_count():
    moe = sorted(name for name in WITH_WEIGHTS if RAW[name]["weights"].get("moe"))
    assert moe == sorted(_merged("EXPECTED_INACTIVE", EXPECTED_INACTIVE))


# Model cards round active parameters and differ on whether the embedding lookup counts, so
# these are approximate. Computed: Mixtral 12.88B, Jamba 12.11B, DeepSeek-V2 21.38B,
# DeepSeek-V3 37.55B (its README_WEIGHTS says 36.7B), Kimi-K2 32.86B.
@pytest.mark.parametrize(
    ("name", "card", "tolerance"),
    [
        ("mixtral-8x7b", 12.9e9, 0.01),  # 12.9B active, as quoted in the Jamba-1.5 paper Table 1
        ("jamba-v0.1", 12e9, 0.01),  # 12B active (model card)
        ("deepseek-v2", 21e9, 0.02),  # 21B activated (DeepSeek-V2 paper)
        ("deepseek-v3", 37e9, 0.02),  # 37B activated (README)
        ("kimi-k2", 32e9, 0.03),  # 32B activated (README); 31.69B without the input embedding
    ],
)
def test_active_is_close_to_the_model_card(name, card, tolerance):
    assert abs(count_of(name).active - card) <= tolerance * card


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_parts_add_up_to_the_total(name):
    count = count_of(name)
    assert count.embedding + count.head + count.linear + count.other == count.total
    assert (count.head == 0) == RAW[name]["weights"]["tied_embeddings"]
