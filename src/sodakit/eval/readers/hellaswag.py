"""HellaSwag validation in the 6-lines-per-item text format (hellaswag_val_full.txt.bz2):

    activity_label: context
    gold index (0-3)
    ending 0
    ending 1
    ending 2
    ending 3

with the context built from the dataset's `ctx` field rather than lm-evaluation-harness's
`activity_label: ctx_a + " " + ctx_b.capitalize()` (where `ctx_b` is non-empty its first letter is
lower-case here and capitalised in lm-eval), and text cleaned by the extraction's own rules, close to
lm-eval's but not identical (a few bracketed spans lm-eval deletes are kept). Scores on this layout are
lm-eval-like, not lm-eval-exact. `.bz2` files are read directly. `read_hellaswag_auto` picks this reader
or the one for the dataset's own records (`hellaswag_original`, exact lm-eval context) from the path.
"""

from __future__ import annotations

import bz2
from pathlib import Path

from sodakit.eval.items import ChoiceItem, DataProvenance, ItemError, ReadResult
from sodakit.eval.readers.checksum import files_checksum
from sodakit.eval.readers.hellaswag_original import read_hellaswag_original
from sodakit.eval.readers.zerospeech import LayoutError

LINES_PER_ITEM = 6


def read_hellaswag(path: Path) -> ReadResult:
    path = Path(path)
    if path.is_dir():
        cands = sorted(path.glob("*.txt")) + sorted(path.glob("*.txt.bz2"))
        if not cands:
            raise LayoutError(f"{path}: no HellaSwag .txt / .txt.bz2 file")
        path = cands[0]
    raw = bz2.open(path, "rt", encoding="utf-8").read() if path.suffix == ".bz2" else path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    items: list[ChoiceItem] = []
    errors: list[ItemError] = []
    if len(lines) % LINES_PER_ITEM:
        errors.append(ItemError(item=f"line {len(lines) - len(lines) % LINES_PER_ITEM + 1}", file=str(path),
                                reason=f"{len(lines) % LINES_PER_ITEM} trailing lines do not form a whole item"))
    for k in range(len(lines) // LINES_PER_ITEM):
        block = lines[k * LINES_PER_ITEM : (k + 1) * LINES_PER_ITEM]
        item = str(k)
        ctx, gold_s, endings = block[0], block[1].strip(), block[2:]
        if not gold_s.isdigit() or not 0 <= int(gold_s) < len(endings):
            errors.append(ItemError(item=item, file=f"{path}:{k * LINES_PER_ITEM + 2}",
                                    reason=f"gold index {gold_s!r} is not 0..{len(endings) - 1}"))
            continue
        if not ctx.strip() or any(not e.strip() for e in endings):
            errors.append(ItemError(item=item, file=f"{path}:{k * LINES_PER_ITEM + 1}", reason="empty context or ending"))
            continue
        # The context keeps its "activity_label: " prefix, as lm-evaluation-harness's does.
        label, sep, _ = ctx.partition(": ")
        meta = {"activity_label": label if sep else ""}
        items.append(ChoiceItem(id=item, context=ctx, endings=endings, gold=int(gold_s), meta=meta))
    checksum, method = files_checksum(path.parent, [path])
    return ReadResult(items, errors, DataProvenance(str(path), "hellaswag-text", checksum, method))


TEXT_SUFFIXES = (".txt", ".txt.bz2")
RECORD_SUFFIXES = (".jsonl", ".parquet")


def read_hellaswag_auto(path: Path) -> ReadResult:
    """The dataset's records (JSONL / Parquet, lm-eval's exact context) or the 6-lines text layout,
    chosen by the file's suffix; a directory with JSONL or Parquet files is read as records."""
    path = Path(path)
    if path.is_dir():
        records = any(p.name.endswith(RECORD_SUFFIXES) for p in path.rglob("*"))
        return read_hellaswag_original(path) if records else read_hellaswag(path)
    if path.name.endswith(RECORD_SUFFIXES):
        return read_hellaswag_original(path)
    if path.name.endswith(TEXT_SUFFIXES):
        return read_hellaswag(path)
    raise LayoutError(f"{path}: expected HellaSwag as .jsonl or .parquet (the dataset's records) or as the "
                      f"6-lines-per-item .txt / .txt.bz2 text file")
