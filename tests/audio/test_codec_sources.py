"""Codecs from wherever they live (a relative path, a hub id through the offline Hugging Face cache, an
S3 bucket), recorded portably: what a model records opens the same codec from any working directory."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from sodakit import storage
from sodakit.audio.codec import CodecError
from sodakit.audio.registry import load_codec, load_model_codec

from ..hub_cache import REVISION, make_hub_repo


def test_a_relative_codec_path_is_recorded_absolute(tmp_path, monkeypatch, small_mimi):
    """Recorded as typed ("mimi"), the codec could not be found from another directory without --codec."""
    small_mimi(tmp_path / "work" / "mimi")
    monkeypatch.chdir(tmp_path / "work")
    codec = load_codec("mimi", device="cpu")
    record = asdict(codec.info())
    assert record["source"] == str(tmp_path / "work" / "mimi")
    monkeypatch.chdir(tmp_path)  # eval or generate started somewhere else
    again = load_model_codec(None, record, device="cpu")
    assert again.config_hash == codec.config_hash


def test_hub_id_codecs_resolve_offline_and_record_the_revision(tmp_path, hub_cache, small_mimi):
    make_hub_repo(hub_cache, "kyutai/mimi", small_mimi(tmp_path / "m"))
    codec = load_codec("kyutai/mimi", device="cpu")
    assert codec.info().source == f"kyutai/mimi@{REVISION}"
    pinned = load_model_codec(None, asdict(codec.info()), device="cpu")
    assert pinned.config_hash == codec.config_hash
    with pytest.raises(CodecError, match=r"(?s)'kyutai/other'.*HF_HUB_OFFLINE=1.*huggingface-cli download kyutai/mimi"):
        load_codec("kyutai/other")
    with pytest.raises(CodecError, match="cannot be found"):
        load_codec(f"kyutai/mimi@{'f' * 40}")  # a revision that is not in the cache


def test_codec_directory_on_s3(tmp_path, s3_bucket, sodakit_cache, small_mimi):
    storage.upload_dir(small_mimi(tmp_path / "m"), f"{s3_bucket}/codecs/mimi")
    codec = load_codec(f"{s3_bucket}/codecs/mimi", device="cpu")
    assert codec.info().source == f"{s3_bucket}/codecs/mimi"
    assert codec.config_hash == load_codec(tmp_path / "m", device="cpu").config_hash
    with pytest.raises(CodecError, match="no such codec directory"):
        load_codec(f"{s3_bucket}/codecs/none")
