"""sodakit's own codec: fitted on the user's audio on a CPU in minutes, Mimi-shaped, no pretrained weights.

Representation. Every 10 ms the audio (16 kHz) gets a 40-band log-mel spectrum, turned into
`num_cepstra` cepstral coefficients (DCT-II; c0 is loudness, low orders the spectral envelope that carries
phonetic content). An 80 ms frame (12.5 Hz, as Mimi) stacks its 8 sub-frames.

Codes per frame (K = 8 codebooks of 2048 by default):
- codebook 0, *content*: k-means cluster of speaker-normalised envelope features (per-utterance mean and
  variance normalised c1..c12, stacked over the frame). Speaker and channel are normalised away, so the
  same sound from different voices lands in the same cluster, the role Mimi's distilled semantic
  codebook plays.
- codebooks 1..K-1, *acoustic residual*: the cepstra, per-utterance mean normalised (channel removed, the
  fit set's mean put back at decoding) and standardised, minus the mean of the frame's content cluster;
  the residual is vector-quantised group by group over the cepstral index (codebook 1 quantises the c0
  trajectory of the 8 sub-frames, codebook 2 that of c1, ..., the last ones groups of higher orders).
  Splitting by order (a product quantiser over the residual) spends the bits where intelligibility is
  and generalises to unseen voices far better than a residual VQ over the whole 8 x 20 stack (design
  experiments, README-audio: real LibriSpeech resynthesis WER 76% with that RVQ, 34% with the split).
Decoding sums the selected centroids, inverts the cepstra to a smooth log-mel envelope, maps it to a
linear magnitude spectrogram and recovers phase with (fast) Griffin-Lim from a fixed seed. The result is
intelligible but sounds whispered: no pitch is coded.

Fitting is k-means (a few Lloyd iterations per codebook) on the fit audio plus two vocal-tract-length
perturbed copies of it (`fit_warps`), which makes the codebooks cover voices the fit set lacks (measured
on real LibriSpeech after fitting on TTS voices only: resynthesis WER +22 -> +12 points). k-means sees
at most `max_fit_frames` frames, which bounds the fit time on large inputs.
Files: `sodakit_codec.json` (config, hash, fit summary) + `codec.safetensors` (centroids, statistics).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from sodakit.audio.codec import Codec, CodecError
from sodakit.audio.kmeans import kmeans, nearest
from sodakit.config import atomic_write_text, from_dict, to_dict
from sodakit.fileio import load_safetensors

FORMAT = "sodakit.offline_codec/1"
# The file that marks a directory as an offline codec.
OFFLINE_CONFIG_NAME = "sodakit_codec.json"
WEIGHTS_NAME = "codec.safetensors"
LOG_FLOOR = 1e-5  # magnitude floor before the log: ~-100 dB re full scale


@dataclass
class OfflineCodecConfig:
    sample_rate: int = 16000  # speech band; inputs at any rate are resampled
    frame_rate: float = 12.5  # Mimi's frame rate: 80 ms frames
    sub_frames: int = 8  # 10 ms analysis hops per frame
    n_fft: int = 512
    win_length: int = 400  # 25 ms Hann window, the usual speech analysis window
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float = 8000.0
    num_cepstra: int = 20  # envelope detail kept; higher orders are decoded as the fit set's mean
    content_cepstra: int = 12  # c1..c12 define the content clusters (c0, loudness, left out)
    num_codebooks: int = 8
    codebook_size: int = 2048
    # Cepstral orders per acoustic codebook (codebooks 1..K-1), contiguous from c0. Empty: derived from
    # num_codebooks and num_cepstra by `default_group_sizes`.
    group_sizes: list[int] = field(default_factory=list)
    # Vocal-tract-length perturbation of the fit data (Jaitly & Hinton 2013): extra copies of every fit
    # utterance analysed with filterbanks whose frequencies are scaled by these factors, so the codebooks
    # cover more voices than the fit set holds. Fit-time only; encoding always uses factor 1.
    # Measured: real LibriSpeech resynthesis WER +22 -> +12 points over the original (benchmarks/bench_codec.py).
    fit_warps: list[float] = field(default_factory=lambda: [0.9, 1.1])
    kmeans_iters: int = 8
    # k-means sees at most this many frames (a seeded subset; ~2.2 h of audio): bounds the fit time.
    max_fit_frames: int = 100_000
    seed: int = 0
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99  # "fast Griffin-Lim" (Perraudin et al. 2013)

    @property
    def hop(self) -> int:
        return self.samples_per_frame // self.sub_frames

    @property
    def samples_per_frame(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def resolved_groups(self) -> list[list[int]]:
        sizes = list(self.group_sizes) or default_group_sizes(self.num_codebooks - 1, self.num_cepstra)
        if len(sizes) != self.num_codebooks - 1:
            raise CodecError(f"group_sizes {sizes}: need one size per acoustic codebook ({self.num_codebooks - 1})")
        if any(s < 1 for s in sizes) or sum(sizes) > self.num_cepstra:
            raise CodecError(f"group_sizes {sizes}: sizes must be >= 1 and sum to <= num_cepstra={self.num_cepstra}")
        out, start = [], 0
        for s in sizes:
            out.append(list(range(start, start + s)))
            start += s
        return out

    def validate(self) -> None:
        if self.samples_per_frame % self.sub_frames or abs(self.sample_rate / self.frame_rate - self.samples_per_frame) > 1e-6:
            raise CodecError(f"frame of {self.sample_rate / self.frame_rate} samples does not split into {self.sub_frames} hops")
        if not 1 <= self.content_cepstra < self.num_cepstra <= self.n_mels:
            raise CodecError("need 1 <= content_cepstra < num_cepstra <= n_mels")
        if self.num_codebooks < 1 or self.codebook_size < 2 or self.codebook_size > 65536:
            raise CodecError("num_codebooks >= 1 and 2 <= codebook_size <= 65536 (codes are stored as uint16)")
        if self.win_length > self.n_fft or not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise CodecError("need win_length <= n_fft and 0 <= fmin < fmax <= sample_rate / 2")
        self.resolved_groups()


def default_group_sizes(groups: int, num_cepstra: int) -> list[int]:
    """Split c0..c(N-1) into `groups` contiguous groups, low orders alone, higher ones growing, so that
    each group carries about the same share of 1/(1+order), a rough importance of cepstral orders."""
    if groups <= 0:
        return []
    if groups >= num_cepstra:
        return [1] * num_cepstra if groups == num_cepstra else [1] * groups  # validated later
    weights = 1.0 / (1.0 + np.arange(num_cepstra))
    cum = np.cumsum(weights) / weights.sum()
    bounds, start = [], 0
    for g in range(1, groups):
        end = int(np.searchsorted(cum, g / groups, side="left")) + 1
        end = min(max(end, start + 1), num_cepstra - (groups - g))
        bounds.append(end - start)
        start = end
    bounds.append(num_cepstra - start)
    return bounds


def vtlp(freqs: np.ndarray, alpha: float, nyquist: float, f_hi: float = 4800.0) -> np.ndarray:
    """Piecewise-linear frequency warp of Jaitly & Hinton (2013): f * alpha up to a knee, then a line to
    Nyquist, so the warped axis still ends at Nyquist and stays increasing."""
    if alpha == 1.0:
        return freqs
    knee = f_hi * min(alpha, 1.0) / alpha
    high = nyquist - (nyquist - f_hi * min(alpha, 1.0)) / (nyquist - knee) * (nyquist - freqs)
    return np.where(freqs <= knee, freqs * alpha, high)


def mel_filterbank(cfg: OfflineCodecConfig, warp: float = 1.0) -> torch.Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1]; `warp` scales their frequencies (VTLP)."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = vtlp(mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2)), warp, cfg.sample_rate / 2)
    bins = np.fft.rfftfreq(cfg.n_fft, 1.0 / cfg.sample_rate)
    fb = np.zeros((cfg.n_mels, len(bins)))
    for i in range(cfg.n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.maximum(0.0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    return torch.tensor(fb, dtype=torch.float32)


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II as a matrix: cepstra = logmel @ D.T, logmel = cepstra @ D."""
    k = np.arange(n)[:, None]
    m = np.arange(n)[None, :]
    d = np.cos(np.pi * k * (2 * m + 1) / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return torch.tensor(d, dtype=torch.float32)


class Frontend:
    """Cepstra of padded batches, sub-frame j centred on sample hop * j + hop / 2 of each item."""

    def __init__(self, cfg: OfflineCodecConfig):
        self.cfg = cfg
        self.window = torch.hann_window(cfg.win_length)
        self.fb = mel_filterbank(cfg)
        self.dct = dct_matrix(cfg.n_mels)
        # Left padding that centres the window (placed mid-frame by torch.stft) on hop * j + hop / 2.
        self.left = cfg.n_fft // 2 - cfg.hop // 2

    def spectrum(self, wav: torch.Tensor, num_frames: int) -> torch.Tensor:
        """[B, T] zero-padded audio -> magnitude spectrogram [B, freq, sub_frames * num_frames].

        Sub-frames of an item read only its own samples and zeros after them, never a neighbour's, so
        codes do not depend on the batch."""
        cfg = self.cfg
        n_sub = cfg.sub_frames * num_frames
        total = cfg.hop * (n_sub - 1) + cfg.n_fft
        x = torch.nn.functional.pad(wav.float(), (self.left, max(0, total - self.left - wav.shape[1])))[:, :total]
        return torch.stft(x, cfg.n_fft, cfg.hop, cfg.win_length, self.window, center=False, return_complex=True).abs()

    def cepstra(self, wav: torch.Tensor, num_frames: int) -> torch.Tensor:
        """[B, T] zero-padded audio -> cepstra [B, sub_frames * num_frames, num_cepstra]."""
        return self.spectrum_cepstra(self.spectrum(wav, num_frames))

    def spectrum_cepstra(self, spec: torch.Tensor, fb: torch.Tensor | None = None) -> torch.Tensor:
        """Magnitudes [B, freq, n_sub] -> cepstra [B, n_sub, num_cepstra] through filterbank `fb` (default ours)."""
        logmel = torch.log(torch.einsum("mf,bft->btm", self.fb if fb is None else fb, spec) + LOG_FLOOR)
        return logmel @ self.dct[: self.cfg.num_cepstra].T

    def magnitude(self, cep: torch.Tensor) -> torch.Tensor:
        """Cepstra [T, C] -> linear magnitude spectrogram [freq, T] of the smooth mel envelope."""
        mel = torch.exp(cep @ self.dct[: cep.shape[1]]) - LOG_FLOOR
        weights = self.fb.sum(0).clamp(min=1e-3)
        return ((self.fb.T @ mel.clamp(min=0).T) / weights[:, None]).clamp(min=0)

    def griffin_lim(self, mag: torch.Tensor, seed: int) -> np.ndarray:
        """Waveform of a magnitude spectrogram [freq, T], phase by fast Griffin-Lim from a fixed seed."""
        # Hundreds of small FFTs: extra intra-op threads only add synchronisation (measured 10x slower
        # with 2 threads on a busy 2-core machine), so run them on one and restore the setting.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._griffin_lim(mag, seed)
        finally:
            torch.set_num_threads(threads)

    def _griffin_lim(self, mag: torch.Tensor, seed: int) -> np.ndarray:
        cfg = self.cfg
        length = cfg.hop * (mag.shape[1] - 1)
        args = dict(n_fft=cfg.n_fft, hop_length=cfg.hop, win_length=cfg.win_length, window=self.window)
        g = torch.Generator().manual_seed(seed)
        angles = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=g))
        x = torch.istft(mag * angles, length=length, **args)
        prev = torch.zeros_like(angles)
        for _ in range(cfg.griffin_lim_iters):
            spec = torch.stft(x, return_complex=True, **args)
            new = spec / spec.abs().clamp(min=1e-8)
            accel = new + cfg.griffin_lim_momentum * (new - prev)
            prev = new
            x = torch.istft(mag * accel / accel.abs().clamp(min=1e-8), length=length, **args)
        # istft frames are centred on hop * j; analysis centred them on hop * j + hop / 2.
        return torch.nn.functional.pad(x, (cfg.hop // 2, 0)).numpy()


def _stack(x: torch.Tensor, sub: int) -> torch.Tensor:
    """[n_sub, C] -> [frames, sub * C] (sub-frame-major within a frame)."""
    return x.reshape(-1, sub * x.shape[-1])


class OfflineCodec(Codec):
    name = "sodakit-offline"

    def __init__(self, config: OfflineCodecConfig, tensors: dict[str, torch.Tensor], source: str | None = None,
                 fit_summary: dict | None = None):
        config.validate()
        self.config = config
        self.sample_rate = int(config.sample_rate)
        self.frame_rate = float(config.frame_rate)
        self.num_codebooks = int(config.num_codebooks)
        self.codebook_size = int(config.codebook_size)
        self.semantic_codebooks = [0]
        self.source = source
        self.fit_summary = fit_summary or {}
        self.groups = config.resolved_groups()
        self.frontend = Frontend(config)
        need = {"content_centroids", "content_means", "mean", "std", "cepstral_mean"} | {
            f"codebook_{k}" for k in range(1, self.num_codebooks)
        }
        missing = need - set(tensors)
        if missing:
            raise CodecError(f"{source}: offline codec weights lack {sorted(missing)}")
        self.t = {k: v.float().contiguous() for k, v in tensors.items()}
        self._hash = self._compute_hash()

    # --- identity --------------------------------------------------------------------------------------
    def _compute_hash(self) -> str:
        h = hashlib.sha256(json.dumps({"format": FORMAT, "config": to_dict(self.config)}, sort_keys=True).encode())
        for name in sorted(self.t):
            tensor = self.t[name]
            h.update(f"{name}:{tuple(tensor.shape)}".encode())
            h.update(tensor.numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def config_hash(self) -> str:
        return self._hash

    # --- features -------------------------------------------------------------------------------------
    def _features(self, cep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One item's cepstra [n_sub, C] -> (content [F, sub * cc], acoustic [F, sub * C] standardised)."""
        cfg = self.config
        body = cep[:, 1 : 1 + cfg.content_cepstra]
        content = (body - body.mean(0)) / (body.std(0, unbiased=False) + 1e-5)
        acoustic = cep.clone()
        acoustic[:, 1:] -= acoustic[:, 1:].mean(0)
        acoustic = (_stack(acoustic, cfg.sub_frames) - self.t["mean"]) / self.t["std"]
        return _stack(content, cfg.sub_frames), acoustic

    def _group_index(self, group: list[int]) -> torch.Tensor:
        c = self.config.num_cepstra
        return torch.tensor([s * c + g for s in range(self.config.sub_frames) for g in group])

    # --- Codec ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _encode_batch(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        fmax = self.num_frames(int(lengths.max()))
        cep = self.frontend.cepstra(wav, fmax)
        codes = torch.zeros(wav.shape[0], self.num_codebooks, fmax, dtype=torch.long)
        for b, n in enumerate(lengths.tolist()):
            f = self.num_frames(n)
            codes[b, :, :f] = self._encode_item(cep[b, : f * self.config.sub_frames])
        return codes

    def _encode_item(self, cep: torch.Tensor) -> torch.Tensor:
        content, acoustic = self._features(cep)
        out = torch.empty(self.num_codebooks, content.shape[0], dtype=torch.long)
        out[0], _ = nearest(content, self.t["content_centroids"])
        residual = acoustic - self.t["content_means"][out[0]]
        for k, group in enumerate(self.groups, start=1):
            ix = self._group_index(group)
            out[k], _ = nearest(residual[:, ix].contiguous(), self.t[f"codebook_{k}"])
        return out

    @torch.inference_mode()
    def _decode_batch(self, codes: torch.Tensor, frames: torch.Tensor) -> list[np.ndarray]:
        cfg = self.config
        out = []
        for b, f in enumerate(frames.tolist()):
            if f == 0:
                out.append(np.zeros(0, np.float32))
                continue
            c = codes[b, :, :f]
            x = self.t["content_means"][c[0]].clone()
            for k, group in enumerate(self.groups, start=1):
                x[:, self._group_index(group)] += self.t[f"codebook_{k}"][c[k]]
            cep = (x * self.t["std"] + self.t["mean"]).reshape(-1, cfg.num_cepstra)
            cep[:, 1:] += self.t["cepstral_mean"][1:]
            # One more sub-frame so istft covers the whole last hop; repeat the last envelope.
            mag = self.frontend.magnitude(torch.cat([cep, cep[-1:]]))
            out.append(self.frontend.griffin_lim(mag, seed=cfg.seed)[: f * self.samples_per_frame])
        return out

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{WEIGHTS_NAME}.tmp"
        save_file({k: v.contiguous() for k, v in self.t.items()}, str(tmp), metadata={"format": FORMAT})
        tmp.replace(directory / WEIGHTS_NAME)
        meta = {
            "format": FORMAT,
            "name": self.name,
            "config_hash": self.config_hash,
            "config": to_dict(self.config),
            "info": asdict(self.info()),
            "fit": self.fit_summary,
        }
        atomic_write_text(directory / OFFLINE_CONFIG_NAME, json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> OfflineCodec:
        directory = Path(directory)
        meta_path, weights = directory / OFFLINE_CONFIG_NAME, directory / WEIGHTS_NAME
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CodecError(f"{meta_path}: cannot read the offline codec config ({e})") from e
        if meta.get("format") != FORMAT:
            raise CodecError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        if not weights.is_file():
            raise CodecError(f"{weights}: missing (the codec directory is incomplete)")
        codec = cls(from_dict(OfflineCodecConfig, meta["config"]), load_safetensors(weights), source=str(directory),
                    fit_summary=meta.get("fit", {}))
        if meta.get("config_hash") != codec.config_hash:
            raise CodecError(f"{directory}: weights do not match the recorded config hash (files changed or corrupt)")
        return codec

    # --- fitting --------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, waveforms: Iterable[np.ndarray], config: OfflineCodecConfig | None = None,
            log=None) -> OfflineCodec:
        """Fit on mono float waveforms at `config.sample_rate` (an iterable: audio is not kept in memory)."""
        cfg = config or OfflineCodecConfig()
        cfg.validate()
        t0, c0 = time.perf_counter(), time.process_time()
        frontend = Frontend(cfg)
        # One spectrogram per utterance, analysed through the plain and the warped filterbanks.
        filterbanks = [frontend.fb] + [mel_filterbank(cfg, w) for w in cfg.fit_warps]
        ceps: list[torch.Tensor] = []
        seconds = 0.0
        utterances = 0
        for wav in waveforms:
            wav = np.asarray(wav, dtype=np.float32)
            if wav.ndim != 1 or wav.size == 0:
                raise CodecError(f"fit: expected non-empty mono waveforms, got shape {wav.shape}")
            frames = math.ceil(len(wav) / cfg.samples_per_frame)
            spec = frontend.spectrum(torch.from_numpy(wav)[None], frames)
            for fb in filterbanks:
                ceps.append(frontend.spectrum_cepstra(spec, fb)[0])
            seconds += len(wav) / cfg.sample_rate
            utterances += 1
        if not ceps:
            raise CodecError("fit: no audio")
        t_feat = time.perf_counter() - t0
        sub = cfg.sub_frames
        cepstral_mean = torch.cat(ceps[:: len(filterbanks)]).mean(0)  # of the real (unwarped) audio
        content, acoustic = [], []
        for cep in ceps:
            body = cep[:, 1 : 1 + cfg.content_cepstra]
            content.append(_stack((body - body.mean(0)) / (body.std(0, unbiased=False) + 1e-5), sub))
            a = cep.clone()
            a[:, 1:] -= a[:, 1:].mean(0)
            acoustic.append(_stack(a, sub))
        content_x, acoustic_x = torch.cat(content), torch.cat(acoustic)
        mean, std = acoustic_x.mean(0), acoustic_x.std(0, unbiased=False) + 1e-5
        acoustic_x = (acoustic_x - mean) / std
        n = len(content_x)
        if n > cfg.max_fit_frames:
            keep = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[: cfg.max_fit_frames]
            content_x, acoustic_x = content_x[keep], acoustic_x[keep]
        k = cfg.codebook_size
        tensors = {"mean": mean, "std": std, "cepstral_mean": cepstral_mean}
        tensors["content_centroids"] = kmeans(content_x, k, cfg.kmeans_iters, cfg.seed)
        a0, _ = nearest(content_x, tensors["content_centroids"])
        counts = torch.bincount(a0, minlength=k).clamp(min=1)[:, None].float()
        tensors["content_means"] = torch.zeros(k, acoustic_x.shape[1]).index_add_(0, a0, acoustic_x) / counts
        residual = acoustic_x - tensors["content_means"][a0]
        if log:
            log(f"features: {seconds / 3600:.2f} h, {n} frames in {t_feat:.1f}s; content codebook fitted")
        groups = cfg.resolved_groups()
        for kb, group in enumerate(groups, start=1):
            ix = torch.tensor([s * cfg.num_cepstra + g for s in range(sub) for g in group])
            part = residual[:, ix].contiguous()
            cb = kmeans(part, k, cfg.kmeans_iters, cfg.seed + kb)
            tensors[f"codebook_{kb}"] = cb
            if log:
                log(f"codebook {kb}/{len(groups)} (cepstra {group[0]}..{group[-1]}) fitted")
        summary = {
            "audio_hours": round(seconds / 3600, 4),
            "utterances": utterances,
            "fit_copies": len(filterbanks),
            "frames": n,
            "kmeans_frames": len(content_x),
            "underdetermined": len(content_x) < k,
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),  # all threads; wall time suffers on a busy machine
            "torch_threads": torch.get_num_threads(),
        }
        return cls(cfg, tensors, fit_summary=summary)
