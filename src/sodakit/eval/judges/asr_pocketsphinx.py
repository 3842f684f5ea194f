"""Offline ASR judge: PocketSphinx with the US-English acoustic model, LM and CMUdict bundled in the
`pocketsphinx` pip package; or, as `pocketsphinx:LM.arpa`, with a language model of the domain's text
instead of the bundled one (`sodakit.eval.judges.judge_lm` builds one).

This is a fully offline stand-in for the paper's Whisper-large-v3 judge. Its absolute WER is far
higher (a 2010s GMM-HMM with a small trigram LM), so numbers it produces are NOT comparable to
published ones; they are useful for relative comparisons between checkpoints evaluated the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sodakit.eval.judges._audio import resample
from sodakit.eval.judges.judge_lm import arpa_vocabulary
from sodakit.fileio import sha256_file

SAMPLE_RATE = 16_000  # the bundled en-us acoustic model is trained on 16 kHz audio
MIN_SAMPLES = 410  # one 25.625 ms analysis window at 16 kHz; the decoder errors on less


class PocketSphinxASR:
    name = "pocketsphinx-en-us"
    comparable_to_paper = False

    def __init__(self, lm: str | Path | None = None) -> None:
        from pocketsphinx import Decoder

        self.lm = Path(lm) if lm else None
        options = {}
        if self.lm is not None:
            _check_lm(self.lm)
            options["lm"] = str(self.lm)
            self.name = "pocketsphinx-en-us+lm"
        # loglevel FATAL: the decoder otherwise prints hundreds of INFO lines per utterance to stderr.
        try:
            self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **options)
        except RuntimeError as e:  # PocketSphinx says only "Failed to initialize decoder"
            raise ValueError(f"asr judge pocketsphinx: could not load the language model {self.lm} ({e}); "
                             "expected an ARPA file such as sodakit.eval.judges.judge_lm writes") from e

    def describe(self) -> dict:
        lm = ({"lm": str(self.lm), "lm_sha256": sha256_file(self.lm)} if self.lm is not None
              else {"lm": "en-us.lm.bin (bundled)"})
        return {
            "judge": self.name,
            "kind": "asr",
            "model": "pocketsphinx bundled en-us (acoustic model, cmudict-en-us.dict) with " + (
                "a language model of the domain's text" if self.lm is not None else "its bundled en-us.lm.bin"),
            **lm,
            "pocketsphinx_version": _version(),
            "sample_rate": SAMPLE_RATE,
            "comparable_to_paper": self.comparable_to_paper,
            "note": "offline stand-in for Whisper-large-v3; WER not comparable to published numbers",
        }

    def transcribe(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Transcribe each waveform (float in [-1, 1], or integer PCM; [T] or [T, C]) independently: a
        waveform's transcript is the same whatever was transcribed before it."""
        out: list[str] = []
        for i, wav in enumerate(waveforms):
            x = resample(wav, sample_rate, SAMPLE_RATE, where=f"waveform {i}")
            if x.size < MIN_SAMPLES:  # shorter than one analysis frame: nothing to recognise
                out.append("")
                continue
            pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            # The feature front end adapts its cepstral mean and noise estimate utterance to utterance;
            # reset it, or a transcript would depend on the utterances decoded before it (their order,
            # the batch, an eval `limit`).
            self._decoder.reinit_feat()
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, no_search=False, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
            out.append(hyp.hypstr.strip() if hyp is not None else "")
        return out


def _check_lm(path: Path) -> None:
    """A clear error for an LM the decoder would refuse or silently shrink: missing file, not ARPA, or
    words the bundled pronunciation dictionary does not hold (the decoder drops those without a word)."""
    if not path.is_file():
        raise ValueError(f"asr judge pocketsphinx: language model {path} does not exist (expected an ARPA file)")
    words = arpa_vocabulary(path)
    import pocketsphinx

    known = set()
    with open(Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            known.add(line.split(" ", 1)[0])
    missing = sorted(set(words) - known)
    if missing:
        raise ValueError(f"asr judge pocketsphinx: {len(missing)} word(s) of {path} are not in PocketSphinx's "
                         f"pronunciation dictionary, e.g. {missing[:10]}; leave them out of the LM's text")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pocketsphinx")
    except PackageNotFoundError:  # imported from a source tree, not installed
        return "unknown"
