"""Ids outside the vocabulary: refused when packing, and refused when a corrupt shard is served."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sodakit.data.loader import MixtureLoader, sequential_batches
from sodakit.data.pack import PackConfig, PackError, pack
from sodakit.data.packed import TOKEN_DTYPE, PackedDataError, PackedDataset
from sodakit.data.segments import CodecInfo, Segment, SegmentManifest, write_segment_shard
from sodakit.tokens.soda_tokenizer import SodaTokenizer


def corrupt_token(path, offset: int, value: int) -> None:
    """Overwrite one token in place: the shard keeps its size, so only its content is wrong."""
    data = bytearray(path.read_bytes())
    data[offset * 4 : offset * 4 + 4] = np.array([value], dtype=TOKEN_DTYPE).tobytes()
    path.write_bytes(bytes(data))


@pytest.fixture()
def corrupt_pack(tmp_path, segments_dir, tokenizer_dir):
    out = tmp_path / "speech"
    pack(PackConfig(inputs=[str(segments_dir)], output=str(out), tokenizer=str(tokenizer_dir), shard_tokens=3000), progress=False)
    assert len(PackedDataset(out).shards) >= 2
    size = PackedDataset(out).vocab.size
    corrupt_token(out / "tokens-00001.bin", 7, size + 5)
    return out, size


def expected_error(size: int) -> str:
    return (rf"tokens-00001\.bin: token id {size + 5} at token offset 7 \(byte 28\) is outside the vocabulary of "
            rf"size {size}: corrupt shard; open the dataset with verify_checksums=True")


def test_corrupt_shard_passes_the_size_check_but_not_the_loader(corrupt_pack):
    out, size = corrupt_pack
    ds = PackedDataset(out)  # same size: opening cannot tell
    n = ds.num_windows(32)
    with pytest.raises(PackedDataError, match=expected_error(size)):
        MixtureLoader([(out, 1.0)], seq_len=32).next_batch(n)  # one epoch: every window once
    with pytest.raises(PackedDataError, match=expected_error(size)):
        for _ in sequential_batches(out, 32, 4):
            pass
    with pytest.raises(PackedDataError, match="sha256 differs"):  # what the error message suggests
        PackedDataset(out, verify_checksums=True)


def test_corrupt_token_is_found_in_any_window_of_a_mixed_batch(corrupt_pack, tmp_path, tokenizer_dir):
    out, size = corrupt_pack
    (tmp_path / "c.txt").write_text("\n".join(f"the lazy dog number {i} sleeps" for i in range(300)))
    pack(PackConfig(kind="text", inputs=[str(tmp_path / "c.txt")], output=str(tmp_path / "text"),
                    tokenizer=str(tokenizer_dir), vocab_from=str(out)), progress=False)
    loader = MixtureLoader([(tmp_path / "text", 0.5), (out, 0.5)], seq_len=32, seed=3)
    with pytest.raises(PackedDataError, match=expected_error(size)):
        for _ in range(4 * int(loader.n_windows.sum())):
            loader.next_batch(16)


def write_two_codebook_segments(path) -> None:
    """A segment directory whose codec has 2 codebooks: packing against it gives a 2-codebook layout."""
    seg = Segment("r0-0", "r0", 0.0, 1.0, "the dog", np.zeros((2, 3), dtype=np.int64))
    info = write_segment_shard(path / "segments-00000.parquet", [seg])
    SegmentManifest(CodecInfo("random", "0" * 8, 24000, 12.5, 2, 2048), [info]).save(path)


def test_pack_refuses_ids_outside_the_layout_and_leaves_no_complete_dataset(tmp_path, tokenizer_dir):
    # The tokenizer is released-style with 8 codebooks of audio characters as added tokens; packed with
    # a 2-codebook layout, a codebook-5 character is not audio for the layout and the BPE turns it into
    # its added-token id, which lies beyond the 2-codebook vocabulary.
    refs = tmp_path / "two_books"
    refs.mkdir()
    write_two_codebook_segments(refs)
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    good = "<|audio_start|>" + tok.vocab.codes_to_pua(np.zeros((2, 4), dtype=np.int64)) + "<|audio_end|> the dog"
    bad = "the dog " + chr(0xE000 + 2048 * 5 + 3)
    rows = [good] * 20 + [bad] + [good] * 5
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = PackConfig(kind="soda", inputs=[str(tmp_path / "d.jsonl")], output=str(out), tokenizer=str(tokenizer_dir),
                     vocab_from=str(refs), shard_tokens=50, chunk_documents=4)
    bad_id = tok.vocab.audio_id(5, 3)
    two_book_size = tok.with_audio_layout(2, 2048).vocab.size
    with pytest.raises(PackError, match=rf"d\.jsonl item 20: ids outside the vocabulary \[0, {two_book_size}\): \[{bad_id}\];"
                                        rf".*2 codebooks of 2048"):
        pack(cfg, progress=False)
    assert not (out / "metadata.json").exists() and not list(out.glob(".*.tmp"))
    with pytest.raises(PackedDataError, match="no metadata.json"):
        PackedDataset(out)
    # the shards finished before the bad document hold only valid ids (progress to resume from)
    assert list(out.glob("tokens-*.bin"))
    for shard in out.glob("tokens-*.bin"):
        assert np.fromfile(shard, dtype=TOKEN_DTYPE).max() < two_book_size
