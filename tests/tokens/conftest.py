from __future__ import annotations

import pytest

from sodakit.tokens.text_tokenizer import train_bpe

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech and text tokens live side by side in one stream.",
    "She sells sea shells by the sea shore, doesn't she?",
    "Numbers like 42 and 1,024 appear in text too; so do émigrés and naïve cafés.",
] * 40


@pytest.fixture(scope="session")
def small_bpe():
    return train_bpe(CORPUS, vocab_size=700)
