"""Conversations in, for every model family: validation, the audio they carry, and the base-model tasks.

Messages look like ``[{"role": "system"|"user"|"assistant", "content": str | [item, ...]}]`` where an
item is ``{"type": "audio", "audio": path_or_16k_array}``, ``{"type": "text", "text": str}`` or, for
base checkpoints, ``{"type": "task", "task": "transcribe", "language": "en", "timestamps": False,
"prompt": ""}`` (see :class:`BaseTask`).

Each family renders a validated conversation in its own prompt format (``model.families``); what is
common lives here: :func:`validate_messages`, and :class:`AudioCollector`, which decodes every audio
of a conversation (several at once), cuts audio longer than one encoder window (30 s) into
consecutive windows and gives each window a content key for the caches.

User text is always text: no family ever reads a file or URL named in text, and text a user typed
never becomes a control token.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, AudioLimits, split_windows
from .caches import array_digest, file_digest
from .errors import AudioDecodeError, ConversationError

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")

#: Languages the base models' tasks offer, by code and name (the eight of Qwen-Audio's tokenizer).
BASE_TASK_LANGUAGES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
}
#: Tasks of the base checkpoints: transcribe (optionally with timestamps), translate into a language,
#: caption a sound, or a free prompt (Qwen-Audio: a question about the audio).
BASE_TASKS = ("transcribe", "translate", "caption", "free")


@dataclass(frozen=True)
class BaseTask:
    """What a base checkpoint is asked to do with its one audio.

    ``language``: the spoken language for ``transcribe`` (None: the model detects it), the target
    language for ``translate`` (None: English). ``timestamps``: ask for ``<|2.33|>``-style times
    (Qwen-Audio only). ``prompt``: the text of a ``free`` task.
    """

    task: str = "transcribe"
    language: str | None = None
    timestamps: bool = False
    prompt: str = ""

    def __post_init__(self) -> None:
        if self.task not in BASE_TASKS:
            raise ConversationError(f"Unknown task {self.task!r}; choose one of {', '.join(BASE_TASKS)}.")
        if self.language is not None and self.language not in BASE_TASK_LANGUAGES:
            raise ConversationError(
                f"Unknown language {self.language!r}; choose one of {', '.join(BASE_TASK_LANGUAGES)}."
            )

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "BaseTask":
        """The task a ``{"type": "task", ...}`` content item names (ConversationError if it is malformed)."""
        language = item.get("language") or None
        prompt = item.get("prompt") or ""
        if not isinstance(prompt, str) or (language is not None and not isinstance(language, str)):
            raise ConversationError("A task item needs a text prompt and a language code.")
        return cls(str(item.get("task") or "transcribe"), language, bool(item.get("timestamps", False)), prompt)

    def as_item(self) -> dict[str, Any]:
        return {"type": "task", "task": self.task, "language": self.language, "timestamps": self.timestamps,
                "prompt": self.prompt}


@dataclass(frozen=True)
class AudioInfo:
    """What was done with one audio of the conversation."""

    source: str  # the file name, or "<array>" for audio passed as samples
    seconds: float  # duration as decoded (before padding)
    windows: int  # number of ≤30 s windows it was split into (1 for short audio)


@dataclass
class PreparedPrompt:
    """A conversation rendered for one family: the prompt and the audio windows in order.

    ``text`` is the rendered prompt as text (for logs and tests); families that build token ids
    directly also fill ``ids`` (each audio window's span already in place).
    """

    text: str
    windows: list[np.ndarray] = field(default_factory=list)
    audios: list[AudioInfo] = field(default_factory=list)
    #: A content key per window (the source's content hash + the window's index), for caches.
    window_keys: list[str] = field(default_factory=list)
    ids: list[int] | None = None
    #: Oldest turns left out so that the prompt fits the family's history window (Qwen-Audio-Chat: 6144 tokens).
    dropped_turns: int = 0


def _kind(item: dict[str, Any]) -> str | None:
    return item.get("type") or ("audio" if "audio" in item else "text" if "text" in item else None)


def is_audio(item: dict[str, Any]) -> bool:
    return _kind(item) == "audio"


def is_task(item: dict[str, Any]) -> bool:
    return _kind(item) == "task"


def validate_messages(messages: Sequence[dict[str, Any]]) -> None:
    """Refuse a malformed conversation with a ConversationError naming the message."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConversationError("The conversation is empty: send a message or an audio.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConversationError(f"Message {i + 1} needs a role of {', '.join(ROLES)}.")
        if message["role"] == "system" and i != 0:
            raise ConversationError("Only the first message may be a system prompt.")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, (list, tuple)):
            raise ConversationError(f"Message {i + 1} has content that is neither text nor a list of items.")
        for item in content:
            if not isinstance(item, dict):
                raise ConversationError(f"Message {i + 1} has an item that is not a dict: {type(item).__name__}.")
            kind = _kind(item)
            if kind == "audio":
                if message["role"] != "user":
                    raise ConversationError(f"Message {i + 1}: only user messages may carry audio.")
                if item.get("audio") is None:
                    raise ConversationError(f"Message {i + 1} has an audio item without audio.")
            elif kind == "text":
                if not isinstance(item.get("text"), str):
                    raise ConversationError(f"Message {i + 1} has a text item without text.")
            elif kind == "task":
                if message["role"] != "user":
                    raise ConversationError(f"Message {i + 1}: only user messages may carry a task.")
                BaseTask.from_item(item)
            else:
                raise ConversationError(f"Message {i + 1} has an item of unknown type {item.get('type')!r}.")
    if messages[-1]["role"] != "user":
        raise ConversationError("The conversation must end with a user message to answer.")
    last = messages[-1]["content"]
    if isinstance(last, str) and not last.strip() or isinstance(last, (list, tuple)) and not any(
        is_audio(item) or is_task(item) or item.get("text", "").strip() for item in last
    ):
        raise ConversationError("The last message is empty: type a question or attach an audio.")


def message_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's content as a list of items (a string becomes one text item)."""
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _audio_source(audio: Any) -> str:
    if isinstance(audio, np.ndarray):
        return "<array>"
    return os.fspath(audio)


@dataclass
class CollectedAudio:
    """One audio of the conversation, decoded and cut into windows."""

    info: AudioInfo
    windows: list[np.ndarray]
    keys: list[str]


class AudioCollector:
    """Decodes and windows the audios of a conversation. ``decode`` turns a path into 16 kHz mono float32."""

    def __init__(self, decode: Callable[[str, AudioLimits], np.ndarray], limits: AudioLimits,
                 digest: Callable[[str], str] | None = None):
        self._decode = decode
        self._digest = digest or file_digest
        self.limits = limits

    def decode(self, path: str | os.PathLike, limits: AudioLimits | None = None) -> np.ndarray:
        """``path`` decoded as this family's model uses it, through the same (cached) decoder."""
        return self._decode(os.fspath(path), limits or self.limits)

    def _load(self, audio: Any) -> np.ndarray:
        if isinstance(audio, np.ndarray):
            samples = np.asarray(audio, dtype=np.float32).reshape(-1)
            if samples.size == 0:
                raise AudioDecodeError("<array>", "the audio has no samples")
            return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0).clip(-1.0, 1.0)
        return self._decode(os.fspath(audio), self.limits)

    def _load_all(self, sources: Sequence[Any]) -> list[np.ndarray]:
        """Decode every audio in conversation order; the first unusable one is the error raised. One after
        the other: decoding runs in this process (model.audio), where threads would only wait for each
        other (measured: four 60 s mp3s take 0.3 s one by one and 0.9 s in four threads on 2 cores)."""
        return [self._load(source) for source in sources]

    def collect(self, sources: Sequence[Any]) -> list[CollectedAudio]:
        """Each source (a path or samples) decoded and cut into windows, in order."""
        out = []
        for source, samples in zip(sources, self._load_all(sources)):
            key = array_digest(samples) if isinstance(source, np.ndarray) else self._digest(os.fspath(source))
            parts = split_windows(samples, self.limits)
            info = AudioInfo(os.path.basename(_audio_source(source)), len(samples) / SAMPLE_RATE, len(parts))
            out.append(CollectedAudio(info, parts, [f"{key}#{i}" for i in range(len(parts))]))
        return out


def audio_sources(messages: Sequence[dict[str, Any]]) -> list[Any]:
    """Every audio of ``messages``, in conversation order."""
    return [item["audio"] for message in messages for item in message_items(message) if is_audio(item)]


def base_audio_count_error(count: int) -> str:
    """Why a base checkpoint cannot answer a request with ``count`` audios (it takes exactly one)."""
    if count == 0:
        return ("The base model works on one audio at a time: attach or record one with this request "
                "(it does not answer text alone; the chat models do).")
    return (f"The base model takes one audio per request; this one has {count}: send them one at a time, "
            "or use a chat model to compare them.")
