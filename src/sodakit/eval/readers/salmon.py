"""SALMon (slprl/SALMon): 8 acoustic-consistency / alignment parts.

Two layouts:
- the release folder (Google Drive zip of github.com/slp-rl/salmon): `{root}/{part}/sample_{i}_{k}.wav`,
  where option k=0 is the positive (consistent / aligned) and k=1 the negative;
- the Hugging Face dataset: one config per part, split `train`, columns positive_audio / negative_audio
  (read with `hf_parquet.read_hf_pairs`); or a copy holding only the `all` config (every part in one
  table, the part named in its `task` column), which is what the SODA authors load.
"""

from __future__ import annotations

import re
from pathlib import Path

from sodakit.eval.items import AudioRef, DataProvenance, ItemError, PairItem, ReadResult
from sodakit.eval.readers.checksum import dataset_checksum
from sodakit.eval.readers.hf_parquet import read_hf_pairs
from sodakit.eval.readers.zerospeech import LayoutError

# The part names of the release and the HF configs, with the paper's column titles.
SALMON_PARTS: dict[str, str] = {
    "sentiment_consistency": "Sentiment Consistency",
    "speaker_consistency": "Speaker Consistency",
    "gender_consistency": "Gender Consistency",
    "bg_domain_consistency": "Background Consistency (In-Domain)",
    "bg_all_consistency": "Background Consistency (Random)",
    "rir_consistency": "Room Consistency",
    "sentiment_alignment": "Sentiment Alignment",
    "bg_alignment": "Background Alignment",
}
_SAMPLE = re.compile(r"^sample_(\d+)_(\d+)$")


def read_salmon_folder(root: Path, part: str) -> ReadResult:
    folder = Path(root) / part
    if not folder.is_dir():
        raise LayoutError(f"{folder}: SALMon part folder missing (expected {{root}}/{part}/sample_<i>_<k>.wav)")
    samples: dict[int, dict[int, Path]] = {}
    errors: list[ItemError] = []
    wavs = sorted(folder.glob("*.wav"))
    for p in wavs:
        m = _SAMPLE.match(p.stem)
        if not m:
            errors.append(ItemError(item=p.stem, file=str(p), reason="file name is not sample_<index>_<option>.wav"))
            continue
        samples.setdefault(int(m.group(1)), {})[int(m.group(2))] = p
    items = []
    for idx in sorted(samples):
        opts = samples[idx]
        item = f"{part}/{idx}"
        if set(opts) != {0, 1}:
            errors.append(ItemError(item=item, file=str(folder / f"sample_{idx}_*.wav"),
                                    reason=f"expected options 0 (positive) and 1 (negative), found {sorted(opts)}"))
            continue
        items.append(PairItem(id=item, pos=AudioRef(path=opts[0]), neg=AudioRef(path=opts[1]), group=item,
                              meta={"part": part}))
    if not items and not errors:
        raise LayoutError(f"{folder}: no sample_<i>_<k>.wav files")
    index = [p for p in (folder / "metadata.json",) if p.is_file()]
    checksum, method = dataset_checksum(folder, index, wavs)
    return ReadResult(items, errors, DataProvenance(str(folder), "salmon-release", checksum, method, {"part": part}))


def read_salmon(root: Path, part: str) -> ReadResult:
    """One SALMon part from either layout (the release folder is tried first)."""
    if part not in SALMON_PARTS:
        raise ValueError(f"unknown SALMon part {part!r}; parts are {list(SALMON_PARTS)}")
    root = Path(root)
    if (root / part).is_dir() and any((root / part).glob("*.wav")):
        return read_salmon_folder(root, part)
    try:
        result = read_hf_pairs(root, config=part, split="train", layout="salmon-hf")
    except LayoutError as per_part:
        result = _read_salmon_all(root, part, per_part)
    for it in result.items:
        it.meta["part"] = part
        it.id = f"{part}/{it.id}"
        it.group = it.id
    return result


def _read_salmon_all(root: Path, part: str, per_part_error: LayoutError) -> ReadResult:
    """One part out of a copy that holds only the `all` config (rows of every part, `task` column)."""
    last = per_part_error
    for config in ("all", None):
        try:
            result = read_hf_pairs(root, config=config, split="train", layout="salmon-hf-all")
        except LayoutError as e:
            last = e
            continue
        if result.items and "task" not in result.items[0].meta:
            raise LayoutError(f"{root}: SALMon table without a per-part config has no 'task' column to select "
                              f"part {part} by; columns are {sorted(result.items[0].meta)}")
        tasks = {it.meta.get("task") for it in result.items}
        keep = [it for it in result.items if it.meta.get("task") == part]
        if not keep:
            raise LayoutError(f"{root}: the all-parts SALMon table has no rows with task={part!r}; its tasks are "
                              f"{sorted(map(str, tasks))}")
        result.source.extra["task"] = part
        return ReadResult(keep, result.errors, result.source)
    raise LayoutError(f"{root}: neither a config {part!r} nor an 'all' config with a task column ({last})")
