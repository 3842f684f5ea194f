from __future__ import annotations

import json

import numpy as np
import pytest

from sodakit.data.segments import CodecInfo, Segment, SegmentManifest, write_segment_shard
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe

WORDS = "the quick brown fox jumps over a lazy dog while seven tired cats sleep under warm blankets".split()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    text = train_bpe([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20, vocab_size=400)
    SodaTokenizer(text).with_audio_layout(8, 2048).save_pretrained(d)
    return d


def make_segments_dir(path, n_recordings=12, per_recording=3, seed=0, shards=2, split_recording=False):
    """A `sodakit tokenize`-shaped directory with random codes."""
    rng = np.random.default_rng(seed)
    segs = []
    for r in range(n_recordings):
        for s in range(per_recording):
            words = " ".join(rng.choice(WORDS, size=rng.integers(2, 8)))
            codes = rng.integers(0, 2048, (8, int(rng.integers(3, 25))))
            segs.append(Segment(f"rec{r}-{s}", f"rec{r}", 2.0 * s, 2.0 * s + 1.5, words, codes, f"spk{r % 3}"))
    # Shuffle segment order inside recordings to prove pack orders by time.
    per_shard = int(np.ceil(n_recordings / shards)) * per_recording
    chunks = [segs[i : i + per_shard] for i in range(0, len(segs), per_shard)]
    if split_recording and len(chunks) > 1:  # move one segment of the last recording of shard 0 to shard 1
        chunks[1].insert(0, chunks[0].pop())
    infos = [write_segment_shard(path / f"segments-{i:05d}.parquet", chunk[::-1]) for i, chunk in enumerate(chunks)]
    SegmentManifest(CodecInfo("random", "0" * 8, 24000, 12.5, 8, 2048), infos).save(path)
    return segs


@pytest.fixture()
def segments_dir(tmp_path):
    d = tmp_path / "segments"
    d.mkdir()
    make_segments_dir(d)
    return d


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def make_segments():
    return make_segments_dir
