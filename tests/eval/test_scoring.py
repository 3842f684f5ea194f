"""The likelihood primitive: batch independence, agreement with transformers, frame-major codebook
selection, and clear errors for sequences the model cannot score."""

import numpy as np
import pytest
import torch

from sodakit.eval.lm import HFCausalLM, VocabularyError, as_scoring_lm
from sodakit.eval.scoring import ScoreRequest, check_request, score_requests
from sodakit.eval.spans import AudioSelection, continuation_request, speech_request, text_request
from sodakit.tokens.vocab import AudioSpanError

from .conftest import tiny_vocab


def _random_requests(n: int, seed: int = 0) -> list[ScoreRequest]:
    v = tiny_vocab()
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        if i % 2:
            codes = rng.integers(0, v.codebook_size, size=(v.num_codebooks, int(rng.integers(1, 12))))
            reqs.append(speech_request(codes, v, AudioSelection()))
        else:
            reqs.append(text_request(rng.integers(2, v.text_vocab_size, size=int(rng.integers(1, 30))), v))
    return reqs


def test_batch_size_independence(tiny_lm_model):
    lm = as_scoring_lm(tiny_lm_model)
    reqs = _random_requests(23)
    one = score_requests(lm, reqs, batch_size=1)
    sixteen = score_requests(lm, reqs, batch_size=16)
    for a, b in zip(one, sixteen):
        assert a.num_tokens == b.num_tokens
        assert abs(a.mean_logprob - b.mean_logprob) < 1e-5
        assert abs(a.sum_logprob - b.sum_logprob) < 1e-4


def test_hf_adapter_matches_direct_logits(tiny_lm_model):
    lm = HFCausalLM(tiny_lm_model)
    ids = torch.tensor([[0, 300, 5, 6, 7, 301], [0, 302, 310, 330, 350, 303]])
    with torch.no_grad():
        ref = torch.log_softmax(tiny_lm_model(input_ids=ids).logits.float(), -1)[:, :-1]
        ref = ref.gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(lm.token_logprobs(ids), ref, rtol=1e-5, atol=1e-5)


class _IdScorer:
    """A known-answer 'model': log p(next token) = -(token id) / 100, whatever the context."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.max_positions = vocab_size, None

    def token_logprobs(self, input_ids):
        return -input_ids[:, 1:].double() / 100.0


def test_first_k_codebooks_are_selected_frame_major():
    v = tiny_vocab()  # 4 codebooks of 16
    codes = np.arange(4 * 5).reshape(4, 5) % 16  # [K=4, F=5]
    lm = _IdScorer(v.size)
    for k in (1, 2, 3, 4):
        req = speech_request(codes, v, AudioSelection(input="all", score=k))
        got = score_requests(lm, [req])[0]
        scored_ids = [v.audio_id(b, int(codes[b, t])) for t in range(5) for b in range(k)]
        assert got.num_tokens == 5 * k
        assert got.mean_logprob == pytest.approx(-np.mean(scored_ids) / 100.0)
        # The wrong reshape (K, frames) would pick tokens of every codebook instead.
        span = req.ids[2:-1]
        wrong = span.reshape(4, 5)[:k].reshape(-1)
        if k < 4:
            assert sorted(wrong.tolist()) != sorted(scored_ids)
    # Semantic codebook only, of a full 4-codebook input, and semantic-only input ("S" documents).
    sem = score_requests(lm, [speech_request(codes, v, AudioSelection(score="semantic"))])[0]
    assert sem.mean_logprob == pytest.approx(-np.mean([v.audio_id(0, int(c)) for c in codes[0]]) / 100.0)
    s_only = speech_request(codes, v, AudioSelection(input="semantic", score="all"))
    assert s_only.ids.size == 2 + 5 + 1 and v.is_semantic(s_only.ids[2:-1]).all()


def test_span_positions_and_templates():
    v = tiny_vocab()
    r = text_request([10, 11, 12], v)
    assert r.ids.tolist() == [v.bos_id, v.text_start_id, 10, 11, 12, v.text_end_id]
    assert r.positions.tolist() == [2, 3, 4]
    c = continuation_request([5, 6], [7, 8, 9], v)
    assert c.ids.tolist() == [v.bos_id, 5, 6, 7, 8, 9] and c.positions.tolist() == [3, 4, 5]
    s = speech_request(np.zeros((4, 2), int), v, AudioSelection())
    assert s.ids[:2].tolist() == [v.bos_id, v.audio_start_id] and s.ids[-1] == v.audio_end_id
    assert s.positions.tolist() == list(range(2, 10))
    with pytest.raises(ValueError, match="empty text"):
        text_request([], v)
    with pytest.raises(ValueError, match="empty audio span"):
        speech_request(np.zeros((4, 0), int), v, AudioSelection())
    with pytest.raises(ValueError, match="scored codebooks k=3 outside 1..2"):
        speech_request(np.zeros((4, 2), int), v, AudioSelection(input=2, score=3))


def test_misordered_audio_span_is_an_error():
    from sodakit.eval.spans import check_codebook_order

    v = tiny_vocab()
    span = np.array([v.audio_id(0, 1), v.audio_id(2, 1), v.audio_id(1, 1), v.audio_id(3, 1)])
    with pytest.raises(AudioSpanError, match="frame 0 column 1 holds codebook 2"):
        check_codebook_order(span, v, [0, 1, 2, 3])


def test_requests_the_model_cannot_score(tiny_lm_model):
    lm = as_scoring_lm(tiny_lm_model)
    big = ScoreRequest(ids=np.array([0, lm.vocab_size + 5]), positions=np.array([1]))
    assert "does not cover" in check_request(big, lm)
    with pytest.raises(VocabularyError, match="request 0: token id"):
        score_requests(lm, [big])
    long = ScoreRequest(ids=np.zeros(lm.max_positions + 1, np.int64), positions=np.array([1]))
    assert "exceeds" in check_request(long, lm)
