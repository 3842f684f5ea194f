#!/usr/bin/env python
"""Does a model read a transcript's audio to predict the transcript, and where in the transcript?

    python scripts/crossmodal_probe.py MODEL SEGMENTS_DIR [--window 512] [--recordings 200] [--json OUT]

Every recording of SEGMENTS_DIR (a `sodakit tokenize` output, e.g. a demo run's segments/train or
segments/val) is scored as a text-first and as an audio-first document, in windows of `--window` tokens
from the document's start (as training cuts its stream, and as `val_nll` scores). A transcript token's
gain is its NLL in the text-first document (read before its audio) minus its NLL in the audio-first one
(read right after its audio); audio-first tokens count only when their segment's audio starts in the same
window, so a transcript whose audio was cut off by the window does not pass for one the model ignored.

The table splits the gain by the transcript's length in text tokens (1, 2-3, 4+) and, for transcripts of
4+ tokens, by the token's place in it (1st .. 5th, 6th on). `val_nll`'s `gain_text_from_audio` is the
mean over all of them. A model that recognises a word only from the audio just before it gains on
one-token transcripts and on little else; a model that can transcribe gains at every place.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np

from sodakit.data.segments import group_recordings, read_segments_dir
from sodakit.eval.lm import as_scoring_lm
from sodakit.eval.scoring import position_logprobs
from sodakit.eval.tasks.nll import windows
from sodakit.model.bundle import load_bundle
from sodakit.tokens.documents import recording_documents

LENGTHS = ("1", "2-3", "4+")
PLACES = ("1st", "2nd", "3rd", "4th", "5th", "6th+")


def _length_bucket(n: int) -> str:
    return "1" if n == 1 else ("2-3" if n <= 3 else "4+")


def transcript_places(ids: np.ndarray, vocab, audio_first: bool) -> list[tuple[int, int, int, int]]:
    """(position, transcript length, place in the transcript, position of the segment's audio start) for
    every transcript token of an interleaved document; the audio start is -1 in a text-first document,
    where a transcript precedes its audio."""
    out = []
    last_audio_start = -1
    pos = 0
    while pos < ids.size:
        t = int(ids[pos])
        if t == vocab.audio_start_id:
            last_audio_start = pos
        elif t == vocab.text_start_id:
            end = pos + 1
            while end < ids.size and int(ids[end]) != vocab.text_end_id:
                end += 1
            audio = last_audio_start if audio_first else -1
            out += [(p, end - pos - 1, p - pos - 1, audio) for p in range(pos + 1, end)]
            pos = end
        pos += 1
    return out


def text_nll_by_place(lm, docs: list[tuple[str, np.ndarray]], vocab, width: int, batch_size: int = 8) -> dict:
    """Sum and count of transcript-token NLL per (document order, bucket) over `docs` ((order, ids) with
    order text_first or audio_first), scored in windows of `width` tokens from each document's start."""
    reqs, owner = [], []
    for j, (_, ids) in enumerate(docs):
        for w in windows(ids, width):
            reqs.append(w)
            owner.append(j)
    rows = position_logprobs(lm, reqs, batch_size=batch_size)
    nll: list[dict[int, float]] = [{} for _ in docs]
    starts: list[dict[int, int]] = [{} for _ in docs]
    offset = defaultdict(int)
    for req, lp, j in zip(reqs, rows, owner):
        start = offset[j]
        for p, v in zip(req.positions, lp):
            nll[j][start + int(p)] = -float(v)
            starts[j].setdefault(start + int(p), start)
        offset[j] = start + req.ids.size - 1
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for j, (order, ids) in enumerate(docs):
        for pos, length, place, audio in transcript_places(ids, vocab, order == "audio_first"):
            if pos not in nll[j]:
                continue
            if order == "audio_first" and audio < starts[j][pos]:
                continue  # its audio is not in the window the token was predicted in
            keys = [_length_bucket(length)]
            if length >= 4:
                keys.append(PLACES[min(place, len(PLACES) - 1)])
            for key in keys:
                acc[(order, key)][0] += nll[j][pos]
                acc[(order, key)][1] += 1
    return dict(acc)


def gain_table(acc: dict) -> list[dict]:
    """One row per bucket: mean NLL before and after the audio, their difference, token counts."""
    rows = []
    for key in LENGTHS + PLACES:
        before, after = acc.get(("text_first", key)), acc.get(("audio_first", key))
        if not before or not after or not before[1] or not after[1]:
            continue
        b, a = before[0] / before[1], after[0] / after[1]
        rows.append({"bucket": key, "nll_before_audio": round(b, 4), "nll_after_audio": round(a, 4),
                     "gain": round(b - a, 4), "tokens_before": before[1], "tokens_after": after[1]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a sodakit checkpoint or run directory, or a Hugging Face causal LM")
    ap.add_argument("segments", help="a segment-shard directory (sodakit tokenize output)")
    ap.add_argument("--window", type=int, default=512, help="scoring window in tokens (the training length)")
    ap.add_argument("--recordings", type=int, default=200, help="recordings to score (0: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args(argv)
    bundle = load_bundle(args.model, device=args.device, need_codec=False, need_tokenizer=True)
    _, segs = read_segments_dir(args.segments)
    recordings = group_recordings(segs)
    if args.recordings:
        recordings = recordings[: args.recordings]
    docs = []
    for rec in recordings:
        tf, af = recording_documents(rec, ("text_first", "audio_first"), bundle.tokenizer)
        docs += [("text_first", np.asarray(tf, dtype=np.int64)), ("audio_first", np.asarray(af, dtype=np.int64))]
    rows = gain_table(text_nll_by_place(as_scoring_lm(bundle.model), docs, bundle.tokenizer.vocab, args.window))
    print(f"{'transcript tokens':>18} {'NLL before audio':>17} {'after audio':>12} {'gain':>7} {'tokens':>7}")
    for r in rows:
        label = f"{r['bucket']} tokens" if r["bucket"] in LENGTHS else f"4+, {r['bucket']}"
        print(f"{label:>18} {r['nll_before_audio']:>17.3f} {r['nll_after_audio']:>12.3f} {r['gain']:>7.3f} "
              f"{r['tokens_after']:>7}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "segments": args.segments, "window": args.window,
                       "recordings": len(recordings), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
