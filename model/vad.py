"""Voice activity detection for voice mode: where a person starts talking, and where they have stopped.

Silero VAD (the ``silero-vad`` package, whose model ships inside its wheel: nothing is downloaded) gives
the probability of speech for every 32 ms frame of 16 kHz audio. :class:`VoiceDetector` turns those
probabilities into events as audio streams in:

- :class:`SpeechStarted` once speech has lasted ``min_speech_ms`` (a click or a cough does not count);
  voice mode stops an answer that is streaming (barge-in) and silences read-aloud on it;
- :class:`Utterance` once a pause of ``pause_ms`` follows the speech: the speech with ``pad_ms`` of
  what came before and after it (the silence beyond is trimmed), and its times in the stream.

Silero rather than WebRTC's VAD: in ``python -m bench.vad`` WebRTC's detector (``webrtcvad-wheels``
2.0.14, aggressiveness 1 and 3) called 100% of the frames of white noise and of a synthetic melody
speech; Silero called none of them, and found the speech (docs/PERFORMANCE.md).

This module needs torch, so it lives in ``model/``; the page reaches it through the backend's
``voice_detector`` (the app layer never imports torch).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Silero's frame at 16 kHz: 512 samples (32 ms).
FRAME = 512


@dataclass(frozen=True)
class VadSettings:
    """How the detector decides (``configs/*.yaml`` and the ``--vad-*`` flags set these)."""

    threshold: float = 0.5  # speech probability at which a frame is speech
    pause_ms: int = 800  # silence after speech that ends the utterance
    min_speech_ms: int = 250  # speech shorter than this is ignored
    pad_ms: int = 200  # kept before and after the speech
    max_utterance_s: float = 30.0  # an utterance is cut here even without a pause (the model hears 30 s)

    def __post_init__(self) -> None:
        checks = {
            "threshold": 0.0 < self.threshold < 1.0,
            "pause_ms": self.pause_ms >= FRAME * 1000 // SAMPLE_RATE,
            "min_speech_ms": self.min_speech_ms >= 0,
            "pad_ms": self.pad_ms >= 0,
            "max_utterance_s": self.max_utterance_s >= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"VAD setting {name} is out of range: {getattr(self, name)!r}.")

    @property
    def end_threshold(self) -> float:
        """Below this a frame is silence (between the two, a frame continues what it is in)."""
        return max(0.01, self.threshold - 0.15)


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # seconds from the start of the stream


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # float32, 16 kHz mono, padded by pad_ms
    start: float  # seconds from the start of the stream (of the first kept sample)
    end: float
    speech_start: float  # where the detected speech itself begins and ends
    speech_end: float

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


_MODEL_LOCK = threading.Lock()


def load_model() -> Any:
    """A fresh Silero VAD model (each detector keeps its own state; a load after the first takes ~30 ms)."""
    try:
        from silero_vad import load_silero_vad
    except ImportError as exc:  # pragma: no cover - a requirement; said in one sentence if missing
        raise RuntimeError("Voice mode needs the silero-vad package: pip install -r requirements.txt") from exc
    with _MODEL_LOCK:  # sessions switched on at the same moment load one at a time
        model = load_silero_vad()
    model.eval()
    return model


class VoiceDetector:
    """Feed 16 kHz float32 audio in pieces of any length; get :class:`SpeechStarted` and :class:`Utterance`
    events. The same audio fed whole or in chunks gives the same events (frames are cut the same way)."""

    def __init__(self, settings: VadSettings = VadSettings(), model: Any = None):
        self.settings = settings
        self._model = model if model is not None else load_model()
        self._model.reset_states()
        self._pending = np.zeros(0, dtype=np.float32)  # less than a frame, waiting for the rest
        self._frames = 0  # frames judged so far
        self._kept: list[np.ndarray] = []  # audio from self._kept_from (in samples) on
        self._kept_from = 0
        self._start: int | None = None  # the first frame of the speech being heard
        self._last_speech = -1  # the last speech frame
        self._speech_frames = 0  # speech frames since self._start
        self._confirmed = False
        self._silent_run = 0
        ms_frames = SAMPLE_RATE / FRAME / 1000
        self._pause = max(1, round(settings.pause_ms * ms_frames))
        self._min_speech = max(1, round(settings.min_speech_ms * ms_frames))
        self._pad = round(settings.pad_ms * SAMPLE_RATE / 1000)
        self._max = round(settings.max_utterance_s * SAMPLE_RATE / FRAME)

    @property
    def hearing(self) -> bool:
        """Whether confirmed speech is going on (for the page's "hearing you")."""
        return self._confirmed

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each whole frame of ``samples`` (advances the model's state)."""
        import torch

        frames = len(samples) // FRAME
        out = np.empty(frames, dtype=np.float32)
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(samples[: frames * FRAME], dtype=np.float32))
            for i in range(frames):
                out[i] = float(self._model(tensor[i * FRAME:(i + 1) * FRAME], SAMPLE_RATE))
        return out

    def feed(self, samples: np.ndarray) -> list[SpeechStarted | Utterance]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        audio = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(audio) // FRAME * FRAME
        self._pending = audio[whole:].copy()
        if not whole:
            return []
        audio = audio[:whole]
        self._kept.append(audio)
        events: list[SpeechStarted | Utterance] = []
        for i, p in enumerate(self.probabilities(audio)):
            events.extend(self._judge(self._frames + i, p))
        self._frames += len(audio) // FRAME
        self._trim()
        return events

    def flush(self) -> list[SpeechStarted | Utterance]:
        """The stream has ended: speech still going on becomes an utterance (if it was long enough)."""
        events: list[SpeechStarted | Utterance] = []
        if self._start is not None and self._confirmed:
            events.append(self._utterance(self._last_speech + 1))
        self._reset_speech()
        return events

    # ------------------------------------------------------------------ the decisions
    def _judge(self, frame: int, p: float) -> list[SpeechStarted | Utterance]:
        s = self.settings
        events: list[SpeechStarted | Utterance] = []
        if self._start is None:
            if p >= s.threshold:
                self._start, self._last_speech, self._speech_frames, self._silent_run = frame, frame, 1, 0
            else:
                return events
        elif p >= s.end_threshold:
            if p >= s.threshold or self._silent_run == 0:
                self._last_speech = frame
                self._speech_frames += 1
                self._silent_run = 0
            else:
                self._silent_run += 1
        else:
            self._silent_run += 1
        if not self._confirmed and self._speech_frames >= self._min_speech:
            self._confirmed = True
            events.append(SpeechStarted(self._start * FRAME / SAMPLE_RATE))
        if self._silent_run >= self._pause:
            if self._confirmed:
                events.append(self._utterance(self._last_speech + 1))
            self._reset_speech()
        elif self._confirmed and frame + 1 - self._start >= self._max:
            # Too long without a pause: cut here; what follows is a new utterance already heard.
            events.append(self._utterance(frame + 1, pad_after=False))
            self._start, self._last_speech, self._speech_frames, self._silent_run = frame + 1, frame, 0, 0
        return events

    def _reset_speech(self) -> None:
        self._start, self._confirmed, self._speech_frames, self._silent_run = None, False, 0, 0

    def _utterance(self, end_frame: int, pad_after: bool = True) -> Utterance:
        """The speech from ``self._start`` to ``end_frame`` (exclusive), with the padding that is there."""
        assert self._start is not None
        start = max(self._kept_from, self._start * FRAME - self._pad)
        have = self._kept_from + sum(len(k) for k in self._kept)
        end = min(end_frame * FRAME + (self._pad if pad_after else 0), have)
        audio = np.concatenate(self._kept) if len(self._kept) > 1 else self._kept[0]
        self._kept = [audio]
        samples = audio[start - self._kept_from: end - self._kept_from].copy()
        return Utterance(samples, start / SAMPLE_RATE, end / SAMPLE_RATE, self._start * FRAME / SAMPLE_RATE,
                         end_frame * FRAME / SAMPLE_RATE)

    def _trim(self) -> None:
        """Keep only what an utterance may still need: from ``pad_ms`` before the speech (or before now)."""
        have = self._kept_from + sum(len(k) for k in self._kept)
        keep_from = (self._start * FRAME - self._pad) if self._start is not None else have - self._pad
        keep_from = max(self._kept_from, keep_from)
        if keep_from <= self._kept_from:
            return
        audio = np.concatenate(self._kept) if len(self._kept) > 1 else self._kept[0]
        self._kept = [audio[keep_from - self._kept_from:]]
        self._kept_from = keep_from


def find_utterances(samples: np.ndarray, settings: VadSettings = VadSettings(), model: Any = None,
                    chunk: int | None = None) -> list[Utterance]:
    """The utterances of a whole recording (fed in ``chunk``-sample pieces if given): for tests and tools."""
    detector = VoiceDetector(settings, model)
    events: list[Any] = []
    step = chunk or len(samples) or 1
    for i in range(0, len(samples), step):
        events.extend(detector.feed(samples[i:i + step]))
    events.extend(detector.flush())
    return [e for e in events if isinstance(e, Utterance)]
