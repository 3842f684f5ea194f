"""`sodakit bench-data OUT`: synthesise small look-alike benchmark sets in the REAL layouts, offline.

The published sets (ZeroSpeech 2021 sWUGGY/sBLIMP, SALMon, LibriSpeech, Seed-TTS-eval) cannot be
downloaded here, so this builds small sets of the same kind with espeak-ng / flite voices and writes
them in the layouts the readers expect -- they go through exactly the task code of the real data:

    OUT/zerospeech2021/lexical/dev/       word vs pseudo-word (gold.csv + wav)            -> swuggy, twuggy
    OUT/zerospeech2021/syntactic/dev/     BLiMP grammatical vs ungrammatical (gold.csv)   -> sblimp
    OUT/hf/sWUGGY, OUT/hf/sBLIMP          the same pairs as Hugging Face Parquet          -> swuggy, sblimp
    OUT/blimp/pairs.jsonl                 the sBLIMP pairs as text, BLiMP's JSONL layout   -> tblimp
    OUT/salmon/{part}/sample_i_k.wav      speaker / gender / room / background consistency -> salmon
    OUT/librispeech/{test,dev}-clean/     LibriSpeech layout (flac + trans.txt)           -> ASR
    OUT/seedtts/en/meta.lst               Seed-TTS-eval list with prompt wavs             -> TTS
    OUT/bench_data.json                   what was built, from what, with which voices and seed

Numbers on these sets are NOT comparable to published ones (synthetic voices, small sets); they check
that a pipeline runs end to end and rank checkpoints against each other.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from sodakit import __version__
from sodakit.audio.synth import SynthesisError, parse_voice, synthesize
from sodakit.config import atomic_write_text
from sodakit.eval.bench_sentences import SENTENCES
from sodakit.eval.data_dir import BLIMP_FILE, data_hint, default_data
from sodakit.eval.layouts import (
    SpokenPair,
    write_hf_pairs,
    write_librispeech,
    write_salmon_folder,
    write_seedtts,
    write_zr2021,
)
from sodakit.eval.minimal_pairs import write_blimp_jsonl
from sodakit.eval.pseudowords import to_espeak, word_pairs
from sodakit.eval.readers.blimp import read_blimp
from sodakit.progress import Progress

SETS = ("swuggy", "sblimp", "salmon", "asr", "tts")
# SALMon parts that synthetic TTS can imitate; sentiment and the alignment parts need real recordings.
SALMON_SYNTH_PARTS = ("speaker_consistency", "gender_consistency", "rir_consistency", "bg_all_consistency")
FEMALE = ("flite:slt", "espeak:en-us+f1", "espeak:en-us+f2", "espeak:en-us+f3", "espeak:en-gb+f4")
MALE = ("flite:rms", "flite:awb", "flite:kal16", "espeak:en-us+m1", "espeak:en-gb+m3", "espeak:en-us+m7")
# espeak voices for sWUGGY (phoneme input needs espeak; ZeroSpeech also uses a handful of voices).
WUGGY_VOICES = ("espeak:en-us", "espeak:en-us+f3", "espeak:en-gb+m3", "espeak:en-us+f1")
GAP_SECONDS = 0.08  # silence between the two halves of a SALMon-like utterance (same in pos and neg)
SNR_DB = 15.0  # background level of the background-consistency part


@dataclass
class BenchDataConfig:
    out: str
    sets: tuple[str, ...] = SETS
    words: int = 40  # sWUGGY pairs (each spoken by every voice)
    blimp_pairs: int = 40  # sBLIMP pairs (each spoken by every voice)
    salmon_pairs: int = 20  # per SALMon part
    asr_utterances: int = 20
    tts_items: int = 10
    voices: int = 2  # voices per sWUGGY/sBLIMP pair (ZeroSpeech uses several)
    sample_rate: int = 16_000
    seed: int = 0
    blimp: str | None = None  # BLiMP JSONL dir / tarball; default $SODAKIT_DATA/blimp/... when present
    hf_layout: bool = True


def _available(voices: tuple[str, ...]) -> list[str]:
    ok = []
    for v in voices:
        try:
            parse_voice(v)
            ok.append(v)
        except SynthesisError:
            pass
    return ok


def _say(text: str, voice: str, sr: int) -> np.ndarray:
    wav = synthesize(text, voice, sample_rate=sr)
    return _trim(wav)


def _trim(wav: np.ndarray, thresh: float = 1e-3) -> np.ndarray:
    """Drop leading/trailing near-silence (TTS engines pad differently per voice)."""
    idx = np.flatnonzero(np.abs(wav) > thresh)
    return wav[idx[0] : idx[-1] + 1] if idx.size else wav


def _blimp_pairs(cfg: BenchDataConfig, rng: random.Random) -> list:
    path = Path(cfg.blimp) if cfg.blimp else default_data(BLIMP_FILE)
    if path is None or not path.exists():
        if cfg.blimp:
            raise FileNotFoundError(f"sBLIMP look-alike: BLiMP JSONL {path} does not exist")
        # No BLiMP release on this machine: template minimal pairs in BLiMP's layout stand in.
        per = -(-cfg.blimp_pairs // 6)
        path = write_blimp_jsonl(Path(cfg.out) / "blimp-templates", n_per_phenomenon=max(per, 1), seed=cfg.seed)
    items = read_blimp(path).items
    # Spread over phenomena: one pair per phenomenon in turn.
    by: dict[str, list] = {}
    for it in items:
        by.setdefault(it.meta["phenomenon"], []).append(it)
    phen = sorted(by)
    rng.shuffle(phen)
    out = []
    while len(out) < cfg.blimp_pairs and any(by.values()):
        for p in phen:
            if by[p] and len(out) < cfg.blimp_pairs:
                out.append(by[p].pop(rng.randrange(len(by[p]))))
    return out, str(path)


def build_swuggy(cfg: BenchDataConfig, out: Path, log) -> dict:
    voices = _available(WUGGY_VOICES)[: cfg.voices]
    if not voices:
        raise RuntimeError("sWUGGY look-alike needs espeak-ng voices (phoneme input); none available")
    pairs = []
    for i, wp in enumerate(word_pairs(cfg.words, cfg.seed)):
        for v in voices:
            vname = v.split(":")[1].replace("+", "_")
            pairs.append(SpokenPair(
                id=str(i), voice=vname, pos_wav=_say(to_espeak(wp.word_pron), v, cfg.sample_rate),
                neg_wav=_say(to_espeak(wp.pseudo_pron), v, cfg.sample_rate), pos_text=wp.word, neg_text=wp.pseudo,
                meta={"frequency": round(wp.zipf, 2), "length": len(wp.word_pron),
                      "pos_phones": " ".join(wp.word_pron), "neg_phones": " ".join(wp.pseudo_pron)}))
    write_zr2021(out / "zerospeech2021", "lexical", pairs, cfg.sample_rate)
    if cfg.hf_layout:
        write_hf_pairs(out / "hf" / "sWUGGY", pairs, cfg.sample_rate)
    log(f"[bench-data] swuggy: {cfg.words} word/pseudo-word pairs x {len(voices)} voices")
    return {"pairs": cfg.words, "voices": voices, "frequency": "wordfreq zipf of the word",
            "pseudo_words": "CMUdict phoneme substitutions keeping syllable structure; clusters attested in "
                            "common English words; not a CMUdict pronunciation"}


def build_sblimp(cfg: BenchDataConfig, out: Path, log) -> dict:
    rng = random.Random(cfg.seed + 2)
    items, src = _blimp_pairs(cfg, rng)
    voices = _available(FEMALE[:1] + MALE[:1] + FEMALE[1:] + MALE[1:])[: cfg.voices]
    pairs = []
    for i, it in enumerate(items):
        for v in voices:
            vname = v.split(":")[1].replace("+", "_")
            pairs.append(SpokenPair(
                id=str(i), voice=vname, pos_wav=_say(it.pos, v, cfg.sample_rate), neg_wav=_say(it.neg, v, cfg.sample_rate),
                pos_text=it.pos, neg_text=it.neg, meta={"type": it.meta.get("linguistics_term") or "",
                                                        "subtype": it.meta.get("phenomenon") or ""}))
    write_zr2021(out / "zerospeech2021", "syntactic", pairs, cfg.sample_rate)
    # The same pairs as text in BLiMP's JSONL layout: tBLIMP on exactly the spoken pairs.
    records = [{"sentence_good": it.pos, "sentence_bad": it.neg, "UID": it.meta.get("phenomenon") or "pairs",
                "pairID": str(i), "field": it.meta.get("field"), "linguistics_term": it.meta.get("linguistics_term")}
               for i, it in enumerate(items)]
    atomic_write_text(out / "blimp" / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    if cfg.hf_layout:
        write_hf_pairs(out / "hf" / "sBLIMP", pairs, cfg.sample_rate)
    log(f"[bench-data] sblimp: {len(items)} BLiMP pairs x {len(voices)} voices")
    return {"pairs": len(items), "voices": voices, "source": src}


def _rir(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A synthetic room impulse response: direct path + exponentially decaying noise (RT60 = seconds)."""
    n = max(1, int(seconds * sr))
    t = np.arange(n) / sr
    tail = np.random.default_rng(seed).standard_normal(n) * np.exp(-6.9 * t / seconds) * 0.3
    tail[0] = 1.0
    return (tail / np.sqrt(np.sum(tail**2))).astype(np.float32)


def _noise(kind: str, n: int, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "brown":
        x = np.cumsum(rng.standard_normal(n))
        x -= np.convolve(x, np.ones(801) / 801, mode="same")  # remove the drift
    elif kind == "hum":
        t = np.arange(n) / sr
        x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((50, 100, 150, 200), start=1))
    else:
        raise ValueError(kind)
    return (x / (np.std(x) + 1e-9)).astype(np.float32)


def _mix(speech: np.ndarray, bg: np.ndarray, snr_db: float) -> np.ndarray:
    gain = np.std(speech) / (np.std(bg) + 1e-9) / (10 ** (snr_db / 20))
    return (speech + gain * bg[: speech.size]).astype(np.float32)


def _normalize(w: np.ndarray) -> np.ndarray:
    return (w / max(1e-6, float(np.max(np.abs(w)))) * 0.9).astype(np.float32)


def build_salmon(cfg: BenchDataConfig, out: Path, log) -> dict:
    rng = random.Random(cfg.seed + 3)
    sr = cfg.sample_rate
    female, male = _available(FEMALE), _available(MALE)
    if len(female) < 2 or len(male) < 2:
        raise RuntimeError(f"SALMon look-alike needs >= 2 female and 2 male voices; have {female} / {male}")
    gap = np.zeros(int(GAP_SECONDS * sr), np.float32)
    info = {}
    for part in SALMON_SYNTH_PARTS:
        pairs, meta = [], []
        for i in range(cfg.salmon_pairs):
            words = rng.choice(SENTENCES).rstrip(".").split()
            h = len(words) // 2
            first_text, second_text = " ".join(words[:h]), " ".join(words[h:]) + "."
            group_a = rng.choice((female, male))
            a = rng.choice(group_a)
            if part == "gender_consistency":
                b = rng.choice(male if group_a is female else female)
            else:
                b = rng.choice([v for v in group_a if v != a])
            first_a, second_a = _say(first_text, a, sr), _say(second_text, a, sr)
            pos = np.concatenate([first_a, gap, second_a])
            if part in ("speaker_consistency", "gender_consistency"):
                neg = np.concatenate([first_a, gap, _say(second_text, b, sr)])
                m = {"index": i, "text": f"{first_text} {second_text}", "voices": [a, b]}
            elif part == "rir_consistency":
                r1, r2 = _rir(0.15, sr, 2 * i), _rir(0.9, sr, 2 * i + 1)
                wet = lambda x, r: fftconvolve(x, r)[: x.size].astype(np.float32)  # noqa: E731
                pos = np.concatenate([wet(first_a, r1), gap, wet(second_a, r1)])
                neg = np.concatenate([wet(first_a, r1), gap, wet(second_a, r2)])
                m = {"index": i, "voice": a, "rt60": [0.15, 0.9]}
            else:  # bg_all_consistency: the background changes mid-utterance in the negative
                k1, k2 = rng.sample(("white", "brown", "hum"), 2)
                n1 = first_a.size + gap.size
                bg1 = _noise(k1, pos.size, sr, 3 * i)
                bg2 = _noise(k2, pos.size, sr, 3 * i + 1)
                pos = _mix(pos, bg1, SNR_DB)
                neg = _mix(np.concatenate([first_a, gap, second_a]), np.concatenate([bg1[:n1], bg2[n1:]]), SNR_DB)
                m = {"index": i, "voice": a, "backgrounds": [k1, k2], "snr_db": SNR_DB}
            pairs.append((_normalize(pos), _normalize(neg)))
            meta.append(m)
        write_salmon_folder(out / "salmon", part, pairs, sr, meta)
        info[part] = cfg.salmon_pairs
    log(f"[bench-data] salmon: {len(SALMON_SYNTH_PARTS)} parts x {cfg.salmon_pairs} pairs")
    return {"parts": info, "not_built": ["sentiment_consistency", "bg_domain_consistency", "sentiment_alignment",
                                         "bg_alignment"],
            "why_not_built": "sentiment and semantic-background alignment need real recordings"}


def _librispeech_text(s: str) -> str:
    return re.sub(r"[^A-Z' ]", "", s.upper().replace("-", " ")).strip()


def build_asr(cfg: BenchDataConfig, out: Path, log) -> dict:
    rng = random.Random(cfg.seed + 4)
    voices = _available(FEMALE + MALE)
    info = {}
    for split, n in (("test-clean", cfg.asr_utterances), ("dev-clean", max(2, cfg.asr_utterances // 4))):
        utts = []
        for i in range(n):
            vi = rng.randrange(len(voices))
            text = rng.choice(SENTENCES)
            uid = f"{1000 + vi}-{100 + (0 if split == 'test-clean' else 1)}-{i:04d}"
            utts.append((uid, _librispeech_text(text), _say(text, voices[vi], cfg.sample_rate)))
        write_librispeech(out / "librispeech" / split, utts, cfg.sample_rate)
        info[split] = n
    log(f"[bench-data] asr: LibriSpeech layout {info}")
    return {"utterances": info, "voices": voices}


def build_tts(cfg: BenchDataConfig, out: Path, log) -> dict:
    rng = random.Random(cfg.seed + 5)
    voices = _available(FEMALE + MALE)
    items = []
    for i in range(cfg.tts_items):
        p, t = rng.sample(range(len(SENTENCES)), 2)
        v = voices[i % len(voices)]
        items.append((f"synth_{i:04d}", SENTENCES[p], _say(SENTENCES[p], v, cfg.sample_rate), SENTENCES[t]))
    write_seedtts(out / "seedtts" / "en", items, cfg.sample_rate)
    log(f"[bench-data] tts: {cfg.tts_items} Seed-TTS-eval style items")
    return {"items": cfg.tts_items, "voices": voices}


BUILDERS = {"swuggy": build_swuggy, "sblimp": build_sblimp, "salmon": build_salmon, "asr": build_asr, "tts": build_tts}


def build_bench_data(cfg: BenchDataConfig, log=print, progress: bool = False) -> dict:
    """Build `cfg.sets` under `cfg.out`; `progress`: a count of the sets built on stderr (the CLI's)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bad = [s for s in cfg.sets if s not in BUILDERS]
    if bad:
        raise ValueError(f"unknown set(s) {bad}; choose from {list(BUILDERS)}")
    t0 = time.time()
    built = {}
    with Progress("bench-data", total=len(cfg.sets), unit="set", quiet=not progress) as bar:
        for name in cfg.sets:
            bar.update(0, building=name)
            built[name] = BUILDERS[name](cfg, out, log)
            bar.update(1, building="-")
    record = {"format": "sodakit.bench-data/1", "sodakit_version": __version__, "config": asdict(cfg),
              "sets": built, "seconds": round(time.time() - t0, 1),
              "note": "synthetic look-alike sets in the real layouts; NOT comparable to published numbers"}
    atomic_write_text(out / "bench_data.json", json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="sodakit bench-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output directory")
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    d = BenchDataConfig(out="")
    p.add_argument("--words", type=int, default=d.words, help="sWUGGY word/pseudo-word pairs")
    p.add_argument("--blimp-pairs", type=int, default=d.blimp_pairs, help="sBLIMP pairs")
    p.add_argument("--salmon-pairs", type=int, default=d.salmon_pairs, help="pairs per SALMon part")
    p.add_argument("--asr-utterances", type=int, default=d.asr_utterances)
    p.add_argument("--tts-items", type=int, default=d.tts_items)
    p.add_argument("--voices", type=int, default=d.voices, help="voices per sWUGGY/sBLIMP pair")
    p.add_argument("--sample-rate", type=int, default=d.sample_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--blimp", help=f"BLiMP JSONL directory or tarball ({data_hint(BLIMP_FILE)} and present; "
                                   "else template minimal pairs)")
    p.add_argument("--no-hf-layout", action="store_true", help="skip the Hugging Face Parquet copies")
    a = p.parse_args(argv)
    sizes = (a.words, a.blimp_pairs, a.salmon_pairs, a.asr_utterances, a.tts_items, a.voices)
    if min(sizes) < 1:
        print("sodakit bench-data: every size must be >= 1", file=sys.stderr)
        return 2
    cfg = BenchDataConfig(out=a.out, sets=tuple(s.strip() for s in a.sets.split(",") if s.strip()), words=a.words,
                          blimp_pairs=a.blimp_pairs, salmon_pairs=a.salmon_pairs, asr_utterances=a.asr_utterances,
                          tts_items=a.tts_items, voices=a.voices, sample_rate=a.sample_rate, seed=a.seed,
                          blimp=a.blimp, hf_layout=not a.no_hf_layout)
    rec = build_bench_data(cfg, log=lambda m: print(m, file=sys.stderr), progress=True)
    print(f"[bench-data] wrote {a.out} in {rec['seconds']}s (see {Path(a.out) / 'bench_data.json'})", file=sys.stderr)
    return 0
