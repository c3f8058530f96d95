"""`kvcalc explain` for the terminal: the figures a log printed, what each means, each check."""

from __future__ import annotations

from kvcalc.terminal import clean

ENGINE = {"vllm": "vLLM", "sglang": "SGLang"}
MARK = {"equal": "equal      ", "differs": "DIFFERS    ", "not checked": "not checked"}


def explain_lines(result, parsed) -> list[str]:
    version = parsed.first("version")
    head = (f"{ENGINE.get(result.engine, result.engine)} start-up log" + (f" {version.value}" if version else "")
            + f", {parsed.lines_read:,} lines" + (" (read up to the limit)" if parsed.truncated else "")
            + f" · model: {result.model or 'not resolved'} · GPU: {result.gpu or 'not resolved'}")
    lines = [clean(head), "", "What each figure means:"]
    for f in result.figures:
        who = f" [{f['worker']}]" if f["worker"] else ""
        lines.append(clean(f"  line {f['line']}{who}: {f['name']} = {f['printed']}: {f['means']}"))
    if result.checks:
        lines += ["", "Checked against kvcalc's engine rules:"]
        for c in result.checks:
            got = "" if c.recomputed is None else f"; kvcalc: {c.recomputed}"
            at = f" (line {c.line})" if c.line else ""
            lines.append(clean(f"  {MARK.get(c.verdict, c.verdict)} {c.name}{at}: logged {c.logged}{got}. {c.why}"))
    p = result.prediction
    if p and "error" not in p:
        gib = 1024**3
        lines += ["", f"kvcalc's own forecast for this deployment ({result.engine} {p['engine_version']} rules, "
                      f"utilization {p['gpu_util']:g}):"]
        logged_w = p["logged_weights_gib"]
        lines.append(f"  weights per GPU: {p['weights_bytes_per_gpu'] / gib:.2f} GiB"
                     + (f" (logged {logged_w:.2f} GiB)" if logged_w is not None else ""))
        parts = ", ".join(f"{k} {v / gib:.2f} GiB" for k, v in p["reserve_parts"].items())
        lines.append(f"  reserve (estimate): {parts}")
        logged_kv = p["logged_available_kv_gib"]
        lines.append(f"  KV budget per GPU: {p['kv_budget_bytes_per_gpu'] / gib:.2f} GiB"
                     + (f" (logged {logged_kv:.2f} GiB: kvcalc's estimate differs by "
                        f"{p['kv_budget_bytes_per_gpu'] / gib - logged_kv:+.2f} GiB)" if logged_kv is not None else ""))
    elif p:
        lines += ["", clean(f"kvcalc's forecast: {p['error']}")]
    for note in result.notes:
        lines.append(clean(f"note: {note}"))
    return lines
