"""`sodakit generate asr|tts|continue|s2st`: prompting a trained model, WAV and text in and out.

    sodakit generate asr      model=RUN a.wav b.flac [output=transcripts.jsonl]
    sodakit generate tts      model=RUN text="Hello there." output=hello.wav
                              [voice_audio=ref.wav voice_text="Transcript of ref."]
    sodakit generate continue model=RUN prompt.wav seconds=4 output=cont.wav [include_prompt=true]
    sodakit generate s2st     model=FT_RUN src.wav source_lang=fr output=out.wav
    sodakit generate s2st     model=FT_RUN manifest=test.tsv output_dir=out/    (then: sodakit eval tasks=[s2st])

Each task takes `[CONFIG.yaml] key=value ...` (`--help` lists the keys); the flags of earlier versions
(--model, --text, --max-new-tokens, --temperature, ...) are other spellings of the same keys. The codec
is the one recorded in the checkpoint unless codec= names one (it must have the same config hash, or
allow_codec_mismatch=true). Output audio is written at the codec's sample rate. The model runs on
device=auto (CUDA when present) unless told otherwise, and says where.

A token budget that would run past the model's context is clamped to it (with a warning); an input that
cannot be generated at all (a prompt longer than the context) is reported and skipped, the others are
still written, and the command then exits with status 2. Several inputs show progress per item.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from sodakit.audio.io import load_audio, save_wav
from sodakit.config import Flag, atomic_write_text, parse_config_args
from sodakit.data.s2st_manifest import REQUIRED_TRANSLATE, read_manifest
from sodakit.errors import EXIT_USER
from sodakit.generate.config import ASRConfig, ContinueConfig, GenerateConfig, S2STConfig, TTSConfig
from sodakit.generate.s2st import translate_manifest, translation_record
from sodakit.generate.tasks import SILENCE_DETECTORS, SodaGenerator, TaskOutput
from sodakit.model.bundle import load_bundle
from sodakit.progress import Progress

COMMON_FLAGS = (
    Flag("model"),
    Flag("codec"),
    Flag("tokenizer"),
    Flag("allow_codec_mismatch", const=True),
    Flag("device"),
    Flag("dtype"),
    Flag("batch_size"),
    Flag("sampling.temperature", "0 = greedy", name="--temperature"),
    Flag("sampling.top_k", "keep the k most likely ids (0 = off)", name="--top-k"),
    Flag("sampling.top_p", "nucleus mass", name="--top-p"),
    Flag("sampling.seed", "sampling seed", name="--seed"),
    Flag("quiet", "no progress output", const=True),
)
SILENCE_FLAGS = (Flag("silence_stop_seconds"), Flag("silence_detector", choices=SILENCE_DETECTORS))
OUTPUT_FLAGS = (Flag("output"), Flag("output_dir"))
AUDIO_OUTPUT_FLAGS = (*SILENCE_FLAGS, *OUTPUT_FLAGS, Flag("max_new_tokens"), Flag("max_seconds"))
TASK_FLAGS = {
    "asr": (Flag("max_new_tokens"), Flag("shots"), Flag("output")),
    "tts": (*AUDIO_OUTPUT_FLAGS, Flag("text"), Flag("text_file"), Flag("voice_audio"), Flag("voice_text")),
    "continue": (*SILENCE_FLAGS, *OUTPUT_FLAGS, Flag("seconds"), Flag("include_prompt", const=True)),
    "s2st": (*AUDIO_OUTPUT_FLAGS, Flag("manifest"), Flag("source_lang"), Flag("source_text"), Flag("target_lang"),
             Flag("max_text_tokens"), Flag("limit")),
}
HELP = {"asr": "speech -> transcript", "tts": "text -> speech, optionally in the voice of a prompt",
        "continue": "continue a recording", "s2st": "speech -> translated speech in the source voice (fine-tuned model)"}


def _generator(cfg: GenerateConfig) -> SodaGenerator:
    bundle = load_bundle(cfg.model, device=cfg.device, dtype=cfg.dtype, backend="sodakit", tokenizer=cfg.tokenizer,
                         codec=cfg.codec, need_codec=True, allow_codec_mismatch=cfg.allow_codec_mismatch)
    g = SodaGenerator.from_bundle(bundle, batch_size=cfg.batch_size)
    for note in g.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"model {bundle.info.path} on {bundle.info.device} (device={cfg.device}, {bundle.info.dtype}), "
          f"context {g.context_length} tokens", file=sys.stderr)
    return g


@contextlib.contextmanager
def _progress(g: SodaGenerator, cfg: GenerateConfig, task: str, total: int) -> Iterator[None]:
    """Progress per item while the generator decodes (shown for several items)."""
    with Progress(f"generate {task}", total=total, unit="item", quiet=cfg.quiet or total < 2) as bar:
        g.on_items_done = bar.update
        try:
            yield
        finally:
            g.on_items_done = None


def _failures(task: str, names: Sequence[str], results: Sequence[TaskOutput]) -> int:
    """Warn about every input that produced nothing; the command's exit status (2 when any failed)."""
    failed = [(name, r.error) for name, r in zip(names, results) if r.error is not None]
    for name, error in failed:
        print(f"warning: {name}: {error}", file=sys.stderr)
    if failed:
        print(f"sodakit generate {task}: {len(failed)} of {len(results)} input(s) failed (see above); the others "
              "were written", file=sys.stderr)
    return EXIT_USER if failed else 0


def _save(path: Path, wav, sr: int) -> None:
    save_wav(path, wav, sr)
    print(f"wrote {path} ({len(wav) / sr:.2f} s)", file=sys.stderr)


def _out_paths(cfg, inputs: list[str] | None, n: int) -> list[Path]:
    if n == 1 and cfg.output:
        return [Path(cfg.output)]
    if not cfg.output_dir:
        raise ValueError("give output=... (--output) for one item or output_dir=... (--output-dir) for several")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if inputs:
        stems = [Path(p).stem for p in inputs]
        if len(set(stems)) == len(stems):
            return [out / f"{s}.wav" for s in stems]
    return [out / f"{i:04d}.wav" for i in range(n)]


def _silence(g: SodaGenerator, cfg, calibration):
    if cfg.silence_stop_seconds is None:
        return None
    return g.silence_detector(cfg.silence_detector, calibration)


def run_asr(cfg: ASRConfig) -> int:
    g = _generator(cfg)
    sr = g.sample_rate
    waves = [load_audio(p, sr) for p in cfg.audio]
    shots = []
    if cfg.shots:
        base = Path(cfg.shots).parent
        for n, line in enumerate(Path(cfg.shots).read_text().splitlines(), 1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{cfg.shots}:{n}: expected `audio_path<TAB>transcript`")
            path, text = line.split("\t", 1)
            p = Path(path) if Path(path).is_absolute() else base / path
            shots.append((load_audio(p, sr), sr, text))
    with _progress(g, cfg, "asr", len(waves)):
        results = g.asr(waves, sr, shots=shots, max_new_tokens=cfg.max_new_tokens, sampling=cfg.sampling)
    if cfg.output and cfg.output.endswith(".jsonl"):
        lines = [json.dumps({"audio": p, "text": r.text if r.error is None else None, "stop_reason": r.stop_reason}
                            | ({"error": r.error} if r.error is not None else {}))
                 for p, r in zip(cfg.audio, results)]
    else:
        lines = [r.text for r in results]  # a failed input keeps its (empty) line: line i is input i
    text = "\n".join(lines) + "\n"
    if cfg.output:
        atomic_write_text(Path(cfg.output), text)
    else:
        sys.stdout.write(text)
    return _failures("asr", cfg.audio, results)


def run_tts(cfg: TTSConfig) -> int:
    g = _generator(cfg)
    sr = g.sample_rate
    texts = [cfg.text] if cfg.text is not None else [t for t in Path(cfg.text_file).read_text().splitlines() if t.strip()]
    if not texts:
        raise ValueError(f"{cfg.text_file}: no text lines")
    voice, calibration = None, []
    if cfg.voice_audio:
        wav = load_audio(cfg.voice_audio, sr)
        voice = g.voice(wav, sr, cfg.voice_text)
        calibration.append((wav, sr))
    outs = _out_paths(cfg, None, len(texts))
    with _progress(g, cfg, "tts", len(texts)):
        results = g.tts(
            texts, voice, max_new_tokens=cfg.max_new_tokens, sampling=cfg.sampling, max_seconds=cfg.max_seconds,
            silence_stop_seconds=cfg.silence_stop_seconds, silence=_silence(g, cfg, calibration),
        )
    for path, r in zip(outs, results):
        if r.error is None:
            _save(path, r.audio, sr)
            print(f"  stop: {r.stop_reason}, {r.audio_frames} frames, {r.new_tokens} tokens", file=sys.stderr)
    return _failures("tts", [str(p) for p in outs], results)


def run_continue(cfg: ContinueConfig) -> int:
    g = _generator(cfg)
    sr = g.sample_rate
    waves = [load_audio(p, sr) for p in cfg.audio]
    outs = _out_paths(cfg, cfg.audio, len(waves))
    with _progress(g, cfg, "continue", len(waves)):
        results = g.continue_audio(
            waves, sr, seconds=cfg.seconds, sampling=cfg.sampling, silence_stop_seconds=cfg.silence_stop_seconds,
            silence=_silence(g, cfg, [(w, sr) for w in waves]), include_prompt=cfg.include_prompt,
        )
    for path, r in zip(outs, results):
        if r.error is None:
            _save(path, r.audio, sr)
    return _failures("continue", cfg.audio, results)


def run_s2st(cfg: S2STConfig) -> int:
    g = _generator(cfg)
    sr = g.sample_rate
    if cfg.manifest:
        return _translate_manifest(g, cfg)
    waves = [load_audio(p, sr) for p in cfg.audio]
    with _progress(g, cfg, "s2st", len(waves)):
        results = g.s2st(
            waves, sr, source_lang=cfg.source_lang,
            source_texts=None if cfg.source_text is None else [cfg.source_text], target_lang=cfg.target_lang,
            max_new_tokens=cfg.max_new_tokens, sampling=cfg.sampling, max_seconds=cfg.max_seconds,
            silence_stop_seconds=cfg.silence_stop_seconds, silence=_silence(g, cfg, [(w, sr) for w in waves]),
            max_text_tokens=cfg.max_text_tokens,
        )
    for path, r in zip(_out_paths(cfg, cfg.audio, len(waves)), results):
        if r.error is not None:
            continue
        _save(path, r.audio, sr)
        print(json.dumps({"output": str(path), "source_lang": r.extra.get("source_lang"), "source_text": r.extra.get("source_text"),
                          "target_text": r.text, "stop_reason": r.stop_reason}))
    return _failures("s2st", cfg.audio, results)


def _translate_manifest(g: SodaGenerator, cfg: S2STConfig) -> int:
    """Every item of the manifest: <output_dir>/wav/<id>.wav and items.jsonl (what each translation says)."""
    if not cfg.output_dir:
        raise ValueError("manifest=... needs output_dir=... (--output-dir): the WAVs and items.jsonl go there")
    items = read_manifest(cfg.manifest, require=REQUIRED_TRANSLATE)[: cfg.limit]
    out = Path(cfg.output_dir)
    with _progress(g, cfg, "s2st", len(items)):
        translations = translate_manifest(
            g, items, out / "wav", sampling=cfg.sampling, max_new_tokens=cfg.max_new_tokens,
            max_seconds=cfg.max_seconds, silence_stop_seconds=cfg.silence_stop_seconds,
            force_source_lang=cfg.source_lang is not None, max_text_tokens=cfg.max_text_tokens,
        )
    records = [translation_record(t, g.sample_rate) | {"audio_file": str(t.audio_path.relative_to(out))}
               for t in translations]
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    print(f"wrote {len(records)} translations to {out} (wav/, items.jsonl); score them with "
          f"`sodakit eval model={cfg.model} tasks=[s2st] data.s2st={cfg.manifest}`", file=sys.stderr)
    return _failures("s2st", [t.item.id for t in translations], [t.output for t in translations])


CONFIGS: dict[str, tuple[type, object]] = {
    "asr": (ASRConfig, run_asr), "tts": (TTSConfig, run_tts), "continue": (ContinueConfig, run_continue),
    "s2st": (S2STConfig, run_s2st),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in CONFIGS:  # no task: the overview (--help) or argparse's error
        parser = argparse.ArgumentParser(prog="sodakit generate", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("task", choices=list(CONFIGS), help="; ".join(f"{t}: {h}" for t, h in HELP.items()))
        parser.parse_args(argv[:1])
    task, rest = argv[0], argv[1:]
    cls, run = CONFIGS[task]
    cfg, _ = parse_config_args(cls, rest, f"sodakit generate {task}", HELP[task], flags=COMMON_FLAGS + TASK_FLAGS[task],
                               positionals=() if task == "tts" else ("audio",))
    return run(cfg)
