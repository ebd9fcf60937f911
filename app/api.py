"""The named streaming API ``/chat`` for gradio_client and HTTP clients.

``client.submit(message={"text": ..., "files": [handle_file(p)]}, history=[...], system_prompt=...,
max_new_tokens=..., temperature=..., top_p=..., top_k=..., repetition_penalty=..., seed=...,
api_name="/chat")`` streams the reply so far, as a string, at every step (base checkpoints also take
``task``, ``language`` and ``timestamps``). ``history`` holds the earlier
turns in Gradio's messages format with audio items ``{"type": "file", "file": handle_file(p)}``; audio
that was not uploaded through Gradio is refused. The parameter names below are the API's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from model.errors import UserFacingError

from .handlers import ChatHandlers, ReplyStopped, as_gradio_error, session_of
from .history import Message
from .i18n import language_of

logger = logging.getLogger(__name__)


HISTORY_FORMAT = ('[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi!"}] (content: a string, '
                  'or a list of {"type": "text", "text": ...} and {"type": "file", "file": handle_file(path)} items)')


def checked_history(history: Any) -> list[Message]:
    """``history`` as the API documents it, or a UserFacingError saying which message is not."""
    if history is None or history == "":
        return []
    if not isinstance(history, list):
        raise UserFacingError(f"history must be a list of messages such as {HISTORY_FORMAT}.", 400)
    for i, message in enumerate(history):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant") \
                or not isinstance(message.get("content"), (str, list, dict)):
            raise UserFacingError(f"history[{i}] is not a message such as {HISTORY_FORMAT}.", 400)
    return list(history)


def user_turn_messages(message: dict | None) -> list[Message]:
    """The ``message`` argument as display messages: one per audio file, then the text."""
    message = message or {}
    out: list[Message] = []
    for f in message.get("files") or []:
        path = f if isinstance(f, str) else (f or {}).get("path")
        if path:
            out.append({"role": "user", "content": [{"type": "file", "file": {"path": path}}]})
    text = (message.get("text") or "").strip()
    if text:
        out.append({"role": "user", "content": [{"type": "text", "text": text}]})
    return out


class ChatApi:
    """``/chat``: the same conversation rules as the page, without the page's display steps."""

    def __init__(self, handlers: ChatHandlers):
        self.handlers = handlers

    def chat(
        self,
        message: dict,
        history: list,
        system_prompt: str,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        repetition_penalty: float,
        seed: int,
        task: str,
        language: str,
        timestamps: bool,
        request: gr.Request,
    ) -> Iterator[str]:
        """Answer ``message`` after ``history``; yields the reply so far at every step. temperature=0 is greedy.

        ``task`` / ``language`` / ``timestamps`` are for base checkpoints (see ``model.BASE_TASKS``): empty
        ``task`` means "free" with text, "transcribe" without; chat checkpoints ignore them."""
        lang = language_of(request)
        service = self.handlers.service
        turn = user_turn_messages(message)
        try:
            conversation = checked_history(history) + turn
            if not turn:
                raise UserFacingError("message needs text or at least one audio file.", 400)
            params = self.handlers.settings((max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed))
            base_task = service.base_task(task, language, timestamps, has_text=bool((message.get("text") or "").strip()))
            messages = self.handlers.model_messages(conversation, system_prompt, base_task, lang,
                                                    session_of(request))
        except Exception as exc:  # noqa: BLE001
            raise as_gradio_error(exc, service, lang) from None
        logger.info("api /chat: %d message(s), %d earlier", len(messages), len(history or []))
        steps = 0
        try:
            for kind, value in self.handlers.reply_text(messages, params, lang, session_of(request)):
                if kind == "text":
                    steps += 1
                    yield value
        except ReplyStopped:  # the same session's page pressed Stop or Clear
            return
        if steps == 0:
            yield ""
