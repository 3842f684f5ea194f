"""The six validation NLLs of docs/soda.md#isoflop-sweep on an interleaved dev set (e.g. LibriSpeech dev-clean).

Data: a segment-shard directory (`sodakit tokenize` output: codes + transcripts per utterance, grouped
into recordings), optionally followed by `,TEXT_FILE` with one text-only document per line. Documents
are built exactly as for training (sodakit.tokens.documents): each recording gives a text-first and an
audio-first interleaved document, plus an audio-only one; text lines give BOS text EOS documents.

NLL (nats per token, lower is better) over the target tokens of:
  all               interleaved documents, every predicted token
  audio             interleaved documents, audio tokens
  semantic          interleaved documents, semantic-codebook tokens
  audio_only        audio-only documents, audio tokens
  text_interleaved  interleaved documents, text BPE tokens (markers, BOS, EOS excluded)
  text_only         text-only documents, text BPE tokens (BOS, EOS excluded)
and, beyond SODA's six, the same tokens split by document order, which shows whether the model reads
one modality to predict the other (what ASR and TTS by prompting need):
  text_after_audio   audio-first documents, text tokens (each transcript follows its own audio)
  text_before_audio  text-first documents, text tokens (each transcript precedes its audio)
  audio_after_text   text-first documents, audio tokens
  audio_before_text  audio-first documents, audio tokens
  gain_text_from_audio  nll_text_before_audio - nll_text_after_audio: nats per text token the model gains
                        by hearing the audio first (0: it does not read audio, so ASR cannot work)
  gain_audio_from_text  nll_audio_before_text - nll_audio_after_text: the same for audio given its text (TTS)
Each document is scored on its own (no packing with other documents); one longer than the model's
positions is cut into consecutive windows where each window's first token is context only, so every
token is predicted exactly once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sodakit.data.segments import SegmentFormatError, group_recordings, read_segments_dir
from sodakit.eval.items import ItemError
from sodakit.eval.readers.checksum import files_checksum
from sodakit.eval.scoring import ScoreRequest, position_logprobs
from sodakit.eval.tasks.base import EvalContext, TaskError, TaskResult, TaskSpec, Timer, counts, register
from sodakit.tokens.documents import recording_documents, text_document_ids

VARIANTS = ("all", "audio", "semantic", "audio_only", "text_interleaved", "text_only")
ORDER_VARIANTS = ("text_after_audio", "text_before_audio", "audio_after_text", "audio_before_text")
GAINS = {"gain_text_from_audio": ("text_before_audio", "text_after_audio"),
         "gain_audio_from_text": ("audio_before_text", "audio_after_text")}
DEFAULT_WINDOW = 4096  # SODA's training sequence length
HELP = "a segment-shard directory (sodakit tokenize output), optionally ',TEXT_FILE' with one text document per line"


def windows(ids: np.ndarray, width: int) -> list[ScoreRequest]:
    """Cover positions 1..T-1 of `ids` once, with windows of at most `width` tokens."""
    out, start = [], 0
    while start < ids.size - 1:
        chunk = ids[start : start + width]
        out.append(ScoreRequest(ids=chunk, positions=np.arange(1, chunk.size, dtype=np.int64)))
        start += width - 1
    return out


def _text_mask(v, t: np.ndarray) -> np.ndarray:
    return v.is_text(t) & (t != v.bos_id) & (t != v.eos_id)


def run_nll(ctx: EvalContext, path: Path | None) -> TaskResult:
    if path is None:
        raise TaskError(f"task val_nll needs data: pass --data val_nll=PATH ({HELP})")
    seg_dir, _, text_file = str(path).partition(",")
    seg_dir = Path(seg_dir)
    v = ctx.vocab
    try:
        manifest, segs = read_segments_dir(seg_dir)
    except (SegmentFormatError, FileNotFoundError) as e:
        raise TaskError(f"task val_nll: {e}") from e
    codec = manifest.codec
    if codec.codebook_size != v.codebook_size or codec.num_codebooks < v.num_codebooks:
        raise TaskError(f"task val_nll: {seg_dir} holds codes of {codec.num_codebooks}x{codec.codebook_size} "
                        f"({codec.name}), the model's vocabulary expects {v.num_codebooks}x{v.codebook_size}")
    ctx.require_ids("val_nll", [v.size - 1], "audio codes")
    recordings = group_recordings(segs)
    if ctx.cfg.limit is not None:
        recordings = recordings[: ctx.cfg.limit]
    width = ctx.cfg.nll_window or min(ctx.lm.max_positions or DEFAULT_WINDOW, DEFAULT_WINDOW)
    if width < 2:
        raise TaskError(f"task val_nll: nll_window={width} holds no prediction (at least 2 tokens)")
    errors: list[ItemError] = []
    docs: list[tuple[str, str, np.ndarray]] = []  # (kind, item id, ids)
    for rec in recordings:
        rid = rec[0].recording_id
        try:
            tf, af, ao = recording_documents(rec, ("text_first", "audio_first", "audio_only"), ctx.tokenizer)
        except Exception as e:
            errors.append(ItemError(item=rid, stage="encode", reason=f"{type(e).__name__}: {e}", file=str(seg_dir)))
            continue
        docs += [("text_first", rid, tf), ("audio_first", rid, af), ("audio_only", rid, ao)]
    text_docs = 0
    if text_file:
        lines = [ln for ln in Path(text_file).read_text(encoding="utf-8").splitlines() if ln.strip()]
        if ctx.cfg.limit is not None:
            lines = lines[: ctx.cfg.limit]
        for n, line in enumerate(lines, start=1):
            try:
                docs.append(("text_only", f"text:{n}", text_document_ids(line, ctx.tokenizer)))
                text_docs += 1
            except Exception as e:
                errors.append(ItemError(item=f"text:{n}", stage="encode", reason=str(e), file=text_file))
    if not docs:
        raise TaskError(f"task val_nll: no document could be built from {path}")
    reqs, owner = [], []
    for j, (_, _, ids) in enumerate(docs):
        for w in windows(np.asarray(ids, dtype=np.int64), width):
            reqs.append(w)
            owner.append(j)
    with Timer() as t:
        with ctx.progress("val_nll", len(reqs), unit="window") as bar:
            rows = position_logprobs(ctx.lm, reqs, batch_size=ctx.cfg.batch_size, progress=bar.update)
    sums = dict.fromkeys(VARIANTS + ORDER_VARIANTS, 0.0)
    nums = dict.fromkeys(VARIANTS + ORDER_VARIANTS, 0)
    for req, lp, j in zip(reqs, rows, owner):
        kind = docs[j][0]
        tgt = req.ids[req.positions]
        masks = {}
        if kind in ("text_first", "audio_first"):
            masks = {"all": np.ones(tgt.size, bool), "audio": v.is_audio(tgt), "semantic": v.is_semantic(tgt),
                     "text_interleaved": _text_mask(v, tgt)}
            after, before = ("after", "before") if kind == "audio_first" else ("before", "after")
            masks[f"text_{after}_audio"] = masks["text_interleaved"]
            masks[f"audio_{before}_text"] = masks["audio"]
        elif kind == "audio_only":
            masks = {"audio_only": v.is_audio(tgt)}
        else:
            masks = {"text_only": _text_mask(v, tgt)}
        for name, m in masks.items():
            sums[name] += float(lp[m].sum())
            nums[name] += int(m.sum())
    metrics = {f"nll_{k}": (-sums[k] / nums[k] if nums[k] else None) for k in VARIANTS + ORDER_VARIANTS}
    for gain, (without, with_) in GAINS.items():
        a, b = metrics[f"nll_{without}"], metrics[f"nll_{with_}"]
        metrics[gain] = a - b if a is not None and b is not None else None
    notes = [f"nll_{k}: no tokens of this kind in the data" for k in VARIANTS + ORDER_VARIANTS if not nums[k]]
    notes += [f"{g}: not defined (needs tokens of both nll_{a} and nll_{b})"
              for g, (a, b) in GAINS.items() if metrics[g] is None]
    files = [seg_dir / s.file for s in manifest.shards] + ([Path(text_file)] if text_file else [])
    checksum, method = files_checksum(seg_dir, files)
    return TaskResult(
        task="val_nll", metrics=metrics,
        counts={**counts(len(recordings) + text_docs, 0, len(recordings) + text_docs - len(errors), len(errors)),
                "recordings": len(recordings), "text_documents": text_docs, "documents": len(docs), "windows": len(reqs),
                "tokens": nums},
        protocol={"variants": dict(zip(VARIANTS + ORDER_VARIANTS, (
                      "interleaved docs, all target tokens", "interleaved docs, audio tokens",
                      "interleaved docs, semantic-codebook tokens", "audio-only docs, audio tokens",
                      "interleaved docs, text BPE tokens (no markers/BOS/EOS)",
                      "text-only docs, text BPE tokens (no BOS/EOS)", "audio-first docs, text BPE tokens",
                      "text-first docs, text BPE tokens", "text-first docs, audio tokens",
                      "audio-first docs, audio tokens"))),
                  "gains": {g: f"nll_{a} - nll_{b}" for g, (a, b) in GAINS.items()},
                  "documents": "per recording: text_first + audio_first (interleaved) and audio_only",
                  "window": width, "units": "nats per token", "batch_size": ctx.cfg.batch_size, "dtype": ctx.cfg.dtype},
        data={"path": str(path), "layout": "sodakit-segments", "checksum": checksum, "checksum_method": method,
              "codec": {"name": codec.name, "config_hash": codec.config_hash}},
        excluded=errors, seconds=t.seconds, notes=notes,
    )


register(TaskSpec("val_nll", "the six validation NLLs of docs/soda.md#isoflop-sweep on an interleaved dev set", HELP, run_nll))
