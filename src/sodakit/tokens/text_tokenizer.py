"""Text BPE: an adapter over a Hugging Face `tokenizers` tokenizer.json, and an offline BPE trainer.

The text tokenizer owns ids 0 .. V-1 of the unified vocabulary (its own specials, BOS/EOS, included).
It can be

- the Llama-3 tokenizer (V = 128,256) or the released SODA tokenizer, whose tokenizer.json also holds
  the markers and audio characters as added tokens: then V is the id of `<|text_start|>`;
- a small byte-level BPE trained here with `train_bpe` (the offline default).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from sodakit.fileio import atomic_write_text
from sodakit.tokens.vocab import BOS_TEXT, EOS_TEXT, TEXT_START

TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    """Text runs <-> text ids (no specials added; BOS/EOS are placed by the document builders)."""

    def __init__(self, tokenizer: Tokenizer, bos_token: str = BOS_TEXT, eos_token: str = EOS_TEXT, source: str = ""):
        self.tokenizer = tokenizer
        self.source = source
        bos, eos = tokenizer.token_to_id(bos_token), tokenizer.token_to_id(eos_token)
        if bos is None or eos is None:
            raise ValueError(
                f"text tokenizer {source or '(in memory)'}: needs BOS {bos_token!r} and EOS {eos_token!r} tokens"
            )
        self.bos_id, self.eos_id = int(bos), int(eos)
        self.bos_token, self.eos_token = bos_token, eos_token
        text_start = tokenizer.token_to_id(TEXT_START)
        # A SODA-style tokenizer.json carries markers and audio characters as added tokens after the text ids.
        self.vocab_size = int(text_start) if text_start is not None else tokenizer.get_vocab_size(with_added_tokens=True)
        if max(self.bos_id, self.eos_id) >= self.vocab_size:
            raise ValueError(f"text tokenizer {source}: BOS/EOS ids must be below the text vocab size {self.vocab_size}")

    @classmethod
    def from_file(cls, path: str | Path, **kw: str) -> TextTokenizer:
        """Load a tokenizer.json, or a directory containing one."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer at {path} (expected a tokenizer.json file or a directory holding one)")
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:
            raise ValueError(f"{file}: not a Hugging Face tokenizers file ({e})") from e
        return cls(tok, source=str(file), **kw)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        # encode_batch_fast (tokenizers >= 0.20) skips offset tracking, which we never use.
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    @functools.cached_property
    def _plain(self) -> tuple[Tokenizer, frozenset[int]]:
        """This BPE without its added tokens, and the ids those tokens had.

        `tokenizers` matches added tokens (BOS/EOS, Llama-3's reserved specials, the SODA markers and
        audio characters of a released-style file) in the input text before BPE, whatever
        `add_special_tokens` says. Without them every character goes through the BPE model, whose
        pre-tokenizer splits `<|end_of_text|>` into ordinary pieces (`<|`, `end`, ...).
        """
        spec = json.loads(self.tokenizer.to_str())
        added = frozenset(int(t["id"]) for t in spec.get("added_tokens", []))
        spec["added_tokens"] = []
        return Tokenizer.from_str(json.dumps(spec)), added

    def encode_plain_batch(self, texts: list[str]) -> list[list[int]]:
        """Texts -> ids with every character treated as text: a special-token string inside the text
        (`<|begin_of_text|>`, `<|audio_start|>`, ...) becomes ordinary BPE pieces, never that token."""
        if not texts:
            return []
        plain, added = self._plain
        encode = getattr(plain, "encode_batch_fast", plain.encode_batch)
        out = [e.ids for e in encode(texts, add_special_tokens=False)]
        for i, ids in enumerate(out):
            hit = added.intersection(ids)
            if hit:  # a vocabulary whose plain BPE can still spell a special token: refuse, never guess
                raise ValueError(f"text tokenizer {self.source}: text [{i}] encodes to special token id(s) {sorted(hit)}")
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(map(int, ids)), skip_special_tokens=False)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.tokenizer.to_str())


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> TextTokenizer:
    """A byte-level BPE trained locally; ids 0 and 1 are BOS and EOS, then bytes, then merges.

    Byte-level means every string is encodable (no unknown token), like Llama-3's tokenizer.
    """
    if vocab_size < 256 + 2:
        raise ValueError(f"vocab_size must be >= 258 (256 bytes + BOS/EOS), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS_TEXT, EOS_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tok, source="train_bpe")
