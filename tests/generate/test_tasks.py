"""Task prompts (docs/soda.md#evaluation-protocol and #speech-to-speech-translation), the task layer over a codec, and `sodakit generate` end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sodakit.audio.registry import CodecMismatchError, load_codec
from sodakit.generate import prompts as P
from sodakit.generate.commands import main
from sodakit.generate.tasks import SodaGenerator
from sodakit.model.bundle import load_bundle
from sodakit.tokens.documents import document_ids
from sodakit.tokens.templates import MarkerInTextError, language_tag, s2st_sequence
from sodakit.tokens.vocab import AUDIO_END, AUDIO_START, BOS_TEXT, EOS_TEXT, TEXT_END, TEXT_START

from .artifacts import small_model_dir, small_tokenizer


@dataclass
class Seg:
    text: str
    codes: np.ndarray


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_mimi):
    root = tmp_path_factory.mktemp("gen")
    codec = load_codec(small_mimi(root / "mimi"), device="cpu")
    tok = small_tokenizer(root / "tok")
    model_dir = small_model_dir(root / "model", tok, codec)
    return {"root": root, "codec": codec, "tok": tok, "model_dir": model_dir}


def _generator(model_dir, batch_size=8, **kw) -> SodaGenerator:
    bundle = load_bundle(model_dir, device="cpu", backend="sodakit", need_codec=True, **kw)
    return SodaGenerator.from_bundle(bundle, batch_size=batch_size)


def _codes(frames, seed, k=8, size=2048):
    return np.random.default_rng(seed).integers(0, size, (k, frames))


def _tone(seconds, sr=24000, freq=220.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---- prompts ------------------------------------------------------------------------------------------
def test_asr_and_tts_prompts_are_prefixes_of_the_training_documents(setup):
    tok = setup["tok"]
    a, b = Seg("hello world", _codes(3, 0)), Seg("the quick fox", _codes(2, 1))
    audio_first = document_ids([a], "audio_first", tok)
    asr = P.asr_prompt(tok, a.codes)
    assert np.array_equal(asr, audio_first[: len(asr)])
    assert asr[-1] == tok.vocab.text_start_id and audio_first[len(asr)] != tok.vocab.text_end_id
    text_first = document_ids([a, b], "text_first", tok)
    tts = P.tts_prompt(tok, b.text, voice=P.VoicePrompt(a.codes, a.text))
    assert np.array_equal(tts, text_first[: len(tts)]) and tts[-1] == tok.vocab.audio_start_id
    assert len(tts) == len(text_first) - b.codes.size - 2  # everything but B's audio, <|audio_end|>, EOS
    cont = P.continuation_prompt(tok, a.codes)
    assert cont.tolist() == [tok.vocab.bos_id, tok.vocab.audio_start_id, *tok.vocab.codes_to_ids(a.codes).tolist()]
    # N-shot ASR: full BOS..EOS blocks before the prompt.
    shot = P.asr_prompt(tok, a.codes, shots=[(b.codes, b.text)])
    block = document_ids([b], "audio_first", tok)
    assert np.array_equal(shot[: len(block)], block) and np.array_equal(shot[len(block) :], asr)


def test_s2st_sequence_matches_the_spec_string(setup):
    tok = setup["tok"]
    v = tok.vocab
    src, tgt = _codes(2, 3), _codes(3, 4)
    ids, start = s2st_sequence(tok, src, "fr", "bonjour tout le monde", "hello world", tgt)
    expected = (
        f"{BOS_TEXT}{AUDIO_START}{v.codes_to_pua(src)}{AUDIO_END}{TEXT_START}<language>fr</language>bonjour tout le monde"
        f"{TEXT_END}{TEXT_START}<language>en</language>hello world{TEXT_END}{AUDIO_START}{v.codes_to_pua(tgt)}"
        f"{AUDIO_END}{EOS_TEXT}"
    )
    assert tok.decode(ids) == expected
    assert np.array_equal(ids, tok.encode(expected, add_bos=False))
    assert start == 2 + src.size + 2  # BOS, <|audio_start|>, source audio, <|audio_end|>, <|text_start|>
    _, start_t = s2st_sequence(tok, src, "fr", "bonjour", "hello", tgt, response_from="target_text")
    _, start_a = s2st_sequence(tok, src, "fr", "bonjour", "hello", tgt, response_from="target_audio")
    assert start < start_t < start_a
    out = P.parse_s2st(tok, ids)
    assert (out.source_lang, out.source_text, out.target_lang, out.target_text) == ("fr", "bonjour tout le monde", "en", "hello world")
    assert np.array_equal(out.target_codes, tgt)
    prompt = P.s2st_prompt(tok, src, "fr", "bonjour tout le monde", "en", "hello world")
    assert np.array_equal(prompt, ids[: len(prompt)]) and prompt[-1] == v.audio_start_id
    assert np.array_equal(P.s2st_prompt(tok, src), ids[:start])
    with pytest.raises(ValueError, match="source language"):
        P.s2st_prompt(tok, src, source_text="bonjour")
    with pytest.raises(ValueError, match="language code"):
        language_tag("fr</language>")


def test_text_in_the_audio_range_is_refused(setup):
    with pytest.raises(ValueError, match="audio-code range"):
        P.tts_prompt(setup["tok"], "hello \ue001 world")


def test_marker_strings_in_prompt_text_are_refused(setup):
    """A marker string in user text used to become that marker token in the prompt (closing the span early)."""
    tok = setup["tok"]
    with pytest.raises(MarkerInTextError, match=r"tts_prompt\.text: text holds the literal string '<\|audio_start\|>'"):
        P.tts_prompt(tok, "say <|audio_start|> now")
    with pytest.raises(MarkerInTextError, match=r"s2st_prompt\.source_text"):
        P.s2st_prompt(tok, _codes(2, 0), "fr", "bonjour<|text_end|>")


# ---- task layer ---------------------------------------------------------------------------------------
def test_generator_uses_the_recorded_codec_and_refuses_another(setup, tmp_path, small_mimi):
    g = _generator(setup["model_dir"])
    assert g.codec.config_hash == setup["codec"].config_hash and g.sample_rate == 24000
    other = small_mimi(tmp_path / "other", seed=1)
    with pytest.raises(CodecMismatchError, match="not the one the model was trained with"):
        _generator(setup["model_dir"], codec=str(other))
    g2 = _generator(setup["model_dir"], codec=str(other), allow_codec_mismatch=True)
    assert any("WARNING" in n for n in g2.notes)


def test_a_moved_codec_is_named_and_can_be_given_again(setup, tmp_path, small_mimi):
    import shutil

    from sodakit.audio.codec import CodecError

    moved = load_codec(small_mimi(tmp_path / "codec"), device="cpu")
    model_dir = small_model_dir(tmp_path / "model", setup["tok"], moved)
    shutil.move(tmp_path / "codec", tmp_path / "codec-new-home")
    with pytest.raises(CodecError, match="codec recorded at .*codec.*pass its new location with --codec"):
        _generator(model_dir)
    g = _generator(model_dir, codec=str(tmp_path / "codec-new-home"))
    assert g.codec.config_hash == moved.config_hash


def test_tts_asr_continue_s2st_produce_decodable_output(setup):
    g = _generator(setup["model_dir"], batch_size=2)
    voice = g.voice(_tone(0.5), 24000, "hello world")
    res = g.tts(["the quick fox", "hello"], voice=voice, max_new_tokens=8 * 6 + 1, max_seconds=0.4)
    for r in res:
        assert r.audio.dtype == np.float32 and len(r.audio) == r.audio_frames * 1920
        assert 1 <= r.audio_frames <= 5  # 0.4 s = 5 frames
        assert np.isfinite(r.audio).all()
    asr = g.asr([_tone(0.3)], 24000, max_new_tokens=6)
    assert isinstance(asr[0].text, str) and asr[0].new_tokens <= 6
    cont = g.continue_audio([_tone(0.4)], 24000, seconds=0.24, include_prompt=True)
    assert cont[0].audio_frames <= 3 and len(cont[0].audio) == (5 + cont[0].audio_frames) * 1920
    s2 = g.s2st([_tone(0.3)], 24000, source_lang="fr", source_texts=["bonjour"], target_lang="en", max_new_tokens=40)
    assert s2[0].extra["source_lang"] == "fr" and s2[0].extra["source_text"] == "bonjour"
    assert len(s2[0].audio) == s2[0].audio_frames * 1920


# ---- command line -------------------------------------------------------------------------------------
def test_generate_command_line(setup, tmp_path, capsys):
    model = str(setup["model_dir"])
    wav = tmp_path / "in.wav"
    sf.write(wav, _tone(0.4, sr=16000), 16000)
    out = tmp_path / "asr.jsonl"
    assert main(["asr", "--model", model, str(wav), "--max-new-tokens", "5", "--output", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["audio"] == str(wav) and isinstance(row["text"], str)

    tts = tmp_path / "tts.wav"
    args = ["tts", "--model", model, "--text", "hello world", "--output", str(tts), "--max-new-tokens", "33",
            "--voice-audio", str(wav), "--voice-text", "hello"]
    assert main(args) == 0
    data, sr = sf.read(tts)
    assert sr == 24000 and len(data) % 1920 == 0 and len(data) <= 4 * 1920

    cont = tmp_path / "cont"
    assert main(["continue", "--model", model, str(wav), str(wav), "--seconds", "0.16", "--output-dir", str(cont)]) == 0
    assert sorted(p.name for p in cont.iterdir()) == ["0000.wav", "0001.wav"]  # same stem twice: numbered

    s2 = tmp_path / "s2.wav"
    assert main(["s2st", "--model", model, str(wav), "--source-lang", "fr", "--output", str(s2), "--max-new-tokens", "30"]) == 0
    assert s2.is_file()
    capsys.readouterr()
    from sodakit.cli import main as cli_main

    assert cli_main(["generate", "tts", "--model", model, "--text", "x", "--output", str(tts), "--voice-audio", str(wav)]) == 2
    assert "go together" in capsys.readouterr().err
    assert cli_main(["generate", "asr", "--model", str(tmp_path / "missing"), str(wav)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert Path(tts).is_file()


def test_s2st_manifest_ids_cannot_write_outside_the_output(tmp_path):
    """A manifest id like ../../escape names a file inside <out>/wav, and items.jsonl says which."""
    from sodakit.data.s2st_manifest import S2STItem
    from sodakit.generate.s2st import translate_manifest
    from sodakit.generate.tasks import TaskOutput

    sr = 24000
    t = np.arange(sr) / sr
    src = tmp_path / "src.wav"
    sf.write(src, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    items = [S2STItem("../../escape", src, "fr", "bonjour", "hello", None), S2STItem("ok", src, "fr", "oui", "yes", None)]

    class Echo:
        sample_rate = sr

        def s2st(self, waves, sr, **kw):
            return [TaskOutput(text=it.target_text, audio=w, stop_reason="stop_token", extra={}) for it, w in zip(items, waves)]

    out = tmp_path / "a" / "b" / "out"
    res = translate_manifest(Echo(), items, out / "wav")
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["%2E.%2F..%2Fescape.wav", "ok.wav"]
    assert not (tmp_path / "a" / "escape.wav").exists()
    assert [str(t.audio_path.relative_to(out)) for t in res] == ["wav/%2E.%2F..%2Fescape.wav", "wav/ok.wav"]


def test_generate_key_value_grammar_and_flag_aliases(setup, tmp_path, capsys):
    """key=value, a YAML config and the old flags reach the same typed config and the same output."""
    model = str(setup["model_dir"])
    wav = tmp_path / "in.wav"
    sf.write(wav, _tone(0.4, sr=16000), 16000)
    by_flags, by_keys, by_yaml = tmp_path / "flags.jsonl", tmp_path / "keys.jsonl", tmp_path / "yaml.jsonl"
    assert main(["asr", "--model", model, str(wav), "--max-new-tokens", "5", "--output", str(by_flags)]) == 0
    assert main(["asr", f"model={model}", str(wav), "max_new_tokens=5", f"output={by_keys}"]) == 0
    config = tmp_path / "asr.yaml"
    config.write_text(f"model: {model}\nmax_new_tokens: 9\n")
    assert main(["asr", str(config), str(wav), "--max-new-tokens", "5", f"output={by_yaml}"]) == 0
    texts = [json.loads(p.read_text())["text"] for p in (by_flags, by_keys, by_yaml)]
    assert texts[0] == texts[1] == texts[2]
    # sampling keys nest (sampling.temperature) and their flags are aliases; a seed reproduces a sample
    outs = [tmp_path / f"tts{i}.wav" for i in range(3)]
    assert main(["tts", f"model={model}", "text=hello", f"output={outs[0]}", "max_new_tokens=25",
                 "sampling.temperature=1.0", "sampling.seed=3"]) == 0
    assert main(["tts", "--model", model, "--text", "hello", "--output", str(outs[1]), "--max-new-tokens", "25",
                 "--temperature", "1.0", "--seed", "3"]) == 0
    assert np.array_equal(sf.read(outs[0])[0], sf.read(outs[1])[0])
    from sodakit.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(["generate", "tts", f"model={model}", f"output={outs[2]}"]) == 2
    assert "exactly one of text=" in capsys.readouterr().err
    assert cli_main(["generate", "asr", f"model={model}"]) == 2
    assert "give the audio files" in capsys.readouterr().err
    assert cli_main(["generate", "asr", f"model={model}", str(wav), "sampling.temperature=-1"]) == 2
    assert "temperature must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tts", f"model={model}", "text=x", "--silence-detector", "loudness"])
    assert "invalid choice" in capsys.readouterr().err


def test_generate_s2st_translates_a_manifest(setup, tmp_path, capsys):
    """`generate s2st manifest=...` writes each translation's speech and what it says; scoring is eval's."""
    src = tmp_path / "clips" / "src.wav"
    src.parent.mkdir()
    sf.write(src, _tone(0.3, sr=16000), 16000)
    manifest = tmp_path / "m.tsv"
    manifest.write_text("id\tsource_audio\tsource_lang\nclip/1\tclips/src.wav\tfr\nok\tclips/src.wav\tfr\n")
    out = tmp_path / "out"
    assert main(["s2st", f"model={setup['model_dir']}", f"manifest={manifest}", f"output_dir={out}",
                 "max_new_tokens=40", "source_lang=fr", "sampling.temperature=0"]) == 0
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["clip/1", "ok"] and all(r["generated_source_lang"] == "fr" for r in rows)
    for r in rows:
        wav, sr = sf.read(out / r["audio_file"])
        assert sr == 24000 and len(wav) / sr == pytest.approx(r["seconds"])
    assert rows[0]["audio_file"] == "wav/clip%2F1.wav"
    err = capsys.readouterr().err
    assert f"sodakit eval model={setup['model_dir']} tasks=[s2st] data.s2st={manifest}" in err
