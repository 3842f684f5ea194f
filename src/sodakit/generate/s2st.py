"""Voice-preserving speech-to-speech translation (docs/soda.md#speech-to-speech-translation): manifests and evaluation.

Manifest (CVSS-style; TSV with a header row, or JSONL), one item per pair, paths relative to the file:

    id   source_audio   source_lang   source_text   target_text   target_audio   [target_lang]

Fine-tuning needs every column (`sodakit finetune prepare-s2st`); evaluation needs source_audio,
source_lang and target_text (target_audio, when present, gives the reference speaker similarity).
`manifest_from_cvss` writes one from the released CVSS + CoVoST 2 + Common Voice layout.

Evaluation (`evaluate_s2st`): generate the translation of each source clip, then
- ASR-BLEU: the ASR judge transcribes the generated speech; corpus BLEU (sacrebleu, 13a) of the
  transcripts against the reference translations, both sides normalised as for WER (lowercase, no
  punctuation: ASR output has none);
- text BLEU of the model's own translation text, and WER of its source transcript when known;
- SIM: speaker-judge cosine similarity of the generated speech to the source speech (the voice is meant
  to be preserved), and of the reference target speech to the source when given (a ceiling).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sodakit.tokens.templates import DEFAULT_TARGET_LANGUAGE

REQUIRED_EVAL = ("source_audio", "source_lang", "target_text")
REQUIRED_TRAIN = ("source_audio", "source_lang", "source_text", "target_text", "target_audio")
# Generated clips shorter than this carry no voice to compare: SIM counts as 0 for them.
MIN_SIM_SECONDS = 0.1


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
    from sodakit.config import atomic_write_text

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


def _bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    from sodakit.eval.metrics import normalize_text

    return float(sacrebleu.corpus_bleu([normalize_text(h) for h in hyps], [[normalize_text(r) for r in refs]]).score)


def evaluate_s2st(
    generator,
    items: Sequence[S2STItem],
    out_dir: Path,
    asr_judge: str = "pocketsphinx",
    speaker_judge: str = "classical",
    sampling=None,
    max_new_tokens: int = 1500,
    max_seconds: float | None = None,
    silence_stop_seconds: float | None = None,
    force_source_lang: bool = False,
    max_text_tokens: int | None = 256,
) -> dict:
    """Translate every item, write `<out_dir>/wav/<id>.wav`, `items.jsonl` and `metrics.json`; return both."""
    from sodakit.audio.io import load_audio, save_wav
    from sodakit.config import atomic_write_text
    from sodakit.eval.judges import make_asr_judge, make_speaker_judge
    from sodakit.eval.metrics import NORMALIZATION_VERSION, wer
    from sodakit.fileio import path_inside, safe_file_name

    missing = [it.id for it in items if not it.target_text]
    if missing:
        raise ManifestError(f"items {missing[:5]} have no target_text: ASR-BLEU needs the reference translation")
    sr = generator.sample_rate
    asr = make_asr_judge(asr_judge)
    spk = make_speaker_judge(speaker_judge)
    sources = [load_audio(it.source_audio, sr) for it in items]
    results = generator.s2st(
        sources,
        sr,
        source_lang=[it.source_lang for it in items] if force_source_lang else None,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        max_seconds=max_seconds,
        silence_stop_seconds=silence_stop_seconds,
        max_text_tokens=max_text_tokens,
    )
    wav_dir = Path(out_dir) / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    outs = [r.audio if r.audio is not None else np.zeros(0, np.float32) for r in results]
    for it, w in zip(items, outs):
        # Manifest ids are encoded so that they can only name a file inside wav_dir.
        save_wav(path_inside(wav_dir, it.id, ".wav"), w, sr)
    transcripts = asr.transcribe(outs, sr)
    min_len = int(MIN_SIM_SECONDS * sr)
    usable = [i for i, w in enumerate(outs) if len(w) >= min_len]
    sims = [0.0] * len(items)
    if usable:
        got = spk.similarity([outs[i] for i in usable], [sources[i] for i in usable], sr)
        for i, s in zip(usable, got):
            sims[i] = float(s)
    ref_sims: list[float | None] = [None] * len(items)
    with_ref = [i for i, it in enumerate(items) if it.target_audio is not None]
    if with_ref:
        refs_audio = [load_audio(items[i].target_audio, sr) for i in with_ref]
        for i, s in zip(with_ref, spk.similarity(refs_audio, [sources[i] for i in with_ref], sr)):
            ref_sims[i] = float(s)
    refs = [it.target_text or "" for it in items]
    per_item = []
    for it, r, tr, s, rs in zip(items, results, transcripts, sims, ref_sims):
        per_item.append(
            {
                "id": it.id,
                "audio_file": str(Path("wav") / safe_file_name(it.id, ".wav")),
                "source_lang": it.source_lang,
                "generated_source_lang": r.extra.get("source_lang"),
                "generated_source_text": r.extra.get("source_text"),
                "generated_target_text": r.text,
                "asr_of_generated_speech": tr,
                "reference_target_text": it.target_text,
                "seconds": len(r.audio) / sr if r.audio is not None else 0.0,
                "stop_reason": r.stop_reason,
                "sim_to_source": s,
                "reference_sim_to_source": rs,
            }
        )
    with_src = [(it.source_text, r.extra.get("source_text") or "") for it, r in zip(items, results) if it.source_text]
    metrics = {
        "num_items": len(items),
        "asr_bleu": _bleu(transcripts, refs),
        "text_bleu": _bleu([r.text for r in results], refs),
        "source_wer": wer([a for a, _ in with_src], [b for _, b in with_src]) if with_src else None,
        "sim": float(np.mean(sims)),
        "reference_sim": float(np.mean([s for s in ref_sims if s is not None])) if with_ref else None,
        "empty_outputs": len(items) - len(usable),
        "mean_seconds": float(np.mean([p["seconds"] for p in per_item])),
        "stop_reasons": {k: sum(1 for p in per_item if p["stop_reason"] == k) for k in sorted({p["stop_reason"] for p in per_item})},
        "asr_judge": asr.describe(),
        "speaker_judge": spk.describe(),
        "comparable_to_paper": bool(asr.comparable_to_paper and spk.comparable_to_paper),
        "bleu": "sacrebleu corpus BLEU, tokenize 13a, after sodakit.eval.metrics.normalize_text on both sides",
        "normalization": NORMALIZATION_VERSION,
        "sampling": asdict(sampling) if sampling is not None else None,
        "force_source_lang": force_source_lang,
        "max_text_tokens": max_text_tokens,
    }
    for k in ("asr_bleu", "text_bleu", "sim"):
        if not math.isfinite(metrics[k]):
            raise AssertionError(f"metric {k} is not finite: {metrics[k]}")
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "items.jsonl", "".join(json.dumps(p) + "\n" for p in per_item))
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return {"metrics": metrics, "items": per_item}
