"""`sodakit demo`: the embedded default end to end on a CPU, in about 8 minutes on 2 idle cores.

    corpus -> codec -> tokenizer -> tokenize -> pack -> train -> bench-data -> eval -> samples -> report

The data is the demo's own English (`sodakit.demo.language`): a lexicon of a few hundred words and a
grammar with agreement, read by many offline voices. Every evaluation sentence is held out from
training but made of trained words, so the scores measure generalisation. The model size and step
count come from the project's IsoFLOP fit for the configured compute budget (`sodakit.demo.sizing`),
and the spoken tasks are scored a second time with the codebooks permuted: a negative control that
must fall to chance.

Every stage calls the same library function as its `sodakit` command (printed as it starts), records
what it produced in `<out>/.stages/<stage>.json` with a key hashing its settings and the key of the
stage before it, and is skipped on a rerun whose key matches. A stage interrupted half-way is resumed
where the underlying job supports it (tokenize, pack, train) and redone otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sodakit import __version__
from sodakit.audio.io import load_audio, save_wav
from sodakit.audio.offline_codec import OfflineCodec, OfflineCodecConfig
from sodakit.audio.registry import load_codec
from sodakit.audio.tokenize import TokenizeConfig
from sodakit.audio.tokenize import tokenize as run_tokenize
from sodakit.config import ConfigError, atomic_write_text, parse_config_args, to_dict
from sodakit.data.pack import PackConfig, pack
from sodakit.demo.language_bench import LanguageBenchConfig, build_language_bench, resynthesis_reference
from sodakit.demo.language_corpus import LanguageCorpusConfig, build_language_corpus, demo_voices
from sodakit.demo.sizing import SHIPPED_STUDY, ModelChoice, choose_model, shipped_path
from sodakit.eval.config import EvalConfig
from sodakit.eval.evaluator import evaluate, open_model
from sodakit.eval.judges.judge_lm import DISCOUNT as JUDGE_LM_DISCOUNT
from sodakit.eval.judges.judge_lm import text_sentences, write_judge_lm
from sodakit.eval.results import soda_scores
from sodakit.generate.tasks import SodaGenerator
from sodakit.model.bundle import load_bundle
from sodakit.report.builder import build_report
from sodakit.report.isoflop import isoflop_section, missing_section
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe
from sodakit.train.config import (
    CheckpointConfig,
    DataConfig,
    DataSource,
    LogConfig,
    ModelSpec,
    OptimConfig,
    TrainConfig,
)
from sodakit.train.trainer import train

# Tasks that read audio, scored again with the codebooks permuted (the negative control; text tasks do not
# read audio).
CONTROL_TASKS = ("swuggy", "sblimp", "speech_text_match", "text_speech_match")
# Matching in both orders (50% when the model ignores the other modality: text shifted against its audio in
# training would leave it there): task -> its report column.
MATCH_TASKS = {"speech_text_match": "speech-text match", "text_speech_match": "text-speech match"}


@dataclass
class DemoConfig:
    out: str = "demo_out"
    seed: int = 0
    # --- data: the demo's own English (sodakit.demo.language) read by offline voices
    train_sentences: int = 3000  # distinct training sentences, each read once
    text_sentences: int = 20_000  # text-only sentences (the 5% text part of the mixture)
    val_sentences: int = 120  # held out: validation loss
    test_sentences: int = 160  # held out: ASR sentences, TTS targets and prompts
    pairs_per_phenomenon: int = 100  # BLiMP-like candidates per phenomenon (8); the bench keeps length-matched ones
    espeak_voices: int = 4  # espeak-ng voices (accent x variant x pitch x rate)
    flite_share: float = 0.15  # share of the recordings read by flite voices
    # Shares of the espeak-ng recordings read phrase by phrase / word by word (a segment each): short
    # segments teach which sounds make which words (measured: sWUGGY 64% -> 78% at 300 steps).
    phrase_share: float = 0.3
    word_share: float = 0.3
    # A BPE of 1,024 text tokens: each of the language's ~430 words becomes one token (pseudo-words split
    # into pieces), so a 2-layer model sees agreement between neighbouring tokens. Measured at the
    # default budget: tBLIMP 64.4 with bytes (258) -> 76.9, tWUGGY 100 -> 92, sWUGGY 85 -> 84.
    text_vocab_size: int = 1024
    # --- codec: Mimi-shaped (8 codebooks, 12.5 Hz); a small codebook because a tiny model on an hour of
    # speech cannot learn 2048-way distributions, and the LM head dominates CPU cost.
    num_codebooks: int = 8
    codebook_size: int = 128
    # --- model and training: the size and steps come from the IsoFLOP fit for this budget (sodakit.demo.sizing)
    # training compute C, SODA convention (3 x forward FLOPs per token x tokens); 5e13 trains in ~6 min on
    # 2 idle cores (make demo ~8.5 min of its 15) and is where sWUGGY clears 75% (2.5e13 gave 62%); the
    # shipped config demo_long spends 2e14 on 4x the speech (~21 min)
    flops: float = 5e13
    steps: int = 0  # 0: the steps that spend `flops` on the chosen model; else this many (C is then not spent exactly)
    batch: int = 16
    seq_len: int = 512
    lr: float | None = None  # None: SODA's peak-LR rule for the chosen width
    speech_weight: float = 0.95
    device: str = "auto"  # "cuda" to train/evaluate on a GPU
    # CPU threads (0: torch's default, one per core). A tiny model runs many small parallel ops, and
    # when another busy process holds one of the cores each op waits for the descheduled thread:
    # measured on 2 cores, 20k -> 1.3k tokens/s. On a busy machine, threads=1 is the faster choice.
    threads: int = 0
    precision: str = "bf16"
    # --- evaluation: look-alike sets built from the held-out part of the language, offline judges
    bench_words: int = 100  # sWUGGY/tWUGGY word vs pseudo-word pairs
    bench_blimp_pairs: int = 104  # sBLIMP/tBLIMP minimal pairs (a multiple of the 8 phenomena)
    bench_voices_per_pair: int = 1
    asr_utterances: int = 40
    # held-out sentences whose words are read one by one for speech-text matching (~230 word clips)
    match_sentences: int = 40
    tts_items: int = 10
    control: bool = True  # also score the spoken pair tasks and the word matching with permuted codebooks
    eval_limit: int = 0  # 0 = every item
    # Generation caps: held-out sentences take 1-4 s and ~60 byte tokens; an untrained model never stops.
    gen_max_seconds: float = 6.0
    asr_max_new_tokens: int = 96
    workers: int = 2
    # --- report: the IsoFLOP plots and fitted exponents to show. A fit directory (`sodakit isoflop fit
    # RESULTS --out DIR`) or a study directory (scripts/isoflop_mini_study.py); "" looks for
    # ./runs/isoflop-mini, then the study shipped with sodakit. Only files are read: no sweep is run.
    isoflop: str = ""

    def corpus_config(self) -> LanguageCorpusConfig:
        return LanguageCorpusConfig(
            train_sentences=self.train_sentences, text_sentences=self.text_sentences, val_sentences=self.val_sentences,
            test_sentences=self.test_sentences, pairs_per_phenomenon=self.pairs_per_phenomenon, voices=self.espeak_voices,
            flite_share=self.flite_share, phrase_share=self.phrase_share, word_share=self.word_share,
            val_voices=max(1, self.espeak_voices), seed=self.seed)

    def bench_config(self) -> LanguageBenchConfig:
        return LanguageBenchConfig(words=self.bench_words, blimp_pairs=self.bench_blimp_pairs,
                                   voices_per_pair=self.bench_voices_per_pair, asr_utterances=self.asr_utterances,
                                   match_sentences=self.match_sentences,
                                   asr_flite_share=self.flite_share, tts_items=self.tts_items, seed=self.seed)


class StageRunner:
    def __init__(self, out: Path, log: Callable[[str], None]):
        self.out, self.log = out, log
        self.dir = out / ".stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prev_key = ""
        self.timings: dict[str, float] = {}

    def run(self, name: str, params: dict, fn: Callable[[bool], dict], outputs: list[Path], command: str) -> dict:
        """Run `fn(resume)` unless a finished record with the same key exists; returns its result dict."""
        blob = json.dumps([self.prev_key, __version__, params], sort_keys=True, default=str)
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        self.prev_key = key
        done, started = self.dir / f"{name}.json", self.dir / f"{name}.started"
        if done.is_file():
            rec = json.loads(done.read_text())
            if rec.get("key") == key:
                self.log(f"[demo] {name}: done already ({rec['seconds']:.0f}s earlier run), skipping")
                self.timings[name] = 0.0
                return rec["result"]
        resume = started.is_file() and started.read_text().strip() == key
        if not resume:
            for p in outputs:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        atomic_write_text(started, key)
        self.log(f"[demo] {name}{' (resuming)' if resume else ''}: {command}")
        t0 = time.time()
        result = fn(resume)
        seconds = time.time() - t0
        self.timings[name] = seconds
        atomic_write_text(done, json.dumps({"key": key, "seconds": seconds, "result": result}, indent=2, default=str))
        started.unlink(missing_ok=True)
        self.log(f"[demo] {name}: finished in {seconds:.0f}s")
        return result


Paths = dict[str, Path]
Log = Callable[[str], None]
STAGE_DIRS = ("corpus", "codec", "tokenizer", "segments", "packed", "train", "bench", "eval", "samples", "report")


def run_demo(cfg: DemoConfig, log: Log = print) -> Path:
    """Run (or resume) every stage of the demo into cfg.out; returns the report's index.html."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.isoflop and not Path(cfg.isoflop).exists():
        raise ConfigError(f"demo: isoflop={cfg.isoflop} does not exist (a `sodakit isoflop fit` output directory or "
                         "an IsoFLOP study directory such as runs/isoflop-mini)")
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    st = StageRunner(out, log)
    t_start = time.time()
    p = {name: out / name for name in STAGE_DIRS}

    done: dict[str, Any] = {
        "corpus": corpus_stage(st, p, cfg, log),
        "codec": codec_stage(st, p, cfg, log),
        "tokenizer": tokenizer_stage(st, p, cfg),
        "tokenize": tokenize_stage(st, p, cfg, log),
        "pack": pack_stage(st, p),
    }
    choice, model = choose_model(cfg.flops, done["tokenizer"]["vocab_size"], cfg.batch, cfg.seq_len)
    log(f"[demo] IsoFLOP fit: C = {cfg.flops:.3g} -> N* = {choice.n_opt:,.0f}; width {choice.width}, {choice.layers} "
        f"layer(s), {choice.params:,} parameters, {cfg.steps or choice.steps} steps")
    done["sizing"] = choice
    done["train"] = train_stage(st, p, cfg, choice, choice.overrides(model))
    done["bench-data"] = bench_data_stage(st, p, cfg, log)
    done["eval"] = eval_stage(st, p, cfg)
    done["samples"] = samples_stage(st, p, cfg, log)
    summary = demo_summary(cfg, p, done, st.timings, time.time() - t_start)
    summary["isoflop"] = _isoflop(cfg, log)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    paths = build_report(summary, p["report"], base_dir=out)
    log(f"[demo] report: {paths['html']}  (total {time.time() - t_start:.0f}s)")
    return paths["html"]


def demo_summary(cfg: DemoConfig, p: Paths, done: dict[str, Any], timings: dict[str, float], seconds: float) -> dict:
    """The report's summary (see report/builder.py) from what each stage recorded."""
    corpus_info, pack_info, train_info = done["corpus"], done["pack"], done["train"]
    choice: ModelChoice = done["sizing"]
    minutes = corpus_info["speech_hours"] * 60
    model = f"{choice.params:,}-parameter model (width {choice.width}, {choice.layers} layer(s))"
    return {
        "title": "sodakit demo: the embedded default, end to end on a CPU",
        "subtitle": (f"{minutes:.0f} min of synthetic speech in the demo's own English ({corpus_info['voices']} offline "
                     f"voices), offline codec {cfg.num_codebooks}x{cfg.codebook_size} at 12.5 Hz, a {model} sized by "
                     f"the IsoFLOP fit, {train_info['steps']} steps of {cfg.batch}x{cfg.seq_len} tokens. Every "
                     f"evaluation sentence is held out. Total {seconds:.0f}s (this run; skipped stages count 0)."),
        "data": {
            "speech corpus": {k: v for k, v in corpus_info.items() if not isinstance(v, list | dict)},
            "model size from the IsoFLOP fit": {
                **choice.report_rows(),
                **({"steps trained (set by steps=, not by C)": train_info["steps"]} if cfg.steps else {})},
            "codec": done["codec"],
            "tokenizer": done["tokenizer"],
            **{f"packed {name}": {"documents": m["num_documents"], "tokens": m["num_tokens"],
                                  **{f"{k} tokens": v for k, v in m["counts"].items()}} for name, m in pack_info.items()},
            "tokenize": {f"{part} {k}": d.get(k) for part, d in done["tokenize"].items()
                         for k in ("segments", "errors", "audio_hours", "wall_seconds")},
            "benchmark sets": done["bench-data"]["sets"],
        },
        "training": {"metrics": str(p["train"] / "metrics.jsonl"), "config": str(p["train"] / "config.yaml"),
                     "info": {"model": model, "steps": train_info["steps"], "global batch": cfg.batch,
                              "sequence length": cfg.seq_len, "mixture": f"{cfg.speech_weight:.2f} speech / "
                              f"{1 - cfg.speech_weight:.2f} text", "final train loss": train_info["last_loss"],
                              **{f"final {k}": v for k, v in (train_info.get("val") or {}).items()}}},
        "evaluation": {"scale": f"{model}, ~{minutes:.0f} min of synthetic speech, look-alike benchmarks from the "
                                "demo's held-out sentences",
                       "scores": done["eval"]["scores"],
                       "judges": "pocketsphinx (ASR) and an MFCC-statistics speaker embedding: offline judges, "
                                 "not comparable to the paper's Whisper-large-v3 / WavLM-large",
                       "coverage": _coverage(Path(done["eval"]["results"])),
                       "results": done["eval"]["results"]},  # per-task details and per-item logs
        "samples": done["samples"],
        "settings": {"demo": to_dict(cfg), "stage_seconds": {k: round(v, 1) for k, v in timings.items()}},
    }


# ---------------------------------------------------------------------------------------------------
# The stages, in order: each runs its library call through the StageRunner and returns what it records.
# ---------------------------------------------------------------------------------------------------
def corpus_stage(st: StageRunner, p: Paths, cfg: DemoConfig, log: Log) -> dict:
    """1. The demo's language read by offline voices -> corpus/manifest.jsonl (+ held-out part, heldout.json)."""
    ccfg = cfg.corpus_config()

    def corpus(_: bool) -> dict:
        info = build_language_corpus(p["corpus"], ccfg, workers=cfg.workers, log=log)
        return {k: v for k, v in info.items() if k != "config"}

    return st.run("corpus", to_dict(ccfg), corpus, [p["corpus"]],
                  "(built in: sodakit.demo.language sentences read by flite/espeak-ng voices -> manifest.jsonl)")


def codec_stage(st: StageRunner, p: Paths, cfg: DemoConfig, log: Log) -> dict:
    """2. The offline codec fitted on the corpus."""
    def codec(_: bool) -> dict:
        ccfg = OfflineCodecConfig(num_codebooks=cfg.num_codebooks, codebook_size=cfg.codebook_size, seed=cfg.seed)
        files = sorted({json.loads(line)["audio"] for line in open(p["corpus"] / "manifest.jsonl")})
        model = OfflineCodec.fit((load_audio(f, ccfg.sample_rate) for f in files), ccfg, log=log)
        model.save(p["codec"])
        return {"config_hash": model.config_hash, **{k: v for k, v in model.fit_summary.items() if not isinstance(v, dict | list)}}

    return st.run("codec", {"k": cfg.num_codebooks, "c": cfg.codebook_size, "seed": cfg.seed}, codec, [p["codec"]],
                  f"sodakit codec fit {p['corpus'] / 'manifest.jsonl'} {p['codec']} "
                  f"num_codebooks={cfg.num_codebooks} codebook_size={cfg.codebook_size}")


def tokenizer_stage(st: StageRunner, p: Paths, cfg: DemoConfig) -> dict:
    """3. A text BPE trained on the corpus text, with the codec's audio layout."""
    def tokenizer(_: bool) -> dict:
        lines = (p["corpus"] / "text.txt").read_text().splitlines()
        tok = SodaTokenizer(train_bpe(lines, vocab_size=cfg.text_vocab_size))
        tok = tok.with_audio_layout(cfg.num_codebooks, cfg.codebook_size)
        tok.save_pretrained(p["tokenizer"])
        return {"text_vocab_size": tok.vocab.text_vocab_size, "vocab_size": tok.vocab.size, "fingerprint": tok.vocab.fingerprint}

    return st.run("tokenizer", {"v": cfg.text_vocab_size}, tokenizer, [p["tokenizer"]],
                  f"sodakit tokenizer train {p['corpus'] / 'text.txt'} --output {p['tokenizer']} "
                  f"--vocab-size {cfg.text_vocab_size} --codebook-size {cfg.codebook_size}")


def tokenize_stage(st: StageRunner, p: Paths, cfg: DemoConfig, log: Log) -> dict:
    """4. Audio -> segment shards, training and held-out parts."""
    def tokenize(_: bool) -> dict:
        res = {}
        for part, manifest in (("train", "manifest.jsonl"), ("val", "manifest_val.jsonl")):
            summary = run_tokenize(TokenizeConfig(input=str(p["corpus"] / manifest), output=str(p["segments"] / part),
                                                  codec=str(p["codec"]), workers=cfg.workers, shard_size=200), log=log)
            res[part] = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
        return res

    return st.run("tokenize", {}, tokenize, [p["segments"]],
                  f"sodakit tokenize input={p['corpus'] / 'manifest.jsonl'} output={p['segments'] / 'train'} codec={p['codec']}")


def pack_stage(st: StageRunner, p: Paths) -> dict:
    """5. Speech documents, text documents and the held-out speech, packed into token shards."""
    def pack_all(_: bool) -> dict:
        tok = str(p["tokenizer"])
        speech = pack(PackConfig(inputs=[str(p["segments"] / "train")], output=str(p["packed"] / "speech"), tokenizer=tok))
        text = pack(PackConfig(kind="text", inputs=[str(p["corpus"] / "text.txt")], output=str(p["packed"] / "text"),
                               tokenizer=tok, vocab_from=str(p["packed"] / "speech")))
        val = pack(PackConfig(inputs=[str(p["segments"] / "val")], output=str(p["packed"] / "val"), tokenizer=tok))
        keep = ("num_documents", "num_tokens", "counts")
        return {name: {k: m[k] for k in keep} for name, m in (("speech", speech), ("text", text), ("val", val))}

    return st.run("pack", {}, pack_all, [p["packed"]],
                  f"sodakit pack inputs=[{p['segments'] / 'train'}] output={p['packed'] / 'speech'} tokenizer={p['tokenizer']}")


def train_stage(st: StageRunner, p: Paths, cfg: DemoConfig, choice: ModelChoice, model: dict) -> dict:
    """6. The IsoFLOP-sized model trained on the 95/5 speech/text mixture (resumes an interrupted run)."""
    steps = cfg.steps or choice.steps

    def train_model(resume: bool) -> dict:
        tcfg = TrainConfig(
            run_dir=str(p["train"]), seed=cfg.seed, steps=steps, global_batch=cfg.batch, micro_batch=cfg.batch,
            precision=cfg.precision, device=cfg.device,
            data=DataConfig(sources=[DataSource(str(p["packed"] / "speech"), cfg.speech_weight),
                                     DataSource(str(p["packed"] / "text"), round(1 - cfg.speech_weight, 6))],
                            seq_len=cfg.seq_len, val_path=str(p["packed"] / "val"), val_batches=4,
                            tokenizer=str(p["tokenizer"] / "tokenizer.json")),
            # Generation prompts (voice prompt + text + audio) may outgrow the training sequence length.
            model=ModelSpec(overrides={**model, "max_seq_len": max(2048, cfg.seq_len)}),
            optim=OptimConfig(lr=cfg.lr),
            checkpoint=CheckpointConfig(every=max(50, steps // 4), keep_last=1, resume="auto" if resume else "none"),
            log=LogConfig(every=10, val_every=max(10, steps // 8), tensorboard=False, progress=True),
        )
        result = train(tcfg)
        return {"steps": result.step, "last_loss": result.last_loss, "val": result.val,
                "checkpoint": str(result.last_checkpoint), "metrics": str(result.metrics_path)}

    return st.run("train", {"model": model, "steps": steps, "batch": cfg.batch, "seq": cfg.seq_len, "lr": cfg.lr,
                            "w": cfg.speech_weight, "precision": cfg.precision, "seed": cfg.seed, "device": cfg.device},
                  train_model, [p["train"]],
                  "sodakit train data.sources=[...speech 0.95, text 0.05] "
                  + " ".join(f"model.overrides.{k}={v}" for k, v in model.items())
                  + f" steps={steps} global_batch={cfg.batch} data.seq_len={cfg.seq_len}")


def bench_data_stage(st: StageRunner, p: Paths, cfg: DemoConfig, log: Log) -> dict:
    """7. Look-alike benchmark sets from the held-out part of the language, in the real layouts."""
    bcfg = cfg.bench_config()

    def bench(_: bool) -> dict:
        heldout = json.loads((p["corpus"] / "heldout.json").read_text())
        rec = build_language_bench(p["bench"], heldout, demo_voices(cfg.corpus_config()), bcfg, log=log)
        # The ASR judge's language model: a bigram of the training text, so that the judge knows the
        # language's words as a modern judge knows English (its bundled general LM misreads them).
        write_judge_lm(text_sentences((p["corpus"] / "text.txt").read_text()), judge_lm_path(p))
        log(f"[bench] judge LM: word bigram of the training text -> {judge_lm_path(p)}")
        return {"sets": rec["sets"], "seconds": rec["seconds"], "judge_lm": str(judge_lm_path(p))}

    return st.run("bench-data", {**to_dict(bcfg), "judge_lm": f"word bigram, discount {JUDGE_LM_DISCOUNT}"}, bench,
                  [p["bench"]],
                  f"(built in: sodakit.demo.language_bench {p['corpus'] / 'heldout.json'} -> {p['bench']}; "
                  f"sodakit eval judge-lm {p['corpus'] / 'text.txt'} --out {judge_lm_path(p)})")


def judge_lm_path(p: Paths) -> Path:
    return p["bench"] / "judge_lm.arpa"


def eval_stage(st: StageRunner, p: Paths, cfg: DemoConfig) -> dict:
    """8. The benchmark battery on the trained model; the negative control; the codec's resynthesis floor."""
    tasks = {
        "swuggy": p["bench"] / "zerospeech2021", "sblimp": p["bench"] / "zerospeech2021",
        "twuggy": p["bench"] / "zerospeech2021", "tblimp": p["bench"] / "blimp",
        "asr": p["bench"] / "librispeech" / "test-clean", "tts": p["bench"] / "seedtts" / "en",
        "val_nll": p["segments"] / "val", **{t: p["bench"] / "librispeech" / "words" for t in MATCH_TASKS},
    }
    eval_cfg = EvalConfig(
        model=str(p["train"]), tasks=list(tasks), data={t: str(d) for t, d in tasks.items()},
        device=cfg.device, batch_size=8, save_audio=str(p["eval"] / "tts_audio"),
        seed=cfg.seed, log_items=True, tts_max_new_tokens=_audio_tokens(cfg, cfg.gen_max_seconds),
        asr_max_new_tokens=cfg.asr_max_new_tokens, limit=cfg.eval_limit or None, out=str(p["eval"] / "results.json"),
        asr_judge=f"pocketsphinx:{judge_lm_path(p)}",
        nll_window=cfg.seq_len,  # the windows the model trained on (its positions reach 2048 for generation)
    )
    control_cfg = dataclasses.replace(eval_cfg, tasks=list(CONTROL_TASKS), control="permute-codebooks", save_audio=None,
                                      log_items=False, out=str(p["eval"] / "control.json"))
    # Matching on whole held-out sentences (the ASR clips), beside the words of the main run.
    sentences_cfg = dataclasses.replace(eval_cfg, tasks=list(MATCH_TASKS), save_audio=None,
                                        data={t: str(tasks["asr"]) for t in MATCH_TASKS},
                                        out=str(p["eval"] / "match_sentences.json"))

    def evaluate_stage(_: bool) -> dict:
        p["eval"].mkdir(parents=True, exist_ok=True)
        bundle = open_model(eval_cfg)
        results = evaluate(bundle, eval_cfg, log=st.log)
        control = evaluate(bundle, control_cfg, log=st.log) if cfg.control else None
        sentences = evaluate(bundle, sentences_cfg, log=st.log)
        resynth = resynthesis_reference(tasks["tts"], load_codec(str(p["codec"])), eval_cfg.asr_judge,
                                        eval_cfg.protocol)
        atomic_write_text(p["eval"] / "resynthesis.json", json.dumps(resynth, indent=1))
        return {"scores": demo_scores(results, control, resynth, sentences), "results": eval_cfg.out,
                "control": control_cfg.out if control else None, "match_sentences": sentences_cfg.out}

    return st.run("eval", {"tasks": sorted(tasks), "limit": cfg.eval_limit, "control": cfg.control,
                           # the LM's own content is in the bench stage's key, which this key chains on
                           "judge": "pocketsphinx with the bench stage's judge LM",
                           "caps": [cfg.gen_max_seconds, cfg.asr_max_new_tokens]}, evaluate_stage, [p["eval"]],
                  " && ".join(" ".join(c.command_line()) for c in (eval_cfg, *([control_cfg] if cfg.control else []),
                                                                   sentences_cfg)))


# What the embedded default is built to show (docs/demo.md#goals), beside each score in the report. The
# pair tasks also need the 95% interval's lower end above 50.
GOALS = {"sBLIMP": ">= 65", "sWUGGY": ">= 75", "tBLIMP": ">= 70", "tWUGGY": ">= 80", "ASR WER": "<= 40",
         "TTS WER": "<= 60 and <= 2 x codec resynthesis"}

# The report's extra score lines: (column, task, metric) with the interval metric beside it.
_INTERVALS = (("sBLIMP", "sblimp", "accuracy_ci95", 100), ("sWUGGY", "swuggy", "accuracy_ci95", 100),
              ("tBLIMP", "tblimp", "accuracy_ci95", 100), ("tWUGGY", "twuggy", "accuracy_ci95", 100),
              ("ASR WER", "asr", "wer_ci95", 100), ("TTS WER", "tts", "wer_ci95", 100))


def _metrics(results: dict | None, task: str) -> dict:
    task_result = ((results or {}).get("tasks") or {}).get(task) or {}
    return (task_result.get("metrics") or {}) if task_result.get("status") == "ok" else {}


def demo_scores(results: dict, control: dict | None, resynth: dict, sentences: dict | None = None) -> dict:
    """The SODA columns, each with its 95% interval and pair count, speech-text matching on the held-out
    words and sentences, the negative control's scores and the judge's WER on the codec's resynthesis of
    the TTS targets (the floor TTS can reach with this codec)."""
    scores: dict[str, Any] = dict(soda_scores(results))
    for column, task, key, scale in _INTERVALS:
        m = _metrics(results, task)
        if isinstance(m.get(key), list):
            scores[f"{column} 95% interval"] = [round(scale * v, 1) for v in m[key]]
        if "pairs" in m:
            scores[f"{column} pairs"] = m["pairs"]
        if column in scores:
            scores[f"{column} goal"] = GOALS[column]
    # Does the model hear a transcript in its audio, and read an utterance's audio in its transcript?
    for task, name in MATCH_TASKS.items():
        for column, res in ((f"{name}, words", results), (f"{name}, sentences", sentences)):
            m = _metrics(res, task)
            if "accuracy" in m:
                scores[column] = round(100 * m["accuracy"], 3)
                scores[f"{column} 95% interval"] = [round(100 * v, 1) for v in m["accuracy_ci95"]]
                scores[f"{column} pairs"] = m["pairs"]
    if control is not None:
        columns = {**{t: c for c, t, _, _ in _INTERVALS}, **{t: f"{n}, words" for t, n in MATCH_TASKS.items()}}
        for task in CONTROL_TASKS:
            m = _metrics(control, task)
            if "accuracy" in m:
                scores[f"{columns[task]}, control: codebooks permuted"] = round(100 * m["accuracy"], 3)
                scores[f"{columns[task]}, control 95% interval"] = [round(100 * v, 1) for v in m["accuracy_ci95"]]
    # Does the model read one modality to predict the other? (ASR and TTS need it; 0 = it does not.)
    nll = _metrics(results, "val_nll")
    for key, column in (("gain_text_from_audio", "held-out text NLL gain from hearing its audio first (nats/token)"),
                        ("gain_audio_from_text", "held-out audio NLL gain from reading its text first (nats/token)")):
        if isinstance(nll.get(key), float):
            scores[column] = round(nll[key], 4)
    scores["TTS WER, codec resynthesis of the targets"] = round(100 * resynth["wer_resynthesis"], 3)
    scores["TTS WER, original target audio"] = round(100 * resynth["wer_original"], 3)
    return scores


def samples_stage(st: StageRunner, p: Paths, cfg: DemoConfig, log: Log) -> list[dict]:
    """9. ASR, TTS and continuation samples from the trained model, for the report."""
    def samples(_: bool) -> list[dict]:
        return _generate_samples(p, cfg, log)

    return st.run("samples", {"caps": [cfg.gen_max_seconds, cfg.asr_max_new_tokens]}, samples, [p["samples"]],
                  f"sodakit generate tts|asr|continue model={p['train']} ...")


# The laptop IsoFLOP study shipped with sodakit (plots, summary and the fit that sizes the demo's model).
SHIPPED_ISOFLOP = shipped_path(SHIPPED_STUDY)


def _isoflop(cfg: DemoConfig, log: Callable[[str], None]) -> dict:
    """The report's IsoFLOP section: cfg.isoflop, else ./runs/isoflop-mini, else the study shipped with
    sodakit; a note on how to produce a sweep when none holds plots or a fit."""
    candidates = [Path(cfg.isoflop)] if cfg.isoflop else [Path("runs") / "isoflop-mini", SHIPPED_ISOFLOP]
    for c in candidates:
        section = isoflop_section(c) if c.exists() else None
        if section:
            log(f"[demo] report: IsoFLOP plots and fit from {section['source']}")
            return section
    looked = [c.resolve() for c in candidates]
    log(f"[demo] report: no IsoFLOP sweep found in {', '.join(map(str, looked))}")
    return missing_section(looked)


def _coverage(results_path: Path) -> dict:
    """{column: {scored, expected, missing}} for the scores averaged over parts (SALMon)."""
    try:
        tasks = json.loads(results_path.read_text()).get("tasks", {})
    except (OSError, ValueError):
        return {}
    m = (tasks.get("salmon") or {}).get("metrics") or {}
    if not isinstance(m.get("parts_scored"), int) or not isinstance(m.get("parts_expected"), int):
        return {}
    return {"SALMon": {"scored": m["parts_scored"], "expected": m["parts_expected"],
                       "missing": m.get("parts_missing") or []}}


def _audio_tokens(cfg: DemoConfig, seconds: float) -> int:
    """Token budget for `seconds` of audio at 12.5 frames/s (+1 for <|audio_end|>)."""
    return int(seconds * 12.5) * cfg.num_codebooks + 1


def _generate_samples(p: dict[str, Path], cfg: DemoConfig, log: Callable[[str], None]) -> list[dict]:
    gen = SodaGenerator.from_bundle(load_bundle(p["train"], device=cfg.device, backend="sodakit", need_codec=True))
    sr = gen.sample_rate
    out = p["samples"]
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in open(p["corpus"] / "manifest_val.jsonl")]

    def clip(row: dict) -> np.ndarray:
        wav = load_audio(row["audio"], sr)
        return wav[int(row["start"] * sr): int(row["end"] * sr)]

    samples: list[dict] = []
    # ASR on held-out sentences
    asr_rows = rows[:2]
    for i, (row, res) in enumerate(zip(asr_rows, gen.asr([clip(r) for r in asr_rows], sr,
                                                         max_new_tokens=cfg.asr_max_new_tokens))):
        path = save_wav(out / f"asr{i}_input.wav", clip(row), sr)
        samples.append({"task": "asr", "prompt_audio": str(path), "output_text": res.text, "reference_text": row["text"]})
    # TTS with a voice prompt (a held-out sentence and its transcript)
    voice_row = rows[0]
    voice = gen.voice(clip(voice_row), sr, voice_row["text"])
    texts = [rows[2]["text"], rows[3]["text"]] if len(rows) > 3 else [rows[-1]["text"]]
    torch.manual_seed(cfg.seed)
    for i, (text, res) in enumerate(zip(texts, gen.tts(texts, voice=voice, max_new_tokens=_audio_tokens(cfg, cfg.gen_max_seconds),
                                                             max_seconds=cfg.gen_max_seconds, silence_stop_seconds=1.5))):
        prompt = save_wav(out / f"tts{i}_voice.wav", clip(voice_row), sr)
        entry = {"task": "tts", "prompt_audio": str(prompt), "prompt_text": text, "stop": res.stop_reason}
        if res.audio is not None and len(res.audio):
            entry["output_audio"] = str(save_wav(out / f"tts{i}_output.wav", res.audio, sr))
        samples.append(entry)
    # continuation of a held-out utterance
    row = rows[1]
    res = gen.continue_audio([clip(row)], sr, seconds=min(4.0, cfg.gen_max_seconds), include_prompt=True)[0]
    entry = {"task": "continue", "prompt_audio": str(save_wav(out / "continue_prompt.wav", clip(row), sr)),
             "prompt_text": row["text"], "stop": res.stop_reason}
    if res.audio is not None and len(res.audio):
        entry["output_audio"] = str(save_wav(out / "continue_output.wav", res.audio, sr))
    samples.append(entry)
    log(f"[demo] samples: {len(samples)} written to {out}")
    return samples


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_config_args(DemoConfig, argv, "sodakit demo", __doc__ or "")
    run_demo(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0
