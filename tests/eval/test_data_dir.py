"""Tasks find default data only where the user says: $SODAKIT_DATA, never a folder beside the checkout."""

from __future__ import annotations

import pytest

from sodakit.eval.bench_data import BenchDataConfig, build_bench_data
from sodakit.eval.data_dir import BLIMP_FILE, HELLASWAG_FILE, default_data
from sodakit.eval.tasks import TaskError, get_task


@pytest.mark.parametrize("task", ["tblimp", "hellaswag"])
def test_without_sodakit_data_a_task_says_what_to_pass(monkeypatch, task):
    monkeypatch.delenv("SODAKIT_DATA", raising=False)
    spec = get_task(task)
    assert spec.default_data() is None
    with pytest.raises(TaskError, match=rf"task {task} needs data: pass --data {task}=PATH .*\$SODAKIT_DATA/"):
        spec.run(None, None)  # the data check comes first; no model is needed to fail it


def test_sodakit_data_names_the_default_files(monkeypatch, tmp_path):
    monkeypatch.setenv("SODAKIT_DATA", str(tmp_path))
    assert get_task("tblimp").default_data() == default_data(BLIMP_FILE) == tmp_path / "blimp" / "blimp_data_jsonl.tar.xz"
    assert get_task("hellaswag").default_data() == tmp_path / "hellaswag" / "hellaswag_val_full.txt.bz2"
    assert default_data(HELLASWAG_FILE) == tmp_path / HELLASWAG_FILE
    with pytest.raises(TaskError, match="does not exist"):  # set, but the file is not there: named
        get_task("tblimp").run(None, None)


def test_bench_data_without_sodakit_data_uses_template_pairs(monkeypatch, tmp_path):
    monkeypatch.delenv("SODAKIT_DATA", raising=False)
    cfg = BenchDataConfig(out=str(tmp_path / "bench"), sets=("sblimp",), blimp_pairs=6, voices=1, hf_layout=False)
    record = build_bench_data(cfg, log=lambda m: None)
    assert record["sets"]["sblimp"]["source"].endswith("blimp-templates")
