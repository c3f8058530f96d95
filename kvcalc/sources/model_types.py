"""Which config.json model types kvcalc has checked, and which it refuses by name.

A type in ``CHECKED_TYPES`` is read and its numbers are checked by tests against real
configs. A type in ``DEFAULTS_MATCHED`` is read by field names and its cache, on transformers'
default config for the type, equals what transformers itself builds (or differs only by a
convention ``kvcalc verify --reference transformers`` names): see docs/model-types.md, written
by benchmarks/model_types.py. A type in ``REFUSED`` is one whose cache kvcalc cannot describe
right today: its config is refused with the reason, never estimated. A type in
``UNVERIFIED`` is read by field names, but no check could settle it yet (the reason says why);
its estimate carries the "untested" note like any other unknown type.
"""

from __future__ import annotations

FALCON_TYPES = frozenset({"falcon", "RefinedWeb", "RefinedWebModel"})
CHECKED_ENCODERS = frozenset({
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "distilbert", "albert", "electra",
    "camembert", "deberta", "deberta-v2", "mpnet", "modernbert", "ernie", "nomic_bert",
})
# BERT-family encoders that transformers also lists as causal LMs (a *ForCausalLM head that
# caches only with is_decoder true, false in every default); read as encoders, not yet checked
# against a real config.
MORE_ENCODERS = frozenset({
    "roberta-prelayernorm", "roc_bert", "data2vec-text", "megatron-bert", "rembert", "roformer", "big_bird",
    "xmod",
})
ENCODER_TYPES = CHECKED_ENCODERS | MORE_ENCODERS
# BERT-family types whose models cache K and V as a decoder when is_decoder is true (their modelling files read
# config.is_decoder: causal self-attention and a cache, e.g. modeling_bert.py 361, 643); read as encoders otherwise
DECODER_CAPABLE = frozenset({
    "bert", "bert-generation", "big_bird", "camembert", "data2vec-text", "electra", "ernie", "megatron-bert",
    "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "xlm-roberta", "xlm-roberta-xl", "xmod",
})
ENCODER_DECODER_TYPES = frozenset({
    "t5", "mt5", "umt5", "longt5", "bart", "mbart", "marian", "pegasus", "whisper",
    "blenderbot", "m2m_100", "switch_transformers",
    # in transformers' causal-LM table too (their decoder alone), found by benchmarks/model_types.py
    "bigbird_pegasus", "blenderbot-small", "musicgen", "musicgen_melody", "mvp", "plbart", "prophetnet",
})
# Model types whose config.json kvcalc's tests check against real configs.
CHECKED_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next",
    "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "gpt2", "gpt_neox", "opt",
    "deepseek_v2", "deepseek_v3", "kimi_k2", "llama4", "llama4_text", "jamba",
    "bloom", "mpt", "chatglm",
    # fixtures and hand-derived tests of issue 9's hybrid, per-layer and indexer work
    "deepseek_v32", "nemotron_h", "nemotron-nas", "mimo_v2",
    # issue 19: Qwen3.5's Gated DeltaNet state in the dtype its mamba_ssm_dtype names; pure state-space models
    "qwen3_5", "qwen3_5_text", "falcon_mamba", "mamba",
    # issue 19b: layers holding K/V and a Mamba2 state (transcribed fields, tests/test_hf_config_parallel_hybrids.py)
    "falcon_h1", "zamba2",
    # LFM2-1.2B's released config: attention KV and conv state by hand (tests/test_weights_remote.py)
    "lfm2",
    # DBRX-Instruct's config (kv_n_heads 8 of 48 heads) by hand, and transformers' cache on a small one
    # (tests/test_kv_fixes_a.py)
    "dbrx",
}) | FALCON_TYPES | CHECKED_ENCODERS

# Types whose transformers 5.24 default config kvcalc reads, and whose cache after a forward on
# the meta device equals kvcalc's estimate, kind by kind, or differs only by a named convention
# (window - 1 tokens in sliding layers, a float32 recurrent state). benchmarks/model_types.py.
DEFAULTS_MATCHED = frozenset({
    "afmoe", "apertus", "apertus1p5_text", "arcee", "aria_text", "axk1", "beam", "bitnet", "codegen",
    "cohere", "cohere2", "cohere2_moe", "ctrl", "cwm", "diffllama", "doge", "emu3", "ernie4_5",
    "ernie4_5_moe", "exaone", "exaone4", "exaone_moe", "flex_olmo", "flint", "fuyu", "gemma4_text",
    "gemma4_unified_text", "git", "glm", "glm4", "glm4_moe_lite", "got_ocr2", "gpt-sw3", "gpt_bigcode",
    "gpt_neo", "gpt_neox_japanese", "gpt_oss", "gptj", "granite", "granite_swa", "granitemoe",
    "granitemoe_swa", "granitemoeshared", "helium", "hrm_text", "hy_v3", "hyperclovax", "internlm3",
    "iquestcoder", "jais2", "kolibri1", "laguna", "lara_mini", "mellum", "minicpm3", "minimax_m2",
    "ministral3", "modernbert-decoder", "moss_transcribe_diarize", "nanochat", "olmo",
    "olmo2", "olmo3", "olmo_hybrid", "olmoe", "persimmon", "phi", "phi4_multimodal", "phimoe",
    "qwen3_5_moe", "qwen3_5_moe_text", "sarvam_mla", "sarvam_moe", "seed_oss", "smollm3",
    "solar_open", "stablelm", "starcoder2", "vaultgemma", "youtu",
    "roberta-prelayernorm", "roc_bert", "data2vec-text",  # encoders: transformers returns no cache either
    # an encoder unless is_decoder is true (false in its defaults), as transformers caches it
    "bert-generation",
    # GPT-1: transformers keeps no cache; kvcalc counts a caching engine's, and its note and the reference say so
    "openai-gpt",
    # read since the survey's first run: indexed_attention, LFM conv layers, MiMo-V2-Flash's doubled
    # sliding KV heads, XGLM's attention_heads
    "axk2", "glm_moe_dsa", "lfm3", "mimo_v2_flash", "xglm",
    # issue 19: a pure Mamba2 model read (no released config copy found to test against; Mamba-Codestral's
    # shape is Mamba2Config's default)
    "mamba2",
})

# model_type -> why kvcalc refuses it (the error names the type and says this).
REFUSED: dict[str, str] = {
    "mllama": "cross-attention layers (Mllama): its cross_attention_layers cache K/V of the image tokens, "
              "not of the text, and kvcalc counts every layer over the text context",
    "gemma3n": "per-layer KV sharing (Gemma-3n): the last num_kv_shared_layers layers reuse earlier layers' K/V "
               "and keep none of their own",
    "gemma3n_text": "per-layer KV sharing (Gemma-3n): the last num_kv_shared_layers layers reuse earlier layers' "
                    "K/V and keep none of their own",
    "longcat_flash": "two attention blocks per layer (LongCat-Flash): transformers' cache holds 2 x num_layers "
                     "MLA caches, kvcalc's layer kinds one per layer",
    "rwkv": "RWKV (recurrent, no attention): a constant state per sequence and no KV cache",
    "xlstm": "xLSTM (recurrent, no attention): a constant state per sequence and no KV cache",
    "recurrent_gemma": "RecurrentGemma: RG-LRU recurrent blocks with a local-attention block every third layer "
                       "(attention_window_size), a layout kvcalc does not read",
    "xlnet": "XLNet keeps a memory of hidden states (mem_len), not a KV cache",
    "cpmant": "CPM-Ant prepends prompt_length learned prompt tokens to every sequence; its cache holds them and "
              "kvcalc does not count them",
    "trocr": "the decoder of an encoder-decoder (TrOCR): cross-attention to the image encoder's output",
    "reformer": "LSH and chunked local attention (Reformer), a cache kvcalc does not describe",
    "blt": "byte latent transformer: a local encoder, a global transformer and a local decoder of their own sizes",
    "zamba": "Zamba: one shared attention block applied every attn_layer_period Mamba layers, whose layers "
             "hold K/V and a Mamba state together",
    "xlm": "XLM: a masked-LM encoder first; its causal head keeps a cache of its own, and it names its width "
           "emb_dim",
    "dory": "looped layers (Dory): n_recurrent_layers run n_recurrent_loops times, each loop keeping a cache of "
            "its own (recurrent_kv_cache_mode), which kvcalc's one-cache-per-layer count does not describe",
    "deepseek_v4": "compressed sparse attention (DeepSeek-V4's compressed_sparse_attention and "
                   "heavily_compressed_attention layers) caches compressed blocks kvcalc does not size",
    "inkling_text": "hybrid layers that hold attention K/V and convolution states together (hybrid, hybrid_sliding)",
    "inkling2_text": "hybrid layers that hold attention K/V and convolution states together (hybrid, hybrid_sliding)",
    "inkling2_loop_text": "hybrid layers that hold attention K/V and convolution states together, run in loops",
    "zaya": "hybrid layers that hold a Mamba state and a KV cache together",
    "minimax": "lightning (linear) attention layers whose recurrent state kvcalc does not size",
    "kimi_linear": "Kimi Delta Attention layers (linear_num_heads, linear_head_dim, short convolutions) whose "
                   "recurrent state kvcalc does not size",
    "bailing_hybrid": "Kimi Delta Attention style linear layers whose recurrent state kvcalc does not size",
    "qwen4_exp": "indexed attention on dense (not MLA) layers beside linear attention: an indexer kvcalc does not read",
    "qwen4_exp_text": "indexed attention on dense (not MLA) layers beside linear attention: an indexer kvcalc does "
                      "not read",
    "gemma4_unified_assistant": "an assistant whose every layer reuses the target model's K/V "
                                "(num_kv_shared_layers = num_hidden_layers): it keeps no cache of its own",
    "dots3_note": "sliding layers with a dense attention of their own beside MLA layers with an indexer, a "
                  "mix kvcalc does not read",
    "dots3_note_text": "sliding layers with a dense attention of their own beside MLA layers with an indexer, a "
                       "mix kvcalc does not read",
    **dict.fromkeys(
        ("minimax_m3", "minimax_m3_vl", "minimax_m3_vl_text"),
        "MiniMax-M3's sparse layers (layer_types minimax_m3_sparse) keep lightning-indexer keys (index_n_heads, "
        "index_head_dim, blocks of index_block_size) beside K and V, a cache kvcalc does not size; no released "
        "config.json was found to check one against",
    ),
    "kimi_k3": "Kimi-K3's Kimi Delta Attention layers keep a recurrent state beside its MLA layers' latent; kvcalc "
               "does not size KDA states, and no released config.json was found to check one against",
    "hy_v4": "layers that share another layer's indexer keys (indexer_types shared): kvcalc counts an indexer "
             "cache on every MLA layer",
}

# model_type -> why no check has settled it. Read by field names, with the "untested" note.
UNVERIFIED: dict[str, str] = {
    **dict.fromkeys(
        ("hunyuan_v1_dense", "hunyuan_v1_moe", "ministral", "nemotron", "lfm2_moe", "dots1",
         "cohere_compass_text", "gemma4_assistant"),
        "transformers 5.24 cannot build the model from its own default config",
    ),
    **dict.fromkeys(
        ("biogpt", "moshi", "gemma4", "gemma4_unified", "jetmoe"),
        "transformers cannot run the model on meta tensors (a data-dependent operation), so no reference",
    ),
    "glm4_moe": "the defaults give no head_dim and 96 heads for hidden 4096; released configs state head_dim",
    **dict.fromkeys(
        ("bamba", "granitemoehybrid"),
        "Mamba2 hybrids read like Nemotron-H; transformers cannot run them on meta tensors (get_seq_length "
        "on a cache of Mamba layers only), so no reference",
    ),
}


# The transformers release the survey (benchmarks/model_types.py, docs/model-types.md) last ran
# with, and every causal-LM type it shipped (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES): each is classified
# above. A type a later release adds is not in this list; the survey and ``unsurveyed`` report it,
# and kvcalc reads its config by field names with the "untested" note, until it is surveyed.
SURVEYED_WITH = "5.24.0"
SURVEYED_TYPES = frozenset({
    "afmoe", "apertus", "apertus1p5_text", "arcee", "aria_text", "axk1", "axk2", "bailing_hybrid", "bamba",
    "bart", "beam", "bert", "bert-generation", "big_bird", "bigbird_pegasus", "biogpt", "bitnet", "blenderbot",
    "blenderbot-small", "bloom", "blt", "camembert", "codegen", "cohere", "cohere2", "cohere2_moe",
    "cohere_compass_text", "cpmant", "ctrl", "cwm", "data2vec-text", "dbrx", "deepseek_v2", "deepseek_v3",
    "deepseek_v32", "deepseek_v4", "diffllama", "doge", "dory", "dots1", "dots3_note", "dots3_note_text",
    "electra", "emu3", "ernie", "ernie4_5", "ernie4_5_moe", "exaone", "exaone4", "exaone_moe", "falcon",
    "falcon_h1", "falcon_mamba", "flex_olmo", "flint", "fuyu", "gemma", "gemma2", "gemma3", "gemma3_text",
    "gemma3n", "gemma3n_text", "gemma4", "gemma4_assistant", "gemma4_text", "gemma4_unified",
    "gemma4_unified_assistant", "gemma4_unified_text", "git", "glm", "glm4", "glm4_moe", "glm4_moe_lite",
    "glm_moe_dsa", "got_ocr2", "gpt-sw3", "gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gpt_neox_japanese",
    "gpt_oss", "gptj", "granite", "granite_swa", "granitemoe", "granitemoe_swa", "granitemoehybrid",
    "granitemoeshared", "helium", "hrm_text", "hunyuan_v1_dense", "hunyuan_v1_moe", "hy_v3", "hy_v4",
    "hyperclovax", "inkling2_loop_text", "inkling2_text", "inkling_text", "internlm3", "iquestcoder", "jais2",
    "jamba", "jetmoe", "kimi_linear", "kolibri1", "laguna", "lara_mini", "lfm2", "lfm2_moe", "lfm3", "llama",
    "llama4", "llama4_text", "longcat_flash", "mamba", "mamba2", "marian", "mbart", "megatron-bert", "mellum",
    "mimo_v2_flash", "minicpm3", "minimax", "minimax_m2", "minimax_m3_vl_text", "ministral", "ministral3",
    "mistral", "mixtral", "mllama", "modernbert-decoder", "moshi", "moss_transcribe_diarize", "mpt", "musicgen",
    "musicgen_melody", "mvp", "nanochat", "nemotron", "nemotron_h", "olmo", "olmo2", "olmo3", "olmo_hybrid",
    "olmoe", "openai-gpt", "opt", "pegasus", "persimmon", "phi", "phi3", "phi4_multimodal", "phimoe", "plbart",
    "prophetnet", "qwen2", "qwen2_moe", "qwen3", "qwen3_5", "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_5_text",
    "qwen3_moe", "qwen3_next", "qwen4_exp", "qwen4_exp_text", "recurrent_gemma", "reformer", "rembert",
    "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "rwkv", "sarvam_mla", "sarvam_moe", "seed_oss",
    "smollm3", "solar_open", "stablelm", "starcoder2", "trocr", "vaultgemma", "whisper", "xglm", "xlm",
    "xlm-roberta", "xlm-roberta-xl", "xlnet", "xlstm", "xmod", "youtu", "zamba", "zamba2", "zaya",
})


def unsurveyed(causal_lm_types) -> list[str]:
    """The causal-LM types of an installed transformers that the recorded survey has not seen."""
    return sorted(set(causal_lm_types) - SURVEYED_TYPES)


def refusal(model_type: str) -> str | None:
    """Why a model type is refused, or None when kvcalc reads it."""
    return REFUSED.get(model_type)


def classify(model_type: str) -> str:
    """checked | matched on defaults | encoder | encoder-decoder | refused | unverified | unknown."""
    if model_type in CHECKED_TYPES:
        return "checked"
    if model_type in DEFAULTS_MATCHED:
        return "matched on defaults"
    if model_type in MORE_ENCODERS:
        return "encoder"
    if model_type in ENCODER_DECODER_TYPES:
        return "encoder-decoder"
    if model_type in REFUSED:
        return "refused"
    if model_type in UNVERIFIED:
        return "unverified"
    return "unknown"
