"""The SODA authors' data formats: yodas2-mm subshard JSON -> segments -> the same documents their
converter builds, and the fixed Emilia release's whitespace rule as a segment-reader option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sodakit.data.pack import PackConfig, pack
from sodakit.data.packed import PackedDataset
from sodakit.data.segments import (
    CodecInfo,
    Segment,
    SegmentFormatError,
    SegmentManifest,
    fix_text,
    read_segment_shard,
    read_segments_dir,
    write_segment_shard,
)
from sodakit.data.yodas2_mm import parse_chunk_id, read_yodas2_mm
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import AUDIO_END, AUDIO_START, BOS_TEXT, EOS_TEXT, TEXT_END, TEXT_START

from .test_pack import all_documents

MIMI = CodecInfo("mimi", "abcd1234", 24000, 12.5, 8, 2048)


def _codes(rng, frames, books=32):
    return rng.integers(0, 2048, (books, frames)).tolist()


def _subshard(path, rng):
    docs = [
        {"audio_id": "Y6-5x_9PNO8",  # an audio id with hyphens, as YouTube ids have
         "text": {"Y6-5x_9PNO8-00000-00000112-00000452": "hello there",
                  "Y6-5x_9PNO8-00001-00000460-00000460": "zero length, never encoded",
                  "Y6-5x_9PNO8-00002-00000500-00000725": "general kenobi"},
         "codes": {"Y6-5x_9PNO8-00000-00000112-00000452": _codes(rng, 5),
                   "Y6-5x_9PNO8-00002-00000500-00000725": _codes(rng, 3)}},
        {"audio_id": "noCodes", "text": {"noCodes-00000-00000000-00000100": "x"}},
        {"audio_id": "b", "text": {"b-00000-00000000-00000200": "only one", "b-00001-00000200-00000300": "empty"},
         "codes": {"b-00000-00000000-00000200": _codes(rng, 2), "b-00001-00000200-00000300": []}},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(docs))
    return docs


def test_chunk_ids_parse_from_the_right():
    assert parse_chunk_id("Y6-5x_9PNO8-00002-00000500-00000725") == ("Y6-5x_9PNO8", 2, 5.0, 7.25)
    with pytest.raises(ValueError, match="chunk id"):
        parse_chunk_id("nonsense")


def test_yodas2_mm_subshard_to_segments(tmp_path):
    rng = np.random.default_rng(0)
    docs = _subshard(tmp_path / "en000" / "00000000.json", rng)
    segs, skipped = read_yodas2_mm(tmp_path / "en000" / "00000000.json")
    assert [s.id for s in segs] == ["Y6-5x_9PNO8-00000-00000112-00000452", "Y6-5x_9PNO8-00002-00000500-00000725",
                                    "b-00000-00000000-00000200"]
    first = segs[0]
    assert (first.recording_id, first.start, first.end, first.text) == ("Y6-5x_9PNO8", 1.12, 4.52, "hello there")
    assert first.codes.shape == (8, 5)  # SODA keeps the first 8 of Mimi's 32 codebooks
    assert np.array_equal(first.codes, np.asarray(docs[0]["codes"]["Y6-5x_9PNO8-00000-00000112-00000452"])[:8])
    assert [s.reason for s in skipped] == ["chunk has no codes", "recording has no codes", "chunk has empty codes"]
    (tmp_path / "bad.json").write_text(json.dumps({"audio_id": "x"}))
    with pytest.raises(SegmentFormatError, match="JSON array"):
        read_yodas2_mm(tmp_path / "bad.json")


def test_imported_yodas2_mm_packs_to_the_authors_documents(tmp_path, tokenizer_dir):
    from sodakit.cli import main as cli_main

    def main(argv):
        return cli_main(["import-codes", *argv])

    rng = np.random.default_rng(1)
    docs = _subshard(tmp_path / "in" / "en000" / "00000000.json", rng)
    seg_dir = tmp_path / "seg"
    ref = tmp_path / "ref"
    SegmentManifest(MIMI, [write_segment_shard(ref / "segments-00000.parquet", [])]).save(ref)
    assert main(["yodas2-mm", str(tmp_path / "in"), "--output", str(seg_dir), "--codec-from", str(ref)]) == 0
    manifest, segs = read_segments_dir(seg_dir)
    assert manifest.codec.name == "mimi" and len(list(segs)) == 3 and manifest.extra["skipped"] == 3
    assert main(["yodas2-mm", str(tmp_path / "in"), "--output", str(seg_dir), "--codec-from", str(ref)]) == 2
    pack(PackConfig(inputs=[str(seg_dir)], output=str(tmp_path / "p"), tokenizer=str(tokenizer_dir)), progress=False)
    # The authors' converter: per recording, chunks in text order, codes[:8] as PUA characters.
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    expected = []
    for d in (docs[0], docs[2]):
        chunks = [(t, tok.vocab.codes_to_pua(np.asarray(d["codes"][c])[:8])) for c, t in d["text"].items()
                  if d["codes"].get(c)]
        type1 = "".join(f"{TEXT_START}{t}{TEXT_END}{AUDIO_START}{a}{AUDIO_END}" for t, a in chunks)
        type2 = "".join(f"{AUDIO_START}{a}{AUDIO_END}{TEXT_START}{t}{TEXT_END}" for t, a in chunks)
        expected += [tok.encode(BOS_TEXT + s + EOS_TEXT, add_bos=False).tolist() for s in (type1, type2)]
    assert all_documents(PackedDataset(tmp_path / "p")) == expected


@pytest.mark.parametrize("raw, fixed", [(" Hello there ", "Hello there"), ("  two  ", " two "), (" ", ""),
                                        ("no spaces", "no spaces"), ("", "")])
def test_emilia_fix_removes_one_space_at_each_end(raw, fixed):
    assert fix_text(raw, "emilia") == fixed
    # the same as the release's rule on the document string
    doc = f"{TEXT_START}{raw}{TEXT_END}"
    assert doc.replace(f"{TEXT_START} ", TEXT_START).replace(f" {TEXT_END}", TEXT_END) == f"{TEXT_START}{fixed}{TEXT_END}"


def test_segment_reader_and_pack_apply_the_emilia_fix(tmp_path, tokenizer_dir):
    seg = Segment("r-0", "r", 0.0, 1.0, " the quick fox ", np.zeros((8, 2), np.int64))
    info = write_segment_shard(tmp_path / "s" / "segments-00000.parquet", [seg])
    SegmentManifest(MIMI, [info]).save(tmp_path / "s")
    assert next(read_segment_shard(tmp_path / "s" / "segments-00000.parquet")).text == " the quick fox "
    assert next(read_segments_dir(tmp_path / "s", text_fix="emilia")[1]).text == "the quick fox"
    with pytest.raises(ValueError, match="text_fix"):
        read_segments_dir(tmp_path / "s", text_fix="trim")
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    for rule, text in (("none", " the quick fox "), ("emilia", "the quick fox")):
        out = tmp_path / f"p_{rule}"
        pack(PackConfig(inputs=[str(tmp_path / "s")], output=str(out), tokenizer=str(tokenizer_dir),
                        formats=["text_first"], segment_text_fix=rule), progress=False)
        assert all_documents(PackedDataset(out))[0][2:-1][: len(tok.encode_texts([text])[0])] == tok.encode_texts([text])[0]
