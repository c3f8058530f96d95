"""The parallel layouts an MoE model is served in, side by side (issue 21).

For a model with routed experts, on the GPUs of one engine instance, every data-parallel
attention width the engine allows, with experts spread over all the GPUs (EP): vLLM
``--data-parallel-size D --tensor-parallel-size N/D --enable-expert-parallel``, SGLang ``--tp N
--attn-dp-size D --ep N``. Each row holds capacity and weights per GPU. ``engine_pick`` marks the
DP + EP row holding the most requests (for an MLA model, attention TP 1: the latent is whole on
every GPU of an attention group, so TP only copies it); ``most_requests`` the row holding the most
of all, which may be a pipeline shape (PP splits the layers, so their KV too) that engines serve
with more latency per token. ``min_layout`` finds the fewest GPUs in the DP-attention + EP
layout that hold N requests. Pure arithmetic: each row is ``fit`` on that shape.
"""

from __future__ import annotations

from kvcalc.capacity.deployment import Deployment, FitUsageError, has_routed_experts

POWERS = (1, 2, 4, 8, 16, 32, 64)


def row(r, name: str) -> dict:
    """One layout's figures from a FitResult."""
    return {"layout": name, "gpus": r.gpus, "tp": r.tp, "pp": r.pp, "dp": r.dp, "ep": r.ep, "dcp": r.dcp,
            "attention_tp": r.attention_tp, "weights_bytes_per_gpu": r.weights_bytes_per_gpu,
            "kv_bytes_per_token_per_gpu": r.kv_bytes_per_token_per_gpu, "kv_pool_per_rank": r.kv_pool_per_rank,
            "requests_per_rank": r.max_concurrency, "total_requests": r.total_concurrency, "engine_pick": False,
            "most_requests": False}


def candidates(spec, d: Deployment, gpus: int) -> list[Deployment]:
    """DP-attention + EP shapes of ``gpus`` GPUs (one instance, PP 1) the engine allows; with
    --gpus-per-node, only those whose attention TP group sits inside a node."""
    from kvcalc.capacity.nodes import instance_nodes, tp_fits_node

    out = []
    for dp in (x for x in range(1, gpus + 1) if gpus % x == 0):
        if d.engine.dp_adds_gpus:  # vLLM: DP ranks are whole TP groups, experts over tp x dp
            shape = d.with_shape(gpus // dp, 1, 1, dp=dp, ep=gpus, dcp=1)
        else:  # SGLang: attention DP inside one TP group of all the GPUs
            shape = d.with_shape(gpus, 1, 1, dp=dp, ep=gpus, dcp=1)
        if d.gpus_per_node is not None:
            spans = instance_nodes(gpus, shape.attention_tp, d.gpus_per_node)
            if spans is None or not tp_fits_node(shape.attention_tp, d.gpus_per_node):
                continue
            shape = shape.with_shape(shape.tp, 1, 1, nodes_per_instance=spans)
        out.append(shape)
    return out


def layouts_modelled(spec, d: Deployment) -> bool:
    """DP-attention + EP rows are for an MoE model, on a known GPU, in an engine whose DP and EP
    kvcalc models (vLLM, SGLang; TensorRT-LLM's are refused)."""
    return has_routed_experts(spec) and d.memory is not None and d.engine.models_layouts


def name(d: Deployment) -> str:
    if d.engine.dp_adds_gpus:
        return f"DP {d.dp} x TP {d.tp}, EP {d.ep}" if d.dp > 1 else f"TP {d.tp}, EP {d.ep}"
    return f"TP {d.tp} with attention DP {d.dp}, EP {d.ep}" if d.dp > 1 else f"TP {d.tp}, EP {d.ep}"


def layouts(spec, d: Deployment, plain, context, fit_options: dict) -> list[dict]:
    """Rows: this shape, then each DP-attention + EP layout on the same GPUs (``--gpus N`` when kvcalc
    searched the shape, else this shape's)."""
    from kvcalc.capacity.fit import fit

    rows = [row(plain, "as asked" if d.searched_gpus is None else "the plain TP x PP search")]
    if not layouts_modelled(spec, d):
        return rows
    for shape in candidates(spec, d, d.searched_gpus or d.gpus):
        if (shape.tp, shape.pp, shape.dp, shape.ep, shape.replicas) == (d.tp, d.pp, d.dp, d.ep, d.replicas) \
                and d.dcp == 1:
            continue
        try:
            r = fit(spec, shape, context, search_min=False, **fit_options)
        except FitUsageError:
            continue
        rows.append(row(r, name(shape)))
    served = [r for r in rows[1:] if r["ep"] > 1]
    if served:  # the engine's layout for an MoE model: experts over every GPU, the DP width holding the most
        max(served, key=lambda x: (x["total_requests"] or 0, x["dp"]))["engine_pick"] = True
    most = max(rows, key=lambda x: x["total_requests"] or 0)
    for r in rows:
        r["most_requests"] = r is most
    return rows


def min_layout(spec, d: Deployment, requests: int, context, fit_options: dict) -> dict | None:
    """The fewest GPUs, in instances of a power-of-two size in the DP-attention + EP layout with the
    most data-parallel ranks the engine allows (attention TP 1 for MLA), that hold ``requests``."""
    from kvcalc.capacity.fit import fit, replicas_for
    from kvcalc.capacity.nodes import nodes_for

    if not layouts_modelled(spec, d):
        return None
    best = None
    for gpus in POWERS:
        for shape in candidates(spec, d, gpus):
            if shape.ep == 1:  # one GPU: no expert parallelism, so not this layout
                continue
            try:
                r = fit(spec, shape, context, search_min=False, **fit_options)
            except FitUsageError:
                continue
            if not r.total_concurrency:
                continue

            def held(seqs, shape=shape):  # each instance launched for its own share of the requests
                try:
                    return fit(spec, shape._replace(max_seqs=seqs), context, search_min=False,
                               **fit_options).total_concurrency
                except FitUsageError:
                    return None

            instances = replicas_for(requests, shape.dp, d.max_seqs, held)
            if instances is None:
                continue
            r = fit(spec, shape._replace(max_seqs=d.max_seqs or -(-requests // (instances * shape.dp))), context,
                    search_min=False, **fit_options)
            key = (instances * gpus, -shape.dp, instances)
            if best is None or key < best[0]:
                best = (key, {"gpus": instances * gpus, "instances": instances, "layout": name(shape),
                              "tp": shape.tp, "dp": shape.dp, "ep": shape.ep, "requests_per_instance":
                              r.total_concurrency, "weights_bytes_per_gpu": r.weights_bytes_per_gpu})
                if d.gpus_per_node is not None:
                    best[1]["nodes"] = nodes_for(d, instances, gpus, shape.attention_tp)
        if best is not None and best[0][0] <= gpus:
            break  # larger instances cannot use fewer GPUs
    return best[1] if best else None
