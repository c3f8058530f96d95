"""`kvcalc verify`: build real attention layers, fill their caches, measure what was written.

The only part of kvcalc that imports torch, and only in ``layers``, ``caches``, ``measure``,
``device`` and ``runner``, and for ``--tp``/``--pp`` in ``tp`` (the parent: store, launcher,
results), ``tp_rank`` (the launcher and rank processes) and ``tp_layers`` (a rank's shards).
``plan`` and ``tp_plan`` (what to instantiate, the analytic numbers, the memory a run needs)
and ``report`` and ``tp_report`` (result objects, tables, JSON) stay torch-free, so the CLI
can describe a run and render results without importing torch.
"""

from kvcalc.errors import torch_hint

TORCH_MISSING = torch_hint("verify")
