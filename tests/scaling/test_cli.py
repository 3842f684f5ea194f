"""`sodakit isoflop fit` and `predict` end to end on a synthetic results CSV."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from sodakit.cli import main as sodakit_main
from sodakit.model.config import PRESETS, count_params
from sodakit.scaling import commands
from sodakit.scaling.fit import load_fit
from sodakit.scaling.laws import CHINCHILLA
from sodakit.scaling.predict import nearest_preset

BUDGETS = np.logspace(18, 21, 4)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def results_csv(tmp_path, synth):
    return synth.write_csv(tmp_path / "results.csv", synth.sample(CHINCHILLA, BUDGETS, seed=3, n_per=6))


def test_fit_json_and_plots(results_csv, tmp_path, capsys):
    out = tmp_path / "fit"
    rc = sodakit_main(["isoflop", "fit", str(results_csv), "--out", str(out), "--bootstrap", "8", "--json"])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["format"] == "sodakit.isoflop.fit/1"
    assert rec["flop_convention"] == "6N" and rec["params_kind"] == "total"
    assert rec["data"]["sha256"] == hashlib.sha256(results_csv.read_bytes()).hexdigest()
    assert rec["data"]["n_runs"] == 24 and len(rec["data"]["budgets"]) == 4
    a2, a3 = rec["approach2"], rec["approach3"]
    assert a2["n_opt"]["exponent"] == pytest.approx(CHINCHILLA.n_exponent, abs=0.03)
    assert len(a2["n_opt"]["exponent_ci"]) == 2 and all(p["status"] == "ok" for p in a2["profiles"])
    assert a3["alpha"] == pytest.approx(0.34, abs=0.03) and a3["beta"] == pytest.approx(0.28, abs=0.03)
    assert set(a3["ci"]) >= {"E", "A", "B", "alpha", "beta", "n_exponent", "d_exponent"}
    assert rec["reference"]["soda"]["n_opt"]["exponent"] == 0.367
    assert rec["reference"]["chinchilla"]["A"] == 406.4
    assert json.loads((out / "fit.json").read_text())["approach3"]["alpha"] == a3["alpha"]
    names = sorted(p.rsplit("/", 1)[-1] for p in rec["plots"])
    assert names == ["isoflop_profiles.png", "optimal_vs_compute.png", "parametric_contours.png"]
    for n in names:
        data = (out / n).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_fit_text_summary_and_predict(results_csv, tmp_path, capsys):
    out = tmp_path / "fit"
    assert commands.main(["fit", str(results_csv), "--out", str(out), "--bootstrap", "0", "--no-plots",
                          "--approach", "2"]) == 0
    text = capsys.readouterr().out
    assert "Approach 2" in text and "N* =" in text and "Approach 3 (" not in text
    assert not list(out.glob("*.png"))
    fit = load_fit(out)
    assert fit.law is None and fit.n_opt is not None

    assert commands.main(["predict", "--fit", str(out / "fit.json"), "--flops", "1e20", "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    (alloc,) = pred["allocations"]
    assert alloc["approach"] == 2 and pred["flop_convention"] == "6N"
    assert alloc["n_opt"] == pytest.approx(fit.n_opt(1e20))
    assert alloc["tokens_per_param"] == pytest.approx(alloc["d_opt"] / alloc["n_opt"])
    assert alloc["loss_source"] == "Approach 2 L*(C) power-law trend"
    assert alloc["preset"]["name"] == nearest_preset(alloc["n_opt"], "total").name


def test_predict_both_approaches_and_extrapolation_warning(results_csv, tmp_path, capsys):
    out = tmp_path / "fit"
    assert commands.main(["fit", str(results_csv), "--out", str(out), "--bootstrap", "0", "--no-plots"]) == 0
    capsys.readouterr()
    assert commands.main(["predict", "--fit", str(out), "--flops", "1e20", "1e25"]) == 0
    text = capsys.readouterr().out
    assert text.count("Approach 2:") == 2 and text.count("Approach 3:") == 2
    assert "nearest preset" in text and "extrapolation" in text
    fit = load_fit(out)
    n3, _d3 = fit.law.optimal(1e20, fit.k)
    assert n3 == pytest.approx(CHINCHILLA.optimal(1e20)[0], rel=0.3)


def test_nearest_preset_counts_like_the_fit():
    total_17b = count_params(PRESETS["1.7B"]).total
    assert nearest_preset(total_17b * 1.1, "total").name == "1.7B"
    nonemb_4b = count_params(PRESETS["4B"]).non_embedding
    m = nearest_preset(nonemb_4b, "non_embedding")
    assert m.name == "4B" and m.ratio == pytest.approx(1.0)
    # with a small vocabulary the embeddings shrink and "tiny" counts differently
    assert nearest_preset(1e6, "total", vocab_size=256).name == "tiny"


def test_cli_errors_are_clear(results_csv, tmp_path, capsys):
    assert sodakit_main(["isoflop", "fit", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sodakit_main(["isoflop", "fit", str(results_csv), "--convention", "soda", "--no-plots", "--bootstrap", "0"]) == 2
    assert "table says FLOP convention '6N'" in capsys.readouterr().err
    assert sodakit_main(["isoflop", "fit", str(results_csv), "--params", "non_embedding", "--no-plots"]) == 2
    assert "params_nonembedding" in capsys.readouterr().err
    assert sodakit_main(["isoflop", "predict", "--fit", str(results_csv), "--flops", "1e20"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    out = tmp_path / "f"
    assert sodakit_main(["isoflop", "fit", str(results_csv), "--out", str(out), "--bootstrap", "0", "--no-plots"]) == 0
    capsys.readouterr()
    assert sodakit_main(["isoflop", "predict", "--fit", str(out), "--flops", "-5"]) == 2
    assert "positive" in capsys.readouterr().err


def test_strict_turns_warnings_into_errors(tmp_path, synth, capsys):
    obs = synth.sample(CHINCHILLA, BUDGETS, seed=0)
    keep = np.flatnonzero((obs.budget != BUDGETS[0]) | (np.arange(len(obs)) % 7 < 2))
    path = synth.write_csv(tmp_path / "r.csv", obs.subset(keep))
    assert commands.main(["fit", str(path), "--bootstrap", "0", "--no-plots", "--approach", "2"]) == 0
    cap = capsys.readouterr()
    assert "WARNING: budget 1.000e+18: only 2 run(s)" in cap.out and "WARNING" in cap.err
    assert sodakit_main(["isoflop", "fit", str(path), "--bootstrap", "0", "--no-plots", "--strict"]) == 2
    assert "only 2 run(s)" in capsys.readouterr().err


def test_fit_and_predict_take_the_key_value_grammar(results_csv, tmp_path, capsys):
    """Typed configs (key=value over an optional YAML file) give what the flags give."""
    by_flags, by_keys = tmp_path / "flags", tmp_path / "keys"
    assert commands.main(["fit", str(results_csv), "--out", str(by_flags), "--bootstrap", "0", "--no-plots",
                          "--approach", "2", "--json"]) == 0
    flags_record = json.loads(capsys.readouterr().out)
    (tmp_path / "fit.yaml").write_text("bootstrap: 0\nplots: false\napproach: [2]\n")
    assert sodakit_main(["isoflop", "fit", str(tmp_path / "fit.yaml"), f"results={results_csv}",
                         f"out={by_keys}", "json=true"]) == 0
    keys_record = json.loads(capsys.readouterr().out)
    assert keys_record["approach2"] == flags_record["approach2"]
    assert keys_record["approach3"] is None and keys_record["settings"] == flags_record["settings"]
    assert not list(by_keys.glob("*.png"))

    assert commands.main(["predict", "--fit", str(by_flags), "--flops", "1e20", "1e21", "--json"]) == 0
    flags_pred = json.loads(capsys.readouterr().out)
    assert sodakit_main(["isoflop", "predict", f"fit={by_keys}", "flops=[1e20, 1e21]", "json=true"]) == 0
    assert json.loads(capsys.readouterr().out) == flags_pred

    assert sodakit_main(["isoflop", "fit", f"results={results_csv}", "params=all", "plots=false"]) == 2
    assert "params=all: choose one of total, non_embedding" in capsys.readouterr().err
    assert sodakit_main(["isoflop", "predict", f"fit={by_keys}"]) == 2
    assert "flops=[C, ...] (or --flops C ...) is required" in capsys.readouterr().err
