"""Typed errors raised by the model layer.

Every error carries ``user_message``: one sentence a person can act on. Callers
(the UI, the HTTP API) show that sentence and keep serving; nothing here needs a
traceback to be understood.
"""

from __future__ import annotations

import os


class WorkerError(Exception):
    """Base class of every error the model layer raises on purpose."""

    #: HTTP-like status a front end may use (400 bad request, 413 too large, 503 busy/unavailable, 500 server).
    status: int = 500

    def __init__(self, user_message: str):
        super().__init__(user_message)
        self.user_message = user_message


class AudioError(WorkerError):
    """An audio input could not be used. ``path`` names the file, ``reason`` says why."""

    status = 400

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{os.path.basename(self.path) or self.path}: {reason}")


class AudioDecodeError(AudioError):
    """The file is empty, not audio, or ffmpeg could not decode it."""


class AudioTooLongError(AudioError):
    """The audio is longer than the configured maximum duration."""


class AudioTooLargeError(AudioError):
    """The file is larger than the configured maximum size."""

    status = 413


class ConversationError(WorkerError):
    """The conversation is malformed (unknown role, bad content item, nothing to answer)."""

    status = 400


class ContextTooLongError(WorkerError):
    """The prompt does not fit in the model's context window."""

    status = 400


class GenerationOutOfMemoryError(WorkerError):
    """The device ran out of memory while generating; the worker recovered."""

    status = 503


class GenerationFailedError(WorkerError):
    """Generation raised an unexpected error; it was logged and the worker recovered."""


class CheckpointLoadError(WorkerError):
    """The checkpoint could not be found, downloaded or loaded."""


class WorkerBusyError(WorkerError):
    """The request queue is full."""

    status = 429


class WorkerRestartedError(WorkerError):
    """The generation thread had stopped; a new one serves from now on, the request may be sent again."""

    status = 503


class WorkerStoppedError(WorkerError):
    """The worker is shutting down (or has): it takes no more requests."""

    status = 503
