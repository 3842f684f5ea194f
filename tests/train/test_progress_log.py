"""`sodakit train` with stderr redirected to a log: throttled status lines, validation on the console."""

from __future__ import annotations

import re
import time

from sodakit.cli import main as cli_main
from sodakit.progress import INTERVAL_ENV

from .test_trainer import SMALL


def _args(run_dir, packed, steps: int) -> list[str]:
    overrides = ",".join(f"{k}: {v}" for k, v in SMALL.items())
    return ["train", f"run_dir={run_dir}", f"steps={steps}", "global_batch=8", "micro_batch=8", "precision=fp32",
            "device=cpu", f"data.sources=[{{path: {packed[0]}}}]", f"data.val_path={packed[1]}", "data.seq_len=64",
            "data.val_batches=1", "model.preset=tiny", f"model.overrides={{{overrides}}}", "log.every=5",
            "log.val_every=20", "log.tensorboard=false", "checkpoint.every=1000", "optim.lr=0.003"]


def test_a_redirected_train_log_has_one_status_line_per_interval(packed, tmp_path, capsys, monkeypatch):
    interval = 0.2
    monkeypatch.setenv(INTERVAL_ENV, str(interval))
    t0 = time.monotonic()
    assert cli_main(_args(tmp_path / "run", packed, steps=60)) == 0
    wall = time.monotonic() - t0
    err = capsys.readouterr().err
    assert "\r" not in err  # no redraws in a file
    status = [line for line in err.splitlines() if re.match(r"train: +\d+% \d+/60 \[", line)]
    # periodic lines at most one per interval, plus the closing one
    assert 1 <= len(status) <= wall / interval + 1, err
    assert status[-1].startswith("train: 100% 60/60 [") and "loss=" in status[-1]
    # where it runs, and every validation as one line when it is computed
    assert "parameters on cpu (device=cpu, 1 rank(s), fp32), 60 steps" in err
    vals = [line for line in err.splitlines() if line.startswith("train: step ") and "validation loss" in line]
    assert [v.split()[2] for v in vals] == ["20", "40", "60"] and "audio" in vals[0]


def test_quiet_train_prints_validation_but_no_progress(packed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.001")
    assert cli_main([*_args(tmp_path / "run", packed, steps=20), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert not re.search(r"train: +\d+%", err)
    assert "train: step 20 validation loss" in err
