"""From streamed audio frames to streamed waveform chunks.

`generate(..., on_frame=streamer)` hands every completed frame (K codes) to the streamer; every
`chunk_frames` frames of a row it decodes the newest chunk together with up to `context_frames` frames
before it (so the codec's convolutions and attention see their left context) and passes the new chunk's
samples to `on_audio(row, samples)`. Call `flush()` after generation for the last partial chunk.

With enough left context the chunks match a whole-span decode of a causal codec such as Mimi; the
difference at the chunk seams shrinks as `context_frames` grows (a codec with a longer receptive field
needs more). Latency = chunk_frames / frame_rate (0.48 s by default at 12.5 Hz).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sodakit.generate.decoding import FrameEvent

# 6 frames = 0.48 s per chunk at 12.5 Hz; 25 frames = 2 s of left context.
DEFAULT_CHUNK_FRAMES = 6
DEFAULT_CONTEXT_FRAMES = 25


class WaveformStreamer:
    def __init__(
        self,
        codec,
        on_audio: Callable[[int, np.ndarray], None],
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        context_frames: int = DEFAULT_CONTEXT_FRAMES,
    ) -> None:
        if chunk_frames < 1 or context_frames < 0:
            raise ValueError(f"chunk_frames must be >= 1 and context_frames >= 0, got {chunk_frames}, {context_frames}")
        self.codec = codec
        self.on_audio = on_audio
        self.chunk = int(chunk_frames)
        self.context = int(context_frames)
        self._frames: dict[tuple[int, int], list[np.ndarray]] = {}  # (row, span) -> frames so far
        self._emitted: dict[tuple[int, int], int] = {}  # frames already turned into audio

    def __call__(self, event: FrameEvent) -> None:
        key = (event.row, event.span)
        frames = self._frames.setdefault(key, [])
        frames.append(np.asarray(event.codes, dtype=np.int64))
        if len(frames) - self._emitted.get(key, 0) >= self.chunk:
            self._emit(key)

    def flush(self) -> None:
        for key in list(self._frames):
            if len(self._frames[key]) > self._emitted.get(key, 0):
                self._emit(key)

    def _emit(self, key: tuple[int, int]) -> None:
        frames = self._frames[key]
        done = self._emitted.get(key, 0)
        start = max(0, done - self.context)
        codes = np.stack(frames[start:], axis=1)  # [K, F]
        k = self.codec.num_codebooks
        if codes.shape[0] < k:
            raise ValueError(f"frames hold {codes.shape[0]} codebooks but the codec decodes {k}")
        wav = self.codec.decode(codes[None, :k])[0]
        spf = self.codec.samples_per_frame
        self.on_audio(key[0], wav[(done - start) * spf :])
        self._emitted[key] = len(frames)
