"""Decoding over the KV cache: equality with full forward passes, constraints, stops, guards, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sodakit.generate.constraints import ModalityConstraints, PromptStateError
from sodakit.generate.decoding import (
    STOP_BUDGET,
    STOP_DURATION,
    STOP_SILENCE,
    STOP_TOKEN,
    GenerationConfig,
    generate,
)
from sodakit.generate.prompts import split_spans
from sodakit.generate.sampling import SamplingConfig, filter_logits
from sodakit.generate.silence import CodeSetSilence, RepeatSilence

from .conftest import silent_model, tiny_model


def _audio(vocab, frames, seed):
    codes = np.random.default_rng(seed).integers(0, vocab.codebook_size, (vocab.num_codebooks, frames))
    return vocab.codes_to_ids(codes).astype(np.int64).tolist()


def _prompts(v):
    """Ragged prompts ending in every state: text span, fresh audio span, mid-audio span, between spans."""
    return [
        [v.bos_id, v.audio_start_id, *_audio(v, 3, 0), v.audio_end_id, v.text_start_id],
        [v.bos_id, v.text_start_id, 5, 6, 7, v.text_end_id, v.audio_start_id],
        [v.bos_id, v.audio_start_id, *_audio(v, 2, 1)],
        [v.bos_id, 9, 10, 11, 12, 13, 14, 15, 16],
        [v.bos_id],
    ]


def _reference_allowed(seq, v, n_model):
    """Independent re-statement of the decoding rules, from the whole sequence so far."""
    k = v.num_codebooks
    allowed = np.zeros(n_model, dtype=bool)
    markers = {v.text_start_id, v.text_end_id, v.audio_start_id, v.audio_end_id}
    last = max((i for i, t in enumerate(seq) if t in markers), default=None)
    if last is not None and seq[last] == v.text_start_id:
        allowed[: v.text_vocab_size] = True
        allowed[[v.bos_id, v.eos_id]] = False
        allowed[v.text_end_id] = True
    elif last is not None and seq[last] == v.audio_start_id:
        p = len(seq) - last - 1
        lo, hi = v.codebook_range(p % k)
        allowed[lo:hi] = True
        if p > 0 and p % k == 0:
            allowed[v.audio_end_id] = True
    else:
        allowed[: v.text_vocab_size] = True
        allowed[v.bos_id] = False
        allowed[[v.text_start_id, v.audio_start_id]] = True
    return allowed


def _reference_greedy(model, prompt, steps, v, constrained):
    seq = list(prompt)
    n_model = model.cfg.vocab_size
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([seq]))[0, -1].numpy()
        if constrained:
            allowed = _reference_allowed(seq, v, n_model)
        else:
            allowed = np.zeros(n_model, dtype=bool)
            allowed[: v.size] = True
        seq.append(int(np.where(allowed, logits, -np.inf).argmax()))
    return seq[len(prompt) :]


@pytest.mark.parametrize("constrained", [False, True])
def test_greedy_with_cache_equals_full_forward_argmax_ragged_batch(model, vocab, constrained):
    prompts = _prompts(vocab)
    steps = 13
    # The budget guard closes audio spans in the last K+1 steps; compare the tokens before that.
    cfg = GenerationConfig(max_new_tokens=steps + vocab.num_codebooks + 1, constrain=constrained)
    got = generate(model, prompts, vocab, cfg)
    for p, g in zip(prompts, got):
        assert len(g.tokens) >= steps
        assert g.tokens[:steps] == _reference_greedy(model, p, steps, vocab, constrained)


def test_batched_equals_one_by_one_with_stops_and_compaction(model, vocab):
    # Different rows stop at different times (stop ids), so finished rows are dropped from the cache mid-run.
    prompts = _prompts(vocab)
    cfg = GenerationConfig(max_new_tokens=28, stop_ids=(vocab.text_end_id, vocab.audio_end_id, vocab.eos_id))
    batched = generate(model, prompts, vocab, cfg)
    for p, b in zip(prompts, batched):
        alone = generate(model, [p], vocab, cfg)[0]
        assert b.tokens == alone.tokens and b.stop_reason == alone.stop_reason
        if b.stop_reason == STOP_TOKEN:
            assert b.tokens[-1] in cfg.stop_ids and not set(b.tokens[:-1]) & set(cfg.stop_ids)


def _check_well_formed(prompt, tokens, v):
    seq = list(prompt) + list(tokens)
    for span in split_spans(seq, v):
        if span.kind == "audio":
            assert span.ids.size % v.num_codebooks == 0, "audio span is not frame-complete"
            codes = v.ids_to_codes(span.ids)  # raises when out of codebook order
            assert codes.shape == (v.num_codebooks, span.ids.size // v.num_codebooks)
        elif span.kind == "text":
            assert v.is_text(span.ids).all()
            assert not np.isin(span.ids, [v.bos_id, v.eos_id]).any()
    assert (np.asarray(seq) < v.size).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_output_is_always_well_formed(model, vocab, seed):
    # High temperature over a random model explores every transition; budgets end at odd places.
    prompts = _prompts(vocab) * 2
    cfg = GenerationConfig(max_new_tokens=57 + seed, sampling=SamplingConfig(temperature=3.0, seed=seed))
    for p, g in zip(prompts, generate(model, prompts, vocab, cfg)):
        _check_well_formed(p, g.tokens, vocab)
        assert g.audio_frames == sum(
            1 for i in range(len(g.tokens)) if vocab.is_audio(g.tokens[i]) and _ends_frame(p, g.tokens[: i + 1], vocab)
        )


def _ends_frame(prompt, toks, v):
    seq = list(prompt) + list(toks)
    start = max(i for i, t in enumerate(seq) if t == v.audio_start_id)
    return (len(seq) - start - 1) % v.num_codebooks == 0


def test_open_spans_are_closed_frame_complete_when_the_budget_ends(model, vocab):
    v = vocab
    prompt = [v.bos_id, v.text_start_id, 5, v.text_end_id, v.audio_start_id]
    for budget in range(1, 3 * v.num_codebooks + 3):
        g = generate(model, [prompt], v, GenerationConfig(max_new_tokens=budget))[0]
        assert len(g.tokens) <= budget
        body = g.tokens[:-1] if g.tokens and g.tokens[-1] == v.audio_end_id else g.tokens
        assert len(body) % v.num_codebooks == 0
        assert g.audio_frames == len(body) // v.num_codebooks


def test_seeded_sampling_is_reproducible_and_top_k1_is_greedy(model, vocab):
    prompts = _prompts(vocab)
    hot = GenerationConfig(max_new_tokens=20, sampling=SamplingConfig(temperature=1.3, top_k=50, top_p=0.95, seed=7))
    a = [g.tokens for g in generate(model, prompts, vocab, hot)]
    b = [g.tokens for g in generate(model, prompts, vocab, hot)]
    assert a == b
    other = GenerationConfig(max_new_tokens=20, sampling=SamplingConfig(temperature=1.3, top_k=50, top_p=0.95, seed=8))
    assert [g.tokens for g in generate(model, prompts, vocab, other)] != a
    greedy = [g.tokens for g in generate(model, prompts, vocab, GenerationConfig(max_new_tokens=20))]
    for sc in (SamplingConfig(temperature=1.0, top_k=1, seed=3), SamplingConfig(temperature=1.0, top_p=1e-6, seed=3)):
        assert [g.tokens for g in generate(model, prompts, vocab, GenerationConfig(max_new_tokens=20, sampling=sc))] == greedy


def test_filter_logits_top_k_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, 1.0, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.8, 0.5 + 0.3 reaches it
    kept = torch.isfinite(filter_logits(logits, 1.0, top_p=0.81))
    assert kept.tolist() == [[True, True, True, False]]
    kept = torch.isfinite(filter_logits(logits, 1.0, top_k=3))
    assert kept.tolist() == [[True, True, True, False]]
    hot = torch.softmax(filter_logits(logits, 2.0), -1)
    assert torch.allclose(hot, torch.softmax(logits / 2.0, -1))
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)


def test_duration_cap_stops_a_never_ending_model(vocab):
    v = vocab
    m = silent_model(v)
    prompt = [v.bos_id, v.text_start_id, 5, v.text_end_id, v.audio_start_id]
    g = generate(m, [prompt], v, GenerationConfig(max_new_tokens=120, stop_ids=(v.audio_end_id,)))[0]
    assert g.stop_reason == STOP_BUDGET  # the failure mode: no cap, it runs to the budget
    g = generate(m, [prompt], v, GenerationConfig(max_new_tokens=120, stop_ids=(v.audio_end_id,), max_audio_frames=5))[0]
    assert g.stop_reason == STOP_DURATION and g.audio_frames == 5
    assert len(g.tokens) == 5 * v.num_codebooks + 1 and g.tokens[-1] == v.audio_end_id
    _check_well_formed(prompt, g.tokens, v)


@pytest.mark.parametrize("detector", ["repeat", "codes"])
def test_silence_stop(vocab, model, detector):
    v = vocab
    det = RepeatSilence(max_distinct=1) if detector == "repeat" else CodeSetSilence(codes=frozenset({0}))
    prompt = [v.bos_id, v.text_start_id, 5, v.text_end_id, v.audio_start_id]
    cfg = GenerationConfig(max_new_tokens=400, stop_ids=(v.audio_end_id,), silence_stop_frames=6)
    g = generate(silent_model(v), [prompt], v, cfg, silence=det)[0]
    assert g.stop_reason == STOP_SILENCE and g.audio_frames == 6 and g.trailing_silence == 6
    assert g.tokens[-1] == v.audio_end_id
    # A model whose codes vary (random weights, sampled) is not cut by the repeat detector.
    varied = GenerationConfig(
        max_new_tokens=12 * v.num_codebooks, sampling=SamplingConfig(temperature=1.0, seed=0), silence_stop_frames=6
    )
    g = generate(model, [prompt], v, varied, silence=RepeatSilence(max_distinct=1))[0]
    assert g.stop_reason != STOP_SILENCE
    with pytest.raises(ValueError, match="silence detector"):
        generate(model, [prompt], v, cfg)


def test_streaming_callback_yields_every_frame_in_order(model, vocab):
    v = vocab
    prompts = _prompts(v)
    events = []
    cfg = GenerationConfig(max_new_tokens=45, sampling=SamplingConfig(temperature=2.0, seed=5))
    results = generate(model, prompts, v, cfg, on_frame=events.append)
    for r, (p, g) in enumerate(zip(prompts, results)):
        mine = [e for e in events if e.row == r]
        assert len(mine) == g.audio_frames
        # Frames re-read from the finished sequence match the streamed ones: span -1 is the prompt's
        # open span, generated spans count from 0, frame indices count from the span's start.
        seq = list(p) + g.tokens
        gen_start, opened, span_idx, start, expected = len(p), -1, -1, None, []
        for i, t in enumerate(seq):
            if t == v.audio_start_id:
                start = i + 1
                if i >= gen_start:
                    opened += 1
                span_idx = opened if i >= gen_start else -1
            elif t == v.audio_end_id:
                start = None
            elif start is not None and i >= gen_start and (i - start + 1) % v.num_codebooks == 0:
                frame = (i - start + 1) // v.num_codebooks - 1
                ids = np.asarray(seq[i - v.num_codebooks + 1 : i + 1])
                expected.append((span_idx, frame, v.ids_to_codes(ids)[:, 0].tolist()))
        assert [(e.span, e.frame, e.codes.tolist()) for e in mine] == expected


def test_constraint_prompt_validation(vocab):
    v = vocab
    c = ModalityConstraints(v)
    bad = [v.bos_id, v.audio_start_id, v.audio_id(1, 0)]  # codebook 1 where codebook 0 is due
    with pytest.raises(PromptStateError, match="codebook order"):
        c.initial_state([bad])
    with pytest.raises(PromptStateError, match="non-audio"):
        c.initial_state([[v.bos_id, v.audio_start_id, 5]])
    with pytest.raises(ValueError, match="smaller than the layout"):
        ModalityConstraints(v, model_vocab_size=v.size - 1)


def test_prompt_longer_than_the_model_is_refused(vocab):
    m = tiny_model(vocab.size, max_seq_len=32)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(m, [[vocab.bos_id] * 20], vocab, GenerationConfig(max_new_tokens=20))


def test_span_plan_and_text_cap_hold_the_task_format(vocab):
    # The silent model prefers text id 0 forever inside a text span and never closes it.
    v = vocab
    m = silent_model(v)
    prompt = [v.bos_id, v.audio_start_id, *_audio(v, 2, 0), v.audio_end_id, v.text_start_id]
    free = generate(m, [prompt], v, GenerationConfig(max_new_tokens=30))[0]
    assert v.text_end_id not in free.tokens  # the failure mode: a text span that never ends
    cfg = GenerationConfig(max_new_tokens=60, stop_ids=(v.audio_end_id,), span_plan=("text", "text", "audio"),
                           max_text_tokens=3)
    g = generate(m, [prompt], v, cfg)[0]
    k = v.num_codebooks
    t0 = 0  # lowest allowed text id in a text span (BOS=1 and EOS=2 are not allowed there)
    expected = [t0] * 3 + [v.text_end_id, v.text_start_id] + [t0] * 3 + [v.text_end_id, v.audio_start_id]
    assert g.tokens[: len(expected)] == expected
    body = g.tokens[len(expected) :]
    assert g.stop_reason == STOP_BUDGET and body[-1] == v.audio_end_id and (len(body) - 1) % k == 0
    # A forced <|text_end|> that is also a stop id is reported as the cap, not as the model's stop.
    asr = generate(m, [prompt], v, GenerationConfig(max_new_tokens=20, stop_ids=(v.text_end_id,), max_text_tokens=4))[0]
    assert asr.tokens == [t0] * 4 + [v.text_end_id] and asr.stop_reason == "max_text_tokens"
    # After the plan only EOS may follow.
    done = generate(m, [prompt], v, GenerationConfig(max_new_tokens=40, span_plan=("text",), max_text_tokens=2))[0]
    assert done.tokens[:4] == [t0, t0, v.text_end_id, v.eos_id]
    with pytest.raises(ValueError, match="span plan"):
        generate(m, [prompt], v, GenerationConfig(span_plan=("video",)))


def test_weights_in_huge_pages_give_identical_decoding(vocab):
    from sodakit.generate.memory import hugepages_available, weights_to_hugepages

    if not hugepages_available():
        pytest.skip("transparent huge pages are disabled on this machine")
    m = tiny_model(vocab.size + 9000)  # LM head and embeddings over 2 MiB: they move
    prompts = _prompts(vocab)
    cfg = GenerationConfig(max_new_tokens=12, sampling=SamplingConfig(temperature=1.0, seed=2))
    before = [g.tokens for g in generate(m, prompts, vocab, cfg)]
    ptr = m.lm_head.weight.data_ptr()
    assert weights_to_hugepages(m) == 2
    assert m.lm_head.weight.data_ptr() != ptr and m.lm_head.weight.data_ptr() % (2 << 20) == 0
    assert [g.tokens for g in generate(m, prompts, vocab, cfg)] == before
