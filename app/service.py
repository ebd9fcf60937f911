"""The one conversation service every entry point calls: the page's handlers, ``/chat`` and ``/v1``.

It alone decides

- **the settings of a reply**: :data:`model.params.FALLBACK` <- the checkpoint's ``generation_config``
  <- what the operator set (config file, ``QWEN_DEMO_*``, flags) <- the request (:meth:`ChatService.params`),
  every value checked against the one table :data:`model.params.PARAMS`, and ``max_new_tokens`` against
  the operator's ``max_new_tokens_limit``;
- **admission**: at most ``max_queue_size`` requests wait while one is answered, whichever entry point
  they came through; one more is refused with :class:`BusyError` (the page and ``/chat`` say "busy",
  ``/v1`` answers 429);
- **what a reply is to its callers**: :meth:`ChatService.start` refuses a request at once (a
  :class:`~model.errors.UserFacingError`, logged as one line) or admits it; the admitted reply's
  :meth:`Reply.events` is a sequence of typed events (:class:`Queued`, :class:`Notice`, :class:`Text`,
  then :class:`Finished` or :class:`Failed`) that each adapter renders in its own way.

Nothing here knows about Gradio or HTTP; nothing imports torch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from model.audio import SAMPLE_RATE, AudioLimits, window_count
from model.conversation import BaseTask
from model.errors import UserFacingError
from model.params import SETTINGS, GenerationParams, check_limit, parse_params, resolve

from .backend import ChatBackend, ReplyStreamLike, updates
from .config import DemoConfig

logger = logging.getLogger(__name__)

#: How often a queued request re-checks its place in the worker's queue.
QUEUE_POLL_S = 0.25


class BusyError(UserFacingError):
    """Every place in the queue is taken; the request was not admitted."""

    status = 429


class ServerFault(UserFacingError):
    """Something failed that no input explains; it was logged with its traceback."""

    status = 500


FAULT = "The server failed to answer this request (the error was logged); please try again."


# --------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class Queued:
    """The request waits; ``ahead`` requests come before it."""

    ahead: int


@dataclass(frozen=True)
class Notice:
    """Something the person should know about the reply; ``key`` names a sentence of :mod:`app.i18n`
    ("split": an audio was cut into windows, "dropped": old turns were left out, "length": the reply
    reached its length limit), ``values`` fill it in."""

    key: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Text:
    """More of the reply: ``delta`` is new, ``text`` is the reply so far."""

    delta: str
    text: str


@dataclass(frozen=True)
class Finished:
    """The reply ended: ``reason`` is "stop", "length" or "cancelled"."""

    reason: str
    text: str
    usage: Usage


@dataclass(frozen=True)
class Failed:
    """The reply failed after it was admitted; ``text`` is what had come before."""

    error: UserFacingError
    text: str


Event = Union[Queued, Notice, Text, Finished, Failed]


# ------------------------------------------------------------------------------------------ admission
class Admission:
    """Counts the requests the service has admitted and not yet ended, against one capacity."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def enter(self) -> None:
        with self._lock:
            if self._count >= self.capacity:
                raise BusyError(f"The server is busy: {self._count - 1} request(s) are already waiting for the "
                                "model; please try again in a moment.")
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1


class Reply:
    """One admitted request. Iterate :meth:`events`; ``close()`` (also at the end of the events, or
    leaving a ``with`` block) cancels generation if it is still running and frees the place."""

    def __init__(self, service: "ChatService", stream: ReplyStreamLike, params: GenerationParams):
        self._service = service
        self.stream = stream
        self.params = params
        self._closed = False
        self._lock = threading.Lock()

    @property
    def prepared(self) -> Any:
        return self.stream.prepared

    @property
    def usage(self) -> Usage:
        return Usage(int(self.stream.prompt_tokens or 0), int(self.stream.completion_tokens or 0))

    def events(self, interval_s: float | None = None) -> Iterator[Event]:
        """The reply as events; text updates come at most every ``interval_s`` (default: the config's
        ``stream_interval_ms``; 0 = every piece that has arrived, in one update per read)."""
        interval = self._service.interval_s if interval_s is None else interval_s
        text = ""
        try:
            for audio in self.prepared.audios:
                if audio.windows > 1:
                    yield Notice("split", {"name": audio.source, "seconds": audio.seconds, "windows": audio.windows})
            if self.prepared.dropped_turns:
                yield Notice("dropped", {"turns": self.prepared.dropped_turns})
            while not self.stream.wait_started(QUEUE_POLL_S):
                ahead = self.stream.position
                if ahead is None:
                    break
                yield Queued(ahead)
            for piece in updates(self.stream, interval):
                text += piece
                yield Text(piece, text)
            reason = self.stream.finish_reason or "stop"
            if reason == "error":  # a stream that ended without raising its error (never expected)
                raise ServerFault(FAULT)
            if reason == "length":
                yield Notice("length", {"tokens": self.params.max_new_tokens})
            yield Finished(reason, text, self.usage)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Failed event
            yield Failed(self._service.user_error(exc), text)
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.stream.close()
        finally:
            self._service.admission.leave()

    def __enter__(self) -> "Reply":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- service
def operator_defaults(config: DemoConfig) -> GenerationParams:
    """The generation settings the operator set (config / env / flags); unset ones are None, and so is a
    negative seed (a different one each time)."""
    values = {name: getattr(config, name) for name in SETTINGS}
    return GenerationParams.from_mapping(values | {"seed": config.seed if config.seed >= 0 else None})


class ChatService:
    """One backend and one config; create it once and hand it to every entry point."""

    def __init__(self, backend: ChatBackend, config: DemoConfig):
        self.backend = backend
        self.config = config
        self.limits = AudioLimits(max_seconds=config.max_audio_seconds, max_bytes=config.max_upload_bytes)
        self.interval_s = config.stream_interval_ms / 1000
        self.admission = Admission(config.max_queue_size + 1)  # the one being answered + those waiting
        checkpoint = backend.info.generation_defaults
        #: The settings of a request that sets none: the checkpoint's, then the operator's over them; a
        #: length beyond the limit (the checkpoint's or the fallback's; the config's is checked) is cut to it.
        self.defaults = resolve(checkpoint, operator_defaults(config))
        if self.defaults.max_new_tokens > config.max_new_tokens_limit:
            self.defaults = self.defaults.merged(max_new_tokens=config.max_new_tokens_limit)
        logger.info("generation defaults: %s (checkpoint: %s)", self.defaults.as_dict(), checkpoint.as_dict() or "none")

    @property
    def info(self) -> Any:
        return self.backend.info

    @property
    def is_base(self) -> bool:
        return self.backend.family == "base"

    # ------------------------------------------------------------------------------------ settings
    def params(self, settings: Mapping[str, Any], shown: Mapping[str, str] | None = None) -> GenerationParams:
        """The settings of one reply: the request's ``settings`` (raw values keyed by setting name; None or
        "" = the default; a negative seed = a different one each time) over :attr:`defaults`.

        Raises InvalidParamsError with a sentence naming the setting (as ``shown`` names it)."""
        values = dict(settings)
        seed = values.get("seed")
        if isinstance(seed, (int, float)) and not isinstance(seed, bool) and seed < 0:
            values["seed"] = None
        request = parse_params(values, shown)
        limit = self.config.max_new_tokens_limit
        check_limit(request, limit, (shown or {}).get("max_new_tokens", "max_new_tokens"))
        params = request.over(self.defaults)
        if params.min_new_tokens is not None and params.min_new_tokens > params.max_new_tokens:
            params = params.merged(min_new_tokens=params.max_new_tokens)
        return params

    def base_task(self, task: str | None, language: str | None, timestamps: bool | None,
                  has_text: bool) -> BaseTask | None:
        """The task a base checkpoint is asked (None for a chat checkpoint): empty ``task`` means "free"
        with text and "transcribe" without."""
        if not self.is_base:
            return None
        return BaseTask(task or ("free" if has_text else "transcribe"), language or None, bool(timestamps))

    # ------------------------------------------------------------------------------------- audio
    def decode_audio(self, path: str) -> Any:
        """``path`` as the model decodes it, from the backend's content-keyed cache (raises AudioError)."""
        return self.backend.decode_audio(path, self.limits)

    def audio_seconds(self, path: str) -> float:
        return len(self.decode_audio(path)) / SAMPLE_RATE

    def windows(self, path: str) -> int:
        """How many encoder windows ``path`` becomes (1 when it cannot be decoded: the request says why)."""
        try:
            return max(1, window_count(len(self.decode_audio(path)), self.limits))
        except Exception:  # noqa: BLE001
            return 1

    # ------------------------------------------------------------------------------------- replies
    def start(self, messages: list[dict[str, Any]], params: GenerationParams) -> Reply:
        """Admit a request and queue its reply, or refuse it at once with a UserFacingError (busy, bad
        audio, a conversation beyond the context...)."""
        try:
            self.admission.enter()
        except BusyError as exc:
            raise self.user_error(exc) from None
        try:
            stream = self.backend.stream(messages, params)
        except Exception as exc:  # noqa: BLE001
            self.admission.leave()
            raise self.user_error(exc) from None
        return Reply(self, stream, params)

    def transcribe(self, path: str, *, task: str = "transcribe", language: str | None = None, prompt: str = "",
                   settings: Mapping[str, Any] | None = None, shown: Mapping[str, str] | None = None) -> Any:
        """Admit a transcription (or translation into English) of the recording at ``path`` and return its
        :class:`app.transcription.Transcription`, or refuse it at once with a UserFacingError (busy, an
        unknown language, a file that cannot be decoded or is longer than ``max_transcription_minutes``).
        ``settings`` as for :meth:`params`; the temperature defaults to 0 (greedy) and each window's text
        to at most :data:`app.transcription.TOKENS_PER_WINDOW` tokens."""
        from .transcription import TOKENS_PER_WINDOW, Transcription, check_request, limits_for

        try:
            check_request(task, language)
            values = {"temperature": 0, "max_new_tokens": min(TOKENS_PER_WINDOW, self.config.max_new_tokens_limit)}
            values.update({k: v for k, v in (settings or {}).items() if v is not None})
            params = self.params(values, shown)
        except Exception as exc:  # noqa: BLE001
            raise self.user_error(exc) from None
        try:
            self.admission.enter()
        except BusyError as exc:
            raise self.user_error(exc) from None
        try:
            return Transcription(self, path, task=task, language=language, prompt=prompt, params=params,
                                 limits=limits_for(self.config))
        except Exception as exc:  # noqa: BLE001
            self.admission.leave()
            raise self.user_error(exc) from None

    def user_error(self, exc: BaseException) -> UserFacingError:
        """``exc`` as an error for the person: a refusal is logged as one line, a fault with its traceback."""
        if isinstance(exc, UserFacingError):
            logger.info("refused (%s): %s", exc.status, exc.user_message)
            return exc
        logger.error("unexpected error while answering", exc_info=exc)
        return ServerFault(FAULT)


def service_of(backend_or_service: "ChatBackend | ChatService", config: DemoConfig) -> ChatService:
    """The service to use: the one given, or a new one for a bare backend (tests, library callers)."""
    if isinstance(backend_or_service, ChatService):
        return backend_or_service
    return ChatService(backend_or_service, config)
