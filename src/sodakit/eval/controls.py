"""Negative controls: the same evaluation with the model's audio input scrambled at scoring time.

`EvalConfig.control` picks one (`sodakit eval control=permute-codebooks`); the results record it in
their settings and the codec's name. Text-only tasks are untouched by a codec control.

A score measures the model only if it falls to chance when the model can no longer read the audio.
`PermutedCodebooks` wraps the real codec and hands the codes of codebook `perm[k]` out as codebook k
(and takes generated codes back the same way), so every spoken task -- pair likelihoods, ASR input,
TTS output -- runs unchanged while the model sees each frame's codebooks in the wrong slots. A pipeline
bug that mixes up codebooks would look exactly like this, which is why the demo reports it.

The round trip through the wrapper is lossless (encode then decode gives the real codec's audio); only
the model in between gets the wrong convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sodakit.audio.codec import Codec, CodecError


def cyclic_permutation(k: int, shift: int = 1) -> list[int]:
    """[shift, shift+1, ..., k-1, 0, ...]: a permutation that moves every codebook (k >= 2)."""
    if k < 2 or shift % k == 0:
        raise CodecError(f"a codebook permutation that moves every codebook needs k >= 2 and shift % k != 0 (k={k})")
    return [(i + shift) % k for i in range(k)]


class PermutedCodebooks(Codec):
    """`codec` with its codebooks in the order `perm` (output row k = the codec's codebook perm[k])."""

    def __init__(self, codec: Codec, perm: Sequence[int] | None = None):
        perm = list(perm) if perm is not None else cyclic_permutation(codec.num_codebooks)
        if sorted(perm) != list(range(codec.num_codebooks)):
            raise CodecError(f"perm {perm} is not a permutation of the codec's {codec.num_codebooks} codebooks")
        self.inner = codec
        self.perm = perm
        self.inverse = [perm.index(k) for k in range(len(perm))]
        self.name = f"{codec.name}+permuted-codebooks"
        self.sample_rate, self.frame_rate = codec.sample_rate, codec.frame_rate
        self.num_codebooks, self.codebook_size = codec.num_codebooks, codec.codebook_size
        self.semantic_codebooks = list(codec.semantic_codebooks)
        self.source = codec.source

    @property
    def config_hash(self) -> str:
        # The model's codec check must pass: the control is the same codec, read in the wrong order.
        return self.inner.config_hash

    def _encode_batch(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.inner._encode_batch(wav, lengths)[:, self.perm]

    def _decode_batch(self, codes: torch.Tensor, frames: torch.Tensor) -> list[np.ndarray]:
        return self.inner._decode_batch(codes[:, self.inverse], frames)

    def describe(self) -> dict:
        return {"control": "permuted codebooks", "perm": self.perm, "codec": self.inner.name,
                "config_hash": self.inner.config_hash}


def with_control(codec: Codec | None, control: str) -> Codec | None:
    """`codec` as the negative control `control` ("none" or "permute-codebooks") reads it."""
    if codec is None or control == "none":
        return codec
    if control == "permute-codebooks":
        return PermutedCodebooks(codec)
    raise CodecError(f"unknown control {control!r}; expected none or permute-codebooks")
