"""`sodakit` command line: a thin dispatcher over the library.

Each subcommand lives next to the stage it drives, as a module with `main(argv) -> int`; it is imported
only when called, so `sodakit --help` stays fast and a broken optional dependency of one stage does not
break the others.

Errors are reported here, once for every command (see sodakit/errors.py): a user error is one line and
exit code 2, a bug one line and exit code 1; `sodakit --debug CMD ...` or SODAKIT_DEBUG=1 adds the
traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from sodakit.errors import EXIT_USER, debug_requested, report

# name -> (module holding `main(argv)`, one-line help), in pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "tokenizer": ("sodakit.tokens.commands", "train the offline text BPE / inspect a tokenizer"),
    "codec": ("sodakit.audio.commands_codec", "fit the offline codec; encode/decode audio files"),
    "tokenize": ("sodakit.audio.commands_tokenize", "encode an audio dataset into segment shards (resumable)"),
    "import-codes": ("sodakit.audio.commands_import", "turn released codec-code data (yodas2-mm JSON) into segment shards"),
    "pack": ("sodakit.data.commands", "build interleaved documents and pack them into uint32 token shards"),
    "inspect": ("sodakit.data.inspect", "show a packed dataset's metadata and decode sample windows"),
    "train": ("sodakit.train.commands", "pre-train a model (single process or torchrun / FSDP2)"),
    "finetune": ("sodakit.train.finetune", "supervised fine-tuning with response-masked loss (e.g. S2ST)"),
    "convert": ("sodakit.model.commands", "import/export Hugging Face Qwen3ForCausalLM checkpoints"),
    "isoflop": ("sodakit.scaling.commands", "IsoFLOP scaling study: plan, run, fit, predict"),
    "bench-data": ("sodakit.eval.bench_data", "synthesise offline look-alike benchmark sets in real layouts"),
    "eval": ("sodakit.eval.commands", "run the SODA benchmark battery on a checkpoint"),
    "generate": ("sodakit.generate.commands", "ASR, TTS, audio continuation and S2ST by prompting"),
    "report": ("sodakit.report.commands", "build the HTML/Markdown/JSON report of a run"),
    "demo": ("sodakit.demo", "the embedded default end to end on a CPU: data, codec, train, eval, report"),
}


def available_commands() -> dict[str, tuple[str, str]]:
    return {name: spec for name, spec in COMMANDS.items() if importlib.util.find_spec(spec[0]) is not None}


def usage() -> str:
    lines = ["usage: sodakit [--debug] <command> [args]   (sodakit <command> --help for details)", "", "commands:"]
    for name, (_, help_text) in available_commands().items():
        lines.append(f"  {name:<11} {help_text}")
    lines += ["", "--debug (or SODAKIT_DEBUG=1) prints the traceback of an error; exit codes: 0 done, "
              "1 a bug in sodakit, 2 a user error (input, config, disk), 3 training diverged"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested()
    while argv and argv[0] == "--debug":
        debug = True
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from sodakit import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    commands = available_commands()
    if name not in commands:
        print(f"sodakit: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_USER
    try:
        module = importlib.import_module(commands[name][0])
        return int(module.main(rest) or 0)
    except (Exception, KeyboardInterrupt) as e:
        return report(f"sodakit {name}", e, debug, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
