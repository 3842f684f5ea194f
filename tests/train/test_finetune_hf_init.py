"""Fine-tuning that starts from a Hugging Face `Qwen3ForCausalLM` directory (no sodakit sidecar): the run
starts from exactly those weights (its first loss equals the loss transformers computes itself on the
same batch) and lowers the response loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sodakit.data.sft import SFTDataset, SFTSource
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe
from sodakit.train.finetune import main, prepare_jsonl

from .conftest import SFT_WORDS, sft_pairs

SEQ, GLOBAL, MICRO, STEPS = 64, 4, 2, 10




@pytest.fixture(scope="module", params=["transformers", "sodakit_export"])
def hf_base(request, tmp_path_factory):
    """A tokenizer (2 codebooks x 16) and a random Qwen3ForCausalLM directory: saved by transformers'
    save_pretrained, or written by sodakit's HF export (save_hf_dir, Llama-3 RoPE scaling, tokenizer copied)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from sodakit.model import hf
    from sodakit.model.config import ModelConfig
    from sodakit.model.qwen3 import build_model

    root = tmp_path_factory.mktemp("hfinit")
    tok = SodaTokenizer(train_bpe([" ".join(SFT_WORDS)] * 8, vocab_size=300)).with_audio_layout(2, 16)
    tok.save_pretrained(root / "tok")
    torch.manual_seed(0)
    if request.param == "transformers":
        cfg = Qwen3Config(
            vocab_size=tok.vocab.size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
            tie_word_embeddings=False, rms_norm_eps=1e-6,
        )
        model = Qwen3ForCausalLM(cfg).eval()
        head = model.lm_head.weight
    else:
        cfg = ModelConfig(vocab_size=tok.vocab.size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                          d_ff=128, max_seq_len=128)
        model = build_model(cfg, seed=0)
        head = model.lm_head.weight
    with torch.no_grad():  # away from near-uniform, and norms that are not all ones, so a mix-up shows
        head.mul_(20.0)
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    if request.param == "transformers":
        model.save_pretrained(root / "hf")
    else:
        hf.save_hf_dir(root / "hf", cfg, model.state_dict(), tokenizer=root / "tok")
        assert (root / "hf" / "tokenizer.json").is_file()
    assert not (root / "hf" / "sodakit.json").exists()
    return {"tok": tok, "tok_dir": root / "tok", "hf": root / "hf"}




def _hf_masked_nll(model, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(sum of NLL over positions with mask 1, number of them); mask[:, t] scores token t."""
    with torch.no_grad():
        logits = model(input_ids=tokens[:, :-1]).logits.double()
    nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    w = mask[:, 1:].double()
    return float((nll * w).sum()), float(w.sum())


def test_finetune_from_hf_directory(hf_base, tmp_path, capsys):
    from transformers import Qwen3ForCausalLM

    sft = prepare_jsonl(sft_pairs(tmp_path / "pairs.jsonl"), tmp_path / "sft", model=str(hf_base["hf"]),
                        tokenizer=str(hf_base["tok_dir"]))
    data = SFTDataset.load(sft)
    assert data.vocab == hf_base["tok"].vocab and len(data) == 8
    run = tmp_path / "run"
    overrides = [
        f"sft.path={sft}", "sft.epochs=null", f"train.model.init_from={hf_base['hf']}", f"train.run_dir={run}",
        f"train.steps={STEPS}", f"train.global_batch={GLOBAL}", f"train.micro_batch={MICRO}",
        f"train.data.seq_len={SEQ}", "train.optim.lr=0.01", "train.device=cpu", "train.precision=fp32",
        "train.log.every=1", "train.log.tensorboard=false", "train.log.progress=false", "train.checkpoint.every=1000",
    ]
    assert main(["run", *overrides]) == 0
    assert "response loss" in capsys.readouterr().out

    hf_model = Qwen3ForCausalLM.from_pretrained(hf_base["hf"], dtype=torch.float32).eval()
    # (1) the engine's first step is scored with the HF weights: same loss on the same first batch
    first = SFTSource(data, SEQ, "response", pack=False, seed=0, rank=0, world_size=1).next_batch(GLOBAL)
    s, n = _hf_masked_nll(hf_model, first["tokens"], first["loss_mask"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == STEPS
    assert losses[0] == pytest.approx(s / n, abs=1e-4)
    # (2) the before-loss of the summary = transformers' response NLL, each example on its own (no padding)
    total, count = 0.0, 0.0
    for seq, start in zip(data.sequences, data.response_starts):
        tokens = torch.as_tensor(np.asarray(seq, dtype=np.int64))[None]
        mask = torch.zeros_like(tokens, dtype=torch.float32)
        mask[0, int(start):] = 1.0
        s_i, n_i = _hf_masked_nll(hf_model, tokens, mask)
        total, count = total + s_i, count + n_i
    summary = json.loads((run / "finetune_summary.json").read_text())
    before, after = summary["loss_before"], summary["loss_after"]
    assert before["tokens"] == count == sum(len(q) - int(r) for q, r in zip(data.sequences, data.response_starts))
    assert before["loss"] == pytest.approx(total / count, abs=1e-4)
    assert before["loss"] > 1.0  # a real starting point, not an already-solved task
    # (3) fine-tuning lowers the response loss
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert losses[-1] < losses[0]
    # the fine-tuned checkpoint carries the SFT data's layout (the HF directory had none)
    from sodakit.model.load import load_pretrained

    model, info = load_pretrained(summary["checkpoint"])
    assert info.vocab == hf_base["tok"].vocab and info.model_config.vocab_size == hf_base["tok"].vocab.size
    emb = hf_model.model.embed_tokens.weight.detach()
    seen = torch.zeros(emb.shape[0], dtype=torch.bool)
    seen[torch.as_tensor(np.concatenate([np.asarray(q, dtype=np.int64) for q in data.sequences]))] = True
    assert seen.any() and (~seen).sum() > 100
    # rows of ids the data never holds get no gradient: they are the HF rows, shrunk only by weight decay
    # (AdamW: (1 - lr * wd) per step, lr <= 0.01, wd 0.01) ...
    torch.testing.assert_close(model.embed.weight[~seen], emb[~seen], rtol=2e-3, atol=1e-6)
    # ... while the rows of the tokens it trained on moved
    assert (model.embed.weight[seen] - emb[seen]).abs().max() > 1e-3
