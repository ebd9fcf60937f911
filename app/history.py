"""The displayed chat history (Gradio's messages format) and what the model is shown of it.

The chatbot's value is the one source of truth for a session. :func:`to_model_messages` is the one
pure function that derives the model-facing conversation from it; the other helpers here read or
trim that history for Undo and Regenerate. Nothing here touches Gradio, files or the model: values
in, values out.

Display messages are ``{"role": "user"|"assistant", "content": ...}`` where content is a string, one
item or a list of items. Items are text (``{"type": "text", "text": ...}``), files
(``{"type": "file", "file": {"path": ...}}`` or a bare ``{"path": ...}``) or components
(``{"type": "component", "component": "audio", "value": {"path": ...}}``, or a ``gr.Audio`` before
Gradio has serialised it). Gradio shows consecutive messages of one role as one turn; so does this.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from model.conversation import BaseTask

from .timestamps import restore_timestamps

Message = dict[str, Any]


@dataclass
class Turn:
    """Consecutive display messages of one role, read as one turn."""

    role: str
    texts: list[str] = field(default_factory=list)
    audios: list[str] = field(default_factory=list)
    items: list[tuple[str, str]] = field(default_factory=list)  # ("text"|"audio", value) in display order

    @property
    def text(self) -> str:
        return "\n".join(t for t in self.texts if t)


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _path_of(value: Any) -> str | None:
    """The local path inside a file value (``{"path": p}``, FileData, a component's value, or a string)."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    path = _get(value, "path")
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) and path else None


def _items(content: Any) -> list[tuple[str, str]]:
    """``content`` as a list of ("text", text) / ("audio", path) pairs; other items are dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [("text", content)]
    if not isinstance(content, (list, tuple)):
        content = [content]
    out: list[tuple[str, str]] = []
    for item in content:
        if isinstance(item, str):
            out.append(("text", item))
            continue
        if not isinstance(item, dict):  # a component such as gr.Audio, not yet serialised by Gradio
            path = _path_of(getattr(item, "value", None))
            if path:
                out.append(("audio", path))
            continue
        kind = item.get("type")
        if kind == "text" or (kind is None and isinstance(item.get("text"), str)):
            out.append(("text", item.get("text") or ""))
        elif kind == "file" or (kind is None and item.get("file") is not None):
            path = _path_of(item.get("file"))
            if path:
                out.append(("audio", path))
        elif kind == "component" or item.get("component") is not None:
            path = _path_of(item.get("value"))
            if path and item.get("component") in ("audio", None):
                out.append(("audio", path))
        elif kind is None:  # a bare {"path": ...}
            path = _path_of(item)
            if path:
                out.append(("audio", path))
    return out


def message_items(message: Any) -> list[tuple[str, str]]:
    """One display message's content as ("text", text) / ("audio", path) pairs, in display order
    (every content shape the module doc lists; other items are dropped)."""
    return _items(_get(message, "content"))


def is_note(message: Any) -> bool:
    """Status notes (a title in the metadata, e.g. "waiting for the model") are display only."""
    metadata = _get(message, "metadata")
    return bool(metadata and _get(metadata, "title"))


def note(title: str, pending: bool = False) -> Message:
    """A note beside the messages (a long audio split, the length limit reached, Stopped): shown for as long
    as the messages around it are, never sent to the model. ``pending``: a note that only means something
    while its request waits ("waiting for the model", "thinking"), removed once it has an answer."""
    return {"role": "assistant", "content": "", "metadata": {"title": title, "status": "pending" if pending else "done"}}


def note_titles(history: Sequence[Message]) -> list[str]:
    """The titles of the notes in ``history`` (as the page sends it back, with Gradio's extra fields)."""
    return [_get(_get(m, "metadata"), "title") for m in history if is_note(m)]


def is_pending(message: Any) -> bool:
    """A "waiting for the model" note, which only means something while its request waits."""
    metadata = _get(message, "metadata")
    return is_note(message) and _get(metadata, "status") == "pending"


def without_pending(history: Sequence[Message]) -> list[Message]:
    """The history without "waiting" notes (the notes about answers stay)."""
    return [m for m in history if not is_pending(m)]


def turns(history: Iterable[Message]) -> list[Turn]:
    """Group the display history into turns of one role each, keeping items in display order."""
    result: list[Turn] = []
    for message in history:
        role = _get(message, "role")
        if role not in ("user", "assistant"):
            continue
        if is_note(message):  # status notes and "thoughts" are not conversation
            continue
        items = _items(_get(message, "content"))
        if not any(kind == "audio" or value.strip() for kind, value in items):
            continue  # an empty message (e.g. a reply stopped before its first word) separates nothing
        if not result or result[-1].role != role:
            result.append(Turn(role))
        turn = result[-1]
        for kind, value in items:
            turn.items.append((kind, value))
            (turn.audios if kind == "audio" else turn.texts).append(value)
    return result


def to_model_messages(
    history: Sequence[Message],
    *,
    system_prompt: str = "",
    base_task: BaseTask | None = None,
) -> list[Message]:
    """Derive the conversation the model is asked to continue from the displayed history.

    Chat checkpoints (``base_task`` None) get every turn: a system message if ``system_prompt`` is not
    blank, user turns as audio and text items in display order, assistant turns as their text with
    readable timestamps turned back into the model's tokens (assistant audio clips are display only).
    Base checkpoints get one user message: the last turn's audio (or, if it has none, the latest audio
    of the chat) and the task (an item the model's family renders in its own prompt format); the typed
    text is the prompt of the "free" task.
    """
    all_turns = turns(history)
    if base_task is not None:
        return _base_messages(all_turns, base_task)
    messages: list[Message] = []
    if system_prompt and system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt.strip()})
    for turn in all_turns:
        if turn.role == "assistant":
            text = restore_timestamps(turn.text)
            if text.strip():
                messages.append({"role": "assistant", "content": text})
            continue
        content = [
            {"type": "audio", "audio": value} if kind == "audio" else {"type": "text", "text": value}
            for kind, value in turn.items
            if kind == "audio" or value.strip()
        ]
        if content:
            messages.append({"role": "user", "content": content})
    return messages


def _base_messages(all_turns: list[Turn], base_task: BaseTask) -> list[Message]:
    users = [t for t in all_turns if t.role == "user"]
    if not users:
        return []
    last = users[-1]
    audios = last.audios or next(([t.audios[-1]] for t in reversed(users) if t.audios), [])
    task = replace(base_task, prompt=last.text.strip() if base_task.task == "free" else "")
    content: list[dict[str, Any]] = [{"type": "audio", "audio": a} for a in audios]
    content.append(task.as_item())
    return [{"role": "user", "content": content}]


def audio_paths(history: Sequence[Message], role: str = "user") -> list[str]:
    """Every audio path of ``role``'s messages, in order."""
    return [a for t in turns(history) if t.role == role for a in t.audios]


def paths_outside(paths: Iterable[str], roots: Sequence[str]) -> list[str]:
    """The paths that do not resolve to a file inside one of ``roots`` (symlinks and ``..`` resolved)."""
    resolved_roots = [os.path.realpath(r) for r in roots]
    bad = []
    for path in paths:
        real = os.path.realpath(path)
        if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in resolved_roots):
            bad.append(path)
    return bad


def _last_user_index(history: Sequence[Message]) -> int | None:
    for i in range(len(history) - 1, -1, -1):
        if _get(history[i], "role") == "user":
            return i
    return None


def without_last_reply(history: Sequence[Message]) -> list[Message] | None:
    """The history up to the last user turn (its reply dropped), or None if there is no user turn."""
    index = _last_user_index(history)
    return None if index is None else list(history[: index + 1])


def pop_last_turn(history: Sequence[Message]) -> tuple[list[Message], str, list[str]] | None:
    """Remove the last user turn and its reply; return (rest, the turn's text, its audio paths), or None."""
    index = _last_user_index(history)
    if index is None:
        return None
    start = index
    while start > 0 and _get(history[start - 1], "role") == "user":
        start -= 1
    turn = turns(history[start: index + 1])[0]
    return list(history[:start]), turn.text, list(turn.audios)
