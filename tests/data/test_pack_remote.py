"""`sodakit pack` reading and writing an S3 bucket (a real S3 server on localhost), and packed datasets
read back from it through the local cache or by ranged reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sodakit import storage
from sodakit.data import packed as packed_mod
from sodakit.data.pack import PackConfig, pack
from sodakit.data.packed import PackedDataError, PackedDataset
from sodakit.tokens.soda_tokenizer import SodaTokenizer

from .test_pack import all_documents

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC)}
    return subprocess.run([sys.executable, "-m", "sodakit", *args], capture_output=True, text=True, env=env, timeout=300)


def soda_strings(tok: SodaTokenizer, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [f"<|audio_start|>{tok.vocab.codes_to_pua(rng.integers(0, 2048, (8, 3 + i % 5)))}<|audio_end|>"
            f"<|text_start|>the dog {i}<|text_end|>" for i in range(n)]


def test_pack_soda_parquet_straight_from_s3(tmp_path, s3_bucket, tokenizer_dir, sodakit_cache):
    """The failing command of the issue: `pack kind=soda inputs=[s3://bucket/x.parquet]` lost a slash."""
    tok = SodaTokenizer.from_pretrained(tokenizer_dir)
    pq.write_table(pa.table({"text": soda_strings(tok, 40)}), tmp_path / "x.parquet")
    storage.put_file(tmp_path / "x.parquet", f"{s3_bucket}/x.parquet")
    remote_out = f"{s3_bucket}/packed/soda"
    r = run_cli("pack", "kind=soda", f"inputs=[{s3_bucket}/x.parquet]", f"output={remote_out}",
                f"tokenizer={tokenizer_dir}", "shard_tokens=500")
    assert r.returncode == 0, r.stderr
    local = tmp_path / "local"
    pack(PackConfig(kind="soda", inputs=[str(tmp_path / "x.parquet")], output=str(local), tokenizer=str(tokenizer_dir),
                    shard_tokens=500), progress=False)
    ref = json.loads((local / "metadata.json").read_text())
    meta = json.loads(storage.read_text(f"{remote_out}/metadata.json"))
    assert len(meta["shards"]) > 1 and [s["sha256"] for s in meta["shards"]] == [s["sha256"] for s in ref["shards"]]
    assert meta["sources"] == [{"path": f"{s3_bucket}/x.parquet", "kind": "soda",
                                **storage.content_id(f"{s3_bucket}/x.parquet")}]
    assert not storage.exists(f"{remote_out}/.pack-progress.json")
    expected = all_documents(PackedDataset(local))
    cached = PackedDataset(remote_out)
    assert all_documents(cached) == expected
    assert {p.name for p in (sodakit_cache / "objects").glob("*.bin")} == {f"{s['sha256']}.bin" for s in meta["shards"]}
    assert all_documents(PackedDataset(remote_out, cache=False)) == expected  # ranged reads, nothing cached
    # A directory of inputs on S3 (JSONL files), a text corpus with the layout of the remote dataset.
    storage.write_text(f"{s3_bucket}/corpus/a.txt", "the lazy dog\nseven cats\n")
    storage.write_text(f"{s3_bucket}/corpus/sub/b.txt", "warm blankets\n")
    pack(PackConfig(kind="text", inputs=[f"{s3_bucket}/corpus"], output=str(tmp_path / "text"),
                    tokenizer=str(tokenizer_dir), vocab_from=remote_out), progress=False)
    text = PackedDataset(tmp_path / "text")
    assert text.metadata["num_documents"] == 3 and text.vocab.fingerprint == cached.vocab.fingerprint
    assert [s["path"] for s in text.metadata["sources"]] == [f"{s3_bucket}/corpus/a.txt", f"{s3_bucket}/corpus/sub/b.txt"]


def test_missing_remote_input_is_named_with_its_url(s3_bucket, tokenizer_dir, tmp_path, capsys):
    from sodakit.cli import main

    assert main(["pack", "kind=soda", f"inputs=[{s3_bucket}/nope.parquet]", f"output={tmp_path / 'o'}",
                 f"tokenizer={tokenizer_dir}"]) == 2
    assert f"input {s3_bucket}/nope.parquet does not exist" in capsys.readouterr().err


def test_interrupted_pack_to_s3_resumes_to_identical_bytes(tmp_path, s3_bucket, tokenizer_dir, make_segments,
                                                           monkeypatch, sodakit_cache):
    d = tmp_path / "segs"
    d.mkdir()
    make_segments(d, n_recordings=20, shards=2)
    storage.upload_dir(d, f"{s3_bucket}/segs", last=["manifest.json"])
    cfg = dict(inputs=[f"{s3_bucket}/segs"], tokenizer=str(tokenizer_dir), shard_tokens=1500, chunk_documents=7)
    pack(PackConfig(output=str(tmp_path / "ref"), **{**cfg, "inputs": [str(d)]}), progress=False)

    real_finish, calls = packed_mod.ShardWriter.finish, {"n": 0}

    def crashing_finish(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_finish(self)

    out = f"{s3_bucket}/packed"
    monkeypatch.setattr(packed_mod.ShardWriter, "finish", crashing_finish)
    with pytest.raises(KeyboardInterrupt):
        pack(PackConfig(output=out, **cfg), progress=False)
    monkeypatch.setattr(packed_mod.ShardWriter, "finish", real_finish)
    assert not storage.exists(f"{out}/metadata.json")  # an interrupted run never looks complete
    assert [storage.basename(p) for p in storage.list_files(out, [".bin"])] == ["tokens-00000.bin", "tokens-00001.bin"]
    pack(PackConfig(output=out, **cfg), progress=False)
    ref = json.loads((tmp_path / "ref" / "metadata.json").read_text())
    meta = json.loads(storage.read_text(f"{out}/metadata.json"))
    assert [s["sha256"] for s in meta["shards"]] == [s["sha256"] for s in ref["shards"]]
    assert meta["counts"] == ref["counts"] and not storage.exists(f"{out}/.pack-progress.json")
    assert not list((sodakit_cache / "staging").iterdir())  # staged shards are removed once uploaded


def test_a_damaged_remote_shard_is_refused(tmp_path, s3_bucket, segments_dir, tokenizer_dir, sodakit_cache):
    out = f"{s3_bucket}/p"
    pack(PackConfig(inputs=[str(segments_dir)], output=out, tokenizer=str(tokenizer_dir)), progress=False)
    data = bytearray(storage.read_bytes(f"{out}/tokens-00000.bin"))
    data[8] ^= 0xFF
    storage.write_bytes(f"{out}/tokens-00000.bin", bytes(data))
    ds = PackedDataset(out)
    with pytest.raises(PackedDataError, match="differs from the recorded"):
        ds.read(0, 16)
    with pytest.raises(PackedDataError, match="sha256 differs"):
        PackedDataset(out, cache=False, verify_checksums=True)
