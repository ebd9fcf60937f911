"""Typed errors raised by the model layer.

Every error carries ``user_message``: one sentence a person can act on. Callers
(the UI, the HTTP API) show that sentence and keep serving; nothing here needs a
traceback to be understood.
"""

from __future__ import annotations

import os


class UserFacingError(Exception):
    """The one base of every error meant for a person: ``user_message`` (one sentence naming what is
    wrong) and ``status`` (the HTTP status an API answers it with). Every layer's own errors derive
    from it (the model's below, the app's config, API and remote-backend errors), so every entry
    point shows the sentence and keeps serving, and only other exceptions are faults with tracebacks.
    """

    #: HTTP-like status a front end may use (400 bad request, 413 too large, 429 busy, 503 unavailable, 500 server).
    status: int = 500

    def __init__(self, user_message: str, status: int | None = None):
        super().__init__(user_message)
        self.user_message = user_message
        if status is not None:
            self.status = status


def user_message_of(exc: BaseException) -> str | None:
    """The sentence of a user-facing error; None for anything else (a fault)."""
    return exc.user_message if isinstance(exc, UserFacingError) and exc.user_message else None


class WorkerError(UserFacingError):
    """Base class of every error the model layer raises on purpose."""


class AudioError(WorkerError):
    """An audio input could not be used. ``path`` names the file, ``reason`` says why."""

    status = 400

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{os.path.basename(self.path) or self.path}: {reason}")


class AudioDecodeError(AudioError):
    """The file is empty, not audio, or FFmpeg could not decode it."""


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


class NotDownloadedError(CheckpointLoadError):
    """A hub checkpoint that is not downloaded, on a machine whose ``--device auto`` found no GPU: it is
    not fetched by itself (see :func:`model.loading.check_tryout`); the app may serve the tiny one instead."""

    def __init__(self, message: str, checkpoint: str) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class WorkerBusyError(WorkerError):
    """The request queue is full (the worker's own ``max_queue``, or the app's admission control)."""

    status = 429


class WorkerRestartedError(WorkerError):
    """The generation thread had stopped; a new one serves from now on, the request may be sent again."""

    status = 503


class WorkerStoppedError(WorkerError):
    """The worker is shutting down (or has): it takes no more requests."""

    status = 503
