from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sodakit.cli import main as cli_main
from sodakit.data import packed as packed_mod
from sodakit.data.pack import PackConfig, PackError, pack
from sodakit.data.packed import PackedDataError, PackedDataset
from sodakit.data.segments import group_recordings, read_segments_dir
from sodakit.tokens.documents import document_string, recording_documents
from sodakit.tokens.soda_tokenizer import SodaTokenizer


def all_documents(ds: PackedDataset) -> list[list[int]]:
    docs = []
    for i, info in enumerate(ds.metadata["shards"]):
        offsets = [*ds.documents(i).tolist(), info["num_tokens"]]
        base = sum(s["num_tokens"] for s in ds.metadata["shards"][:i])
        docs += [ds.read(base + a, b - a).tolist() for a, b in itertools.pairwise(offsets)]
    return docs


def test_segments_to_documents_round_trip(tmp_path, segments_dir, tokenizer_dir):
    meta = pack(PackConfig(inputs=[str(segments_dir)], output=str(tmp_path / "p"), tokenizer=str(tokenizer_dir)), progress=False)
    ds = PackedDataset(tmp_path / "p", verify_checksums=True)
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    _, segs = read_segments_dir(segments_dir)
    recordings = group_recordings(segs)
    expected = [d.tolist() for rec in recordings for d in recording_documents(rec, ["text_first", "audio_first"], tok)]
    assert all_documents(ds) == expected
    assert meta["num_documents"] == 2 * len(recordings) == 24
    assert meta["codec"]["name"] == "random" and meta["vocab"]["fingerprint"] == tok.vocab.fingerprint
    c = meta["counts"]
    assert sum(c[k] for k in ("text", "bos_eos", "marker", "audio")) == meta["num_tokens"]
    assert c["bos_eos"] == 48 and c["marker"] == 4 * 2 * 36 and c["audio"] % 8 == 0 and c["semantic"] * 8 == c["audio"]
    # ids decode back to the SODA strings of the same documents
    assert tok.decode(expected[0]) == document_string(recordings[0], "text_first", tok.vocab)


def test_recording_split_across_shards_is_reassembled(tmp_path, tokenizer_dir, make_segments):
    d = tmp_path / "segs"
    d.mkdir()
    make_segments(d, split_recording=True)
    pack(PackConfig(inputs=[str(d)], output=str(tmp_path / "p"), tokenizer=str(tokenizer_dir), formats=["audio_only"]), progress=False)
    docs = all_documents(PackedDataset(tmp_path / "p"))
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    audio_spans = [sum(1 for t in doc if t == tok.vocab.audio_start_id) for doc in docs]
    assert audio_spans == [3] * 12  # every recording whole, none split into two documents


def test_soda_strings_from_jsonl_and_parquet(tmp_path, tokenizer_dir):
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    codes = np.random.default_rng(0).integers(0, 2048, (8, 4))
    a = tok.vocab.codes_to_pua(codes)
    strings = [f"<|audio_start|>{a}<|audio_end|><|text_start|>hi dog<|text_end|>", f"<|begin_of_text|>the cat{a}<|end_of_text|>"]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"doc": s}) + "\n" for s in strings))
    pq.write_table(pa.table({"doc": strings}), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        out = tmp_path / f"out-{name}"
        pack(PackConfig(inputs=[str(tmp_path / name)], output=str(out), tokenizer=str(tokenizer_dir), column="doc"), progress=False)
        docs = all_documents(PackedDataset(out))
        assert docs[0] == [tok.vocab.bos_id, *tok.encode(strings[0], add_bos=False).tolist(), tok.vocab.eos_id]
        assert docs[1] == tok.encode(strings[1], add_bos=False).tolist()  # BOS/EOS already present


def test_text_corpus_shares_layout_via_vocab_from(tmp_path, segments_dir, tokenizer_dir):
    pack(PackConfig(inputs=[str(segments_dir)], output=str(tmp_path / "speech"), tokenizer=str(tokenizer_dir)), progress=False)
    (tmp_path / "c.txt").write_text("the lazy dog\n\nseven cats sleep\n")
    assert cli_main(["pack", "kind=text", f"inputs=[{tmp_path / 'c.txt'}]", f"output={tmp_path / 'text'}",
                     f"tokenizer={tokenizer_dir}", f"vocab_from={tmp_path / 'speech'}"]) == 0
    speech, text = PackedDataset(tmp_path / "speech"), PackedDataset(tmp_path / "text")
    assert speech.vocab.fingerprint == text.vocab.fingerprint
    assert text.metadata["num_documents"] == 2 and text.metadata["counts"]["audio"] == 0


def test_text_corpus_special_strings_stay_text(tmp_path, tokenizer_dir):
    """`kind=text` with a released-style tokenizer (markers as added tokens): marker and BOS/EOS strings in
    web text become ordinary pieces; each line is exactly one BOS ... EOS document."""
    lines = ["web text <|audio_start|> x", "a <|end_of_text|> b <|begin_of_text|> c", "plain"]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    meta = pack(PackConfig(kind="text", inputs=[str(tmp_path / "c.txt")], output=str(tmp_path / "p"),
                           tokenizer=str(tokenizer_dir)), progress=False)
    assert meta["num_documents"] == 3 and meta["counts"]["marker"] == 0 and meta["counts"]["bos_eos"] == 6
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    v = tok.vocab
    for line, doc in zip(lines, all_documents(PackedDataset(tmp_path / "p"))):
        assert doc[0] == v.bos_id and doc[-1] == v.eos_id
        assert v.bos_id not in doc[1:-1] and v.eos_id not in doc[1:-1]
        assert tok.text.decode(doc[1:-1]) == line


def test_interrupted_pack_resumes_to_identical_bytes(tmp_path, tokenizer_dir, make_segments, monkeypatch):
    d = tmp_path / "segs"
    d.mkdir()
    make_segments(d, n_recordings=40, shards=4)
    cfg = dict(inputs=[str(d)], tokenizer=str(tokenizer_dir), shard_tokens=1500, chunk_documents=7)
    pack(PackConfig(output=str(tmp_path / "ref"), **cfg), progress=False)

    real_finish, calls = packed_mod.ShardWriter.finish, {"n": 0}

    def crashing_finish(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_finish(self)

    monkeypatch.setattr(packed_mod.ShardWriter, "finish", crashing_finish)
    with pytest.raises(KeyboardInterrupt):
        pack(PackConfig(output=str(tmp_path / "run"), **cfg), progress=False)
    monkeypatch.setattr(packed_mod.ShardWriter, "finish", real_finish)
    run = tmp_path / "run"
    assert not (run / "metadata.json").exists()  # an interrupted run never looks complete
    assert sorted(p.name for p in run.glob("tokens-*.bin")) == ["tokens-00000.bin", "tokens-00001.bin"]
    (run / ".tokens-00002.bin.abc.tmp").write_bytes(b"half-written")  # what a SIGKILL would leave
    pack(PackConfig(output=str(run), **cfg), progress=False)
    ref_meta, run_meta = json.loads((tmp_path / "ref/metadata.json").read_text()), json.loads((run / "metadata.json").read_text())
    assert [s["sha256"] for s in run_meta["shards"]] == [s["sha256"] for s in ref_meta["shards"]]
    assert run_meta["counts"] == ref_meta["counts"] and run_meta["num_documents"] == ref_meta["num_documents"]
    assert not list(run.glob(".*tmp")) and not (run / ".pack-progress.json").exists()
    # rerunning a finished job is a no-op; a different job into the same directory is refused
    pack(PackConfig(output=str(run), **cfg), progress=False)
    with pytest.raises(PackError, match="different packed dataset"):
        pack(PackConfig(output=str(run), **{**cfg, "shard_tokens": 999}), progress=False)


def test_bad_inputs_give_clear_errors(tmp_path, tokenizer_dir, segments_dir):
    tok = str(tokenizer_dir)
    pq.write_table(pa.table({"other": ["x"]}), tmp_path / "nocol.parquet")
    with pytest.raises(PackError, match=r"nocol.parquet: no column 'text'; columns are \['other'\]"):
        pack(PackConfig(inputs=[str(tmp_path / "nocol.parquet")], output=str(tmp_path / "o1"), tokenizer=tok), progress=False)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": 5}\n')
    with pytest.raises(PackError, match=r"bad.jsonl:2: field 'text' is int"):
        pack(PackConfig(inputs=[str(tmp_path / "bad.jsonl")], output=str(tmp_path / "o2"), tokenizer=tok), progress=False)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(PackError, match="no documents"):
        pack(PackConfig(inputs=[str(tmp_path / "empty.txt")], output=str(tmp_path / "o3"), tokenizer=tok), progress=False)
    with pytest.raises(PackError, match="does not exist"):
        pack(PackConfig(inputs=[str(tmp_path / "missing.jsonl")], output=str(tmp_path / "o4"), tokenizer=tok), progress=False)
    (tmp_path / "pua.txt").write_text("text with \ufeff BOM\n")
    with pytest.raises(ValueError, match=r"U\+FEFF"):
        pack(PackConfig(kind="text", inputs=[str(tmp_path / "pua.txt")], output=str(tmp_path / "o5"), tokenizer=tok), progress=False)


def test_corrupt_or_mismatched_shards_are_refused(tmp_path, segments_dir, tokenizer_dir):
    out = tmp_path / "p"
    pack(PackConfig(inputs=[str(segments_dir)], output=str(out), tokenizer=str(tokenizer_dir)), progress=False)
    shard = out / "tokens-00000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-4])
    with pytest.raises(PackedDataError, match=r"tokens-00000.bin: \d+ bytes but metadata.json says"):
        PackedDataset(out)
    corrupted = bytearray(data)
    corrupted[10] ^= 0xFF
    shard.write_bytes(bytes(corrupted))
    PackedDataset(out)  # sizes agree; only the checksum can tell
    with pytest.raises(PackedDataError, match="sha256 differs"):
        PackedDataset(out, verify_checksums=True)
    (out / "metadata.json").write_text("{not json")
    with pytest.raises(PackedDataError, match="not valid JSON"):
        PackedDataset(out)
    with pytest.raises(PackedDataError, match="no metadata.json"):
        PackedDataset(tmp_path)


def test_pack_progress_in_a_log_is_plain_lines_and_quiet_drops_it(tmp_path, segments_dir, tokenizer_dir, capsys):
    """Redirected output gets status lines, never `\\r` redraws; a quiet run resumes/reuses a loud one's job."""
    args = ["pack", f"inputs=[{segments_dir}]", f"output={tmp_path / 'p'}", f"tokenizer={tokenizer_dir}"]
    assert cli_main(args) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert err.splitlines()[-1].startswith("pack: 24doc [") and "shards=" in err
    assert "wrote" in out
    assert cli_main([*args, "--quiet"]) == 0  # the same job: quiet is not part of it
    out, err = capsys.readouterr()
    assert "already complete" in out and "doc [" not in err
