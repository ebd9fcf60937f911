"""Voice mode's detector: what it costs per piece of the microphone's stream, and what it calls speech.

    python -m bench.vad [--seconds 20] [--repeats 5]

Silero VAD (model/vad.py) judges espeak-ng speech (sentences with 1 s pauses), room noise, white noise,
a synthetic melody and a chord, fed in the page's quarter-second pieces. Printed per sound: the share of
32 ms frames Silero calls speech, the utterances found, and the median time to judge one quarter-second
piece. Where ``webrtcvad`` (the webrtcvad-wheels package, not a requirement) is installed, its share of
30 ms speech frames at aggressiveness 1 and 3 is printed beside it: the comparison that chose Silero.
A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from model.audio import SAMPLE_RATE, decode_audio
from model.vad import FRAME, VoiceDetector, find_utterances, load_model

SR = SAMPLE_RATE
PIECE = SR // 4


def speech(seconds: float, folder: Path) -> np.ndarray:
    texts = ["Hello there, what is the weather like today in the city?", "Tell me a short story about a cat.",
             "The children played football in the park until it was too dark to see."]
    parts = []
    for i, text in enumerate(texts * 10):
        wav = folder / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
        parts += [decode_audio(wav), np.zeros(SR, np.float32)]
        if sum(map(len, parts)) >= seconds * SR:
            break
    return np.concatenate(parts)[: int(seconds * SR)]


def sounds(seconds: float, folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    notes = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3]
    bar = np.arange(SR // 4) / SR
    melody = np.concatenate([sum(0.2 / k * np.sin(2 * np.pi * f * k * bar) for k in range(1, 6)) * np.hanning(SR // 4)
                             for f in notes] * int(np.ceil(seconds / 2)))[:n]
    chord = sum(0.15 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) for f in (261.6, 329.6, 392.0))
    return {
        "speech (1 s pauses)": speech(seconds, folder),
        "room noise (-40 dB)": 0.01 * rng.standard_normal(n),
        "white noise (-20 dB)": 0.1 * rng.standard_normal(n),
        "melody": melody,
        "chord": chord,
        "silence": np.zeros(n),
    }


def webrtc_share(samples: np.ndarray, mode: int) -> float | None:
    try:
        import webrtcvad
    except ImportError:
        return None
    vad = webrtcvad.Vad(mode)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    frame = SR * 30 // 1000
    calls = [vad.is_speech(pcm[i:i + frame].tobytes(), SR) for i in range(0, len(pcm) - frame, frame)]
    return float(np.mean(calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    model = load_model()
    with tempfile.TemporaryDirectory() as tmp:
        cases = sounds(args.seconds, Path(tmp))
    print(f"{'sound':24} {'silero speech':>13} {'utterances':>10} {'ms / 0.25 s':>11} {'webrtc 1':>9} {'webrtc 3':>9}")
    for name, samples in cases.items():
        samples = samples.astype(np.float32)
        detector = VoiceDetector(model=model)
        share = float(np.mean(detector.probabilities(samples) >= detector.settings.threshold))
        found = find_utterances(samples, model=model, chunk=PIECE)
        times = []
        for _ in range(args.repeats):
            detector = VoiceDetector(model=model)
            start = time.perf_counter()
            for i in range(0, len(samples), PIECE):
                detector.feed(samples[i:i + PIECE])
            times.append((time.perf_counter() - start) * 1000 / (len(samples) / PIECE))
        web = [webrtc_share(samples, m) for m in (1, 3)]
        shown = ["n/a" if w is None else f"{w:.0%}" for w in web]
        print(f"{name:24} {share:13.0%} {len(found):10d} {statistics.median(times):11.2f} {shown[0]:>9} {shown[1]:>9}")
    print(f"(frames of {FRAME} samples; utterances with the default settings)")


if __name__ == "__main__":
    main()
