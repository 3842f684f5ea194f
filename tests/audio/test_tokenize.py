"""`sodakit tokenize`: shards + manifest, bad files recorded not fatal, resume after SIGKILL with a
byte-identical result, parallel workers and torchrun ranks agreeing with one process, and the round trip
codes -> documents -> ids -> codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sodakit.audio.registry import load_codec
from sodakit.audio.sources import AudioItem
from sodakit.audio.tokenize import TokenizeConfig, TokenizeError, plan_shards, tokenize
from sodakit.data.segments import read_segments_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mimi_dir(tmp_path_factory):
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mimi")
    MimiModel(MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=8, codebook_size=2048, upsample_groups=32,
    )).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A manifest over 4 recordings (one cut into 3 segments) plus 4 bad entries."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    for r in range(4):
        sr = (16000, 22050, 24000, 8000)[r]
        sf.write(root / f"rec{r}.wav", (0.1 * rng.standard_normal(int(sr * (1.0 + r)))).astype(np.float32), sr)
        rows.append({"audio": f"rec{r}.wav", "text": f"recording {r}", "speaker": f"s{r % 2}"})
    rows += [{"audio": "rec3.wav", "text": f"part {i}", "recording_id": "long", "start": 1.0 * i, "end": 1.0 * i + 0.9}
             for i in (2, 0, 1)]
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(root / "nan.wav", np.array([0.0, np.nan, 0.1] * 100, np.float32), 16000, subtype="FLOAT")
    (root / "garbage.wav").write_bytes(b"RIFF not really a wav file")
    rows += [{"audio": n, "text": "bad"} for n in ("empty.wav", "nan.wav", "garbage.wav", "missing.wav")]
    rows.append({"text": "row without audio"})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root / "manifest.jsonl"


def _files(out: Path) -> dict[str, bytes]:
    names = [*sorted(p.name for p in out.glob("segments-*.parquet")), "manifest.json", "errors.jsonl"]
    return {n: (out / n).read_bytes() for n in names}


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sodakit.cli", "tokenize", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_plan_keeps_recordings_together():
    items = [AudioItem(id=f"{r}-{i}", recording_id=r, path="x") for r, n in (("a", 2), ("b", 3), ("c", 1), ("d", 5))
             for i in range(n)]
    assert plan_shards(items, 4) == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    assert plan_shards(items, 100) == [list(range(11))]
    with pytest.raises(TokenizeError):
        plan_shards(items, 0)


def test_tokenize_manifest_with_bad_files(dataset, mimi_dir, tmp_path):
    out = tmp_path / "out"
    summary = tokenize(TokenizeConfig(input=str(dataset), output=str(out), codec=str(mimi_dir), device="cpu",
                                      shard_size=2), log=lambda m: None)
    assert summary["finished"] and summary["segments"] == 7 and summary["errors"] == 5
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    reasons = sorted(e["reason"] for e in errors)
    assert reasons == ["empty", "layout", "non-finite", "unreadable", "unreadable"]
    manifest, segments = read_segments_dir(out)
    codec = load_codec(mimi_dir, device="cpu")
    assert manifest.codec.config_hash == codec.config_hash and manifest.codec.num_codebooks == 8
    assert manifest.extra["errors"] == 5 and manifest.extra["segments"] == 7
    segs = list(segments)
    long = [s for s in segs if s.recording_id == "long"]
    assert [s.text for s in long] == ["part 0", "part 1", "part 2"]  # grouped, in time order
    assert [(s.start, s.end) for s in long] == [(0.0, 0.9), (1.0, 1.9), (2.0, 2.9)]
    for s in segs:
        assert s.codes.dtype == np.uint16 and s.codes.shape[0] == 8
        assert s.num_frames == int(np.ceil(round((s.end - s.start) * 24000) / 1920))
    # Codes equal a direct encode of the same audio.
    rec1 = next(s for s in segs if s.recording_id == "rec1")
    from sodakit.audio.io import load_audio

    direct = codec.encode_audio([load_audio(dataset.parent / "rec1.wav", 24000)], 24000)[0]
    np.testing.assert_array_equal(rec1.codes, direct)
    # Same output dir, different job: refused with a clear message.
    with pytest.raises(TokenizeError, match="different tokenize job"):
        tokenize(TokenizeConfig(input=str(dataset), output=str(out), codec=str(mimi_dir), device="cpu",
                                shard_size=3), log=lambda m: None)


def test_resume_after_sigkill_is_identical(dataset, mimi_dir, tmp_path):
    common = [f"input={dataset}", f"codec={mimi_dir}", "device=cpu", "shard_size=1"]
    # Reference: uninterrupted, with 2 worker processes.
    ref = _cli([*common, f"output={tmp_path / 'ref'}", "workers=2"])
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    # Killed run: SIGKILL once some but not all shards exist.
    out = tmp_path / "killed"
    proc = _cli([*common, f"output={out}", "shard_delay_s=1.0"])
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("segments-*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done_before = sorted(out.glob("segments-*.parquet"))
    total = len(list((tmp_path / "ref").glob("segments-*.parquet")))
    assert 2 <= len(done_before) < total and not (out / "manifest.json").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in done_before}
    again = _cli([*common, f"output={out}"])
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"resuming: {len(done_before)} of {total} shards already done" in err
    assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in done_before)  # not re-encoded
    assert _files(out) == _files(tmp_path / "ref")


def test_torchrun_ranks_split_the_shards(dataset, mimi_dir, tmp_path, monkeypatch):
    cfg = dict(input=str(dataset), codec=str(mimi_dir), device="cpu", shard_size=2)
    tokenize(TokenizeConfig(output=str(tmp_path / "one"), **cfg), log=lambda m: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    results = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        results.append(tokenize(TokenizeConfig(output=str(tmp_path / "two"), **cfg), log=lambda m: None))
    assert results[0] == {"finished": False, "rank": 0} and results[1]["finished"]
    assert _files(tmp_path / "two") == _files(tmp_path / "one")


def test_round_trip_codes_documents_ids(dataset, mimi_dir, tmp_path):
    from sodakit.tokens.documents import document_ids, document_string
    from sodakit.tokens.soda_tokenizer import SodaTokenizer
    from sodakit.tokens.text_tokenizer import train_bpe

    out = tmp_path / "out"
    tokenize(TokenizeConfig(input=str(dataset), output=str(out), codec=str(mimi_dir), device="cpu"), log=lambda m: None)
    manifest, segments = read_segments_dir(out)
    from sodakit.data.segments import group_recordings

    recordings = group_recordings(segments)
    texts = [s.text for rec in recordings for s in rec]
    info = manifest.codec
    tok = SodaTokenizer(train_bpe(texts * 3, vocab_size=300)).with_audio_layout(
        info.num_codebooks, info.codebook_size, info.semantic_codebooks)
    v = tok.vocab
    codec = load_codec(mimi_dir, device="cpu")
    for rec in recordings:
        for fmt in ("text_first", "audio_first", "audio_only"):
            ids = document_ids(rec, fmt, tok)
            assert np.array_equal(tok.encode(document_string(rec, fmt, v), add_bos=False), ids)
        ids = document_ids(rec, "audio_only", tok)
        # Cut the audio spans back out and recover every segment's codes.
        starts = np.flatnonzero(ids == v.audio_start_id)
        ends = np.flatnonzero(ids == v.audio_end_id)
        assert len(starts) == len(rec)
        for seg, a, b in zip(rec, starts, ends):
            codes = v.ids_to_codes(ids[a + 1 : b])
            np.testing.assert_array_equal(codes, seg.codes)
            wav = codec.decode(codes.astype(np.int64))[0]
            assert len(wav) == seg.num_frames * 1920


def test_cli_errors_are_one_line(tmp_path, capsys):
    from sodakit.cli import main

    assert main(["tokenize", f"output={tmp_path / 'o'}"]) == 2
    assert "missing mandatory value: input" in capsys.readouterr().err
    assert main(["tokenize", f"input={tmp_path / 'nope'}", f"output={tmp_path / 'o'}"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_audio_shorter_than_its_transcript_claims_is_an_error(mimi_dir, tmp_path):
    """A WAV cut off mid-file, a manifest end past the file, an HF-style row whose start/end disagree with its
    audio: each is an error record naming the file, never a short segment carrying the full transcript."""
    rng = np.random.default_rng(1)
    full = tmp_path / "full.wav"
    sf.write(full, (0.1 * rng.standard_normal(int(16000 * 10.5))).astype(np.float32), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:1000])  # header says 10.5 s; libsndfile alone would give 0.03 s
    rows = [
        {"audio": "cut.wav", "text": "a long sentence spoken for ten seconds", "id": "cut"},
        {"audio": "full.wav", "text": "sixty seconds of speech", "id": "late", "start": 0.0, "end": 60.0},
        {"audio": "full.wav", "text": "the last bit", "id": "edge", "start": 10.0, "end": 10.55},
        {"audio": "full.wav", "text": "fine", "id": "fine", "start": 1.0, "end": 2.0},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    summary = tokenize(TokenizeConfig(input=str(tmp_path / "m.jsonl"), output=str(out), codec=str(mimi_dir),
                                      device="cpu"), log=lambda m: None)
    assert summary["segments"] == 2 and summary["errors"] == 2
    errors = {e["id"]: e for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert errors["cut"]["reason"] == "truncated" and errors["cut"]["where"] == str(cut)
    assert "declares 10.500s" in errors["cut"]["detail"]
    assert errors["late"]["reason"] == "duration" and "end=60.0s is past the end of the file (10.500s)" in errors["late"]["detail"]
    _, segments = read_segments_dir(out)
    ends = {s.id: (s.start, s.end) for s in segments}
    assert ends == {"fine": (1.0, 2.0), "edge": (10.0, 10.5)}  # within the tolerance: the real end is recorded


def test_a_row_whose_start_end_disagree_with_its_audio_is_refused():
    from sodakit.audio.io import AudioError
    from sodakit.audio.tokenize import check_duration

    row = AudioItem(id="r", recording_id="rec", path="/ds", start=0.0, end=60.0, row=3)
    with pytest.raises(AudioError, match=r"/ds\[3\]: duration: start/end say 60.000s but the audio is 10.500s"):
        check_duration(row, 10.5)
    check_duration(AudioItem(id="r", recording_id="rec", path="/ds", start=5.0, end=15.5, row=3), 10.45)


def test_progress_counts_every_utterance_of_the_job(dataset, mimi_dir, tmp_path, capsys):
    """Without a caller's log, stderr gets the per-utterance progress (a plain line when redirected),
    counting good and bad items alike; quiet=true keeps the messages only."""
    from sodakit.cli import main as cli_main

    args = ["tokenize", f"input={dataset}", f"output={tmp_path / 'out'}", f"codec={mimi_dir}", "device=cpu",
            "shard_size=4"]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "on cpu" in err
    assert next(line for line in err.splitlines() if line.startswith("tokenize: 100%")).startswith(
        "tokenize: 100% 11/11 [")
    assert cli_main([*args[:2], f"output={tmp_path / 'quiet'}", *args[3:], "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "shard 0" in err and "tokenize: 100%" not in err


def test_a_shard_reads_its_files_concurrently_and_keeps_their_order(monkeypatch):
    """Object stores answer each GET after tens of ms: a shard's files are read `read_threads` at once
    (here four loads must meet at a barrier, which one reader at a time would never pass), and the
    segments and errors still come out in item order."""
    import threading

    from sodakit.audio import tokenize as T
    from sodakit.audio.io import AudioError

    class _Codec:
        sample_rate = 100

        def encode_audio(self, waves, sample_rate, batch_seconds, on_encoded=None):
            return [np.full((2, len(w) // 10), len(w), np.int64) for w in waves]

    barrier = threading.Barrier(4, timeout=30)

    def load(self, sample_rate):
        barrier.wait()
        if self.id == "bad":
            raise AudioError(self.path, "unreadable", "not audio")
        return np.zeros(int(self.id) * 10, np.float32)

    monkeypatch.setattr(AudioItem, "load", load)
    items = [AudioItem(id=i, recording_id=i, path=f"s3://bucket/{i}.wav") for i in ("3", "bad", "1", "2")]
    segments, errors, seconds = T.encode_shard(_Codec(), items, 1.0, read_threads=4)
    assert [s.id for s in segments] == ["3", "1", "2"]
    assert [s.codes[0, 0] for s in segments] == [30, 10, 20]
    assert errors == [{"where": "s3://bucket/bad.wav", "reason": "unreadable", "detail": "not audio", "id": "bad"}]
    assert seconds == pytest.approx(0.6)
    with pytest.raises(ValueError, match="read_threads"):
        tokenize(TokenizeConfig(input="x", output="y", read_threads=0), log=lambda m: None)
