"""The PocketSphinx judge with a language model of the domain's text (`pocketsphinx:LM.arpa`)."""

import math
import shutil
from collections import defaultdict

import pytest

from sodakit.audio.synth import synthesize
from sodakit.demo.language import sentences
from sodakit.eval.judges import make_asr_judge
from sodakit.eval.judges.judge_lm import arpa_vocabulary, bigram_arpa, lm_words, write_judge_lm
from sodakit.eval.metrics import wer


def _parse(arpa: str) -> tuple[dict[str, tuple[float, float]], dict[tuple[str, str], float]]:
    uni: dict[str, tuple[float, float]] = {}
    bi: dict[tuple[str, str], float] = {}
    section = ""
    for line in arpa.splitlines():
        if line.startswith("\\"):
            section = line
        elif line.strip() and section == "\\1-grams:":
            f = line.split()
            uni[f[1]] = (float(f[0]), float(f[2]) if len(f) > 2 else 0.0)
        elif line.strip() and section == "\\2-grams:":
            f = line.split()
            bi[(f[1], f[2])] = float(f[0])
    return uni, bi


def test_every_history_sums_to_one_with_backoff():
    text = sentences(300, seed=3)
    uni, bi = _parse(bigram_arpa(text))
    vocab = [w for w in uni if w != "<s>"]
    assert "</s>" in vocab and set(vocab) - {"</s>"} == {w for s in text for w in lm_words(s)}
    assert math.isclose(sum(10 ** uni[w][0] for w in vocab), 1.0, rel_tol=1e-4)
    seen = defaultdict(dict)
    for (h, w), lp in bi.items():
        seen[h][w] = 10 ** lp
    for h, probs in seen.items():
        backoff = 10 ** uni[h][1]
        total = sum(probs.get(w, backoff * 10 ** uni[w][0]) for w in vocab)
        assert math.isclose(total, 1.0, rel_tol=1e-4), h
        # a seen bigram is always more likely than backing off to the same word
        assert all(p > backoff * 10 ** uni[w][0] for w, p in probs.items())


def test_bigram_arpa_rejects_empty_text_and_bad_discount():
    with pytest.raises(ValueError, match="no words"):
        bigram_arpa(["", "?!"])
    with pytest.raises(ValueError, match="discount"):
        bigram_arpa(["a b"], discount=1.0)


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
def test_domain_lm_reads_held_out_sentences_the_bundled_lm_misreads(tmp_path):
    # LM from training sentences only; the judged sentences are held out of it (their words are not).
    held_out = ["the old dogs sleep near the river.", "anna found these red boxes.", "does the teacher like the cats?"]
    lm = write_judge_lm(sentences(4000, seed=0, exclude=held_out), tmp_path / "lm.arpa")
    assert set(arpa_vocabulary(lm)) >= {w for s in held_out for w in lm_words(s)}
    audio = [synthesize(s, "flite:slt", 16_000) for s in held_out]
    domain = make_asr_judge(f"pocketsphinx:{lm}")
    general = make_asr_judge("pocketsphinx")
    assert domain.describe()["lm"] == str(lm) and len(domain.describe()["lm_sha256"]) == 64
    domain_wer = wer(held_out, domain.transcribe(audio, 16_000))
    general_wer = wer(held_out, general.transcribe(audio, 16_000))
    assert domain_wer <= 0.15, domain_wer
    assert domain_wer < general_wer


def test_judge_lm_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"language model .*missing\.arpa does not exist"):
        make_asr_judge(f"pocketsphinx:{tmp_path / 'missing.arpa'}")
    not_arpa = tmp_path / "notes.txt"
    not_arpa.write_text("just some text\n")
    with pytest.raises(ValueError, match=r"notes\.txt: no \\1-grams: section"):
        make_asr_judge(f"pocketsphinx:{not_arpa}")
    unknown = write_judge_lm(["the dog sleeps.", "the zqxwv sleeps."], tmp_path / "unknown.arpa")
    with pytest.raises(ValueError, match=r"1 word\(s\) of .*unknown\.arpa are not in PocketSphinx's pronunciation "
                                         r"dictionary, e\.g\. \['zqxwv'\]"):
        make_asr_judge(f"pocketsphinx:{unknown}")
    broken = tmp_path / "broken.arpa"
    broken.write_text(bigram_arpa(["the dog sleeps."]).replace("ngram 2=", "ngram 2=9"))
    with pytest.raises(ValueError, match=r"could not load the language model .*broken\.arpa"):
        make_asr_judge(f"pocketsphinx:{broken}")


def test_sodakit_eval_judge_lm_writes_the_bigram_of_text_files(tmp_path, capsys):
    from sodakit.cli import main as cli_main

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("the dog sleeps. the cats sleep?\nanna sings.\n")
    b.write_text("a fox runs!")
    out = tmp_path / "lm" / "judge.arpa"
    assert cli_main(["eval", "judge-lm", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_text() == bigram_arpa(["the dog sleeps.", "the cats sleep?", "anna sings.", "a fox runs!"])
    assert "word bigram of 4 sentences (10 words)" in capsys.readouterr().out
    assert cli_main(["eval", "judge-lm", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x.arpa")]) == 2
    assert "missing.txt: cannot read it as UTF-8 text" in capsys.readouterr().err
    assert not (tmp_path / "x.arpa").exists()
