"""HellaSwag exactly as lm-evaluation-harness 0.4 scores it: the metrics on hand-computed
log-likelihoods, and the context and choices it builds from the dataset's records."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sodakit.eval.config import EvalConfig
from sodakit.eval.metrics import choice_argmax, choice_argmax_outcome
from sodakit.eval.readers.hellaswag import read_hellaswag_auto
from sodakit.eval.readers.hellaswag_original import lm_eval_clean, read_hellaswag_original
from sodakit.eval.readers.zerospeech import LayoutError
from sodakit.eval.tasks import EvalContext, get_task
from sodakit.eval.tasks.hellaswag import choice_metrics


def test_acc_norm_divides_by_the_characters_of_the_ending_without_its_leading_space():
    endings = ["ab", "abcd", "abcdefgh", "abcdefghijklmnop"]
    sums = [-3.0, -5.5, -14.0, -30.0]
    # By hand: / len(ending) = -1.5, -1.375, -1.75, -1.875 -> ending 1.
    # The old denominator len(" " + ending) = -1.0, -1.1, -1.56, -1.76 would have picked ending 0.
    assert max(range(4), key=lambda i: sums[i] / len(" " + endings[i])) == 0
    m = choice_metrics(sums, endings, gold=1)
    assert m["acc"] == 0.0 and m["acc_norm"] == 1.0 and m["acc_bytes"] == 1.0
    assert choice_metrics(sums, endings, gold=0)["acc_norm"] == 0.0


def test_acc_norm_counts_characters_and_acc_bytes_counts_utf8_bytes():
    endings = ["naïve", "plain", "zzzzzzzzzz", "y"]
    assert [len(e) for e in endings[:2]] == [5, 5] and len(endings[0].encode("utf-8")) == 6
    sums = [-5.6, -5.5, -30.0, -9.0]
    # By hand: per character -1.12, -1.1, -3.0, -9.0 -> ending 1; per byte -0.933, -1.1, -3.0, -9.0 -> ending 0.
    assert choice_metrics(sums, endings, gold=0) == {
        "acc": 0.0, "acc_norm": 0.0, "acc_bytes": 1.0, "acc_ties_split": 0.0, "acc_norm_ties_split": 0.0}
    assert choice_metrics(sums, endings, gold=1)["acc_norm"] == 1.0


def test_a_tie_goes_to_the_first_tied_ending_as_numpy_argmax():
    endings = ["abc", "abd", "abe", "abf"]
    sums = [-2.0, -2.0, -3.0, -4.0]
    assert choice_metrics(sums, endings, gold=0) == {
        "acc": 1.0, "acc_norm": 1.0, "acc_bytes": 1.0, "acc_ties_split": 0.5, "acc_norm_ties_split": 0.5}
    assert choice_metrics(sums, endings, gold=1) == {
        "acc": 0.0, "acc_norm": 0.0, "acc_bytes": 0.0, "acc_ties_split": 0.5, "acc_norm_ties_split": 0.5}


def test_choice_argmax_is_numpy_argmax():
    assert choice_argmax([-2.0, -1.0, -1.0, -3.0]) == 1
    assert choice_argmax([float("-inf")] * 3) == 0
    assert choice_argmax_outcome([0.0, 0.0], 1) == 0.0 and choice_argmax_outcome([0.0, 0.0], 0) == 1.0
    with pytest.raises(ValueError, match="NaN score"):
        choice_argmax([0.0, float("nan")])
    with pytest.raises(ValueError, match="gold index 2 outside 0..1"):
        choice_argmax_outcome([0.0, 1.0], 2)


# One ActivityNet record (non-empty ctx_b) and one WikiHow record (bracket markers, empty ctx_b), in
# the fields the dataset ships. The expected strings below are worked out by hand from lm-eval's rules.
ACTIVITYNET = {
    "ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
    "ctx_b": "he uses a Stanley knife", "ctx": "A man is sitting on a roof. he uses a Stanley knife",
    "split": "val", "split_type": "indomain", "label": 3, "source_id": "activitynet~v_-JhWjGDPHMY",
    "endings": ["to wrap a pair of skis.", "and rips level tiles off.", "to hold a rubik's cube.",
                "to cut the old shingles."],
}
WIKIHOW = {
    "ind": 92, "activity_label": "Home and Garden",
    "ctx_a": "[header] How to clean a grill [title] Heat the grill. [step] Turn the burners   on high.",
    "ctx_b": "", "ctx": "[header] How to clean a grill [title] Heat the grill. [step] Turn the burners   on high.",
    "split": "val", "split_type": "zeroshot", "label": 1, "source_id": "wikihow~12345",
    "endings": ["[substeps] Close the lid.", " Scrub the grates [title] Use a brush. ", "Wait.",
                "Café au lait [step] ok."],
}
# activity_label + ": " + ctx_a + " " + ctx_b.capitalize(): capitalize() also lower-cases "Stanley".
ACTIVITYNET_CONTEXT = "Roof shingle removal: A man is sitting on a roof. He uses a stanley knife"
# ctx_b is empty, so the trailing " " is stripped; " [title]" -> ". "; [header] and [step] are deleted;
# each "  " becomes " " in one pass, so the three spaces before "on" leave two.
WIKIHOW_CONTEXT = "Home and Garden: How to clean a grill. Heat the grill. Turn the burners  on high."
# The strip comes before the marker removal, so "[substeps] Close" keeps a leading space.
WIKIHOW_CHOICES = [" Close the lid.", "Scrub the grates. Use a brush.", "Wait.", "Café au lait ok."]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _check_two_items(r, layout):
    assert r.source.layout == layout and not r.errors
    a, w = r.items
    assert (a.id, a.context, a.endings, a.gold) == ("0", ACTIVITYNET_CONTEXT, ACTIVITYNET["endings"], 3)
    assert (w.id, w.context, w.endings, w.gold) == ("1", WIKIHOW_CONTEXT, WIKIHOW_CHOICES, 1)
    assert a.meta == {"activity_label": "Roof shingle removal", "ind": 24, "source_id": "activitynet~v_-JhWjGDPHMY",
                      "split": "val", "split_type": "indomain"}


def test_reader_builds_lm_eval_context_from_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "hellaswag_val.jsonl", [ACTIVITYNET, WIKIHOW])
    _check_two_items(read_hellaswag_original(path), "hellaswag-jsonl")
    _check_two_items(read_hellaswag_auto(path), "hellaswag-jsonl")
    # A directory of the release's files: the validation split is hellaswag_val.jsonl.
    _write_jsonl(tmp_path / "hellaswag_train.jsonl", [WIKIHOW])
    _check_two_items(read_hellaswag_auto(tmp_path), "hellaswag-jsonl")
    assert lm_eval_clean("  a [title] b  ") == "a. b"


def test_reader_reads_the_hub_parquet_layout(tmp_path):
    # The hub's copy stores label as a string ("" in the test split) and lives in data/{split}-*.parquet.
    rows = [{**rec, "label": str(rec["label"])} for rec in (ACTIVITYNET, WIKIHOW)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "validation-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{**rows[0], "label": ""}]), tmp_path / "data" / "test-00000-of-00001.parquet")
    _check_two_items(read_hellaswag_auto(tmp_path), "hellaswag-parquet")
    test = read_hellaswag_original(tmp_path, split="test")
    assert not test.items and "no gold label" in test.errors[0].reason
    no_label = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in rows[0].items() if k != "label"}]), no_label)
    with pytest.raises(LayoutError, match=r"bad.parquet: no column\(s\) \['label'\]"):
        read_hellaswag_original(no_label)


def test_reader_names_broken_records(tmp_path):
    path = tmp_path / "h.jsonl"
    lines = [json.dumps(ACTIVITYNET), "{not json", json.dumps({**WIKIHOW, "label": 7}),
             json.dumps({k: v for k, v in WIKIHOW.items() if k != "ctx_b"}), json.dumps({**WIKIHOW, "endings": "x"}),
             json.dumps({**WIKIHOW, "endings": ["ok", "[step]"]}), json.dumps({**WIKIHOW, "label": "two"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = read_hellaswag_original(path)
    assert [it.id for it in r.items] == ["0"]
    reasons = {e.item: (e.file, e.reason) for e in r.errors}
    assert reasons["1"][0] == f"{path}:2" and "not JSON" in reasons["1"][1]
    assert "label 7 is not 0..3" in reasons["2"][1]
    assert "missing field(s) ['ctx_b']" in reasons["3"][1]
    assert "['endings'] must be strings" in reasons["4"][1]
    assert "ending(s) [1] empty after cleaning" in reasons["5"][1]
    assert "label 'two' is not an integer" in reasons["6"][1]
    with pytest.raises(LayoutError, match="expected HellaSwag as .jsonl or .parquet"):
        read_hellaswag_auto(tmp_path / "h.csv")


class ScriptedSumLM:
    """Gives each scripted row (BOS context ending, before padding) its scripted sum of log-probs,
    all of it on the row's last token; an unscripted row is an error."""

    def __init__(self, vocab_size, sums, pad=0):
        self.vocab_size, self.max_positions, self.pad = vocab_size, None, pad
        self.sums = {tuple(int(i) for i in row): s for row, s in sums.items()}

    def token_logprobs(self, input_ids):
        out = torch.zeros((input_ids.shape[0], input_ids.shape[1] - 1), dtype=torch.float64)
        for r, row in enumerate(input_ids.tolist()):
            hits = [n for n in range(len(row), 1, -1)
                    if tuple(row[:n]) in self.sums and all(t == self.pad for t in row[n:])]
            if not hits:
                raise AssertionError(f"unscripted row {row}")
            out[r, hits[0] - 2] = self.sums[tuple(row[:hits[0]])]
        return out


def test_task_scores_the_lm_eval_context_with_lm_eval_metrics(tmp_path, tiny_tokenizer):
    path = _write_jsonl(tmp_path / "hellaswag_val.jsonl", [ACTIVITYNET, WIKIHOW])
    tok, v = tiny_tokenizer, tiny_tokenizer.vocab
    # Item 0 (gold 3): the raw sum picks ending 2; per character -40/23, -40/25, -30/23, -31.28/24
    # = -1.74, -1.6, -1.3043, -1.3033 picks ending 3 (all ASCII: per byte the same), while the old
    # len(" " + ending) would give ending 2: -30/24 = -1.25 > -31.28/25 = -1.2512.
    # Item 1 (gold 1): the raw sum picks ending 2; per character -20/15, -30/30, -15/5, -16.5/16
    # = -1.33, -1.0, -3.0, -1.031 picks ending 1; per byte "Café au lait ok." has 17 bytes:
    # -16.5/17 = -0.971 picks ending 3.
    script = {0: [-40.0, -40.0, -30.0, -31.28], 1: [-20.0, -30.0, -15.0, -16.5]}
    contexts = {0: ACTIVITYNET_CONTEXT, 1: WIKIHOW_CONTEXT}
    endings = {0: ACTIVITYNET["endings"], 1: WIKIHOW_CHOICES}
    sums = {}
    for k in (0, 1):
        ctx_ids = tok.encode_texts([contexts[k]])[0]
        for e, s in zip(endings[k], script[k]):
            sums[(v.bos_id, *ctx_ids, *tok.encode_texts([" " + e])[0])] = s
    ctx = EvalContext(lm=ScriptedSumLM(v.size, sums), tokenizer=tok, cfg=EvalConfig(batch_size=3, log_items=True))
    res = get_task("hellaswag").run(ctx, path)
    assert res.metrics == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 0.5, "acc_ties_split": 0.0,
                           "acc_norm_ties_split": 1.0}
    assert res.protocol["context_is_lm_eval_exact"] is True and res.data["layout"] == "hellaswag-jsonl"
    assert res.items[1]["chars"] == [15, 30, 5, 16] and res.items[1]["bytes"] == [15, 30, 5, 17]
    assert res.items[0]["sum_logprob"] == pytest.approx(script[0])


def test_eval_command_on_the_jsonl_matches_lm_eval_arithmetic(tmp_path, tiny_tokenizer):
    """`sodakit eval` on the dataset's JSONL with a real (tiny) model: the per-choice sums are those of
    lm-eval's context and " " + choice, and the metrics are lm-eval's argmax formulas over them."""
    import numpy as np

    from sodakit.eval.commands import main

    from .conftest import build_tiny_qwen3

    model_dir = tmp_path / "model"
    model = build_tiny_qwen3(tiny_tokenizer.vocab.size, seed=3)
    model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    data = _write_jsonl(tmp_path / "hellaswag_val.jsonl", [ACTIVITYNET, WIKIHOW])
    out = tmp_path / "res.json"
    assert main(["--model", str(model_dir), "--tasks", "hellaswag", "--data", f"hellaswag={data}",
                 "--out", str(out), "--log-items"]) == 0
    task = json.loads(out.read_text())["tasks"]["hellaswag"]
    assert task["counts"]["scored"] == 2 and task["protocol"]["context_is_lm_eval_exact"] is True
    logged = [json.loads(line) for line in (tmp_path / "res.items" / "hellaswag.jsonl").read_text().splitlines()]
    v, tok = tiny_tokenizer.vocab, tiny_tokenizer
    expected = {"acc": [], "acc_norm": [], "acc_bytes": []}
    for rec, context, choices, gold in zip(logged, (ACTIVITYNET_CONTEXT, WIKIHOW_CONTEXT),
                                           (ACTIVITYNET["endings"], WIKIHOW_CHOICES), (3, 1)):
        ctx_ids = tok.encode_texts([context])[0]
        lls = []
        for choice in choices:
            ids = [v.bos_id, *ctx_ids, *tok.encode_texts([" " + choice])[0]]
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits.double(), -1)[0]
            lls.append(sum(float(logp[t - 1, ids[t]]) for t in range(1 + len(ctx_ids), len(ids))))
        assert rec["sum_logprob"] == pytest.approx(lls, abs=2e-4)
        lls = np.array(rec["sum_logprob"])
        expected["acc"].append(float(np.argmax(lls) == gold))
        expected["acc_norm"].append(float(np.argmax(lls / np.array([len(c) for c in choices])) == gold))
        expected["acc_bytes"].append(float(np.argmax(lls / np.array([len(c.encode()) for c in choices])) == gold))
    for name, outcomes in expected.items():
        assert task["metrics"][name] == np.mean(outcomes)
