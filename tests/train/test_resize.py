"""A run that changes its number of ranks on the way (torchrun, gloo): 2 -> 3 -> 1 -> 2 ranks over sharded
checkpoints draws, at every global step, exactly the token ids of an uninterrupted 2-rank run, with the same
losses up to float summation order; its sharded checkpoint exports to a Hugging Face directory whose logits
equal the live model's; a rank SIGKILLed during an asynchronous save leaves the previous checkpoint, which
resumes on 3 ranks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sodakit.cli import main as cli_main
from sodakit.model.load import list_checkpoints, load_pretrained

from ..reliability.killpoints import rank_killed_at
from .conftest import VOCAB
from .test_resume_distributed import DP_RTOL, ENV, REPO, curve, write_cfg

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="torchrun + gloo test written for Linux")

GLOBAL, MICRO, STEPS = 12, 2, 8  # 12 sequences per step: 6, 3 or 2 micro-batches of 2 per rank on 1, 2 or 3 ranks
SCRIPT = Path(__file__).with_name("dist_train.py")


def dist_train(nproc: int, out: Path, cfg: Path, *overrides: str) -> None:
    """tests/train/dist_train.py under torchrun: the run, plus each rank's batches (and the live logits)."""
    out.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                        str(SCRIPT), str(out), str(cfg), *overrides], env=ENV, cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]


def step_batches(out: Path, nproc: int, first_step: int) -> dict[int, list[bytes]]:
    """{global step: the step's sequences over all ranks, sorted} from the batches the ranks recorded."""
    accum = GLOBAL // (MICRO * nproc)
    steps: dict[int, list[bytes]] = {}
    for rank in range(nproc):
        calls = np.load(out / f"batches-rank{rank}.npy")
        for i, batch in enumerate(calls):
            steps.setdefault(first_step + i // accum + 1, []).extend(row.tobytes() for row in batch)
    return {s: sorted(rows) for s, rows in steps.items()}


def config(tmp: Path, name: str, data: Path, **checkpoint) -> Path:
    return write_cfg(tmp / f"{name}.yaml", tmp / name, data, steps=STEPS, global_batch=GLOBAL, micro_batch=MICRO,
                     schedule={"kind": "constant", "warmup_steps": 0},  # so a run can stop early and go on
                     checkpoint={"every": 100, **checkpoint})


@pytest.fixture(scope="module")
def reference(packed, tmp_path_factory) -> dict:
    """An uninterrupted 2-rank run: its curve and each global step's sequences."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    dist_train(2, tmp / "out", config(tmp, "run", packed[0]))
    return {"curve": curve(tmp / "run"), "batches": step_batches(tmp / "out", 2, 0), "run_dir": tmp / "run"}


def assert_same_run(curve_: dict, batches: dict[int, list[bytes]], reference: dict, steps: range) -> None:
    for step in steps:
        assert len(batches[step]) == GLOBAL and batches[step] == reference["batches"][step], f"step {step}"
        loss, grad_norm = curve_[step]
        assert loss == pytest.approx(reference["curve"][step][0], rel=DP_RTOL), step
        assert grad_norm == pytest.approx(reference["curve"][step][1], rel=DP_RTOL), step


def test_resizing_2_3_1_2_ranks_continues_the_same_run_and_exports(packed, reference, tmp_path):
    cfg = config(tmp_path, "run", packed[0])
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    segments = [(2, 2, ["checkpoint.async_save=true"]), (3, 4, []), (1, 6, []), (2, 8, [])]
    batches: dict[int, list[bytes]] = {}
    done = 0
    for i, (nproc, until, extra) in enumerate(segments):
        out = tmp_path / f"segment{i}"
        if until == STEPS:  # the live model of the last segment computes logits for the export check
            out.mkdir()
            np.save(out / "probe.npy", rng.integers(0, VOCAB.size, (2, 24)))
        dist_train(nproc, out, cfg, f"steps={until}", *(["checkpoint.resume=auto"] if done else []), *extra)
        batches.update(step_batches(out, nproc, done))
        done = until
    assert_same_run(curve(run), batches, reference, range(1, STEPS + 1))
    resumes = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"resume"' in line]
    assert [(r["resized_from"], r["world_size"]) for r in resumes] == [(2, 3), (3, 1), (1, 2)]
    # consolidation: the sharded checkpoint of 2 ranks, read back in one process, exported to HF
    (last,) = list_checkpoints(run)[-1:]
    assert (last / "shards").is_dir() and json.loads((last / "trainer_state.json").read_text())["world_size"] == 2
    live = torch.from_numpy(np.load(tmp_path / "segment3" / "logits.npy"))
    probe = torch.from_numpy(np.load(tmp_path / "segment3" / "probe.npy"))
    model, info = load_pretrained(run)
    assert info.path == last
    with torch.no_grad():
        assert torch.equal(model(probe), live)  # the same weights and the same code: bit for bit
    assert cli_main(["convert", "export", str(run), str(tmp_path / "hf")]) == 0
    transformers = pytest.importorskip("transformers")
    hf = transformers.Qwen3ForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    with torch.no_grad():
        exported = hf(probe).logits
    assert (exported - live).abs().max().item() <= 1e-4  # transformers' own implementation of the model


def test_a_rank_killed_during_an_async_save_resumes_on_three_ranks(packed, reference, tmp_path):
    cfg = config(tmp_path, "run", packed[0], every=2, async_save=True)
    run = tmp_path / "run"
    # each rank writes two shard files per save: call 3 is rank 1's first file of step 4's checkpoint
    rank_killed_at("safetensors.torch:save", 3, 2, 1, "train", str(cfg), "steps=6")
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002"]
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-step_00000004")]
    out = tmp_path / "resumed"
    dist_train(3, out, cfg, "steps=6", "checkpoint.resume=auto")
    assert_same_run(curve(run), step_batches(out, 3, 2), reference, range(3, 7))
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002", "step_00000004", "step_00000006"]
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_global_batch_the_new_world_size_cannot_split_is_refused(packed, reference, tmp_path, capsys):
    cfg = config(tmp_path, "run", packed[0])
    shutil.copytree(reference["run_dir"], tmp_path / "run")  # a checkpoint of 2 ranks
    assert cli_main(["train", str(cfg), "--resume", "auto", "micro_batch=5", "steps=9"]) == 2
    err = capsys.readouterr().err
    assert "global_batch 12 is not a multiple of micro_batch x world_size = 5 x 1" in err
    assert "(written by 2 ranks) on 1 keeps the global batch, so choose a micro_batch that divides 12 / 1" in err
