"""File names made from external ids stay inside their folder and never collide."""

from __future__ import annotations

import pytest

from sodakit.fileio import is_plain_file_name, path_inside, safe_file_name


@pytest.mark.parametrize(
    ("item_id", "name"),
    [
        ("common_voice_en_1-common_voice_en_2", "common_voice_en_1-common_voice_en_2.wav"),
        ("../../../PWNED", "%2E.%2F..%2F..%2FPWNED.wav"),
        ("a/b\\c", "a%2Fb%5Cc.wav"),
        ("..", "%2E..wav"),
        (".hidden", "%2Ehidden.wav"),
        ("50%", "50%25.wav"),
        ("naïve id", "na%C3%AFve%20id.wav"),
        ("nul\0byte", "nul%00byte.wav"),
    ],
)
def test_safe_file_name(item_id, name):
    assert safe_file_name(item_id, ".wav") == name
    assert is_plain_file_name(name) and not name.startswith(".")


def test_distinct_ids_give_distinct_names_and_long_ids_are_cut():
    ids = ["a/b", "a%2Fb", "a_b", ".x", "%2Ex", "x" * 400, "x" * 399 + "y"]
    names = [safe_file_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert max(len(n.encode()) for n in names) <= 200
    with pytest.raises(ValueError, match="empty id"):
        safe_file_name("")


def test_path_inside(tmp_path):
    out = tmp_path / "out"
    for item_id in ("../../x", "/etc/passwd", "..", "a/../../b"):
        p = path_inside(out, item_id, ".wav")
        assert p.parent == out and p.resolve().parent == out.resolve()


@pytest.mark.parametrize(("name", "plain"), [("84-121-0000", True), ("../x", False), ("a/b", False), ("..", False),
                                             (".", False), ("", False), ("a\\b", False)])
def test_is_plain_file_name(name, plain):
    assert is_plain_file_name(name) is plain


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    """Temp-file-then-rename used to leave every output -rw------- (folders drwx------) whatever the umask,
    so teammates and web servers could not read models, data or reports."""
    import os
    import stat

    import numpy as np
    import torch

    from sodakit.data.packed import ShardWriter
    from sodakit.data.segments import Segment, write_segment_shard
    from sodakit.fileio import atomic_write_text
    from sodakit.model.config import ModelConfig
    from sodakit.model.hf import save_hf_dir
    from sodakit.model.qwen3 import build_model

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        writer = ShardWriter(tmp_path, 0)
        writer.add(np.arange(5, dtype=np.uint32))
        writer.finish()
        write_segment_shard(tmp_path / "segments-00000.parquet",
                            [Segment("s", "r", 0.0, 1.0, "hi", np.zeros((2, 3), np.uint16))])
        cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, d_ff=32,
                          max_seq_len=16)
        with torch.device("cpu"):
            out = save_hf_dir(tmp_path / "hf", cfg, build_model(cfg, seed=0).state_dict())
    finally:
        os.umask(old)
    files = [tmp_path / "a.json", tmp_path / "tokens-00000.bin", tmp_path / "tokens-00000.docs.npy",
             tmp_path / "segments-00000.parquet", out / "model.safetensors", out / "config.json"]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(file_mode) for p in files}
    assert oct(stat.S_IMODE(out.stat().st_mode)) == oct(dir_mode)


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    from sodakit.fileio import atomic_directory

    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()  # nothing at the destination while it is filled
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "failed", prefix=".tmp-x-") as tmp:
        assert tmp.name.startswith(".tmp-x-")
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no destination, no temp directory


def test_a_failed_audio_write_leaves_no_file_behind(tmp_path):
    """The LibriSpeech and wav writers write a temp file and rename it; a writer that fails (here soundfile
    refusing a 3-D array) used to leave its `.tmp.flac` in the chapter folder."""
    import numpy as np

    from sodakit.audio.io import save_wav
    from sodakit.eval.layouts import write_librispeech

    with pytest.raises(ValueError, match="too many dimensions"):
        write_librispeech(tmp_path / "ls", [("1-2-0001", "hi", np.zeros((2, 2, 2), np.float32))], 16000)
    assert [p.name for p in (tmp_path / "ls" / "1" / "2").iterdir()] == []
    with pytest.raises(ValueError, match="too many dimensions"):
        save_wav(tmp_path / "a.wav", np.zeros((2, 2, 2), np.float32), 16000)
    assert list(tmp_path.glob("*.wav*")) == [] and [p.name for p in tmp_path.iterdir()] == ["ls"]
