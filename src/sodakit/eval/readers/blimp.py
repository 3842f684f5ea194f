"""BLiMP (Warstadt et al. 2020): 67 phenomena x 1,000 minimal pairs, one JSONL file per phenomenon.

Reads a directory of `*.jsonl` files or the release tarball (`blimp_data_jsonl.tar.xz`, read in place,
never extracted). Fields used: sentence_good, sentence_bad, UID (phenomenon), pairID, field,
linguistics_term.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from sodakit.eval.items import DataProvenance, ItemError, PairItem, ReadResult
from sodakit.eval.readers.checksum import files_checksum
from sodakit.eval.readers.zerospeech import LayoutError


def _jsonl_sources(path: Path) -> Iterator[tuple[str, list[str]]]:
    if path.is_file() and path.name.endswith((".tar.xz", ".tar.gz", ".tar", ".tgz")):
        with tarfile.open(path) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                if m.isfile() and m.name.endswith(".jsonl"):
                    f = tar.extractfile(m)
                    if f is not None:
                        yield m.name, f.read().decode("utf-8").splitlines()
    elif path.is_file() and path.suffix == ".jsonl":
        yield path.name, path.read_text(encoding="utf-8").splitlines()
    elif path.is_dir():
        for p in sorted(path.rglob("*.jsonl")):
            yield str(p.relative_to(path)), p.read_text(encoding="utf-8").splitlines()
    else:
        raise LayoutError(f"{path}: expected a BLiMP .jsonl file, a directory of them, or blimp_data_jsonl.tar.xz")


def read_blimp(path: Path, phenomena: list[str] | None = None) -> ReadResult:
    path = Path(path)
    items: list[PairItem] = []
    errors: list[ItemError] = []
    files = 0
    for name, lines in _jsonl_sources(path):
        files += 1
        stem = Path(name).stem
        if phenomena and stem not in phenomena:
            continue
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{name}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(ItemError(item=where, file=str(path), reason=f"not JSON ({e})"))
                continue
            # Kept as given: stripping is the task protocol's decision (the SODA authors score text unstripped).
            good, bad = rec.get("sentence_good") or "", rec.get("sentence_bad") or ""
            uid = rec.get("UID") or stem
            item = f"{uid}/{rec.get('pairID', n - 1)}"
            if not good.strip() or not bad.strip():
                errors.append(ItemError(item=item, file=f"{path}:{name}:{n}", reason="empty sentence_good or sentence_bad"))
                continue
            items.append(PairItem(id=item, pos=good, neg=bad, group=item, meta={
                "phenomenon": uid, "field": rec.get("field"), "linguistics_term": rec.get("linguistics_term"),
            }))
    if files == 0:
        raise LayoutError(f"{path}: no .jsonl files found")
    checksum, method = files_checksum(path.parent if path.is_file() else path,
                                      [path] if path.is_file() else sorted(path.rglob("*.jsonl")))
    return ReadResult(items, errors, DataProvenance(str(path), "blimp-jsonl", checksum, method, {"files": files}))
