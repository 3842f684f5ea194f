"""`evaluate(bundle, EvalConfig)`: the benchmark battery on an opened model, as a library call.

    bundle = open_model(cfg)                 # load_bundle with the config's model settings
    results = evaluate(bundle, cfg)          # the results JSON as a dict (also written to cfg.out)

One failing task is reported in the results (with "bug": true when it was an internal error) and
never stops the others; `exit_code` turns the results into the command's exit status.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from sodakit import storage
from sodakit.config import ConfigError
from sodakit.errors import EXIT_BUG, EXIT_USER, classify
from sodakit.eval.config import EvalConfig
from sodakit.eval.controls import with_control
from sodakit.eval.lm import as_scoring_lm
from sodakit.eval.results import run_header, write_item_log, write_results
from sodakit.eval.tasks import TASKS, EvalContext, get_task
from sodakit.model.bundle import Bundle, ModelLoadError, load_bundle


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def check_tasks(cfg: EvalConfig) -> list[str]:
    """The config's task names, refused (before any model is loaded) when empty or unknown."""
    if not cfg.tasks:
        raise ConfigError("tasks is empty: name the tasks to run, e.g. tasks=[tblimp,hellaswag] (see --list)")
    bad = [n for n in cfg.tasks if n not in TASKS]
    if bad:
        raise ConfigError(f"unknown task(s) {bad}; available: {', '.join(sorted(TASKS))}")
    unknown = sorted(set(cfg.data) - set(TASKS))
    if unknown:
        raise ConfigError(f"data names unknown task(s) {unknown}")
    return list(cfg.tasks)


def open_model(cfg: EvalConfig) -> Bundle:
    """The model of `cfg.model` opened with the config's settings; its codec when a spoken task needs one."""
    if not cfg.model:
        raise ConfigError("model is required: a sodakit checkpoint or run directory, or a Hugging Face causal LM")
    needs_codec = any(get_task(n).needs_codec for n in check_tasks(cfg))
    return load_bundle(cfg.model, device=cfg.device, dtype=cfg.dtype, backend=cfg.backend, tokenizer=cfg.tokenizer,
                       codec=cfg.codec, need_codec=None if needs_codec else False, need_tokenizer=True,
                       allow_codec_mismatch=cfg.allow_codec_mismatch)


def evaluate(bundle: Bundle, cfg: EvalConfig, log: Callable[[str], None] = _stderr,
             command: list[str] | None = None) -> dict:
    """Run `cfg.tasks` on `bundle`; the results (format sodakit.eval/1), written to `cfg.out` when set.

    `command` is what the results record as the command line (default: the `sodakit eval` command that
    reproduces `cfg`). Per-item records go next to `cfg.out` (`<stem>.items/<task>.jsonl`) with
    `cfg.log_items`, or into each task's result as "items" when there is no `cfg.out`.
    """
    names = check_tasks(cfg)
    if bundle.tokenizer is None:
        raise ModelLoadError(f"{bundle.info.path}: no tokenizer.json; pass --tokenizer PATH (a SODA-style tokenizer.json)")
    codec = with_control(bundle.codec, cfg.control)
    ctx = EvalContext(lm=as_scoring_lm(bundle.model), tokenizer=bundle.tokenizer, codec=codec, cfg=cfg,
                      codec_record=bundle.info.codec_record, device=bundle.info.device or "cpu")
    tok = bundle.tokenizer
    results = run_header(
        command or cfg.command_line(),
        model=bundle.info.to_dict(),
        tokenizer={"source": tok.text.source, "sha256": tok.text.sha256, "vocab": tok.vocab.to_dict()},
        codec=(codec.info().__dict__ if codec is not None else None),
        settings=cfg.settings(),
    )
    log(f"[eval] model {bundle.info.source or bundle.info.path} on {bundle.info.device or 'its own device'} "
        f"(device={cfg.device}" + (f", {bundle.info.dtype})" if bundle.info.dtype else ")"))
    out = storage.as_location(cfg.out) if cfg.out else None
    item_dir = _item_log_dir(out) if (cfg.log_items and out) else None
    results["tasks"], _ = run_tasks(ctx, names, cfg.data, item_dir, log=log)
    if out is not None:
        write_results(out, results)
        log(f"[eval] results: {out}" + (f" (per-item logs: {item_dir})" if item_dir else ""))
    return results


def _local_data(data: str) -> Path:
    """A task's data as a local path: benchmark data on an object store (each part of a "A,B" list) is
    copied once into sodakit's cache, since the readers take files and folders."""
    if "://" not in data:
        return storage.local_path(data)
    return Path(",".join(str(storage.local_copy(p)) if storage.is_remote(p) else p for p in data.split(",")))


def _item_log_dir(out: str) -> str:
    """`<stem>.items` beside the results file (a path or a URL)."""
    name = storage.basename(out)
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    return storage.join(storage.parent(out), f"{stem}.items")


def exit_code(task_results: dict) -> int:
    """0 when every task ran; else 1 if a failure was a bug, 2 if all were user errors (data, codec, ...)."""
    failures = [r for r in task_results.values() if r.get("status") == "error"]
    if not failures:
        return 0
    return EXIT_BUG if any(r.get("bug") for r in failures) else EXIT_USER


def run_tasks(ctx: EvalContext, names: list[str], data: dict[str, str], item_log_dir: str | Path | None = None,
              log: Callable[[str], None] = print) -> tuple[dict, int]:
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
            res = spec.run(ctx, _local_data(path) if path else None)
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
        elif res.items:
            d["items"] = res.items
        out[name] = d
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.metrics.items()
                          if not isinstance(v, list))
        c = res.counts
        log(f"[eval] {name}: {shown}  (scored {c['scored']}, excluded {c['read_errors'] + c['excluded_after_read']}, "
            f"{res.seconds:.1f}s)")
    for d in out.values():  # every result, failed ones too, names the protocol it followed
        d.setdefault("protocol", {}).setdefault("protocol", ctx.cfg.protocol)
    return out, failed
