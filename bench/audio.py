"""The benchmarks' test audio: a tone with seeded noise, written as a 16 kHz mono PCM16 WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_tone(path: Path, seconds: float, freq: float, seed: int) -> np.ndarray:
    """Write ``seconds`` of a ``freq`` Hz sine plus seeded noise to ``path``; return the samples as written."""
    t = np.arange(int(seconds * 16000)) / 16000
    samples = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * np.random.default_rng(seed).standard_normal(t.shape)
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float32) / 32768.0
