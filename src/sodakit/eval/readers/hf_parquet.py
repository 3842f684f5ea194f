"""Hugging Face dataset layout: Parquet shards as stored in a dataset repository.

A local copy of a hub dataset (`huggingface-cli download speed/sBLIMP --repo-type dataset --local-dir D`)
holds Parquet shards, and its README.md front matter declares them:

    configs:
      - config_name: default
        data_files:
          - split: train
            path: data/train-*

Known pair layouts (column names as on the hub):
- speed/sBLIMP: id, positive, negative (audio), voice, positive_transcription, negative_transcription,
  type, subtype; split `train`.
- speed/sWUGGY: positive, negative (audio), plus metadata columns (read when present: id, voice, ...).
- slprl/SALMon: one config per part, split `train`, audio columns positive_audio, negative_audio.

Audio cells are structs {bytes, path} (the `datasets` Audio feature); bytes are decoded with soundfile
on demand, one row group at a time, so multi-GB sets are never loaded whole. Nothing here imports the
`datasets` audio decoding stack (it needs torchcodec).
"""

from __future__ import annotations

import functools
import glob
import re
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from sodakit.eval.items import AudioRef, DataProvenance, ItemError, PairItem, ReadResult
from sodakit.eval.readers.checksum import dataset_checksum
from sodakit.eval.readers.zerospeech import LayoutError

POS_COLUMNS = ("positive", "positive_audio")
NEG_COLUMNS = ("negative", "negative_audio")


def readme_data_files(root: Path) -> dict[str, dict[str, list[str]]]:
    """config -> split -> path globs, from the README.md YAML front matter (empty if absent)."""
    readme = root / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return {}
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        raise LayoutError(f"{readme}: front matter is not valid YAML ({e})") from e
    out: dict[str, dict[str, list[str]]] = {}
    for cfg in meta.get("configs") or []:
        name = cfg.get("config_name", "default")
        files = cfg.get("data_files") or []
        if isinstance(files, str):
            files = [{"split": "train", "path": files}]
        for entry in files:
            paths = entry.get("path")
            out.setdefault(name, {})[entry.get("split", "train")] = [paths] if isinstance(paths, str) else list(paths)
    return out


def find_parquet(root: Path, config: str | None = None, split: str = "train") -> list[Path]:
    """The Parquet shards of (config, split): README declaration first, then the usual file names."""
    root = Path(root)
    if root.is_file() and root.suffix == ".parquet":
        return [root]
    declared = readme_data_files(root)
    cfg = config or "default"
    if cfg in declared and split in declared[cfg]:
        files = sorted({Path(p) for g in declared[cfg][split] for p in glob.glob(str(root / g))})
        if files:
            return files
    patterns = []
    if config:
        patterns += [f"{config}/{split}-*.parquet", f"{config}/{split}/*.parquet", f"data/{config}/{split}-*.parquet",
                     f"{config}/*.parquet"]
    patterns += [f"data/{split}-*.parquet", f"{split}-*.parquet", f"data/{split}/*.parquet"]
    for pat in patterns:
        files = sorted(root.glob(pat))
        if files:
            return files
    raise LayoutError(
        f"{root}: no Parquet shards for config {cfg!r} split {split!r} (looked at README.md data_files and "
        f"{patterns}); download the dataset repo with `huggingface-cli download <name> --repo-type dataset "
        f"--local-dir {root}`"
    )


@functools.lru_cache(maxsize=4)
def _row_group_column(file: str, row_group: int, column: str) -> list:
    return pq.ParquetFile(file).read_row_group(row_group, columns=[column]).column(column).to_pylist()


def _cell_fetcher(file: Path, row_group: int, index: int, column: str, root: Path):
    def fetch() -> bytes:
        cell = _row_group_column(str(file), row_group, column)[index]
        if cell is None:
            raise ValueError(f"{file}: row group {row_group} row {index}: column {column!r} is null")
        if isinstance(cell, dict):
            if cell.get("bytes"):
                return cell["bytes"]
            if cell.get("path"):
                p = Path(cell["path"])
                p = p if p.is_absolute() else root / p
                return p.read_bytes()
            raise ValueError(f"{file}: column {column!r} holds neither bytes nor a path")
        if isinstance(cell, bytes | bytearray):
            return bytes(cell)
        raise ValueError(f"{file}: column {column!r} is not an audio struct/bytes cell")

    return fetch


def _pick(names: list[str], options: tuple[str, ...], file: Path) -> str:
    for o in options:
        if o in names:
            return o
    raise LayoutError(f"{file}: none of the audio columns {list(options)} found; columns are {names}")


def read_hf_pairs(root: Path, config: str | None = None, split: str = "train", layout: str = "hf-pairs") -> ReadResult:
    """Pairs from Parquet shards with a positive and a negative audio column (see module docstring)."""
    root = Path(root)
    files = find_parquet(root, config, split)
    items: list[PairItem] = []
    errors: list[ItemError] = []
    for file in files:
        pf = pq.ParquetFile(file)
        names = pf.schema_arrow.names
        pos_col, neg_col = _pick(names, POS_COLUMNS, file), _pick(names, NEG_COLUMNS, file)
        meta_cols = [n for n in names if n not in (pos_col, neg_col)]
        for rg in range(pf.num_row_groups):
            meta_table = pf.read_row_group(rg, columns=meta_cols).to_pylist() if meta_cols else None
            nrows = pf.metadata.row_group(rg).num_rows
            for i in range(nrows):
                meta = dict(meta_table[i]) if meta_table else {}
                # Meta values of unusual types (nested audio structs) are not carried along.
                meta = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool) or v is None}
                row_id = f"{file.stem}:{rg}:{i}"
                item_id = str(meta["id"]) if meta.get("id") is not None else row_id
                if meta.get("voice"):
                    item_id = f"{item_id}/{meta['voice']}"
                meta["row"] = row_id
                items.append(PairItem(
                    id=item_id,
                    pos=AudioRef(fetch=_cell_fetcher(file, rg, i, pos_col, root), name=f"{file}[{row_id}].{pos_col}"),
                    neg=AudioRef(fetch=_cell_fetcher(file, rg, i, neg_col, root), name=f"{file}[{row_id}].{neg_col}"),
                    group=str(meta.get("id", row_id)),
                    meta=meta,
                ))
    seen: dict[str, int] = {}
    for it in items:  # ids must be unique for per-item logs; disambiguate repeats by row
        seen[it.id] = seen.get(it.id, 0) + 1
    for it in items:
        if seen[it.id] > 1:
            it.id = f"{it.id}@{it.meta['row']}"
    checksum, method = dataset_checksum(root if root.is_dir() else root.parent, files, [])
    source = DataProvenance(path=str(root), layout=layout, checksum=checksum,
                        checksum_method=method.replace("index files", "Parquet files"),
                        extra={"config": config or "default", "split": split, "files": [f.name for f in files]})
    return ReadResult(items=items, errors=errors, source=source)
