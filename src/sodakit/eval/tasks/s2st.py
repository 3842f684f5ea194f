"""Voice-preserving speech-to-speech translation (docs/soda.md#speech-to-speech-translation): ASR-BLEU and SIM.

Data: an S2ST manifest (`sodakit.data.s2st_manifest`; TSV or JSONL with id, source_audio, source_lang,
target_text, optional source_text and target_audio). Every source clip is translated by the fine-tuned
model (`sodakit.generate.s2st.translate_manifest`, sampling as the s2st_* settings say), then:

- ASR-BLEU: the ASR judge transcribes the generated speech; corpus BLEU (sacrebleu, 13a) of the
  transcripts against the reference translations, both sides normalised as for WER (lowercase, no
  punctuation: ASR output has none);
- text BLEU of the model's own translation text, and WER of its source transcript when the manifest
  has one;
- SIM: speaker-judge cosine similarity of the generated speech to the source speech (the voice is meant
  to be preserved; 0 for outputs too short to carry a voice), and of the reference target speech to the
  source when given (a ceiling).
The offline judges (PocketSphinx, classical MFCC speaker embedding) are not comparable to published
numbers; whisper:DIR / wavlm:DIR load the paper's.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from sodakit.audio.io import load_audio
from sodakit.data.s2st_manifest import read_manifest
from sodakit.eval.items import DataProvenance
from sodakit.eval.judges import make_asr_judge, make_speaker_judge
from sodakit.eval.metrics import NORMALIZATION_VERSION, corpus_bleu, wer
from sodakit.eval.tasks.base import EvalContext, TaskResult, TaskSpec, Timer, counts, register
from sodakit.eval.tasks.likelihood import _need
from sodakit.fileio import sha256_file
from sodakit.generate.s2st import translate_manifest, translation_record
from sodakit.generate.sampling import SamplingConfig

S2ST_HELP = ("an S2ST manifest (TSV with a header or JSONL): id, source_audio, source_lang, target_text "
             "[, source_text, target_audio, target_lang]; paths relative to the manifest")
# Generated clips shorter than this carry no voice to compare: SIM counts as 0 for them.
MIN_SIM_SECONDS = 0.1


def run_s2st(ctx: EvalContext, path: Path | None) -> TaskResult:
    cfg = ctx.cfg
    manifest = _need(path, "s2st", S2ST_HELP)
    all_items = read_manifest(manifest)
    items = all_items[: cfg.limit] if cfg.limit is not None else all_items
    gen = ctx.get_generator("s2st")
    sr = gen.sample_rate
    sampling = SamplingConfig(temperature=cfg.s2st_temperature, top_p=cfg.s2st_top_p, seed=cfg.rng_seed)
    with Timer() as t:
        with ctx.progress("s2st", len(items)) as bar:
            gen.on_items_done = bar.update
            try:
                translations = translate_manifest(
                    gen, items, cfg.save_audio, sampling=sampling, max_new_tokens=cfg.s2st_max_new_tokens,
                    force_source_lang=cfg.s2st_force_source_lang, max_text_tokens=cfg.s2st_max_text_tokens,
                )
            finally:
                gen.on_items_done = None
        outs = [tr.audio for tr in translations]
        asr = make_asr_judge(cfg.asr_judge, device=ctx.device)
        speaker = make_speaker_judge(cfg.speaker_judge, device=ctx.device)
        transcripts = asr.transcribe(outs, sr)
        usable = [i for i, w in enumerate(outs) if len(w) >= int(MIN_SIM_SECONDS * sr)]
        sims = [0.0] * len(items)
        if usable:
            for i, s in zip(usable, speaker.similarity([outs[i] for i in usable], [translations[i].source for i in usable], sr)):
                sims[i] = float(s)
        ref_sims: list[float | None] = [None] * len(items)
        with_ref = [i for i, it in enumerate(items) if it.target_audio is not None]
        if with_ref:
            refs_audio = [load_audio(items[i].target_audio, sr) for i in with_ref]
            for i, s in zip(with_ref, speaker.similarity(refs_audio, [translations[i].source for i in with_ref], sr)):
                ref_sims[i] = float(s)
    refs = [it.target_text or "" for it in items]
    with_src = [(it.source_text, tr.output.extra.get("source_text") or "") for it, tr in zip(items, translations)
                if it.source_text]
    seconds = [len(w) / sr for w in outs]
    metrics = {
        "asr_bleu": corpus_bleu(transcripts, refs),
        "text_bleu": corpus_bleu([tr.output.text for tr in translations], refs),
        "source_wer": wer([a for a, _ in with_src], [b for _, b in with_src]) if with_src else None,
        "sim": float(np.mean(sims)),
        "reference_sim": float(np.mean([s for s in ref_sims if s is not None])) if with_ref else None,
        "num_items": len(items),
        "empty_outputs": len(items) - len(usable),
        "mean_seconds": float(np.mean(seconds)),
    }
    for k in ("asr_bleu", "text_bleu", "sim"):
        if not math.isfinite(metrics[k]):
            raise AssertionError(f"metric {k} is not finite: {metrics[k]}")
    records = []
    if cfg.log_items:
        for tr, hyp, s, rs in zip(translations, transcripts, sims, ref_sims):
            records.append(translation_record(tr, sr) | {
                "audio_file": tr.audio_path.name if tr.audio_path is not None else None,
                "asr_of_generated_speech": hyp, "sim_to_source": s, "reference_sim_to_source": rs})
    comparable = bool(asr.comparable_to_paper and speaker.comparable_to_paper)
    res = TaskResult(
        task="s2st", metrics=metrics, counts=counts(len(all_items), 0, len(items), 0),
        protocol={"template": "BOS <|audio_start|>{source audio}<|audio_end|><|text_start|> then generated: "
                              "<language>{src}</language>{source text}<|text_end|><|text_start|><language>{tgt}"
                              "</language>{translation}<|text_end|><|audio_start|>{target audio}<|audio_end|> EOS",
                  "protocol": cfg.protocol,
                  "decoding": {"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
                               "max_new_tokens": cfg.s2st_max_new_tokens, "max_text_tokens": cfg.s2st_max_text_tokens,
                               "force_source_lang": cfg.s2st_force_source_lang,
                               "spans": "source text, target text, target audio, then EOS"},
                  "bleu": "sacrebleu corpus BLEU, tokenize 13a, after sodakit.eval.metrics.normalize_text on both sides",
                  "normalization": NORMALIZATION_VERSION,
                  "sim": f"speaker judge cosine(generated, source); 0 for outputs under {MIN_SIM_SECONDS} s",
                  "judges": {"asr": asr.describe(), "speaker": speaker.describe()},
                  "codec": {"name": ctx.codec.name, "config_hash": ctx.codec.config_hash} if ctx.codec else None,
                  "dtype": cfg.dtype},
        data=DataProvenance(str(manifest), "s2st-manifest", sha256_file(manifest), "sha256 of the manifest file").to_dict(),
        items=records, breakdown={"stop_reason": dict(Counter(tr.output.stop_reason for tr in translations))},
        seconds=t.seconds, comparable_to_paper=comparable,
    )
    if not comparable:
        res.notes.append("judges differ from the paper's (Whisper-large-v3, WavLM-large): ASR-BLEU/SIM not comparable "
                         "to published numbers")
    return res


register(TaskSpec("s2st", "speech-to-speech translation of a manifest (fine-tuned model): ASR-BLEU, text BLEU, SIM",
                  S2ST_HELP, run_s2st, needs_codec=True))
