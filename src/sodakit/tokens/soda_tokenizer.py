"""SODA interleaved strings <-> token ids, bit-exact with the released tokenizer, and much faster.

A SODA string mixes text, the four marker strings and audio codes as single characters (see vocab.py).
The released tokenizer is a `tokenizers` BPE with the markers and 16,384 audio characters as added
tokens, and prepends BOS. Added tokens split the input first, and each text piece between them is
BPE-encoded on its own. `SodaTokenizer.encode` does the same split with numpy (audio runs become ids
arithmetically) and sends only the text pieces through the BPE, in one batch.

User text must never turn into audio tokens by accident: text that contains a character of the audio
range (U+E000 .. U+E000+K*C-1, e.g. U+FEFF or full-width forms for the SODA layout) is rejected by
default (`pua_policy="error"`). With `pua_policy="escape"` every text is escaped reversibly before
tokenization: a backslash becomes two backslashes and an audio-range character becomes `\\u{XXXX}`
(hex code point); `unescape_text` restores the original exactly.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import AddedToken, Tokenizer
from tokenizers.processors import TemplateProcessing

from sodakit.fileio import atomic_write_text
from sodakit.tokens.text_tokenizer import TOKENIZER_FILE, TextTokenizer
from sodakit.tokens.vocab import MARKERS, PUA_BASE, TEXT_START, Vocab

VOCAB_SIDECAR = "sodakit_vocab.json"
PuaPolicy = Literal["error", "escape"]


class TextInAudioRangeError(ValueError):
    """Text holds a character that the SODA string form reserves for audio codes."""


class SodaTokenizer:
    def __init__(self, text: TextTokenizer, vocab: Vocab | None = None, pua_policy: PuaPolicy = "error"):
        if vocab is None:
            vocab = Vocab(text_vocab_size=text.vocab_size, bos_id=text.bos_id, eos_id=text.eos_id)
        if (vocab.text_vocab_size, vocab.bos_id, vocab.eos_id) != (text.vocab_size, text.bos_id, text.eos_id):
            raise ValueError(
                f"vocab layout (text size {vocab.text_vocab_size}, BOS {vocab.bos_id}, EOS {vocab.eos_id}) does not "
                f"match the text tokenizer {text.source} (size {text.vocab_size}, BOS {text.bos_id}, EOS {text.eos_id})"
            )
        if pua_policy not in ("error", "escape"):
            raise ValueError(f"pua_policy must be 'error' or 'escape', got {pua_policy!r}")
        self.text = text
        self.vocab = vocab
        self.pua_policy = pua_policy
        specials = {m: i for m, i in vocab.marker_ids.items()}
        specials[text.bos_token] = vocab.bos_id
        specials[text.eos_token] = vocab.eos_id
        self._special_arrays = {k: np.array([i], dtype=np.uint32) for k, i in specials.items()}
        self._special_re = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, pua_policy: PuaPolicy = "error", vocab: Vocab | None = None) -> SodaTokenizer:
        """Load a tokenizer.json (or a directory with one): a plain text BPE or a SODA-style tokenizer.

        The layout is `vocab` when given (a checkpoint records its own: a tokenizer file alone can only
        imply the released 2048-entry codebooks), else the `sodakit_vocab.json` beside the file when
        present, else inferred for a SODA-style file (markers after the text ids, 2048 codes per codebook).
        """
        path = Path(path)
        text = TextTokenizer.from_file(path)
        directory = path if path.is_dir() else path.parent
        sidecar = directory / VOCAB_SIDECAR
        if vocab is None and sidecar.is_file():
            vocab = Vocab.from_dict(json.loads(sidecar.read_text()))
        elif vocab is None and text.tokenizer.token_to_id(TEXT_START) is not None:
            vocab = _infer_soda_layout(text)
        return cls(text, vocab, pua_policy)

    def with_audio_layout(self, num_codebooks: int, codebook_size: int, semantic_codebooks: Sequence[int] = (0,)) -> SodaTokenizer:
        vocab = Vocab(
            text_vocab_size=self.vocab.text_vocab_size,
            bos_id=self.vocab.bos_id,
            eos_id=self.vocab.eos_id,
            num_codebooks=num_codebooks,
            codebook_size=codebook_size,
            semantic_codebooks=tuple(semantic_codebooks),
        )
        return SodaTokenizer(self.text, vocab, self.pua_policy)

    # ---- text -------------------------------------------------------------------------------
    def prepare_text(self, text: str, where: str = "text") -> str:
        """Apply the PUA policy to user text (see module docstring)."""
        return apply_pua_policy(text, self.vocab.num_audio_tokens, self.pua_policy, where)

    def encode_texts(self, texts: list[str], where: str = "text") -> list[list[int]]:
        """Plain text runs -> text ids, after the PUA policy (no markers, no BOS/EOS)."""
        return self.text.encode_batch([self.prepare_text(t, f"{where}[{i}]") for i, t in enumerate(texts)])

    def encode_plain_texts(self, texts: list[str], where: str = "text") -> list[list[int]]:
        """Texts of a text-only corpus -> text ids, after the PUA policy, with every character as text:
        marker, BOS/EOS and other special-token strings in the text become ordinary BPE pieces, as with
        the plain Llama-3 tokenizer SODA's text data went through. Adds no BOS/EOS."""
        return self.text.encode_plain_batch([self.prepare_text(t, f"{where}[{i}]") for i, t in enumerate(texts)])

    # ---- SODA strings -------------------------------------------------------------------------
    def encode(self, s: str, add_bos: bool = True) -> np.ndarray:
        return self.encode_batch([s], add_bos=add_bos)[0]

    def encode_batch(self, strings: Sequence[str], add_bos: bool = True) -> list[np.ndarray]:
        """SODA interleaved strings -> uint32 ids, exactly as the released tokenizer would give them."""
        v = self.vocab
        audio_lo, audio_hi = PUA_BASE, PUA_BASE + v.num_audio_tokens
        # uint32 arithmetic wraps modulo 2^32, so a negative shift (small text vocab) works too.
        shift = np.uint32((v.audio_offset - PUA_BASE) % (1 << 32))
        bos = np.array([v.bos_id], dtype=np.uint32)
        # Each document becomes a list of parts: an id array, or an int index into `texts`.
        plans: list[list[np.ndarray | int]] = []
        texts: list[str] = []
        for s in strings:
            parts: list[np.ndarray | int] = [bos] if add_bos else []
            cps = np.frombuffer(s.encode("utf-32-le"), dtype="<u4")
            audio = (cps >= audio_lo) & (cps < audio_hi)
            edges = np.flatnonzero(audio[1:] != audio[:-1]) + 1
            bounds = [0, *edges.tolist(), len(cps)]
            for a, b in itertools.pairwise(bounds):
                if a == b:
                    continue
                if audio[a]:
                    parts.append(cps[a:b] + shift)
                    continue
                pos = a
                for m in self._special_re.finditer(s, a, b):
                    if m.start() > pos:
                        parts.append(len(texts))
                        texts.append(s[pos : m.start()])
                    parts.append(self._special_arrays[m.group()])
                    pos = m.end()
                if pos < b:
                    parts.append(len(texts))
                    texts.append(s[pos:b])
            plans.append(parts)
        encoded = [np.asarray(ids, dtype=np.uint32) for ids in self.text.encode_batch(texts)]
        out = []
        for parts in plans:
            arrays = [encoded[p] if isinstance(p, int) else p for p in parts]
            out.append(np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint32))
        return out

    def decode(self, ids: np.ndarray | Sequence[int]) -> str:
        """Ids -> SODA string: text runs via the BPE, markers by name, audio ids as PUA characters."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.vocab.check_ids(ids, "decode")
        v = self.vocab
        kind = np.where(v.is_audio(ids), 2, np.where(v.is_marker(ids), 1, 0))
        edges = np.flatnonzero(kind[1:] != kind[:-1]) + 1
        bounds = [0, *edges.tolist(), len(ids)]
        names = {i: m for m, i in v.marker_ids.items()}
        out: list[str] = []
        for a, b in itertools.pairwise(bounds):
            if a == b:
                continue
            if kind[a] == 2:
                out.append(v.ids_to_pua(ids[a:b]))
            elif kind[a] == 1:
                out.extend(names[int(i)] for i in ids[a:b])
            else:
                out.append(self.text.decode(ids[a:b].tolist()))
        return "".join(out)

    # ---- Hugging Face tokenizer in the released style ---------------------------------------------
    def to_hf_tokenizer(self) -> Tokenizer:
        """The text BPE plus the markers and audio characters as *special* added tokens, prepending BOS: the
        released SODA tokenizer's shape (codec-bpe's extender over Llama-3), so `decode(...,
        skip_special_tokens=True)` returns the text alone, as the released one does."""
        tok = Tokenizer.from_str(_text_part(self.text.tokenizer.to_str(), self.vocab.text_vocab_size))
        v = self.vocab
        if tok.get_vocab_size(with_added_tokens=True) != v.text_vocab_size:
            raise ValueError(
                f"text tokenizer holds {tok.get_vocab_size(with_added_tokens=True)} ids but the layout expects "
                f"{v.text_vocab_size} text ids before the markers"
            )
        tok.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in MARKERS])
        audio_chars = [chr(PUA_BASE + i) for i in range(v.num_audio_tokens)]
        tok.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in audio_chars])
        bos = self.text.bos_token
        # Llama-3's template: BOS before each sequence of a pair too.
        tok.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1",
                                                special_tokens=[(bos, v.bos_id)])
        if tok.token_to_id(TEXT_START) != v.text_start_id or tok.token_to_id(audio_chars[-1]) != v.size - 1:
            raise ValueError("added tokens did not land on the layout's ids")
        return tok

    def hf_config(self) -> tuple[dict, dict]:
        """(tokenizer_config.json, special_tokens_map.json) for `AutoTokenizer`: a fast tokenizer whose BOS /
        EOS are the layout's, EOS doubling as padding (left, for batched generation), markers special."""
        specials = {"bos_token": self.text.bos_token, "eos_token": self.text.eos_token,
                    "pad_token": self.text.eos_token, "additional_special_tokens": list(MARKERS)}
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "padding_side": "left",
            "clean_up_tokenization_spaces": False,
            "model_max_length": 4096,
            "model_input_names": ["input_ids", "attention_mask"],
        }
        return config, specials

    def save_pretrained(self, directory: str | Path) -> None:
        """A complete Hugging Face tokenizer directory: tokenizer.json (released style),
        tokenizer_config.json, special_tokens_map.json, and the layout sidecar."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config, specials = self.hf_config()
        atomic_write_text(directory / TOKENIZER_FILE, self.to_hf_tokenizer().to_str())
        atomic_write_text(directory / VOCAB_SIDECAR, json.dumps(self.vocab.to_dict(), indent=2))
        atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2))
        atomic_write_text(directory / "special_tokens_map.json", json.dumps(specials, indent=2))


def _text_part(tokenizer_json: str, text_vocab_size: int) -> str:
    """A tokenizer.json without the added tokens at or above the text vocabulary (the markers and audio
    characters of a SODA-style file), so exporting a SODA tokenizer again rebuilds it from its text part."""
    d = json.loads(tokenizer_json)
    added = d.get("added_tokens") or []
    kept = [t for t in added if t["id"] < text_vocab_size]
    if len(kept) == len(added):
        return tokenizer_json
    d["added_tokens"] = kept
    return json.dumps(d)


@functools.lru_cache(maxsize=8)
def audio_char_pattern(num_audio_tokens: int) -> re.Pattern:
    """Matches one character of the audio-code range U+E000.. of a layout with that many audio tokens."""
    return re.compile(f"[{chr(PUA_BASE)}-{chr(PUA_BASE + num_audio_tokens - 1)}]")


def apply_pua_policy(text: str, num_audio_tokens: int, policy: str, where: str = "text") -> str:
    """User text under a PUA policy: "error" refuses a character of the audio range (naming `where`),
    "escape" escapes every such character reversibly."""
    pattern = audio_char_pattern(num_audio_tokens)
    if policy == "escape":
        return escape_text(text, pattern)
    m = pattern.search(text)
    if m:
        raise TextInAudioRangeError(
            f"{where}: character U+{ord(m.group()):04X} at position {m.start()} lies in the audio-code range "
            f"U+{PUA_BASE:04X}..U+{PUA_BASE + num_audio_tokens - 1:04X} and would become an audio "
            f"token; clean the text or use pua_policy='escape'"
        )
    return text


def escape_text(text: str, audio_char_re: re.Pattern) -> str:
    text = text.replace("\\", "\\\\")
    return audio_char_re.sub(lambda m: f"\\u{{{ord(m.group()):X}}}", text)


_UNESCAPE_RE = re.compile(r"\\\\|\\u\{([0-9A-F]+)\}")


def unescape_text(text: str) -> str:
    """Inverse of the `pua_policy="escape"` transformation."""
    return _UNESCAPE_RE.sub(lambda m: "\\" if m.group(1) is None else chr(int(m.group(1), 16)), text)


def _infer_soda_layout(text: TextTokenizer) -> Vocab:
    tok = text.tokenizer
    base = text.vocab_size
    for i, m in enumerate(MARKERS):
        if tok.token_to_id(m) != base + i:
            raise ValueError(f"{text.source}: marker {m} is not at id {base + i}; not a SODA-style tokenizer")
    first = tok.token_to_id(chr(PUA_BASE))
    if first != base + 4:
        raise ValueError(f"{text.source}: audio character U+E000 is not at id {base + 4}")
    total = tok.get_vocab_size(with_added_tokens=True) - (base + 4)
    codebook_size = 2048
    if total % codebook_size:
        raise ValueError(
            f"{text.source}: {total} audio tokens is not a multiple of {codebook_size}; "
            f"put a {VOCAB_SIDECAR} with the layout next to it"
        )
    return Vocab(
        text_vocab_size=base,
        bos_id=text.bos_id,
        eos_id=text.eos_id,
        num_codebooks=total // codebook_size,
        codebook_size=codebook_size,
    )
