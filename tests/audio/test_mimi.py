"""Mimi through transformers.MimiModel, built small with random weights and saved with save_pretrained,
then loaded through `load_codec`, the same path users take with a downloaded kyutai/mimi."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sodakit.audio.codec import CodecError
from sodakit.audio.mimi import MimiCodec
from sodakit.audio.registry import load_codec


@pytest.fixture(scope="module")
def mimi_dir(tmp_path_factory, small_mimi):
    return small_mimi(tmp_path_factory.mktemp("mimi"))


@pytest.fixture(scope="module")
def codec(mimi_dir):
    return load_codec(mimi_dir, device="cpu")


def _noise(n, seed):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_loaded_through_user_path(codec, mimi_dir):
    assert isinstance(codec, MimiCodec)
    info = codec.info()
    assert (info.name, info.sample_rate, info.frame_rate, info.num_codebooks, info.codebook_size) == (
        "mimi", 24000, 12.5, 8, 2048,
    )
    assert info.semantic_codebooks == [0] and info.source == str(mimi_dir)
    assert codec.samples_per_frame == 1920 and codec.bitrate() == 1100.0
    # The hash identifies the weights: a second load agrees, another random init does not.
    assert load_codec(mimi_dir, device="cpu").config_hash == codec.config_hash


def test_hash_changes_with_weights_and_codebooks(codec, mimi_dir, tmp_path, small_mimi):
    other = load_codec(small_mimi(tmp_path / "other", seed=1), device="cpu")
    assert other.config_hash != codec.config_hash
    assert load_codec(mimi_dir, device="cpu", num_codebooks=4).config_hash != codec.config_hash


def test_batched_equals_one_by_one_with_exact_frames(codec):
    lengths = [24000 * 3 + 7, 1920 * 5, 1000, 1920, 24000 * 2 + 1919]
    waves = [_noise(n, i) for i, n in enumerate(lengths)]
    codes, frames = codec.encode(waves)
    assert frames.tolist() == [math.ceil(n / 1920) for n in lengths]
    assert codes.shape == (5, 8, max(frames)) and codes.dtype == torch.long
    for i, w in enumerate(waves):
        single, f = codec.encode([w])
        assert f.item() == frames[i]
        assert torch.equal(single[0, :, : f.item()], codes[i, :, : frames[i]])
        assert (codes[i, :, frames[i] :] == 0).all()
    # A padded [B, T] tensor with lengths gives the same codes, whatever garbage lies in the padding.
    padded = torch.randn(len(waves), max(lengths))
    for i, w in enumerate(waves):
        padded[i, : len(w)] = torch.from_numpy(w)
    codes2, frames2 = codec.encode(padded, torch.tensor(lengths))
    assert torch.equal(codes2, codes) and torch.equal(frames2, frames)


def test_long_clips_are_chunked_at_60s(codec):
    n = 24000 * 61 + 5
    wav = _noise(n, 7)
    codes, frames = codec.encode([wav])
    assert frames.item() == math.ceil(n / 1920) == 763
    head, _ = codec.encode([wav[: 24000 * 60]])
    tail, _ = codec.encode([wav[24000 * 60 :]])
    assert torch.equal(codes[0], torch.cat([head[0], tail[0]], dim=1))


def test_decode_lengths_and_batch_agreement(codec):
    codes, frames = codec.encode([_noise(5000, 1), _noise(30000, 2)])
    out = codec.decode(codes, frames)
    assert [len(w) for w in out] == [f * 1920 for f in frames.tolist()]
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in out)
    alone = codec.decode(codes[0, :, : frames[0]])
    np.testing.assert_allclose(alone[0], out[0], atol=1e-5)


def test_encode_audio_resamples_and_mixes(codec):
    stereo16k = np.stack([_noise(16000, 3), _noise(16000, 4)], axis=1)
    (codes,) = codec.encode_audio([stereo16k], sample_rate=16000)
    assert codes.shape == (8, math.ceil(24000 / 1920))


def test_bad_inputs(codec):
    with pytest.raises(CodecError, match="empty"):
        codec.encode([np.zeros(0, np.float32)])
    with pytest.raises(CodecError, match="mono"):
        codec.encode(torch.zeros(2, 2, 100))
    with pytest.raises(CodecError, match="outside"):
        codec.decode(torch.full((1, 8, 3), 2048))
    with pytest.raises(CodecError, match="expected codes"):
        codec.decode(torch.zeros(1, 7, 3, dtype=torch.long))


def test_missing_models_say_how_to_get_them(tmp_path, monkeypatch, small_mimi):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CodecError, match="huggingface-cli download kyutai/mimi"):
        load_codec("kyutai/mimi-not-cached-here")
    with pytest.raises(CodecError, match="no such codec directory"):
        load_codec(tmp_path / "nope" / "mimi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match="not a codec directory"):
        load_codec(tmp_path / "empty")
    with pytest.raises(CodecError, match="float16 is not supported on CPU"):
        load_codec(small_mimi(tmp_path / "m"), device="cpu", dtype="float16")


def test_bfloat16_runs_on_cpu(mimi_dir):
    codec = load_codec(mimi_dir, device="cpu", dtype="bfloat16")
    codes, frames = codec.encode([_noise(4000, 0)])
    assert codes.shape == (1, 8, 3) and frames.tolist() == [3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_codes_mostly(mimi_dir, codec):
    gpu = load_codec(mimi_dir, device="cuda")
    waves = [_noise(24000, 0), _noise(9000, 1)]
    a, fa = codec.encode(waves)
    b, fb = gpu.encode(waves)
    assert torch.equal(fa, fb)
    # GPU kernels (TF32 convolutions, other reduction orders) flip a few near-tie nearest-centroid choices.
    assert (a == b).float().mean() > 0.8
