"""S2ST manifests: the pairs of voice-preserving speech-to-speech translation, one item per pair.

TSV with a header row, or JSONL; paths relative to the file:

    id   source_audio   source_lang   source_text   target_text   target_audio   [target_lang]

Fine-tuning needs every column (`sodakit finetune prepare-s2st`); evaluation needs source_audio,
source_lang and target_text (target_audio, when present, gives the reference speaker similarity);
translating needs source_audio and source_lang. `manifest_from_cvss` writes one from the released
CVSS + CoVoST 2 + Common Voice layout.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sodakit.fileio import atomic_write_text
from sodakit.tokens.templates import DEFAULT_TARGET_LANGUAGE

REQUIRED_TRANSLATE = ("source_audio", "source_lang")
REQUIRED_EVAL = ("source_audio", "source_lang", "target_text")
REQUIRED_TRAIN = ("source_audio", "source_lang", "source_text", "target_text", "target_audio")


class ManifestError(ValueError):
    """A manifest row that is missing a field or points at a file that does not exist."""


@dataclass
class S2STItem:
    id: str
    source_audio: Path
    source_lang: str
    source_text: str | None = None
    target_text: str | None = None
    target_audio: Path | None = None
    target_lang: str = DEFAULT_TARGET_LANGUAGE


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: not JSON ({e})") from e
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{n}: expected a JSON object")
            row["_line"] = n
            rows.append(row)
        return rows
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None:
            raise ManifestError(f"{path}: empty manifest (expected a header row)")
        rows = []
        for n, row in enumerate(reader, 2):
            if None in row:
                raise ManifestError(f"{path}:{n}: more fields than the header has")
            row["_line"] = n
            rows.append(row)
        return rows


def read_manifest(path: str | Path, require: Sequence[str] = REQUIRED_EVAL, check_files: bool = True) -> list[S2STItem]:
    """Items of a TSV/JSONL manifest; missing fields or files are errors naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    base = path.parent
    items = []
    for row in _rows(path):
        where = f"{path}:{row['_line']}"
        missing = [k for k in require if not str(row.get(k) or "").strip()]
        if missing:
            raise ManifestError(f"{where}: missing field(s) {missing} (columns: {', '.join(REQUIRED_TRAIN)}, optional id, target_lang)")

        def file(key: str, row: dict = row, where: str = where) -> Path | None:
            value = str(row.get(key) or "").strip()
            if not value:
                return None
            p = Path(value) if Path(value).is_absolute() else base / value
            if check_files and not p.is_file():
                raise ManifestError(f"{where}: {key} {p} does not exist")
            return p

        src = file("source_audio")
        assert src is not None
        items.append(
            S2STItem(
                id=str(row.get("id") or src.stem),
                source_audio=src,
                source_lang=str(row["source_lang"]).strip(),
                source_text=(row.get("source_text") or None),
                target_text=(row.get("target_text") or None),
                target_audio=file("target_audio"),
                target_lang=str(row.get("target_lang") or DEFAULT_TARGET_LANGUAGE).strip(),
            )
        )
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ManifestError(f"{path}: item id {dup!r} appears more than once")
    if not items:
        raise ManifestError(f"{path}: no items")
    return items


def write_manifest(items: Sequence[S2STItem], path: str | Path) -> Path:
    """A TSV manifest (paths written relative to its directory when possible), atomically."""
    path = Path(path)
    cols = ["id", "source_audio", "source_lang", "source_text", "target_text", "target_audio", "target_lang"]

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        try:
            return str(Path(p).resolve().relative_to(path.parent.resolve()))
        except ValueError:
            return str(Path(p).resolve())

    lines = ["\t".join(cols)]
    for it in items:
        vals = [it.id, rel(it.source_audio), it.source_lang, it.source_text or "", it.target_text or "", rel(it.target_audio), it.target_lang]
        bad = [c for c, v in zip(cols, vals) if "\t" in v or "\n" in v]
        if bad:
            raise ManifestError(f"item {it.id}: fields {bad} contain a tab or newline")
        lines.append("\t".join(vals))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def manifest_from_cvss(
    cvss_tsv: str | Path,
    cvss_audio_dir: str | Path,
    covost_tsv: str | Path,
    clips_dir: str | Path,
    source_lang: str,
    out: str | Path,
) -> Path:
    """Join a CVSS split (`path<TAB>translation`, target audio at `<cvss_audio_dir>/<path>.wav`) with the
    CoVoST 2 TSV (header: path, sentence, translation, client_id, ...) for source transcripts and the
    Common Voice clips directory for source audio; write our manifest."""
    cvss_tsv, covost_tsv = Path(cvss_tsv), Path(covost_tsv)
    sentences: dict[str, str] = {}
    with open(covost_tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or "path" not in reader.fieldnames or "sentence" not in reader.fieldnames:
            raise ManifestError(f"{covost_tsv}: expected a CoVoST 2 TSV with 'path' and 'sentence' columns")
        for row in reader:
            sentences[row["path"]] = row["sentence"]
    items = []
    for n, line in enumerate(cvss_tsv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ManifestError(f"{cvss_tsv}:{n}: expected `path<TAB>translation`")
        clip, translation = parts
        if clip not in sentences:
            raise ManifestError(f"{cvss_tsv}:{n}: clip {clip} is not in {covost_tsv}")
        items.append(
            S2STItem(
                id=Path(clip).stem,
                source_audio=Path(clips_dir) / clip,
                source_lang=source_lang,
                source_text=sentences[clip],
                target_text=translation,
                target_audio=Path(cvss_audio_dir) / f"{clip}.wav",
            )
        )
    return write_manifest(items, out)
