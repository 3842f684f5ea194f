"""Which codec implementation opens which directory or hub id, and the codec a model was trained on.

    codec = load_codec("./mimi")                 # a Mimi directory saved with save_pretrained
    codec = load_codec("runs/codec")             # our offline codec (`sodakit codec fit`)
    codec = load_codec("kyutai/mimi")            # a hub id (honours HF_HUB_OFFLINE)

A codec directory is recognised by its marker file (`CODEC_FORMATS`, checked in order); a hub id loads
as `HUB_FORMAT`. Adding a codec: subclass `sodakit.audio.codec.Codec` in its own module, then add one
`CodecFormat` line here.

Codes only mean something under the codec that produced them, so a model records its codec (name,
config hash, source) and `check_codec` refuses another one whose codes do not fit the vocabulary or
whose config hash differs from the recorded one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sodakit.audio.codec import Codec, CodecError
from sodakit.audio.mimi import MimiCodec
from sodakit.audio.offline_codec import OFFLINE_CONFIG_NAME, OfflineCodec
from sodakit.fileio import looks_like_hub_id
from sodakit.tokens.vocab import Vocab

# Codebooks kept of a Mimi model when no vocabulary says otherwise (SODA keeps 8 of Mimi's 32).
DEFAULT_MIMI_CODEBOOKS = 8


class CodecMismatchError(CodecError):
    """The codec given does not produce the codes the model was trained on."""


def _load_offline(spec: str, device: str, dtype: str, num_codebooks: int | None) -> Codec:
    codec = OfflineCodec.load(spec)
    if num_codebooks is not None and num_codebooks != codec.num_codebooks:
        raise CodecError(
            f"{spec}: this offline codec has {codec.num_codebooks} codebooks, not {num_codebooks}; "
            f"refit it with `sodakit codec fit ... num_codebooks={num_codebooks}`"
        )
    return codec


def _load_mimi(spec: str, device: str, dtype: str, num_codebooks: int | None) -> Codec:
    return MimiCodec.from_pretrained(spec, device=device, dtype=dtype, num_codebooks=num_codebooks or DEFAULT_MIMI_CODEBOOKS)


@dataclass(frozen=True)
class CodecFormat:
    name: str
    marker: str  # the file that marks a directory holding this codec
    expected: str  # what such a directory holds, for the error naming what was expected
    load: Callable[[str, str, str, int | None], Codec]  # (directory or hub id, device, dtype, num_codebooks)


CODEC_FORMATS: list[CodecFormat] = [
    CodecFormat("offline", OFFLINE_CONFIG_NAME, f"{OFFLINE_CONFIG_NAME} of an offline codec from `sodakit codec fit`",
                _load_offline),
    CodecFormat("mimi", "config.json", "config.json + model.safetensors of a Mimi model saved with save_pretrained",
                _load_mimi),
]
HUB_FORMAT = "mimi"


def load_codec(spec: str | os.PathLike, device: str = "auto", dtype: str = "float32", num_codebooks: int | None = None) -> Codec:
    """A codec from a codec directory (see `CODEC_FORMATS`) or a hub id ("kyutai/mimi").

    `device`/`dtype` apply to neural codecs ("auto" = CUDA when present); `num_codebooks` keeps the first
    K codebooks (Mimi: default 8, as in SODA; the offline codec must have been fitted with K).
    """
    path = Path(os.path.expanduser(str(spec)))
    if path.is_dir():
        for fmt in CODEC_FORMATS:
            if (path / fmt.marker).is_file():
                return fmt.load(str(path), device, dtype, num_codebooks)
        expected = ", or ".join(fmt.expected for fmt in CODEC_FORMATS)
        raise CodecError(f"{path}: not a codec directory (expected {expected})")
    if path.exists():
        raise CodecError(f"{path}: is a file; a codec is a directory or a hub id such as kyutai/mimi")
    if not looks_like_hub_id(str(spec)):
        raise CodecError(f"{spec}: no such codec directory (a hub id looks like 'kyutai/mimi')")
    hub = next(fmt for fmt in CODEC_FORMATS if fmt.name == HUB_FORMAT)
    return hub.load(str(spec), device, dtype, num_codebooks)


def load_model_codec(
    given: str | os.PathLike | None, record: dict | None, device: str = "auto", num_codebooks: int | None = None
) -> Codec | None:
    """The codec whose codes a model was trained on: `given` (--codec) when set, else the source recorded
    with the model, None when there is neither. A recorded codec that has moved says so and asks for --codec."""
    if given:
        return load_codec(given, device=device, num_codebooks=num_codebooks)
    source = (record or {}).get("source")
    if not source:
        return None
    try:
        return load_codec(source, device=device, num_codebooks=num_codebooks)
    except CodecError as e:
        raise CodecError(f"the model was trained on codes of the codec recorded at {source}, which cannot be "
                         f"loaded ({e}); pass its new location with --codec") from e


def check_codec_fits(codec: Codec, vocab: Vocab) -> None:
    """Refuse a codec whose codes do not fit the vocabulary's audio layout."""
    if codec.codebook_size != vocab.codebook_size or codec.num_codebooks < vocab.num_codebooks:
        raise CodecMismatchError(
            f"codec {codec.name} has {codec.num_codebooks} codebooks of {codec.codebook_size}; the model's vocabulary "
            f"needs {vocab.num_codebooks} of {vocab.codebook_size}"
        )


def check_codec(codec: Codec, vocab: Vocab, recorded: dict | None, allow_mismatch: bool = False) -> list[str]:
    """Refuse a codec whose codes do not fit the vocabulary or differ from the recorded one; return notes."""
    check_codec_fits(codec, vocab)
    notes = []
    if recorded:
        want = recorded.get("config_hash")
        if want and want != codec.config_hash:
            msg = (
                f"codec {codec.name} (hash {codec.config_hash}, from {codec.source}) is not the one the model was trained "
                f"with ({recorded.get('name')} hash {want}, from {recorded.get('source')})"
            )
            if not allow_mismatch:
                raise CodecMismatchError(msg + "; pass allow_codec_mismatch=True (--allow-codec-mismatch) to use it anyway")
            notes.append("WARNING: " + msg)
    else:
        notes.append("the model records no codec; codes are assumed to come from the one given")
    return notes
