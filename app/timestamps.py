"""Time grounding: Qwen-Audio's ``<|2.33|>`` timestamps as readable times, and clips cut at them.

A reply like ``"The word starts at <|1.20|> and ends at <|2.05|>."`` is shown with readable times,
``0:01.20`` and ``0:02.05``, and a playable clip of 1.20-2.05 s of the audio it refers to, as the
original Qwen-Audio demo did. Each time is an HTML ``<time datetime="PT1.20S">0:01.20</time>`` element:
it reads well, is styled by static/style.css, and converts back exactly (:func:`restore_timestamps`),
so the displayed history stays the one source of truth and the model sees its own tokens next turn.

Audio longer than one encoder window (30 s) reaches the model as consecutive windows, and a timestamp
token can only say 0-30 s. A reply about such an audio is read window by window: its times run from
the first window, and a time more than :data:`BACKWARD_JUMP_S` earlier than the one before it moves on
to the next window (a transcript that starts again at ``<|0.00|>``). Those times are shown, and cut, at
the whole file's time; the element keeps the model's own token in ``data-token``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.audio import SAMPLE_RATE, AudioLimits, decode_audio, format_clock, window_count, write_wav

logger = logging.getLogger(__name__)

#: A time token of the model's (Qwen-Audio's ``<|2.33|>``): whole seconds, then the fraction.
TIME_TOKEN = re.compile(r"<\|(\d{1,5})(\.\d+)?\|>")
_READABLE = re.compile(r'<time datetime="PT(\d{1,5}(?:\.\d+)?)S"(?: data-token="(\d{1,5}(?:\.\d+)?)")?>[^<]*</time>')
#: A timestamp without a partner marks a moment; its clip lasts this long.
SINGLE_CLIP_SECONDS = 3.0
#: In a reply about audio of several windows, a time this much earlier than the previous one starts the next window.
BACKWARD_JUMP_S = 1.0
#: The encoder window the models see (see model.audio.AudioLimits.window_seconds).
WINDOW_SECONDS = 30.0


def window_offsets(times: list[float], windows: int = 1, window_seconds: float = WINDOW_SECONDS) -> list[float]:
    """The offset (seconds) of each time of a reply about audio of ``windows`` windows (see the module doc)."""
    offsets, window, previous = [], 0, None
    for t in times:
        if previous is not None and t < previous - BACKWARD_JUMP_S and window < windows - 1:
            window += 1
        offsets.append(window * window_seconds)
        previous = t
    return offsets


def render_timestamps(text: str, windows: int = 1, window_seconds: float = WINDOW_SECONDS) -> str:
    """Replace every complete ``<|s.ss|>`` token with a ``<time>`` reading ``m:ss.ss``; an unfinished one stays.

    With ``windows`` > 1 the times are shifted to the whole file's time (the token stays in ``data-token``).
    """
    matches = list(TIME_TOKEN.finditer(text))
    offsets = iter(window_offsets([float(m.group(1) + (m.group(2) or "")) for m in matches], windows, window_seconds))

    def readable(m: re.Match) -> str:
        seconds, fraction = m.group(1), m.group(2) or ""
        offset = next(offsets)
        digits = len(fraction) - 1 if fraction else 0  # as many decimals as the token has
        if not offset:
            clock = format_clock(float(seconds + fraction), digits)
            return f'<time datetime="PT{seconds}{fraction}S">{clock}</time>'
        shifted = f"{float(seconds + fraction) + offset:.{digits}f}"
        return (f'<time datetime="PT{shifted}S" data-token="{seconds}{fraction}">'
                f'{format_clock(float(shifted), digits)}</time>')

    return TIME_TOKEN.sub(readable, text)


def restore_timestamps(text: str) -> str:
    """The inverse of :func:`render_timestamps`: ``<time datetime="PT62.5S">1:02.5</time>`` -> ``<|62.5|>``
    (a shifted time gives back the model's own token, its ``data-token``)."""
    return _READABLE.sub(lambda m: f"<|{m.group(2) or m.group(1)}|>", text)


def find_timestamps(text: str, windows: int = 1, window_seconds: float = WINDOW_SECONDS) -> list[float]:
    """Seconds of every timestamp token in ``text``, in order, at the whole file's time."""
    times = [float(m.group(1) + (m.group(2) or "")) for m in TIME_TOKEN.finditer(text)]
    return [t + offset for t, offset in zip(times, window_offsets(times, windows, window_seconds))]


def clip_ranges(times: list[float], duration: float) -> list[tuple[float, float]]:
    """Pair timestamps into (start, end) ranges within ``[0, duration]``.

    Consecutive timestamps pair up (start, end), as Qwen-Audio writes ranges; a pair that runs backwards
    is swapped; a last timestamp without a partner gets a clip of SINGLE_CLIP_SECONDS. Ranges that fall
    outside the audio or are empty are dropped, and a range named again is kept once.
    """
    ranges = []
    for i in range(0, len(times), 2):
        start = times[i]
        end = times[i + 1] if i + 1 < len(times) else start + SINGLE_CLIP_SECONDS
        start, end = min(start, end), max(start, end)
        start, end = max(0.0, start), min(duration, end)
        if end - start >= 0.05 and (start, end) not in ranges:  # a range named twice gets one clip
            ranges.append((start, end))
    return ranges


@dataclass(frozen=True)
class Clip:
    start: float
    end: float
    path: Path

    @property
    def label(self) -> str:
        return f"{format_clock(self.start, 2)} – {format_clock(self.end, 2)}"


def cut_clips(reply: str, audio_path: str, out_dir: Path, limits: AudioLimits = AudioLimits(),
              decode: Callable[[str, AudioLimits], np.ndarray] = decode_audio) -> list[Clip]:
    """Cut a WAV clip of ``audio_path`` for every range the timestamps in ``reply`` name.

    Clips go to a new folder under ``out_dir``. Returns [] when the reply has no timestamps. ``decode``
    gives the samples (the backend's, whose cache already holds the file the reply was about).
    Raises the model layer's AudioError if the audio cannot be decoded.
    """
    if not TIME_TOKEN.search(reply):
        return []
    samples = decode(audio_path, limits)
    duration = len(samples) / SAMPLE_RATE
    times = find_timestamps(reply, max(1, window_count(len(samples), limits)), limits.window_seconds)
    ranges = clip_ranges(times, duration)
    folder = Path(out_dir) / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for n, (start, end) in enumerate(ranges, 1):
        path = folder / f"clip{n}_{start:.2f}-{end:.2f}.wav"
        write_wav(path, samples[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])
        clips.append(Clip(start, end, path))
    logger.info("cut %d clip(s) from %s for %d timestamp(s)", len(clips), Path(audio_path).name, len(times))
    return clips
