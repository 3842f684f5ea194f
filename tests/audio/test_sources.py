"""Every ingestion form read into sorted AudioItems, with layout problems reported, never raised."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sodakit.audio.sources import detect_kind, open_source


def _wav(path, seconds, sr=16000, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.random.default_rng(seed).standard_normal(round(seconds * sr))).astype(np.float32)
    sf.write(path, x, sr)
    return path


def test_librispeech_layout(tmp_path):
    ch = tmp_path / "LibriSpeech" / "test-clean" / "61" / "70968"
    # Written out of order: items must come back in utterance order with end-to-end times.
    _wav(ch / "61-70968-0002.flac", 1.5)
    _wav(ch / "61-70968-0000.flac", 1.0)
    _wav(ch / "61-70968-0001.flac", 2.0)
    (ch / "61-70968.trans.txt").write_text(
        "61-70968-0002 THIRD ONE\n61-70968-0000 HE BEGAN A CONFUSED COMPLAINT\n"
        "61-70968-0001 SECOND\n61-70968-0009 NO AUDIO FOR THIS\nBROKENLINE\n"
    )
    other = tmp_path / "LibriSpeech" / "test-clean" / "7" / "11"
    _wav(other / "7-11-0000.flac", 0.5)
    (other / "7-11.trans.txt").write_text("7-11-0000 HELLO\n")
    assert detect_kind(tmp_path) == "librispeech"
    items, errors = open_source(tmp_path)
    assert [i.id for i in items] == ["61-70968-0000", "61-70968-0001", "61-70968-0002", "7-11-0000"]
    assert [i.recording_id for i in items] == ["61-70968"] * 3 + ["7-11"]
    assert [(i.start, i.end) for i in items[:3]] == [(0.0, 1.0), (1.0, 3.0), (3.0, 4.5)]
    assert items[0].speaker == "61" and items[0].text == "HE BEGAN A CONFUSED COMPLAINT"
    assert sorted(e.detail.split()[0] for e in errors) == ["expected", "no"]
    assert all(e.reason == "layout" for e in errors)
    assert items[1].load(8000).shape == (16000,)


def test_librispeech_ids_are_never_paths(tmp_path):
    """A transcript line's id names a file next to it; `../x` would read audio from another folder."""
    ch = tmp_path / "LibriSpeech" / "61" / "70968"
    _wav(ch / "61-70968-0000.flac", 0.5)
    _wav(tmp_path / "LibriSpeech" / "61" / "secret.flac", 0.5)
    (ch / "61-70968.trans.txt").write_text("61-70968-0000 FINE\n../secret SHOULD NOT BE READ\n")
    items, errors = open_source(tmp_path)
    assert [i.id for i in items] == ["61-70968-0000"]
    assert [(e.reason, e.detail) for e in errors] == [("layout", "utterance id '../secret' is not a plain file name")]


def test_librispeech_mini_tab_variant(shared_data):
    items, errors = open_source(shared_data / "librispeech-mini")
    assert len(items) == 4 and not errors
    assert {i.recording_id for i in items} == {"1089-134686", "1221-135766", "2412-153948"}
    ids = [i.id for i in items]
    assert ids.index("1221-135766-0001") + 1 == ids.index("1221-135766-0002")
    assert items[ids.index("1221-135766-0002")].start > 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest(tmp_path, fmt):
    _wav(tmp_path / "audio" / "rec1.wav", 6.0)
    _wav(tmp_path / "audio" / "rec2.wav", 2.0)
    rows = [
        {"audio": "audio/rec1.wav", "text": "second part", "recording_id": "r1", "start": 3.0, "end": 5.5, "speaker": "A"},
        {"audio": "audio/rec1.wav", "text": "first part", "recording_id": "r1", "start": 0.5, "end": 2.0, "speaker": "A"},
        {"audio": str(tmp_path / "audio" / "rec2.wav"), "text": "whole file", "id": "x"},
        {"audio": "audio/rec1.wav", "text": "bad times", "start": 4.0, "end": 1.0},
        {"text": "no audio"},
    ]
    path = tmp_path / f"m.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    else:
        keys = ["audio", "text", "id", "recording_id", "start", "end", "speaker"]
        lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    items, errors = open_source(path)
    assert [(i.recording_id, i.text) for i in items] == [("r1", "first part"), ("r1", "second part"), ("rec2", "whole file")]
    assert items[0].clip and (items[0].start, items[0].end) == (0.5, 2.0) and items[0].speaker == "A"
    assert items[2].id == "x" and not items[2].clip
    assert len(items[0].load(16000)) == 24000 and len(items[2].load(16000)) == 32000
    details = " | ".join(e.detail for e in errors)
    assert "not after" in details and "no audio path" in details
    assert len(errors) == (3 if fmt == "jsonl" else 2)


def test_folder_with_transcripts(tmp_path):
    _wav(tmp_path / "b" / "two.wav", 1.0)
    (tmp_path / "b" / "two.txt").write_text("second file\n")
    _wav(tmp_path / "a.flac", 0.5)
    (tmp_path / "a.txt").write_text("first file")
    _wav(tmp_path / "orphan.wav", 0.5)
    assert detect_kind(tmp_path) == "folder"
    items, errors = open_source(tmp_path)
    assert [(i.id, i.text) for i in items] == [("a", "first file"), ("b/two", "second file")]
    assert len(errors) == 1 and "orphan.wav" in errors[0].where


def test_hf_dataset_on_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = [str(_wav(tmp_path / "src" / f"{i}.wav", 0.5 + i, seed=i)) for i in range(3)]
    ds = datasets.Dataset.from_dict({
        "audio": paths, "sentence": ["one", "two", "three"], "speaker_id": ["s", "s", "t"],
        "recording_id": ["r", "r", "q"], "start": [0.0, 2.0, 0.0],
    }).cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(tmp_path / "ds"))
    for p in paths:  # the saved dataset must carry its own audio bytes
        (tmp_path / "src" / p.rsplit("/", 1)[1]).unlink()
    assert detect_kind(tmp_path / "ds") == "hf"
    items, errors = open_source(tmp_path / "ds")
    assert not errors
    assert [(i.recording_id, i.text, i.speaker) for i in items] == [("q", "three", "t"), ("r", "one", "s"), ("r", "two", "s")]
    assert len(items[1].load(16000)) == 8000 and len(items[0].load(8000)) == 20000
    assert items[2].start == 2.0 and not items[2].clip
    # A DatasetDict: every split, ids prefixed by split.
    saved = datasets.load_from_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": saved.select([0]), "test": saved.select([1])}).save_to_disk(str(tmp_path / "dd"))
    items, _ = open_source(tmp_path / "dd")
    assert sorted(i.split for i in items) == ["test", "train"]


def test_errors_for_unknown_inputs(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        open_source(tmp_path / "missing")
    (tmp_path / "m.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="manifest must be"):
        open_source(tmp_path / "m.xml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        open_source(tmp_path / "empty")
