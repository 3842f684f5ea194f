"""The typed configs of `sodakit generate asr|tts|continue|s2st` (key=value on the command line).

Every task opens a model the same way (`GenerateConfig`); the tasks that write audio share the
guards against runaway generation (`AudioOutputConfig`). Defaults are the task's decoding protocol:
ASR greedy, the others SODA's TTS sampling (`sodakit.generate.tasks.TTS_SAMPLING`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sodakit.config import ConfigError, check_ranges
from sodakit.generate.sampling import SamplingConfig
from sodakit.generate.tasks import (
    ASR_MAX_NEW_TOKENS,
    DEFAULT_SILENCE,
    S2ST_MAX_TEXT_TOKENS,
    SILENCE_DETECTORS,
    TTS_MAX_NEW_TOKENS,
    TTS_SAMPLING,
)
from sodakit.tokens.templates import DEFAULT_TARGET_LANGUAGE


def _check_silence_detector(name: str) -> None:
    if name not in SILENCE_DETECTORS:
        raise ConfigError(f"silence_detector must be one of {', '.join(SILENCE_DETECTORS)}, got {name!r}")


@dataclass
class GenerateConfig:
    model: str = ""  # checkpoint, run directory (newest checkpoint) or Hugging Face Qwen3 directory / hub id
    codec: str | None = None  # codec directory or hub id (default: the one recorded with the model)
    tokenizer: str | None = None  # tokenizer.json (default: the checkpoint's)
    allow_codec_mismatch: bool = False  # use a codec whose hash differs from the recorded one
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda[:i]; the one used is printed
    dtype: str = "float32"  # float32 | bfloat16 | float16 (CUDA only)
    batch_size: int = 8  # prompts decoded together
    sampling: SamplingConfig = field(default_factory=lambda: replace(TTS_SAMPLING))
    quiet: bool = False  # no progress output

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is required: a checkpoint, run directory or Hugging Face Qwen3 directory")
        check_ranges(self, positive=("batch_size",))


@dataclass
class AudioOutputConfig(GenerateConfig):
    # Token budget per item; clamped to the model's context (max_seq_len - prompt length, with a warning)
    # and, for TTS, to what max_seconds needs.
    max_new_tokens: int = TTS_MAX_NEW_TOKENS
    max_seconds: float | None = None  # duration cap of the generated audio
    silence_stop_seconds: float | None = None  # stop after this much trailing silence
    silence_detector: str = DEFAULT_SILENCE  # what counts as silence: codes, repeat or energy
    output: str | None = None  # output WAV (one item)
    output_dir: str | None = None  # output directory (several items)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, positive=("max_new_tokens", "max_seconds", "silence_stop_seconds"))
        _check_silence_detector(self.silence_detector)


@dataclass
class ASRConfig(GenerateConfig):
    audio: list[str] = field(default_factory=list)  # audio files
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # greedy
    max_new_tokens: int = ASR_MAX_NEW_TOKENS
    shots: str | None = None  # TSV of `audio_path<TAB>transcript` examples put before each prompt
    output: str | None = None  # .jsonl ({audio, text}) or .txt (one transcript a line); default stdout

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, positive=("max_new_tokens",))
        if not self.audio:
            raise ConfigError("give the audio files to transcribe")


@dataclass
class TTSConfig(AudioOutputConfig):
    text: str | None = None  # the text to speak
    text_file: str | None = None  # one text per line; outputs go to output_dir as 0000.wav, ...
    voice_audio: str | None = None  # voice prompt audio
    voice_text: str | None = None  # transcript of the voice prompt

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.text is None) == (self.text_file is None):
            raise ConfigError("give exactly one of text=... (--text) or text_file=... (--text-file)")
        if (self.voice_audio is None) != (self.voice_text is None):
            raise ConfigError("--voice-audio and --voice-text go together (the prompt audio and its transcript)")


@dataclass
class ContinueConfig(GenerateConfig):
    audio: list[str] = field(default_factory=list)  # prompt audio files
    seconds: float = 5.0  # seconds to generate (cap)
    silence_stop_seconds: float | None = None
    silence_detector: str = DEFAULT_SILENCE
    include_prompt: bool = False  # write prompt + continuation
    output: str | None = None  # output WAV (one input)
    output_dir: str | None = None  # output directory (several inputs): <stem>.wav

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, positive=("seconds", "silence_stop_seconds"))
        if not self.audio:
            raise ConfigError("give the audio files to continue")
        _check_silence_detector(self.silence_detector)


@dataclass
class S2STConfig(AudioOutputConfig):
    audio: list[str] = field(default_factory=list)  # source audio files
    manifest: str | None = None  # S2ST manifest (TSV/JSONL) to translate as a whole (output_dir)
    source_lang: str | None = None  # force the source language tag (e.g. fr); with a manifest, its own
    source_text: str | None = None  # force the source transcript (single input)
    target_lang: str = DEFAULT_TARGET_LANGUAGE  # target language tag when forcing
    max_text_tokens: int = S2ST_MAX_TEXT_TOKENS  # close a runaway text span after this many tokens
    limit: int | None = None  # first N manifest items only

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, positive=("max_text_tokens", "limit"))
        if not self.audio and not self.manifest:
            raise ConfigError("give source audio files or manifest=... (--manifest)")
        if self.source_text is not None and len(self.audio) != 1:
            raise ConfigError("--source-text is for a single input")
