"""`isoflop run`: a tiny plan trains end to end, restarts skip finished runs, an interrupted run resumes from
its checkpoint, the table feeds `isoflop fit`, and bad input (vocabulary, data, table) is refused."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sodakit.scaling import commands
from sodakit.scaling import run as R
from sodakit.scaling.plan import plan_sweep, read_plan, write_plan
from sodakit.scaling.results import ResultsError, read_results

from .conftest import make_packed, tiny_rules

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def settings(tmp: Path, packed, **kw) -> R.RunSettings:
    base = dict(data=[(str(packed.speech), 0.95), (str(packed.text), 0.05)], val=str(packed.val),
                results=tmp / "results.csv", runs_dir=tmp / "runs")
    base.update(kw)
    return R.RunSettings(**base)


@pytest.fixture
def plan_dir(tmp_path, packed_data) -> Path:
    write_plan(plan_sweep(tiny_rules(packed_data.vocab.size)), tmp_path)
    return tmp_path


def test_tiny_plan_runs_restarts_and_fits(plan_dir, packed_data, capsys):
    plan = read_plan(plan_dir)
    assert [len(plan.runs_for(b)) for b in plan.rules.budgets] == [3, 3]
    data = [f"{packed_data.speech}:0.95", f"{packed_data.text}:0.05"]
    argv = ["run", str(plan_dir), "--data", *data, "--val", str(packed_data.val)]
    # a first invocation stops after 4 runs, as a crash between runs would
    assert commands.main([*argv, "--max-runs", "4"]) == 0
    # progress per run of the sweep, as a plain line in a captured (non-terminal) stderr
    assert "isoflop run:  67% 4/6 [" in capsys.readouterr().err
    first = rows(plan_dir / "results.csv")
    assert [r["run_id"] for r in first] == [r.run_id for r in plan.runs[:4]]
    # the restart trains only the 2 missing runs and leaves the finished rows untouched
    assert commands.main(argv) == 0
    assert "trained 2, skipped 4 finished" in capsys.readouterr().out
    table = rows(plan_dir / "results.csv")
    assert table[:4] == first and len(table) == 6
    assert commands.main(argv) == 0
    assert "trained 0, skipped 6 finished" in capsys.readouterr().out

    for row, spec in zip(table, plan.runs):
        assert row["run_id"] == spec.run_id and row["status"] == "ok"
        assert int(row["params"]) == spec.params and int(row["params_nonembedding"]) == spec.params_nonembedding
        assert int(row["tokens"]) == spec.steps * spec.batch * spec.seq_len == spec.tokens
        assert float(row["flops"]) == pytest.approx(spec.achieved_flops, rel=1e-12)
        assert row["flop_convention"] == "soda" and float(row["budget"]) == spec.budget
        for col in ("loss", "loss_text", "loss_marker", "loss_audio", "loss_semantic", "train_loss"):
            assert 0 < float(row[col]) < 2 * math.log(packed_data.vocab.size), (col, row)
        # each run's metrics record the same validation loss as the table
        metrics = [json.loads(x) for x in (plan_dir / "runs" / spec.run_id / "metrics.jsonl").read_text().splitlines()]
        assert [m["val_loss"] for m in metrics if "val_loss" in m] == [float(row["loss"])]
        assert not (plan_dir / "runs" / spec.run_id / "checkpoints").exists()  # removed once recorded

    obs = read_results(plan_dir / "results.csv")
    assert obs.flop_convention == "soda" and obs.budgets == [1.2e8, 3e8] and len(obs) == 6
    fit_out = plan_dir / "fit"
    assert commands.main(["fit", str(plan_dir / "results.csv"), "--approach", "3", "--bootstrap", "0",
                          "--no-plots", "--out", str(fit_out)]) == 0
    fit = json.loads((fit_out / "fit.json").read_text())
    assert fit["data"]["n_runs"] == 6 and fit["flop_convention"] == "soda"


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, packed_data, monkeypatch):
    write_plan(plan_sweep(tiny_rules(packed_data.vocab.size, budgets=[3e8])), tmp_path)
    spec = max(read_plan(tmp_path).runs, key=lambda r: r.steps)
    assert spec.steps >= 3
    ref_dir = tmp_path / "ref"
    R.run_plan(tmp_path, settings(ref_dir, packed_data, only=[spec.run_id]))
    reference = rows(ref_dir / "results.csv")[0]

    import sodakit.train.trainer as T

    real_train = T.train

    class Crash(Exception):
        pass

    def crashing(cfg, source=None, on_step=None):
        def hook(step, record):
            if step == 2:  # on_step runs before the step's checkpoint: checkpoint 1 is the newest
                raise Crash
        return real_train(cfg, source, hook)

    monkeypatch.setattr(T, "train", crashing)
    s = settings(tmp_path / "crash", packed_data, only=[spec.run_id], checkpoint_every=1)
    with pytest.raises(Crash):
        R.run_plan(tmp_path, s)
    assert not (tmp_path / "crash" / "results.csv").exists()
    monkeypatch.setattr(T, "train", real_train)
    R.run_plan(tmp_path, s)
    resumed = rows(tmp_path / "crash" / "results.csv")[0]
    assert resumed["resumed_from_step"] == "1" and reference["resumed_from_step"] == "0"
    for col in ("loss", "loss_text", "loss_audio", "train_loss"):
        assert float(resumed[col]) == pytest.approx(float(reference[col]), rel=1e-5), col


def test_finished_run_without_row_is_recorded_from_its_metrics(tmp_path, packed_data, monkeypatch):
    """A crash after the last checkpoint but before the row: the restart trains nothing and records the
    validation loss the engine wrote; without that record it scores the final checkpoint instead."""
    write_plan(plan_sweep(tiny_rules(packed_data.vocab.size, budgets=[1.2e8])), tmp_path)
    spec = read_plan(tmp_path).runs[0]
    s = settings(tmp_path, packed_data, only=[spec.run_id])
    real_append = R.append_row

    def crash(*a, **k):
        raise RuntimeError("crash before the row")

    monkeypatch.setattr(R, "append_row", crash)
    with pytest.raises(RuntimeError, match="crash before the row"):
        R.run_plan(tmp_path, s)
    monkeypatch.setattr(R, "append_row", real_append)
    metrics = tmp_path / "runs" / spec.run_id / "metrics.jsonl"
    recorded = [json.loads(x)["val_loss"] for x in metrics.read_text().splitlines() if "val_loss" in x]
    s.keep_checkpoints = True
    R.run_plan(tmp_path, s)
    row = rows(tmp_path / "results.csv")[0]
    assert float(row["loss"]) == recorded[-1] and row["resumed_from_step"] == str(spec.steps)

    # no validation record at all: the final checkpoint is scored again, to the same loss
    (tmp_path / "results.csv").unlink()
    metrics.write_text("".join(x + "\n" for x in metrics.read_text().splitlines() if "val_loss" not in x))
    R.run_plan(tmp_path, s)
    assert float(rows(tmp_path / "results.csv")[0]["loss"]) == pytest.approx(recorded[-1], rel=1e-5)


def test_diverged_run_is_recorded_and_not_retried(tmp_path, packed_data, monkeypatch):
    write_plan(plan_sweep(tiny_rules(packed_data.vocab.size, budgets=[1.2e8])), tmp_path)
    plan = read_plan(tmp_path)
    import sodakit.train.trainer as T

    real_train = T.train
    bad = plan.runs[1].run_id

    def maybe_diverge(cfg, source=None, on_step=None):
        if Path(cfg.run_dir).name == bad:
            raise T.NonFiniteLossError("non-finite loss at step 1")
        return real_train(cfg, source, on_step)

    monkeypatch.setattr(T, "train", maybe_diverge)
    out = R.run_plan(tmp_path, settings(tmp_path, packed_data))
    assert out.diverged == [bad] and len(out.trained) == 2
    table = {r["run_id"]: r for r in rows(tmp_path / "results.csv")}
    assert table[bad]["status"] == "diverged" and table[bad]["loss"] == "nan"
    assert R.run_plan(tmp_path, settings(tmp_path, packed_data)).skipped == [r.run_id for r in plan.runs]
    with pytest.raises(ResultsError, match=f"{bad}.*--drop-invalid"):
        read_results(tmp_path / "results.csv")
    obs = read_results(tmp_path / "results.csv", drop_invalid=True)
    assert len(obs) == 2 and bad in obs.warnings[0]


def test_refuses_a_vocabulary_other_than_the_plans(tmp_path, packed_data, capsys):
    write_plan(plan_sweep(tiny_rules(packed_data.vocab.size + 28)), tmp_path)
    from sodakit.cli import main as sodakit_main

    rc = sodakit_main(["isoflop", "run", str(tmp_path), "--data", str(packed_data.speech), "--val", str(packed_data.val)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"vocabulary of {packed_data.vocab.size} ids" in err and f"vocab_size={packed_data.vocab.size}" in err
    assert not (tmp_path / "runs").exists()


def test_refuses_other_layouts_missing_data_and_foreign_tables(plan_dir, packed_data, tmp_path_factory):
    from sodakit.tokens.vocab import Vocab

    other = tmp_path_factory.mktemp("other")
    # same size, different layout (4 codebooks of 8 instead of 2 of 16): refused
    odd = make_packed(other / "odd", 20, seed=3, vocab=Vocab(text_vocab_size=64, bos_id=1, eos_id=2,
                                                               num_codebooks=4, codebook_size=8))
    with pytest.raises(R.RunError, match="share one layout"):
        R.run_plan(plan_dir, settings(plan_dir, packed_data, val=str(odd)))
    with pytest.raises(R.RunError, match="cannot open packed dataset"):
        R.run_plan(plan_dir, settings(plan_dir, packed_data, val=str(other / "missing")))
    with pytest.raises(R.RunError, match="not in the plan"):
        R.run_plan(plan_dir, settings(plan_dir, packed_data, only=["nope"]))
    # rows recorded on other data are not silently reused
    first = read_plan(plan_dir).runs[0].run_id
    R.run_plan(plan_dir, settings(plan_dir, packed_data, only=[first]))
    with pytest.raises(R.RunError, match="trained on other data"):
        R.run_plan(plan_dir, settings(plan_dir, packed_data, data=[(str(packed_data.speech), 1.0)], only=[first]))
    # a table that is not ours
    (plan_dir / "foreign.csv").write_text("run_id,loss\nx,1.0\n")
    with pytest.raises(R.RunError, match="not an `isoflop run` table"):
        R.run_plan(plan_dir, settings(plan_dir, packed_data, results=plan_dir / "foreign.csv"))


APPEND_MANY = """
import sys
from pathlib import Path
from sodakit.scaling import run as R
path, worker, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    R.append_row(path, {c: "" for c in R.RESULT_COLUMNS} | {"run_id": f"w{worker}-{i}", "loss": 1.0})
"""


def test_append_row_is_atomic_under_concurrent_writers(tmp_path):
    path = tmp_path / "results.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", APPEND_MANY, str(path), str(w), "15"], env=env) for w in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    ids = [r["run_id"] for r in rows(path)]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(3) for i in range(15))
    with pytest.raises(R.RunError, match="already has a row"):
        R.append_row(path, {c: "" for c in R.RESULT_COLUMNS} | {"run_id": "w0-0"})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_a_claimed_run_is_left_to_its_process(plan_dir, packed_data, capsys):
    """Several sweeps may share one plan: a run another process has claimed is skipped, then trained once
    the claim is gone (claims are flocks, so a crashed process leaves none behind)."""
    plan = read_plan(plan_dir)
    argv = ["run", str(plan_dir), "--data", f"{packed_data.speech}:0.95", f"{packed_data.text}:0.05",
            "--val", str(packed_data.val)]
    held = R._claim_run(plan_dir / "runs", plan.runs[0].run_id)  # "another process" trains run 0
    assert held is not None and R._claim_run(plan_dir / "runs", plan.runs[0].run_id) is None
    assert commands.main(argv) == 0
    out = capsys.readouterr()
    assert "trained 5, skipped 0 finished, diverged 0, left 1 to other processes" in out.out
    assert "taken by another process" in out.err
    assert sorted(r["run_id"] for r in rows(plan_dir / "results.csv")) == sorted(r.run_id for r in plan.runs[1:])
    held.close()
    assert commands.main(argv) == 0
    assert "trained 1, skipped 5 finished" in capsys.readouterr().out


def test_two_processes_share_one_plan(plan_dir, packed_data):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, "-m", "sodakit", "isoflop", "run", str(plan_dir), "--data",
            f"{packed_data.speech}:0.95", f"{packed_data.text}:0.05", "--val", str(packed_data.val)]
    procs = [subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    trained = [int(out.split("trained ")[1].split(",")[0]) for out, _ in outs]
    ids = [r["run_id"] for r in rows(plan_dir / "results.csv")]
    plan = read_plan(plan_dir)
    # every run once, trained by exactly one of the two (however their timing interleaved)
    assert sorted(ids) == sorted(r.run_id for r in plan.runs) and sum(trained) == len(plan.runs)


def test_parse_data_arg():
    assert R.parse_data_arg("a/b:0.25") == ("a/b", 0.25)
    assert R.parse_data_arg("a/b") == ("a/b", 1.0)
    assert R.parse_data_arg("c:/x") == ("c:/x", 1.0)
    with pytest.raises(R.RunError, match="positive"):
        R.parse_data_arg("a:-1")


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun + gloo test written for Linux")
def test_torchrun_two_ranks_match_one_process(plan_dir, packed_data):
    """Every rank runs the sweep; rank 0 writes the rows; losses equal the 1-process sweep's."""
    plan = read_plan(plan_dir)
    only = [plan.runs[3].run_id]  # global batch 32: 16 per rank
    one = settings(plan_dir / "one", packed_data, only=only)
    R.run_plan(plan_dir, one)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sodakit",
         "isoflop", "run", str(plan_dir), "--data", f"{packed_data.speech}:0.95", f"{packed_data.text}:0.05",
         "--val", str(packed_data.val), "--results", str(plan_dir / "two.csv"), "--runs-dir",
         str(plan_dir / "two"), "--only", *only],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = rows(one.results), rows(plan_dir / "two.csv")
    assert [r["run_id"] for r in b] == only and b[0]["world_size"] == "2" and a[0]["world_size"] == "1"
    for ra, rb in zip(a, b):
        for col in ("loss", "loss_audio", "train_loss"):
            assert float(rb[col]) == pytest.approx(float(ra[col]), rel=1e-4), col


def test_refuses_a_hand_edited_plan_row(plan_dir, packed_data):
    data = json.loads((plan_dir / "plan.json").read_text())
    data["runs"][0]["params"] += 1
    (plan_dir / "plan.json").write_text(json.dumps(data))
    with pytest.raises(R.RunError, match="do not match its shape"):
        R.run_plan(plan_dir, settings(plan_dir, packed_data))
    assert not (plan_dir / "runs").exists()
