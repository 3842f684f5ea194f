"""HellaSwag as the dataset ships it, turned into lm-evaluation-harness's context and choices.

Two layouts carry the same records:

- the original release, one JSON object per line (`hellaswag_val.jsonl`; `label` an integer);
- the Hugging Face dataset `Rowan/hellaswag` (`data/validation-00000-of-00001.parquet`; `label` a
  string, empty in the test split, which has no labels).

Fields used: `activity_label`, `ctx_a`, `ctx_b`, `endings`, `label`; `ind`, `source_id`, `split` and
`split_type` are kept in each item's meta. lm-evaluation-harness (0.4) builds, per record:

    context = clean(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
    choices = [clean(ending) for ending in endings]

where `clean` strips the ends, turns " [title]" into ". ", deletes every bracketed marker (shortest
match of "[...]", e.g. WikiHow's "[header]" and "[step]"), then replaces each double space by one
space in a single left-to-right pass (so a run of three spaces becomes two). `str.capitalize` also
lower-cases the rest of `ctx_b`. `lm_eval_context` and `lm_eval_clean` reproduce this exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from sodakit.eval.items import ChoiceItem, DataProvenance, ItemError, ReadResult
from sodakit.eval.readers.checksum import files_checksum
from sodakit.eval.readers.hf_parquet import find_parquet
from sodakit.eval.readers.zerospeech import LayoutError

REQUIRED_COLUMNS = ("activity_label", "ctx_a", "ctx_b", "endings", "label")
META_FIELDS = ("ind", "source_id", "split", "split_type")
# The original release names its files hellaswag_{train,val,test}.jsonl; the hub names the split validation.
JSONL_SPLIT_NAMES = {"validation": "val", "train": "train", "test": "test"}
_BRACKETED = re.compile(r"\[.*?\]")


def lm_eval_clean(text: str) -> str:
    """lm-evaluation-harness's HellaSwag text cleaning (see the module docstring)."""
    text = text.strip().replace(" [title]", ". ")
    text = _BRACKETED.sub("", text)
    return text.replace("  ", " ")


def lm_eval_context(activity_label: str, ctx_a: str, ctx_b: str) -> str:
    """The context lm-evaluation-harness scores the endings after."""
    return lm_eval_clean(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())


def _gold(label, n_choices: int) -> int | str:
    """The gold index, or why there is none."""
    if label is None or (isinstance(label, str) and not label.strip()):
        return "no gold label (the test split has none)"
    gold = None
    if isinstance(label, int) and not isinstance(label, bool):
        gold = label
    elif isinstance(label, float) and label.is_integer():
        gold = int(label)
    elif isinstance(label, str) and re.fullmatch(r"\s*-?\d+\s*", label):
        gold = int(label)
    if gold is None:
        return f"label {label!r} is not an integer"
    if not 0 <= gold < n_choices:
        return f"label {gold} is not 0..{n_choices - 1}"
    return gold


def record_to_item(rec, item_id: str, where: str) -> ChoiceItem | ItemError:
    """One dataset record -> a ChoiceItem with lm-eval's context and choices, or the reason it is unusable."""
    if not isinstance(rec, dict):
        return ItemError(item=item_id, file=where, reason=f"expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_COLUMNS if k not in rec]
    if missing:
        return ItemError(item=item_id, file=where, reason=f"missing field(s) {missing}")
    texts = {k: rec[k] for k in ("activity_label", "ctx_a", "ctx_b")}
    bad = [k for k, v in texts.items() if not isinstance(v, str)]
    endings = rec["endings"]
    if not isinstance(endings, list) or not endings or any(not isinstance(e, str) for e in endings):
        bad.append("endings")
    if bad:
        return ItemError(item=item_id, file=where,
                         reason=f"field(s) {bad} must be strings (endings: a non-empty list of strings)")
    gold = _gold(rec["label"], len(endings))
    if isinstance(gold, str):
        return ItemError(item=item_id, file=where, reason=gold)
    choices = [lm_eval_clean(e) for e in endings]
    empty = [i for i, c in enumerate(choices) if not c]
    if empty:
        # lm-eval would divide by a zero length here; no released item has an empty ending.
        return ItemError(item=item_id, file=where, reason=f"ending(s) {empty} empty after cleaning")
    meta = {"activity_label": texts["activity_label"], **{k: rec[k] for k in META_FIELDS if rec.get(k) is not None}}
    return ChoiceItem(id=item_id, context=lm_eval_context(**texts), endings=choices, gold=gold, meta=meta)


def _jsonl_records(path: Path) -> Iterator[tuple[str, object]]:
    """(where, record), or (where, the JSONDecodeError) for a line that is not JSON."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{n}", e


def _parquet_records(path: Path) -> Iterator[tuple[str, object]]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise LayoutError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise LayoutError(f"{path}: no column(s) {missing}; a HellaSwag Parquet file has {list(REQUIRED_COLUMNS)}")
    columns = [c for c in (*REQUIRED_COLUMNS, *META_FIELDS) if c in pf.schema_arrow.names]
    row = 0
    for batch in pf.iter_batches(columns=columns):
        for rec in batch.to_pylist():
            yield f"{path}: row {row}", rec
            row += 1


def hellaswag_files(path: Path, split: str = "validation") -> list[Path]:
    """The JSONL file or Parquet shards of `split` at `path` (a file, or a directory holding either)."""
    path = Path(path)
    if path.is_file():
        if path.suffix not in (".jsonl", ".parquet"):
            raise LayoutError(f"{path}: expected a HellaSwag .jsonl or .parquet file")
        return [path]
    if not path.is_dir():
        raise LayoutError(f"{path}: no such file or directory")
    if any(path.rglob("*.parquet")):
        return find_parquet(path, split=split)
    jsonl = sorted(path.rglob("*.jsonl"))
    if len(jsonl) > 1:
        tag = JSONL_SPLIT_NAMES.get(split, split)
        jsonl = [p for p in jsonl if re.search(rf"(^|[_\-.]){re.escape(tag)}($|[_\-.])", p.stem)]
    if len(jsonl) != 1:
        raise LayoutError(f"{path}: expected one HellaSwag {split} .jsonl file (e.g. hellaswag_val.jsonl) or "
                          f"Parquet shards, found {[str(p) for p in jsonl] or 'none'}; pass the file itself")
    return jsonl


def read_hellaswag_original(path: Path, split: str = "validation") -> ReadResult:
    """Items with lm-evaluation-harness's context and choices; ids count records from 0 in file order."""
    path = Path(path)
    files = hellaswag_files(path, split)
    items: list[ChoiceItem] = []
    errors: list[ItemError] = []
    k = 0
    for file in files:
        records = _parquet_records(file) if file.suffix == ".parquet" else _jsonl_records(file)
        for where, rec in records:
            if isinstance(rec, json.JSONDecodeError):
                out = ItemError(item=str(k), file=where, reason=f"not JSON ({rec})")
            else:
                out = record_to_item(rec, str(k), where)
            (errors if isinstance(out, ItemError) else items).append(out)
            k += 1
    layout = "hellaswag-parquet" if files[0].suffix == ".parquet" else "hellaswag-jsonl"
    checksum, method = files_checksum(path if path.is_dir() else path.parent, files)
    return ReadResult(items, errors, DataProvenance(str(path), layout, checksum, method, {"files": len(files)}))
