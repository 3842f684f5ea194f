"""Speech-text matching: does the model hear a transcript in the audio before it?

Each utterance of an ASR set (audio + transcript) becomes a pair that shares the transcript and differs
only in the audio before it:

    positive: BOS <|audio_start|>{its own audio}<|audio_end|><|text_start|>{transcript}<|text_end|>
    negative: the same transcript after another utterance's audio

scored by the mean log-prob of the transcript's text tokens (the ASR order of the training documents).
The other utterance is a distractor with a different transcript, of the same number of words where the
set has one, and of the closest length in codec frames (so duration decides little; ties broken by a
seeded shuffle). A model that does not read audio
to predict text scores both members alike, so accuracy sits at chance (50%) whatever its text prior: the
"text shifted against its audio" control is built into every pair. A model that has begun to link the two
modalities scores above chance long before greedy ASR by prompting transcribes anything, which makes
this the likelihood side of ASR and a check that a training pipeline kept transcripts with their audio.
"""

from __future__ import annotations

import random
from pathlib import Path

from sodakit.eval.items import ItemError, PairItem, ReadResult, SpeechTextItem
from sodakit.eval.readers.librispeech import read_librispeech
from sodakit.eval.spans import text_after_audio_request
from sodakit.eval.tasks.base import EvalContext, TaskResult, TaskSpec, Timer, register
from sodakit.eval.tasks.likelihood import _need
from sodakit.eval.tasks.pairs import (
    ENCODE_CHUNK,
    encode_clips,
    encode_texts_or_none,
    pair_result,
    score_pairs,
)

TASK = "speech_text_match"
HELP = "utterances with transcripts: a LibriSpeech split folder, a flat trans.txt folder or a data_json list"


def match_text(text: str) -> str:
    """The transcript as scored: lowercased (ASR sets such as LibriSpeech write it in capitals, which a
    model trained on ordinary text has rarely seen), whitespace collapsed."""
    return " ".join(text.lower().split())


def distractors(texts: list[str], frames: list[int], seed: int) -> list[int | None]:
    """For each utterance, the index of the one whose audio it is paired with: among those with a different
    transcript (after `match_text`), preferably of the same number of words, the one closest in length
    (codec frames), ties broken by the next in a `random.Random(seed)` shuffle; None when every transcript
    is the same. Length-matched distractors keep duration from deciding a pair."""
    texts = [match_text(t) for t in texts]
    words = [len(t.split()) for t in texts]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    place = {i: p for p, i in enumerate(order)}
    out: list[int | None] = []
    for i in range(len(texts)):
        other = [j for j in range(len(texts)) if texts[j] != texts[i]]
        pool = [j for j in other if words[j] == words[i]] or other
        out.append(min(pool, key=lambda j: (abs(frames[j] - frames[i]), (place[j] - place[i]) % len(texts)))
                   if pool else None)
    return out


def _build(ctx: EvalContext, read: ReadResult, errors: list[ItemError], bar) -> list:
    """(pair, positive request, negative request) for every utterance whose audio encodes and transcript
    tokenizes, paired with a length-matched distractor among those."""
    items: list[SpeechTextItem] = []
    codes: list = []
    for start in range(0, len(read.items), ENCODE_CHUNK):
        chunk = read.items[start : start + ENCODE_CHUNK]
        for it, c in zip(chunk, encode_clips(ctx, [(it.id, it.audio) for it in chunk], errors)):
            if c is not None:
                items.append(it)
                codes.append(c)
        bar.update(len(chunk))
    text_ids = encode_texts_or_none(ctx, [match_text(it.text) for it in items], "transcript")
    built = []
    chosen = distractors([it.text for it in items], [c.shape[-1] for c in codes], ctx.cfg.rng_seed)
    for k, (it, j) in enumerate(zip(items, chosen)):
        if j is None:
            errors.append(ItemError(item=it.id, stage="read", file=it.audio.where,
                                    reason="no utterance with a different transcript to pair its audio with"))
            continue
        if text_ids[k] is None:
            errors.append(ItemError(item=it.id, stage="encode", reason="transcript cannot be tokenized (see the PUA policy)"))
            continue
        other = items[j]
        pair = PairItem(id=it.id, pos=it.audio, neg=other.audio, group=it.id,
                        meta={"text": match_text(it.text), "words": len(it.text.split()), "frames": codes[k].shape[-1],
                              "distractor": other.id, "distractor_text": match_text(other.text),
                              "distractor_frames": codes[j].shape[-1]})
        try:
            built.append((pair, *(text_after_audio_request(c, text_ids[k], ctx.vocab, ctx.cfg.audio)
                                  for c in (codes[k], codes[j]))))
        except ValueError as e:
            errors.append(ItemError(item=it.id, stage="encode", reason=str(e)))
    return built


def run_match(ctx: EvalContext, path: Path | None) -> TaskResult:
    ctx.require_codec(TASK)
    v = ctx.vocab
    ctx.require_ids(TASK, [v.audio_start_id, v.audio_end_id, v.text_start_id, v.text_end_id, v.size - 1],
                    "the template's markers and audio codes")
    read = read_librispeech(_need(path, TASK, HELP)).limited(ctx.cfg.limit)
    errors: list[ItemError] = []
    with Timer() as t:
        with ctx.progress(f"{TASK} (encode)", len(read.items), unit="clip") as bar:
            built = _build(ctx, read, errors, bar)
        scored = score_pairs(ctx, built, errors, TASK)
    codec = ctx.codec
    protocol = {
        "template": "BOS <|audio_start|>{audio}<|audio_end|><|text_start|>{transcript}<|text_end|>",
        "pair": "positive: the utterance's own audio; negative: a distractor utterance's audio; the same "
                "transcript after both",
        "score": "mean log-prob over the transcript's text tokens (markers not scored)",
        "text": "the transcript lowercased, whitespace collapsed",
        "distractor": "an utterance with a different transcript, of the same number of words where there is one, "
                      "closest in codec frames; ties broken by the next in a "
                      f"random.Random({ctx.cfg.rng_seed}) shuffle of the utterances",
        "chance": "50%: a model that ignores the audio scores both members alike",
        "audio": {**ctx.cfg.audio.describe(v), "codec": {"name": codec.name, "config_hash": codec.config_hash,
                                                          "sample_rate": codec.sample_rate}},
    }
    return pair_result(TASK, ctx, read, scored, errors, protocol, ("words",), t.seconds)


register(TaskSpec(TASK, "speech-text matching: a transcript after its own audio vs after another utterance's "
                        "(text score); 50% when the model ignores audio", HELP, run_match, needs_codec=True))
