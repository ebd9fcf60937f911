"""What the UI needs from a model backend, as structural types.

``model.ModelWorker`` satisfies :class:`ChatBackend` as it is; a remote backend (an HTTP client of a
model server) or a scripted fake in tests can satisfy it too. Nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from model.audio import AudioLimits
from model.params import GenerationParams

__all__ = ["AudioNote", "BackendInfo", "ChatBackend", "GenerationParams", "ReplyStreamLike", "updates"]


class AudioNote(Protocol):
    """What the backend did with one audio of the conversation."""

    source: str  # file name
    seconds: float
    windows: int  # > 1: the audio was split into windows of at most 30 s


class PreparedLike(Protocol):
    audios: Sequence[AudioNote]
    dropped_turns: int  # oldest turns the backend left out to fit the model's history window


class BackendInfo(Protocol):
    checkpoint: str
    family: str  # "chat" or "base"
    model_family: str  # "Qwen2-Audio" or "Qwen-Audio"
    device: str
    random_weights: bool
    generation_defaults: GenerationParams  # what the checkpoint's generation_config sets (unset: None)

    @property
    def label(self) -> str: ...


@runtime_checkable
class ReplyStreamLike(Protocol):
    """Iterating yields the reply's text pieces; ``close()`` cancels the request."""

    @property
    def prepared(self) -> PreparedLike: ...

    @property
    def position(self) -> int | None:
        """Requests ahead of this one (0 while generating, None once finished)."""

    @property
    def finish_reason(self) -> str | None:
        """"stop", "length", "cancelled" or "error" once the stream has ended; None before."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    def wait_started(self, timeout: float | None = None) -> bool: ...

    def take_ready(self, until: float | None = None) -> str:
        """The text of the pieces that have arrived (and, given a ``time.monotonic()`` deadline, arrive before
        it) without waiting for more; "" if none. The end of the reply or an error is left for ``next()``."""

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[str]: ...

    def __next__(self) -> str: ...

    def __enter__(self) -> "ReplyStreamLike": ...

    def __exit__(self, *exc_info: Any) -> Any: ...


@runtime_checkable
class ChatBackend(Protocol):
    """Streams replies to conversations in Qwen2-Audio's message format."""

    @property
    def info(self) -> BackendInfo: ...

    @property
    def family(self) -> str: ...

    def stream(self, messages: Sequence[dict[str, Any]], params: GenerationParams | None = None) -> ReplyStreamLike:
        """Queue a reply. Errors a user can fix raise here or from ``next()`` carrying ``user_message``."""

    def decode_audio(self, path: str, limits: AudioLimits) -> Any:
        """``path`` as 16 kHz mono float32 samples, decoded as the model decodes it and from the same cache
        (so checking a file, sending it and cutting clips from it cost one decode); raises the model
        layer's AudioError with a sentence naming the file."""

    def shutdown(self) -> None:
        """Stop serving: requests still waiting end with a reason; later ``stream()`` calls are refused."""


def updates(reply: Any, interval_s: float = 0.0) -> Iterator[str]:
    """The text of ``reply`` as a web handler sends it: one update per ``next()``, the first at once, later
    ones at most every ``interval_s``.

    Each update is the next piece (waiting for it) joined with every piece already behind it and those
    that arrive until the update is due, so a reply streams at a bounded number of updates per second
    whatever the token rate, and a slow network or server never makes the stream fall behind. The end
    of the reply cuts the wait short.
    """
    due = 0.0
    for piece in reply:
        yield piece + reply.take_ready(due)
        due = time.monotonic() + interval_s
