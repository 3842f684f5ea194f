"""Seed-TTS-eval style list (github.com/BytedanceSpeech/seed-tts-eval, `seedtts_testset/en/meta.lst`).

One item per line, `|`-separated:

    utt|prompt_text|prompt_wav|target_text              (4 fields, the English test set)
    utt|prompt_text|prompt_wav|target_text|target_wav   (5 fields; the ground-truth audio is optional)

`prompt_wav` is relative to the folder holding meta.lst (e.g. `prompt-wavs/<id>.wav`) or absolute.
"""

from __future__ import annotations

from pathlib import Path

from sodakit.eval.items import AudioRef, DataProvenance, ItemError, ReadResult, TTSItem
from sodakit.eval.readers.checksum import dataset_checksum
from sodakit.eval.readers.zerospeech import LayoutError


def read_seedtts(path: Path) -> ReadResult:
    path = Path(path)
    meta = path if path.is_file() else path / "meta.lst"
    if not meta.is_file():
        raise LayoutError(f"{path}: no meta.lst (Seed-TTS-eval layout: meta.lst + prompt-wavs/)")
    root = meta.parent
    items: list[TTSItem] = []
    errors: list[ItemError] = []
    audio_files: list[Path] = []
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("|")
        if len(fields) not in (4, 5):
            errors.append(ItemError(item=f"line {n}", file=f"{meta}:{n}",
                                    reason=f"{len(fields)} '|'-separated fields, expected 4 or 5"))
            continue
        utt, prompt_text, prompt_wav, target_text = (f.strip() for f in fields[:4])
        wav = Path(prompt_wav)
        wav = wav if wav.is_absolute() else root / wav
        if not wav.is_file():
            errors.append(ItemError(item=utt, file=str(wav), reason=f"prompt audio missing (meta.lst line {n})"))
            continue
        if not target_text:
            errors.append(ItemError(item=utt, file=f"{meta}:{n}", reason="empty target text"))
            continue
        if not prompt_text:
            errors.append(ItemError(item=utt, file=f"{meta}:{n}", reason="empty prompt text"))
            continue
        audio_files.append(wav)
        extra = {"target_wav": fields[4].strip()} if len(fields) == 5 else {}
        items.append(TTSItem(id=utt, prompt_audio=AudioRef(path=wav), prompt_text=prompt_text,
                             target_text=target_text, meta=extra))
    checksum, method = dataset_checksum(root, [meta], audio_files)
    return ReadResult(items, errors, DataProvenance(str(meta), "seed-tts-eval", checksum, method))
