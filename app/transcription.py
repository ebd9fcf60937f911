"""Transcribing (or translating into English) a long recording, window by window, through the chat service.

:meth:`app.service.ChatService.transcribe` admits a job as it admits a chat reply (the same queue
places, so a transcription waits its turn and a busy server refuses it alike) and returns a
:class:`Transcription`. Its :meth:`Transcription.events` decodes the file as a stream
(:func:`model.audio.stream_audio`), cuts it into windows of at most 30 s at pauses
(:class:`model.pauses.PauseWindows`), and asks the model about one window at a time, with the family's
own way of asking: a base checkpoint gets its task prompt (the one its training used), a chat
checkpoint an explicit instruction. Each window is its own request to the worker, queued behind
whatever else is waiting, so chats are answered between the windows of a long job. Events:
:class:`Progress` before and after each window, :class:`SegmentText` as a window's text streams,
:class:`Segment` when a window is done, then :class:`Transcribed` or the service's
:class:`~app.service.Failed`. ``close()`` (Stop, a dropped client) ends the window being answered
within a token and the job with it.

Memory stays flat with the length of the recording: one window and one decoded chunk at a time.
Nothing here imports torch or gradio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from model.audio import AudioLimits, audio_duration, family_pcm, format_duration, stream_audio
from model.conversation import BASE_TASK_LANGUAGES, BaseTask
from model.errors import AudioTooLongError, UserFacingError
from model.params import GenerationParams
from model.pauses import PauseWindows, Window

from .backend import updates
from .timestamps import TIME_TOKEN

if TYPE_CHECKING:
    from .service import ChatService, Failed, Usage

logger = logging.getLogger(__name__)

TASKS = ("transcribe", "translate")
#: The most tokens one window's text may take (30 s of fast speech is about 150 tokens; CJK more).
TOKENS_PER_WINDOW = 448
#: Decoded audio is read in chunks of this length (the windows are cut from them).
CHUNK_SECONDS = 10.0


class TranscriptionError(UserFacingError):
    """A transcription request that cannot be done as asked (an unknown language, task)."""

    status = 400

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message, 400)
        self.param = param


@dataclass(frozen=True)
class Segment:
    """One window's text and where the window lies in the recording (seconds)."""

    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Progress:
    """``done_seconds`` of ``total_seconds`` (None: the container does not say) are done, in ``windows`` windows."""

    done_seconds: float
    total_seconds: float | None
    windows: int


@dataclass(frozen=True)
class SegmentText:
    """More text of segment ``segment`` (streamed as the model writes it)."""

    segment: int
    delta: str


@dataclass(frozen=True)
class Transcribed:
    """The job ended: every segment (silent windows have none), the text joined, the recording's length."""

    text: str
    segments: tuple[Segment, ...]
    duration: float
    usage: "Usage"


Event = Union[Progress, SegmentText, Segment, Transcribed, "Failed"]


def instruction(task: str, language: str | None, prompt: str) -> str:
    """What a chat checkpoint is asked about each window."""
    if task == "translate":
        text = "Translate the speech in this audio into English. Reply with the English translation only."
    else:
        spoken = f" The speech is in {BASE_TASK_LANGUAGES[language]}." if language else ""
        text = ("Transcribe the speech in this audio exactly as it is spoken, in the language it is spoken in."
                f"{spoken} Reply with the transcript only.")
    if prompt.strip():
        text += f" Words or context that may help: {prompt.strip()}"
    return text


def check_request(task: str, language: str | None) -> None:
    if task not in TASKS:
        raise TranscriptionError(f"task must be one of {', '.join(TASKS)}, not {task!r}.", "task")
    if language and language not in BASE_TASK_LANGUAGES:
        raise TranscriptionError(
            f"language must be one of {', '.join(BASE_TASK_LANGUAGES)} (ISO-639-1 codes of the languages these "
            f"models transcribe), not {language!r}.", "language")


class Transcription:
    """One admitted transcription job over ``path``; iterate :meth:`events` once."""

    def __init__(self, service: "ChatService", path: str, *, task: str = "transcribe", language: str | None = None,
                 prompt: str = "", params: GenerationParams, limits: AudioLimits,
                 windows: PauseWindows | None = None):
        self.service = service
        self.path = path
        self.task = task
        self.language = language or None
        self.prompt = prompt
        self.params = params
        self.limits = limits
        self.cutter = windows or PauseWindows()
        self.total_seconds = audio_duration(path)
        if self.total_seconds is not None and self.total_seconds > limits.max_seconds + 0.25:
            raise AudioTooLongError(path, f"the audio is {format_duration(self.total_seconds)} long; the limit for "
                                          f"a transcription is {format_duration(limits.max_seconds, short_whole_minutes=True)}")
        self._chunks = stream_audio(path, limits, pcm=family_pcm(service.info.model_family), chunk_seconds=CHUNK_SECONDS)
        first = next(self._chunks, None)  # a file that cannot be decoded is refused now, before any event
        self._first = [] if first is None else [first]
        self._lock = threading.Lock()
        self._stream: Any = None
        self._closed = False
        self._released = False

    @property
    def timed(self) -> bool:
        """Whether the model is asked to time its words: Qwen-Audio's base model with ``<|timestamps|>``
        (its segments then follow those times, shifted to the recording's)."""
        return self.service.is_base and self.service.info.model_family == "Qwen-Audio" and self.task == "transcribe"

    def messages(self, window: Window) -> list[dict[str, Any]]:
        """The request one window makes of the model (also what a test sends to compare)."""
        audio = {"type": "audio", "audio": window.samples}
        if self.service.is_base:
            task = BaseTask(self.task, self.language if self.task == "transcribe" else "en", self.timed)
            return [{"role": "user", "content": [audio, task.as_item()]}]
        return [{"role": "user", "content": [audio, {"type": "text", "text": instruction(self.task, self.language, self.prompt)}]}]

    def _all_chunks(self) -> Iterator[Any]:
        yield from self._first
        self._first = []
        yield from self._chunks

    def events(self, interval_s: float | None = None) -> Iterator[Event]:
        from .service import Failed, Usage

        interval = self.service.interval_s if interval_s is None else interval_s
        segments: list[Segment] = []
        prompt_tokens = completion_tokens = 0
        done = 0.0
        count = 0
        try:
            yield Progress(0.0, self.total_seconds, 0)
            for window in self.cutter.windows(self._all_chunks()):
                if self._closed:
                    break
                count += 1
                if not window.silent:
                    text = ""
                    with self._lock:
                        if self._closed:
                            break
                        self._stream = self.service.backend.stream(self.messages(window), self.params)
                    stream = self._stream
                    try:
                        for piece in updates(stream, interval):
                            text += piece
                            shown = strip_times(piece)
                            if shown:
                                yield SegmentText(len(segments), shown)
                    finally:
                        stream.close()
                    if self._closed or stream.finish_reason == "cancelled":
                        break
                    if stream.finish_reason == "error":
                        raise RuntimeError("a window's reply ended in error")
                    prompt_tokens += int(stream.prompt_tokens or 0)
                    completion_tokens += int(stream.completion_tokens or 0)
                    ids = tuple(int(i) for i in (getattr(stream, "token_ids", None) or ()))
                    for start, end, words in timed_parts(text, window.start_s, window.end_s):
                        segment = Segment(len(segments), round(start, 3), round(end, 3), words, ids)
                        segments.append(segment)
                        yield segment
                done = window.end_s
                yield Progress(done, self.total_seconds, count)
            if not self._closed:
                joined = " ".join(s.text for s in segments if s.text)
                yield Transcribed(joined, tuple(segments), done, Usage(prompt_tokens, completion_tokens))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Failed event
            yield Failed(self.service.user_error(exc), " ".join(s.text for s in segments))
        finally:
            self.close()

    def close(self) -> None:
        """Stop the job: the window being answered stops within a token; the queue place is freed."""
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
            release, self._released = not self._released, True
        try:
            if stream is not None:
                stream.close()
            self._chunks.close()
        finally:
            if release:
                self.service.admission.leave()

    def __enter__(self) -> "Transcription":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def strip_times(text: str) -> str:
    """``text`` without the model's ``<|2.33|>`` time tokens."""
    return TIME_TOKEN.sub("", text)


def timed_parts(text: str, start: float, end: float) -> list[tuple[float, float, str]]:
    """A window's reply as (start, end, text) parts in the recording's time. A reply with the model's time
    tokens (Qwen-Audio: ``<|0.00|>words<|1.52|><|1.80|>more words<|3.10|>``) gives one part per timed
    stretch, its times shifted by the window's start and kept inside the window; words before the first
    time join the first stretch, and words after a closing time with no opening one start a stretch
    there. A reply without a pair of times is one part: the whole window."""
    pieces = TIME_TOKEN.split(text)  # text, whole seconds, fraction, text, whole seconds, fraction, ...
    times = [float(pieces[i] + (pieces[i + 1] or "")) for i in range(1, len(pieces), 3)]
    after = [pieces[i].strip() for i in range(3, len(pieces), 3)]
    if len(times) < 2:
        return [(start, end, strip_times(text).strip())]
    at = lambda t: min(end, start + t)  # noqa: E731
    parts: list[tuple[float, float, str]] = []
    opened: float | None = None
    words = pieces[0].strip()  # before the first time
    for t, following in zip(times, after):
        if opened is not None and words:  # a stretch closes here
            parts.append((at(opened), at(t), words))
            opened, words = (t, following) if following else (None, "")
        else:  # a stretch opens here (or an empty one reopens)
            opened, words = t, f"{words} {following}".strip()
    if words:
        if opened is not None:
            parts.append((at(opened), end, words))
        elif parts:
            parts[-1] = (*parts[-1][:2], f"{parts[-1][2]} {words}")
    return parts or [(start, end, strip_times(text).strip())]


def limits_for(config: Any) -> AudioLimits:
    """The audio limits of a transcription: its own length limit, the upload size limit."""
    return AudioLimits(max_seconds=config.max_transcription_minutes * 60, max_bytes=config.max_upload_bytes)


__all__ = ["CHUNK_SECONDS", "Progress", "Segment", "SegmentText", "TASKS", "TOKENS_PER_WINDOW", "Transcribed",
           "Transcription", "TranscriptionError", "check_request", "instruction", "limits_for", "to_srt", "to_text", "to_vtt"]


# ------------------------------------------------------------------------------------------- formats
def _clock(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(segments: "tuple[Segment, ...] | list[Segment]") -> str:
    """SubRip subtitles: one numbered cue per segment, ``00:01:02,345 --> 00:01:30,000``."""
    cues = [f"{n}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n" for n, s in enumerate(segments, 1) if s.text]
    return "\n".join(cues)


def to_vtt(segments: "tuple[Segment, ...] | list[Segment]") -> str:
    """WebVTT subtitles: ``WEBVTT``, then one cue per segment, ``00:01:02.345 --> 00:01:30.000``."""
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments if s.text]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_text(segments: "tuple[Segment, ...] | list[Segment]") -> str:
    """The transcript as plain text: one line per segment."""
    return "".join(f"{s.text}\n" for s in segments if s.text)
