"""Evaluation protocols: the rules that decide how the same scores become the reported numbers.

Two protocols, chosen with `sodakit eval --protocol` (default `soda`):

- `soda`: the SODA authors' evaluation scripts, rule for rule, so numbers sit next to the published
  table. Pair tasks count a pair right only when the positive scores strictly higher (a tie is wrong)
  and average over all pairs; text pairs are scored as given (no strip) and sBLIMP transcriptions are
  lowercased; SALMon's headline is the micro average over all items; ASR samples (temperature 0.5,
  top-p 0.8, at most 200 new tokens, no modality constraint, stop only at <|text_end|>), drops special
  tokens from the output, normalises with the authors' rule (`normalize_soda_asr`) and N-shot prompts
  hold the shots' transcripts normalised the same way, shots drawn by shuffling the shot list in file
  order with the seed (42 by default); TTS WER is seed-tts-eval's mean of per-utterance WER after its
  own normalisation (`normalize_seedtts`).
- `sodakit`: the project's own choices. Ties count half; sWUGGY/sBLIMP accuracy averages the voices of a
  ZeroSpeech pair id first; text pairs are stripped; SALMon's headline is the macro average of parts;
  ASR is greedy with a text-only constraint (448 new tokens, stop at <|text_end|> or EOS), shots sorted by
  id before the seeded shuffle and kept verbatim; WER is a corpus WER after `normalize_text`.

Whatever the protocol, every task also reports the other protocol's numbers under their own names
(`accuracy_strict`, `accuracy_ties_half`, `accuracy_grouped_ties_half`, `wer_corpus`, ...), and every
result records the protocol name and its rules.

Two places keep sodakit's behaviour under both protocols because the authors' code is wrong there:
scoring the first k < 8 codebooks reads the flat span frame-major (their `reshape(8, -1)[:k]` keeps the
first k/8 of the frames instead), and the S / S+A documents carry no transcript at all (their regex
filter, without DOTALL, leaves multi-line transcripts in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sodakit.eval.metrics import (
    NORMALIZATION_VERSION,
    TIE_VALUE,
    TIE_WRONG,
    normalize_seedtts,
    normalize_soda_asr,
    normalize_text,
    utterance_wers,
    wer_details,
)
from sodakit.generate.tasks import ASR_MAX_NEW_TOKENS

# Normalisers by the name recorded in results.
NORMALIZERS: dict[str, tuple[Callable[[str], str], str]] = {
    "soda-asr-norm": (normalize_soda_asr, "delete . , ! ? ; : \" ' - ( ) [ ] { } and typographic quotes (no space "
                                          "left), collapse whitespace, strip, lowercase; everything else kept"),
    "seedtts-en-norm": (normalize_seedtts, "delete ASCII and CJK punctuation except the apostrophe, lowercase"),
    NORMALIZATION_VERSION: (normalize_text, "NFKC, lowercase, drop apostrophes, other punctuation/symbols -> "
                                            "space, collapse whitespace; digits kept"),
}


@dataclass(frozen=True)
class Protocol:
    name: str
    # Pair tasks
    tie_value: float  # what a tie counts
    pair_average: str  # "pairs" (plain mean) or "groups" (mean over pair ids of the mean over voices)
    strip_pair_text: bool
    lowercase_sblimp_text: bool
    salmon_headline: str  # "micro" or "macro"
    # ASR
    asr_temperature: float
    asr_top_p: float
    asr_max_new_tokens: int
    asr_constrain: bool  # modality constraint: only text ids inside the transcript span
    asr_stop_at_eos: bool
    asr_normalizer: str
    normalize_shots: bool
    shot_order: str  # "file" (the shot list's own order) or "id" (sorted by utterance id)
    # TTS
    tts_wer: str  # "mean_utterance" or "corpus"
    tts_normalizer: str
    default_seed: int

    def describe(self) -> dict:
        return {
            "name": self.name,
            "pairs": {"tie_counts": self.tie_value, "average": self.pair_average,
                      "strip_text": self.strip_pair_text, "lowercase_sblimp_text": self.lowercase_sblimp_text,
                      "salmon_headline": self.salmon_headline},
            "asr": {"temperature": self.asr_temperature, "top_p": self.asr_top_p,
                    "max_new_tokens": self.asr_max_new_tokens, "modality_constraint": self.asr_constrain,
                    "stop_at_eos": self.asr_stop_at_eos, "normalizer": self.asr_normalizer,
                    "normalize_shots": self.normalize_shots, "shot_order": self.shot_order},
            "tts": {"wer": self.tts_wer, "normalizer": self.tts_normalizer},
            "default_seed": self.default_seed,
        }

    def normalizer(self, name: str) -> Callable[[str], str]:
        return NORMALIZERS[name][0]

    def tts_headline_wer(self, targets: Sequence[str], transcripts: Sequence[str]) -> float:
        """The TTS WER this protocol reports: the mean of per-utterance WERs (seed-tts-eval) or a corpus WER."""
        if self.tts_wer == "mean_utterance":
            return float(np.mean(utterance_wers(targets, transcripts, NORMALIZERS[self.tts_normalizer][0])))
        return wer_details(targets, transcripts, normalizer=NORMALIZERS[self.tts_normalizer][0]).wer


SODA = Protocol(
    name="soda", tie_value=TIE_WRONG, pair_average="pairs", strip_pair_text=False, lowercase_sblimp_text=True,
    salmon_headline="micro", asr_temperature=0.5, asr_top_p=0.8, asr_max_new_tokens=200, asr_constrain=False,
    asr_stop_at_eos=False, asr_normalizer="soda-asr-norm", normalize_shots=True, shot_order="file",
    tts_wer="mean_utterance", tts_normalizer="seedtts-en-norm", default_seed=42,
)
SODAKIT = Protocol(
    name="sodakit", tie_value=TIE_VALUE, pair_average="groups", strip_pair_text=True, lowercase_sblimp_text=False,
    salmon_headline="macro", asr_temperature=0.0, asr_top_p=1.0, asr_max_new_tokens=ASR_MAX_NEW_TOKENS, asr_constrain=True,
    asr_stop_at_eos=True, asr_normalizer=NORMALIZATION_VERSION, normalize_shots=False, shot_order="id",
    tts_wer="corpus", tts_normalizer=NORMALIZATION_VERSION, default_seed=0,
)
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (SODA, SODAKIT)}
DEFAULT_PROTOCOL = SODA.name


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
