"""ZeroSpeech 2021 sLM21 layout: sWUGGY ("lexical") and sBLIMP ("syntactic").

    {root}/lexical/{dev,test}/gold.csv + {filename}.wav
    {root}/syntactic/{dev,test}/gold.csv + {filename}.wav

gold.csv has one row per audio file, `correct` = 1 (word / grammatical) or 0, and
- lexical: id, filename, voice, frequency, word, phones, length, correct
- syntactic: id, filename, voice, type, subtype, correct, transcription
A pair is the correct=1 and correct=0 rows that share (id, voice). The official evaluation averages the
pair outcomes over voices per id, then over ids; `group` carries the id for that.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sodakit.eval.items import AudioRef, DataProvenance, ItemError, PairItem, ReadResult
from sodakit.eval.readers.checksum import dataset_checksum

REQUIRED = {
    "lexical": ("id", "filename", "voice", "correct"),
    "syntactic": ("id", "filename", "voice", "correct"),
}
TEXT_COLUMN = {"lexical": "word", "syntactic": "transcription"}
META_COLUMNS = {
    "lexical": ("frequency", "word", "phones", "length"),
    "syntactic": ("type", "subtype", "transcription"),
}


class LayoutError(ValueError):
    """A data directory that does not follow the layout it claims to."""


def find_gold(path: Path, kind: str, split: str = "dev") -> Path:
    """Accept the ZR2021 root, the `{kind}/{split}` folder, or the gold.csv itself."""
    path = Path(path)
    for cand in (path, path / "gold.csv", path / kind / split / "gold.csv", path / split / "gold.csv"):
        if cand.is_file() and cand.name == "gold.csv":
            return cand
    raise LayoutError(
        f"{path}: no gold.csv found; expected the ZeroSpeech 2021 layout {kind}/{split}/gold.csv + wav files "
        f"(pass the dataset root, the {kind}/{split} folder, or the gold.csv)"
    )


def read_zr2021(path: Path, kind: str, split: str = "dev") -> ReadResult:
    if kind not in REQUIRED:
        raise ValueError(f"kind must be 'lexical' or 'syntactic', got {kind!r}")
    gold = find_gold(path, kind, split)
    folder = gold.parent
    with open(gold, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED[kind] if c not in header]
        if missing:
            raise LayoutError(f"{gold}: missing columns {missing}; header is {header}")
        rows = list(reader)
    if not rows:
        raise LayoutError(f"{gold}: no rows")

    errors: list[ItemError] = []
    wavs = {p.stem: p for p in folder.glob("*.wav")}
    listed = set()
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for line, row in enumerate(rows, start=2):
        name = (row.get("filename") or "").strip()
        key = ((row.get("id") or "").strip(), (row.get("voice") or "").strip())
        item = f"{key[0]}/{key[1]}"
        if not name or not key[0]:
            errors.append(ItemError(item=f"{gold.name}:{line}", reason="empty filename or id", file=str(gold)))
            continue
        listed.add(name)
        label = (row.get("correct") or "").strip()
        if label not in ("0", "1"):
            errors.append(ItemError(item=item, reason=f"line {line}: correct={label!r}, expected 0 or 1", file=str(gold)))
            continue
        groups.setdefault(key, {"1": [], "0": []})[label].append(row)

    items: list[PairItem] = []
    for (pid, voice), sides in groups.items():
        item = f"{pid}/{voice}"
        if len(sides["1"]) != 1 or len(sides["0"]) != 1:
            errors.append(ItemError(
                item=item, file=str(gold),
                reason=f"expected one correct=1 and one correct=0 row per (id, voice), got {len(sides['1'])} and {len(sides['0'])}",
            ))
            continue
        pos_row, neg_row = sides["1"][0], sides["0"][0]
        bad = [r["filename"] for r in (pos_row, neg_row) if r["filename"].strip() not in wavs]
        if bad:
            errors.append(ItemError(
                item=item, file=str(folder / f"{bad[0].strip()}.wav"),
                reason=f"audio file(s) listed in gold.csv are missing: {[b + '.wav' for b in bad]}",
            ))
            continue
        meta = {"voice": voice}
        for c in META_COLUMNS[kind]:
            if c in pos_row:
                meta[c] = pos_row[c]
        text = TEXT_COLUMN[kind]
        meta["pos_text"], meta["neg_text"] = pos_row.get(text, ""), neg_row.get(text, "")
        items.append(PairItem(
            id=item, pos=AudioRef(path=wavs[pos_row["filename"].strip()]),
            neg=AudioRef(path=wavs[neg_row["filename"].strip()]), group=pid, meta=meta,
        ))

    unlisted = sorted(set(wavs) - listed)
    extra = {"unlisted_wav_files": len(unlisted)}
    if unlisted:
        # Not fatal (the pairs are defined by gold.csv) but worth knowing: ids may not match files.
        extra["unlisted_examples"] = [u + ".wav" for u in unlisted[:5]]
    checksum, method = dataset_checksum(folder, [gold], wavs.values())
    source = DataProvenance(path=str(folder), layout=f"zerospeech2021-{kind}", checksum=checksum,
                        checksum_method=method, extra=extra)
    return ReadResult(items=items, errors=errors, source=source)
