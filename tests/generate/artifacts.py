"""Small local stand-ins for a released setup: a random-init Mimi saved with save_pretrained, an offline
BPE extended to the SODA layout, and a random tiny model directory whose sidecar records both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from sodakit.model.config import ModelConfig
from sodakit.model.load import write_model_dir
from sodakit.model.qwen3 import build_model
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a small test",
    "le renard brun saute par dessus le chien",
    "bonjour tout le monde",
    "speech to speech translation keeps the voice",
    "<language>fr</language> <language>en</language>",
]


def small_mimi(path: Path, seed: int = 0) -> Path:
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(seed)
    # Mimi's real rates and codebooks (24 kHz, 12.5 Hz, 8 of 10 codebooks of 2048), tiny widths.
    cfg = MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=10, codebook_size=2048, upsample_groups=32,
    )
    MimiModel(cfg).save_pretrained(path)
    return path


def small_tokenizer(path: Path) -> SodaTokenizer:
    text = train_bpe(SENTENCES * 4, vocab_size=320)
    tok = SodaTokenizer(text).with_audio_layout(8, 2048)
    tok.save_pretrained(path)
    return tok


def small_model_dir(path: Path, tok: SodaTokenizer, codec, seed: int = 0, max_seq_len: int = 2048) -> Path:
    cfg = ModelConfig(
        vocab_size=tok.vocab.size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=128,
        max_seq_len=max_seq_len,
    )
    model = build_model(cfg, seed=seed)
    tok_file = path.parent / f"{path.name}-tokenizer"
    tok.save_pretrained(tok_file)
    write_model_dir(path, model.state_dict(), cfg, tok.vocab, dataclasses.asdict(codec.info()), tokenizer=tok_file / "tokenizer.json")
    return path
