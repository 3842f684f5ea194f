"""Mimi (Kyutai), the SODA codec, through `transformers.MimiModel`.

24 kHz mono in, 12.5 Hz frames (1920 samples), the first 8 of its 32 RVQ codebooks kept (codebook 0 is
the semantic one). Batches are right-padded with a padding mask. Each item is zero-padded to a whole
number of frames before encoding, the way streaming Mimi sees its last frame: every convolution then has
whole strides and, Mimi being causal end to end, an item's codes do not depend on what follows it in the
padded batch, so batched and one-by-one encoding agree. Each item keeps ceil(samples / 1920) frames.
Clips over 60 s are encoded in 60 s chunks (750 frames, frame-aligned) whose codes are concatenated.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch

from sodakit.audio.codec import Codec, CodecError
from sodakit.device import DeviceError, resolve_device, resolve_dtype
from sodakit.fileio import hub_offline
from sodakit.progress import library_bars_off_in_logs

# 60 s at 24 kHz = 750 frames: docs/soda.md#audio-tokens chunking (bounds attention memory, matches the paper).
CHUNK_SECONDS = 60.0
# Config keys that do not change what the model computes.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "use_cache"}

HOW_TO_GET_MIMI = (
    "Mimi's weights are not bundled. On a machine with internet access run\n"
    "  huggingface-cli download kyutai/mimi --local-dir mimi   (or: hf download kyutai/mimi --local-dir mimi)\n"
    "then copy the `mimi` directory here and pass its path (e.g. codec=./mimi), or populate the Hugging Face\n"
    "cache (HF_HOME) there and copy it. Without network access keep HF_HUB_OFFLINE=1 and use the local path.\n"
    "No pretrained codec at all? Fit the offline codec: `sodakit codec fit AUDIO_DIR OUT_DIR`."
)


class MimiCodec(Codec):
    name = "mimi"

    def __init__(
        self,
        model,
        num_codebooks: int = 8,
        device: str = "auto",
        dtype: str = "float32",
        source: str | None = None,
        chunk_seconds: float = CHUNK_SECONDS,
    ):
        cfg = model.config
        if getattr(cfg, "audio_channels", 1) != 1:
            raise CodecError(f"{source}: only mono Mimi models are supported (audio_channels={cfg.audio_channels})")
        if not cfg.num_semantic_quantizers <= num_codebooks <= cfg.num_quantizers:
            raise CodecError(
                f"num_codebooks={num_codebooks}: this Mimi has {cfg.num_quantizers} codebooks, "
                f"{cfg.num_semantic_quantizers} semantic; keep between those"
            )
        try:
            self.device = resolve_device(device)
            self.dtype = resolve_dtype(dtype, self.device)
        except DeviceError as e:
            raise CodecError(f"{source}: {e}") from e
        self.source = source
        self.sample_rate = int(cfg.sampling_rate)
        self.frame_rate = float(cfg.frame_rate)
        if abs(self.sample_rate / self.frame_rate - round(self.sample_rate / self.frame_rate)) > 1e-6:
            raise CodecError(f"{source}: sample rate {self.sample_rate} is not a whole number of frames at {self.frame_rate} Hz")
        self.num_codebooks = int(num_codebooks)
        self.codebook_size = int(cfg.codebook_size)
        self.semantic_codebooks = list(range(int(cfg.num_semantic_quantizers)))
        self.chunk_frames = max(1, int(chunk_seconds * self.frame_rate))
        self._hash: str | None = None
        self._hash_weights(model)  # on CPU, in the checkpoint's own precision, before any cast
        self.model = model.to(device=self.device, dtype=self.dtype).eval()

    @classmethod
    def from_pretrained(
        cls, spec: str, device: str = "auto", dtype: str = "float32", num_codebooks: int = 8
    ) -> MimiCodec:
        """Load from a local `save_pretrained` directory or a hub id (honours HF_HUB_OFFLINE)."""
        from transformers import MimiModel

        offline = hub_offline()
        try:
            with library_bars_off_in_logs():
                model = MimiModel.from_pretrained(spec, dtype=torch.float32, local_files_only=offline)
        except (OSError, ValueError) as e:
            mode = " with HF_HUB_OFFLINE=1 (no download attempted)" if offline else ""
            raise CodecError(f"cannot load Mimi model {spec!r}{mode}: {e}\n{HOW_TO_GET_MIMI}") from e
        if getattr(model.config, "model_type", None) != "mimi":
            raise CodecError(f"{spec}: model_type {model.config.model_type!r}, expected 'mimi'")
        return cls(model, num_codebooks=num_codebooks, device=device, dtype=dtype, source=spec)

    def _hash_weights(self, model) -> None:
        cfg = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        h = hashlib.sha256()
        h.update(json.dumps({"codec": "mimi", "config": cfg, "num_codebooks": self.num_codebooks}, sort_keys=True, default=str).encode())
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        self._hash = h.hexdigest()[:16]

    @property
    def config_hash(self) -> str:
        assert self._hash is not None
        return self._hash

    @torch.inference_mode()
    def _encode_batch(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        spf, chunk = self.samples_per_frame, self.chunk_frames * self.samples_per_frame
        # Pieces: every item cut into frame-aligned chunks of at most `chunk` samples.
        pieces: list[tuple[int, torch.Tensor]] = []
        for b, n in enumerate(lengths.tolist()):
            for s in range(0, n, chunk):
                pieces.append((b, wav[b, s : min(n, s + chunk)]))
        per_item: list[list[torch.Tensor]] = [[] for _ in range(wav.shape[0])]
        group = max(1, wav.shape[0])  # as many pieces per forward pass as the caller's batch holds
        for g in range(0, len(pieces), group):
            part = pieces[g : g + group]
            frames = [math.ceil(len(p) / spf) for _, p in part]
            x = torch.zeros(len(part), 1, max(frames) * spf)
            mask = torch.zeros(len(part), 1, x.shape[-1], dtype=torch.bool)
            for i, (_, p) in enumerate(part):
                x[i, 0, : len(p)] = p
                mask[i, 0, : len(p)] = True
            out = self.model.encode(
                x.to(self.device, self.dtype), padding_mask=mask.to(self.device), num_quantizers=self.num_codebooks
            )
            codes = out.audio_codes[:, : self.num_codebooks]
            for i, (b, _) in enumerate(part):
                per_item[b].append(codes[i, :, : frames[i]].cpu())
        fmax = max(self.num_frames(int(n)) for n in lengths)
        result = torch.zeros(wav.shape[0], self.num_codebooks, fmax, dtype=torch.long)
        for b, chunks in enumerate(per_item):
            c = torch.cat(chunks, dim=1)
            result[b, :, : c.shape[1]] = c
        return result

    @torch.inference_mode()
    def _decode_batch(self, codes: torch.Tensor, frames: torch.Tensor) -> list[np.ndarray]:
        spf, cf = self.samples_per_frame, self.chunk_frames
        pieces: list[tuple[int, torch.Tensor]] = []
        for b, f in enumerate(frames.tolist()):
            for s in range(0, f, cf):
                pieces.append((b, codes[b, :, s : min(f, s + cf)]))
        per_item: list[list[np.ndarray]] = [[] for _ in range(codes.shape[0])]
        group = max(1, codes.shape[0])
        for g in range(0, len(pieces), group):
            part = pieces[g : g + group]
            fmax = max(p.shape[1] for _, p in part)
            x = torch.zeros(len(part), self.num_codebooks, fmax, dtype=torch.long)
            for i, (_, p) in enumerate(part):
                x[i, :, : p.shape[1]] = p
            audio = self.model.decode(x.to(self.device)).audio_values.float().cpu()
            for i, (b, p) in enumerate(part):
                per_item[b].append(audio[i, 0, : p.shape[1] * spf].numpy())
        return [np.concatenate(chunks) if chunks else np.zeros(0, np.float32) for chunks in per_item]
