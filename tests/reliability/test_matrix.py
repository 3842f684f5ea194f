"""The reliability matrix at toy size: SIGKILL at exact points of tokenize, pack, train and checkpoint writes,
then the same command again must finish exactly as an uninterrupted run; damaged checkpoints, a second
process on a live run, and bad input through the real command line.

Each kill is a real SIGKILL in a child process at the n-th call of a named function (killpoints.py). After
a kill, what is on disk must already be consistent (no half-deleted or half-written checkpoint under a
`step_*` name), and the rerun must reproduce the uninterrupted run: the same loss and gradient-norm curve,
the same final weights, the same saved RNG state (tokenize, pack: the same bytes). Training kills run on
sharded checkpoints (the default), written synchronously or asynchronously, and on the full format.

Kill and bad-input cases that live next to their code, not repeated here:
  tests/train/test_resume_distributed.py   SIGKILL mid-run at a random step
  tests/train/test_resize.py               a rank SIGKILLed during an asynchronous save under torchrun, the
                                           run resumed on another number of ranks
  tests/audio/test_tokenize.py             SIGKILL between shards; truncated WAV / end past the file
  tests/data/test_pack.py                  crash inside a shard, different job into the same output;
                                           marker strings in web text stay text
  tests/data/test_id_range.py              corrupt token ids in a shard
  tests/eval/test_generation_tasks.py, tests/generate/test_tasks.py   ids that would escape the output folder
  tests/test_cli_errors.py                 one-line errors, exit codes, --debug
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sodakit.cli import main as cli_main
from sodakit.model.load import CheckpointError, list_checkpoints, load_pretrained, read_pretrained

from ..data.conftest import WORDS, make_segments_dir
from ..train.conftest import make_packed
from ..train.test_resume_distributed import curve, write_cfg
from .killpoints import ENV, REPO, killed_at, paused_at, sodakit

STEPS, EVERY = 12, 3
OPTIM = "optimizer.safetensors"
WEIGHT_SHARD = "shards/shard-00001-model-00001-of-00002.safetensors"  # a sharded checkpoint of 1 rank
OPTIM_SHARD = "shards/shard-00001-model-00002-of-00002.safetensors"


# ---------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------
def train_cfg(tmp: Path, run_dir: Path, data: Path, **checkpoint) -> str:
    return str(write_cfg(tmp / f"{run_dir.name}.yaml", run_dir, data, steps=STEPS,
                         checkpoint={"every": EVERY, "keep_last": 2, **checkpoint}))


def weights_digest(ckpt: Path) -> str:
    """sha256 over the checkpoint's weights, whichever format holds them."""
    weights, _ = read_pretrained(ckpt)
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def final_state(run_dir: Path) -> dict:
    """What an exact resume must reproduce: curve, final weights, saved RNG and loader state."""
    last = list_checkpoints(run_dir)[-1]
    state = json.loads((last / "trainer_state.json").read_text())
    return {"curve": curve(run_dir), "step": last.name, "weights": weights_digest(last), "ranks": state["ranks"]}


def assert_consistent(run_dir: Path) -> None:
    """On disk after a kill: every step_* directory is a complete, intact checkpoint."""
    from sodakit.train.checkpoint import verify_checkpoint

    root = run_dir / "checkpoints"
    steps = sorted(p for p in root.iterdir() if p.name.startswith("step_")) if root.is_dir() else []
    assert [p.name for p in list_checkpoints(run_dir)] == [p.name for p in steps], "a step_* without COMPLETE"
    for p in steps:
        verify_checkpoint(p)


def assert_clean(run_dir: Path) -> None:
    names = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert not [n for n in names if n.startswith((".tmp-", ".trash-"))], names


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_packed(tmp_path_factory.mktemp("packed") / "train", 150)


def _reference_run(data: Path, tmp: Path, **checkpoint) -> dict:
    p = sodakit("train", train_cfg(tmp, tmp / "run", data, **checkpoint))
    assert p.returncode == 0, p.stderr[-3000:]
    ref = final_state(tmp / "run")
    assert sorted(ref["curve"]) == list(range(1, STEPS + 1))
    return {**ref, "run_dir": tmp / "run"}


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    """An uninterrupted run with sharded checkpoints written synchronously (the defaults)."""
    return _reference_run(data, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def full_reference(data, tmp_path_factory) -> dict:
    """The same run with full-state checkpoints (checkpoint.format=full, the format of older checkpoints)."""
    return _reference_run(data, tmp_path_factory.mktemp("full-reference"), format="full")


TRAIN_KILLS = {
    # checkpoint of step 6 fully written in its temp directory (every shard), not yet committed
    "checkpoint-files-written": ("sodakit.train.checkpoint:_fsync_dir_files", 2, "", {}),
    # the rename of that temp directory itself
    "checkpoint-rename": ("os:replace", 1, ".tmp-step_00000006", {}),
    # pruning the oldest checkpoint (keep_last=2) after step 9, one file already deleted
    "checkpoint-pruning": ("os:unlink", 2, "dir_fd", {}),
    # inside an optimizer step, and while a metrics record is written
    "mid-step": ("sodakit.train.optim:clip_grad_norm", 8, "", {}),
    "metrics-write": ("sodakit.train.metrics:MetricsWriter.write", 8, "", {}),
    # between the shard writes and the COMPLETE marker of step 6 (every rank's checksums arrived)
    "shards-written-before-complete": ("sodakit.train.checkpoint:write_complete_marker", 2, "", {}),
    # asynchronous saves: in the background thread while it writes step 6's first shard file (a rank
    # writes two per save), the training loop already past step 6; and before that save's COMPLETE
    "async-mid-write": ("safetensors.torch:save", 3, "", {"async_save": True}),
    "async-before-complete": ("sodakit.train.checkpoint:write_complete_marker", 2, "", {"async_save": True}),
    # the full format: rank 0 has written every file of step 6 (the commit that follows is the same code)
    "full-files-written": ("sodakit.train.checkpoint:_fsync_dir_files", 2, "", {"format": "full"}),
}


@pytest.mark.parametrize("point", sorted(TRAIN_KILLS))
def test_train_killed_then_resumed_is_exact(point, data, reference, tmp_path):
    target, n, needle, checkpoint = TRAIN_KILLS[point]
    run = tmp_path / "run"
    cfg = train_cfg(tmp_path, run, data, **checkpoint)
    killed_at(target, n, "train", cfg, needle=needle)
    assert_consistent(run)
    p = sodakit("train", cfg, "--resume", "auto")
    assert p.returncode == 0, p.stderr[-3000:]
    got = final_state(run)
    assert got["curve"] == reference["curve"]  # every step's loss and gradient norm, exactly
    assert got["step"] == reference["step"] and got["weights"] == reference["weights"]
    assert got["ranks"] == reference["ranks"]  # loader position and RNG state equal an uninterrupted run's
    assert_consistent(run)
    assert_clean(run)


def test_both_formats_hold_the_same_state_and_a_full_checkpoint_resumes_sharded(data, reference, full_reference,
                                                                                 tmp_path):
    """Weights, loss curve and saved loader and RNG state do not depend on the checkpoint format; a run
    resumed from a full-format checkpoint (what every older checkpoint is) goes on with sharded ones."""
    for key in ("curve", "step", "weights", "ranks"):
        assert full_reference[key] == reference[key], key
    old = full_reference["run_dir"] / "checkpoints" / f"step_{STEPS - EVERY:08d}"
    run = tmp_path / "run"
    p = sodakit("train", train_cfg(tmp_path, run, data), f"checkpoint.resume={old}")
    assert p.returncode == 0, p.stderr[-3000:]
    got = final_state(run)
    assert (run / "checkpoints" / f"step_{STEPS:08d}" / "shards").is_dir()
    assert got["curve"] == {s: v for s, v in reference["curve"].items() if s > STEPS - EVERY}
    assert got["weights"] == reference["weights"] and got["ranks"] == reference["ranks"]


def test_a_second_train_cannot_touch_a_live_run(data, reference, tmp_path):
    """The first run pauses with a live temp checkpoint; a second `--resume auto` on the same directory
    is refused naming it, and deletes neither that checkpoint nor metrics.jsonl."""
    run = tmp_path / "run"
    cfg = train_cfg(tmp_path, run, data)
    first = paused_at("sodakit.train.checkpoint:_fsync_dir_files", 2, "train", cfg)
    try:
        live = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-"))
        metrics = (run / "metrics.jsonl").read_bytes()
        assert live == [f".tmp-step_00000006-{first.pid}"]
        second = sodakit("train", cfg, "--resume", "auto")
        assert second.returncode == 2
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and f"is in use by another process (pid {first.pid} on host " in err[0], err
        assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")) == live
        assert (run / "metrics.jsonl").read_bytes() == metrics
    finally:
        first.kill()  # SIGKILL: the lock dies with its process
        first.wait()
        if first.stderr is not None:
            first.stderr.close()
    p = sodakit("train", cfg, "--resume", "auto")
    assert p.returncode == 0, p.stderr[-3000:]
    assert final_state(run)["curve"] == reference["curve"]
    assert_clean(run)


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "bit-flipped-weights": (WEIGHT_SHARD, _flip_a_bit, {}),
    "truncated-optimizer": (OPTIM_SHARD, _cut_in_half, {}),
    "garbled-trainer-state": ("trainer_state.json", lambda p: p.write_text("{not json"), {}),
    "full-bit-flipped-weights": ("model.safetensors", _flip_a_bit, {"format": "full"}),
    "full-truncated-optimizer": (OPTIM, _cut_in_half, {"format": "full"}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(damage, data, reference, full_reference, tmp_path):
    name, spoil, checkpoint = DAMAGE[damage]
    ref = full_reference if checkpoint.get("format") == "full" else reference
    run = tmp_path / "run"
    shutil.copytree(ref["run_dir"], run)
    cfg = train_cfg(tmp_path, run, data, **checkpoint)
    newest = run / "checkpoints" / f"step_{STEPS:08d}"
    spoil(newest / name)
    p = sodakit("train", cfg, "--resume", "auto")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"damaged checkpoint skipped: {newest / name}" in p.stderr
    assert f"resuming from {run / 'checkpoints' / f'step_{STEPS - EVERY:08d}'}" in p.stderr
    assert (run / "checkpoints" / f"damaged-step_{STEPS:08d}").is_dir()  # kept for inspection, out of the way
    got = final_state(run)
    assert got["curve"] == ref["curve"] and got["weights"] == ref["weights"]
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e.get("event") == "resume"][-1]
    assert name in resumed["skipped_checkpoints"][0]


def test_loading_a_damaged_checkpoint_names_the_file(full_reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_reference["run_dir"], run)
    newest = run / "checkpoints" / f"step_{STEPS:08d}"
    _flip_a_bit(newest / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"step_00000012/model.safetensors: sha256 .* differs"):
        load_pretrained(newest)  # named directly: no fallback
    _, info = load_pretrained(run)  # a run directory: the previous complete checkpoint, said in the notes
    assert info.path.name == f"step_{STEPS - EVERY:08d}" and "skipped a damaged checkpoint" in info.notes[0]
    (newest / "model.safetensors").write_bytes(b"\0" * 16)  # cut off: never a raw SafetensorError
    (newest / "sodakit.json").write_text((newest / "sodakit.json").read_text().replace('"weights_sha256"', '"x"'))
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        load_pretrained(newest)
    assert cli_main(["convert", "export", str(newest), str(tmp_path / "hf")]) == 2


def test_loading_a_damaged_sharded_checkpoint_names_the_shard(reference, tmp_path):
    """Loading reads (and checks) only the weight shards; each must be intact and recorded in COMPLETE."""
    run = tmp_path / "run"
    shutil.copytree(reference["run_dir"], run)
    newest = run / "checkpoints" / f"step_{STEPS:08d}"
    _flip_a_bit(newest / OPTIM_SHARD)  # optimizer state: not read to evaluate or export
    assert weights_digest(newest) == reference["weights"]
    _flip_a_bit(newest / WEIGHT_SHARD)
    with pytest.raises(CheckpointError, match=rf"step_00000012/{WEIGHT_SHARD}: sha256 .* differs"):
        load_pretrained(newest)
    _, info = load_pretrained(run)
    assert info.path.name == f"step_{STEPS - EVERY:08d}" and "skipped a damaged checkpoint" in info.notes[0]
    _flip_a_bit(newest / WEIGHT_SHARD)  # the original bytes again
    shutil.copyfile(newest / WEIGHT_SHARD, newest / "shards" / "stray.safetensors")
    with pytest.raises(CheckpointError, match="stray.safetensors: not recorded in COMPLETE"):
        load_pretrained(newest)
    assert cli_main(["convert", "export", str(newest), str(tmp_path / "hf")]) == 2


def test_old_checkpoints_without_checksums_are_still_checked(full_reference, tmp_path):
    """COMPLETE was empty before it held checksums: the sidecar's weights sha256 and the safetensors sizes."""
    from sodakit.train.checkpoint import verify_checkpoint

    ckpt = tmp_path / "step"
    shutil.copytree(full_reference["run_dir"] / "checkpoints" / f"step_{STEPS:08d}", ckpt)
    (ckpt / "COMPLETE").write_text("")
    verify_checkpoint(ckpt)
    opt = ckpt / OPTIM
    opt.write_bytes(opt.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors: \d+ bytes but its header describes \d+"):
        verify_checkpoint(ckpt)


# ---------------------------------------------------------------------------------------------------
# tokenize and pack
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenize_job(tmp_path_factory, small_mimi) -> tuple[list[str], Path]:
    """(the tokenize arguments without output=, an uninterrupted run's output)."""
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        sf.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(8000 + 2000 * i)).astype(np.float32), 16000)
        rows.append({"audio": f"u{i}.wav", "text": f"utterance {i}"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = [f"input={root / 'm.jsonl'}", f"codec={small_mimi(root / 'mimi')}", "device=cpu", "shard_size=1"]
    p = sodakit("tokenize", *common, f"output={root / 'ref'}")
    assert p.returncode == 0, p.stderr[-3000:]
    return common, root / "ref"


def _tokenize_outputs(out: Path) -> dict[str, bytes]:
    names = [*sorted(p.name for p in out.glob("segments-*.parquet")), "manifest.json", "errors.jsonl"]
    return {n: (out / n).read_bytes() for n in names}


TOKENIZE_KILLS = {
    "between-shards": ("sodakit.data.segments:write_segment_shard", 3, ""),
    "shard-rename": ("os:replace", 1, "segments-00001.parquet"),
    "manifest-write": ("sodakit.data.segments:atomic_write_text", 1, "manifest.json"),
}


@pytest.mark.parametrize("point", sorted(TOKENIZE_KILLS))
def test_tokenize_killed_then_rerun_is_identical(point, tokenize_job, tmp_path):
    common, ref = tokenize_job
    target, n, needle = TOKENIZE_KILLS[point]
    killed_at(target, n, "tokenize", *common, f"output={tmp_path / 'run'}", needle=needle)
    assert not (tmp_path / "run" / "manifest.json").exists()
    p = sodakit("tokenize", *common, f"output={tmp_path / 'run'}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert _tokenize_outputs(tmp_path / "run") == _tokenize_outputs(ref)
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.fixture(scope="module")
def pack_inputs(tmp_path_factory) -> tuple[Path, Path]:
    from sodakit.tokens.soda_tokenizer import SodaTokenizer
    from sodakit.tokens.text_tokenizer import train_bpe

    root = tmp_path_factory.mktemp("pack")
    (root / "segs").mkdir()
    make_segments_dir(root / "segs", n_recordings=24, shards=3)
    text = train_bpe([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20, vocab_size=400)
    SodaTokenizer(text).with_audio_layout(8, 2048).save_pretrained(root / "tok")
    return root / "segs", root / "tok"


@pytest.fixture(scope="module")
def pack_reference(pack_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack-ref") / "ref"
    p = sodakit(*_pack_args(pack_inputs, out))
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def _pack_args(inputs: tuple[Path, Path], out: Path) -> list[str]:
    return ["pack", f"inputs=[{inputs[0]}]", f"tokenizer={inputs[1]}", f"output={out}", "shard_tokens=1500",
            "chunk_documents=5"]


PACK_KILLS = {
    "after-a-shard": ("sodakit.data.packed:ShardWriter.finish", 3, ""),
    "shard-rename": ("os:replace", 1, "tokens-00001.bin"),
    "progress-write": ("sodakit.data.pack:atomic_write_text", 2, ".pack-progress.json"),
    "metadata-write": ("sodakit.data.pack:write_metadata", 1, ""),
}


@pytest.mark.parametrize("point", sorted(PACK_KILLS))
def test_pack_killed_then_rerun_is_identical(point, pack_inputs, pack_reference, tmp_path):
    target, n, needle = PACK_KILLS[point]
    killed_at(target, n, *_pack_args(pack_inputs, tmp_path / "run"), needle=needle)
    assert not (tmp_path / "run" / "metadata.json").exists()  # an interrupted pack never looks complete
    p = sodakit(*_pack_args(pack_inputs, tmp_path / "run"))
    assert p.returncode == 0, p.stderr[-3000:]
    ref_meta = json.loads((pack_reference / "metadata.json").read_text())
    run_meta = json.loads((tmp_path / "run" / "metadata.json").read_text())
    for meta in (ref_meta, run_meta):  # the output folder is part of the job's config and hash
        meta["config"].pop("output"), meta.pop("job_hash")
    assert run_meta == ref_meta  # the same shards (sha256), counts, documents
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in pack_reference.iterdir())


def test_a_full_disk_is_one_line_and_exit_2(pack_inputs, tmp_path):
    """A real write failure: the file-size limit (what `ulimit -f` sets) makes the shard write fail the way a
    full disk does, with an OSError from the kernel."""

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get the EFBIG error instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    p = subprocess.run([sys.executable, "-m", "sodakit", *_pack_args(pack_inputs, tmp_path / "out")], env=ENV,
                       cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    err = [line for line in p.stderr.splitlines() if line.strip() and not line.startswith("pack: ")]
    assert p.returncode == 2, p.stderr[-3000:]
    assert len(err) == 1 and err[0].startswith("sodakit pack: error: ") and "File too large" in err[0], err
    assert str(tmp_path / "out") in err[0]  # names the file being written
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_no_space_left_is_one_line_with_a_hint(pack_inputs, tmp_path, monkeypatch, capsys):
    from sodakit.data import packed

    def full(self, doc):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.tmp)

    monkeypatch.setattr(packed.ShardWriter, "add", full)
    assert cli_main(_pack_args(pack_inputs, tmp_path / "out")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "No space left on device (the disk is full: free some space" in err[0]
    assert str(tmp_path / "out") in err[0]


# ---------------------------------------------------------------------------------------------------
# bad input through the command line: exit 2 and one line naming the key or file
# ---------------------------------------------------------------------------------------------------
def _train(tmp: Path, *overrides: str) -> list[str]:
    return ["train", "configs/train_tiny.yaml", f"run_dir={tmp / 'run'}", f"data.sources=[{{path: {tmp / 'none'}}}]",
            *overrides]


BAD_INPUT = {
    "train-global-batch-0": (lambda t, d: _train(t, "global_batch=0"), "global_batch must be > 0, got 0"),
    "train-micro-batch-0": (lambda t, d: _train(t, "micro_batch=0"), "micro_batch must be > 0, got 0"),
    "train-seq-len-0": (lambda t, d: _train(t, "data.seq_len=0"), "data.seq_len must be > 0, got 0"),
    "train-steps-0": (lambda t, d: _train(t, "steps=0"), "steps must be > 0, got 0"),
    "train-checkpoint-every-0": (lambda t, d: _train(t, "checkpoint.every=0"), "checkpoint.every must be > 0"),
    "train-log-every-0": (lambda t, d: _train(t, "log.every=0"), "log.every must be > 0"),
    "train-val-batches-0": (lambda t, d: _train(t, "data.val_batches=0"), "data.val_batches must be > 0"),
    "train-warmup-frac": (lambda t, d: _train(t, "schedule.warmup_frac=1.5"), "schedule.warmup_frac must be between 0 and 1"),
    "train-beta2": (lambda t, d: _train(t, "optim.beta2=2"), "optim.beta2 must be between 0 and 1"),
    "train-keep-last": (lambda t, d: _train(t, "checkpoint.keep_last=-1"), "checkpoint.keep_last must be >= 0"),
    "train-unknown-key": (lambda t, d: _train(t, "stepz=3"), "stepz"),
    "train-wrong-type": (lambda t, d: _train(t, "steps=many"), "steps"),
    "train-missing-data": (lambda t, d: _train(t), "does not exist"),
    "train-resume-not-a-checkpoint": (lambda t, d: _train(t, f"data.sources=[{{path: {d}}}]", f"checkpoint.resume={t}"),
                                      "not a complete checkpoint"),
    "finetune-global-batch-0": (lambda t, d: ["finetune", "run", "train.global_batch=0"], "train.global_batch must be > 0"),
    "finetune-epochs-0": (lambda t, d: ["finetune", "run", "sft.epochs=0"], "sft.epochs must be > 0"),
    "pack-no-inputs": (lambda t, d: ["pack", f"output={t / 'o'}", "tokenizer=x"], "pack: no inputs"),
    "pack-missing-input": (lambda t, d: ["pack", f"inputs=[{t / 'x.txt'}]", f"output={t / 'o'}", "tokenizer=x"], "x.txt does not exist"),
    "pack-shard-tokens-0": (lambda t, d: ["pack", "shard_tokens=0"], "shard_tokens must be > 0"),
    "pack-bad-kind": (lambda t, d: ["pack", f"inputs=[{t}]", f"output={t / 'o'}", "tokenizer=x", "kind=video"], "kind must be one of"),
    "inspect-missing": (lambda t, d: ["inspect", str(t / "nothing")], "does not exist"),
    "tokenize-shard-size-0": (lambda t, d: ["tokenize", f"input={t}", f"output={t / 'o'}", "shard_size=0"], "shard_size must be > 0"),
    "tokenize-workers-0": (lambda t, d: ["tokenize", f"input={t}", f"output={t / 'o'}", "workers=0"], "workers must be > 0"),
    "tokenize-missing-input": (lambda t, d: ["tokenize", f"input={t / 'nope'}", f"output={t / 'o'}"], "no such file or directory"),
    "convert-missing": (lambda t, d: ["convert", "export", str(t / "nope"), str(t / "hf")], "does not exist"),
    "eval-missing-model": (lambda t, d: ["eval", "--model", str(t / "nope"), "--tasks", "tblimp"], "does not exist"),
    "generate-missing-model": (lambda t, d: ["generate", "asr", "--model", str(t / "nope"), str(t / "a.wav")], "does not exist"),
    "isoflop-unknown-field": (lambda t, d: ["isoflop", "plan", "no_such_field=3"], "no_such_field"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case, data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("SODAKIT_DEBUG", raising=False)
    build, expected = BAD_INPUT[case]
    argv = build(tmp_path, data)
    assert cli_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"sodakit {argv[0]}: error: "), err
    assert expected in err[0], err
