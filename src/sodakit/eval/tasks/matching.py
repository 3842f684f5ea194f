"""Speech-text matching: does the model hear a transcript in its audio, and read an utterance's audio in
its transcript?

Each utterance of an ASR set (audio + transcript) becomes a pair whose members differ only in what comes
first, in the two orders of the training documents:

    speech_text_match (ASR order), the transcript's text tokens scored:
        positive: BOS <|audio_start|>{its own audio}<|audio_end|><|text_start|>{transcript}<|text_end|>
        negative: the same transcript after a distractor utterance's audio
    text_speech_match (TTS order), the audio tokens scored:
        positive: BOS <|text_start|>{its own transcript}<|text_end|><|audio_start|>{audio}<|audio_end|>
        negative: the same audio after the distractor's transcript

by the mean log-prob of the shared part. The distractor is an utterance with a different transcript, of
the same number of words where the set has one, and of the closest length in codec frames (so duration
decides little; ties broken by a seeded shuffle). A model that does not read one modality to predict the
other scores both members alike, so accuracy sits at chance (50%) whatever its prior over the shared
part: the "text shifted against its audio" control is built into every pair. A model that has begun to
link the two modalities scores above chance long before greedy ASR or TTS by prompting gets a word right,
which makes these the likelihood side of ASR and TTS and a check that a training pipeline kept transcripts
with their audio.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from sodakit.eval.items import ItemError, PairItem, ReadResult, SpeechTextItem
from sodakit.eval.readers.librispeech import read_librispeech
from sodakit.eval.spans import ScoreRequest, audio_after_text_request, text_after_audio_request
from sodakit.eval.tasks.base import EvalContext, TaskResult, TaskSpec, Timer, register
from sodakit.eval.tasks.likelihood import _need
from sodakit.eval.tasks.pairs import (
    ENCODE_CHUNK,
    encode_clips,
    encode_texts_or_none,
    pair_result,
    score_pairs,
)

HELP = "utterances with transcripts: a LibriSpeech split folder, a flat trans.txt folder or a data_json list"


@dataclass(frozen=True)
class Direction:
    """One order of the pair: which modality comes first, which one the two members share and is scored."""

    task: str
    scored: Literal["text", "audio"]  # the transcript after two audios / the audio after two transcripts
    request: Callable[..., ScoreRequest]  # (codes, text_ids, vocab, audio selection)
    template: str
    score: str
    summary: str


ASR_ORDER = Direction(
    "speech_text_match", "text", text_after_audio_request,
    "BOS <|audio_start|>{audio}<|audio_end|><|text_start|>{transcript}<|text_end|>",
    "mean log-prob over the transcript's text tokens (markers not scored)",
    "speech-text matching: a transcript after its own audio vs after another utterance's (text score); "
    "50% when the model ignores audio")
TTS_ORDER = Direction(
    "text_speech_match", "audio", audio_after_text_request,
    "BOS <|text_start|>{transcript}<|text_end|><|audio_start|>{audio}<|audio_end|>",
    "mean log-prob over the audio tokens (the scored codebooks of the audio selection; markers not scored)",
    "text-speech matching: an utterance's audio after its own transcript vs after another utterance's "
    "(speech score); 50% when the model ignores text")


def match_text(text: str) -> str:
    """The transcript as scored: lowercased (ASR sets such as LibriSpeech write it in capitals, which a
    model trained on ordinary text has rarely seen), whitespace collapsed."""
    return " ".join(text.lower().split())


def distractors(texts: list[str], frames: list[int], seed: int) -> list[int | None]:
    """For each utterance, the index of the one whose audio it is paired with: among those with a different
    transcript (after `match_text`), preferably of the same number of words, the one closest in length
    (codec frames), ties broken by the next in a `random.Random(seed)` shuffle; None when every transcript
    is the same. Length-matched distractors keep duration from deciding a pair. One vectorised pass per
    utterance over its word-count group (measured: 30,000 utterances in 1.4 s)."""
    texts = [match_text(t) for t in texts]
    n = len(texts)
    if n == 0:
        return []
    _, text_class = np.unique(texts, return_inverse=True)
    words = np.array([len(t.split()) for t in texts])
    length = np.asarray(frames, dtype=np.int64)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    place = np.empty(n, dtype=np.int64)
    place[order] = np.arange(n)
    everyone = np.arange(n)
    same_words = {w: np.flatnonzero(words == w) for w in np.unique(words)}
    out: list[int | None] = []
    for i in range(n):
        pool = same_words[words[i]]
        differs = text_class[pool] != text_class[i]
        if not differs.any():
            pool, differs = everyone, text_class != text_class[i]
        if not differs.any():
            out.append(None)
            continue
        # closest length first, then the next in the shuffle after i (both exact in int64)
        key = np.abs(length[pool] - length[i]) * n + (place[pool] - place[i]) % n
        out.append(int(pool[np.argmin(np.where(differs, key, np.iinfo(np.int64).max))]))
    return out


def _build(ctx: EvalContext, read: ReadResult, errors: list[ItemError], bar, direction: Direction) -> list:
    """(pair, positive request, negative request) for every utterance whose audio encodes and transcript
    tokenizes, paired with a length-matched distractor among those."""
    usable: list[tuple[SpeechTextItem, np.ndarray, list[int]]] = []  # (utterance, codes, transcript ids)
    for start in range(0, len(read.items), ENCODE_CHUNK):
        chunk = read.items[start : start + ENCODE_CHUNK]
        encoded = [(it, c) for it, c in zip(chunk, encode_clips(ctx, [(it.id, it.audio) for it in chunk], errors))
                   if c is not None]
        text_ids = encode_texts_or_none(ctx, [match_text(it.text) for it, _ in encoded], "transcript")
        for (it, c), t in zip(encoded, text_ids):
            if t is None:
                errors.append(ItemError(item=it.id, stage="encode",
                                        reason="transcript cannot be tokenized (see the PUA policy)"))
            else:
                usable.append((it, c, t))
        bar.update(len(chunk))
    built = []
    chosen = distractors([it.text for it, _, _ in usable], [c.shape[-1] for _, c, _ in usable], ctx.cfg.rng_seed)
    for (it, codes, text_ids), j in zip(usable, chosen):
        if j is None:
            errors.append(ItemError(item=it.id, stage="read", file=it.audio.where,
                                    reason="no utterance with a different transcript to pair its audio with"))
            continue
        other, other_codes, other_text_ids = usable[j]
        if direction.scored == "text":  # the same transcript after two audios
            members, pos, neg = [(codes, text_ids), (other_codes, text_ids)], it.audio, other.audio
        else:  # the same audio after two transcripts
            members, pos, neg = [(codes, text_ids), (codes, other_text_ids)], match_text(it.text), match_text(other.text)
        pair = PairItem(id=it.id, pos=pos, neg=neg, group=it.id,
                        meta={"text": match_text(it.text), "words": len(it.text.split()), "frames": codes.shape[-1],
                              "distractor": other.id, "distractor_text": match_text(other.text),
                              "distractor_frames": other_codes.shape[-1]})
        try:
            built.append((pair, *(direction.request(c, t, ctx.vocab, ctx.cfg.audio) for c, t in members)))
        except ValueError as e:
            errors.append(ItemError(item=it.id, stage="encode", reason=str(e)))
    return built


def run_match(ctx: EvalContext, path: Path | None, direction: Direction) -> TaskResult:
    task = direction.task
    ctx.require_codec(task)
    v = ctx.vocab
    ctx.require_ids(task, [v.audio_start_id, v.audio_end_id, v.text_start_id, v.text_end_id, v.size - 1],
                    "the template's markers and audio codes")
    read = read_librispeech(_need(path, task, HELP)).limited(ctx.cfg.limit)
    errors: list[ItemError] = []
    with Timer() as t:
        with ctx.progress(f"{task} (encode)", len(read.items), unit="clip") as bar:
            built = _build(ctx, read, errors, bar, direction)
        scored = score_pairs(ctx, built, errors, task)
    codec = ctx.codec
    shared, other = ("transcript", "audio") if direction.scored == "text" else ("audio", "transcript")
    protocol = {
        "template": direction.template,
        "pair": f"positive: the utterance's own {other}; negative: a distractor utterance's {other}; the same "
                f"{shared} after both",
        "score": direction.score,
        "text": "the transcript lowercased, whitespace collapsed",
        "distractor": "an utterance with a different transcript, of the same number of words where there is one, "
                      "closest in codec frames; ties broken by the next in a "
                      f"random.Random({ctx.cfg.rng_seed}) shuffle of the utterances",
        "chance": f"50%: a model that ignores the {other} scores both members alike",
        "audio": {**ctx.cfg.audio.describe(v), "codec": {"name": codec.name, "config_hash": codec.config_hash,
                                                          "sample_rate": codec.sample_rate}},
    }
    return pair_result(task, ctx, read, scored, errors, protocol, ("words",), t.seconds)


for _direction in (ASR_ORDER, TTS_ORDER):
    register(TaskSpec(_direction.task, _direction.summary, HELP, partial(run_match, direction=_direction),
                      needs_codec=True))
