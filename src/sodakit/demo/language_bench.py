"""Look-alike benchmark sets built from the demo's own language, in the real layouts.

The held-out part of the corpus (`sodakit.demo.language_corpus.plan_split`, saved as heldout.json)
is spoken by the demo's voices and written where the readers of `sodakit eval` expect it:

    OUT/zerospeech2021/lexical/dev/     word of the language vs pseudo-word, read from the spelling (sWUGGY, tWUGGY)
    OUT/zerospeech2021/syntactic/dev/   the language's BLiMP-like minimal pairs (sBLIMP)
    OUT/blimp/pairs.jsonl               the same pairs as text (tBLIMP)
    OUT/librispeech/test-clean/         held-out sentences, one voice each (ASR)
    OUT/librispeech/words/              their words, one clip each, read word by word (speech-text matching)
    OUT/seedtts/en/meta.lst             held-out target sentences with a spoken held-out prompt (TTS);
                                        target-wavs/ holds each target read by its prompt's voice, the
                                        input of the codec-resynthesis reference (`resynthesis_reference`)
    OUT/bench.json                      what was built

(The demo's pipeline adds OUT/judge_lm.arpa, the ASR judge's bigram LM of the training text.)

No sentence of these sets is in the training data. Pair sets hold each pair spoken by
`voices_per_pair` voices (ZeroSpeech's grouping: accuracy is averaged over a pair's voices first), and
only voices that say both members in the same number of codec frames (`_matched_pairs`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sodakit.audio.io import save_wav
from sodakit.config import atomic_write_text
from sodakit.demo.language import spelled_word_pairs
from sodakit.demo.voices import DemoVoice, engine_rota, render_sentences
from sodakit.eval.layouts import SpokenPair, write_librispeech, write_seedtts, write_zr2021
from sodakit.eval.protocols import DEFAULT_PROTOCOL

# TTS prompts when the pool has no flite voice: flite's natural voices, which the offline judge understands
# (see sodakit.demo.voices).
TTS_PROMPT_VOICES = ("flite:slt", "flite:rms", "flite:awb")


@dataclass
class LanguageBenchConfig:
    words: int = 200  # WUGGY pairs
    # BLiMP-like pairs, the same number per phenomenon (from the corpus's candidates) where enough of them
    # are length-matched, the rest made up from the other phenomena
    blimp_pairs: int = 128
    voices_per_pair: int = 2
    candidate_factor: int = 3  # WUGGY candidates per wanted pair (length-matching drops some)
    voice_tries: int = 12  # voices tried per candidate pair for length matching
    frame_seconds: float = 0.08  # codec frame (12.5 Hz) for length matching
    asr_utterances: int = 100
    # Share of the ASR clips read by flite voices: set it to the corpus's flite_share (the default is
    # LanguageCorpusConfig's), so that the test voices come in the proportions the model trained on
    # (cycling the pool gave 38 of 40 flite clips against 15% in training).
    asr_flite_share: float = 0.2
    # Held-out test sentences whose words are read one at a time for speech-text matching (the first ASR
    # sentences; ~6 words each, so 40 give ~230 clips and a 95% interval of about +-6 points)
    match_sentences: int = 40
    tts_items: int = 40
    tts_prompt_max_words: int = 4
    tts_target_max_words: int = 8
    sample_rate: int = 16_000
    seed: int = 0


def _librispeech_text(s: str) -> str:
    return re.sub(r"[^A-Z' ]", "", s.upper()).strip()


def _vname(v: DemoVoice) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", v.label)


def build_language_bench(out_dir: str | Path, heldout: dict, voices: list[DemoVoice], cfg: LanguageBenchConfig,
                         log=print) -> dict:
    """`heldout`: the corpus's heldout.json; `voices`: its voice pool (the benchmark voices are training voices)."""
    t0 = time.time()
    out = Path(out_dir)
    sr = cfg.sample_rate
    pool = list(voices)
    espeak = [v for v in pool if v.engine == "espeak"] or pool
    info: dict = {}

    # WUGGY: words of the language vs pseudo-words of the same length, both read from their spelling.
    wp = spelled_word_pairs(cfg.candidate_factor * cfg.words, cfg.seed + 201)
    chosen = _matched_pairs([(w, q, {"length": len(w)}, "") for w, q in wp], espeak, cfg, cfg.words, sr)
    write_zr2021(out / "zerospeech2021", "lexical", chosen, sr)
    info["wuggy"] = {"pairs": cfg.words, "voices_per_pair": cfg.voices_per_pair, "candidates": len(wp)}
    log(f"[bench] wuggy: {cfg.words} word/pseudo-word pairs x {cfg.voices_per_pair} voices (of {len(wp)} candidates)")

    # BLiMP-like pairs, the same number of each phenomenon.
    mp = heldout["pairs"]
    per = cfg.blimp_pairs // len({p["phenomenon"] for p in mp})
    chosen = _matched_pairs([(p["good"], p["bad"], {"type": p["term"], "subtype": p["phenomenon"]}, p["phenomenon"])
                             for p in mp], espeak, cfg, per, sr, total=cfg.blimp_pairs)
    write_zr2021(out / "zerospeech2021", "syntactic", chosen, sr)
    used = {int(sp.id): sp for sp in chosen}
    records = [{"sentence_good": sp.pos_text, "sentence_bad": sp.neg_text, "UID": sp.meta["subtype"], "pairID": str(i),
                "field": "sodakit.demo.language", "linguistics_term": sp.meta["type"]} for i, sp in sorted(used.items())]
    atomic_write_text(out / "blimp" / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    by_phenomenon: dict[str, int] = {}
    for r in records:
        by_phenomenon[r["UID"]] = by_phenomenon.get(r["UID"], 0) + 1
    info["blimp"] = {"pairs": len(records), "voices_per_pair": cfg.voices_per_pair, "candidates": len(mp),
                     "by_phenomenon": by_phenomenon}
    log(f"[bench] blimp: {len(records)} minimal pairs x {cfg.voices_per_pair} voices (of {len(mp)} candidates)")

    # ASR: held-out sentences, each by one voice of the pool (flite and espeak-ng as in training).
    test = heldout["test"]
    n_asr = min(cfg.asr_utterances, len(test))
    by_voice: dict[DemoVoice, list[int]] = {}
    for i, v in enumerate(engine_rota(pool, n_asr + 4, cfg.asr_flite_share)):
        by_voice.setdefault(v, []).append(i % len(test))
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

    # Speech-text matching: the words of held-out test sentences, one clip per word, each sentence read
    # word by word by a training espeak-ng voice (as the corpus's word-by-word recordings are). The
    # sentences are new, but a word in a training voice may sound as a clip heard in training: the set
    # checks that training kept each transcript with its audio, not that words are heard in new voices.
    n_words = min(cfg.match_sentences, len(test))
    by_voice = {}  # voice -> the sentences it reads word by word
    for i in range(n_words):
        by_voice.setdefault(espeak[(i * 7) % len(espeak)], []).append(i)
    spoken: dict[int, list[tuple[str, np.ndarray, DemoVoice]]] = {}
    for v, idx in by_voice.items():
        words = [_librispeech_text(test[i]).lower().split() for i in idx]
        wavs = iter(render_sentences([w for ws in words for w in ws], v, sr))
        for i, ws in zip(idx, words):
            spoken[i] = [(w, next(wavs), v) for w in ws]
    clips = [(f"{2000 + pool.index(v)}-{i:04d}-{k:02d}", w.upper(), wav)
             for i in range(n_words) for k, (w, wav, v) in enumerate(spoken[i])]
    write_librispeech(out / "librispeech" / "words", clips, sr)
    info["words"] = {"sentences": n_words, "clips": len(clips)}
    log(f"[bench] words: {len(clips)} word clips of {n_words} held-out sentences")

    # TTS: target i (held-out) with a prompt sentence (held-out) read by a flite voice.
    # Short prompts and targets keep prompt + target within the positions the model trained on.
    rest = test[n_asr:] if len(test) - n_asr >= 2 * cfg.tts_items else test
    prompts = [t for t in rest if len(t.split()) <= cfg.tts_prompt_max_words]
    goals = [t for t in rest if t not in prompts and len(t.split()) <= cfg.tts_target_max_words]
    if not prompts or len(goals) < cfg.tts_items:
        raise ValueError(f"TTS: {len(prompts)} held-out sentences of <= {cfg.tts_prompt_max_words} words for prompts and "
                         f"{len(goals)} of <= {cfg.tts_target_max_words} words for {cfg.tts_items} targets; "
                         "hold out more test sentences")
    # Prompt voices: the pool's flite voices at their own rate (training voices the judge understands).
    speakers = ([v for v in pool if v.engine == "flite" and v.speed == 1.0] or [v for v in pool if v.engine == "flite"]
                or [DemoVoice(x) for x in TTS_PROMPT_VOICES])
    items, targets = [], []
    for i in range(cfg.tts_items):
        v = speakers[i % len(speakers)]
        prompt, target = prompts[i % len(prompts)], goals[i]
        pw, tw = render_sentences([prompt, target], v, sr)
        utt = f"demo_{i:04d}"
        items.append((utt, prompt, pw, target))
        save_wav(out / "seedtts" / "en" / "target-wavs" / f"{utt}.wav", tw, sr)
        targets.append({"utt": utt, "voice": v.voice, "target": target})
    write_seedtts(out / "seedtts" / "en", items, sr)
    atomic_write_text(out / "seedtts" / "en" / "targets.json", json.dumps(targets, indent=1))
    info["tts"] = {"items": cfg.tts_items, "prompt_voices": [v.label for v in speakers]}
    log(f"[bench] tts: {cfg.tts_items} held-out targets with flite voice prompts")

    record = {"format": "sodakit.demo-bench/1", "config": asdict(cfg), "sets": info, "seconds": round(time.time() - t0, 1)}
    atomic_write_text(out / "bench.json", json.dumps(record, indent=2))
    return record


MATCH_CHUNK = 64  # candidate pairs spoken per round of length matching


def _matched_pairs(candidates: list[tuple[str, str, dict, str]], voices: list[DemoVoice], cfg: LanguageBenchConfig,
                   per_group: int, sr: int, total: int | None = None) -> list[SpokenPair]:
    """Spoken pairs whose two members last the same number of codec frames, by up to `voices_per_pair` voices.

    A model's mean log-probability favours the longer of two utterances (later frames have more context),
    which would decide many pairs whatever the model knows; pairs are therefore kept only with voices that
    say both members in the same number of 80 ms frames (a pair needs one such voice). `candidates` are
    (pos, neg, meta, group):
    `per_group` pairs are taken from each group, in candidate order; ids number the kept pairs. With
    `total`, groups short of `per_group` (some rules change a word's length more often than others) are
    made up to `total` pairs with the other groups' further matched pairs."""
    frame = round(sr * cfg.frame_seconds)
    tries = min(len(voices), cfg.voice_tries)
    taken: dict[str, int] = {}
    out: list[SpokenPair] = []
    spare: list[tuple[str, str, dict, list[tuple[DemoVoice, np.ndarray, np.ndarray]]]] = []
    groups = {c[3] for c in candidates}

    def spares_wanted() -> bool:
        return total is not None and sum(taken.values()) + len(spare) < total
    # Candidates are spoken a chunk at a time (one espeak-ng call per voice and chunk) until every group
    # has its pairs: most sets are full long before the last candidate. A full group's candidates are
    # spoken only while the spares that may make up a short group are still too few.
    for start in range(0, len(candidates), MATCH_CHUNK):
        if all(taken.get(g, 0) >= per_group for g in groups):
            break
        chunk = [(i, c) for i, c in enumerate(candidates[start : start + MATCH_CHUNK], start)
                 if taken.get(c[3], 0) < per_group or spares_wanted()]
        if not chunk:
            continue
        plan = {i: [voices[(i * 7 + j) % len(voices)] for j in range(tries)] for i, _ in chunk}
        jobs: dict[DemoVoice, list[str]] = {}
        for i, c in chunk:
            for v in plan[i]:
                jobs.setdefault(v, []).extend(c[:2])
        audio = {v: dict(zip(texts, render_sentences(texts, v, sr))) for v, texts in jobs.items()}
        for i, (pos, neg, meta, group) in chunk:
            same = [v for v in plan[i] if -(-len(audio[v][pos]) // frame) == -(-len(audio[v][neg]) // frame)]
            if not same:
                continue
            if taken.get(group, 0) >= per_group:
                spare.append((pos, neg, meta, [(v, audio[v][pos], audio[v][neg]) for v in same[: cfg.voices_per_pair]]))
                continue
            n = sum(taken.values())
            taken[group] = taken.get(group, 0) + 1
            out += [SpokenPair(id=str(n), voice=_vname(v), pos_wav=audio[v][pos], neg_wav=audio[v][neg], pos_text=pos,
                               neg_text=neg, meta=meta) for v in same[: cfg.voices_per_pair]]
    short = {g: k for g, k in taken.items() if k < per_group}
    if (short or len(taken) < len(groups)) and total is not None and sum(taken.values()) + len(spare) >= total:
        for n, (pos, neg, meta, spoken) in enumerate(spare[: total - sum(taken.values())], sum(taken.values())):
            out += [SpokenPair(id=str(n), voice=_vname(v), pos_wav=pw, neg_wav=nw, pos_text=pos, neg_text=neg, meta=meta)
                    for v, pw, nw in spoken]
        return out
    if short or len(taken) < len(groups):
        raise ValueError(f"only {taken} length-matched pairs of the {per_group} wanted per group "
                         f"({len(candidates)} candidates); raise candidate_factor")
    return out


def resynthesis_reference(tts_dir: str | Path, codec, judge: str = "pocketsphinx", protocol: str = DEFAULT_PROTOCOL) -> dict:
    """The ASR judge on the TTS targets as spoken by the prompt voices: original audio and its codec
    resynthesis (encode + decode). The resynthesis WER is the floor a TTS model with this codec can reach;
    both WERs are aggregated as `protocol`'s TTS WER is (soda: the mean of per-utterance WERs)."""
    from sodakit.audio.io import load_audio
    from sodakit.eval.judges import make_asr_judge
    from sodakit.eval.protocols import get_protocol

    tts_dir = Path(tts_dir)
    targets = json.loads((tts_dir / "targets.json").read_text())
    sr = codec.sample_rate
    wavs = [load_audio(tts_dir / "target-wavs" / f"{t['utt']}.wav", sr) for t in targets]
    resynth = [codec.decode(c)[0] for c in codec.encode_audio(wavs, sr)]
    asr = make_asr_judge(judge)
    refs = [t["target"] for t in targets]
    hyp_orig, hyp_resynth = asr.transcribe(wavs, sr), asr.transcribe(resynth, sr)
    rules = get_protocol(protocol)
    return {"judge": asr.describe(), "protocol": rules.name, "items": len(refs),
            "wer_original": rules.tts_headline_wer(refs, hyp_orig),
            "wer_resynthesis": rules.tts_headline_wer(refs, hyp_resynth),
            "per_item": [{"utt": t["utt"], "target": t["target"], "original": a, "resynthesis": b}
                         for t, a, b in zip(targets, hyp_orig, hyp_resynth)]}
