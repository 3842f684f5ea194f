"""HellaSwag validation in the 6-lines-per-item text format (../shared/data/hellaswag):

    activity_label: context
    gold index (0-3)
    ending 0
    ending 1
    ending 2
    ending 3

already preprocessed as lm-evaluation-harness does. `.bz2` files are read directly.
"""

from __future__ import annotations

import bz2
from pathlib import Path

from sodakit.eval.items import ChoiceItem, DataSource, ItemError, ReadResult
from sodakit.eval.readers.checksum import files_checksum
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
        # The context keeps its "activity_label: " prefix, as lm-evaluation-harness scores it.
        label, sep, _ = ctx.partition(": ")
        meta = {"activity_label": label if sep else ""}
        items.append(ChoiceItem(id=item, context=ctx, endings=endings, gold=int(gold_s), meta=meta))
    checksum, method = files_checksum(path.parent, [path])
    return ReadResult(items, errors, DataSource(str(path), "hellaswag-text", checksum, method))
