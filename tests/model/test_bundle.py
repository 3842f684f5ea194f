"""`load_bundle`: every on-disk form of a model opens with its vocabulary, tokenizer and codec; the codec is
checked against the model; devices and dtypes resolve through sodakit.device."""

from __future__ import annotations

import shutil

import pytest
import torch

from sodakit.audio.registry import CodecMismatchError, load_codec
from sodakit.device import DeviceError, resolve_device, resolve_dtype
from sodakit.eval.lm import as_scoring_lm
from sodakit.model.bundle import ModelLoadError, load_bundle
from sodakit.model.commands import export_hf
from sodakit.model.load import COMPLETE_MARKER, read_pretrained
from sodakit.model.qwen3 import Qwen3, build_model
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.config import CheckpointConfig, OptimConfig
from sodakit.train.full_state import load_full_weights
from sodakit.train.optim import build_optimizer

from ..generate.artifacts import small_model_dir, small_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_mimi):
    root = tmp_path_factory.mktemp("bundle")
    codec = load_codec(small_mimi(root / "mimi"), device="cpu")
    tok = small_tokenizer(root / "tok")
    ckpt = small_model_dir(root / "ckpt", tok, codec, max_seq_len=256)
    return {"root": root, "codec": codec, "tok": tok, "ckpt": ckpt}


def _ids(tok):
    return torch.from_numpy(tok.encode("hello world the quick brown fox").astype("int64"))[None]


def test_a_sodakit_checkpoint_opens_with_its_tokenizer_and_codec(setup):
    b = load_bundle(setup["ckpt"], device="cpu", need_codec=True)
    assert isinstance(b.model, Qwen3) and not b.model.training
    assert b.vocab == setup["tok"].vocab and b.tokenizer.vocab == b.vocab
    assert b.codec.config_hash == setup["codec"].config_hash
    assert (b.info.backend, b.info.source_format, b.info.path) == ("sodakit", "sodakit", setup["ckpt"])
    assert b.info.vocab_size == b.vocab.size and b.info.max_positions == 256
    record = b.info.to_dict()
    assert len(record["fingerprint"]) == 32 and record["model_config"]["max_seq_len"] == 256
    # need_codec=False opens none; None opens the recorded one when there is one
    assert load_bundle(setup["ckpt"], device="cpu").codec is None
    assert load_bundle(setup["ckpt"], device="cpu", need_codec=None).codec is not None


def test_a_run_directory_opens_its_newest_complete_checkpoint(setup, tmp_path):
    run = tmp_path / "run" / "checkpoints"
    for step in (10, 20, 30):
        shutil.copytree(setup["ckpt"], run / f"step_{step:08d}")
    for step in (10, 20):  # step 30 was cut off before its COMPLETE marker
        (run / f"step_{step:08d}" / COMPLETE_MARKER).write_text("")
    b = load_bundle(tmp_path / "run", device="cpu")
    assert b.info.path == run / "step_00000020" and b.vocab == setup["tok"].vocab


def sharded_copy(ckpt, run_dir):
    """`ckpt` rewritten the way training writes checkpoints by default: each rank's pieces in shards/."""
    weights, info = read_pretrained(ckpt)
    ctx = D.setup("cpu")
    try:
        model = build_model(info.model_config, ctx.device, seed=0)
        D.shard_model(model, ctx, bf16=False)
        load_full_weights(model, weights, ctx)
        optimizer = build_optimizer(model, OptimConfig(), 1e-3)
        checkpointer = C.Checkpointer(run_dir, CheckpointConfig(format="sharded"), ctx)
        checkpointer.save(1, 0, model, optimizer, info.model_config, {},
                          C.SaveInfo(info.vocab, info.codec, str(info.tokenizer_path), {}))
        checkpointer.close()
    finally:
        D.teardown(ctx)
    return checkpointer.last


def test_a_sharded_checkpoint_opens_like_the_full_one(setup, tmp_path):
    full = load_bundle(setup["ckpt"], device="cpu", need_codec=True)
    ckpt = sharded_copy(setup["ckpt"], tmp_path / "run")
    assert (ckpt / "shards").is_dir() and not (ckpt / "model.safetensors").exists()
    b = load_bundle(tmp_path / "run", device="cpu", need_codec=True)
    assert b.info.path == ckpt and b.info.source_format == "sodakit"
    assert b.vocab == full.vocab and b.tokenizer.vocab == b.vocab and b.codec.config_hash == full.codec.config_hash
    ids = _ids(setup["tok"])
    with torch.no_grad():
        assert torch.equal(b.model(ids), full.model(ids))
    files = [f["file"] for f in b.info.fingerprint["weight_files"]]
    assert files and all(f.startswith("shards/shard-") for f in files)


def test_a_hugging_face_export_opens_with_both_backends_to_the_same_scores(setup, tmp_path):
    hf_dir = export_hf(setup["ckpt"], tmp_path / "hf")
    ours = load_bundle(hf_dir, device="cpu")
    theirs = load_bundle(hf_dir, device="cpu", backend="transformers")
    assert (ours.info.backend, ours.info.source_format) == ("sodakit", "hf")
    assert theirs.info.backend == "transformers" and theirs.info.model_class == "Qwen3ForCausalLM"
    assert ours.vocab == theirs.vocab == setup["tok"].vocab  # the export's sidecar records the layout
    assert theirs.info.codec_record["config_hash"] == setup["codec"].config_hash
    ids = _ids(setup["tok"])
    a = as_scoring_lm(ours.model).token_logprobs(ids)
    b = as_scoring_lm(theirs.model).token_logprobs(ids)
    assert torch.allclose(a, b, atol=1e-4)


def test_a_codec_that_is_not_the_models_is_refused(setup, tmp_path, small_mimi):
    other = small_mimi(tmp_path / "other", seed=1)
    with pytest.raises(CodecMismatchError, match="not the one the model was trained with"):
        load_bundle(setup["ckpt"], device="cpu", codec=str(other), need_codec=True)
    b = load_bundle(setup["ckpt"], device="cpu", codec=str(other), need_codec=True, allow_codec_mismatch=True)
    assert any(n.startswith("WARNING") for n in b.info.notes)
    # codes that do not fit the vocabulary are refused even when asked to allow a mismatch
    four = load_codec(other, device="cpu", num_codebooks=4)
    with pytest.raises(CodecMismatchError, match="needs 8 of 2048"):
        load_bundle(setup["ckpt"], device="cpu", codec=four, allow_codec_mismatch=True)


def test_what_cannot_be_opened_says_why(setup, tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_bundle(tmp_path / "missing", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1"):
        load_bundle("no-such-owner/no-such-model", device="cpu")
    with pytest.raises(ModelLoadError, match="backend must be one of"):
        load_bundle(setup["ckpt"], device="cpu", backend="onnx")
    bare = tmp_path / "bare"
    shutil.copytree(setup["ckpt"], bare)
    (bare / "tokenizer.json").unlink()
    assert load_bundle(bare, device="cpu").tokenizer is None  # the layout is recorded: usable without it
    with pytest.raises(ModelLoadError, match="no tokenizer.json; pass --tokenizer"):
        load_bundle(bare, device="cpu", need_tokenizer=True)
    assert load_bundle(bare, device="cpu", tokenizer=setup["root"] / "tok").tokenizer.vocab == setup["tok"].vocab
    no_codec = small_model_dir(tmp_path / "nc", setup["tok"], setup["codec"])
    sidecar = no_codec / "sodakit.json"
    sidecar.write_text(sidecar.read_text().replace('"source"', '"moved_source"'))
    with pytest.raises(ModelLoadError, match="records no codec source; pass one with --codec"):
        load_bundle(no_codec, device="cpu", need_codec=True)


def test_dtype_and_device_resolution(setup):
    b = load_bundle(setup["ckpt"], device="auto", dtype="bfloat16")
    param = next(b.model.parameters())
    assert param.dtype == torch.bfloat16
    assert param.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (b.info.device.split(":")[0], b.info.dtype) == (param.device.type, "bfloat16")
    assert resolve_device("auto") == resolve_device(torch.device(param.device.type))
    assert resolve_dtype("float32") is torch.float32 and resolve_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(DeviceError, match="float16 is not supported on CPU"):
        load_bundle(setup["ckpt"], device="cpu", dtype="float16")
    with pytest.raises(DeviceError, match="dtype must be one of"):
        resolve_dtype("float64")
    with pytest.raises(DeviceError, match="unknown"):
        resolve_device("tpu:7")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            load_bundle(setup["ckpt"], device="cuda")
