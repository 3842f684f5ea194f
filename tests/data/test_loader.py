from __future__ import annotations

import numpy as np
import pytest

from sodakit.data.loader import MixtureLoader, feistel_permute, segment_ids, sequential_batches
from sodakit.data.pack import PackConfig, pack
from sodakit.data.packed import PackedDataError, PackedDataset
from sodakit.tokens.vocab import Vocab


@pytest.fixture()
def mixture(tmp_path, segments_dir, tokenizer_dir):
    speech, text = tmp_path / "speech", tmp_path / "text"
    pack(PackConfig(inputs=[str(segments_dir)], output=str(speech), tokenizer=str(tokenizer_dir), shard_tokens=3000), progress=False)
    (tmp_path / "c.txt").write_text("\n".join(f"the lazy dog number {i} sleeps under warm blankets" for i in range(300)))
    pack(PackConfig(kind="text", inputs=[str(tmp_path / "c.txt")], output=str(text), tokenizer=str(tokenizer_dir),
                    vocab_from=str(speech)), progress=False)
    return speech, text


def test_feistel_is_a_permutation_and_keyed():
    for n in (1, 2, 7, 100, 1000, 4097):
        p = feistel_permute(np.arange(n), n, key=123)
        assert sorted(p.tolist()) == list(range(n))
    a, b = feistel_permute(np.arange(1000), 1000, 1), feistel_permute(np.arange(1000), 1000, 2)
    assert (a != b).mean() > 0.9 and (a != np.arange(1000)).mean() > 0.9


def test_windows_are_real_slices_and_deterministic(mixture):
    speech, _ = mixture
    ds = PackedDataset(speech)
    loader = MixtureLoader([(speech, 1.0)], seq_len=32, seed=3)
    tokens = loader.next_batch(8)["tokens"].numpy()
    assert tokens.shape == (8, 33)
    _, windows = MixtureLoader([(speech, 1.0)], seq_len=32, seed=3).locate(np.arange(8))
    for row, w in zip(tokens, windows):
        np.testing.assert_array_equal(row, ds.read(int(w) * 32, 33))
    again = MixtureLoader([(speech, 1.0)], seq_len=32, seed=3).next_batch(8)["tokens"].numpy()
    other = MixtureLoader([(speech, 1.0)], seq_len=32, seed=4).next_batch(8)["tokens"].numpy()
    np.testing.assert_array_equal(tokens, again)
    assert not np.array_equal(tokens, other)


def test_every_window_once_per_epoch(mixture):
    speech, _ = mixture
    loader = MixtureLoader([(speech, 1.0)], seq_len=16, seed=0)
    n = int(loader.n_windows[0])
    _, w = loader.locate(np.arange(2 * n))
    assert sorted(w[:n].tolist()) == list(range(n)) and sorted(w[n:].tolist()) == list(range(n))
    assert w[:n].tolist() != w[n:].tolist()  # a fresh order each epoch


def test_mixture_proportions_are_exact_per_block(mixture):
    speech, text = mixture
    loader = MixtureLoader([(speech, 0.95), (text, 0.05)], seq_len=16, seed=0)
    ds, _ = loader.locate(np.arange(20_000))
    assert np.bincount(ds).tolist() == [19_000, 1_000]
    assert 0.03 < (ds[:1000] == 1).mean() < 0.07  # interleaved, not clumped


def test_state_resume_is_exact(mixture):
    speech, text = mixture
    src = [(speech, 0.9), (text, 0.1)]
    a = MixtureLoader(src, seq_len=16, seed=5)
    for _ in range(3):
        a.next_batch(4)
    state = a.state_dict()
    expected = [a.next_batch(4)["tokens"] for _ in range(3)]
    b = MixtureLoader(src, seq_len=16, seed=5)
    b.load_state_dict(state)
    for e in expected:
        assert (b.next_batch(4)["tokens"] == e).all()
    with pytest.raises(ValueError, match="seed"):
        MixtureLoader(src, seq_len=16, seed=6).load_state_dict(state)


def test_ranks_are_disjoint_and_form_the_global_batch(mixture):
    speech, text = mixture
    src = [(speech, 0.8), (text, 0.2)]
    single = MixtureLoader(src, seq_len=16, seed=1)
    ranks = [MixtureLoader(src, seq_len=16, seed=1, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        whole = single.next_batch(6)["tokens"]
        parts = [r.next_batch(3)["tokens"] for r in ranks]
        assert (whole[:3] == parts[0]).all() and (whole[3:] == parts[1]).all()


def test_segment_ids_follow_bos(mixture):
    speech, _ = mixture
    loader = MixtureLoader([(speech, 1.0)], seq_len=64, seed=0, return_segment_ids=True)
    batch = loader.next_batch(4)
    bos = loader.vocab.bos_id
    seg, tok = batch["segment_ids"].numpy(), batch["tokens"].numpy()
    np.testing.assert_array_equal(seg, segment_ids(tok, bos))
    starts = np.argwhere(tok == bos)
    assert len(starts) > 0
    for r, c in starts:
        assert c == 0 or seg[r, c] == seg[r, c - 1] + 1


def test_sequential_batches_cover_the_dataset_in_order(mixture):
    speech, _ = mixture
    ds = PackedDataset(speech)
    batches = list(sequential_batches(speech, 32, 5))
    rows = np.concatenate([b["tokens"].numpy() for b in batches])
    assert len(rows) == ds.num_windows(32)
    np.testing.assert_array_equal(rows[:, :-1].reshape(-1), ds.read(0, len(rows) * 32))


def test_refusals(mixture, tmp_path):
    speech, text = mixture
    with pytest.raises(PackedDataError, match="differs from the expected"):
        MixtureLoader([(speech, 1.0)], expected_vocab=Vocab.soda(), seq_len=16)
    with pytest.raises(PackedDataError, match="packed dataset directory does not exist"):
        MixtureLoader([(speech, 0.5), (tmp_path / "nope", 0.5)], seq_len=16)
    with pytest.raises(PackedDataError, match="weight"):
        MixtureLoader([(speech, 0.0)], seq_len=16)
    with pytest.raises(PackedDataError, match="less than one window"):
        MixtureLoader([(text, 1.0)], seq_len=10**7)
