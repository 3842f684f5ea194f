"""Look-alike benchmark sets built from the demo's own language, in the real layouts.

The held-out part of the corpus (`sodakit.demo.language_corpus.plan_split`, saved as heldout.json)
is spoken by the demo's voices and written where the readers of `sodakit eval` expect it:

    OUT/zerospeech2021/lexical/dev/     word of the language vs pseudo-word (sWUGGY, tWUGGY)
    OUT/zerospeech2021/syntactic/dev/   the language's BLiMP-like minimal pairs (sBLIMP)
    OUT/blimp/pairs.jsonl               the same pairs as text (tBLIMP)
    OUT/librispeech/test-clean/         held-out sentences, one voice each (ASR)
    OUT/seedtts/en/meta.lst             held-out target sentences with a spoken held-out prompt (TTS);
                                        target-wavs/ holds each target read by its prompt's voice, the
                                        input of the codec-resynthesis reference (`resynthesis_reference`)
    OUT/bench.json                      what was built

No sentence of these sets is in the training data. Pair sets hold each pair spoken by
`voices_per_pair` voices (ZeroSpeech's grouping: accuracy is averaged over a pair's voices first).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sodakit.config import atomic_write_text
from sodakit.demo.language import word_pairs
from sodakit.demo.voices import DemoVoice, render_phonemes, render_sentences, voice_pool
from sodakit.eval.layouts import SpokenPair, write_librispeech, write_seedtts, write_wav_atomic, write_zr2021

# TTS prompts: flite's natural voices, which the offline judge understands (see sodakit.demo.voices).
TTS_PROMPT_VOICES = ("flite:slt", "flite:rms", "flite:awb")


@dataclass
class LanguageBenchConfig:
    words: int = 200  # WUGGY pairs
    voices_per_pair: int = 2
    asr_utterances: int = 100
    tts_items: int = 40
    voices: int = 120  # the corpus's voice pool (same seed: the benchmark voices are training voices)
    flite_share: float = 0.2
    sample_rate: int = 16_000
    seed: int = 0


def _librispeech_text(s: str) -> str:
    return re.sub(r"[^A-Z' ]", "", s.upper()).strip()


def _vname(v: DemoVoice) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", v.label)


def build_language_bench(out_dir: str | Path, heldout: dict, cfg: LanguageBenchConfig, log=print) -> dict:
    t0 = time.time()
    out = Path(out_dir)
    sr = cfg.sample_rate
    pool = voice_pool(cfg.voices, cfg.seed, cfg.flite_share)
    espeak = [v for v in pool if v.engine == "espeak"] or pool
    info: dict = {}

    # WUGGY: words of the language vs pseudo-words, by phoneme input (both members by the same route).
    from sodakit.eval.pseudowords import to_espeak

    pairs = []
    for i, wp in enumerate(word_pairs(cfg.words, cfg.seed + 201)):
        for j in range(cfg.voices_per_pair):
            v = espeak[(i * cfg.voices_per_pair + j) * 7 % len(espeak)]
            pairs.append(SpokenPair(id=str(i), voice=_vname(v), pos_wav=render_phonemes(to_espeak(wp.word_pron), v, sr),
                                    neg_wav=render_phonemes(to_espeak(wp.pseudo_pron), v, sr), pos_text=wp.word,
                                    neg_text=wp.pseudo, meta={"length": len(wp.word_pron), "pos_phones": " ".join(wp.word_pron),
                                                              "neg_phones": " ".join(wp.pseudo_pron)}))
    write_zr2021(out / "zerospeech2021", "lexical", pairs, sr)
    info["wuggy"] = {"pairs": cfg.words, "voices_per_pair": cfg.voices_per_pair}
    log(f"[bench] wuggy: {cfg.words} word/pseudo-word pairs x {cfg.voices_per_pair} voices")

    # BLiMP-like pairs: every sentence a voice says is rendered in one call per voice.
    mp = heldout["pairs"]
    jobs: dict[DemoVoice, list[str]] = {}
    assign = []
    for i, p in enumerate(mp):
        vs = [espeak[(i * cfg.voices_per_pair + j) * 11 % len(espeak)] for j in range(cfg.voices_per_pair)]
        assign.append(vs)
        for v in vs:
            jobs.setdefault(v, []).extend([p["good"], p["bad"]])
    audio = {v: dict(zip(texts, render_sentences(texts, v, sr))) for v, texts in jobs.items()}
    spoken = [SpokenPair(id=str(i), voice=_vname(v), pos_wav=audio[v][p["good"]], neg_wav=audio[v][p["bad"]],
                         pos_text=p["good"], neg_text=p["bad"], meta={"type": p["term"], "subtype": p["phenomenon"]})
              for i, (p, vs) in enumerate(zip(mp, assign)) for v in vs]
    write_zr2021(out / "zerospeech2021", "syntactic", spoken, sr)
    records = [{"sentence_good": p["good"], "sentence_bad": p["bad"], "UID": p["phenomenon"], "pairID": str(i),
                "field": "sodakit.demo.language", "linguistics_term": p["term"]} for i, p in enumerate(mp)]
    atomic_write_text(out / "blimp" / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    info["blimp"] = {"pairs": len(mp), "voices_per_pair": cfg.voices_per_pair}
    log(f"[bench] blimp: {len(mp)} minimal pairs x {cfg.voices_per_pair} voices")

    # ASR: held-out sentences, each by one voice of the pool (flite and espeak-ng as in training).
    test = heldout["test"]
    n_asr = min(cfg.asr_utterances, len(test))
    by_voice: dict[DemoVoice, list[int]] = {}
    for i in range(n_asr + 4):
        by_voice.setdefault(pool[i * 13 % len(pool)], []).append(i % len(test))
    wav_of: dict[int, tuple[DemoVoice, np.ndarray]] = {}
    for v, idx in by_voice.items():
        for i, w in zip(idx, render_sentences([test[i] for i in idx], v, sr)):
            wav_of.setdefault(i, (v, w))
    utts = {"test-clean": [], "dev-clean": []}
    for i in range(n_asr + 4):
        split, chapter = ("test-clean", 100) if i < n_asr else ("dev-clean", 101)
        v, w = wav_of[i % len(test)]
        utts[split].append((f"{1000 + pool.index(v)}-{chapter}-{i:04d}", _librispeech_text(test[i % len(test)]), w))
    for split, u in utts.items():
        write_librispeech(out / "librispeech" / split, u, sr)
    info["asr"] = {"utterances": n_asr, "flite": sum(v.engine == "flite" for v, _ in wav_of.values())}
    log(f"[bench] asr: {n_asr} held-out sentences")

    # TTS: target i (held-out) with a prompt sentence (held-out) read by a flite voice.
    rest = test[n_asr:] if len(test) - n_asr >= 2 * cfg.tts_items else test
    items, targets = [], []
    for i in range(cfg.tts_items):
        v = DemoVoice(TTS_PROMPT_VOICES[i % len(TTS_PROMPT_VOICES)])
        prompt, target = rest[(2 * i) % len(rest)], rest[(2 * i + 1) % len(rest)]
        pw, tw = render_sentences([prompt, target], v, sr)
        utt = f"demo_{i:04d}"
        items.append((utt, prompt, pw, target))
        write_wav_atomic(out / "seedtts" / "en" / "target-wavs" / f"{utt}.wav", tw, sr)
        targets.append({"utt": utt, "voice": v.voice, "target": target})
    write_seedtts(out / "seedtts" / "en", items, sr)
    atomic_write_text(out / "seedtts" / "en" / "targets.json", json.dumps(targets, indent=1))
    info["tts"] = {"items": cfg.tts_items, "prompt_voices": list(TTS_PROMPT_VOICES)}
    log(f"[bench] tts: {cfg.tts_items} held-out targets with flite voice prompts")

    record = {"format": "sodakit.demo-bench/1", "config": asdict(cfg), "sets": info, "seconds": round(time.time() - t0, 1)}
    atomic_write_text(out / "bench.json", json.dumps(record, indent=2))
    return record


def resynthesis_reference(tts_dir: str | Path, codec, judge: str = "pocketsphinx") -> dict:
    """The ASR judge on the TTS targets as spoken by the prompt voices: original audio and its codec
    resynthesis (encode + decode). The resynthesis WER is the floor a TTS model with this codec can reach."""
    from sodakit.audio.io import load_audio
    from sodakit.eval.judges import make_asr_judge
    from sodakit.eval.metrics import wer_details

    tts_dir = Path(tts_dir)
    targets = json.loads((tts_dir / "targets.json").read_text())
    sr = codec.sample_rate
    wavs = [load_audio(tts_dir / "target-wavs" / f"{t['utt']}.wav", sr) for t in targets]
    resynth = [codec.decode(c)[0] for c in codec.encode_audio(wavs, sr)]
    asr = make_asr_judge(judge)
    refs = [t["target"] for t in targets]
    hyp_orig, hyp_resynth = asr.transcribe(wavs, sr), asr.transcribe(resynth, sr)
    return {"judge": asr.describe(), "items": len(refs), "wer_original": wer_details(refs, hyp_orig).wer,
            "wer_resynthesis": wer_details(refs, hyp_resynth).wer,
            "per_item": [{"utt": t["utt"], "target": t["target"], "original": a, "resynthesis": b}
                         for t, a, b in zip(targets, hyp_orig, hyp_resynth)]}
