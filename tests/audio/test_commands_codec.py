"""`sodakit codec fit|encode|decode|info` end to end on a tiny offline codec."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sodakit.audio.io import load_audio, save_wav
from sodakit.cli import main

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")


def test_fit_encode_decode_info(tmp_path, capsys, monkeypatch):
    from sodakit.audio.synth import synthesize

    monkeypatch.setenv("SODAKIT_PROGRESS_SECONDS", "1e-9")  # a status line for every file read

    audio = tmp_path / "audio"
    for i, text in enumerate(["Four hours of steady work faced us.", "The boy was there when the sun rose.",
                              "A rod is used to catch pink salmon."]):
        save_wav(audio / "sub" / f"{i}.wav", synthesize(text, "flite:kal16", 22050), 22050)
    (audio / "broken.wav").write_bytes(b"nope")
    rc = main(["codec", "fit", str(audio), str(tmp_path / "codec"), "codebook_size=32", "kmeans_iters=2",
               "num_codebooks=4"])
    assert rc == 0
    out = capsys.readouterr()
    fit = json.loads(out.out)
    assert fit["utterances"] == 3 and len(fit["config_hash"]) == 16
    # the fit reports its progress over the 4 files (one unreadable, named) on stderr
    lines = out.err.splitlines()
    assert any(line.startswith("skipping ") and "broken.wav" in line for line in lines), out.err
    assert any(line.startswith("codec fit: reading audio") and "4/4" in line for line in lines), out.err

    assert main(["codec", "encode", str(tmp_path / "codec"), str(audio / "sub" / "0.wav"), str(tmp_path / "c.npy")]) == 0
    codes = np.load(tmp_path / "c.npy")
    seconds = len(load_audio(audio / "sub" / "0.wav", 16000)) / 16000
    assert codes.shape == (4, int(np.ceil(seconds * 12.5 - 1e-9))) and codes.max() < 32

    assert main(["codec", "decode", str(tmp_path / "codec"), str(tmp_path / "c.npy"), str(tmp_path / "r.wav")]) == 0
    assert len(load_audio(tmp_path / "r.wav", 16000)) == codes.shape[1] * 1280

    capsys.readouterr()
    assert main(["codec", "info", str(tmp_path / "codec")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "sodakit-offline" and info["num_codebooks"] == 4 and info["bitrate_bps"] == 12.5 * 4 * 5


def test_clear_errors(tmp_path, capsys):
    assert main(["codec", "info", str(tmp_path / "nowhere" / "codec")]) == 2
    assert "no such codec directory" in capsys.readouterr().err
    np.save(tmp_path / "f.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "empty").mkdir()
    assert main(["codec", "decode", str(tmp_path / "empty"), str(tmp_path / "f.npy"), str(tmp_path / "o.wav")]) == 2
    assert "not a codec directory" in capsys.readouterr().err
