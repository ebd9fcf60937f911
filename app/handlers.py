"""Event handlers: values from the page in, a conversation to the backend, display history out.

Each handler copies the history it is given, derives the model-facing conversation from it with
:func:`app.history.to_model_messages`, and returns (or streams) the new display history.

Errors carry the backend's own sentence when a user can act on them (``user_message``); anything else
is logged with its traceback and shown as a short apology. On the page, a bad input is refused by a
validator next to the input and a failed reply becomes a toast (Gradio 6 would cover the whole chat
with a raised error); a new question refused before its answer starts goes back into the input, so
the chat stays as it was. The API raises ``gr.Error``. The input is given back by the ``idle`` step
that follows every outcome (see :mod:`app.events`).

Histories come from the client: every path read from one is checked to lie in Gradio's upload folder
before it is decoded or handed back (:meth:`ChatHandlers.model_messages`, :meth:`ChatHandlers.uploaded`).
"""

from __future__ import annotations

import html
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from model.audio import SAMPLE_RATE, AudioLimits, window_count
from model.params import InvalidParamsError

from .backend import ChatBackend, GenerationParams, updates, user_message_of
from .config import DemoConfig
from .history import (
    BaseTask,
    Message,
    audio_paths,
    paths_outside,
    pop_last_turn,
    to_model_messages,
    without_last_reply,
    without_notes,
)
from .i18n import language_of, say
from .temp_files import TempFiles
from .timestamps import cut_clips, render_timestamps

logger = logging.getLogger(__name__)

#: How often a queued request re-checks its place in the worker's queue.
QUEUE_POLL_S = 0.25


def format_duration(seconds: float) -> str:
    """2.46 -> "0:02.5", 75 -> "1:15.0"."""
    tenths = int(round(seconds * 10))
    minutes, rest = divmod(tenths, 600)
    return f"{minutes}:{rest // 10:02d}.{rest % 10}"


def as_user_error(exc: BaseException, lang: str) -> gr.Error:
    """A ``gr.Error`` for ``exc``: its own sentence if it is one a user can act on, else an apology."""
    if isinstance(exc, gr.Error):
        return exc
    message = user_message_of(exc)
    if message:
        logger.info("request refused: %s", message)
        return gr.Error(message)
    logger.error("unexpected error while answering", exc_info=exc)
    return gr.Error(say("failed", lang))


def make_params(max_new_tokens: Any, temperature: Any, top_p: Any, top_k: Any, repetition_penalty: Any,
                seed: Any) -> GenerationParams:
    """GenerationParams from the settings as the page or the API sends them; seed < 0 or empty = random.

    Raises InvalidParamsError (a sentence naming the setting) for a value that is not a finite number
    or is out of range: the events hand the raw values over (see :mod:`app.events`).
    """
    def number(name: str, value: Any, kind: type) -> Any:
        if value is None or value == "":
            return None
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise InvalidParamsError(f"{name} must be a number, not {value!r}.") from None
        if isinstance(value, bool) or not math.isfinite(result):
            raise InvalidParamsError(f"{name} must be a finite number, not {value!r}.")
        return int(round(result)) if kind is int else result

    seed_value = number("seed", seed, float)
    return GenerationParams(
        max_new_tokens=number("max_new_tokens", max_new_tokens, int),
        temperature=number("temperature", temperature, float),
        top_p=number("top_p", top_p, float),
        top_k=number("top_k", top_k, int),
        repetition_penalty=number("repetition_penalty", repetition_penalty, float),
        seed=None if seed_value is None or seed_value < 0 else int(seed_value),
    )


def busy_updates() -> tuple[Any, ...]:
    """While a reply streams: the input is locked and offers Stop; Regenerate and Undo wait."""
    return (
        gr.MultimodalTextbox(value=None, interactive=False, submit_btn=False, stop_btn=True),
        gr.Button(interactive=True, variant="stop"),
        gr.Button(interactive=False),
        gr.Button(interactive=False),
    )


def idle_updates() -> tuple[Any, ...]:
    """After any outcome (answer, Stop, error, Clear): the input is usable again."""
    return (
        gr.MultimodalTextbox(interactive=True, submit_btn=True, stop_btn=False),
        gr.Button(interactive=False, variant="secondary"),
        gr.Button(interactive=True),
        gr.Button(interactive=True),
    )


def session_of(request: Any) -> str | None:
    """The Gradio session a request belongs to (one per open tab or ``gradio_client.Client``)."""
    return getattr(request, "session_hash", None)


def _file_paths(message: dict) -> list[str]:
    files = [f if isinstance(f, str) else (f.get("path") if isinstance(f, dict) else None)
             for f in message.get("files") or []]
    return [f for f in files if f]


class ChatHandlers:
    """The page's handlers, bound to one backend and one config (no globals)."""

    def __init__(self, backend: ChatBackend, config: DemoConfig, clips_dir: Path, files: TempFiles | None = None):
        self.backend = backend
        self.config = config
        self.clips_dir = Path(clips_dir)
        self.files = files  # told which session uses which file, so that files go when sessions end
        self.limits = AudioLimits(max_seconds=config.max_audio_seconds, max_bytes=config.max_upload_bytes)
        self.is_base = backend.family == "base"

    # ------------------------------------------------------------------ shared with the API
    def model_messages(self, history: Sequence[Message], system_prompt: str, base_task: BaseTask | None,
                       lang: str, session: str | None = None) -> list[Message]:
        """The conversation for the backend; refuses audio that was not uploaded through Gradio, or is gone.

        The audio files are recorded as used by ``session`` (see :mod:`app.temp_files`).
        """
        messages = to_model_messages(history, system_prompt=system_prompt or "", base_task=base_task)
        audios = [item["audio"] for m in messages if isinstance(m["content"], list)
                  for item in m["content"] if item.get("type") == "audio"]
        outside = paths_outside(audios, [get_upload_folder()])
        if outside:
            logger.warning("refused audio outside the upload folder: %s", outside[0])
            raise gr.Error(say("not_uploaded", lang, name=os.path.basename(outside[0])))
        self.use_files(session, audios)
        gone = [path for path in audios if not os.path.isfile(path)]
        if gone:
            logger.info("audio from an earlier turn is no longer on disk: %s", os.path.basename(gone[0]))
            raise gr.Error(say("expired", lang, name=os.path.basename(gone[0])))
        return messages

    def use_files(self, session: str | None, paths: Sequence[str]) -> None:
        if self.files is not None:
            self.files.use(session, paths)

    def end_session(self, request: gr.Request) -> None:
        """Gradio's ``unload``: the tab (or API client) is gone; delete the files only it used."""
        if self.files is not None:
            self.files.end_session(session_of(request))

    def stream_text(self, messages: list[Message], params: GenerationParams, lang: str) -> Iterator[tuple[str, Any]]:
        """Yield ("queued", requests ahead) while waiting, then ("text", reply so far) per piece.

        Closing this generator (Stop, a closed tab, a cancelled API job) closes the backend's stream,
        which cancels the request in the worker.
        """
        try:
            reply = self.backend.stream(messages, params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            raise as_user_error(exc, lang) from None
        with reply:
            for audio in reply.prepared.audios:
                if audio.windows > 1:
                    gr.Info(html.escape(say("split", lang, name=audio.source, seconds=audio.seconds,
                                            windows=audio.windows)))
            if reply.prepared.dropped_turns:
                gr.Info(say("dropped", lang, turns=reply.prepared.dropped_turns))
            while not reply.wait_started(QUEUE_POLL_S):
                ahead = reply.position
                if ahead is None:
                    break
                yield "queued", ahead
            text = ""
            try:
                # At most one update per stream_interval_ms: the words generated meanwhile go out together.
                for piece in updates(reply, self.config.stream_interval_ms / 1000):
                    text += piece
                    yield "text", text
            except Exception as exc:  # noqa: BLE001
                raise as_user_error(exc, lang) from None
            if getattr(reply, "finish_reason", None) == "length" and params.max_new_tokens:
                gr.Info(say("length", lang, tokens=params.max_new_tokens))

    # ------------------------------------------------------------------ page events
    def audio_seconds(self, path: str) -> float:
        """The duration of ``path``, decoded by the backend as the model will decode it (and kept in the
        backend's cache for the reply and its clips); raises the model's AudioError."""
        return len(self.backend.decode_audio(path, self.limits)) / SAMPLE_RATE

    def validate_user_turn(self, message: dict | None, history: list[Message] | None,
                           request: gr.Request) -> tuple[Any, Any]:
        """Before the chat changes: refuse an empty input, or a file that is not usable audio, at the input."""
        lang = language_of(request)
        message = message or {}
        files = _file_paths(message)
        if not (message.get("text") or "").strip() and not files:
            return gr.validate(False, say("empty_input", lang)), gr.validate(True, "")
        for path in files:
            if not os.path.isfile(path):
                return gr.validate(False, say("expired", lang, name=os.path.basename(path))), gr.validate(True, "")
            try:
                self.audio_seconds(path)
            except Exception as exc:  # noqa: BLE001
                return gr.validate(False, as_user_error(exc, lang).message), gr.validate(True, "")
        return gr.validate(True, ""), gr.validate(True, "")

    def add_user_turn(self, message: dict | None, history: list[Message] | None,
                      request: gr.Request) -> tuple[Any, ...]:
        """Echo the user's audio (players labelled with name and duration) and text into the chat; lock the input."""
        history = list(history or [])
        message = message or {}
        files = _file_paths(message)
        self.use_files(session_of(request), files)
        new: list[Message] = [
            {"role": "user", "content": self.audio_message(path, self.audio_seconds(path))} for path in files
        ]
        text = (message.get("text") or "").strip()
        if text:
            new.append({"role": "user", "content": text})
        return (history + new, *busy_updates())

    @staticmethod
    def audio_message(path: str, seconds: float) -> gr.Audio:
        return gr.Audio(path, label=f"{os.path.basename(path)} · {format_duration(seconds)}",
                        show_label=True, buttons=["download"])

    def generation_params(self, max_new_tokens: Any, temperature: Any, top_p: Any, top_k: Any,
                          repetition_penalty: Any, seed: Any) -> GenerationParams:
        """:func:`make_params`, also refusing a reply length beyond ``max_new_tokens_limit``."""
        params = make_params(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
        limit = self.config.max_new_tokens_limit
        if params.max_new_tokens is not None and params.max_new_tokens > limit:
            raise InvalidParamsError(f"max_new_tokens must be at most {limit}, not {params.max_new_tokens}.")
        return params

    def _windows(self, history: Sequence[Message]) -> int:
        """Encoder windows of the audio a reply's timestamps refer to (the latest one): their times are
        shown at the whole file's time."""
        audios = audio_paths(history)
        try:
            return max(1, window_count(len(self.backend.decode_audio(audios[-1], self.limits)), self.limits)) \
                if audios else 1
        except Exception:  # noqa: BLE001 - the request itself reports unusable audio
            return 1

    def _reply_steps(self, history: list[Message], settings: Sequence[Any], task: str | None,
                     language: str | None, timestamps: bool | None, lang: str,
                     session: str | None) -> Iterator[tuple[str, list[Message]]]:
        """The chat at each step of the reply: ("queued" | "text" | "final", display history); raises on failure."""
        system_prompt, *numbers = settings
        params = self.generation_params(*numbers)
        base_task = BaseTask(task or "transcribe", language or None, bool(timestamps)) if self.is_base else None
        messages = self.model_messages(history, system_prompt, base_task, lang, session)
        windows = self._windows(history)
        text = ""
        for kind, value in self.stream_text(messages, params, lang):
            if kind == "queued":
                note = {"title": say("queued", lang, ahead=value), "status": "pending"}
                yield "queued", history + [{"role": "assistant", "content": "", "metadata": note}]
            else:
                text = value
                yield "text", history + [{"role": "assistant", "content": render_timestamps(text, windows)}]
        final = history + ([{"role": "assistant", "content": render_timestamps(text, windows)}] if text else [])
        yield "final", final + self.clip_messages(text, history, lang, session)

    @staticmethod
    def _warn(exc: BaseException, lang: str) -> None:
        error = as_user_error(exc, lang)
        gr.Warning(html.escape(error.message), title=say("error_title", lang), duration=None)

    def respond(self, history: list[Message] | None, system_prompt: str, max_new_tokens: Any, temperature: Any,
                top_p: Any, top_k: Any, repetition_penalty: Any, seed: Any, task: str | None, language: str | None,
                timestamps: bool | None, request: gr.Request) -> Iterator[list[Message]]:
        """Stream the assistant's reply into the chat, then attach clips for any timestamps in it (Regenerate).

        A failure is shown as a toast and the chat keeps what was answered so far (a raised error would
        cover the whole chat in Gradio 6); the ``idle`` step after it gives the input back.
        """
        lang = language_of(request)
        history = without_notes(list(history or []))
        settings = (system_prompt, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
        answered = history
        try:
            for kind, shown in self._reply_steps(history, settings, task, language, timestamps, lang, session_of(request)):
                if kind != "queued":
                    answered = shown
                yield shown
        except Exception as exc:  # noqa: BLE001 - GeneratorExit (Stop) is not an Exception and passes
            self._warn(exc, lang)
            yield answered

    def answer(self, history: list[Message] | None, system_prompt: str, max_new_tokens: Any, temperature: Any,
               top_p: Any, top_k: Any, repetition_penalty: Any, seed: Any, task: str | None, language: str | None,
               timestamps: bool | None, request: gr.Request) -> Iterator[tuple[list[Message], Any]]:
        """:meth:`respond` to a new question; yields (chat, input) updates.

        When the question is refused before the first word of the answer (a prompt beyond the context,
        a busy queue...), it leaves the chat and goes back into the input with its files: the chat is
        as it was before, and the next question is not sent together with the refused one.
        """
        lang = language_of(request)
        history = without_notes(list(history or []))
        settings = (system_prompt, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
        answered: list[Message] | None = None
        try:
            for kind, shown in self._reply_steps(history, settings, task, language, timestamps, lang, session_of(request)):
                if kind != "queued":
                    answered = shown
                yield shown, gr.skip()
        except Exception as exc:  # noqa: BLE001 - GeneratorExit (Stop) is not an Exception and passes
            self._warn(exc, lang)
            popped = pop_last_turn(history) if answered is None else None
            if popped is None:
                yield answered or history, gr.skip()
                return
            rest, text, files = popped
            yield rest, gr.MultimodalTextbox(value={"text": text, "files": self.uploaded(files)})

    @staticmethod
    def uploaded(paths: Sequence[str]) -> list[str]:
        """The paths that lie in Gradio's upload folder and are still there (a client may name any path)."""
        outside = set(paths_outside(paths, [get_upload_folder()]))
        return [p for p in paths if p not in outside and os.path.isfile(p)]

    def clip_messages(self, reply: str, history: Sequence[Message], lang: str,
                      session: str | None = None) -> list[Message]:
        """Assistant messages with a player per time range the reply's timestamps name (may be empty)."""
        audios = audio_paths(history)
        if "<|" not in reply or not audios:
            return []
        try:
            clips = cut_clips(reply, audios[-1], self.clips_dir, self.limits, decode=self.backend.decode_audio)
        except Exception:  # noqa: BLE001 - clips are a bonus; the answer stands without them
            logger.warning("could not cut clips from %s", audios[-1], exc_info=True)
            gr.Warning(say("clip_failed", lang, name=os.path.basename(audios[-1])))
            return []
        self.use_files(session, [str(c.path) for c in clips])
        return [{"role": "assistant", "content": gr.Audio(str(c.path), label=c.label, show_label=True,
                                                            buttons=["download"])} for c in clips]

    @staticmethod
    def validate_regenerate(history: list[Message] | None, request: gr.Request) -> Any:
        if without_last_reply(list(history or [])) is None:
            return gr.validate(False, say("nothing_to_regenerate", language_of(request)))
        return gr.validate(True, "")

    @staticmethod
    def prepare_regenerate(history: list[Message] | None) -> tuple[Any, ...]:
        """Drop the last answer (and its clips) so that :meth:`respond` answers the last question again."""
        return (without_last_reply(list(history or [])) or [], *busy_updates())

    @staticmethod
    def undo(history: list[Message] | None, request: gr.Request) -> tuple[Any, Any]:
        """Remove the last question and its answer, and put the question back into the input."""
        popped = pop_last_turn(list(history or []))
        if popped is None:
            gr.Warning(say("nothing_to_undo", language_of(request)))
            return gr.skip(), gr.skip()
        rest, text, files = popped
        # Files put into the input are copied into Gradio's cache and served back: only uploaded ones.
        kept = ChatHandlers.uploaded(files)
        if len(kept) < len(files):
            refused = next(f for f in files if f not in kept)
            key = "not_uploaded" if paths_outside([refused], [get_upload_folder()]) else "expired"
            logger.warning("undo: left out %s audio: %s", key, refused)
            gr.Warning(html.escape(say(key, language_of(request), name=os.path.basename(refused))))
        return rest, gr.MultimodalTextbox(value={"text": text, "files": kept})

    @staticmethod
    def clear() -> tuple[Any, ...]:
        textbox = gr.MultimodalTextbox(value=None, interactive=True, submit_btn=True, stop_btn=False)
        return ([], textbox, *idle_updates()[1:])

    @staticmethod
    def idle(history: list[Message] | None) -> tuple[Any, ...]:
        """Give the input back; a "waiting" note left by a stopped request is removed."""
        return (without_notes(list(history or [])), *idle_updates())
