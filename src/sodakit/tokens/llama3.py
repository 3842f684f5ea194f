"""Meta's Llama-3 `tokenizer.model` (tiktoken format) -> a Hugging Face `tokenizers` tokenizer.json.

SODA's text vocabulary is exactly Llama-3's: 128,000 byte-level BPE ranks (the file holds one
`base64(token bytes) rank` line per rank; a merge's rank is the rank of the token it makes) plus 256
special tokens at 128000..128255 that Meta's loader appends, in the order written below. The conversion
is transformers' `TikTokenConverter` (Llama-3's pre-tokenizer pattern is its default) fed with the ranks
read here, so the tiktoken package is not needed. BOS is prepended by the post-processor, as in Meta's
Hugging Face release.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

from sodakit.tokens.vocab import BOS_TEXT

NUM_RANKS = 128_000
# Meta's names for ids 128000..128255: ten named or reserved slots, then reserved 5..250.
LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|reserved_special_token_4|>", "<|eot_id|>",
    *(f"<|reserved_special_token_{i}|>" for i in range(5, 251)),
)


def read_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    """token bytes -> rank of a tiktoken BPE file; a malformed line is an error naming it."""
    path = Path(path)
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except (ValueError, binascii.Error) as e:
                raise ValueError(f"{path}:{n}: expected 'base64-token rank', got {line[:60]!r} ({e})") from e
    return ranks


def llama3_tokenizer(path: str | Path) -> Tokenizer:
    """The Llama-3 text tokenizer (128,256 ids, BOS prepended) from Meta's tokenizer.model."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = read_tiktoken_ranks(path)
    if len(ranks) != NUM_RANKS or sorted(ranks.values()) != list(range(NUM_RANKS)):
        raise ValueError(f"{path}: {len(ranks)} ranks, expected Llama-3's {NUM_RANKS} (ranks 0..{NUM_RANKS - 1})")

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(_path):
            return ranks

    tok = _Converter(str(path), extra_special_tokens=list(LLAMA3_SPECIAL_TOKENS)).converted()
    bos_id = tok.token_to_id(BOS_TEXT)
    if bos_id != NUM_RANKS or tok.get_vocab_size(with_added_tokens=True) != NUM_RANKS + len(LLAMA3_SPECIAL_TOKENS):
        raise ValueError(f"{path}: conversion gave BOS id {bos_id} and {tok.get_vocab_size()} ids; expected 128000 / 128256")
    tok.post_processor = TemplateProcessing(single=f"{BOS_TEXT} $A", pair=f"{BOS_TEXT} $A {BOS_TEXT}:1 $B:1",
                                            special_tokens=[(BOS_TEXT, bos_id)])
    return tok
