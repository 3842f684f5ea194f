"""The offline codec: fit, Mimi-shaped codes, exact frame counts, batch independence, persistence,
and a decoded waveform the ASR judge can still read."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from sodakit.audio.codec import CodecError
from sodakit.audio.offline_codec import OfflineCodec, OfflineCodecConfig, default_group_sizes
from sodakit.audio.registry import load_codec

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]


@pytest.fixture(scope="module")
def speech():
    from sodakit.audio.synth import synthesize

    return [synthesize(s, v, 16000) for v in ("flite:slt", "flite:rms", "flite:awb") for s in SENTENCES]


@pytest.fixture(scope="module")
def codec(speech):
    # Small codebooks keep the fit instant; the shape logic is the same as the 8 x 2048 default.
    return OfflineCodec.fit(speech, OfflineCodecConfig(codebook_size=128, kmeans_iters=6))


def test_defaults_are_mimi_shaped():
    cfg = OfflineCodecConfig()
    assert (cfg.frame_rate, cfg.num_codebooks, cfg.codebook_size) == (12.5, 8, 2048)
    assert cfg.samples_per_frame == 1280 and cfg.hop == 160
    groups = cfg.resolved_groups()
    assert len(groups) == 7 and groups[0] == [0] and sum(len(g) for g in groups) == cfg.num_cepstra
    assert default_group_sizes(3, 20) == [2, 4, 14]


def test_codes_frames_and_batch_independence(codec, speech):
    lengths = [len(w) for w in speech[:5]] + [100]
    waves = [*speech[:5], speech[0][:100]]
    codes, frames = codec.encode(waves)
    assert frames.tolist() == [math.ceil(n / 1280) for n in lengths]
    assert codes.shape == (6, 8, max(frames)) and int(codes.max()) < 128
    for i, w in enumerate(waves):
        one, f = codec.encode([w])
        assert torch.equal(one[0, :, : f.item()], codes[i, :, : frames[i]])
    # Codebook 0 is the content codebook, the rest the acoustic residual.
    info = codec.info()
    assert info.semantic_codebooks == [0] and info.name == "sodakit-offline" and info.sample_rate == 16000


def test_decode_lengths_and_determinism(codec, speech):
    codes, frames = codec.encode(speech[:2])
    a = codec.decode(codes, frames)
    b = codec.decode(codes[1:2, :, : frames[1]])
    assert [len(x) for x in a] == [f * 1280 for f in frames.tolist()]
    np.testing.assert_array_equal(a[1], b[0])
    assert all(np.isfinite(x).all() and np.abs(x).max() > 0.01 for x in a)


def test_fit_is_deterministic_and_saved_with_hash(codec, speech, tmp_path):
    again = OfflineCodec.fit(speech, OfflineCodecConfig(codebook_size=128, kmeans_iters=6))
    assert again.config_hash == codec.config_hash
    codec.save(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["codec.safetensors", "sodakit_codec.json"]
    loaded = load_codec(tmp_path / "c")
    assert isinstance(loaded, OfflineCodec) and loaded.config_hash == codec.config_hash
    assert torch.equal(loaded.encode(speech[:2])[0], codec.encode(speech[:2])[0])
    meta = json.loads((tmp_path / "c" / "sodakit_codec.json").read_text())
    assert meta["fit"]["utterances"] == len(speech) and meta["info"]["codebook_size"] == 128
    with pytest.raises(CodecError, match="8 codebooks, not 4"):
        load_codec(tmp_path / "c", num_codebooks=4)
    # A changed weights file is caught by the recorded hash.
    other = OfflineCodec.fit(speech[:4], OfflineCodecConfig(codebook_size=128, kmeans_iters=6))
    other.save(tmp_path / "o")
    shutil.copy(tmp_path / "o" / "codec.safetensors", tmp_path / "c" / "codec.safetensors")
    with pytest.raises(CodecError, match="config hash"):
        load_codec(tmp_path / "c")


def test_configurable_codebooks(speech):
    small = OfflineCodec.fit(speech[:6], OfflineCodecConfig(num_codebooks=3, codebook_size=32, kmeans_iters=3))
    codes, frames = small.encode(speech[:2])
    assert codes.shape[1] == 3 and int(codes.max()) < 32 and small.bitrate() == 12.5 * 3 * 5
    assert len(small.decode(codes, frames)) == 2
    with pytest.raises(CodecError, match="group_sizes"):
        OfflineCodec.fit(speech[:2], OfflineCodecConfig(num_codebooks=3, group_sizes=[1, 2, 3]))


def test_resynthesis_stays_intelligible(codec, speech):
    """The ASR judge reads the decoded audio about as well as the original (in-domain, small codec)."""
    from sodakit.eval.judges.asr_pocketsphinx import PocketSphinxASR
    from sodakit.eval.metrics import wer

    asr = PocketSphinxASR()
    refs, waves = SENTENCES[:4], speech[6:10]  # rms voice
    codes = codec.encode_audio(waves, 16000)
    resyn = [codec.decode(c)[0] for c in codes]
    w_orig = wer(refs, asr.transcribe(waves, 16000))
    w_resyn = wer(refs, asr.transcribe(resyn, 16000))
    assert w_resyn <= w_orig + 0.35, (w_orig, w_resyn)
    # Sanity of the judge itself: noise with the same loudness is not understood.
    noise = [np.random.default_rng(0).standard_normal(len(w)).astype(np.float32) * float(w.std()) for w in resyn[:2]]
    assert wer(refs[:2], asr.transcribe(noise, 16000)) > w_resyn + 0.3


def test_shipped_config_is_the_default():
    from pathlib import Path

    from sodakit.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "codec_offline.yaml"
    assert load_config(OfflineCodecConfig, path) == OfflineCodecConfig()
