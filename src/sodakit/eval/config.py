"""Every setting of an evaluation run in one typed config: `sodakit eval key=value ...` and `evaluate()`.

The results JSON records it (`settings`, with the protocol's defaults resolved), so a run's numbers
always travel with what made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sodakit.config import ConfigError, check_ranges, to_dict
from sodakit.device import DTYPES
from sodakit.eval.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
from sodakit.eval.spans import AudioSelection
from sodakit.generate.tasks import S2ST_MAX_TEXT_TOKENS, TTS_MAX_NEW_TOKENS, TTS_SAMPLING
from sodakit.model.bundle import BACKENDS

CODEBOOK_CHOICES = ("all", "semantic")
CONTROLS = ("none", "permute-codebooks")


@dataclass
class EvalConfig:
    # --- what to evaluate
    model: str = ""  # sodakit checkpoint / run directory, Hugging Face causal LM directory or hub id
    tasks: list[str] = field(default_factory=list)  # see `sodakit eval --list`
    data: dict[str, str] = field(default_factory=dict)  # task -> data location (see `sodakit eval --list`)
    protocol: str = DEFAULT_PROTOCOL  # soda: the SODA authors' rules; sodakit: sodakit's own
    # --- how to open the model
    backend: str = "auto"  # sodakit | transformers (any Hugging Face causal LM) | auto
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda[:i]; the one used is printed and recorded
    dtype: str = "float32"  # float32 | bfloat16 | float16 (CUDA only)
    tokenizer: str | None = None  # tokenizer.json instead of the model's
    codec: str | None = None  # codec for spoken tasks; default: the one recorded with the model
    allow_codec_mismatch: bool = False  # score with a codec whose config hash differs from the model's
    # --- scoring
    limit: int | None = None  # only the first N readable items of each task
    batch_size: int = 8  # sequences per forward pass (scores do not depend on it)
    input_codebooks: str | int = "all"  # audio codebooks put in the prompt: all, semantic or the first k
    score_codebooks: str | int = "all"  # audio codebooks scored: all, semantic or the first k of the input
    control: str = "none"  # none | permute-codebooks: a negative control, spoken tasks should fall to chance
    # val_nll window in tokens; 0: the model's positions, at most SODA's 4096. A model trained on shorter
    # windows than its positions allow (the demo: 512 of 2048) is scored out of distribution beyond them.
    nll_window: int = 0
    # --- generation tasks (asr, asr_fewshot, tts, s2st)
    asr_judge: str = "pocketsphinx"  # or whisper:/local/whisper-large-v3
    speaker_judge: str = "classical"  # or wavlm:/local/wavlm-xvector-dir
    shots: int = 3  # shots of asr_fewshot (from the dev set)
    asr_max_new_tokens: int | None = None  # None: the protocol's (soda 200, sodakit 448)
    tts_max_new_tokens: int = TTS_MAX_NEW_TOKENS
    s2st_temperature: float = TTS_SAMPLING.temperature  # 0 = greedy
    s2st_top_p: float = TTS_SAMPLING.top_p
    s2st_max_new_tokens: int = TTS_MAX_NEW_TOKENS
    s2st_max_text_tokens: int = S2ST_MAX_TEXT_TOKENS  # closes a runaway source/target text span
    s2st_force_source_lang: bool = False  # put each item's source language into the prompt
    save_audio: str | None = None  # write generated audio (tts, s2st) here
    seed: int | None = None  # sampling seed and shot selection; None: the protocol's (soda 42, sodakit 0)
    # --- output
    out: str | None = "eval_results.json"  # results JSON; None: only return the results
    log_items: bool = False  # per-item records (next to `out` as <stem>.items/<task>.jsonl)
    quiet: bool = False  # no progress output (per-task result lines still print)

    def __post_init__(self) -> None:
        items = [self.tasks] if isinstance(self.tasks, str) else self.tasks
        self.tasks = [t.strip() for item in items for t in item.split(",") if t.strip()]  # --tasks a,b
        try:
            get_protocol(self.protocol)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.control not in CONTROLS:
            raise ConfigError(f"control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        self.input_codebooks = _codebooks("input_codebooks", self.input_codebooks)
        self.score_codebooks = _codebooks("score_codebooks", self.score_codebooks)
        check_ranges(self, positive=("limit", "batch_size", "shots", "asr_max_new_tokens", "s2st_max_new_tokens",
                                     "s2st_max_text_tokens"), non_negative=("s2st_temperature", "nll_window"))
        if self.tts_max_new_tokens < 8:
            raise ConfigError(f"tts_max_new_tokens must be >= 8 (one audio frame), got {self.tts_max_new_tokens}")
        if not 0 < self.s2st_top_p <= 1:
            raise ConfigError(f"s2st_top_p must be in (0, 1], got {self.s2st_top_p}")

    @property
    def rules(self) -> Protocol:
        return get_protocol(self.protocol)

    @property
    def rng_seed(self) -> int:
        return self.rules.default_seed if self.seed is None else int(self.seed)

    @property
    def asr_budget(self) -> int:
        return self.rules.asr_max_new_tokens if self.asr_max_new_tokens is None else int(self.asr_max_new_tokens)

    @property
    def audio(self) -> AudioSelection:
        return AudioSelection(self.input_codebooks, self.score_codebooks)

    def command_line(self) -> list[str]:
        """The `sodakit eval key=value ...` command that reproduces this config (its non-default fields)."""
        default, mine = to_dict(EvalConfig()), to_dict(self)
        args = []
        for key, value in mine.items():
            if value == default[key]:
                continue
            if isinstance(value, dict):
                args += [f"{key}.{k}={v}" for k, v in value.items()]
            elif isinstance(value, list):
                args.append(f"{key}=[{','.join(map(str, value))}]")
            elif value is None or isinstance(value, bool):
                args.append(f"{key}={str(value).lower() if value is not None else 'null'}")
            else:
                args.append(f"{key}={value}")
        return ["sodakit", "eval", *args]

    def settings(self) -> dict:
        """The results JSON's record of this config: every field, with the protocol's defaults resolved."""
        return to_dict(self) | {"protocol": self.rules.describe(), "seed": self.rng_seed,
                                "asr_max_new_tokens": self.asr_budget}


def _codebooks(key: str, value: str | int) -> str | int:
    if value in CODEBOOK_CHOICES:
        return value
    try:
        k = int(value)
    except ValueError:
        raise ConfigError(f"{key}: expected all, semantic or an integer, got {value!r}") from None
    if k < 1:
        raise ConfigError(f"{key}: codebook count must be >= 1, got {k}")
    return k
