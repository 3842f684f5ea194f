"""The token language: every sequence sodakit builds, declared in one table, rendered by one function.

A template is a sequence of span kinds (docs/soda.md#documents, #evaluation-protocol and
#speech-to-speech-translation):

    BOS, EOS          <|begin_of_text|>, <|end_of_text|>
    text(...)         <|text_start|> content <|text_end|>; content is text fields and language tags
    audio(f)          <|audio_start|> codes of f, frame-major <|audio_end|>
    open_text/audio   the same without the closing marker: generation writes the rest
    plain(...)        text with no markers around it (text-only documents, lm-eval style continuations)
    language(f)       `<language>{code}</language>`, plain text at the head of a text span (S2ST)
    each(f, ...)      the spans repeated for every item of f (a recording's segments, ASR shots)
    optional(f, ...)  the spans once when f is given (a TTS voice prompt)

`render_ids` turns a template and its values into token ids; `render_string` into the SODA string form
(text as characters, audio codes as Private Use Area characters), which only templates over raw text
and codes have. The two agree: the id form equals tokenizing the string form (tests prove it), because
the tokenizer splits on markers first and BPE-encodes each text run between them on its own -- so the
renderer joins the text pieces of one run (a language tag and its text) before encoding them.

Values are looked up by field name: in the top-level mapping, or on the current item inside `each` /
`optional` (an attribute, e.g. a segment's `.text` and `.codes`, or a mapping key). A text value is a
string (checked and encoded here) or a sequence of ids already encoded (eval spans); an audio value is
codes [K, F]. Text follows one rule in every template: characters of the audio range obey the PUA
policy (`TextInAudioRangeError` or escaped), and a literal marker, BOS or EOS string is refused
(`MarkerInTextError`), since it would change the sequence's structure. Text-only documents are the one
exception: their text is text, whatever it holds (special-token strings become ordinary BPE pieces), so
it has an id form only when it holds such strings.

Scoring templates mark the spans they score (`scored`); `Rendered.scored` are those positions (for
audio, only the codebook columns asked for). Named spans report where their content starts
(`Rendered.starts`), e.g. where an S2ST sequence's response begins. A template with `forced_prefix`
renders up to the first field not given (the S2ST prompt forces the fields it knows, in order).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from sodakit.tokens.soda_tokenizer import PuaPolicy, SodaTokenizer, apply_pua_policy, audio_char_pattern
from sodakit.tokens.vocab import (
    AUDIO_END,
    AUDIO_START,
    BOS_TEXT,
    EOS_TEXT,
    MARKERS,
    PUA_BASE,
    TEXT_END,
    TEXT_START,
    Vocab,
)

DEFAULT_TARGET_LANGUAGE = "en"
LANGUAGE_CODE = re.compile(r"[A-Za-z0-9_\-]+")
LANGUAGE_TAG_AT_START = re.compile(r"^\s*<language>(.*?)</language>", re.DOTALL)


class MarkerInTextError(ValueError):
    """Text holds a literal marker (or BOS/EOS) string, which would change the sequence's structure."""


# ---------------------------------------------------------------------------------------------------
# Span kinds
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """One fixed token: "bos" or "eos"."""

    kind: Literal["bos", "eos"]


@dataclass(frozen=True)
class Field:
    """A text field inside a text or plain span; `scored` marks its positions for scoring."""

    name: str
    scored: bool = False


@dataclass(frozen=True)
class Language:
    """`<language>{code}</language>` from a field (plain text, so it joins the text run around it)."""

    name: str


@dataclass(frozen=True)
class Text:
    content: tuple[Field | Language, ...]
    open: bool = False  # no <|text_end|>: generation continues inside the span
    plain: bool = False  # no markers at all; string values keep special-token strings as text
    name: str | None = None  # report where the content starts (Rendered.starts)


@dataclass(frozen=True)
class Audio:
    field: str | None  # None: an open span with nothing in it yet
    books: Literal["all", "semantic", "chosen"] = "all"  # "chosen": the codebooks the caller passes
    open: bool = False
    scored: bool = False
    name: str | None = None


@dataclass(frozen=True)
class Each:
    field: str
    body: tuple[Span, ...]
    label: str  # names an item in errors: "segment text[1] (segment utt1)"
    optional: bool = False  # the field is one item or None, not a sequence


Span = Token | Text | Audio | Each

BOS = Token("bos")
EOS = Token("eos")


def _content(items: Sequence[str | Field | Language]) -> tuple[Field | Language, ...]:
    return tuple(Field(i) if isinstance(i, str) else i for i in items)


def text(*content: str | Field | Language, name: str | None = None) -> Text:
    return Text(_content(content), name=name)


def open_text(*content: str | Field | Language) -> Text:
    return Text(_content(content), open=True)


def plain(*content: str | Field) -> Text:
    return Text(_content(content), plain=True)


def scored(name: str) -> Field:
    return Field(name, scored=True)


def language(name: str) -> Language:
    return Language(name)


def audio(field: str, books: Literal["all", "semantic", "chosen"] = "all", scored: bool = False,
          name: str | None = None) -> Audio:
    return Audio(field, books, scored=scored, name=name)


def open_audio(field: str | None = None) -> Audio:
    return Audio(field, open=True)


def each(field: str, *body: Span, label: str) -> Each:
    return Each(field, body, label)


def optional(field: str, *body: Span, label: str) -> Each:
    return Each(field, body, label, optional=True)


@dataclass(frozen=True)
class Template:
    role: Literal["document", "text_document", "training", "scoring", "prompt"]
    spans: tuple[Span, ...]
    forced_prefix: bool = False  # render up to the first field not given; a later given field is an error


# ---------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------
_S2ST = (
    BOS,
    audio("source_audio"),
    text(language("source_language"), "source_text", name="source_text"),
    text(language("target_language"), "target_text", name="target_text"),
    audio("target_audio", name="target_audio"),
    EOS,
)

TEMPLATES: dict[str, Template] = {
    # Training documents of one recording: `segments` in time order, each with .text and .codes.
    "text_first": Template("document", (BOS, each("segments", text("text"), audio("codes"), label="segment"), EOS)),
    "audio_first": Template("document", (BOS, each("segments", audio("codes"), text("text"), label="segment"), EOS)),
    "audio_only": Template("document", (BOS, each("segments", audio("codes"), label="segment"), EOS)),
    # Codebook k keeps its own id range even when the others are dropped.
    "semantic_only": Template("document", (BOS, each("segments", audio("codes", books="semantic"), label="segment"), EOS)),
    # A text-only corpus document (web text), no text markers.
    "text_only": Template("text_document", (BOS, plain("text"), EOS)),
    # S2ST fine-tuning: source speech, its transcript, the translation, the translated speech.
    "s2st": Template("training", _S2ST),
    # Scoring spans: the likelihood of the scored positions given everything before them.
    "speech_score": Template("scoring", (BOS, audio("audio", books="chosen", scored=True, name="audio"))),
    "text_score": Template("scoring", (BOS, text(scored("text")))),
    "continuation_score": Template("scoring", (BOS, plain("context", scored("continuation")))),
    "continuation_score_in_text": Template("scoring", (BOS, text("context", scored("continuation")))),
    # A transcript after an utterance's audio (the ASR order), scoring the transcript's text tokens.
    "text_after_audio_score": Template("scoring", (BOS, audio("audio", books="chosen", name="audio"),
                                                   text(scored("text")))),
    # An utterance's audio after a transcript (the TTS order), scoring the audio tokens.
    "audio_after_text_score": Template("scoring", (BOS, text("text"),
                                                   audio("audio", books="chosen", scored=True, name="audio"))),
    # Generation prompts: the training formats cut where the model is to go on.
    "asr_prompt": Template("prompt", (each("shots", BOS, audio("codes"), text("text"), EOS, label="shot"),
                                      BOS, audio("audio"), open_text())),
    "tts_prompt": Template("prompt", (BOS, optional("voice", text("text"), audio("codes"), label="voice prompt"),
                                      text("text"), open_audio())),
    "continuation_prompt": Template("prompt", (BOS, open_audio("audio"))),
    "s2st_prompt": Template("prompt", _S2ST, forced_prefix=True),
}

DOC_FORMATS: tuple[str, ...] = tuple(k for k, t in TEMPLATES.items() if t.role == "document")


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown template {name!r}; choose from {tuple(TEMPLATES)}") from None


def reads_text(name: str) -> bool:
    """Whether a template renders a text span from its values (a document format that needs transcripts)."""

    def walk(spans: Sequence[Span]) -> bool:
        return any((isinstance(s, Text) and any(isinstance(c, Field) for c in s.content))
                   or (isinstance(s, Each) and walk(s.body)) for s in spans)

    return walk(get_template(name).spans)


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rendered:
    ids: np.ndarray
    scored: np.ndarray  # int64 positions of the scored tokens, ascending (empty when none)
    starts: dict[str, int] = field(default_factory=dict)  # content start of each named span


class _Missing(Exception):
    """A forced-prefix template reached a field that was not given."""


def language_tag(code: str) -> str:
    if not isinstance(code, str) or not LANGUAGE_CODE.fullmatch(code):
        raise ValueError(f"language code {code!r}: expected letters, digits, '-' or '_' (e.g. 'fr', 'zh-CN')")
    return f"<language>{code}</language>"


def check_no_structure_strings(text: str, specials: Sequence[str], where: str) -> None:
    """Refuse text holding a marker/BOS/EOS string: tokenized, it would become that token."""
    found = [(pos, s) for s in specials if (pos := text.find(s)) >= 0]
    if found:
        pos, special = min(found)
        raise MarkerInTextError(
            f"{where}: text holds the literal string {special!r} at position {pos}, which would act as that token "
            f"and change the sequence's structure; remove it from the text"
        )


def frame_columns(span_len: int, per_frame: int, cols: Sequence[int]) -> np.ndarray:
    """Offsets within a flat frame-major span of the tokens in columns `cols` of each frame."""
    grid = np.arange(span_len, dtype=np.int64).reshape(span_len // per_frame, per_frame)
    return grid[:, list(cols)].reshape(-1)


@functools.lru_cache(maxsize=64)
def _offsets(base: int, codebook_size: int, books: tuple[int, ...]) -> np.ndarray:
    return base + codebook_size * np.asarray(books, dtype=np.int64)


def _pick(codes: np.ndarray, books: tuple[int, ...]) -> np.ndarray:
    """Rows `books` of codes [K, F]; a view when they are the first len(books) codebooks."""
    return codes[: len(books)] if books[-1] == len(books) - 1 and books[0] == 0 else codes[list(books)]


def _flat_codes(codes: np.ndarray, books: tuple[int, ...], base: int, codebook_size: int) -> np.ndarray:
    """codes [K, F] -> base + codebook_size * book + code, frame-major over `books` (int64)."""
    return (codes.astype(np.int64) + _offsets(base, codebook_size, books)[:, None]).T.reshape(-1)


_NOTHING = object()


def _lookup(scope: Any, name: str) -> Any:
    if type(scope) is dict:
        return scope.get(name)
    v = getattr(scope, name, _NOTHING)
    if v is _NOTHING:
        return scope.get(name) if isinstance(scope, Mapping) else None
    return v


class _Walk:
    """Walks a template over its values and checks them; the builder turns the pieces into ids or a string.

    Error locations ("segment text[1] (segment utt1)") are only formatted when there is an error: this
    runs once per utterance when packing.
    """

    def __init__(self, name: str, template: Template, vocab: Vocab, builder, specials: Sequence[str],
                 pua_policy: PuaPolicy, chosen_books: Sequence[int] | None):
        self.name, self.template, self.vocab, self.builder = name, template, vocab, builder
        self.specials = specials
        self.check_pua = pua_policy == "error"  # "escape" cannot fail: the builder escapes
        self.audio_chars = audio_char_pattern(vocab.num_audio_tokens)
        self.allow_empty_audio = template.role == "document"
        every = tuple(range(vocab.num_codebooks))
        chosen = every if chosen_books is None else tuple(chosen_books)
        if not chosen:
            raise ValueError(f"{name}: no codebooks chosen")
        self.books = {"all": every, "semantic": tuple(vocab.semantic_codebooks), "chosen": chosen}
        self.missing: str | None = None

    def run(self, values: Mapping[str, Any]) -> None:
        try:
            self.spans(self.template.spans, values, None)
        except _Missing:
            self.check_nothing_after(values)

    def check_nothing_after(self, values: Mapping[str, Any]) -> None:
        """After a forced prefix stopped at a missing field, every later field must be missing too."""
        names = [n for s in self.template.spans for n in _field_names(s)]
        for n in names[names.index(self.missing) + 1 :]:
            if values.get(n) is not None:
                raise ValueError(f"{self.name}: forcing {n.replace('_', ' ')} needs {self.missing.replace('_', ' ')} too")

    def where(self, item: tuple[str, int | None, Any] | None, name: str) -> str:
        if item is None:
            return f"{self.name}.{name}"
        label, i, obj = item
        if i is None:
            return f"{label} {name}"
        obj_id = getattr(obj, "id", None)
        return f"{label} {name}[{i}]" + (f" ({label} {obj_id})" if obj_id else "")

    def value(self, scope: Any, name: str, item) -> Any:
        v = _lookup(scope, name)
        if v is None:
            if self.template.forced_prefix:
                self.missing = name
                raise _Missing
            raise ValueError(f"{self.where(item, name)}: no value given (template {self.name} needs field {name!r})")
        return v

    def spans(self, spans: Sequence[Span], scope: Any, item) -> None:
        b = self.builder
        for s in spans:
            t = type(s)
            if t is Token:
                b.token(s.kind)
            elif t is Audio:
                self.audio(s, scope, item)
            elif t is Text:
                self.text(s, scope, item)
            else:
                self.each(s, scope, item)

    def each(self, s: Each, scope: Any, item) -> None:
        v = _lookup(scope, s.field)
        if s.optional:
            if v is not None:
                self.spans(s.body, v, (s.label, None, v))
            return
        if v is None:
            raise ValueError(f"{self.where(item, s.field)}: no value given (template {self.name} needs it)")
        for i, obj in enumerate(v):
            self.spans(s.body, obj, (s.label, i, obj))

    def text(self, s: Text, scope: Any, item) -> None:
        b = self.builder
        if not s.plain:
            b.token("text_start")
        if s.name is not None:
            b.mark(s.name)
        for piece in s.content:
            v = self.value(scope, piece.name, item)
            if type(piece) is Language:
                b.text(language_tag(v), s.plain, False)
                continue
            if type(v) is str:
                if not s.plain:
                    for special in self.specials:
                        if special in v:
                            check_no_structure_strings(v, self.specials, self.where(item, piece.name))
                if self.check_pua and self.audio_chars.search(v):
                    apply_pua_policy(v, self.vocab.num_audio_tokens, "error", self.where(item, piece.name))
            elif not isinstance(v, (Sequence, np.ndarray)):
                raise TypeError(f"{self.where(item, piece.name)}: expected a string or token ids, got {type(v).__name__}")
            if piece.scored and len(v) == 0:
                raise ValueError(f"{self.where(item, piece.name)}: empty text (0 tokens)")
            b.text(v, s.plain, piece.scored)
        if not (s.open or s.plain):
            b.token("text_end")

    def audio(self, s: Audio, scope: Any, item) -> None:
        b = self.builder
        b.token("audio_start")
        if s.name is not None:
            b.mark(s.name)
        if s.field is not None:
            codes = self.value(scope, s.field, item)
            if type(codes) is not np.ndarray:
                codes = np.asarray(codes)
            books = self.books[s.books]
            if codes.ndim != 2 or codes.shape[0] <= max(books):
                raise ValueError(f"{self.where(item, s.field)}: audio codes must be [K>={max(books) + 1}, frames], "
                                 f"got shape {codes.shape}")
            if codes.shape[1] == 0 and (s.scored or not self.allow_empty_audio):
                raise ValueError(f"{self.where(item, s.field)}: empty audio span (0 frames)")
            # Only the codebooks rendered are checked: a format that drops the others ignores them.
            used = _pick(codes, books)
            size = self.vocab.codebook_size
            if used.size and (used.min() < 0 or used.max() >= size):
                raise ValueError(f"{self.where(item, s.field)}: audio codes outside [0, {size}): "
                                 f"min {used.min()}, max {used.max()}")
            b.audio(used, books, s.scored)
        if not s.open:
            b.token("audio_end")


def _field_names(s: Span) -> list[str]:
    if isinstance(s, Token):
        return []
    if isinstance(s, Audio):
        return [] if s.field is None else [s.field]
    if isinstance(s, Text):
        return [p.name for p in s.content]
    return [s.field]


@functools.lru_cache(maxsize=16)
def _marker_arrays(vocab: Vocab, dtype: np.dtype) -> dict[str, np.ndarray]:
    ids = {"bos": vocab.bos_id, "eos": vocab.eos_id, "text_start": vocab.text_start_id,
           "text_end": vocab.text_end_id, "audio_start": vocab.audio_start_id, "audio_end": vocab.audio_end_id}
    return {k: np.array([i], dtype=dtype) for k, i in ids.items()}


class _Run:
    """A run of text still to encode; `plain` runs keep special-token strings as text."""

    __slots__ = ("plain", "text")

    def __init__(self, text: str, plain: bool):
        self.text, self.plain = text, plain


class _IdBuilder:
    """Pieces -> ids. Text runs are encoded at the end, in one batch per kind of encoding."""

    def __init__(self, vocab: Vocab, tokenizer: SodaTokenizer | None, dtype, score_columns, cache):
        self.vocab, self.tokenizer, self.dtype = vocab, tokenizer, np.dtype(dtype)
        self.fixed = _marker_arrays(vocab, self.dtype)
        self.parts: list[Any] = []  # id arrays and _Runs
        self.open_run: _Run | None = None  # the run an unscored text piece right after it joins
        self.scored: list[tuple[int, int | None]] = []  # (part index, codebooks per frame; None: text)
        self.score_columns = score_columns
        self.marks: dict[str, int] = {}
        self.cache = {} if cache is None else cache

    def token(self, kind: str) -> None:
        self.parts.append(self.fixed[kind])
        self.open_run = None

    def mark(self, name: str) -> None:
        self.marks[name] = len(self.parts)

    def text(self, v, plain: bool, is_scored: bool) -> None:
        if is_scored:
            self.scored.append((len(self.parts), None))
        if type(v) is not str:
            self.parts.append(np.asarray(v).reshape(-1).astype(self.dtype, copy=False))
            self.open_run = None
            return
        if self.tokenizer is None:
            raise ValueError("text given as a string but no tokenizer to encode it")
        run = self.open_run
        if run is not None and not is_scored and run.plain == plain:
            run.text += v
            return
        run = _Run(v, plain)
        self.parts.append(run)
        self.open_run = None if is_scored else run

    def audio(self, codes: np.ndarray, books: tuple[int, ...], is_scored: bool) -> None:
        v = self.vocab
        if is_scored:
            self.scored.append((len(self.parts), len(books)))
        self.parts.append(_flat_codes(codes, books, v.audio_offset, v.codebook_size).astype(self.dtype, copy=False))
        self.open_run = None

    def _encode_runs(self) -> None:
        tok, parts, cache, dtype = self.tokenizer, self.parts, self.cache, self.dtype
        todo: dict[tuple[bool, str], list[int]] = {}
        for i, p in enumerate(parts):
            if type(p) is _Run:
                key = (p.plain, p.text)
                ids = cache.get(key)
                if ids is None:
                    todo.setdefault(key, []).append(i)
                else:
                    parts[i] = np.asarray(ids, dtype=dtype)
        if not todo:
            return
        assert tok is not None  # text() refused strings without a tokenizer
        for plain in (False, True):
            keys = [k for k in todo if k[0] == plain]
            if not keys:
                continue
            # Under the "error" policy the walk has checked every piece, so the text is used as it is.
            texts = [k[1] if tok.pua_policy == "error" else tok.prepare_text(k[1]) for k in keys]
            encoded = tok.text.encode_plain_batch(texts) if plain else tok.text.encode_batch(texts)
            for k, ids in zip(keys, encoded):
                cache[k] = ids
                for i in todo[k]:
                    parts[i] = np.asarray(ids, dtype=dtype)

    def finish(self) -> Rendered:
        self._encode_runs()
        parts = self.parts
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)
        if not (self.scored or self.marks):
            return Rendered(ids, np.zeros(0, np.int64))
        starts = np.cumsum([0] + [len(p) for p in parts])
        positions = []
        for i, width in self.scored:
            n = len(parts[i])
            if width is None:
                positions.append(starts[i] + np.arange(n, dtype=np.int64))
            else:
                positions.append(starts[i] + frame_columns(n, width, self.score_columns or range(width)))
        scored_pos = np.sort(np.concatenate(positions)).astype(np.int64) if positions else np.zeros(0, np.int64)
        return Rendered(ids, scored_pos, {k: int(starts[i]) for k, i in self.marks.items()})


class _StringBuilder:
    """Pieces -> the SODA string form (text as characters, audio as Private Use Area characters)."""

    NAMES: ClassVar[dict[str, str]] = {"bos": BOS_TEXT, "eos": EOS_TEXT, "text_start": TEXT_START,
                                       "text_end": TEXT_END, "audio_start": AUDIO_START, "audio_end": AUDIO_END}

    def __init__(self, vocab: Vocab, pua_policy: PuaPolicy):
        self.vocab, self.pua_policy = vocab, pua_policy
        self.out: list[str] = []

    def token(self, kind: str) -> None:
        self.out.append(self.NAMES[kind])

    def mark(self, name: str) -> None:
        pass

    def text(self, v, plain: bool, is_scored: bool) -> None:
        if type(v) is not str:
            raise ValueError("text given as token ids: the string form needs the text")
        if plain:
            # The string form would read a special-token string as that token: only the id form keeps it as text.
            found = [(pos, s) for s in (*MARKERS, BOS_TEXT, EOS_TEXT) if (pos := v.find(s)) >= 0]
            if found:
                pos, special = min(found)
                raise MarkerInTextError(
                    f"text holds the literal string {special!r} at position {pos}: the string form would read it as "
                    f"that token; build the document in id form (text_document_ids), which keeps it as text"
                )
        # Under "error" the walk has refused audio-range characters already; "escape" escapes them here.
        self.out.append(apply_pua_policy(v, self.vocab.num_audio_tokens, "escape") if self.pua_policy == "escape" else v)

    def audio(self, codes: np.ndarray, books: tuple[int, ...], is_scored: bool) -> None:
        cps = _flat_codes(codes, books, PUA_BASE, self.vocab.codebook_size)
        self.out.append(cps.astype("<u4").tobytes().decode("utf-32-le"))

    def finish(self) -> str:
        return "".join(self.out)


def render_ids(
    name: str,
    values: Mapping[str, Any],
    tokens: SodaTokenizer | Vocab,
    *,
    audio_books: Sequence[int] | None = None,
    score_columns: Sequence[int] | None = None,
    dtype=np.uint32,
    text_cache: dict | None = None,
) -> Rendered:
    """Ids of template `name` over `values`.

    tokens: a SodaTokenizer (needed when a text value is a string), or just the Vocab when every text is
    given as ids. audio_books: the codebooks of `books="chosen"` audio spans (default all). score_columns:
    the columns of each rendered frame that a scored audio span scores (default all). text_cache: a dict
    shared between calls over the same texts (a recording's several documents) so each is encoded once.
    """
    template = get_template(name)
    tok = tokens if isinstance(tokens, SodaTokenizer) else None
    vocab = tokens.vocab if isinstance(tokens, SodaTokenizer) else tokens
    specials = (*MARKERS, tok.text.bos_token, tok.text.eos_token) if tok is not None else (*MARKERS, BOS_TEXT, EOS_TEXT)
    builder = _IdBuilder(vocab, tok, dtype, score_columns, text_cache)
    policy = tok.pua_policy if tok is not None else "error"
    _Walk(name, template, vocab, builder, specials, policy, audio_books).run(values)
    return builder.finish()


def render_string(name: str, values: Mapping[str, Any], vocab: Vocab, pua_policy: PuaPolicy = "error") -> str:
    """The SODA string form of template `name` over `values` (text values must be strings)."""
    if pua_policy not in ("error", "escape"):
        raise ValueError(f"pua_policy must be 'error' or 'escape', got {pua_policy!r}")
    builder = _StringBuilder(vocab, pua_policy)
    _Walk(name, get_template(name), vocab, builder, (*MARKERS, BOS_TEXT, EOS_TEXT), pua_policy, None).run(values)
    return builder.finish()


# ---------------------------------------------------------------------------------------------------
# Training sequences (used by fine-tuning)
# ---------------------------------------------------------------------------------------------------
RESPONSE_STARTS = ("source_text", "target_text", "target_audio")


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
    """The S2ST training sequence and the index of its first response token.

    response_from picks what the loss is masked to: everything after the source audio (the model learns
    to transcribe, translate and speak), from the target text on, or the target audio only.
    """
    if response_from not in RESPONSE_STARTS:
        raise ValueError(f"response_from must be one of {sorted(RESPONSE_STARTS)}, got {response_from!r}")
    r = render_ids("s2st", {"source_audio": source_codes, "source_language": source_lang, "source_text": source_text,
                            "target_language": target_lang, "target_text": target_text,
                            "target_audio": target_codes}, tok)
    return r.ids, r.starts[response_from]
