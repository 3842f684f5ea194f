"""Generation prompts, rendered from the token language (tokens/templates.py), and the parsing of generated
ids back into spans.

    ASR          <|begin_of_text|><|audio_start|>{audio}<|audio_end|><|text_start|>        -> until <|text_end|>
                 N-shot: full <|begin_of_text|>..<|end_of_text|> audio-first blocks before the prompt
    TTS          <|begin_of_text|>[<|text_start|>{voice text}<|text_end|><|audio_start|>{voice audio}<|audio_end|>]
                 <|text_start|>{text}<|text_end|><|audio_start|>                            -> until <|audio_end|>
    continuation <|begin_of_text|><|audio_start|>{audio}                                    -> until <|audio_end|>
    S2ST         <|begin_of_text|><|audio_start|>{source audio}<|audio_end|><|text_start|>
                 -> <language>{src}</language>{source text}<|text_end|><|text_start|><language>{tgt}</language>
                    {target text}<|text_end|><|audio_start|>{target audio}<|audio_end|>
                 (known parts -- source language, source text, target text -- may be given as a forced prefix)

The ids equal the released tokenizer's on the same SODA string (docs/soda.md#evaluation-protocol and
#speech-to-speech-translation). User text follows the template rules: text that would turn into audio
codes is refused or escaped (the tokenizer's PUA policy), and a literal marker/BOS/EOS string is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.templates import LANGUAGE_TAG_AT_START, render_ids
from sodakit.tokens.vocab import Vocab


def asr_prompt(tok: SodaTokenizer, codes: np.ndarray, shots: Sequence[tuple[np.ndarray, str]] = ()) -> np.ndarray:
    """ids of the ASR prompt for audio codes [K, F]; `shots` are (codes, transcript) examples."""
    examples = [{"codes": c, "text": t} for c, t in shots]
    return render_ids("asr_prompt", {"audio": codes, "shots": examples}, tok).ids


@dataclass
class VoicePrompt:
    """A voice to clone: its audio codes [K, F] and their transcript."""

    codes: np.ndarray
    text: str


def tts_prompt(tok: SodaTokenizer, text: str, voice: VoicePrompt | None = None) -> np.ndarray:
    return render_ids("tts_prompt", {"text": text, "voice": voice}, tok).ids


def continuation_prompt(tok: SodaTokenizer, codes: np.ndarray) -> np.ndarray:
    return render_ids("continuation_prompt", {"audio": codes}, tok).ids


def s2st_prompt(
    tok: SodaTokenizer,
    source_codes: np.ndarray,
    source_lang: str | None = None,
    source_text: str | None = None,
    target_lang: str | None = None,
    target_text: str | None = None,
) -> np.ndarray:
    """The S2ST prompt; each given field is forced in order (a later one needs the earlier ones)."""
    values = {"source_audio": source_codes, "source_language": source_lang, "source_text": source_text,
              "target_language": target_lang, "target_text": target_text}
    return render_ids("s2st_prompt", values, tok).ids


# ---------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------
@dataclass
class Span:
    kind: Literal["text", "audio", "plain"]
    ids: np.ndarray  # the content (markers excluded)
    closed: bool  # False when the sequence ended inside it


def split_spans(ids: Sequence[int] | np.ndarray, vocab: Vocab) -> list[Span]:
    """Text / audio spans and plain-text runs (outside markers; BOS/EOS dropped) of an id sequence."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    spans: list[Span] = []
    kind: str | None = None
    start = 0
    plain: list[int] = []

    def flush_plain() -> None:
        if plain:
            spans.append(Span("plain", np.asarray(plain, dtype=np.int64), True))
            plain.clear()

    for i, t in enumerate(ids.tolist()):
        if kind is None:
            if t in (vocab.text_start_id, vocab.audio_start_id):
                flush_plain()
                kind, start = ("text" if t == vocab.text_start_id else "audio"), i + 1
            elif t not in (vocab.bos_id, vocab.eos_id, vocab.text_end_id, vocab.audio_end_id) and vocab.is_text(t):
                plain.append(t)
        elif (kind == "text" and t == vocab.text_end_id) or (kind == "audio" and t == vocab.audio_end_id):
            spans.append(Span(kind, ids[start:i], True))  # type: ignore[arg-type]
            kind = None
    if kind is not None:
        spans.append(Span(kind, ids[start:], False))  # type: ignore[arg-type]
    flush_plain()
    return spans


def span_codes(vocab: Vocab, ids: np.ndarray) -> np.ndarray:
    """Codes [K, F] of a flat audio span, truncated to whole frames (docs/soda.md#audio-tokens)."""
    return vocab.ids_to_codes(np.asarray(ids, dtype=np.int64), on_error="raise")


def text_of(tok: SodaTokenizer, ids: np.ndarray, skip_special: bool = False) -> str:
    """The text of the text ids among `ids` (audio ids and markers dropped); skip_special also drops the
    text tokenizer's own special tokens (BOS, EOS, ...), as `decode(..., skip_special_tokens=True)` does."""
    ids = np.asarray(ids, dtype=np.int64)
    text_ids = ids[tok.vocab.is_text(ids)].tolist()
    if skip_special:
        return tok.text.tokenizer.decode(text_ids, skip_special_tokens=True)
    return tok.text.decode(text_ids)


@dataclass
class S2STOutput:
    source_lang: str | None
    source_text: str
    target_lang: str | None
    target_text: str
    target_codes: np.ndarray | None  # [K, F]


def split_language(text: str) -> tuple[str | None, str]:
    m = LANGUAGE_TAG_AT_START.match(text)
    return (m.group(1), text[m.end() :]) if m else (None, text)


def parse_s2st(tok: SodaTokenizer, sequence: Sequence[int] | np.ndarray) -> S2STOutput:
    """Read the generated fields of a full S2ST sequence (prompt + generation)."""
    spans = split_spans(sequence, tok.vocab)
    first_audio = next((i for i, s in enumerate(spans) if s.kind == "audio"), None)
    if first_audio is None:
        raise ValueError("S2ST sequence holds no source audio span")
    after = spans[first_audio + 1 :]
    texts = [s for s in after if s.kind == "text"]
    audio = next((s for s in after if s.kind == "audio"), None)
    src_lang, src_text = split_language(text_of(tok, texts[0].ids)) if texts else (None, "")
    tgt_lang, tgt_text = split_language(text_of(tok, texts[1].ids)) if len(texts) > 1 else (None, "")
    codes = span_codes(tok.vocab, audio.ids) if audio is not None and audio.ids.size else None
    return S2STOutput(src_lang, src_text.strip(), tgt_lang, tgt_text.strip(), codes)
