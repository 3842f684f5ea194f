"""`sodakit eval`: run the SODA benchmark battery on a checkpoint and write a results JSON.

    sodakit eval [CONFIG.yaml] model=PATH tasks=[tblimp,hellaswag,swuggy] data.swuggy=DIR [codec=DIR]
                 [protocol=soda|sodakit] [limit=N] [batch_size=B] [out=results.json] [log_items=true]
    sodakit eval --model PATH --tasks tblimp,swuggy --data swuggy=DIR ...    (the same, as flags)
    sodakit eval --list                                                      (tasks and their data)
    sodakit eval judge-lm TEXT ... --out LM.arpa      (an ASR judge LM of your text: asr_judge=pocketsphinx:LM.arpa)

Every key of the config is listed by --help; the flags are other spellings of the same keys. protocol
soda (the default) follows the SODA authors' evaluation scripts rule for rule; protocol sodakit uses
sodakit's own choices (ties count half, greedy text-only ASR, corpus WER); every task reports both
readings under their own metric names (see docs/evaluation.md).
"""

from __future__ import annotations

import sys

from sodakit.config import ConfigError, Flag, parse_config_args
from sodakit.eval.config import CONTROLS, EvalConfig
from sodakit.eval.evaluator import check_tasks, evaluate, exit_code, open_model
from sodakit.eval.protocols import PROTOCOLS
from sodakit.eval.tasks import TASKS
from sodakit.model.bundle import BACKENDS

FLAGS = (
    Flag("model"),
    Flag("tasks", "task names, comma-separated (see --list)", nargs="+"),
    Flag("protocol", choices=tuple(sorted(PROTOCOLS))),
    Flag("data", "data location of a task", mapping=True, metavar="TASK=PATH"),
    Flag("codec"),
    Flag("allow_codec_mismatch", const=True),
    Flag("tokenizer"),
    Flag("backend", choices=BACKENDS),
    Flag("limit"),
    Flag("batch_size"),
    Flag("device"),
    Flag("dtype"),
    Flag("input_codebooks"),
    Flag("score_codebooks"),
    Flag("control", choices=CONTROLS),
    Flag("asr_judge"),
    Flag("speaker_judge"),
    Flag("shots"),
    Flag("asr_max_new_tokens"),
    Flag("tts_max_new_tokens"),
    Flag("save_audio"),
    Flag("seed"),
    Flag("out"),
    Flag("log_items", const=True),
    Flag("quiet", "no progress output", const=True),
)


def list_tasks() -> str:
    lines = ["tasks:"]
    for name, spec in sorted(TASKS.items()):
        lines.append(f"  {name:<12} {spec.description}\n  {'':<12} data: {spec.data_help}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["judge-lm"]:
        from sodakit.eval.judges.judge_lm import main as judge_lm_main

        return judge_lm_main(argv[1:])
    if "--list" in argv:
        print(list_tasks())
        return 0
    try:
        cfg, _ = parse_config_args(EvalConfig, argv, "sodakit eval", __doc__ or "", flags=FLAGS)
        if not cfg.model or not cfg.tasks:
            raise ConfigError("model and tasks are required (model=PATH tasks=[a,b], or --model/--tasks), or --list")
        check_tasks(cfg)
    except ConfigError as e:  # bad arguments: one line, exit 2, before any model is loaded
        print(f"sodakit eval: {e}", file=sys.stderr)
        return 2
    results = evaluate(open_model(cfg), cfg, command=["sodakit", "eval", *argv])
    return exit_code(results["tasks"])
