"""Run a list of tasks on one model; one failing task is reported and never stops the others."""

from __future__ import annotations

import traceback
from pathlib import Path

from sodakit.errors import EXIT_BUG, EXIT_USER, classify
from sodakit.eval.results import write_item_log
from sodakit.eval.tasks import EvalContext, get_task


def parse_task_list(spec: str) -> list[str]:
    names = [t.strip() for t in spec.split(",") if t.strip()]
    if not names:
        raise ValueError("--tasks is empty")
    bad = []
    for n in names:
        try:
            get_task(n)
        except KeyError:
            bad.append(n)
    if bad:
        from sodakit.eval.tasks import TASKS

        raise ValueError(f"unknown task(s) {bad}; available: {', '.join(sorted(TASKS))}")
    return names


def exit_code(task_results: dict) -> int:
    """0 when every task ran; else 1 if a failure was a bug, 2 if all were user errors (data, codec, ...)."""
    failures = [r for r in task_results.values() if r.get("status") == "error"]
    if not failures:
        return 0
    return EXIT_BUG if any(r.get("bug") for r in failures) else EXIT_USER


def run_tasks(ctx: EvalContext, names: list[str], data: dict[str, str], item_log_dir: Path | None = None,
              log=print) -> tuple[dict, int]:
    """{task: result dict} and the number of tasks that failed."""
    out: dict[str, dict] = {}
    failed = 0
    for name in names:
        spec = get_task(name)
        path = data.get(name)
        if path is None:
            default = spec.default_data()
            path = str(default) if default is not None else None
        log(f"[eval] {name}: data {path or '(none given)'}")
        try:
            res = spec.run(ctx, Path(path) if path else None)
        except Exception as e:
            failed += 1
            bug = classify(e)[0] == EXIT_BUG
            out[name] = {"status": "error", "error": f"{type(e).__name__}: {e}", "data": path, "bug": bug}
            log(f"[eval] {name}: FAILED: {type(e).__name__}: {e}")
            if bug:
                log(traceback.format_exc())
            continue
        d = res.to_dict()
        if item_log_dir is not None and res.items:
            d["item_log"] = str(write_item_log(item_log_dir, name, res.items))
        out[name] = d
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.metrics.items()
                          if not isinstance(v, list))
        c = res.counts
        log(f"[eval] {name}: {shown}  (scored {c['scored']}, excluded {c['read_errors'] + c['excluded_after_read']}, "
            f"{res.seconds:.1f}s)")
    for d in out.values():  # every result, failed ones too, names the protocol it followed
        d.setdefault("protocol", {}).setdefault("protocol", ctx.protocol)
    return out, failed
