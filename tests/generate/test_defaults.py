"""Defaults that fit the model: budgets clamped to its context, one unfit input never sinks the others,
device=auto."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sodakit.audio.registry import load_codec
from sodakit.eval.config import EvalConfig
from sodakit.generate.commands import main
from sodakit.generate.config import TTSConfig
from sodakit.generate.tasks import STOP_ERROR, SodaGenerator
from sodakit.model.bundle import load_bundle
from sodakit.model.config import PRESETS
from sodakit.model.load import write_model_dir
from sodakit.model.qwen3 import build_model

from .artifacts import small_model_dir, small_tokenizer


def _tone(seconds, sr=24000, freq=220.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_mimi):
    root = tmp_path_factory.mktemp("defaults")
    codec = load_codec(small_mimi(root / "mimi"), device="cpu")
    tok = small_tokenizer(root / "tok")
    # The tiny preset as `sodakit train` builds it (1024 positions), and a model with a short context.
    cfg = PRESETS["tiny"].replace(vocab_size=tok.vocab.size)
    tiny = root / "tiny"
    tok.save_pretrained(root / "tiny-tokenizer")
    write_model_dir(tiny, build_model(cfg, seed=0).state_dict(), cfg, tok.vocab, dataclasses.asdict(codec.info()),
                    tokenizer=root / "tiny-tokenizer" / "tokenizer.json")
    short = small_model_dir(root / "short", tok, codec, max_seq_len=96)
    return {"tiny": tiny, "short": short, "root": root}


def test_tiny_preset_tts_with_max_seconds_succeeds(setup, tmp_path, capsys):
    """max_seconds=2 needs 25 frames: the budget follows it instead of the 1500-token default that
    overflowed the tiny preset's 1024 positions."""
    out = tmp_path / "hello.wav"
    assert main(["tts", f"model={setup['tiny']}", "text=Hello", "max_seconds=2", f"output={out}"]) == 0
    wav, sr = sf.read(out)
    assert sr == 24000 and 0 < len(wav) <= 2 * sr and len(wav) % 1920 == 0
    err = capsys.readouterr().err
    used = "cuda" if torch.cuda.is_available() else "cpu"  # what device=auto resolves to here
    assert f"on {used} (device=auto, float32), context 1024 tokens" in err and "warning" not in err


def test_a_budget_past_the_context_is_clamped_with_a_warning(setup, tmp_path, capsys):
    out = tmp_path / "clamped.wav"
    assert main(["tts", f"model={setup['short']}", "text=hello world", f"output={out}"]) == 0
    err = capsys.readouterr().err
    warning = next(line for line in err.splitlines() if line.startswith("warning:"))
    assert "max_new_tokens 1500" in warning and "max_seq_len 96" in warning and "clamped" in warning
    budget = int(warning.split("prompt length (")[1].split()[0])
    assert 0 < budget < 96
    frames = len(sf.read(out)[0]) // 1920
    assert 0 < frames <= budget // 8


def test_one_clip_too_long_for_the_context_leaves_the_others(setup, tmp_path, capsys):
    """ASR of three clips on a 96-position model: the 1.2 s clip (~120 audio tokens) cannot be prompted;
    the others are transcribed and written, the failure is named, the exit status says so."""
    clips = []
    for name, seconds in (("a", 0.3), ("long", 1.2), ("b", 0.2)):
        clips.append(tmp_path / f"{name}.wav")
        sf.write(clips[-1], _tone(seconds, 16000), 16000)
    out = tmp_path / "asr.jsonl"
    assert main(["asr", f"model={setup['short']}", *map(str, clips), "max_new_tokens=300", f"output={out}"]) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["audio"] for r in rows] == [str(c) for c in clips]
    assert rows[1]["text"] is None and rows[1]["stop_reason"] == STOP_ERROR
    assert "does not fit the model's context (max_seq_len 96)" in rows[1]["error"]
    assert all(isinstance(r["text"], str) and "error" not in r for r in (rows[0], rows[2]))
    err = capsys.readouterr().err
    assert f"warning: {clips[1]}: the prompt (" in err and "1 of 3 input(s) failed" in err


def test_generator_batches_fitting_prompts_and_decodes_clamped_ones_alone(setup):
    bundle = load_bundle(setup["short"], device="cpu", backend="sodakit", need_codec=True)
    g = SodaGenerator.from_bundle(bundle, batch_size=8)
    warnings, done = [], []
    g.warn, g.on_items_done = warnings.append, done.append
    res = g.asr([_tone(0.2), _tone(1.2), _tone(0.5), _tone(0.3)], 24000, max_new_tokens=40)
    # 0.2 s and 0.3 s clips fit with 40 new tokens; 0.5 s (~56 prompt tokens) gets 96 - its length; 1.2 s fails
    assert [r.error is None for r in res] == [True, False, True, True]
    assert res[2].new_tokens <= 96 - 56 and len(warnings) == 1 and "max_new_tokens 40" in warnings[0]
    assert sorted(done) == [1, 1, 2]  # the failed clip, the clamped one alone, the two that fit together
    g.asr([_tone(0.5)], 24000, max_new_tokens=40)
    assert len(warnings) == 1  # said once


def test_generate_and_eval_default_to_device_auto():
    assert TTSConfig(model="m", text="x").device == "auto" and EvalConfig().device == "auto"
