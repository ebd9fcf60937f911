"""The page's handlers: values from the page in, the conversation service's events out as display history.

Each handler copies the history it is given, derives the model-facing conversation from it with
:func:`app.history.to_model_messages`, asks the :class:`~app.service.ChatService` (the one behind
``/chat`` and ``/v1`` too) for the settings and the reply, and renders the reply's events.

A refusal shows its own sentence; a fault is logged by the service with its traceback and shown as a
short apology. On the page, a bad input is refused by a validator next to the input and a failed
reply becomes a toast (Gradio 6 would cover the whole chat with a raised error); a new question
refused before its answer starts goes back into the input, so the chat stays as it was. The
``/chat`` API raises ``gr.Error``. The input is given back by the ``idle`` step that follows every
outcome (see :mod:`app.events`).

Histories come from the client: every path read from one is checked to lie in Gradio's upload folder
before it is decoded or handed back (:meth:`ChatHandlers.model_messages`, :meth:`ChatHandlers.uploaded`).
"""

from __future__ import annotations

import html
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from model.audio import format_clock
from model.conversation import BaseTask
from model.errors import UserFacingError
from model.params import SETTINGS

from .backend import ChatBackend
from .config import DemoConfig
from .history import (
    Message,
    audio_paths,
    note,
    note_titles,
    paths_outside,
    pop_last_turn,
    to_model_messages,
    without_last_reply,
    without_pending,
)
from .i18n import language_of, say
from .service import ChatService, Failed, Notice, Queued, ServerFault, Text, service_of
from .temp_files import TempFiles
from .timestamps import cut_clips, render_timestamps
from .transcript import export_conversation, import_conversation

logger = logging.getLogger(__name__)

#: How long Stop and Clear wait for a cancelled reply to end, so that nothing it still sends comes after them.
CANCEL_WAIT_S = 5.0



def sentence(error: UserFacingError, lang: str) -> str:
    """What the page says for ``error``: its own sentence, or for a fault the apology in ``lang``."""
    return say("failed", lang) if isinstance(error, ServerFault) else error.user_message


def full_stop(text: str) -> str:
    """``text`` ending as a sentence does (the model's sentences about audio end without a full stop)."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", "。", "！", "？")) else text + "."


def refusal(message: str) -> gr.Error:
    """A ``gr.Error`` for a sentence already logged as one line (Gradio would print a traceback of it)."""
    return gr.Error(message, print_exception=False)


def as_gradio_error(exc: BaseException, service: ChatService, lang: str) -> gr.Error:
    """A ``gr.Error`` for ``exc`` (logged by the service: one line for a refusal, a traceback for a fault)."""
    if isinstance(exc, gr.Error):
        return exc
    return refusal(sentence(service.user_error(exc), lang))


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


def thinking(lang: str) -> Message:
    """The answer's place while it is coming: a pending note, replaced by the queue position or the text."""
    return note(say("thinking", lang), pending=True)


def session_of(request: Any) -> str | None:
    """The Gradio session a request belongs to (one per open tab or ``gradio_client.Client``)."""
    return getattr(request, "session_hash", None)


def _file_paths(message: dict) -> list[str]:
    files = [f if isinstance(f, str) else (f.get("path") if isinstance(f, dict) else None)
             for f in message.get("files") or []]
    return [f for f in files if f]


class ReplyStopped(Exception):
    """The reply was closed by Stop or Clear, whose own update shows the chat: this handler sends nothing more."""


class ChatHandlers:
    """The page's handlers, bound to one backend and one config (no globals)."""

    def __init__(self, service: ChatService | ChatBackend, config: DemoConfig, clips_dir: Path,
                 files: TempFiles | None = None):
        self.service = service_of(service, config)
        self.config = config
        self.clips_dir = Path(clips_dir)
        self.files = files  # told which session uses which file, so that files go when sessions end
        self._live: dict[str | None, Any] = {}  # the reply each session is streaming (for Stop and Clear)
        self._refused: dict[str | None, dict[str, str]] = {}  # per session: refused attachment -> why
        self._live_lock = threading.Lock()
        self._phase: dict[str | None, str] = {}  # per session with a live reply: "thinking" or "answering"
        self._started: dict[str | None, int] = {}  # per session: replies started so far
        self.saved_dir = self.clips_dir.parent / "conversations"  # saved and loaded conversations
        self.saved_dir.mkdir(parents=True, exist_ok=True)

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
            raise refusal(say("not_uploaded", lang, name=os.path.basename(outside[0])))
        self.use_files(session, audios)
        gone = [path for path in audios if not os.path.isfile(path)]
        if gone:
            logger.info("audio from an earlier turn is no longer on disk: %s", os.path.basename(gone[0]))
            raise refusal(say("expired", lang, name=os.path.basename(gone[0])))
        return messages

    def use_files(self, session: str | None, paths: Sequence[str]) -> None:
        if self.files is not None:
            self.files.use(session, paths)

    def end_session(self, request: gr.Request) -> None:
        """Gradio's ``unload``: the tab (or API client) is gone; delete the files only it used."""
        self._refused.pop(session_of(request), None)
        self._started.pop(session_of(request), None)
        if self.files is not None:
            self.files.end_session(session_of(request))

    def settings(self, values: Sequence[Any]) -> Any:
        """The page's (or ``/chat``'s) setting values, in :data:`model.params.SETTINGS` order, as the
        service's GenerationParams (raises InvalidParamsError naming the setting)."""
        return self.service.params(dict(zip(SETTINGS, values)))

    def reply_text(self, messages: list[Message], params: Any, lang: str,
                   session: str | None = None) -> Iterator[tuple[str, Any]]:
        """The service's reply as ("queued", requests ahead) while it waits, ("text", reply so far) and
        ("notice", Notice); a failure raises ``gr.Error``.

        Closing this generator (Stop, a closed tab, a cancelled API job) closes the reply, which cancels
        the request in the worker.
        """
        try:
            reply = self.service.start(messages, params)
        except UserFacingError as exc:
            raise refusal(sentence(exc, lang)) from None
        done = threading.Event()
        with self._live_lock:
            self._live[session] = (reply, done)
            self._phase[session] = "thinking"
            self._started[session] = self._started.get(session, 0) + 1
        try:
            with reply:
                for event in reply.events():
                    if isinstance(event, Queued):
                        yield "queued", event.ahead
                    elif isinstance(event, Text):
                        self._phase[session] = "answering"
                        yield "text", event.text
                    elif isinstance(event, Notice):
                        yield "notice", event
                    elif isinstance(event, Failed):
                        raise refusal(sentence(event.error, lang))
                    elif event.reason == "cancelled":  # Stop or Clear closed it: they show what comes next
                        raise ReplyStopped()
        finally:
            with self._live_lock:
                if self._live.get(session, (None,))[0] is reply:
                    del self._live[session]
                    self._phase.pop(session, None)
            done.set()

    def started(self, session: str | None) -> int:
        """How many replies ``session`` has started (voice mode tells from it that its question got going)."""
        return self._started.get(session, 0)

    def phase(self, session: str | None) -> str | None:
        """"thinking" or "answering" while ``session`` has a reply under way (voice mode's status), else None."""
        return self._phase.get(session)

    def _end_live_reply(self, session: str | None) -> bool:
        """Stop the reply ``session`` is streaming, and wait (bounded) until its handler has finished, so
        that nothing it would still send comes after Stop's or Clear's own update; whether there was one."""
        with self._live_lock:
            reply, done = self._live.get(session, (None, None))
        if reply is None:
            return False
        reply.close()  # generation stops within a token; the handler sends nothing more
        if not done.wait(CANCEL_WAIT_S):
            logger.warning("the handler of a stopped reply had not finished after %.0f s", CANCEL_WAIT_S)
        return True

    def audio_seconds(self, path: str) -> float:
        """The duration of ``path``, decoded by the backend as the model will decode it (and kept in the
        backend's cache for the reply and its clips); raises the model's AudioError."""
        return self.service.audio_seconds(path)

    def _refusal_of(self, path: str, lang: str) -> str | None:
        """Why the attached file ``path`` cannot be used (a sentence naming it), or None."""
        if not os.path.isfile(path):
            return say("expired", lang, name=os.path.basename(path))
        try:
            self.audio_seconds(path)
        except Exception as exc:  # noqa: BLE001
            return as_gradio_error(exc, self.service, lang).message
        return None

    def _without_refused(self, message: dict, request: gr.Request) -> tuple[list[str], list[str]]:
        """The message's files less those refused earlier in this session, and why each of those was."""
        refused = self._refused.get(session_of(request), {})
        paths = _file_paths(message)
        return [p for p in paths if p not in refused], [refused[p] for p in paths if p in refused]

    def validate_user_turn(self, message: dict | None, history: list[Message] | None,
                           request: gr.Request) -> tuple[Any, Any]:
        """Before the chat changes: refuse an empty input, or a file that is not usable audio, at the input.

        A refused file is remembered for the session: the next send goes without it (a note in the chat
        says so) instead of being refused again while the file still sits in the input."""
        lang = language_of(request)
        message = message or {}
        files, left = self._without_refused(message, request)
        text = (message.get("text") or "").strip()
        if not text and not files:
            return gr.validate(False, left[0] if left else say("empty_input", lang)), gr.validate(True, "")
        for path in files:
            reason = self._refusal_of(path, lang)
            if reason is not None:
                self._refused.setdefault(session_of(request), {})[path] = reason
                return gr.validate(False, f"{full_stop(reason)} {say('refused_file', lang)}"), gr.validate(True, "")
        return gr.validate(True, ""), gr.validate(True, "")

    def attachments(self, paths_json: str | None, request: gr.Request) -> str:
        """What the input holds, before it is sent (its file paths as a JSON list, from the browser): each
        attached clip by name and duration with a player, or the reason it cannot be used. Decoding it now
        (into the backend's cache) also spares the send its decode, so the question shows at once. Only
        uploaded files are decoded (a client may name any path)."""
        try:
            paths = [p for p in json.loads(paths_json or "[]") if isinstance(p, str)]
        except (ValueError, TypeError):
            paths = []
        if not paths:
            return ""
        lang = language_of(request)
        rows = []
        for path in paths:
            name = html.escape(os.path.basename(path))
            reason = None
            if not self.uploaded([path]):
                reason = say(self.not_uploaded_key(path), lang, name=os.path.basename(path))
            else:
                try:
                    seconds = self.audio_seconds(path)
                except Exception as exc:  # noqa: BLE001 - said beside the file (the sentence names it); the send says it again
                    reason = say("unusable", lang, reason=full_stop(as_gradio_error(exc, self.service, lang).message))
            if reason is not None:
                rows.append(f'<li class="unusable"><span class="why">{html.escape(reason)}</span></li>')
                continue
            src = html.escape("gradio_api/file=" + path, quote=True)
            listen = html.escape(say("listen", lang, name=os.path.basename(path)), quote=True)
            rows.append(f'<li><span class="name">{name}</span> <span class="duration">{format_clock(seconds, 1)}</span>'
                        f' <audio controls preload="none" src="{src}" aria-label="{listen}"></audio></li>')
        title = html.escape(say("attached", lang))
        return f'<ul class="attached-files" aria-label="{title}">{"".join(rows)}</ul>'

    def add_user_turn(self, message: dict | None, history: list[Message] | None,
                      request: gr.Request) -> tuple[Any, ...]:
        """Echo the user's audio (players labelled with name and duration) and text into the chat; lock the input.
        Files refused earlier are left out, with a note naming each."""
        history = list(history or [])
        message = message or {}
        files, skipped = self._without_refused(message, request)
        self.use_files(session_of(request), files)
        new: list[Message] = [
            {"role": "user", "content": self.audio_message(path, self.audio_seconds(path))} for path in files
        ]
        text = (message.get("text") or "").strip()
        if text:
            new.append({"role": "user", "content": text})
        lang = language_of(request)
        notes = [note(say("left_out", lang, reason=reason)) for reason in skipped]
        # The answer's place shows at once that it is coming (the reply replaces this note).
        return (history + new + notes + [thinking(lang)], *busy_updates())

    @staticmethod
    def audio_message(path: str, seconds: float, name: str | None = None) -> gr.Audio:
        return gr.Audio(path, label=f"{name or os.path.basename(path)} · {format_clock(seconds, 1)}",
                        show_label=True, buttons=["download"])

    def _reply_steps(self, history: list[Message], settings: Sequence[Any], task: str | None,
                     language: str | None, timestamps: bool | None, lang: str,
                     session: str | None) -> Iterator[tuple[str, list[Message]]]:
        """The chat at each step of the reply: ("queued" | "text" | "final", display history); raises on failure."""
        system_prompt, *values = settings
        params = self.settings(values)
        # The page's free task needs a typed prompt; without one it transcribes.
        base_task = self.service.base_task(task or "transcribe", language, timestamps, has_text=True)
        messages = self.model_messages(history, system_prompt, base_task, lang, session)
        audios = audio_paths(history)
        windows = self.service.windows(audios[-1]) if audios else 1
        yield "queued", history + [thinking(lang)]
        text = ""
        before: list[Message] = []  # notes about the question's audio, shown between it and the answer
        after: list[Message] = []  # notes about the answer (its length limit, old turns left out)
        for kind, value in self.reply_text(messages, params, lang, session):
            if kind == "queued":
                yield "queued", history + before + [note(say("queued", lang, ahead=value), pending=True)]
            elif kind == "notice":
                shown = note(say(value.key, lang, **value.values))
                if value.key != "split":
                    after.append(shown)
                elif shown["metadata"]["title"] not in note_titles(history):  # once, beside the turn that brought it
                    before.append(shown)
                if before and not text:
                    yield "queued", history + before
            else:
                text = value
                yield "text", history + before + [{"role": "assistant", "content": render_timestamps(text, windows)}]
        answer = [{"role": "assistant", "content": render_timestamps(text, windows)}] if text else []
        yield "final", history + before + answer + after + self.clip_messages(text, history, lang, session)

    def _reply(self, history: list[Message] | None, settings: Sequence[Any], base: Sequence[Any], request: gr.Request,
               *, give_back: bool) -> Iterator[tuple[list[Message], Any]]:
        """The chat at each step of a reply, with an update of the input; on failure a toast, and the chat
        keeps what was answered so far. ``give_back``: a question refused before the first word of its
        answer (beyond the context, busy...) leaves the chat and goes back into the input with its files,
        so the chat is as it was and the next question is not sent together with the refused one."""
        lang = language_of(request)
        history = without_pending(list(history or []))
        answered: list[Message] | None = None
        try:
            for kind, shown in self._reply_steps(history, settings, *base, lang, session_of(request)):
                if kind != "queued":
                    answered = shown
                yield shown, gr.skip()
        except ReplyStopped:
            return
        except Exception as exc:  # noqa: BLE001 - GeneratorExit (Stop) is not an Exception and passes
            message = as_gradio_error(exc, self.service, lang).message
            gr.Warning(html.escape(message), title=say("error_title", lang), duration=None)
            popped = pop_last_turn(history) if give_back and answered is None else None
            if popped is None:
                yield answered or history, gr.skip()
                return
            rest, text, files = popped
            yield rest, gr.MultimodalTextbox(value={"text": text, "files": self.uploaded(files)})

    def respond(self, history: list[Message] | None, system_prompt: str, max_new_tokens: Any, temperature: Any,
                top_p: Any, top_k: Any, repetition_penalty: Any, seed: Any, task: str | None, language: str | None,
                timestamps: bool | None, request: gr.Request) -> Iterator[list[Message]]:
        """Answer the last question again (Regenerate): the chat at each step, clips for any timestamps."""
        settings = (system_prompt, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
        for chat, _ in self._reply(history, settings, (task, language, timestamps), request, give_back=False):
            yield chat

    def answer(self, history: list[Message] | None, system_prompt: str, max_new_tokens: Any, temperature: Any,
               top_p: Any, top_k: Any, repetition_penalty: Any, seed: Any, task: str | None, language: str | None,
               timestamps: bool | None, request: gr.Request) -> Iterator[tuple[list[Message], Any]]:
        """Answer a new question; yields (chat, input) updates (a refused question goes back into the input)."""
        settings = (system_prompt, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
        yield from self._reply(history, settings, (task, language, timestamps), request, give_back=True)

    @staticmethod
    def not_uploaded_key(path: str) -> str:
        """Why a path that :meth:`uploaded` left out cannot be used: the message key ("not_uploaded" for a
        path outside Gradio's upload folder, "expired" for an upload deleted since)."""
        return "not_uploaded" if paths_outside([path], [get_upload_folder()]) else "expired"

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
            clips = cut_clips(reply, audios[-1], self.clips_dir, self.service.limits, decode=self.service.backend.decode_audio)
        except Exception:  # noqa: BLE001 - clips are a bonus; the answer stands without them
            logger.warning("could not cut clips from %s", audios[-1], exc_info=True)
            gr.Warning(say("clip_failed", lang, name=os.path.basename(audios[-1])))
            return []
        self.use_files(session, [str(c.path) for c in clips])
        return [{"role": "assistant", "content": gr.Audio(str(c.path), label=c.label, show_label=True,
                                                            buttons=["download"])} for c in clips]

    @staticmethod
    def example(selected: gr.SelectData) -> Any:
        """An example clicked in the empty chat: its question and clips fill the input, to send or change."""
        value = selected.value if isinstance(selected.value, dict) else {}
        files = [f.get("path") if isinstance(f, dict) else f for f in value.get("files") or []]
        return gr.MultimodalTextbox(value={"text": value.get("text") or "", "files": [f for f in files if f]})

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
            key = ChatHandlers.not_uploaded_key(refused)
            logger.warning("undo: left out %s audio: %s", key, refused)
            gr.Warning(html.escape(say(key, language_of(request), name=os.path.basename(refused))))
        return rest, gr.MultimodalTextbox(value={"text": text, "files": kept})

    def edit(self, history: list[Message] | None, edited: gr.EditData, request: gr.Request) -> tuple[Any, ...]:
        """An earlier question edited in the chat: the conversation goes on from there (what followed it is
        dropped and the edited question answered). An edit that leaves the question empty is undone."""
        history = without_pending(list(history or []))
        index = edited.index[0] if isinstance(edited.index, (list, tuple)) else edited.index
        text = (edited.value if isinstance(edited.value, str) else "").strip()
        if not isinstance(index, int) or not 0 <= index < len(history) or history[index].get("role") != "user":
            raise refusal(say("not_editable", language_of(request)))
        if not text:
            raise refusal(say("empty_input", language_of(request)))
        end = index + 1  # the rest of the edited turn (its other user messages) stays with it
        while end < len(history) and history[end].get("role") == "user":
            end += 1
        edited_turn = history[:index] + [{"role": "user", "content": text}] + history[index + 1: end]
        return (edited_turn + [thinking(language_of(request))], *busy_updates())

    def save(self, history: list[Message] | None, request: gr.Request) -> str:
        """The conversation as a zip (conversation.json, transcript.md and its audio), for the browser to download."""
        history = list(history or [])
        lang = language_of(request)
        if not any(m.get("role") == "user" for m in history):
            raise refusal(say("nothing_to_save", lang))
        try:
            data = export_conversation(history, model_label=self.service.info.label, audio_seconds=self.audio_seconds,
                                       allowed_roots=[get_upload_folder()])
        except UserFacingError as exc:
            raise refusal(sentence(exc, lang)) from None
        folder = Path(tempfile.mkdtemp(prefix="saved-", dir=self.saved_dir))
        path = folder / f"conversation-{time.strftime('%Y%m%d-%H%M%S')}.zip"
        path.write_bytes(data)
        self.use_files(session_of(request), [str(path)])
        return str(path)

    def load(self, upload: Any, request: gr.Request) -> tuple[Any, ...]:
        """A conversation saved by :meth:`save`, loaded into the chat in place of the current one (a reply
        being written is stopped first). A file that is not one says why, naming it; the chat stays."""
        lang = language_of(request)
        path = upload if isinstance(upload, str) else getattr(upload, "name", None) or (upload or {}).get("path")
        if not path:
            return (gr.skip(),) * 5
        self._end_live_reply(session_of(request))
        try:
            loaded = import_conversation(path, self.saved_dir, max_bytes=self.config.max_upload_mb * 1024 * 1024)
        except UserFacingError as exc:
            gr.Warning(html.escape(sentence(exc, lang)), title=say("load_failed", lang), duration=None)
            return (gr.skip(), *idle_updates())
        history: list[Any] = []
        for item in loaded:
            if item.note is not None:
                history.append(note(item.note))
            elif item.audio is not None:
                self.use_files(session_of(request), [item.audio])
                try:
                    history.append({"role": item.role, "content": self.audio_message(item.audio, self.audio_seconds(item.audio),
                                                                                       item.name)})
                except Exception as exc:  # noqa: BLE001 - the rest of the conversation still loads
                    history.append(note(say("left_out", lang, reason=as_gradio_error(exc, self.service, lang).message)))
            else:
                history.append({"role": item.role, "content": item.text or ""})
        return (history, *idle_updates())

    def clear(self, request: gr.Request) -> tuple[Any, ...]:
        """Empty the chat in one click, also while an answer streams: after the cancelled reply has ended."""
        self._end_live_reply(session_of(request))
        textbox = gr.MultimodalTextbox(value=None, interactive=True, submit_btn=True, stop_btn=False)
        return ([], textbox, *idle_updates()[1:])

    def stop(self, history: list[Message] | None, request: gr.Request) -> tuple[Any, ...]:
        """Stop: the chat as the person saw it at the click (nothing generated after it is shown), the cut
        answer marked as stopped, the input given back."""
        stopped = self._end_live_reply(session_of(request))
        history = without_pending(list(history or []))
        if stopped:
            history.append(note(say("stopped", language_of(request))))
        return (history, *idle_updates())

    @staticmethod
    def idle(history: list[Message] | None) -> tuple[Any, ...]:
        """Give the input back; a "waiting" note left by a stopped request is removed. The chat is left
        alone otherwise: this runs after every reply, also one that Stop or Clear has just replaced."""
        history = list(history or [])
        kept = without_pending(history)
        return (kept if len(kept) < len(history) else gr.skip(), *idle_updates())
