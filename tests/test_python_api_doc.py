"""docs/python-api.md's example runs as written, and says what it gives (the CLI's answer too)."""

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_the_python_api_example_runs_and_gives_what_its_comments_say(runner, kvcalc_app):
    [block] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    names: dict = {}
    exec(compile(block, str(DOC), "exec"), names)
    plan = names["plan"]
    assert (plan.max_concurrency, plan.kv_tokens) == (5, 694880)
    assert plan.min_gpus_shape == {"gpus": 6, "tp": 2, "pp": 3, "replicas": 1}
    assert "# 5, 694880, {'gpus': 6, 'tp': 2, 'pp': 3," in block
    result = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "--tp", "8", "-c", "128k", "--json"])
    cli = json.loads(result.stdout)
    assert (cli["max_concurrency"], cli["kv_tokens"], cli["min_gpus_shape"]) == (5, 694880, plan.min_gpus_shape)
    # DeepSeek-V3: 61 MLA layers, each caching a latent of kv_lora_rank 512 + qk_rope_head_dim 64, 1 byte in fp8
    assert names["result"].total_bytes == 61 * (512 + 64) * 1 * 131072
