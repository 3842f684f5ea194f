"""The unified vocabulary: text BPE ids, then 4 modality markers, then audio-code ids (docs/soda.md#vocabulary).

Layout, for a text vocabulary of size V (which includes the text tokenizer's own specials such as
BOS/EOS), K codebooks of C entries each:

    0 .. V-1                     text BPE ids (BOS and EOS live here)
    V, V+1                       <|text_start|>, <|text_end|>
    V+2, V+3                     <|audio_start|>, <|audio_end|>
    V+4 + C*k + c                audio code c of codebook k (codebook 0 is semantic)

Audio in string form: code c of codebook k is the character chr(0xE000 + C*k + c). Audio in flat id
form is frame-major: cb0(t), cb1(t), ..., cb{K-1}(t), cb0(t+1), ...

Everything here is pure and vectorised (numpy); torch tensors are accepted where noted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

PUA_BASE = 0xE000
TEXT_START = "<|text_start|>"
TEXT_END = "<|text_end|>"
AUDIO_START = "<|audio_start|>"
AUDIO_END = "<|audio_end|>"
MARKERS = (TEXT_START, TEXT_END, AUDIO_START, AUDIO_END)
BOS_TEXT = "<|begin_of_text|>"
EOS_TEXT = "<|end_of_text|>"


class AudioSpanError(ValueError):
    """A flat audio span whose tokens are not in codebook order cb0, cb1, ..., cb{K-1}, cb0, ..."""


@dataclass(frozen=True)
class Vocab:
    text_vocab_size: int = 128_256
    bos_id: int = 128_000
    eos_id: int = 128_001
    num_codebooks: int = 8
    codebook_size: int = 2048
    # Codebooks that carry content ("semantic"); Mimi distils codebook 0 from a speech SSL model.
    semantic_codebooks: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not 0 <= self.bos_id < self.text_vocab_size or not 0 <= self.eos_id < self.text_vocab_size:
            raise ValueError(
                f"Vocab: bos_id {self.bos_id} and eos_id {self.eos_id} must be text ids (< {self.text_vocab_size})"
            )
        if self.num_codebooks < 1 or self.codebook_size < 1:
            raise ValueError(f"Vocab: need >= 1 codebook of >= 1 entry, got {self.num_codebooks}x{self.codebook_size}")
        if PUA_BASE + self.num_audio_tokens > 0x110000:
            raise ValueError("Vocab: audio codes do not fit the Unicode range from U+E000")
        bad = [k for k in self.semantic_codebooks if not 0 <= k < self.num_codebooks]
        if bad:
            raise ValueError(f"Vocab: semantic codebooks {bad} outside 0..{self.num_codebooks - 1}")

    # ---- layouts ---------------------------------------------------------------------------------
    @classmethod
    def soda(cls) -> Vocab:
        """Exactly the released "marin-mimi-bpe-8cb-16k" layout: 144,644 ids."""
        return cls()

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        d = dict(d)
        d.pop("fingerprint", None)
        d.pop("size", None)
        d["semantic_codebooks"] = tuple(d.get("semantic_codebooks", (0,)))
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["semantic_codebooks"] = list(self.semantic_codebooks)
        d["size"] = self.size
        d["fingerprint"] = self.fingerprint
        return d

    @property
    def fingerprint(self) -> str:
        """A short hash of the layout; packed data and checkpoints carry it and readers compare it."""
        d = asdict(self)
        d["semantic_codebooks"] = list(self.semantic_codebooks)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # ---- ids -------------------------------------------------------------------------------------
    @property
    def text_start_id(self) -> int:
        return self.text_vocab_size

    @property
    def text_end_id(self) -> int:
        return self.text_vocab_size + 1

    @property
    def audio_start_id(self) -> int:
        return self.text_vocab_size + 2

    @property
    def audio_end_id(self) -> int:
        return self.text_vocab_size + 3

    @property
    def marker_ids(self) -> dict[str, int]:
        return {m: self.text_vocab_size + i for i, m in enumerate(MARKERS)}

    @property
    def audio_offset(self) -> int:
        return self.text_vocab_size + 4

    @property
    def num_audio_tokens(self) -> int:
        return self.num_codebooks * self.codebook_size

    @property
    def size(self) -> int:
        return self.audio_offset + self.num_audio_tokens

    def audio_id(self, codebook: int, code: int) -> int:
        return self.audio_offset + self.codebook_size * codebook + code

    def codebook_range(self, codebook: int) -> tuple[int, int]:
        """[start, stop) of the ids of one codebook."""
        start = self.audio_offset + self.codebook_size * codebook
        return start, start + self.codebook_size

    # ---- classification (vectorised) ----------------------------------------------------------
    def is_audio(self, ids):
        return (ids >= self.audio_offset) & (ids < self.size)

    def is_text(self, ids):
        """Text BPE ids, BOS/EOS included."""
        return (ids >= 0) & (ids < self.text_vocab_size)

    def is_marker(self, ids):
        return (ids >= self.text_vocab_size) & (ids < self.audio_offset)

    def is_semantic(self, ids):
        mask = ids < 0  # all False, same type as ids
        for k in self.semantic_codebooks:
            lo, hi = self.codebook_range(k)
            mask = mask | ((ids >= lo) & (ids < hi))
        return mask

    def codebook_of(self, ids):
        """Codebook index of audio ids (undefined for non-audio ids)."""
        return (ids - self.audio_offset) // self.codebook_size

    def check_ids(self, ids: np.ndarray, where: str = "ids") -> None:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            bad = ids[(ids < 0) | (ids >= self.size)][:5].tolist()
            raise ValueError(f"{where}: ids outside the vocabulary [0, {self.size}): {bad}")

    # ---- audio conversions -------------------------------------------------------------------
    def codes_to_ids(self, codes: np.ndarray) -> np.ndarray:
        """codes [K, T] (K <= num_codebooks, first K codebooks) -> flat frame-major ids [K*T] (uint32)."""
        codes = np.asarray(codes)
        self._check_codes(codes)
        k = codes.shape[0]
        offsets = self.audio_offset + self.codebook_size * np.arange(k, dtype=np.int64)
        return (codes.astype(np.int64) + offsets[:, None]).T.reshape(-1).astype(np.uint32)

    def ids_to_codes(
        self,
        ids: np.ndarray,
        num_codebooks: int | None = None,
        on_error: Literal["raise", "repair"] = "raise",
    ) -> np.ndarray:
        """Flat frame-major audio ids -> codes [K, T].

        A trailing partial frame is dropped. Tokens whose codebook does not match their position
        (position t mod K must hold codebook t mod K) raise `AudioSpanError` with `on_error="raise"`;
        with `on_error="repair"` each such token is replaced by code 0 of the codebook due there -- the
        frame count stays the same, so the audio keeps its duration and alignment. Non-audio ids are
        errors either way.
        """
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        frames, wrong = self._audio_frames(ids, k)
        codes = (frames - self.audio_offset) % self.codebook_size
        if wrong.any():
            if on_error == "raise":
                raise self._order_error(frames, wrong, "use on_error='repair' to replace them")
            codes = np.where(wrong, 0, codes)
        return codes.T.copy()

    def select_codebooks(self, flat_ids: np.ndarray, k: int) -> np.ndarray:
        """Keep codebooks [0, k) of a flat frame-major span: reshape to (frames, K), keep columns [:k].

        The span must be audio in codebook order (as `ids_to_codes` checks): a rolled or mixed span would
        otherwise come back silently as the wrong codebooks."""
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"k must be in 1..{self.num_codebooks}, got {k}")
        return self._keep_columns(flat_ids, list(range(k)))

    def semantic_only(self, flat_ids: np.ndarray) -> np.ndarray:
        """The semantic codebook(s) of a flat frame-major span, still frame-major (span checked as above)."""
        return self._keep_columns(flat_ids, list(self.semantic_codebooks))

    def _keep_columns(self, flat_ids: np.ndarray, cols: list[int]) -> np.ndarray:
        flat = np.asarray(flat_ids).reshape(-1)
        frames, wrong = self._audio_frames(flat, self.num_codebooks)
        if wrong.any():
            raise self._order_error(frames, wrong, "repair it with ids_to_codes(..., on_error='repair')")
        return frames[:, cols].reshape(-1).astype(flat.dtype, copy=False)

    def _audio_frames(self, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat frame-major audio ids -> (frames [T, k] int64, mask of tokens whose codebook is not the one
        due at their position). A trailing partial frame is dropped; non-audio ids raise `AudioSpanError`."""
        ids = np.asarray(ids).astype(np.int64).reshape(-1)
        if ids.size and not self.is_audio(ids).all():
            bad = ids[~self.is_audio(ids)][:5].tolist()
            raise AudioSpanError(f"audio span holds non-audio ids {bad}")
        frames = ids.size // k
        ids = ids[: frames * k].reshape(frames, k)
        return ids, self.codebook_of(ids) != np.arange(k)[None, :]

    def _order_error(self, frames: np.ndarray, wrong: np.ndarray, hint: str) -> AudioSpanError:
        t, j = np.argwhere(wrong)[0]
        return AudioSpanError(
            f"audio span out of codebook order: frame {t} position {j} holds codebook {self.codebook_of(frames[t, j])}, "
            f"expected {j} ({int(wrong.sum())} misplaced tokens); {hint}"
        )

    def codes_to_pua(self, codes: np.ndarray) -> str:
        """codes [K, T] -> the frame-major PUA string used by released SODA datasets."""
        codes = np.asarray(codes)
        self._check_codes(codes)
        k = codes.shape[0]
        cps = (codes.astype(np.int64) + PUA_BASE + self.codebook_size * np.arange(k)[:, None]).T.reshape(-1)
        return cps.astype("<u4").tobytes().decode("utf-32-le")

    def pua_to_ids(self, s: str) -> np.ndarray:
        """A string of audio PUA characters -> flat ids (uint32). Other characters are an error."""
        cps = np.frombuffer(s.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        in_range = (cps >= PUA_BASE) & (cps < PUA_BASE + self.num_audio_tokens)
        if not in_range.all():
            bad = [hex(c) for c in cps[~in_range][:5]]
            raise ValueError(f"not an audio PUA string: characters {bad} are outside the audio range")
        return (cps - PUA_BASE + self.audio_offset).astype(np.uint32)

    def ids_to_pua(self, ids: np.ndarray) -> str:
        ids = np.asarray(ids).astype(np.int64)
        if ids.size and not self.is_audio(ids).all():
            raise ValueError("ids_to_pua: span holds non-audio ids")
        return (ids - self.audio_offset + PUA_BASE).astype("<u4").tobytes().decode("utf-32-le")

    def pua_to_codes(self, s: str, on_error: Literal["raise", "repair"] = "raise") -> np.ndarray:
        return self.ids_to_codes(self.pua_to_ids(s), on_error=on_error)

    def is_audio_char(self, ch: str) -> bool:
        return PUA_BASE <= ord(ch) < PUA_BASE + self.num_audio_tokens

    def _check_codes(self, codes: np.ndarray) -> None:
        if codes.ndim != 2 or not 1 <= codes.shape[0] <= self.num_codebooks:
            raise ValueError(f"codes must be [K, T] with 1 <= K <= {self.num_codebooks}, got shape {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes outside [0, {self.codebook_size}): min {codes.min()}, max {codes.max()}")
