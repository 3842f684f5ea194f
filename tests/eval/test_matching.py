"""Speech-text matching in both orders: a model that links the words to their sounds gets every pair; a
model that ignores the other modality, whatever its prior, ties every pair (chance); distractors and broken
clips behave as documented."""

import pytest

from sodakit.eval.config import EvalConfig
from sodakit.eval.controls import PermutedCodebooks
from sodakit.eval.layouts import write_librispeech
from sodakit.eval.lm import VocabularyError
from sodakit.eval.tasks import EvalContext, TaskError, get_task
from sodakit.eval.tasks.matching import distractors

from .conftest import ConstantLM, tone

SR = 16_000
# Each word is a tone of its own loudness: the toy codec's codebook 0 (loudness) tells them apart.
LOUDNESS = {"CAT": 0.5, "DOG": 0.05, "MOON": 0.005, "NIGHT": 0.0005}


class HearingLM:
    """Reads the loudness code of the first audio frame and the transcript: when the transcript is that
    sound's word, the scored modality (`scores`: the transcript's "text" or the "audio") gets log p = 0;
    every other position -1."""

    def __init__(self, tok, words_by_code, scores="text"):
        self.v, self.vocab_size, self.max_positions, self.scores = tok.vocab, tok.vocab.size, None, scores
        self.expected = {code: tuple(tok.encode_texts([w])[0]) for code, w in words_by_code.items()}

    def token_logprobs(self, input_ids):
        import torch

        v = self.v
        out = torch.full((input_ids.shape[0], input_ids.shape[1] - 1), -1.0)
        lo, hi = v.codebook_range(0)
        for r, row in enumerate(input_ids.tolist()):
            code = next(t - lo for t in row if lo <= t < hi)
            a, b = row.index(v.text_start_id), row.index(v.text_end_id)
            if tuple(row[a + 1 : b]) == self.expected.get(code):
                if self.scores == "audio":
                    a, b = row.index(v.audio_start_id), row.index(v.audio_end_id)
                out[r, a : b - 1] = 0.0  # position t scores row[t + 1]
        return out


class TextPriorLM:
    """Ignores the audio: each token's log p depends on the token alone."""

    def __init__(self, vocab_size):
        self.vocab_size, self.max_positions = vocab_size, None

    def token_logprobs(self, input_ids):
        return -(input_ids[:, 1:] % 7).float() / 10


def _clips(words):
    return [(f"1-1-{i:04d}", w, tone(0.3, LOUDNESS[w])) for i, w in enumerate(words)]


def _ctx(lm, tok, codec, **kw):
    return EvalContext(lm=lm, tokenizer=tok, codec=codec, cfg=EvalConfig(batch_size=4, **kw))


def _codes_of(codec):
    return {int(codec.encode_audio([tone(0.3, a)], SR)[0][0, 0]): w.lower() for w, a in LOUDNESS.items()}


@pytest.mark.parametrize(("name", "scores", "first"), [("speech_text_match", "text", "BOS <|audio_start|>"),
                                                     ("text_speech_match", "audio", "BOS <|text_start|>")])
def test_a_model_that_links_words_and_sounds_matches_every_pair(tmp_path, tiny_tokenizer, toy_codec, name, scores,
                                                                 first):
    root = write_librispeech(tmp_path / "set", _clips(["CAT", "DOG", "MOON", "NIGHT", "CAT", "DOG"]), SR)
    task = get_task(name)
    hearing = HearingLM(tiny_tokenizer, _codes_of(toy_codec), scores)
    res = task.run(_ctx(hearing, tiny_tokenizer, toy_codec, log_items=True), root)
    assert res.metrics["accuracy"] == 1.0 and res.metrics["pairs"] == 6 and res.counts["denominator"] == 6
    assert res.protocol["template"].startswith(first) and "50%" in res.protocol["chance"]
    for rec in res.items:
        assert rec["meta"]["distractor_text"] != rec["meta"]["text"] and rec["pos"]["mean"] == 0.0
    # a model that ignores the other modality ties every pair, whatever it thinks of the shared part itself
    for lm in (TextPriorLM(tiny_tokenizer.vocab.size), ConstantLM(tiny_tokenizer.vocab.size)):
        m = task.run(_ctx(lm, tiny_tokenizer, toy_codec), root).metrics
        assert m["ties"] == 6 and m["accuracy_strict"] == 0.0 and m["accuracy_ties_half"] == 0.5
    # the same model reading every clip's audio through the wrong codebooks no longer hears its words (a
    # permuted code may pass for another word's, which then wins that pair)
    m = task.run(_ctx(hearing, tiny_tokenizer, PermutedCodebooks(toy_codec)), root).metrics
    assert m["accuracy_ties_half"] <= 0.5 and m["ties"] >= 4
    # a model that links the modalities in the other order only is at chance here
    other = HearingLM(tiny_tokenizer, _codes_of(toy_codec), "audio" if scores == "text" else "text")
    assert task.run(_ctx(other, tiny_tokenizer, toy_codec), root).metrics["ties"] == 6


def test_distractors_are_other_transcripts_of_the_same_length_in_words_and_frames():
    texts = ["THE CAT", "A DOG", "THE CAT", "MOON", "the cat", "A BIRD"]
    frames = [10, 30, 12, 11, 10, 11]
    chosen = distractors(texts, frames, seed=0)
    assert chosen == distractors(texts, frames, seed=0)  # reproducible
    # two-word transcripts that differ (case does not count), closest in frames: A BIRD (11) for the cats
    assert chosen[0] == chosen[2] == chosen[4] == 5 and chosen[5] in (0, 2, 4)
    assert chosen[1] == 2  # A DOG (30 frames): the 12-frame cat is the closest
    assert chosen[3] in (0, 1, 2, 4, 5)  # no other one-word transcript: any different one
    # equal distances are broken by the seeded shuffle, not by position
    picks = {distractors(["A", "B", "C", "D"], [5, 5, 5, 5], seed=s)[0] for s in range(20)}
    assert picks == {1, 2, 3}
    assert distractors(["CAT", "cat"], [3, 3], seed=0) == [None, None]


def test_distractors_follow_their_definition_on_random_sets():
    """The vectorised search against the rule written out one pair at a time."""
    import random

    def by_definition(texts, frames, seed):
        texts = [" ".join(t.lower().split()) for t in texts]
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        place = {i: p for p, i in enumerate(order)}
        out = []
        for i in range(len(texts)):
            other = [j for j in range(len(texts)) if texts[j] != texts[i]]
            pool = [j for j in other if len(texts[j].split()) == len(texts[i].split())] or other
            out.append(min(pool, key=lambda j: (abs(frames[j] - frames[i]), (place[j] - place[i]) % len(texts)))
                       if pool else None)
        return out

    rng = random.Random(0)
    for _ in range(100):
        n = rng.randint(0, 25)
        texts = [" ".join(rng.choice(["cat", "DOG", "moon", "a"]) for _ in range(rng.randint(1, 3))) for _ in range(n)]
        frames = [rng.randint(1, 6) for _ in range(n)]
        seed = rng.randint(0, 99)
        assert distractors(texts, frames, seed) == by_definition(texts, frames, seed), (texts, frames, seed)


def test_a_broken_clip_excludes_its_pair_only(tmp_path, tiny_tokenizer, toy_codec):
    root = write_librispeech(tmp_path / "set", _clips(["CAT", "DOG", "MOON", "NIGHT"]), SR)
    bad = root / "1" / "1" / "1-1-0001.flac"
    bad.write_bytes(b"fLaC not really")
    res = get_task("speech_text_match").run(_ctx(HearingLM(tiny_tokenizer, _codes_of(toy_codec)), tiny_tokenizer,
                                                 toy_codec, log_items=True), root)
    assert [(e.item, e.file) for e in res.excluded] == [("1-1-0001", str(bad))]
    assert res.counts["scored"] == 3 and res.counts["items_read"] == 4 and res.metrics["accuracy"] == 1.0
    assert all(rec["meta"]["distractor"] != "1-1-0001" for rec in res.items)  # never paired with it either
    # a transcript the tokenizer refuses (a Private Use Area character: audio in SODA's string form)
    clips = _clips(["CAT", "DOG", "MOON"])
    clips[2] = (clips[2][0], "MOON\ue000", clips[2][2])
    root = write_librispeech(tmp_path / "pua", clips, SR)
    res = get_task("speech_text_match").run(_ctx(HearingLM(tiny_tokenizer, _codes_of(toy_codec)), tiny_tokenizer,
                                                 toy_codec), root)
    assert [(e.item, e.stage) for e in res.excluded] == [("1-1-0002", "encode")] and res.counts["scored"] == 2
    with pytest.raises(TaskError, match="needs data"):
        get_task("speech_text_match").run(_ctx(ConstantLM(tiny_tokenizer.vocab.size), tiny_tokenizer, toy_codec), None)
    with pytest.raises(VocabularyError, match="markers and audio codes"):
        get_task("speech_text_match").run(_ctx(ConstantLM(10), tiny_tokenizer, toy_codec), root)


def test_identical_transcripts_cannot_be_paired(tmp_path, tiny_tokenizer, toy_codec):
    root = write_librispeech(tmp_path / "set", _clips(["CAT", "CAT"]), SR)
    with pytest.raises(TaskError, match="different transcript"):
        get_task("speech_text_match").run(_ctx(ConstantLM(tiny_tokenizer.vocab.size), tiny_tokenizer, toy_codec), root)

