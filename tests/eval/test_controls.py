"""Negative controls: the permuted-codebook codec wrapper, and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from sodakit.audio.codec import CodecError
from sodakit.audio.offline_codec import OfflineCodec, OfflineCodecConfig
from sodakit.eval.controls import PermutedCodebooks, cyclic_permutation
from sodakit.eval.metrics import bootstrap_ratio_ci


@pytest.fixture(scope="module")
def codec():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    waves = [(np.sin(2 * np.pi * f * t) * 0.3 + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
             for f in (150, 220, 330, 440)]
    return OfflineCodec.fit(waves, OfflineCodecConfig(codebook_size=8, kmeans_iters=2, fit_warps=[], griffin_lim_iters=2))


def test_permuted_codebooks_move_every_row_and_round_trip(codec):
    wav = np.sin(np.arange(8000) / 7).astype(np.float32) * 0.3
    real = codec.encode_audio([wav], 16000)[0]
    ctl = PermutedCodebooks(codec)
    moved = ctl.encode_audio([wav], 16000)[0]
    assert ctl.perm == cyclic_permutation(8) and all(p != k for k, p in enumerate(ctl.perm))
    np.testing.assert_array_equal(moved, real[ctl.perm])
    # the wrapper is lossless: its decode undoes its encode
    np.testing.assert_allclose(ctl.decode(moved)[0], codec.decode(real)[0])
    assert ctl.config_hash == codec.config_hash and "permuted" in ctl.info().name


def test_permutation_must_be_one(codec):
    with pytest.raises(CodecError, match="not a permutation"):
        PermutedCodebooks(codec, [0, 0, 1, 2, 3, 4, 5, 6])
    with pytest.raises(CodecError):
        cyclic_permutation(8, shift=8)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_items():
    few = bootstrap_ratio_ci([1, 0, 1, 1, 0, 1, 1, 1], [1] * 8)
    many = bootstrap_ratio_ci([1, 0, 1, 1, 0, 1, 1, 1] * 20, [1] * 160)
    assert few[0] <= 0.75 <= few[1] and many[0] <= 0.75 <= many[1]
    assert many[1] - many[0] < few[1] - few[0]
    assert bootstrap_ratio_ci([3, 0, 1], [5, 4, 2]) == bootstrap_ratio_ci([3, 0, 1], [5, 4, 2])  # seeded
    lo, hi = bootstrap_ratio_ci([3, 0, 1], [5, 4, 2])
    assert lo <= 4 / 11 <= hi
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([], [])


def test_wer_interval_holds_the_corpus_wer_and_follows_the_normalizer():
    from sodakit.eval.metrics import normalize_soda_asr, wer_ci95, wer_details

    refs = ["the cat sat", "a dog ran home", "birds fly", "we went there today"]
    hyps = ["the cat sat", "a dog run home", "", "we want there"]
    lo, hi = wer_ci95(refs, hyps)
    assert lo <= wer_details(refs, hyps).wer <= hi and lo < hi
    assert wer_ci95(refs, refs) == [0.0, 0.0]
    assert wer_ci95(["Cat."], ["cat"], normalize_soda_asr) == [0.0, 0.0]


def test_pair_tasks_report_an_interval_over_groups(tmp_path, tiny_tokenizer, toy_codec):
    from sodakit.eval.config import EvalConfig
    from sodakit.eval.layouts import SpokenPair, write_zr2021
    from sodakit.eval.tasks import EvalContext, get_task

    from .conftest import ConstantLM, LoudnessOracleLM, noise, tone

    pairs = [SpokenPair(id=str(i), voice=v, pos_wav=tone(0.1 + 0.02 * i, 0.5), neg_wav=noise(0.1, 0.003, i),
                        pos_text=f"cat{i}", neg_text=f"dog{i}") for i in range(3) for v in ("Alex", "Bruce")]
    write_zr2021(tmp_path, "lexical", pairs, 16_000)
    v = tiny_tokenizer.vocab
    oracle = EvalContext(lm=LoudnessOracleLM(v), tokenizer=tiny_tokenizer, codec=toy_codec, cfg=EvalConfig())
    m = get_task("swuggy").run(oracle, tmp_path).metrics
    assert m["accuracy_ci95"] == [1.0, 1.0] and m["pairs"] == 6 and m["groups"] == 3
    const = EvalContext(lm=ConstantLM(v.size), tokenizer=tiny_tokenizer, codec=toy_codec,
                        cfg=EvalConfig(protocol="sodakit"))
    assert get_task("swuggy").run(const, tmp_path).metrics["accuracy_ci95"] == [0.5, 0.5]


def test_control_is_an_eval_setting(toy_codec):
    from sodakit.config import ConfigError
    from sodakit.eval.config import EvalConfig
    from sodakit.eval.controls import with_control

    assert EvalConfig(control="permute-codebooks").settings()["control"] == "permute-codebooks"
    with pytest.raises(ConfigError, match="control must be one of none, permute-codebooks"):
        EvalConfig(control="shuffle")
    assert with_control(toy_codec, "none") is toy_codec and with_control(None, "permute-codebooks") is None
    wrapped = with_control(toy_codec, "permute-codebooks")
    assert isinstance(wrapped, PermutedCodebooks) and wrapped.inner is toy_codec
