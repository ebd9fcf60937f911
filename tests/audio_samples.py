"""Audio the tests generate themselves: no binary fixtures, no downloads.

Formats other than WAV are encoded by the ffmpeg binary: the system's, else imageio-ffmpeg's (a test
requirement), so the tests need no system ffmpeg either.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np


def tone(seconds: float, freq: float = 440.0, sr: int = 16000, amplitude: float = 0.3, seed: int | None = None) -> np.ndarray:
    """A sine tone (plus a little seeded noise when ``seed`` is given), float32 in [-1, 1]."""
    t = np.arange(int(round(seconds * sr)), dtype=np.float64) / sr
    wave_ = amplitude * np.sin(2 * np.pi * freq * t)
    if seed is not None:
        wave_ += 0.05 * np.random.default_rng(seed).standard_normal(t.shape)
    return np.clip(wave_, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path | str, samples: np.ndarray, sr: int = 16000) -> Path:
    """Write PCM16 WAV; ``samples`` is (n,) mono or (n, channels), float in [-1, 1]."""
    path = Path(path)
    data = np.asarray(samples, dtype=np.float64)
    channels = 1 if data.ndim == 1 else data.shape[1]
    pcm = np.round(np.clip(data, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


def read_wav16k(path: Path | str) -> np.ndarray:
    """Read a mono 16 kHz PCM16 WAV exactly as float32 (the reference decoder for parity tests)."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def ffmpeg_exe() -> str:
    """The ffmpeg binary the tests encode with (model.audio's choice: the system's, else imageio-ffmpeg's)."""
    from model.audio import ffmpeg_binary

    binary = ffmpeg_binary()
    assert binary, "no ffmpeg binary: install the test requirements (imageio-ffmpeg brings one)"
    return binary


def ffmpeg_cli(*args: str) -> None:
    """Run the ffmpeg CLI quietly (``-y``; for inputs like lavfi sources)."""
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def ffmpeg_convert(src: Path | str, dst: Path | str, *args: str) -> Path:
    """Re-encode ``src`` into ``dst`` with the real ffmpeg (format from the extension, extra args verbatim)."""
    ffmpeg_cli("-i", str(src), *args, str(dst))
    return Path(dst)


def speak(text: str, out: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng (``make test`` installs it), as 16 kHz mono samples; ``out`` names the file."""
    from model.audio import decode_audio

    wav = Path(out).with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(wav), text], check=True, capture_output=True, timeout=60)
    return decode_audio(wav)


def trim(samples: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """``samples`` without the near-silence (below ``floor``) before and after them."""
    loud = np.flatnonzero(np.abs(samples) > floor)
    return samples[loud[0] : loud[-1] + 1]
