"""Example clips and questions, generated here at start-up: nothing is downloaded or shipped.

Sounds, music-like tones, a two-clip comparison and a beep to locate in time are synthesised with
numpy; spoken examples (English and Chinese) are added when ``espeak-ng`` is installed. The clips
are written once into a cache folder and reused.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.audio import SAMPLE_RATE, write_wav

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path(tempfile.gettempdir()) / "qwen2-audio-demo" / "examples"


@dataclass(frozen=True)
class Example:
    text: str
    files: tuple[str, ...]

    def as_value(self) -> dict:
        """The MultimodalTextbox value this example fills in."""
        return {"text": self.text, "files": list(self.files)}


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _note(freq: float, seconds: float, decay: float = 3.0) -> np.ndarray:
    """A plucked, harmonic-rich note (string-like) with an exponential decay."""
    t = _t(seconds)
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k ** 1.5 for k in range(1, 6))
    return tone * np.exp(-decay * t) * np.minimum(1.0, t * 200)


def _beeps(freq: float, count: int, period: float, length: float = 0.12) -> np.ndarray:
    out = np.zeros(int(count * period * SAMPLE_RATE))
    beep = np.sin(2 * np.pi * freq * _t(length)) * np.hanning(int(length * SAMPLE_RATE))
    for i in range(count):
        start = int(i * period * SAMPLE_RATE)
        out[start: start + len(beep)] += beep
    return out


def doorbell() -> np.ndarray:
    """Ding-dong over a faint room noise."""
    rng = np.random.default_rng(7)
    ding = _note(659.3, 1.2, decay=2.5)
    dong = _note(523.3, 1.8, decay=2.0)
    out = np.concatenate([np.zeros(int(0.3 * SAMPLE_RATE)), ding, dong])
    return 0.5 * out / np.abs(out).max() + 0.01 * rng.standard_normal(out.shape)


def melody() -> np.ndarray:
    """Four bars of arpeggios (C, Am, F, G) at 120 bpm with a bass note per bar."""
    beat = 0.25
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    bars = []
    for chord in chords:
        notes = [_note(f * 2, beat, decay=6.0) for f in (*chord, chord[1] * 1.0)] * 2
        bar = np.concatenate(notes)
        bass = _note(chord[0] / 2, len(bar) / SAMPLE_RATE, decay=1.5)
        bars.append(0.6 * bar + 0.5 * bass)
    out = np.concatenate(bars)
    return 0.6 * out / np.abs(out).max()


def comparison() -> tuple[np.ndarray, np.ndarray]:
    """Slow low beeps, then fast high beeps."""
    return 0.5 * _beeps(330.0, 4, 0.75), 0.5 * _beeps(880.0, 12, 0.25)


def beep_to_locate() -> np.ndarray:
    """Quiet noise for 5 s with one 1 kHz beep from 2.0 s to 3.0 s."""
    rng = np.random.default_rng(11)
    out = 0.01 * rng.standard_normal(5 * SAMPLE_RATE)
    t = _t(1.0)
    out[2 * SAMPLE_RATE: 3 * SAMPLE_RATE] += 0.4 * np.sin(2 * np.pi * 1000 * t) * np.minimum(1, np.minimum(t, 1 - t) * 50)
    return out


def _speak(path: Path, text: str, voice: str) -> bool:
    if shutil.which("espeak-ng") is None:
        return False
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info("espeak-ng could not speak an example (%s); the spoken examples are left out", exc)
        return False
    return path.is_file() and path.stat().st_size > 1000


def build_examples(folder: Path | None = None) -> list[Example]:
    """Write the example clips (once) into ``folder`` and return the examples that use them."""
    folder = Path(folder or DEFAULT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    low, high = comparison()
    synthesised = {
        "doorbell.wav": doorbell,
        "melody.wav": melody,
        "slow_low_beeps.wav": lambda: low,
        "fast_high_beeps.wav": lambda: high,
        "beep_at_2s.wav": beep_to_locate,
    }
    for name, make in synthesised.items():
        if not (folder / name).is_file():
            write_wav(folder / name, make())
    examples: list[Example] = []
    english = folder / "speech_en.wav"
    question = "Hello! Could you tell me what the weather will be like in Hangzhou tomorrow?"
    if english.is_file() or _speak(english, question, "en-us"):
        examples.append(Example("What does the speaker say, and what would you answer?", (str(english),)))
    chinese = folder / "speech_zh.wav"
    if chinese.is_file() or _speak(chinese, "今天天气很好，我们去公园散步吧。", "cmn"):
        examples.append(Example("请把这段话转写成文字，并翻译成英文。", (str(chinese),)))
    examples += [
        Example("What sound is this, and where might it have been recorded?", (str(folder / "doorbell.wav"),)),
        Example("Describe this music: instrument, tempo and mood.", (str(folder / "melody.wav"),)),
        Example(
            "Compare the two clips: which one is higher in pitch, and which one is faster?",
            (str(folder / "slow_low_beeps.wav"), str(folder / "fast_high_beeps.wav")),
        ),
        Example("When does the beep start and end? Answer with timestamps.", (str(folder / "beep_at_2s.wav"),)),
    ]
    return examples
