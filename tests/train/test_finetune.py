"""Supervised fine-tuning: SFT datasets, the loss mask, the batch stream, and a real run through the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sodakit.config import load_config
from sodakit.data.sft import SFTDataError, SFTDataset, SFTExample, SFTSource, write_sft_dataset
from sodakit.model.config import ModelConfig
from sodakit.model.load import load_pretrained, write_model_dir
from sodakit.model.qwen3 import build_model
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe
from sodakit.train.finetune import FinetuneConfig, main, prepare_jsonl, response_loss

from .conftest import SFT_WORDS, sft_pairs


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny random model directory with a tokenizer and a small audio layout (2 codebooks x 16)."""
    root = tmp_path_factory.mktemp("ft")
    text = train_bpe([" ".join(SFT_WORDS)] * 8, vocab_size=300)
    tok = SodaTokenizer(text).with_audio_layout(2, 16)
    tok.save_pretrained(root / "tok")
    cfg = ModelConfig(vocab_size=tok.vocab.size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                      d_ff=128, max_seq_len=256)
    model = build_model(cfg, seed=0)
    write_model_dir(root / "model", model.state_dict(), cfg, tok.vocab, None, tokenizer=root / "tok" / "tokenizer.json")
    return {"root": root, "tok": tok, "model": root / "model"}




def test_prepare_jsonl_and_bad_input(base, tmp_path):
    out = prepare_jsonl(sft_pairs(tmp_path / "pairs.jsonl"), tmp_path / "sft", model=str(base["model"]))
    ds = SFTDataset.load(out)
    v = base["tok"].vocab
    assert len(ds) == 8 and ds.vocab == v and (out / "tokenizer.json").is_file()
    for seq, start in zip(ds.sequences, ds.response_starts):
        assert seq[0] == v.bos_id and seq[-1] == v.eos_id and seq[start - 1] == v.text_start_id
        assert v.text_end_id in seq[start:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_examples"] == 8 and meta["vocab"]["fingerprint"] == v.fingerprint
    with pytest.raises(FileExistsError):
        prepare_jsonl(tmp_path / "pairs.jsonl", tmp_path / "sft", model=str(base["model"]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(SFTDataError, match=r"bad.jsonl:1: expected keys"):
        prepare_jsonl(bad, tmp_path / "sft2", model=str(base["model"]))
    (out / "examples.parquet").write_bytes((out / "examples.parquet").read_bytes()[:-9] + b"corrupted")
    with pytest.raises(SFTDataError, match="checksum"):
        SFTDataset.load(out)


def _dataset(tmp_path, vocab, lengths=(5, 9, 7, 12, 6), starts=(2, 4, 3, 10, 1)):
    rng = np.random.default_rng(0)
    ex = [SFTExample(f"e{i}", np.concatenate([[vocab.bos_id], rng.integers(3, 200, n - 1)]), s)
          for i, (n, s) in enumerate(zip(lengths, starts))]
    return SFTDataset.load(write_sft_dataset(tmp_path / "ds", ex, vocab, None))


def test_loss_mask_rows_and_packing(base, tmp_path):
    v = base["tok"].vocab
    ds = _dataset(tmp_path, v)
    src = SFTSource(ds, seq_len=15, loss="response", rank=0, world_size=1)
    for i in range(len(ds)):
        tokens, mask, _, real = src.build_row([i])
        n, s = len(ds.sequences[i]), int(ds.response_starts[i])
        assert real == n - 1  # positions whose target is a real token
        assert np.array_equal(tokens[:n], ds.sequences[i]) and (tokens[n:] == v.eos_id).all()
        assert mask.tolist() == [0.0] * s + [1.0] * (n - s) + [0.0] * (16 - n)
    full = SFTSource(ds, seq_len=15, loss="full", rank=0, world_size=1)
    assert full.build_row([0])[1].tolist() == [0.0] + [1.0] * 4 + [0.0] * 11
    packed = SFTSource(ds, seq_len=15, loss="response", pack=True, rank=0, world_size=1)
    epoch = packed._epoch_rows(0)
    assert sorted(i for row in epoch for i in row) == list(range(len(ds)))
    assert all(sum(len(ds.sequences[i]) for i in row) <= 16 for row in epoch) and len(epoch) < len(ds)
    batch = packed.next_batch(2)
    assert set(batch) == {"tokens", "loss_mask", "segment_ids", "real_tokens"} and batch["tokens"].shape == (2, 16)
    # tokens/s counts real positions only: each row's packed examples, less the last one's final token.
    rows = epoch[:2]
    assert int(batch["real_tokens"]) == sum(min(sum(len(ds.sequences[i]) for i in r), 16) - 1 for r in rows)
    with pytest.raises(SFTDataError, match="longer than seq_len"):
        SFTSource(ds, seq_len=8)


def test_stream_is_the_same_for_any_world_size_and_resumes(base, tmp_path):
    ds = _dataset(tmp_path, base["tok"].vocab)
    one = SFTSource(ds, seq_len=15, seed=3, rank=0, world_size=1)
    two = [SFTSource(ds, seq_len=15, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(4):  # crosses epoch boundaries (5 examples per epoch)
        g = one.next_batch(4)["tokens"]
        parts = torch.cat([s.next_batch(2)["tokens"] for s in two])
        assert torch.equal(g, parts)
    state = json.loads(json.dumps(one.state_dict()))
    ahead = one.next_batch(3)
    again = SFTSource(ds, seq_len=15, seed=3, rank=0, world_size=1)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch(3)["tokens"], ahead["tokens"])
    with pytest.raises(SFTDataError, match="cannot resume"):
        SFTSource(ds, seq_len=15, seed=4, rank=0, world_size=1).load_state_dict(state)


def test_masked_positions_contribute_nothing(base, tmp_path):
    ds = _dataset(tmp_path, base["tok"].vocab)
    src = SFTSource(ds, seq_len=15, rank=0, world_size=1)
    model, _ = load_pretrained(base["model"])
    model.train()
    batch = src.next_batch(3)
    tokens, mask = batch["tokens"], batch["loss_mask"][:, 1:]

    def loss_and_grads(targets):
        model.zero_grad()
        out = model(tokens[:, :-1], targets, loss_mask=mask)
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in model.parameters()]

    l1, g1 = loss_and_grads(tokens[:, 1:])
    scrambled = torch.where(mask == 0, torch.randint_like(tokens[:, 1:], 0, 200), tokens[:, 1:])
    l2, g2 = loss_and_grads(scrambled)
    assert torch.equal(l1, l2) and all(torch.equal(a, b) for a, b in zip(g1, g2))
    # ...and the value is the mean NLL of the response tokens, computed from plain logits.
    with torch.no_grad():
        logp = torch.log_softmax(model(tokens[:, :-1]).float(), -1).gather(-1, tokens[:, 1:, None])[..., 0]
    assert torch.allclose(l1, -(logp * mask).sum() / mask.sum(), atol=1e-5)
    model.zero_grad()


def test_finetune_lowers_response_loss(base, tmp_path, capsys):
    sft = prepare_jsonl(sft_pairs(tmp_path / "pairs.jsonl"), tmp_path / "sft", model=str(base["model"]))
    run = tmp_path / "run"
    overrides = [
        f"sft.path={sft}", "sft.epochs=null", f"train.model.init_from={base['model']}", f"train.run_dir={run}",
        "train.steps=10", "train.global_batch=4", "train.micro_batch=2", "train.data.seq_len=64",
        "train.optim.lr=0.01", "train.device=cpu", "train.precision=fp32", "train.log.tensorboard=false",
        "train.log.progress=false", "train.checkpoint.every=1000",
    ]
    assert main(["run", *overrides]) == 0
    summary = json.loads((run / "finetune_summary.json").read_text())
    before, after = summary["loss_before"]["loss"], summary["loss_after"]["loss"]
    assert after < 0.7 * before, (before, after)
    printed = capsys.readouterr()
    assert "response loss" in printed.out
    # the before/after passes say what they measured, even with progress off
    assert f"response loss before fine-tuning {before:.4f}" in printed.err
    assert f"response loss after fine-tuning {after:.4f}" in printed.err
    # The checkpoint is a regular model directory with the SFT data's layout and tokenizer.
    model, info = load_pretrained(summary["checkpoint"])
    assert info.vocab == base["tok"].vocab and info.tokenizer_path is not None
    src = SFTSource(SFTDataset.load(sft), seq_len=64, rank=0, world_size=1)
    assert abs(response_loss(model, src)["loss"] - after) < 1e-4
    # Defaults follow docs/soda.md#speech-to-speech-translation.
    cfg = load_config(FinetuneConfig)
    assert (cfg.train.global_batch, cfg.train.data.seq_len, cfg.train.optim.lr, cfg.train.schedule.kind) == (64, 2048, 2e-5, "cosine")


def test_finetune_command_errors(base, tmp_path, capsys):
    from sodakit.cli import main as cli_main

    assert cli_main(["finetune", "run", "sft.path=x"]) == 2
    assert "init_from is required" in capsys.readouterr().err
    assert cli_main(["finetune", "prepare-jsonl", "--input", str(tmp_path / "none.jsonl"), "--model", str(base["model"]),
                     "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_finetune_resume_is_exact(base, tmp_path):
    """4 steps straight == 2 steps, stop, resume to 4 (constant LR so the schedule does not depend on the
    total): the SFT source's cursor comes back with the engine's checkpoint."""
    from sodakit.model.load import read_pretrained

    sft = prepare_jsonl(sft_pairs(tmp_path / "pairs.jsonl", n=6), tmp_path / "sft", model=str(base["model"]))
    common = [
        f"sft.path={sft}", "sft.epochs=null", "sft.eval_before=false", "sft.eval_batches=1",
        f"train.model.init_from={base['model']}", "train.global_batch=4", "train.micro_batch=2",
        "train.data.seq_len=64", "train.optim.lr=0.003", "train.schedule.kind=constant", "train.schedule.warmup_frac=0",
        "train.device=cpu", "train.precision=fp32", "train.log.tensorboard=false", "train.log.progress=false",
        "train.checkpoint.every=2",
    ]
    assert main(["run", *common, f"train.run_dir={tmp_path / 'a'}", "train.steps=4"]) == 0
    assert main(["run", *common, f"train.run_dir={tmp_path / 'b'}", "train.steps=2"]) == 0
    assert main(["run", *common, f"train.run_dir={tmp_path / 'b'}", "train.steps=4", "train.checkpoint.resume=auto"]) == 0
    a, _ = read_pretrained(tmp_path / "a" / "checkpoints" / "step_00000004")
    b, _ = read_pretrained(tmp_path / "b" / "checkpoints" / "step_00000004")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
