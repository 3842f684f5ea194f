from __future__ import annotations

import numpy as np
import pytest
import torch

from sodakit.tokens.vocab import AudioSpanError, Vocab


def test_soda_layout_matches_spec_section_3():
    v = Vocab.soda()
    assert v.size == 144_644
    assert (v.bos_id, v.eos_id) == (128_000, 128_001)
    assert (v.text_start_id, v.text_end_id, v.audio_start_id, v.audio_end_id) == (128_256, 128_257, 128_258, 128_259)
    assert v.audio_id(0, 0) == 128_260 and v.audio_id(0, 2047) == 130_307  # semantic codebook
    assert v.audio_id(1, 0) == 130_308 and v.audio_id(7, 2047) == 144_643  # acoustic codebooks
    assert v.codebook_range(3) == (128_260 + 3 * 2048, 128_260 + 4 * 2048)


def test_fingerprint_tracks_layout():
    assert Vocab.soda().fingerprint == Vocab().fingerprint
    assert Vocab.soda().fingerprint != Vocab(num_codebooks=4).fingerprint
    assert Vocab.from_dict(Vocab(text_vocab_size=500, bos_id=0, eos_id=1).to_dict()) == Vocab(text_vocab_size=500, bos_id=0, eos_id=1)


def test_codes_ids_pua_round_trip_frame_major():
    v = Vocab.soda()
    codes = np.random.default_rng(0).integers(0, 2048, (8, 13))
    ids = v.codes_to_ids(codes)
    assert ids.dtype == np.uint32 and ids.shape == (104,)
    # frame-major: cb0(t), cb1(t), ..., cb7(t), cb0(t+1)
    assert ids[0] == 128_260 + codes[0, 0] and ids[1] == 130_308 + codes[1, 0] and ids[8] == 128_260 + codes[0, 1]
    np.testing.assert_array_equal(v.ids_to_codes(ids), codes)
    s = v.codes_to_pua(codes)
    assert len(s) == 104 and s[0] == chr(0xE000 + codes[0, 0]) and s[1] == chr(0xE000 + 2048 + codes[1, 0])
    np.testing.assert_array_equal(v.pua_to_codes(s), codes)
    np.testing.assert_array_equal(v.pua_to_ids(s), ids)
    assert v.ids_to_pua(ids) == s


def test_vectorised_predicates_accept_torch():
    v = Vocab.soda()
    ids = torch.tensor([5, 128_000, 128_257, 128_260, 130_308, 144_643])
    assert v.is_audio(ids).tolist() == [False, False, False, True, True, True]
    assert v.is_semantic(ids).tolist() == [False, False, False, True, False, False]
    assert v.is_marker(ids).tolist() == [False, False, True, False, False, False]
    assert v.codebook_of(ids[3:]).tolist() == [0, 1, 7]


def test_select_first_k_codebooks_reshapes_frames_by_codebooks():
    v = Vocab.soda()
    codes = np.arange(8 * 5).reshape(8, 5) % 2048  # codes[k, t] = 5k + t
    flat = v.codes_to_ids(codes)
    got = v.select_codebooks(flat, 2)
    np.testing.assert_array_equal(got, v.codes_to_ids(codes[:2]))
    # The published bug reshaped to (8, frames); that would give the first 2*5 tokens instead.
    assert not np.array_equal(got, flat[:10])
    np.testing.assert_array_equal(v.semantic_only(flat), v.codes_to_ids(codes[:1]))


def test_decoding_drops_partial_frame_and_handles_order_violations():
    v = Vocab.soda()
    codes = np.random.default_rng(1).integers(0, 2048, (8, 4))
    flat = v.codes_to_ids(codes)
    np.testing.assert_array_equal(v.ids_to_codes(flat[:-3]), codes[:, :3])
    broken = flat.copy()
    broken[9] = v.audio_id(5, 7)  # frame 1, position 1 should hold codebook 1
    with pytest.raises(AudioSpanError, match="frame 1 position 1 holds codebook 5"):
        v.ids_to_codes(broken)
    repaired = v.ids_to_codes(broken, on_error="repair")
    assert repaired.shape == (8, 4) and repaired[1, 1] == 0
    np.testing.assert_array_equal(np.delete(repaired.T.reshape(-1), 9), np.delete(codes.T.reshape(-1), 9))
    with pytest.raises(AudioSpanError, match="non-audio"):
        v.ids_to_codes(np.array([5, 6, 7, 8, 9, 10, 11, 12]))


def test_bad_codes_and_ids_rejected():
    v = Vocab.soda()
    with pytest.raises(ValueError, match="outside"):
        v.codes_to_ids(np.full((8, 2), 2048))
    with pytest.raises(ValueError, match=r"\[K, T\]"):
        v.codes_to_ids(np.zeros((9, 2), int))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.check_ids(np.array([0, 144_644]), "x")
    with pytest.raises(ValueError, match="not an audio PUA string"):
        v.pua_to_ids("a\ue000")
