"""`sodakit tokenize` from and to an S3 bucket (a real S3 server on localhost), from Hugging Face datasets
streamed row by row (resumable), and of audio without transcripts (kept for audio-only documents,
refused where a transcript is needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sodakit import storage
from sodakit.audio import tokenize as tokenize_mod
from sodakit.audio.tokenize import TokenizeConfig, TokenizeError, tokenize
from sodakit.data.pack import PackConfig, PackError, pack
from sodakit.data.segments import read_segments_dir

from .test_sources import make_parquet_snapshot

QUIET = {"log": lambda m: None}


@pytest.fixture(scope="module")
def mimi(tmp_path_factory, small_mimi):
    return small_mimi(tmp_path_factory.mktemp("mimi"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest of 5 recordings (relative audio paths) and its audio."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    (root / "audio").mkdir()
    for r in range(5):
        sf.write(root / "audio" / f"r{r}.wav", (0.1 * rng.standard_normal(int(16000 * (0.5 + 0.25 * r)))).astype(np.float32),
                 16000)
        rows.append({"audio": f"audio/r{r}.wav", "text": f"recording {r}"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def shard_digests(out: str) -> list[str]:
    return [s["sha256"] for s in json.loads(storage.read_text(storage.join(out, "manifest.json")))["shards"]]


def test_tokenize_from_s3_to_s3_resumes_there(corpus, mimi, tmp_path, s3_bucket, sodakit_cache, monkeypatch):
    storage.upload_dir(corpus, f"{s3_bucket}/corpus")
    local = tokenize(TokenizeConfig(input=str(corpus / "m.jsonl"), output=str(tmp_path / "local"), codec=str(mimi),
                                    device="cpu", shard_size=2), **QUIET)
    out = f"{s3_bucket}/tok"
    real, calls = tokenize_mod._run_shard, {"n": 0}

    def dies_after_two(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kw)

    monkeypatch.setattr(tokenize_mod, "_run_shard", dies_after_two)
    cfg = TokenizeConfig(input=f"{s3_bucket}/corpus/m.jsonl", output=out, codec=str(mimi), device="cpu", shard_size=2)
    with pytest.raises(KeyboardInterrupt):
        tokenize(cfg, **QUIET)
    assert [storage.basename(p) for p in storage.list_files(out, [".parquet"])] == ["segments-00000.parquet",
                                                                                     "segments-00001.parquet"]
    assert not storage.exists(f"{out}/manifest.json")
    monkeypatch.setattr(tokenize_mod, "_run_shard", real)
    logs = []
    summary = tokenize(cfg, log=logs.append)
    assert "resuming: 2 of 3 shards already done, skipped" in logs
    assert summary["segments"] == local["segments"] == 5 and summary["source"] == f"{s3_bucket}/corpus/m.jsonl"
    assert shard_digests(out) == shard_digests(str(tmp_path / "local"))  # the same codes, byte for byte
    _, segments = read_segments_dir(out)
    assert sorted(s.text for s in segments) == [f"recording {r}" for r in range(5)]


def test_streamed_hf_dataset_equals_the_listed_one_and_resumes(tmp_path, mimi, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    snap = make_parquet_snapshot(tmp_path / "snap", splits=(("train", 5), ("test", 2)))
    common = dict(input=str(snap), codec=str(mimi), device="cpu", split="train", shard_size=2)
    listed = tokenize(TokenizeConfig(output=str(tmp_path / "listed"), **common), **QUIET)
    with pytest.raises(TokenizeError, match="one process"):
        tokenize(TokenizeConfig(output=str(tmp_path / "x"), streaming=True, workers=2, **common), **QUIET)

    real, calls = tokenize_mod._run_shard, {"n": 0}

    def dies_after_one(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kw)

    monkeypatch.setattr(tokenize_mod, "_run_shard", dies_after_one)
    out = tmp_path / "streamed"
    with pytest.raises(KeyboardInterrupt):
        tokenize(TokenizeConfig(output=str(out), streaming=True, **common), **QUIET)
    monkeypatch.setattr(tokenize_mod, "_run_shard", real)
    logs = []
    summary = tokenize(TokenizeConfig(output=str(out), streaming=True, **common), log=logs.append)
    assert "resuming: 1 shards already done, skipping their 2 rows" in logs
    assert summary["segments"] == listed["segments"] == 5 and summary["streaming"] and summary["split"] == "train"
    # Each row its own recording, in the dataset's order: the same shards as the listed job, byte for byte.
    assert shard_digests(str(out)) == shard_digests(str(tmp_path / "listed"))
    with pytest.raises(TokenizeError, match="different tokenize job"):
        tokenize(TokenizeConfig(output=str(out), streaming=True, **{**common, "shard_size": 3}), **QUIET)


def test_untranscribed_audio_only_for_audio_only_documents(tmp_path, mimi, tokenizer_for_mimi, capsys):
    (tmp_path / "wavs").mkdir()
    for i in range(3):
        sf.write(tmp_path / "wavs" / f"u{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(8000)).astype(np.float32),
                 16000)
    from sodakit.cli import main

    assert main(["tokenize", f"input={tmp_path / 'wavs'}", f"output={tmp_path / 'tok'}", f"codec={mimi}",
                 "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert "none of its 3 audio item(s) has a transcript" in err and "require_text=false" in err
    assert len(err.strip().splitlines()) == 1
    summary = tokenize(TokenizeConfig(input=str(tmp_path / "wavs"), output=str(tmp_path / "tok"), codec=str(mimi),
                                      device="cpu", require_text=False), **QUIET)
    assert summary["segments"] == 3 and summary["untranscribed"] == 3 and summary["errors"] == 0
    _, segments = read_segments_dir(tmp_path / "tok")
    assert [s.text for s in segments] == [None, None, None]
    with pytest.raises(PackError, match=r"3 segment\(s\) without a transcript.*formats=\[audio_only\]"):
        pack(PackConfig(inputs=[str(tmp_path / "tok")], output=str(tmp_path / "p"), tokenizer=str(tokenizer_for_mimi)),
             progress=False)
    meta = pack(PackConfig(inputs=[str(tmp_path / "tok")], output=str(tmp_path / "p"), formats=["audio_only"],
                           tokenizer=str(tokenizer_for_mimi)), progress=False)
    assert meta["num_documents"] == 3 and meta["counts"]["text"] == 0


@pytest.fixture(scope="module")
def tokenizer_for_mimi(tmp_path_factory):
    from sodakit.tokens.soda_tokenizer import SodaTokenizer
    from sodakit.tokens.text_tokenizer import train_bpe

    d = tmp_path_factory.mktemp("tok")
    SodaTokenizer(train_bpe(["recording one two three"] * 20, vocab_size=300)).with_audio_layout(8, 2048).save_pretrained(d)
    return d
