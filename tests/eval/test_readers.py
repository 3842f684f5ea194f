"""Readers of the real layouts: good items, and clear per-item errors for broken ones."""

import numpy as np
import pytest

from sodakit.eval.layouts import (
    SpokenPair,
    write_hf_pairs,
    write_librispeech,
    write_salmon_folder,
    write_seedtts,
    write_zr2021,
)
from sodakit.eval.readers.blimp import read_blimp
from sodakit.eval.readers.hellaswag import read_hellaswag
from sodakit.eval.readers.hf_parquet import read_hf_pairs
from sodakit.eval.readers.librispeech import read_librispeech
from sodakit.eval.readers.salmon import read_salmon
from sodakit.eval.readers.seedtts import read_seedtts
from sodakit.eval.readers.zerospeech import LayoutError, read_zr2021

from .conftest import noise, tone

SR = 16_000


def _pairs(n, kind="lexical"):
    meta = {"type": "agreement", "subtype": "s"} if kind == "syntactic" else {"frequency": "3"}
    return [SpokenPair(id=str(i), voice=v, pos_wav=tone(0.2, 0.5), neg_wav=noise(0.2, 0.01, i),
                       pos_text=f"word{i}", neg_text=f"nonword{i}", meta=meta)
            for i in range(n) for v in ("Alex", "Bruce")]


def test_zr2021_lexical_pairs_and_broken_items(tmp_path):
    folder = write_zr2021(tmp_path, "lexical", _pairs(3), SR)
    r = read_zr2021(tmp_path, "lexical")
    assert len(r.items) == 6 and not r.errors
    it = r.items[0]
    assert it.group == "0" and it.meta["pos_text"] == "word0" and it.meta["neg_text"] == "nonword0"
    assert it.pos.load(SR).size == int(0.2 * SR)
    assert r.source.layout == "zerospeech2021-lexical" and len(r.source.checksum) == 64
    # Same folder passed directly, and the gold.csv itself.
    assert len(read_zr2021(folder, "lexical").items) == 6
    assert len(read_zr2021(folder / "gold.csv", "lexical").items) == 6

    # Break it: delete one wav, add a row whose partner is missing, and one with a bad label.
    victim = sorted(folder.glob("*.wav"))[0]
    victim.unlink()
    gold = folder / "gold.csv"
    gold.write_text(gold.read_text() + "99,orphan,Alex,1,x,x,1,1\n7,bad,Alex,1,y,y,1,maybe\n")
    (folder / "stray.wav").write_bytes(victim.read_bytes() if victim.exists() else (folder / sorted(
        p.name for p in folder.glob("*.wav"))[0]).read_bytes())
    r = read_zr2021(tmp_path, "lexical")
    assert len(r.items) == 5
    reasons = {e.item: e for e in r.errors}
    assert "missing" in reasons["0/Alex"].reason and reasons["0/Alex"].file.endswith(victim.name)
    assert "one correct=1 and one correct=0" in reasons["99/Alex"].reason
    assert "correct='maybe'" in reasons["7/Alex"].reason
    assert r.source.extra["unlisted_wav_files"] == 1


def test_zr2021_syntactic_and_layout_errors(tmp_path):
    write_zr2021(tmp_path, "syntactic", _pairs(2, "syntactic"), SR)
    r = read_zr2021(tmp_path, "syntactic")
    assert len(r.items) == 4 and r.items[0].meta["type"] == "agreement"
    with pytest.raises(LayoutError, match=r"no gold\.csv found"):
        read_zr2021(tmp_path / "nowhere", "lexical")
    bad = tmp_path / "b" / "lexical" / "dev"
    bad.mkdir(parents=True)
    (bad / "gold.csv").write_text("filename,correct\nx,1\n")
    with pytest.raises(LayoutError, match=r"missing columns \['id', 'voice'\]"):
        read_zr2021(tmp_path / "b", "lexical")


def test_hf_parquet_pairs(tmp_path):
    write_hf_pairs(tmp_path / "sblimp", _pairs(2, "syntactic"), SR)
    r = read_hf_pairs(tmp_path / "sblimp")
    assert len(r.items) == 4 and not r.errors
    it = r.items[0]
    assert it.id == "0/Alex" and it.group == "0" and it.meta["type"] == "agreement"
    assert it.meta["positive_transcription"] == "word0"
    np.testing.assert_allclose(it.pos.load(SR), tone(0.2, 0.5), atol=1e-4)  # PCM_16 round trip
    with pytest.raises(LayoutError, match="no Parquet shards"):
        read_hf_pairs(tmp_path / "sblimp", config="nope", split="test")


def test_salmon_both_layouts(tmp_path):
    write_salmon_folder(tmp_path / "rel", "speaker_consistency", [(tone(0.2, 0.5), noise(0.2, 0.1, 0))] * 3, SR)
    r = read_salmon(tmp_path / "rel", "speaker_consistency")
    assert len(r.items) == 3 and r.source.layout == "salmon-release"
    (tmp_path / "rel" / "speaker_consistency" / "sample_1_1.wav").unlink()
    r = read_salmon(tmp_path / "rel", "speaker_consistency")
    assert len(r.items) == 2 and "found [0]" in r.errors[0].reason and r.errors[0].item == "speaker_consistency/1"
    pairs = _pairs(2)
    write_hf_pairs(tmp_path / "hf", pairs, SR, config="gender_consistency", pos_col="positive_audio",
                   neg_col="negative_audio")
    write_hf_pairs(tmp_path / "hf", pairs[:1], SR, config="bg_alignment", pos_col="positive_audio",
                   neg_col="negative_audio")
    g = read_salmon(tmp_path / "hf", "gender_consistency")
    assert len(g.items) == 4 and g.items[0].id.startswith("gender_consistency/")
    assert len(read_salmon(tmp_path / "hf", "bg_alignment").items) == 1
    with pytest.raises(ValueError, match="unknown SALMon part"):
        read_salmon(tmp_path / "hf", "loudness")


def test_blimp_real_tarball(shared_data):
    r = read_blimp(shared_data / "blimp" / "blimp_data_jsonl.tar.xz")
    assert len(r.items) == 67_000 and not r.errors and r.source.extra["files"] == 67
    it = r.items[0]
    assert it.pos != it.neg and it.meta["phenomenon"] and it.meta["field"]


def test_blimp_broken_lines(tmp_path):
    (tmp_path / "x.jsonl").write_text(
        '{"sentence_good": "A cat sleeps.", "sentence_bad": "A cat sleep.", "UID": "x", "pairID": "0"}\n'
        "not json\n"
        '{"sentence_good": "", "sentence_bad": "B.", "UID": "x", "pairID": "2"}\n'
    )
    r = read_blimp(tmp_path)
    assert len(r.items) == 1 and len(r.errors) == 2
    assert "not JSON" in r.errors[0].reason and "empty sentence_good" in r.errors[1].reason


def test_hellaswag_real_and_broken(shared_data, tmp_path):
    r = read_hellaswag(shared_data / "hellaswag" / "hellaswag_val_full.txt.bz2")
    assert len(r.items) == 10_042 and not r.errors
    assert r.items[0].context.startswith("Roof shingle removal: ") and len(r.items[0].endings) == 4
    bad = tmp_path / "h.txt"
    bad.write_text("ctx: a\n3\ne0\ne1\ne2\ne3\nctx: b\n7\ne0\ne1\ne2\ne3\nctx: c\n1\n")
    r = read_hellaswag(bad)
    assert len(r.items) == 1
    assert any("gold index '7'" in e.reason for e in r.errors) and any("trailing lines" in e.reason for e in r.errors)


def test_librispeech_layouts(tmp_path, shared_data):
    root = tmp_path / "test-clean"
    write_librispeech(root, [("84-121-0000", "HELLO WORLD", tone(0.3, 0.3)),
                             ("84-121-0001", "SECOND ONE", tone(0.3, 0.3))], SR)
    r = read_librispeech(root)
    assert [i.id for i in r.items] == ["84-121-0000", "84-121-0001"] and r.source.layout == "librispeech"
    chapter = root / "84" / "121"
    (chapter / "84-121-0001.flac").unlink()
    (chapter / "84-121.trans.txt").write_text((chapter / "84-121.trans.txt").read_text() + "84-121-0002\n")
    (chapter / "84-121-0002.flac").write_bytes((chapter / "84-121-0000.flac").read_bytes())
    r = read_librispeech(root)
    reasons = {e.item: e.reason for e in r.errors}
    assert "audio file missing" in reasons["84-121-0001"] and reasons["84-121-0002"] == "empty transcript"
    assert [i.id for i in r.items] == ["84-121-0000"]
    mini = read_librispeech(shared_data / "librispeech-mini")
    assert len(mini.items) == 4 and mini.source.layout == "librispeech-flat"


def test_librispeech_ids_are_never_paths(tmp_path):
    root = tmp_path / "test-clean"
    write_librispeech(root, [("84-121-0000", "HELLO WORLD", tone(0.3, 0.3))], SR)
    chapter = root / "84" / "121"
    (chapter.parent / "x.flac").write_bytes((chapter / "84-121-0000.flac").read_bytes())
    (chapter / "84-121.trans.txt").write_text((chapter / "84-121.trans.txt").read_text() + "../x OUTSIDE\n")
    r = read_librispeech(root)
    assert [i.id for i in r.items] == ["84-121-0000"]
    assert [(e.item, e.reason) for e in r.errors] == [("../x", "utterance id is not a plain file name")]


def test_seedtts_meta_lst(tmp_path):
    write_seedtts(tmp_path, [("u1", "prompt one", tone(0.3, 0.3), "target one"),
                             ("u2", "prompt two", tone(0.3, 0.3), "target two")], SR)
    meta = tmp_path / "meta.lst"
    meta.write_text(meta.read_text() + "u3|p|prompt-wavs/missing.wav|t\nu4|only|three\nu5|p|prompt-wavs/u1.wav|\n"
                    "u6|p|prompt-wavs/u1.wav|t|gt/u6.wav\n")
    r = read_seedtts(tmp_path)
    assert [i.id for i in r.items] == ["u1", "u2", "u6"] and r.items[2].meta == {"target_wav": "gt/u6.wav"}
    reasons = {e.item: e for e in r.errors}
    assert "prompt audio missing" in reasons["u3"].reason and reasons["u3"].file.endswith("missing.wav")
    assert "3 '|'-separated fields" in reasons["line 4"].reason
    assert reasons["u5"].reason == "empty target text"
