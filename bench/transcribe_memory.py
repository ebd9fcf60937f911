"""Memory of a long transcription: a 2-hour recording through the decoding, the windowing and the job.

    python -m bench.transcribe_memory [--minutes 120] [--json OUT]

Writes a synthetic recording of ``--minutes`` (a tone with seeded noise in sentences of 4-9 s, joined
by 0.6 s pauses) as a 16 kHz mono WAV, then runs :meth:`app.service.ChatService.transcribe` over it
with a stand-in model that answers every window at once (this measures the demo's own work: the
decoder, the cutting at pauses and the job, not a model). Prints the process's peak resident memory
before and after (``ru_maxrss``), the windows, and the time; the whole waveform as float32 is given for
comparison. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

SR = 16000


def write_recording(path: Path, minutes: float, seed: int = 0) -> float:
    """Write the recording sentence by sentence (never whole in memory); return its length in seconds."""
    rng = np.random.default_rng(seed)
    written = 0
    total = int(minutes * 60 * SR)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SR)
        while written < total:
            n = min(int(rng.uniform(4, 9) * SR), total - written)
            t = np.arange(n) / SR
            sentence = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) + 0.05 * rng.standard_normal(n)
            pause = 0.003 * rng.standard_normal(min(int(0.6 * SR), max(0, total - written - n)))
            pcm = np.round(np.clip(np.concatenate([sentence, pause]), -1, 1) * 32767).astype("<i2")
            out.writeframes(pcm.tobytes())
            written += len(pcm)
    return written / SR


class InstantStream:
    """A reply of one word, there at once (what the stand-in model answers every window)."""

    def __init__(self) -> None:
        self.prepared = SimpleNamespace(audios=[], dropped_turns=0)
        self.finish_reason: str | None = None
        self.prompt_tokens, self.completion_tokens, self.position = 0, 1, 0
        self._given = False

    def wait_started(self, timeout: float | None = None) -> bool:
        return True

    def take_ready(self, until: float | None = None) -> str:
        return ""

    def __iter__(self) -> "InstantStream":
        return self

    def __next__(self) -> str:
        if self._given:
            self.finish_reason = "stop"
            raise StopIteration
        self._given = True
        return "words"

    def close(self) -> None:
        self.finish_reason = self.finish_reason or "stop"


class StandIn:
    """A chat backend whose model answers every window at once with one word."""

    info = SimpleNamespace(checkpoint="stand-in", family="chat", model_family="Qwen2-Audio", random_weights=True,
                           label="stand-in", generation_defaults=None)
    family = "chat"

    def __init__(self) -> None:
        from model.params import GenerationParams

        self.info.generation_defaults = GenerationParams()
        self.windows = 0
        self._lock = threading.Lock()

    def stream(self, messages: Any, params: Any = None) -> InstantStream:
        with self._lock:
            self.windows += 1
        return InstantStream()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0, help="length of the recording (default: 120)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    from app.config import DemoConfig
    from app.service import ChatService
    from app.transcription import Segment, Transcribed

    tmp = Path(tempfile.mkdtemp(prefix="bench-transcribe-"))
    path = tmp / "recording.wav"
    seconds = write_recording(path, args.minutes)
    size_mb = path.stat().st_size / 2**20
    backend = StandIn()
    config = DemoConfig(examples=False, max_upload_mb=int(size_mb) + 16, max_transcription_minutes=args.minutes + 1,
                        stream_interval_ms=0)
    service = ChatService(backend, config)
    before = peak_rss_mb()
    started = time.perf_counter()
    segments = 0
    done = None
    for event in service.transcribe(str(path)).events(0):
        if isinstance(event, Segment):
            segments += 1
        elif isinstance(event, Transcribed):
            done = event
    elapsed = time.perf_counter() - started
    after = peak_rss_mb()
    whole_mb = seconds * SR * 4 / 2**20
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}".rstrip())
    print(f"recording: {seconds / 60:.1f} min, 16 kHz mono WAV of {size_mb:.0f} MB (as float32: {whole_mb:.0f} MB)")
    print(f"windows: {backend.windows} asked, {segments} segments; transcribed {done.duration / 60 if done else 0:.1f} min "
          f"in {elapsed:.1f} s (decoding and cutting; the stand-in answers at once)")
    print(f"peak resident memory: {before:.0f} MB before the job, {after:.0f} MB after it (+{after - before:.0f} MB)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"minutes": seconds / 60, "wav_mb": size_mb, "float32_mb": whole_mb,
                                         "windows": backend.windows, "seconds": elapsed,
                                         "peak_rss_mb_before": before, "peak_rss_mb_after": after}, indent=2))
    path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
