"""`fit --nodes M --gpus-per-node G`: GPUs on several nodes (issue 21).

vLLM gives each node a contiguous block of world / nnodes ranks, TP innermost, so a TP group
stays on one node when that block is a multiple of TP. kvcalc never picks a TP across nodes;
a --tp larger than a node is run as asked, with a note. Expected figures are derived by hand:
Llama-3-70B has 80 layers of 8 KV heads of 128 in bf16, so a token's KV on one GPU is
2 x (8 / TP) x 128 x 2 B x (80 / PP) layers.
"""

from __future__ import annotations

import json

import pytest

from kvcalc.capacity.nodes import instance_nodes, instances_on, tp_fits_node


def llama_kv_per_token_per_gpu(tp: int, pp: int) -> int:
    return 2 * (8 // tp) * 128 * 2 * (80 // pp)


def run(runner, app, *args):
    out = runner.invoke(app, ["fit", *args, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_instance_placement_by_hand():
    assert instance_nodes(8, 4, 4) == 2  # TP 4 x PP 2 on nodes of 4: a stage per node
    assert instance_nodes(4, 4, 8) == 1
    # 12 GPUs, TP 4, nodes of 8: 2 nodes of 6 would split the second TP group, 3 nodes of 4 keep each whole
    assert instance_nodes(12, 4, 8) == 3
    assert instance_nodes(16, 16, 8) is None  # TP 16 cannot sit on a node of 8
    assert instance_nodes(16, 16, 8, tp_may_cross=True) == 2
    assert instances_on(2, 4, 2, 1) == 4  # TP 2 instances: two per node of 4, two nodes
    assert instances_on(4, 8, 16, 2) == 2
    assert [tp_fits_node(t, 8) for t in (1, 2, 3, 4, 8, 16)] == [True, True, False, True, True, False]


def test_llama_3_70b_on_2_nodes_of_4_h100_keeps_tp_in_a_node(runner, kvcalc_app):
    data = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "h100", "--nodes", "2", "--gpus-per-node", "4", "-c", "8k")
    assert (data["gpus"], data["nodes"], data["gpus_per_node"]) == (8, 2, 4)
    tp, pp, replicas = data["tp"], data["pp"], data["replicas"]
    assert tp in (1, 2, 4) and tp * pp * replicas == 8  # one node: TP 8 would cross it
    assert data["kv_bytes_per_token_per_gpu"] == llama_kv_per_token_per_gpu(tp, pp)
    assert data["nodes_per_instance"] == max(1, tp * pp // 4)
    assert data["deployment"]["nodes"] == 2 and data["deployment"]["gpus_per_node"] == 4
    one_node = run(runner, kvcalc_app, "llama-3-70b", "--gpu", "h100", "--gpus", "8", "-c", "8k")
    assert one_node["tp"] == 8 and one_node["nodes"] is None  # the same 8 GPUs on one node: TP 8


def test_asked_shapes_on_nodes(runner, kvcalc_app):
    base = ["llama-3-70b", "--gpu", "h100", "--nodes", "2", "--gpus-per-node", "4", "-c", "8k"]
    staged = run(runner, kvcalc_app, *base, "--tp", "4", "--pp", "2")
    assert (staged["replicas"], staged["nodes_per_instance"]) == (1, 2)
    assert staged["kv_bytes_per_token_per_gpu"] == 40_960 == llama_kv_per_token_per_gpu(4, 2)
    assert any("spans 2 nodes, 4 GPUs on each" in n for n in staged["notes"])
    assert not any("crosses nodes" in n for n in staged["notes"])
    wide = run(runner, kvcalc_app, *base, "--tp", "8")  # asked for: run across the nodes, with the note
    assert (wide["tp"], wide["replicas"], wide["nodes_per_instance"]) == (8, 1, 2)
    assert any("TP 8 crosses nodes" in n and "slow" in n for n in wide["notes"])
    narrow = run(runner, kvcalc_app, *base, "--tp", "2")  # two TP 2 instances per node, two nodes
    assert (narrow["replicas"], narrow["nodes_per_instance"], narrow["gpus"]) == (4, 1, 8)
    assert narrow["kv_bytes_per_token_per_gpu"] == llama_kv_per_token_per_gpu(2, 1) == 163_840


def test_emit_vllm_says_how_to_run_across_nodes(runner, kvcalc_app):
    args = ["fit", "llama-3-70b", "--gpu", "h100", "--nodes", "2", "--gpus-per-node", "4", "-c", "8k", "--emit", "vllm"]
    out = runner.invoke(kvcalc_app, [*args, "--tp", "4", "--pp", "2"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "# across 2 nodes (4 GPUs each)" in text
    for words in ("--nnodes 2", "--node-rank R (0 to 1)", "--master-addr NODE0_IP", "--headless on nodes 1 and up",
                  "--distributed-executor-backend ray"):
        assert words in text
    assert "--tensor-parallel-size 4" in text and "--pipeline-parallel-size 2" in text
    # TP 2 x 4 replicas launch as --data-parallel-size 4 over both nodes: 2 DP ranks on each
    out = runner.invoke(kvcalc_app, [*args, "--tp", "2"])
    text = " ".join(out.stdout.split())
    assert "--data-parallel-size 4" in text and "# across 2 nodes (4 GPUs each)" in text
    assert "--data-parallel-backend ray" in text
    out = runner.invoke(kvcalc_app, ["fit", "llama-3-70b", "--gpu", "h100", "--nodes", "1", "--gpus-per-node", "4",
                                     "-c", "8k", "--emit", "vllm", "--tp", "4"])
    assert out.exit_code == 0 and "across" not in out.stdout  # one node: nothing to add


def test_deepseek_v3_layouts_on_2_nodes_of_8_h200(runner, kvcalc_app):
    data = run(runner, kvcalc_app, "deepseek-v3", "--gpu", "h200", "--nodes", "2", "--gpus-per-node", "8", "-c", "128k")
    assert (data["gpus"], data["nodes"], data["gpus_per_node"]) == (16, 2, 8)
    rows = {(r["tp"], r["dp"]) for r in data["layouts"][1:]}
    # vLLM's DP ranks are whole TP groups of 16 / DP GPUs: TP 16 (DP 1) would cross a node, so it is not a row
    assert rows == {(8, 2), (4, 4), (2, 8), (1, 16)}
    assert all(r["ep"] == 16 for r in data["layouts"][1:])
    pick = next(r for r in data["layouts"] if r["engine_pick"])
    assert (pick["tp"], pick["dp"]) == (1, 16)


def test_fewest_nodes_for_n_requests(runner, kvcalc_app):
    data = run(runner, kvcalc_app, "deepseek-v3", "--gpu", "h200", "--nodes", "1", "--gpus-per-node", "8",
               "-c", "128k", "-n", "100")
    shape = data["min_gpus_shape"]
    # nodes of 8 take an even split of the instance: GPUs per node a whole number, at most 8
    assert shape["gpus"] % shape["nodes"] == 0 and shape["gpus"] // shape["nodes"] <= 8
    assert shape["nodes"] == -(-shape["gpus"] // 8)
    assert data["min_gpus_layout"]["nodes"] == data["min_gpus_layout"]["gpus"] // 8


@pytest.mark.parametrize("args, words", [
    (["--nodes", "2"], "--nodes and --gpus-per-node go together"),
    (["--nodes", "2", "--gpus-per-node", "4", "--gpus", "6"], "--gpus 6 is not --nodes 2 x --gpus-per-node 4 = 8"),
    (["--nodes", "1", "--gpus-per-node", "8", "--tp", "4", "--pp", "3"], "one instance needs 3 node(s) of 8 GPUs"),
    (["--nodes", "2", "--gpus-per-node", "8", "--ep", "16"], "TP 16 would cross nodes of 8 GPUs"),
])
def test_bad_node_input_exits_2(runner, kvcalc_app, args, words):
    out = runner.invoke(kvcalc_app, ["fit", "deepseek-v3", "--gpu", "h200", "-c", "8k", *args])
    assert out.exit_code == 2
    assert words in " ".join(out.stderr.split())
