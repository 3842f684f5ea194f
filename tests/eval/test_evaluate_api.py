"""`evaluate(bundle, EvalConfig)` as a library gives what `sodakit eval` writes, and the command's
key=value grammar, YAML configs and the old flags all land on the same EvalConfig."""

import json

import pytest

from sodakit.config import ConfigError
from sodakit.eval.commands import main
from sodakit.eval.config import EvalConfig
from sodakit.eval.evaluator import evaluate
from sodakit.model.bundle import load_bundle

from .conftest import build_tiny_qwen3

TASKS = ["tblimp", "hellaswag"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    d = tmp_path_factory.mktemp("tiny-hf-qwen3")
    build_tiny_qwen3(tiny_tokenizer.vocab.size, seed=2).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data(shared_data):
    return {"tblimp": str(shared_data / "blimp" / "blimp_data_jsonl.tar.xz"),
            "hellaswag": str(shared_data / "hellaswag" / "hellaswag_val_full.txt.bz2")}


def _read(path):
    return json.loads(path.read_text())


def test_library_results_equal_the_commands(model_dir, data, tmp_path):
    out = tmp_path / "cli.json"
    argv = ["--model", str(model_dir), "--tasks", ",".join(TASKS), "--limit", "4", "--out", str(out), "--log-items"]
    argv += [a for t in TASKS for a in ("--data", f"{t}={data[t]}")]
    assert main(argv) == 0
    cli = _read(out)
    assert cli["command"] == ["sodakit", "eval", *argv]

    cfg = EvalConfig(model=str(model_dir), tasks=TASKS, data=data, limit=4, out=None, log_items=True)
    lib = evaluate(load_bundle(model_dir, device="cpu", need_tokenizer=True), cfg)
    assert not any(tmp_path.glob("eval_results*"))  # out=None: nothing written
    assert lib["settings"] == cli["settings"] | {"out": None}
    assert lib["model"]["fingerprint"] == cli["model"]["fingerprint"] and lib["tokenizer"] == cli["tokenizer"]
    for task in TASKS:
        mine, theirs = lib["tasks"][task], cli["tasks"][task]
        assert mine["metrics"] == theirs["metrics"] and mine["counts"] == theirs["counts"]
        logged = [json.loads(line) for line in (tmp_path / "cli.items" / f"{task}.jsonl").read_text().splitlines()]
        assert json.loads(json.dumps(mine["items"], default=str)) == logged
    # The library's results name the command that reproduces them.
    assert lib["command"][:4] == ["sodakit", "eval", f"model={model_dir}", "tasks=[tblimp,hellaswag]"]
    assert "limit=4" in lib["command"] and "out=null" in lib["command"] and "log_items=true" in lib["command"]


def test_key_value_yaml_and_flags_are_one_config(model_dir, data, tmp_path):
    kv, flags, yaml_out = tmp_path / "kv.json", tmp_path / "flags.json", tmp_path / "yaml.json"
    assert main([f"model={model_dir}", "tasks=[tblimp]", f"data.tblimp={data['tblimp']}", "limit=3",
                 "protocol=sodakit", "batch_size=2", f"out={kv}"]) == 0
    assert main(["--model", str(model_dir), "--tasks", "tblimp", "--data", f"tblimp={data['tblimp']}", "--limit", "3",
                 "--protocol", "sodakit", "--batch-size", "2", "--out", str(flags)]) == 0
    config = tmp_path / "eval.yaml"
    config.write_text(f"model: {model_dir}\ntasks: [tblimp]\ndata:\n  tblimp: {data['tblimp']}\nlimit: 5\n"
                      "protocol: sodakit\nbatch_size: 2\n")
    # key=value after the flags wins over them; both override the YAML file
    assert main([str(config), "--limit", "2", "limit=3", f"out={yaml_out}"]) == 0
    a, b, c = _read(kv), _read(flags), _read(yaml_out)
    for r in (b, c):
        assert r["settings"] | {"out": None} == a["settings"] | {"out": None}
        assert r["tasks"]["tblimp"]["metrics"] == a["tasks"]["tblimp"]["metrics"]
    assert a["settings"]["limit"] == 3 and a["settings"]["protocol"]["name"] == "sodakit"
    assert a["tasks"]["tblimp"]["counts"]["scored"] == 3


def test_bad_settings_exit_2_before_anything_runs(model_dir, tmp_path, capsys):
    base = [f"model={model_dir}", "tasks=[tblimp]", f"out={tmp_path / 'r.json'}"]
    cases = [
        ([f"model={model_dir}"], "model and tasks are required"),
        ([*base, "nokey=1"], "nokey"),
        ([*base, "input_codebooks=0"], "codebook count must be >= 1"),
        ([*base, "score_codebooks=acoustic"], "expected all, semantic or an integer"),
        ([*base, "tts_max_new_tokens=4"], "tts_max_new_tokens must be >= 8"),
        ([*base, "batch_size=0"], "batch_size must be > 0"),
        ([*base, "data.nosuch=/x"], "data names unknown task(s) ['nosuch']"),
        ([*base, "protocol=paper"], "unknown evaluation protocol"),
        ([*base, "--data", "tblimp"], "--data expects TASK=PATH"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(ConfigError, match="backend must be one of"):
        EvalConfig(backend="onnx")
    assert EvalConfig(tasks="tblimp, hellaswag").tasks == TASKS  # a comma-separated string is a list
    assert EvalConfig(input_codebooks="4").input_codebooks == 4


def test_control_is_recorded_and_leaves_text_tasks_alone(model_dir, data):
    bundle = load_bundle(model_dir, device="cpu", need_tokenizer=True)
    plain = evaluate(bundle, EvalConfig(model=str(model_dir), tasks=["tblimp"], data=data, limit=4, out=None))
    ctl = evaluate(bundle, EvalConfig(model=str(model_dir), tasks=["tblimp"], data=data, limit=4, out=None,
                                      control="permute-codebooks"))
    assert ctl["settings"]["control"] == "permute-codebooks" and plain["settings"]["control"] == "none"
    assert "control=permute-codebooks" in ctl["command"]
    assert ctl["tasks"]["tblimp"]["metrics"] == plain["tasks"]["tblimp"]["metrics"]
    lo, hi = plain["tasks"]["tblimp"]["metrics"]["accuracy_ci95"]
    assert lo <= plain["tasks"]["tblimp"]["metrics"]["accuracy"] <= hi
