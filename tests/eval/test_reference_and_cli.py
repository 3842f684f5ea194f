"""Reference check (issue item 7): per-item log-likelihoods of tBLIMP and HellaSwag computed by
`sodakit eval` on a Hugging Face Qwen3ForCausalLM export match a direct transformers computation;
plus the command's results JSON and its bad-input errors."""

import json

import pytest
import torch

from sodakit.eval.commands import main

from .conftest import build_tiny_qwen3


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory, tiny_tokenizer):
    d = tmp_path_factory.mktemp("tiny-hf-qwen3")
    model = build_tiny_qwen3(tiny_tokenizer.vocab.size, seed=1)
    model.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d, model


def _direct_logprob(model, ids, start, stop=None):
    """Sum of log p(ids[t] | ids[:t]) for start <= t < stop, straight from transformers logits."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits.double(), -1)[0]
    return sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids) if stop is None else stop))


@pytest.mark.parametrize("backend", ["sodakit", "transformers"])
def test_tblimp_hellaswag_match_transformers(hf_model_dir, tiny_tokenizer, shared_data, tmp_path, backend):
    d, model = hf_model_dir
    out = tmp_path / "res.json"
    rc = main(["--model", str(d), "--tasks", "tblimp,hellaswag", "--limit", "6", "--batch-size", "4",
               "--backend", backend, "--out", str(out), "--log-items"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["model"]["backend"] == backend and len(res["model"]["fingerprint"]) == 32
    assert res["tasks"]["tblimp"]["counts"]["scored"] == 6
    v, tok = tiny_tokenizer.vocab, tiny_tokenizer
    items = [json.loads(line) for line in (tmp_path / "res.items" / "tblimp.jsonl").read_text().splitlines()]
    from sodakit.eval.readers.blimp import read_blimp

    pairs = {p.id: p for p in read_blimp(shared_data / "blimp" / "blimp_data_jsonl.tar.xz").items[:6]}
    for rec in items:
        p = pairs[rec["id"]]
        for side, text in (("pos", p.pos), ("neg", p.neg)):
            ids = [v.bos_id, v.text_start_id, *tok.encode_texts([text])[0], v.text_end_id]
            ref = _direct_logprob(model, ids, 2, len(ids) - 1)  # the text tokens, not <|text_end|>
            assert rec[side]["sum"] == pytest.approx(ref, abs=2e-4)
            assert rec[side]["tokens"] == len(ids) - 3
    from sodakit.eval.readers.hellaswag import read_hellaswag

    hs = read_hellaswag(shared_data / "hellaswag" / "hellaswag_val_full.txt.bz2").items[:6]
    logged = [json.loads(line) for line in (tmp_path / "res.items" / "hellaswag.jsonl").read_text().splitlines()]
    for it, rec in zip(hs, logged):
        ctx_ids = tok.encode_texts([it.context])[0]
        for j, ending in enumerate(it.endings):
            ids = [v.bos_id, *ctx_ids, *tok.encode_texts([" " + ending])[0]]
            assert rec["sum_logprob"][j] == pytest.approx(_direct_logprob(model, ids, 1 + len(ctx_ids)), abs=2e-4)


def test_cli_bad_input(hf_model_dir, tmp_path, capsys):
    d, _ = hf_model_dir
    from sodakit.cli import main as cli_main

    assert cli_main(["eval", "--model", str(d), "--tasks", "tblimp,nosuchtask"]) == 2
    assert "unknown task(s) ['nosuchtask']" in capsys.readouterr().err
    assert main(["--model", str(d), "--tasks", "tblimp", "--data", "tblimp"]) == 2
    assert "TASK=PATH" in capsys.readouterr().err
    assert cli_main(["eval", "--model", str(tmp_path / "missing"), "--tasks", "tblimp"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A task with no data fails alone; the others still run, and the exit code says something failed
    # (2: every failure was a user error, here missing data; 1 would mean a bug).
    out = tmp_path / "r.json"
    rc = cli_main(["eval", "--model", str(d), "--tasks", "swuggy,tblimp", "--limit", "2", "--out", str(out),
                   "--codec", str(tmp_path)])
    assert rc == 2 and "not a codec directory" in capsys.readouterr().err
    rc = main(["--model", str(d), "--tasks", "twuggy,tblimp", "--limit", "2", "--out", str(out)])
    res = json.loads(out.read_text())
    assert rc == 2 and res["tasks"]["twuggy"]["status"] == "error" and "--data twuggy=PATH" in res["tasks"]["twuggy"]["error"]
    assert res["tasks"]["twuggy"]["bug"] is False
    assert res["tasks"]["tblimp"]["status"] == "ok"
    assert res["settings"]["batch_size"] == 8 and res["tokenizer"]["vocab"]["size"] == res["model"]["vocab_size"]


def test_soda_scores_maps_results_to_the_published_columns():
    from sodakit.eval.results import soda_scores

    res = {"tasks": {"sblimp": {"status": "ok", "metrics": {"accuracy": 0.514}},
                     "salmon": {"status": "ok", "metrics": {"accuracy": 0.7, "macro_accuracy": 0.6}},
                     "hellaswag": {"status": "ok", "metrics": {"acc": 0.3, "acc_norm": 0.35}},
                     "tts": {"status": "ok", "metrics": {"wer": 0.061, "sim": 0.56}},
                     "swuggy": {"status": "error", "error": "no data"}}}
    assert soda_scores(res) == {"sBLIMP": 51.4, "SALMon": 70.0, "HellaSwag": 35.0, "TTS WER": 6.1, "TTS SIM": 0.56}


def test_eval_codec_names_a_moved_recorded_codec(tmp_path, small_mimi):
    from sodakit.audio.codec import CodecError
    from sodakit.audio.registry import load_codec, load_model_codec

    codec = load_codec(small_mimi(tmp_path / "codec"), device="cpu")
    record = {"name": codec.name, "config_hash": codec.config_hash, "source": str(tmp_path / "codec")}
    (tmp_path / "codec").rename(tmp_path / "moved")
    with pytest.raises(CodecError, match="codec recorded at .*pass its new location with --codec"):
        load_model_codec(None, record, "cpu")
    assert load_model_codec(str(tmp_path / "moved"), record, "cpu").config_hash == codec.config_hash


def test_cli_results_name_the_protocol(hf_model_dir, tmp_path, capsys):
    d, _ = hf_model_dir
    out = tmp_path / "r.json"
    assert main(["--model", str(d), "--tasks", "tblimp,twuggy", "--limit", "2", "--out", str(out)]) == 2  # twuggy has no data: a user error
    res = json.loads(out.read_text())
    assert res["settings"]["protocol"]["name"] == "soda" and res["settings"]["seed"] == 42
    assert res["settings"]["asr_max_new_tokens"] == 200
    assert {t["protocol"]["protocol"] for t in res["tasks"].values()} == {"soda"}  # the failed twuggy too
    assert "accuracy_ties_half" in res["tasks"]["tblimp"]["metrics"]
    assert main(["--model", str(d), "--tasks", "tblimp", "--limit", "2", "--out", str(out), "--protocol", "sodakit"]) == 0
    res = json.loads(out.read_text())
    assert res["settings"]["protocol"]["name"] == "sodakit" and res["tasks"]["tblimp"]["protocol"]["protocol"] == "sodakit"
    assert res["settings"]["seed"] == 0
    with pytest.raises(SystemExit):
        main(["--model", str(d), "--tasks", "tblimp", "--protocol", "paper"])
    assert "invalid choice" in capsys.readouterr().err
