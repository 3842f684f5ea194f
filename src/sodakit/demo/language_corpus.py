"""The demo's speech corpus in its own language (`sodakit.demo.language`), read by many offline voices.

The sentences are split before anything is synthesised:

    held-out  val sentences (validation loss), ASR test sentences, TTS targets and voice prompts, and
              every member of the BLiMP-like minimal pairs -- none of them is ever in training data;
    train     distinct sentences, each read once by one voice (recordings of `sentences_per_recording`
              sentences, one voice each), plus a larger text-only corpus (text is free to generate).

The split is a pure function of the seed and sizes (`plan_split`), so the benchmark builder can rebuild
the held-out part without reading the corpus. Outputs (the layout of `sodakit.demo.corpus`):
manifest.jsonl / manifest_val.jsonl (one row per sentence: recording audio, start, end, text, speaker),
text.txt (text-only documents, one per line), text_val.txt, heldout.json (the held-out sentences and
pairs), corpus.json (statistics).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from sodakit.config import atomic_write_text
from sodakit.demo.language import minimal_pairs, phrases, sentences
from sodakit.demo.voices import (
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FLITE_VOICES,
    PAUSE_SECONDS,
    DemoVoice,
    engine_rota,
    join_recording,
    render_sentences,
    usable_voice,
    voice_pool,
)


@dataclass
class LanguageCorpusConfig:
    train_sentences: int = 6000
    text_sentences: int = 40_000  # text-only documents (5% of the training mixture)
    text_sentences_per_line: int = 4  # sentences per text-only document
    val_sentences: int = 240
    test_sentences: int = 200  # ASR test + TTS targets/prompts come from these
    pairs_per_phenomenon: int = 200  # BLiMP-like candidate pairs (8 phenomena); the bench keeps length-matched ones
    sentences_per_recording: int = 8
    voices: int = 120  # espeak-ng voices (accent x variant x pitch x rate)
    flite_share: float = 0.2  # share of the recordings read by flite voices (whole sentences)
    accents: tuple[str, ...] = ESPEAK_ACCENTS  # espeak-ng English accents of the pool
    variants: tuple[str, ...] = ESPEAK_VARIANTS
    pitches: tuple[int, ...] = tuple(range(30, 71, 5))
    speeds: tuple[float, ...] = (1.0, 0.92, 1.08, 0.85, 1.15)
    flite_voices: tuple[str, ...] = FLITE_VOICES  # each at every rate of `speeds`
    max_words: int = 12  # longest sentence of the spoken part
    # Share of the espeak-ng training recordings whose segments are phrases ("the old dogs" | "sleep" |
    # "under the table."), each spoken on its own and joined by PHRASE_PAUSE: short segments whose
    # transcript covers a second of audio teach which sounds make which words; the rest are whole
    # sentences (flite recordings always are: it would need a process per segment).
    phrase_share: float = 0.0
    word_share: float = 0.0  # share of the espeak-ng training recordings read word by word (a segment per word)
    val_voices: int = 24  # the validation recordings use this many of the training voices
    sample_rate: int = 16_000
    seed: int = 0


@dataclass
class Split:
    train: list[str]
    text: list[str]
    val: list[str]
    test: list[str]
    pairs: list[dict]


def plan_split(cfg: LanguageCorpusConfig) -> Split:
    """Held-out sentences and pairs first, then training and text-only sentences that avoid all of them."""
    pairs = minimal_pairs(cfg.pairs_per_phenomenon, cfg.seed + 101)
    held = {p.good for p in pairs} | {p.bad for p in pairs}
    val = sentences(cfg.val_sentences, cfg.seed + 102, exclude=held)
    test = sentences(cfg.test_sentences, cfg.seed + 103, exclude=held | set(val))
    held |= set(val) | set(test)
    train = sentences(cfg.train_sentences, cfg.seed + 104, exclude=held, max_words=cfg.max_words)
    text = sentences(cfg.text_sentences, cfg.seed + 105, exclude=held)
    return Split(train, text, val, test, [asdict(p) for p in pairs])


def demo_voices(cfg: LanguageCorpusConfig) -> list[DemoVoice]:
    """The corpus's voices: flite voices (each at every rate) first, then the espeak-ng pool."""
    flite = [DemoVoice(f"flite:{name}", speed) for name in cfg.flite_voices for speed in cfg.speeds]
    flite = [v for v in flite if usable_voice(v.voice)] if cfg.flite_share > 0 else []
    espeak = voice_pool(cfg.voices, cfg.seed, 0.0, accents=tuple(cfg.accents), variants=tuple(cfg.variants),
                        pitches=tuple(cfg.pitches), speeds=tuple(cfg.speeds)) if cfg.voices else []
    if not flite and not espeak:
        raise ValueError("the corpus has no voice: set voices > 0 (espeak-ng) or flite_voices with flite_share > 0")
    return flite + espeak


PHRASE_PAUSE = 0.12  # seconds between the phrases of one sentence (sentences: voices.PAUSE_SECONDS)


def _words(sentence: str) -> list[str]:
    """A sentence as its words, the last one keeping the final punctuation."""
    return sentence.split()


def _render(args: tuple[str, list[str], DemoVoice, str, int, str]) -> list[dict]:
    from sodakit.audio.io import save_wav

    rec_id, sents, voice, audio_dir, sr, unit = args
    if unit != "sentence":
        cut = [phrases(s) if unit == "phrase" else _words(s) for s in sents]
        texts = [p for c in cut for p in c]
        pauses = [PHRASE_PAUSE if k < len(c) - 1 else PAUSE_SECONDS for c in cut for k in range(len(c))]
    else:
        texts, pauses = sents, None
    wav, spans = join_recording(render_sentences(texts, voice, sr), sr, pauses)
    path = save_wav(Path(audio_dir) / f"{rec_id}.wav", wav, sr)
    return [{"recording_id": rec_id, "start": a, "end": b, "text": t, "speaker": voice.label, "id": f"{rec_id}-{k:02d}",
             "audio": str(path)} for k, (t, (a, b)) in enumerate(zip(texts, spans))]


def build_language_corpus(out_dir: str | Path, cfg: LanguageCorpusConfig, workers: int = 2, log=print) -> dict:
    t0 = time.time()
    out = Path(out_dir).resolve()  # manifests hold absolute audio paths
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    split = plan_split(cfg)
    voices = demo_voices(cfg)
    k = cfg.sentences_per_recording
    jobs = []
    for part, texts in (("train", split.train), ("val", split.val)):
        pool = voices
        if part == "val":  # validation reads with a spread-out subset of each engine's voices
            step = max(1, len(voices) // cfg.val_voices)
            pool = [v for e in ("flite", "espeak") for v in [v for v in voices if v.engine == e][::step]]
        rota = engine_rota(pool, -(-len(texts) // k), cfg.flite_share)
        for i in range(0, len(texts), k):
            j = i // k
            voice = rota[j]
            # A golden-ratio sequence spreads the units below evenly over the recordings.
            u = (j * 0.618034) % 1.0
            unit = "sentence"
            # flite reads every segment in its own process (~50 ms each): it reads whole sentences only.
            if part == "train" and voice.engine != "flite":
                unit = "word" if u < cfg.word_share else ("phrase" if u < cfg.word_share + cfg.phrase_share else "sentence")
            jobs.append((part, (f"{part}{i // k:05d}", texts[i : i + k], voice, str(audio_dir), cfg.sample_rate, unit)))
    # Slow (flite) recordings first, so the pool's last jobs are short ones.
    order = sorted(range(len(jobs)), key=lambda j: jobs[j][1][2].engine != "flite")
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    results: dict[int, list[dict]] = {}
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for n, (j, res) in enumerate(zip(order, pool.map(_render, [jobs[j][1] for j in order], chunksize=4)), 1):
            results[j] = res
            if n % 200 == 0 or n == len(jobs):
                log(f"[corpus] synthesised {n}/{len(jobs)} recordings")
    for j, (part, _) in enumerate(jobs):
        rows[part] += results[j]
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows["train"]))
    atomic_write_text(out / "manifest_val.jsonl", "".join(json.dumps(r) + "\n" for r in rows["val"]))
    per = cfg.text_sentences_per_line
    atomic_write_text(out / "text.txt", "".join(" ".join(split.text[i : i + per]) + "\n" for i in range(0, len(split.text), per)))
    atomic_write_text(out / "text_val.txt", "".join(s + "\n" for s in split.val))
    atomic_write_text(out / "heldout.json", json.dumps({"val": split.val, "test": split.test, "pairs": split.pairs}, indent=1))

    def hours(rs: list[dict]) -> float:
        return round(sum(r["end"] - r["start"] for r in rs) / 3600, 4)

    flite = sum(r["end"] - r["start"] for r in rows["train"] if r["speaker"].startswith("flite"))
    info = {"language": "sodakit.demo.language", "recordings": len({r["recording_id"] for r in rows["train"]}),
            "segments": len(rows["train"]), "speech_hours": hours(rows["train"]), "flite_hours": round(flite / 3600, 4),
            "val_segments": len(rows["val"]), "val_speech_hours": hours(rows["val"]), "voices": len(voices),
            "text_sentences": len(split.text), "test_sentences": len(split.test), "pairs": len(split.pairs),
            "train_words": sum(len(s.split()) for s in split.train),
            "short_segments": sum(r["text"][-1:] not in ".?" for r in rows["train"]), "seconds": round(time.time() - t0, 1),
            "config": asdict(cfg)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2))
    return info
