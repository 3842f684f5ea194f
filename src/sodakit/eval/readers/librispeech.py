"""LibriSpeech for ASR (test-clean for scoring, dev-clean for the shots of N-shot prompts).

Layouts:
- the release: `{split}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt` with lines `UTT-ID TRANSCRIPT`
  and `{UTT-ID}.flac` beside it (pass `LibriSpeech/test-clean` or any folder above the speakers);
- a flat folder with `trans.txt` of `UTT-ID<TAB>TRANSCRIPT` lines and audio files named by UTT-ID
  (.wav/.flac), handy for a few hand-picked clips;
- a `data_json` list as the SODA authors' evaluation scripts read (`test-clean.json`, `dev-clean.json`):
  a JSON array of `{"file_path": ..., "transcript": ...}` objects, relative paths taken from the JSON's
  folder. The utterance id is the file name without extension; items keep the list's order, which the
  authors' N-shot sampling depends on.
"""

from __future__ import annotations

import json
from pathlib import Path

from sodakit.eval.items import AudioRef, DataProvenance, ItemError, ReadResult, SpeechTextItem
from sodakit.eval.readers.checksum import dataset_checksum
from sodakit.eval.readers.zerospeech import LayoutError
from sodakit.fileio import is_plain_file_name

AUDIO_EXTS = (".flac", ".wav")


def _parse_trans(path: Path, sep: str | None) -> list[tuple[int, str, str]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        uid, _, text = line.strip().partition("\t" if sep == "\t" else " ")
        out.append((n, uid.strip(), text.strip()))
    return out


def read_data_json(path: Path) -> ReadResult:
    """A `[{file_path, transcript}, ...]` list (see the module docstring)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LayoutError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(rows, list):
        raise LayoutError(f"{path}: expected a JSON array of {{file_path, transcript}} objects, got {type(rows).__name__}")
    items: list[SpeechTextItem] = []
    errors: list[ItemError] = []
    audio_files: list[Path] = []
    for n, row in enumerate(rows):
        where = f"{path}[{n}]"
        if not isinstance(row, dict) or not isinstance(row.get("file_path"), str) or "transcript" not in row:
            errors.append(ItemError(item=where, file=str(path), reason="expected an object with string 'file_path' and 'transcript'"))
            continue
        audio = Path(row["file_path"])
        audio = audio if audio.is_absolute() else path.parent / audio
        uid = audio.stem
        if not audio.is_file():
            errors.append(ItemError(item=uid, file=str(audio), reason=f"audio file missing (listed at {where})"))
            continue
        text = row["transcript"] if isinstance(row["transcript"], str) else ""
        if not text.strip():
            errors.append(ItemError(item=uid, file=where, reason="empty transcript"))
            continue
        audio_files.append(audio)
        items.append(SpeechTextItem(id=uid, audio=AudioRef(path=audio), text=text, meta={"speaker": uid.split("-")[0]}))
    if not items and not errors:
        raise LayoutError(f"{path}: the list is empty")
    checksum, method = dataset_checksum(path.parent, [path], audio_files)
    return ReadResult(items, errors, DataProvenance(str(path), "soda-data-json", checksum, method))


def read_librispeech(path: Path) -> ReadResult:
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return read_data_json(path)
    if not path.is_dir():
        raise LayoutError(f"{path}: expected a LibriSpeech split folder or a folder with trans.txt")
    trans_files = sorted(path.rglob("*.trans.txt"))
    flat = path / "trans.txt"
    if trans_files:
        layout, entries = "librispeech", [(t, *e) for t in trans_files for e in _parse_trans(t, None)]
    elif flat.is_file():
        layout, entries = "librispeech-flat", [(flat, *e) for e in _parse_trans(flat, "\t")]
        trans_files = [flat]
    else:
        raise LayoutError(f"{path}: no *.trans.txt (LibriSpeech release) and no trans.txt (flat layout)")
    items: list[SpeechTextItem] = []
    errors: list[ItemError] = []
    audio_files: list[Path] = []
    for tfile, n, uid, text in entries:
        if not is_plain_file_name(uid):
            errors.append(ItemError(item=uid, file=f"{tfile}:{n}", reason="utterance id is not a plain file name"))
            continue
        audio = next((tfile.parent / f"{uid}{ext}" for ext in AUDIO_EXTS if (tfile.parent / f"{uid}{ext}").is_file()), None)
        if audio is None:
            errors.append(ItemError(item=uid, file=str(tfile.parent / f"{uid}.flac"),
                                    reason=f"audio file missing (listed at {tfile.name}:{n})"))
            continue
        if not text:
            errors.append(ItemError(item=uid, file=f"{tfile}:{n}", reason="empty transcript"))
            continue
        audio_files.append(audio)
        items.append(SpeechTextItem(id=uid, audio=AudioRef(path=audio), text=text, meta={"speaker": uid.split("-")[0]}))
    checksum, method = dataset_checksum(path, trans_files, audio_files)
    return ReadResult(items, errors, DataProvenance(str(path), layout, checksum, method))
