"""Whisper / WavLM judges: loading from a local directory and the plumbing (random-init models, so
accuracy is not the point; agreement with a direct transformers call is)."""

import numpy as np
import pytest
import torch

from sodakit.eval.judges import make_asr_judge, make_speaker_judge


def _noise(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def test_whisper_judge_matches_direct_transformers(tiny_whisper_dir):
    from transformers import AutoProcessor, WhisperForConditionalGeneration

    judge = make_asr_judge(f"whisper:{tiny_whisper_dir}")
    assert judge.comparable_to_paper is False  # not whisper-large-v3
    assert judge.describe()["device"] == "cpu"  # the evaluated model's device is passed on; CPU by default
    wavs24 = [_noise(24_000, 0), _noise(12_000, 1), _noise(30_000, 2)]
    hyps = judge.transcribe(wavs24, 24_000)
    assert len(hyps) == 3 and all(isinstance(h, str) for h in hyps)

    # Direct call on the same 16 kHz audio, one clip at a time.
    import soxr

    proc = AutoProcessor.from_pretrained(tiny_whisper_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    for wav, hyp in zip(wavs24, hyps):
        x = soxr.resample(wav, 24_000, 16_000, quality="HQ").astype(np.float32)
        f = proc.feature_extractor(x, sampling_rate=16_000, return_tensors="pt", return_attention_mask=True)
        with torch.no_grad():
            ids = model.generate(f.input_features, attention_mask=f.attention_mask, language="en",
                                 task="transcribe", max_new_tokens=20)
        assert proc.batch_decode(ids, skip_special_tokens=True)[0].strip() == hyp


def test_whisper_judge_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        make_asr_judge(f"whisper:{tmp_path}")
    with pytest.raises(ValueError, match="needs a local model directory"):
        make_asr_judge("whisper")


def test_wavlm_judge_embeddings_and_similarity(tiny_wavlm_dir):
    from transformers import AutoFeatureExtractor, WavLMForXVector

    judge = make_speaker_judge(f"wavlm:{tiny_wavlm_dir}", device="cpu")
    assert judge.describe()["device"] == "cpu"
    a, b = _noise(16_000, 3), _noise(20_000, 4)
    emb = judge.embed([a, b], 16_000)
    assert emb.shape == (2, 12)
    fe = AutoFeatureExtractor.from_pretrained(tiny_wavlm_dir)
    model = WavLMForXVector.from_pretrained(tiny_wavlm_dir).eval()
    with torch.no_grad():
        direct = model(input_values=fe(a, sampling_rate=16_000, return_tensors="pt").input_values).embeddings[0]
    np.testing.assert_allclose(emb[0], direct.numpy(), rtol=1e-5, atol=1e-6)
    sims = judge.similarity([a, a], [a, b], 16_000)
    assert sims[0] == pytest.approx(1.0, abs=1e-6)
    cos = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    assert sims[1] == pytest.approx(cos, abs=1e-6)
    with pytest.raises(ValueError, match=r"waveform 0: .* too short"):
        judge.embed([np.zeros(10, np.float32)], 16_000)
