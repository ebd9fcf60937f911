"""Cutting a long recording into windows the encoder can see, at pauses rather than mid-word.

Qwen2-Audio's (and Qwen-Audio's) encoder sees at most 30 s. :func:`model.audio.split_windows` cuts a
chat message's audio every 30 s exactly, which is right for a question (the model sees every window
at once). A transcription asks the model about one window at a time, so a word cut in two is lost
from both: :class:`PauseWindows` ends each window in the quietest stretch of its last seconds instead
(``search_seconds`` before the ``window_seconds`` mark), measured as the mean energy over a sliding
``quiet_seconds`` span of ``frame_seconds`` frames, and starts the next window there.

It works on a stream of chunks (:func:`model.audio.stream_audio`) and keeps at most one window plus
one chunk in memory, whatever the length of the recording. Windows with nothing louder than
``silence_peak`` (digital silence, a pause between talks) are marked ``silent``: a transcription need
not ask the model about them.

numpy only: no torch, no gradio.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

__all__ = ["PauseWindows", "Window", "quietest_point"]


@dataclass(frozen=True)
class Window:
    """``samples`` of the recording from sample ``start`` on (16 kHz mono float32)."""

    index: int
    start: int
    samples: np.ndarray
    silent: bool

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return (self.start + len(self.samples)) / SAMPLE_RATE


def quietest_point(samples: np.ndarray, lo: int, hi: int, frame: int, span: int) -> int:
    """The sample index in ``[lo, hi]`` at the middle of the quietest ``span`` frames of ``frame``
    samples (mean energy); among equally quiet stretches, the latest (the longest window)."""
    lo, hi = max(0, lo), min(len(samples), hi)
    n_frames = (hi - lo) // frame
    if n_frames < 1:
        return hi
    framed = samples[lo : lo + n_frames * frame].astype(np.float64).reshape(n_frames, frame)
    energy = np.mean(framed * framed, axis=1)
    span = max(1, min(span, n_frames))
    smoothed = np.convolve(energy, np.full(span, 1.0 / span), mode="valid")  # one value per start frame
    quietest = float(smoothed.min())
    # The latest start whose stretch is (within rounding) as quiet as the quietest.
    best = int(np.flatnonzero(smoothed <= quietest + 1e-12 + quietest * 1e-6)[-1])
    return lo + (best * frame) + (span * frame) // 2


class PauseWindows:
    """Windows of at most ``window_seconds``, each ended in a pause of its last ``search_seconds``."""

    def __init__(self, window_seconds: float = 30.0, search_seconds: float = 8.0, quiet_seconds: float = 0.3,
                 frame_seconds: float = 0.02, silence_peak: float = 1e-3):
        if not 0 < search_seconds < window_seconds:
            raise ValueError(f"search_seconds must be between 0 and window_seconds ({window_seconds}), got {search_seconds}")
        self.window = int(round(window_seconds * SAMPLE_RATE))
        self.search = int(round(search_seconds * SAMPLE_RATE))
        self.frame = max(1, int(round(frame_seconds * SAMPLE_RATE)))
        self.span = max(1, int(round(quiet_seconds / frame_seconds)))
        self.silence_peak = silence_peak

    def cut(self, samples: np.ndarray) -> list[Window]:
        """The windows of a whole recording already in memory."""
        return list(self.windows([samples]))

    def windows(self, chunks: Iterable[np.ndarray]) -> Iterator[Window]:
        """The windows of a recording given as consecutive chunks, each as soon as it is known (the data
        up to its 30 s mark has arrived). They cover every sample, in order, without overlap."""
        buffer = np.zeros(0, dtype=np.float32)
        offset = 0
        index = 0
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
            buffer = np.concatenate([buffer, chunk]) if len(buffer) else chunk
            while len(buffer) > self.window:
                cut = quietest_point(buffer, self.window - self.search, self.window, self.frame, self.span)
                cut = max(1, min(cut, self.window))
                yield self._window(index, offset, buffer[:cut])
                buffer = buffer[cut:]
                offset += cut
                index += 1
        if len(buffer):
            yield self._window(index, offset, buffer)

    def _window(self, index: int, start: int, samples: np.ndarray) -> Window:
        samples = np.array(samples, dtype=np.float32, copy=True, order="C")  # not a view of the buffer
        silent = not len(samples) or float(np.abs(samples).max()) < self.silence_peak
        return Window(index, start, samples, silent)
