"""ASR, TTS, audio continuation and S2ST on a trained model: waveforms and text in, waveforms and text out.

    g = SodaGenerator.from_bundle(load_bundle("runs/x", need_codec=True))  # codec from the model's metadata
    texts = g.asr([wav], sample_rate=16000)
    wavs = g.tts(["Hello there."], voice=g.voice(prompt_wav, 16000, "Prompt transcript."))

The codec is the one `sodakit.model.bundle.load_bundle` opened: the one recorded in the checkpoint
unless another was given, checked to be the codec the model was trained with (same config hash), since
codes of different codecs mean different things. Audio is resampled to the codec's rate on the way in;
generated audio comes out at the codec's rate (`g.sample_rate`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sodakit.audio.io import resample, to_mono
from sodakit.generate import prompts as P
from sodakit.generate.decoding import STOP_SILENCE, DecodeStats, Generation, GenerationConfig, generate
from sodakit.generate.memory import weights_to_hugepages
from sodakit.generate.sampling import SamplingConfig
from sodakit.generate.silence import EnergySilence, RepeatSilence, SilenceDetector, calibrate_silence_codes
from sodakit.model.bundle import Bundle
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import Vocab

# SODA's TTS protocol (docs/soda.md#evaluation-protocol): temperature 0.9, top-p 0.8, at most 1500 new tokens.
TTS_SAMPLING = SamplingConfig(temperature=0.9, top_p=0.8, seed=0)
TTS_MAX_NEW_TOKENS = 1500
# ASR transcripts: greedy; 12.5 frames/s of audio rarely need more than ~4 text tokens per second.
ASR_MAX_NEW_TOKENS = 448
# S2ST text spans (source transcript, translation) longer than this are runaway loops: CVSS sentences
# stay well under 100 Llama-3 tokens.
S2ST_MAX_TEXT_TOKENS = 256
# What can count as silence (`SodaGenerator.silence_detector`), and the detector used when the caller
# asks for a silence stop without naming one.
SILENCE_DETECTORS = ("codes", "repeat", "energy")
DEFAULT_SILENCE = "codes"
# The stop reason of an item that was not generated at all (`TaskOutput.error` says why).
STOP_ERROR = "error"


@dataclass
class TaskOutput:
    """What one generation task produced for one input."""

    text: str = ""
    audio: np.ndarray | None = None  # float32 at the codec's rate
    stop_reason: str = ""
    new_tokens: int = 0
    audio_frames: int = 0
    extra: dict = field(default_factory=dict)
    error: str | None = None  # why nothing was generated for this input (the others of its batch go on)


@dataclass
class ItemFailed:
    """An input the model cannot continue (e.g. its prompt alone fills the model's context)."""

    reason: str


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class SodaGenerator:
    def __init__(
        self,
        model,
        vocab: Vocab,
        tokenizer: SodaTokenizer | None = None,
        codec=None,
        codec_info: dict | None = None,
        batch_size: int = 8,
    ) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.codec = codec
        self.codec_info = codec_info or {}
        self.batch_size = max(1, int(batch_size))
        self.notes: list[str] = []
        self.stats = DecodeStats()
        # Called with the number of inputs finished after every decoded batch (progress).
        self.on_items_done: Callable[[int], None] | None = None
        # Where runtime warnings go (a budget clamped to the model's context), each said once.
        self.warn: Callable[[str], None] = _stderr_warning
        self._warned: set[tuple] = set()
        if tokenizer is not None and tokenizer.vocab != vocab:
            raise ValueError(
                f"tokenizer layout {tokenizer.vocab.fingerprint} differs from the model's vocabulary {vocab.fingerprint}"
            )

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_bundle(cls, bundle: Bundle, batch_size: int = 8) -> SodaGenerator:
        """A generator over an opened model (its notes: what loading it noticed, e.g. a codec warning)."""
        if bundle.info.backend != "sodakit":
            raise ValueError(f"{bundle.info.path}: generation needs the project's model (load it with backend='sodakit')")
        if bundle.model.embed.weight.device.type == "cpu":
            weights_to_hugepages(bundle.model)  # faster CPU decoding, same values
        g = cls(bundle.model, bundle.vocab, bundle.tokenizer, bundle.codec, bundle.info.codec_record, batch_size)
        g.notes = list(bundle.info.notes)
        return g

    # ---- helpers -----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        self._need_codec()
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        if self.codec is not None:
            return float(self.codec.frame_rate)
        if self.codec_info.get("frame_rate"):
            return float(self.codec_info["frame_rate"])
        raise ValueError("frame rate unknown: no codec loaded and none recorded in the checkpoint")

    def _need_codec(self) -> None:
        if self.codec is None:
            raise ValueError("this task needs a codec: pass codec=... (or --codec)")

    def _need_tokenizer(self) -> SodaTokenizer:
        if self.tokenizer is None:
            raise ValueError("this task needs the text tokenizer: the checkpoint has none; pass tokenizer=... (--tokenizer)")
        return self.tokenizer

    def encode(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Codes [K, F] of each waveform (mono or [N, C], any rate), first K codebooks of the layout."""
        self._need_codec()
        codes = self.codec.encode_audio(list(waveforms), sample_rate)
        return [np.asarray(c)[: self.vocab.num_codebooks] for c in codes]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._need_codec()
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        return self.codec.decode(codes[None])[0]

    def voice(self, wav: np.ndarray, sample_rate: int, text: str) -> P.VoicePrompt:
        return P.VoicePrompt(codes=self.encode([wav], sample_rate)[0], text=text)

    def silence_detector(self, kind: str = DEFAULT_SILENCE, calibration_audio: Sequence[tuple[np.ndarray, int]] = ()) -> SilenceDetector:
        """`codes` (calibrated on synthetic silence + the given audio), `repeat` or `energy`."""
        if kind == "repeat":
            return RepeatSilence(semantic_codebook=self.vocab.semantic_codebooks[0])
        self._need_codec()
        if kind == "energy":
            return EnergySilence(self.codec)
        if kind == "codes":
            sr = self.codec.sample_rate
            waves = [resample(to_mono(np.asarray(w, dtype=np.float32)), r, sr) for w, r in calibration_audio if len(w)]
            return calibrate_silence_codes(self.codec, waves, sample_rate=sr)
        raise ValueError(f"unknown silence detector {kind!r}; choose {', '.join(SILENCE_DETECTORS)}")

    @property
    def context_length(self) -> int | None:
        """The model's max_seq_len: prompt + new tokens never go past it (positions it never trained on)."""
        return getattr(getattr(self.model, "cfg", None), "max_seq_len", None)

    def _run(self, prompts: list[np.ndarray], cfg: GenerationConfig,
             silence: SilenceDetector | None = None) -> list[Generation | ItemFailed]:
        """Decode every prompt, in batches of `batch_size`; one result per prompt, in order.

        A prompt whose budget would run past the model's context gets max_seq_len - its length new
        tokens (decoded on its own, so its neighbours keep their full budget; a warning names the
        numbers); a prompt that leaves no room at all is an `ItemFailed`, and the others go on.
        """
        context = None if cfg.allow_longer_than_trained else self.context_length
        out: list[Generation | ItemFailed | None] = [None] * len(prompts)
        full, clamped = [], []
        for i, p in enumerate(prompts):
            room = None if context is None else context - len(p)
            if room is None or room >= cfg.max_new_tokens:
                full.append(i)
            elif room >= 1:
                clamped.append(i)
            else:
                out[i] = ItemFailed(f"the prompt ({len(p)} tokens) does not fit the model's context "
                                    f"(max_seq_len {context}); nothing was generated")
        groups = [(full[s : s + self.batch_size], cfg) for s in range(0, len(full), self.batch_size)]
        if clamped:
            assert context is not None
            budgets = [context - len(prompts[i]) for i in clamped]
            self._warn_once(("clamp", cfg.max_new_tokens, context),
                            f"max_new_tokens {cfg.max_new_tokens} + the prompt exceeds the model's context "
                            f"(max_seq_len {context}): clamped to max_seq_len - prompt length ("
                            + (f"{budgets[0]}" if len(set(budgets)) == 1 else f"{min(budgets)} to {max(budgets)}")
                            + f" new tokens for {len(clamped)} prompt(s) of {len(prompts)})")
            groups += [([i], replace(cfg, max_new_tokens=b)) for i, b in zip(clamped, budgets)]
        failed = sum(isinstance(o, ItemFailed) for o in out)
        if failed and self.on_items_done is not None:
            self.on_items_done(failed)
        for idx, c in groups:
            gens = generate(self.model, [prompts[i] for i in idx], self.vocab, c, silence=silence, stats=self.stats)
            for i, g in zip(idx, gens):
                out[i] = g
            if self.on_items_done is not None:
                self.on_items_done(len(idx))
        return out  # type: ignore[return-value]

    def _warn_once(self, key: tuple, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(message)

    def _audio_result(self, gen: Generation | ItemFailed, trim_silence: bool) -> TaskOutput:
        if isinstance(gen, ItemFailed):
            return TaskOutput(stop_reason=STOP_ERROR, error=gen.reason)
        # The task's audio: the generated ids of the span the prompt opened, up to its <|audio_end|>.
        ids = np.asarray(gen.tokens, dtype=np.int64)
        other = np.flatnonzero(~self.vocab.is_audio(ids))
        body = ids[: other[0]] if other.size else ids
        codes = P.span_codes(self.vocab, body)
        if trim_silence and gen.stop_reason == STOP_SILENCE and gen.trailing_silence:
            codes = codes[:, : max(0, codes.shape[1] - gen.trailing_silence)]
        return TaskOutput(
            audio=self.decode(codes),
            stop_reason=gen.stop_reason,
            new_tokens=len(gen.tokens),
            audio_frames=int(codes.shape[1]),
            extra={"codes": codes},
        )

    def _frames(self, seconds: float | None) -> int | None:
        return None if seconds is None else max(1, math.ceil(seconds * self.frame_rate))

    # ---- tasks -------------------------------------------------------------------------------------
    def asr(
        self,
        waveforms: Sequence[np.ndarray],
        sample_rate: int,
        shots: Sequence[tuple[np.ndarray, int, str]] = (),
        max_new_tokens: int = ASR_MAX_NEW_TOKENS,
        sampling: SamplingConfig | None = None,
        constrain: bool = True,
        stop_at_eos: bool = True,
    ) -> list[TaskOutput]:
        """Transcripts: `<|audio_start|>A<|audio_end|><|text_start|>` until <|text_end|> (greedy by default).

        constrain=False samples from the whole vocabulary and stop_at_eos=False lets generation run past
        <|end_of_text|> (the SODA authors' decoding); the transcript is then the text tokens generated
        before <|text_end|>, with special tokens (BOS/EOS, markers, audio) dropped.
        """
        tok = self._need_tokenizer()
        codes = self.encode(waveforms, sample_rate)
        shot_codes = [(self.encode([w], sr)[0], t) for w, sr, t in shots]
        prompts = [P.asr_prompt(tok, c, shot_codes) for c in codes]
        stops = (self.vocab.text_end_id, self.vocab.eos_id) if stop_at_eos else (self.vocab.text_end_id,)
        cfg = GenerationConfig(
            max_new_tokens=max_new_tokens,
            sampling=sampling or SamplingConfig(),
            stop_ids=stops,
            constrain=constrain,
            span_plan=("text",) if constrain else None,
        )
        results = []
        for g in self._run(prompts, cfg):
            if isinstance(g, ItemFailed):
                results.append(TaskOutput(stop_reason=STOP_ERROR, error=g.reason))
                continue
            ids = np.asarray(g.tokens, dtype=np.int64)
            ids = ids[: np.flatnonzero(ids == self.vocab.text_end_id)[0]] if (ids == self.vocab.text_end_id).any() else ids
            text = P.text_of(tok, ids, skip_special=True).strip()
            results.append(TaskOutput(text=text, stop_reason=g.stop_reason, new_tokens=len(g.tokens)))
        return results

    def tts(
        self,
        texts: Sequence[str],
        voice: P.VoicePrompt | None = None,
        max_new_tokens: int = TTS_MAX_NEW_TOKENS,
        sampling: SamplingConfig | None = None,
        max_seconds: float | None = None,
        silence_stop_seconds: float | None = None,
        silence: SilenceDetector | None = None,
        trim_silence: bool = True,
    ) -> list[TaskOutput]:
        """Speech for each text, optionally in the voice of `voice` (docs/soda.md#evaluation-protocol TTS prompt)."""
        tok = self._need_tokenizer()
        self._need_codec()
        prompts = [P.tts_prompt(tok, t, voice) for t in texts]
        frames = self._frames(max_seconds)
        if frames is not None:  # the duration cap needs no more than its frames and <|audio_end|>
            max_new_tokens = min(max_new_tokens, frames * self.vocab.num_codebooks + 1)
        cfg = self._audio_cfg(max_new_tokens, sampling or TTS_SAMPLING, max_seconds, silence_stop_seconds)
        if cfg.silence_stop_frames is not None and silence is None:
            silence = self.silence_detector()
        return [self._audio_result(g, trim_silence) for g in self._run(prompts, cfg, silence)]

    def continue_audio(
        self,
        waveforms: Sequence[np.ndarray],
        sample_rate: int,
        seconds: float = 5.0,
        sampling: SamplingConfig | None = None,
        silence_stop_seconds: float | None = None,
        silence: SilenceDetector | None = None,
        include_prompt: bool = False,
    ) -> list[TaskOutput]:
        """Continue each recording for up to `seconds` (or until the model closes the span)."""
        codes = self.encode(waveforms, sample_rate)
        prompts = [self.continuation_ids(c) for c in codes]
        frames = self._frames(seconds)
        assert frames is not None
        k = self.vocab.num_codebooks
        cfg = self._audio_cfg(frames * k + 1, sampling or TTS_SAMPLING, seconds, silence_stop_seconds)
        if cfg.silence_stop_frames is not None and silence is None:
            silence = self.silence_detector(calibration_audio=[(w, sample_rate) for w in waveforms])
        results = [self._audio_result(g, trim_silence=True) for g in self._run(prompts, cfg, silence)]
        if include_prompt:
            for r, c in zip(results, codes):
                if r.error is not None:
                    continue
                full = np.concatenate([c, r.extra["codes"]], axis=1)
                r.audio = self.decode(full)
        return results

    def continuation_ids(self, codes: np.ndarray) -> np.ndarray:
        """Continuation prompt; built from ids directly, so it works without a text tokenizer."""
        if self.tokenizer is not None:
            return P.continuation_prompt(self.tokenizer, codes)
        v = self.vocab
        return np.concatenate([[v.bos_id, v.audio_start_id], v.codes_to_ids(np.asarray(codes)[: v.num_codebooks])]).astype(np.int64)

    def s2st(
        self,
        waveforms: Sequence[np.ndarray],
        sample_rate: int,
        source_lang: str | Sequence[str | None] | None = None,
        source_texts: Sequence[str | None] | None = None,
        target_lang: str | None = None,
        max_new_tokens: int = TTS_MAX_NEW_TOKENS,
        sampling: SamplingConfig | None = None,
        max_seconds: float | None = None,
        silence_stop_seconds: float | None = None,
        silence: SilenceDetector | None = None,
        max_text_tokens: int | None = S2ST_MAX_TEXT_TOKENS,
    ) -> list[TaskOutput]:
        """Voice-preserving speech translation with a model fine-tuned on SODA's S2ST format (docs/soda.md#speech-to-speech-translation).

        Source language / source text / target language, when given, are forced into the prompt
        (`source_lang` one for all or one per item; the target language is forced only after a forced
        source text, as the sequence format puts it there). The output is held to the format by a span
        plan (source text, target text, target audio, then EOS), and a runaway text span is closed after
        `max_text_tokens` tokens so that the translation and the speech still come.
        """
        tok = self._need_tokenizer()
        codes = self.encode(waveforms, sample_rate)
        langs = [source_lang] * len(codes) if source_lang is None or isinstance(source_lang, str) else list(source_lang)
        texts = [None] * len(codes) if source_texts is None else list(source_texts)
        if len(langs) != len(codes) or len(texts) != len(codes):
            raise ValueError(f"{len(codes)} inputs but {len(langs)} source languages and {len(texts)} source texts")
        prompts = []
        for c, sl, st in zip(codes, langs, texts):
            tl = target_lang if (sl is not None and st is not None) else None
            prompts.append(P.s2st_prompt(tok, c, sl, st, tl))
        cfg = self._audio_cfg(max_new_tokens, sampling or TTS_SAMPLING, max_seconds, silence_stop_seconds)
        cfg = replace(cfg, stop_ids=(self.vocab.audio_end_id, self.vocab.eos_id), max_text_tokens=max_text_tokens)
        if cfg.silence_stop_frames is not None and silence is None:
            silence = self.silence_detector(calibration_audio=[(w, sample_rate) for w in waveforms])
        # Prompts that force different amounts differ in the spans still to come: decode them by plan.
        by_plan: dict[tuple[str, ...], list[int]] = {}
        for i, prompt in enumerate(prompts):
            by_plan.setdefault(s2st_plan(prompt, self.vocab), []).append(i)
        gens: list = [None] * len(prompts)
        for plan, idx in by_plan.items():
            for i, g in zip(idx, self._run([prompts[i] for i in idx], replace(cfg, span_plan=plan), silence)):
                gens[i] = g
        results = []
        for prompt, g in zip(prompts, gens):
            if isinstance(g, ItemFailed):
                results.append(TaskOutput(audio=np.zeros(0, np.float32), stop_reason=STOP_ERROR, error=g.reason))
                continue
            out = P.parse_s2st(tok, np.concatenate([prompt, np.asarray(g.tokens, dtype=np.int64)]))
            codes_out = out.target_codes if out.target_codes is not None else np.zeros((self.vocab.num_codebooks, 0), np.int64)
            if g.stop_reason == STOP_SILENCE and g.trailing_silence:
                codes_out = codes_out[:, : max(0, codes_out.shape[1] - g.trailing_silence)]
            results.append(
                TaskOutput(
                    text=out.target_text,
                    audio=self.decode(codes_out),
                    stop_reason=g.stop_reason,
                    new_tokens=len(g.tokens),
                    audio_frames=int(codes_out.shape[1]),
                    extra={"source_lang": out.source_lang, "source_text": out.source_text, "target_lang": out.target_lang},
                )
            )
        return results

    def _audio_cfg(
        self, max_new_tokens: int, sampling: SamplingConfig, max_seconds: float | None, silence_stop_seconds: float | None
    ) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            stop_ids=(self.vocab.audio_end_id,),
            max_audio_frames=self._frames(max_seconds),
            silence_stop_frames=self._frames(silence_stop_seconds),
            span_plan=("audio",),
        )


def s2st_plan(prompt: np.ndarray, vocab: Vocab) -> tuple[str, ...]:
    """The spans an S2ST prompt still needs: its open span, then the rest of (text, text, audio)."""
    ids = np.asarray(prompt, dtype=np.int64)
    if ids[-1] == vocab.audio_start_id:
        return ("audio",)
    source_end = int(np.flatnonzero(ids == vocab.audio_end_id)[0])
    opened = int((ids[source_end:] == vocab.text_start_id).sum())
    return ("text",) * (3 - opened) + ("audio",)
