"""Task prompts exactly as docs/soda.md#evaluation-protocol and #speech-to-speech-translation, built as SODA strings and tokenized by `SodaTokenizer`
(so they match the released tokenizer's ids), and the parsing of generated ids back into spans.

    ASR          <|begin_of_text|><|audio_start|>{audio}<|audio_end|><|text_start|>        -> until <|text_end|>
                 N-shot: full <|begin_of_text|>..<|end_of_text|> audio-first blocks before the prompt
    TTS          <|begin_of_text|>[<|text_start|>{voice text}<|text_end|><|audio_start|>{voice audio}<|audio_end|>]
                 <|text_start|>{text}<|text_end|><|audio_start|>                            -> until <|audio_end|>
    continuation <|begin_of_text|><|audio_start|>{audio}                                    -> until <|audio_end|>
    S2ST         <|begin_of_text|><|audio_start|>{source audio}<|audio_end|><|text_start|>
                 -> <language>{src}</language>{source text}<|text_end|><|text_start|><language>{tgt}</language>
                    {target text}<|text_end|><|audio_start|>{target audio}<|audio_end|>
                 (known parts -- source language, source text, target text -- may be given as a forced prefix)

The released tokenizer prepends BOS, so every prompt starts with it. `<language>` tags are plain text.
User text goes through the tokenizer's PUA policy (text that would turn into audio codes is refused or
escaped), never straight into the string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import AUDIO_END, AUDIO_START, BOS_TEXT, EOS_TEXT, TEXT_END, TEXT_START, Vocab

LANGUAGE_TAG = re.compile(r"^\s*<language>(.*?)</language>", re.DOTALL)
DEFAULT_TARGET_LANGUAGE = "en"


def _audio(tok: SodaTokenizer, codes: np.ndarray, where: str) -> str:
    codes = np.asarray(codes)
    k = tok.vocab.num_codebooks
    if codes.ndim != 2 or codes.shape[0] < k:
        raise ValueError(f"{where}: audio codes must be [K>={k}, frames], got shape {codes.shape}")
    if codes.shape[1] == 0:
        raise ValueError(f"{where}: audio has no frames")
    return tok.vocab.codes_to_pua(codes[:k])


def _text(tok: SodaTokenizer, text: str, where: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected a string, got {type(text).__name__}")
    return tok.prepare_text(text, where)


def language_tag(lang: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", lang or ""):
        raise ValueError(f"language code {lang!r}: expected letters, digits, '-' or '_' (e.g. 'fr', 'zh-CN')")
    return f"<language>{lang}</language>"


def asr_prompt(tok: SodaTokenizer, codes: np.ndarray, shots: Sequence[tuple[np.ndarray, str]] = ()) -> np.ndarray:
    """ids of the ASR prompt for audio codes [K, F]; `shots` are (codes, transcript) examples."""
    parts = []
    for i, (c, t) in enumerate(shots):
        parts.append(
            f"{BOS_TEXT}{AUDIO_START}{_audio(tok, c, f'shot {i}')}{AUDIO_END}"
            f"{TEXT_START}{_text(tok, t, f'shot {i} transcript')}{TEXT_END}{EOS_TEXT}"
        )
    parts.append(f"{BOS_TEXT}{AUDIO_START}{_audio(tok, codes, 'ASR audio')}{AUDIO_END}{TEXT_START}")
    return tok.encode("".join(parts), add_bos=False)


@dataclass
class VoicePrompt:
    """A voice to clone: its audio codes [K, F] and their transcript."""

    codes: np.ndarray
    text: str


def tts_prompt(tok: SodaTokenizer, text: str, voice: VoicePrompt | None = None) -> np.ndarray:
    s = BOS_TEXT
    if voice is not None:
        s += (
            f"{TEXT_START}{_text(tok, voice.text, 'voice prompt text')}{TEXT_END}"
            f"{AUDIO_START}{_audio(tok, voice.codes, 'voice prompt audio')}{AUDIO_END}"
        )
    s += f"{TEXT_START}{_text(tok, text, 'TTS text')}{TEXT_END}{AUDIO_START}"
    return tok.encode(s, add_bos=False)


def continuation_prompt(tok: SodaTokenizer, codes: np.ndarray) -> np.ndarray:
    return tok.encode(f"{BOS_TEXT}{AUDIO_START}{_audio(tok, codes, 'continuation audio')}", add_bos=False)


def s2st_prompt(
    tok: SodaTokenizer,
    source_codes: np.ndarray,
    source_lang: str | None = None,
    source_text: str | None = None,
    target_lang: str | None = None,
    target_text: str | None = None,
) -> np.ndarray:
    """The S2ST prompt; each given field is forced in order (a later one needs the earlier ones)."""
    s = f"{BOS_TEXT}{AUDIO_START}{_audio(tok, source_codes, 'source audio')}{AUDIO_END}{TEXT_START}"
    if source_lang is not None:
        s += language_tag(source_lang)
        if source_text is not None:
            s += f"{_text(tok, source_text, 'source text')}{TEXT_END}{TEXT_START}"
            if target_lang is not None:
                s += language_tag(target_lang)
                if target_text is not None:
                    s += f"{_text(tok, target_text, 'target text')}{TEXT_END}{AUDIO_START}"
    elif any(x is not None for x in (source_text, target_lang, target_text)):
        raise ValueError("s2st_prompt: forcing source text or the target side needs the source language too")
    return tok.encode(s, add_bos=False)


def s2st_sequence(
    tok: SodaTokenizer,
    source_codes: np.ndarray,
    source_lang: str,
    source_text: str,
    target_text: str,
    target_codes: np.ndarray,
    target_lang: str = DEFAULT_TARGET_LANGUAGE,
    response_from: Literal["source_text", "target_text", "target_audio"] = "source_text",
) -> tuple[np.ndarray, int]:
    """The full S2ST training sequence (docs/soda.md#speech-to-speech-translation) and the index of its first response token.

    response_from picks what the loss is masked to: everything after the source audio (the model learns
    to transcribe, translate and speak), from the target text on, or the target audio only.
    """
    pieces = [
        f"{BOS_TEXT}{AUDIO_START}{_audio(tok, source_codes, 'source audio')}{AUDIO_END}{TEXT_START}",
        f"{language_tag(source_lang)}{_text(tok, source_text, 'source text')}{TEXT_END}{TEXT_START}",
        f"{language_tag(target_lang)}{_text(tok, target_text, 'target text')}{TEXT_END}{AUDIO_START}",
        f"{_audio(tok, target_codes, 'target audio')}{AUDIO_END}{EOS_TEXT}",
    ]
    ids = tok.encode("".join(pieces), add_bos=False)
    cut = {"source_text": 1, "target_text": 2, "target_audio": 3}
    if response_from not in cut:
        raise ValueError(f"response_from must be one of {sorted(cut)}, got {response_from!r}")
    # Markers split the string before BPE, so the prefix's ids are a prefix of the sequence's ids.
    prefix = tok.encode("".join(pieces[: cut[response_from]]), add_bos=False)
    if not np.array_equal(ids[: len(prefix)], prefix):
        raise AssertionError("s2st_sequence: prefix tokenization is not a prefix of the sequence")
    return ids, len(prefix)


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
    m = LANGUAGE_TAG.match(text)
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
