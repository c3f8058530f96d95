"""GPUs on several nodes: ``--nodes M --gpus-per-node G`` (issue 21).

vLLM 0.33.0 (files under vllm/, lines in docs/engines/parallel.md):

- ranks are numbered with TP innermost, then PCP, PP and DP (distributed/parallel_state.py
  2158-2164), and each node runs a contiguous block of world / nnodes of them
  (config/parallel.py 812-840 ``nnodes_within_dp`` and ``local_world_size``;
  v1/executor/multiproc_executor.py 192-194 ``global_start_rank``); ``--nnodes`` must divide the
  world size (engine/arg_utils.py 2399-2413).
- so a TP group stays inside a node exactly when a node's block of ranks is a multiple of TP.
  vLLM does not refuse a TP group across nodes; its all-reduce then runs over the network
  twice a layer, which is slow, so kvcalc never picks such a shape: only a ``--tp`` larger than
  G, asked for, crosses nodes (with a note). Pipeline stages and DP ranks may span nodes (their
  traffic is one activation per stage, or none).

An instance of I GPUs spans the fewest nodes n with n dividing I, I / n at most G and I / n a
multiple of TP (TP groups whole on a node). Instances of one node share nodes (G // I each);
an instance of several nodes takes them whole.
"""

from __future__ import annotations

from kvcalc.capacity.deployment import Deployment, FitUsageError


def instance_nodes(instance: int, tp: int, per_node: int, tp_may_cross: bool = False) -> int | None:
    """Nodes one instance of ``instance`` GPUs spans; None when no even split keeps TP on a node."""
    for n in range(-(-instance // per_node), instance + 1):
        if instance % n or instance // n > per_node:
            continue
        if tp_may_cross or (instance // n) % tp == 0:
            return n
    return None


def instances_on(nodes: int, per_node: int, instance: int, spans: int) -> int:
    """Instances that fit on ``nodes`` nodes of ``per_node`` GPUs, each spanning ``spans`` nodes."""
    return nodes * (per_node // instance) if spans == 1 else nodes // spans


def tp_fits_node(tp: int, per_node: int | None) -> bool:
    """A TP group kvcalc may choose: inside one node (TP divides the node's GPUs)."""
    return per_node is None or (tp <= per_node and per_node % tp == 0)


def check_nodes(nodes: int | None, per_node: int | None, gpus: int | None) -> int | None:
    """The GPUs in all (M x G), or ``gpus`` when no nodes are given; one line for a wrong combination."""
    if nodes is None and per_node is None:
        return gpus
    if nodes is None or per_node is None:
        raise FitUsageError("--nodes and --gpus-per-node go together: M nodes of G GPUs each")
    if gpus is not None and gpus != nodes * per_node:
        raise FitUsageError(f"--gpus {gpus} is not --nodes {nodes} x --gpus-per-node {per_node} = "
                            f"{nodes * per_node}; give one or the other")
    return nodes * per_node


def place(d: Deployment) -> Deployment:
    """The shape asked for (``--tp``/``--pp``/``--dp``) on the nodes: replicas as they fit, a note
    for a TP group across nodes, and exit 2 when an instance cannot be placed."""
    per_node, nodes = d.gpus_per_node, d.nodes
    instance = d.instance_gpus
    crosses = d.attention_tp > per_node or per_node % d.attention_tp != 0
    spans = instance_nodes(instance, d.attention_tp, per_node, tp_may_cross=crosses)
    if spans is None or instance_nodes(instance, 1, per_node, True) is None:
        raise FitUsageError(f"one instance of {instance} GPUs cannot be split evenly over nodes of {per_node} GPUs "
                            "(vLLM puts world / nnodes ranks on each node)")
    replicas = instances_on(nodes, per_node, instance, spans)
    if replicas < 1:
        raise FitUsageError(f"one instance needs {spans} node(s) of {per_node} GPUs ({instance} GPUs); "
                            f"--nodes {nodes} has too few")
    return d.with_shape(d.tp, d.pp, replicas, d.shape_note, nodes_per_instance=spans)


def node_notes(d: Deployment) -> list[str]:
    """How the shape sits on the nodes, and the warning for a TP group across them."""
    per_node, spans = d.gpus_per_node, d.nodes_per_instance
    used = d.instance_gpus * d.replicas
    where = (f"each instance ({d.instance_gpus} GPUs) spans {spans} nodes, {d.instance_gpus // spans} GPUs on each"
             if spans > 1 else f"each instance ({d.instance_gpus} GPUs) on one node")
    notes = [f"{d.nodes} node{'s' if d.nodes > 1 else ''} of {per_node} GPUs: {where}; {d.replicas} instance(s) "
             f"use {used} of the {d.nodes * per_node} GPUs"]
    if not tp_fits_node(d.attention_tp, per_node) or (d.instance_gpus // spans) % d.attention_tp:
        notes.append(f"TP {d.attention_tp} crosses nodes (a node holds {per_node} GPUs): its all-reduces, two a "
                     "layer, run over the network between nodes, which is slow; TP within a node and PP or DP "
                     "across nodes is the usual layout")
    return notes


def nodes_for(d: Deployment, replicas: int, instance: int, tp: int) -> int | None:
    """Nodes ``replicas`` instances of ``instance`` GPUs take (None without --gpus-per-node, or when an
    instance cannot keep its TP groups on a node)."""
    per_node = d.gpus_per_node
    spans = None if per_node is None else instance_nodes(instance, tp, per_node)
    if spans is None:
        return None
    if spans == 1:
        return -(-replicas // (per_node // instance))
    return replicas * spans


def on_nodes(d: Deployment, tp_asked: bool) -> Deployment:
    """The shape on ``d.nodes`` nodes: a TP kvcalc chose (``--gpus`` with --pp, --dp or --dcp and no
    --tp) must sit inside a node; one asked for with --tp may cross nodes (with a note)."""
    if d.gpus_per_node is None:
        return d
    if not tp_asked and not tp_fits_node(d.attention_tp, d.gpus_per_node):
        raise FitUsageError(f"TP {d.attention_tp} would cross nodes of {d.gpus_per_node} GPUs; kvcalc keeps TP "
                            f"inside a node unless asked: give --tp {d.tp} to run it across nodes, or more --pp/--dp")
    return place(d)
