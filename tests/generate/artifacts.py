"""Small local stand-ins for a released setup: a random-init Mimi saved with save_pretrained, an offline
BPE extended to the SODA layout, and a random tiny model directory whose sidecar records both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
