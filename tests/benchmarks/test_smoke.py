"""The benchmark scripts still run: each one as a subprocess with its smallest arguments (seconds each).

Numbers are not checked (a tiny run measures nothing); exit code 0, the printed comparison table and any
JSON output are. Also the GPU-session script: its syntax, its dry run (every flag it passes exists in the
script's --help) and its step bookkeeping with a stand-in interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
SESSION = BENCH / "gpu_session.sh"

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO / "src")}
    env.update(extra)
    return env


def run_bench(script: str, *args: str, timeout: float = 180, **env: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_bench_tokenize():
    out = run_bench("bench_tokenize.py", "--docs", "10", "--segments", "2", "--repeats", "1")
    assert "identical output: True" in out
    assert "tokens/s   ratio" in out
    assert "sodakit encode_batch" in out and "tokenizers encode (1 by 1)" in out


def test_bench_loader():
    out = run_bench("bench_loader.py", "--tokens", "1000000", "--batch", "2", "--seq-len", "256", "--seconds", "0.2")
    (head,) = json_lines(out)
    assert head == {"seq_len": 256, "batch": 2, "dataset_tokens": 1_000_000}
    assert "vs ceiling" in out and "MixtureLoader.next_batch" in out and "goal >= 20,000,000 tokens/s" in out


def _speed_keys(row: dict) -> None:
    assert set(row) == {"audio_s", "encode_batched_x", "encode_single_x", "batch_speedup", "decode_batched_x"}
    assert all(v > 0 for v in row.values())


def test_bench_codec_mimi_speed_only(tmp_path):
    # The GPU session's codec step, on the CPU: Mimi only, synthetic clips (no flite), no fit, no WER.
    out = run_bench("bench_codec.py", "--skip-fit", "--skip-wer", "--synthetic-clips", "--clips", "2",
                    "--clip-seconds", "1", "--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "c.json"))
    assert "| codec | audio s | encode batched | encode one-by-one | batched / one-by-one | decode batched |" in out
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["device"] == "cpu" and res["clips"] == "synthetic noise"
    (name,) = res["speed"]
    assert name.startswith("mimi (random-init, full size, float32)")
    _speed_keys(res["speed"][name])


@needs_flite
@needs_espeak
def test_bench_codec_offline_fit_and_wer(tmp_path, shared_data):
    if not (shared_data / "hellaswag" / "hellaswag_val_full.txt.bz2").is_file():
        pytest.skip("no hellaswag text in the shared data (the fit corpus)")
    pytest.importorskip("pocketsphinx")
    out = run_bench("bench_codec.py", "--skip-mimi", "--clips", "2", "--clip-seconds", "1", "--fit-hours", "0.003",
                    "--set", "codebook_size=64", "kmeans_iters=2", "--eval-clips", "1",
                    "--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "c.json"),
                    SODAKIT_DATA=str(shared_data))
    assert "encode ratio" not in out  # one codec only
    assert "offline codec fit:" in out and "offline codec bitrate:" in out
    assert "| set | clips | audio s | WER original | WER resynth | delta (points) |" in out
    res = json.loads((tmp_path / "c.json").read_text())
    _speed_keys(res["speed"]["offline codec (CPU)"])
    assert res["offline_config"]["codebook_size"] == 64
    assert {"audio_hours", "frames", "wall_s"} <= set(res["offline_fit"])
    assert res["offline_bitrate_bps"] > 0
    assert res["offline_wer"] and all(r["clips"] == 1 for r in res["offline_wer"])
    assert {"set", "wer_original", "wer_resynth", "delta_points"} <= set(res["offline_wer"][0])


def test_bench_train_smoke():
    out = run_bench("bench_train.py", "--smoke", "--dtype", "fp32", "--steps", "1", "--preset", "tiny", "--seq", "64")
    assert "ours tok/s" in out and "speedup" in out
    assert "tiny, vocab 8192, B1 x 64" in out and "135M" not in out
    assert "peak memory of one training step: tiny, 1 x 64 tokens" in out and "peak RSS ours" in out


def test_bench_generate():
    out = run_bench("bench_generate.py", "--shapes", "tiny", "--batches", "1", "--new-tokens", "tiny=4", "--repeats", "1")
    rows = json_lines(out)
    assert [r["kind"] for r in rows] == ["free", "text", "audio"]
    assert all(r["identical"] and r["new_tokens"] == 4 and r["speedup"] > 0 for r in rows)
    assert "ours_rtf" in rows[-1]
    assert "ours tok/s" in out and "speedup" in out and "RTF ours/hf" in out


def test_bench_eval():
    out = run_bench("bench_eval.py", "--pairs", "4", "--layout", "small", "--batches", "1,4", "--threads", "1")
    (head,) = json_lines(out)
    assert head["pairs"] == 4 and head["layout"] == "small" and head["device"] == "cpu"
    assert "vs batch 1" in out and "max |dmean|" in out
    assert "batch 1 (peer: per-item)" in out and "batch 4 (sodakit)" in out


def test_gpu_train_on_cpu(tmp_path):
    out = run_bench("gpu_train.py", "--device", "cpu", "--models", "tiny", "--steps", "1", "--warmup", "0",
                    "--batch", "1", "--seq", "64", "--no-compile", "--json", str(tmp_path / "t.json"))
    assert "tok/s" in out and "MFU(6N)" in out and "peak mem" in out
    (r,) = json.loads((tmp_path / "t.json").read_text())
    assert (r["model"], r["batch"], r["seq"], r["compile"]) == ("tiny", 1, 64, False)
    assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["peak_flops"] > 0
    assert {"mfu_6N", "step_s", "params", "peak_source", "peak_mem_gib"} <= set(r)


def test_gpu_train_document_masking_on_cpu(tmp_path):
    # FlexAttention has no backward on the CPU: the dense mask and plain causal attention only, here.
    out = run_bench("gpu_train.py", "--device", "cpu", "--models", "tiny", "--steps", "1", "--warmup", "0",
                    "--batch", "1", "--seq", "64", "--no-compile", "--document-masking", "none", "dense",
                    "--doc-len", "16", "--json", str(tmp_path / "t.json"))
    assert "mask" in out
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [r["document_masking"] for r in rows] == ["none", "dense"]
    assert rows[0]["documents_per_row"] == 1.0 and rows[1]["documents_per_row"] > 1


def test_bench_checkpoint():
    out = run_bench("bench_checkpoint.py", "--preset", "tiny", "--layers", "1", "--vocab", "512", "--repeats", "1",
                    timeout=300)
    (head,) = json_lines(out)
    assert head["ranks"] == 2 and head["backend"] == "gloo" and head["layers"] == 1
    assert "| method | loop blocked s | until committed s | blocked vs full gather | committed vs full gather |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| full gather", "| DCP"))]
    assert [r.split(" | ")[0] for r in rows] == ["| full gather", "| DCP sync", "| DCP async"]
    assert rows[0].endswith("| 1.00x | 1.00x |")


def test_gpu_env(tmp_path):
    out = run_bench("gpu_env.py", "--json", str(tmp_path / "env.json"))
    assert "missing: none" in out
    info = json.loads((tmp_path / "env.json").read_text())
    assert info["missing"] == [] and "torch" in info and "cuda_available" in info


# --- benchmarks/gpu_session.sh ---------------------------------------------------------------------------


def test_gpu_session_syntax():
    assert os.access(SESSION, os.X_OK)
    subprocess.run(["bash", "-n", str(SESSION)], check=True)


def _session(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SESSION)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(tmp_path / "out"), **env})


def _help(script: str) -> str:
    return run_bench(script, "--help", timeout=60)


def test_gpu_session_dry_run_uses_only_existing_flags(tmp_path):
    # No PYTHON: the script picks an interpreter with torch itself (.venv/bin/python here, python3 on a GPU box).
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    proc = subprocess.run(["bash", str(SESSION)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**env, "OUT": str(tmp_path / "out"), "DRY_RUN": "1"})
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    steps: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("DRY_RUN ["):
            name, cmd = line[len("DRY_RUN ["):].split("]", 1)
            steps[name] = shlex.split(cmd.split(": ", 1)[1])
    assert list(steps) == ["nvidia_smi", "versions", "train_600M", "train_600M_nocompile", "train_135M", "docmask",
                           "checkpoint", "codec_fp32"]
    assert "[generate] skipped" in proc.stdout  # bench_generate.py has no --device option
    helps: dict[str, str] = {}
    for name, argv in steps.items():
        scripts = [a for a in argv if a.startswith("benchmarks/") and a.endswith(".py")]
        if name == "nvidia_smi":
            assert argv == ["nvidia-smi"]
            continue
        assert Path(argv[0]).name.startswith("python") and len(scripts) == 1, (name, argv)
        script = Path(scripts[0]).name
        helps.setdefault(script, _help(script))
        for flag in (a.split("=", 1)[0] for a in argv if a.startswith("--")):
            assert flag in helps[script], f"{name}: {script} has no {flag}"
        if "--json" in argv:
            assert Path(argv[argv.index("--json") + 1]).parent == tmp_path / "out"
    assert {"--device", "cuda", "--skip-fit", "--skip-wer"} <= set(steps["codec_fp32"])
    for name in ("train_600M", "train_135M"):
        assert argv_value(steps[name], "--seq") == "4096" and "--no-compile" not in steps[name]
    assert argv_value(steps["train_600M"], "--models") == "600M"
    assert argv_value(steps["train_135M"], "--models") == "135M"
    docmask = steps["docmask"]
    masks = docmask[docmask.index("--document-masking") + 1 : docmask.index("--doc-len")]
    assert masks == ["none", "flex", "dense"] and argv_value(docmask, "--seq") == "4096"
    assert argv_value(steps["checkpoint"], "--device") == "cuda" and argv_value(steps["checkpoint"], "--preset") == "600M"
    assert argv_value(steps["train_600M_nocompile"], "--json") == argv_value(steps["train_600M"], "--json")
    budget = re.search(r'TOTAL_S="\$\{TOTAL_S:-(\d+)\}"', SESSION.read_text())
    assert budget and int(budget.group(1)) <= 8 * 60  # one run of at most 8 minutes


def argv_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_gpu_session_records_every_step_and_keeps_going(tmp_path):
    # `false` as the interpreter: every Python step fails at once; the session must log each exit code,
    # run the no-compile fallback for 600M, go on to the later steps and write summary.json.
    proc = _session(tmp_path, PYTHON="false")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["nvidia_smi", "versions", "train_600M", "train_600M_nocompile", "train_135M", "docmask",
                           "checkpoint", "codec_fp32"]
    assert all(steps[n]["rc"] == 1 for n in list(steps)[1:])
    assert steps["train_600M"]["limit_s"] == 140 and summary["python"] == "false"
    log = (out / "session.log").read_text()
    assert "== [codec_fp32] exit 1 after" in log and "[generate] skipped" in log
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back


def test_gpu_session_stops_at_its_deadline(tmp_path):
    proc = _session(tmp_path, PYTHON="false", TOTAL_S="0")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["steps"] and all(s.get("skipped") for s in summary["steps"])


def test_gpu_session_timeout_is_logged(tmp_path):
    # A step that outlives its limit is killed and marked; the deadline caps the per-step limit (here 15 s).
    fake = tmp_path / "slow-python"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    proc = _session(tmp_path, PYTHON=str(fake), TOTAL_S="21")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    first_py = next(s for s in summary["steps"] if s["step"] == "versions")
    assert first_py["rc"] == 124 and first_py["limit_s"] <= 16
    assert "(timed out)" in (tmp_path / "out" / "session.log").read_text()

