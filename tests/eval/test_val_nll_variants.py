"""val_nll selects the right target tokens for each of its six variants.

A uniform model gives log V for every variant whatever tokens are selected, so it cannot tell a wrong
selection apart. Here the scorer's log-prob depends on the predicted token id (log p = -id / 100,
whatever the context), so each variant's NLL is the mean id of exactly the tokens it should select,
divided by 100. The expected documents and selections are rebuilt by hand in this file (layouts of
docs/soda.md#vocabulary), independently of sodakit.tokens.documents and of the task's masks.
"""

from __future__ import annotations

import numpy as np
import pytest

from sodakit.eval.config import EvalConfig
from sodakit.eval.tasks import EvalContext, get_task

VARIANTS = ("all", "audio", "semantic", "audio_only", "text_interleaved", "text_only")
# the interleaved tokens again, split by document order
ORDER_VARIANTS = ("text_after_audio", "text_before_audio", "audio_after_text", "audio_before_text")
TEXT_LINES = ["a dog barks at the moon", "who did you see"]


class _IdScorer:
    """log p(x_t | x_<t) = -x_t / 100, minus 0.5 once a text-start marker is in the row's context x_<t,
    minus 0.25 once an audio-start marker is.

    The id term makes every variant's NLL the mean id of the tokens it selects; the context terms make
    the audio of interleaved documents score differently from the same audio in audio-only documents,
    and a document's first text (audio) differently in the two document orders; they see only what a
    window holds (as a model would).
    """

    def __init__(self, vocab_size: int, text_start_id: int, audio_start_id: int, max_positions: int | None = None):
        self.vocab_size, self.max_positions, self.ts, self.as_ = vocab_size, max_positions, text_start_id, audio_start_id
        self.rows_seen = 0

    def token_logprobs(self, input_ids):
        import torch

        self.rows_seen += input_ids.shape[0]
        seen_ts = torch.cumsum((input_ids == self.ts).long(), dim=1)[:, :-1] > 0
        seen_as = torch.cumsum((input_ids == self.as_).long(), dim=1)[:, :-1] > 0
        return -input_ids[:, 1:].double() / 100.0 - 0.5 * seen_ts.double() - 0.25 * seen_as.double()


def _segments():
    from sodakit.data.segments import Segment

    rng = np.random.default_rng(7)
    # two recordings; r1's segments are listed out of time order (the task sorts them)
    spec = [("r0", 0.0, "the cat 0", 3), ("r0", 1.0, "the cat sleeps", 4), ("r1", 2.0, "a dog 2", 2),
            ("r1", 0.5, "who did you see", 5)]
    return [Segment(id=f"{rid}_{i}", recording_id=rid, start=start, end=start + 0.4, text=text,
                    codes=rng.integers(0, 16, size=(4, frames)).astype(np.uint16))
            for i, (rid, start, text, frames) in enumerate(spec)]


@pytest.fixture
def dev_set(tmp_path):
    from sodakit.data.segments import CodecInfo, SegmentManifest, write_segment_shard

    segs = _segments()
    d = tmp_path / "dev"
    d.mkdir()
    info = write_segment_shard(d / "segments-00000.parquet", segs)
    SegmentManifest(codec=CodecInfo("toy", "toy-codec-1", 16000, 50.0, 4, 16), shards=[info]).save(d)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT_LINES) + "\n\n")  # a blank line is not a document
    return d, text, segs


def _documents(tok, segs):
    """The documents built by hand, each token with the variants that score it when it is a target."""
    v = tok.vocab
    ts, te, as_, ae = v.text_vocab_size, v.text_vocab_size + 1, v.text_vocab_size + 2, v.text_vocab_size + 3
    assert (ts, te, as_, ae) == (v.text_start_id, v.text_end_id, v.audio_start_id, v.audio_end_id)
    a0 = v.text_vocab_size + 4  # first audio id; codebook k, code c -> a0 + 16 k + c

    def audio(codes, *tags):  # frame-major, codebooks 0..3 within a frame; codebook 0 is the semantic one
        return [(a0 + 16 * k + int(codes[k, f]), {*tags, "semantic"} if k == 0 and "audio" in tags else set(tags))
                for f in range(codes.shape[1]) for k in range(4)]

    recs: dict[str, list] = {}
    for s in segs:
        recs.setdefault(s.recording_id, []).append(s)
    docs = []
    for rec in recs.values():
        rec = sorted(rec, key=lambda s: s.start)
        texts = [list(tok.encode_texts([s.text])[0]) for s in rec]
        assert all(0 <= t < v.text_vocab_size and t not in (v.bos_id, v.eos_id) for x in texts for t in x)
        tf, af, ao = [(v.bos_id, set())], [(v.bos_id, set())], [(v.bos_id, set())]
        for s, t in zip(rec, texts):
            def text(order, t=t):
                return [(i, {"all", "text_interleaved", order}) for i in t]
            tf += [(ts, {"all"}), *text("text_before_audio"), (te, {"all"}), (as_, {"all"}),
                   *audio(s.codes, "all", "audio", "audio_after_text"), (ae, {"all"})]
            af += [(as_, {"all"}), *audio(s.codes, "all", "audio", "audio_before_text"), (ae, {"all"}), (ts, {"all"}),
                   *text("text_after_audio"), (te, {"all"})]
            ao += [(as_, set()), *audio(s.codes, "audio_only"), (ae, set())]
        docs += [[*tf, (v.eos_id, {"all"})], [*af, (v.eos_id, {"all"})], [*ao, (v.eos_id, set())]]
    for line in TEXT_LINES:
        ids = list(tok.encode_texts([line])[0])
        docs.append([(v.bos_id, set()), *[(i, {"text_only"}) for i in ids], (v.eos_id, set())])
    return docs


def _expected(docs, ts: int, as_: int, width: int):
    """(sum of log-probs, count) per variant: windows of `width` advancing by width - 1, so each token
    after the first is predicted once, seeing only its window."""
    sums = dict.fromkeys(VARIANTS + ORDER_VARIANTS, 0.0)
    nums = dict.fromkeys(VARIANTS + ORDER_VARIANTS, 0)
    n_windows = 0
    for doc in docs:
        ids = [i for i, _ in doc]
        start = 0
        while start < len(doc) - 1:
            n_windows += 1
            window = doc[start : start + width]
            for p in range(1, len(window)):
                tok, tags = window[p]
                context = ids[start : start + p]
                lp = -tok / 100.0 - (0.5 if ts in context else 0.0) - (0.25 if as_ in context else 0.0)
                for k in tags:
                    sums[k] += lp
                    nums[k] += 1
            start += width - 1
    return sums, nums, n_windows


@pytest.mark.parametrize(("max_positions", "nll_window"), [(None, 0), (16, 0), (None, 16), (64, 16)],
                         ids=["whole_docs", "windows_of_16", "nll_window_16", "nll_window_under_positions"])
def test_val_nll_each_variant_selects_its_tokens(dev_set, tiny_tokenizer, max_positions, nll_window):
    d, text, segs = dev_set
    v = tiny_tokenizer.vocab
    docs = _documents(tiny_tokenizer, segs)
    width = nll_window or max_positions or 4096
    sums, nums, n_windows = _expected(docs, v.text_start_id, v.audio_start_id, width)
    nll = {k: -sums[k] / nums[k] for k in VARIANTS + ORDER_VARIANTS}
    # the expected values are distinct, so one variant's selection cannot pass for another's
    assert len({round(x, 9) for x in nll.values()}) == len(nll), nll
    # ... and plausible wrong selections give other values than the right one
    for variant, wrong_tags in [
        ("text_interleaved", lambda t, tags: "all" in tags and t < v.audio_offset),  # + markers and EOS
        ("text_interleaved", lambda t, tags: "all" in tags and t < v.text_vocab_size),  # + EOS
        ("text_only", lambda t, tags: t < v.text_vocab_size),  # + EOS
        ("all", lambda t, tags: "all" in tags and t != v.eos_id),
        ("audio_only", lambda t, tags: "audio_only" in tags or t in (v.audio_start_id, v.audio_end_id)),
        ("audio", lambda t, tags: "audio" in tags or "audio_only" in tags),  # audio of every document
    ]:
        wrong = [[(t, {variant} if wrong_tags(t, tags) else set()) for t, tags in doc] for doc in docs]
        ws, wn, _ = _expected(wrong, v.text_start_id, v.audio_start_id, width)
        assert -ws[variant] / wn[variant] != pytest.approx(nll[variant], rel=1e-6), variant

    lm = _IdScorer(v.size, v.text_start_id, v.audio_start_id, max_positions)
    res = get_task("val_nll").run(EvalContext(lm=lm, tokenizer=tiny_tokenizer, cfg=EvalConfig(batch_size=3, nll_window=nll_window)),
                                     f"{d},{text}")
    for k in VARIANTS + ORDER_VARIANTS:
        assert res.metrics[f"nll_{k}"] == pytest.approx(nll[k], rel=1e-9), k
    assert res.counts["tokens"] == nums
    # the order split covers the interleaved tokens exactly once
    assert nums["text_after_audio"] + nums["text_before_audio"] == nums["text_interleaved"]
    assert nums["audio_after_text"] + nums["audio_before_text"] == nums["audio"]
    # the gains are what hearing the audio (reading the text) first saves per token
    assert res.metrics["gain_text_from_audio"] == pytest.approx(nll["text_before_audio"] - nll["text_after_audio"])
    assert res.metrics["gain_audio_from_text"] == pytest.approx(nll["audio_before_text"] - nll["audio_after_text"])
    # concrete counts: 4 segments with 3 + 4 + 2 + 5 = 14 frames of 4 codebooks, in tf and af documents
    text_ids = [len(tiny_tokenizer.encode_texts([s.text])[0]) for s in segs]
    assert nums["audio"] == 2 * 14 * 4
    assert nums["semantic"] == 2 * 14
    assert nums["audio_only"] == 14 * 4
    assert nums["text_interleaved"] == 2 * sum(text_ids)
    assert nums["text_only"] == sum(len(tiny_tokenizer.encode_texts([t])[0]) for t in TEXT_LINES)
    # all: per segment TS TE AS AE + text + audio, per document EOS, over tf and af of 2 recordings
    assert nums["all"] == 2 * (4 * 4 + sum(text_ids) + 14 * 4) + 4
    assert res.counts["recordings"] == 2 and res.counts["text_documents"] == 2 and res.counts["documents"] == 8
    assert not res.notes
    # every document is covered exactly once: windows of width w advance by w - 1 tokens
    assert n_windows == sum(-(-(len(doc) - 1) // (width - 1)) for doc in docs)
    assert res.counts["windows"] == n_windows == lm.rows_seen
    if width < 4096:
        assert n_windows > len(docs)
    else:
        assert n_windows == len(docs)


def test_val_nll_notes_every_variant_the_data_lacks(tmp_path, tiny_tokenizer):
    """Recordings without transcripts leave the text variants, their order split and the text gain empty:
    each is None and named in the notes (not a silent 0 or NaN)."""
    from dataclasses import replace

    from sodakit.data.segments import CodecInfo, SegmentManifest, write_segment_shard

    d = tmp_path / "dev"
    d.mkdir()
    info = write_segment_shard(d / "segments-00000.parquet", [replace(s, text="") for s in _segments()])
    SegmentManifest(codec=CodecInfo("toy", "toy-codec-1", 16000, 50.0, 4, 16), shards=[info]).save(d)
    v = tiny_tokenizer.vocab
    lm = _IdScorer(v.size, v.text_start_id, v.audio_start_id)
    res = get_task("val_nll").run(EvalContext(lm=lm, tokenizer=tiny_tokenizer, cfg=EvalConfig(batch_size=3)), str(d))
    empty = ["text_interleaved", "text_only", "text_after_audio", "text_before_audio"]
    for k in empty:
        assert res.metrics[f"nll_{k}"] is None
        assert any(n.startswith(f"nll_{k}:") for n in res.notes), (k, res.notes)
    assert res.metrics["gain_text_from_audio"] is None
    assert any(n.startswith("gain_text_from_audio:") for n in res.notes)
    assert res.metrics["gain_audio_from_text"] is not None
    assert len(res.notes) == len(empty) + 1, res.notes
