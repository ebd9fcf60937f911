"""From a conversation in Qwen2-Audio's message format to the prompt text and audio the processor takes.

Messages look like ``[{"role": "system"|"user"|"assistant", "content": str | [item, ...]}]`` where an
item is ``{"type": "audio", "audio": path_or_16k_array}`` or ``{"type": "text", "text": str}``.

Chat checkpoints are rendered with their own chat template (which numbers audios "Audio 1", "Audio 2"
across the conversation). Base checkpoints (no template) take one audio and a task prompt in their
pre-training format, ``<|audio_bos|><|AUDIO|><|audio_eos|>PROMPT``; :func:`base_task_prompt` builds
the prompts for the usual tasks.

Audio longer than one encoder window (30 s) is split into consecutive windows. Each window becomes
one more ``<|audio_bos|><|AUDIO|><|audio_eos|>`` group right where the audio stands, so the template's
numbering of the user's audios stays as the user sees it and nothing is cut.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, AudioLimits, split_windows
from .caches import array_digest, file_digest
from .errors import AudioDecodeError, ConversationError

logger = logging.getLogger(__name__)

AUDIO_GROUP = "<|audio_bos|><|AUDIO|><|audio_eos|>"
#: Audio files of one request decoded at once.
DECODE_THREADS = 4
ROLES = ("system", "user", "assistant")

#: Languages the base model's translation task offers, by the name used in its prompt.
BASE_TASK_LANGUAGES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
}
BASE_TASKS = ("transcribe", "translate", "caption", "free")


def base_task_prompt(task: str, language: str | None = None, prompt: str = "") -> str:
    """The text the base model (``Qwen/Qwen2-Audio-7B``) expects after its one audio.

    - ``transcribe``: "Detect the language and recognize the speech:" (+ ``<|xx|>`` to force a language).
    - ``translate``: "Translate the speech into <Language>:" (``language`` is a code of BASE_TASK_LANGUAGES).
    - ``caption``: "Generate the caption in English:".
    - ``free``: ``prompt`` as given.
    """
    if task == "transcribe":
        text = "Detect the language and recognize the speech:"
        return f"{text} <|{language}|>" if language else text
    if task == "translate":
        name = BASE_TASK_LANGUAGES.get(language or "en")
        if name is None:
            raise ConversationError(f"Unknown translation language {language!r}; choose one of {', '.join(BASE_TASK_LANGUAGES)}.")
        return f"Translate the speech into {name}:"
    if task == "caption":
        return "Generate the caption in English:"
    if task == "free":
        return prompt
    raise ConversationError(f"Unknown task {task!r}; choose one of {', '.join(BASE_TASKS)}.")


@dataclass(frozen=True)
class AudioInfo:
    """What was done with one audio of the conversation."""

    source: str  # the file name, or "<array>" for audio passed as samples
    seconds: float  # duration as decoded (before padding)
    windows: int  # number of ≤30 s windows it was split into (1 for short audio)


@dataclass
class PreparedPrompt:
    """Everything the processor needs: the prompt text and the audio windows in order."""

    text: str
    windows: list[np.ndarray] = field(default_factory=list)
    audios: list[AudioInfo] = field(default_factory=list)
    #: A content key per window (the source's content hash + the window's index), for caches.
    window_keys: list[str] = field(default_factory=list)

    @property
    def split_audios(self) -> list[AudioInfo]:
        """The audios that were longer than one window and were split."""
        return [a for a in self.audios if a.windows > 1]


def _validate(messages: Sequence[dict[str, Any]]) -> None:
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
            kind = item.get("type") or ("audio" if "audio" in item else "text" if "text" in item else None)
            if kind == "audio":
                if message["role"] != "user":
                    raise ConversationError(f"Message {i + 1}: only user messages may carry audio.")
                if item.get("audio") is None:
                    raise ConversationError(f"Message {i + 1} has an audio item without audio.")
            elif kind == "text":
                if not isinstance(item.get("text"), str):
                    raise ConversationError(f"Message {i + 1} has a text item without text.")
            else:
                raise ConversationError(f"Message {i + 1} has an item of unknown type {item.get('type')!r}.")
    if messages[-1]["role"] != "user":
        raise ConversationError("The conversation must end with a user message to answer.")
    last = messages[-1]["content"]
    if isinstance(last, str) and not last.strip() or isinstance(last, (list, tuple)) and not any(
        _is_audio(item) or item.get("text", "").strip() for item in last
    ):
        raise ConversationError("The last message is empty: type a question or attach an audio.")


def _is_audio(item: dict[str, Any]) -> bool:
    return item.get("type") == "audio" or ("type" not in item and "audio" in item)


def _audio_source(audio: Any) -> str:
    if isinstance(audio, np.ndarray):
        return "<array>"
    return os.fspath(audio)


def _neutralise_special_tokens(text: str, special_tokens: Sequence[str]) -> str:
    """Stop user text from smuggling control tokens (``<|im_start|>``, ``<|AUDIO|>``...) into the prompt."""
    for token in special_tokens:
        if token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text


class PromptBuilder:
    """Renders conversations for one checkpoint. ``decode`` turns a path into 16 kHz mono float32."""

    def __init__(
        self,
        *,
        chat_template: str | None,
        apply_chat_template: Callable[..., str],
        special_tokens: Sequence[str],
        decode: Callable[[str, AudioLimits], np.ndarray],
        limits: AudioLimits,
        digest: Callable[[str], str] | None = None,
    ):
        self.is_chat = bool(chat_template)
        self._apply_chat_template = apply_chat_template
        self._special_tokens = sorted(set(special_tokens), key=len, reverse=True)
        self._decode = decode
        self._digest = digest or file_digest
        self.limits = limits

    def _load(self, audio: Any) -> np.ndarray:
        if isinstance(audio, np.ndarray):
            samples = np.asarray(audio, dtype=np.float32).reshape(-1)
            if samples.size == 0:
                raise AudioDecodeError("<array>", "the audio has no samples")
            return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0).clip(-1.0, 1.0)
        return self._decode(os.fspath(audio), self.limits)

    def _collect_audio(self, messages: Sequence[dict[str, Any]]) -> tuple[list[np.ndarray], list[AudioInfo], list[str]]:
        windows: list[np.ndarray] = []
        infos: list[AudioInfo] = []
        keys: list[str] = []
        sources = [item["audio"] for message in messages if not isinstance(message["content"], str)
                   for item in message["content"] if _is_audio(item)]
        for source, samples in zip(sources, self._load_all(sources)):
            key = array_digest(samples) if isinstance(source, np.ndarray) else self._digest(os.fspath(source))
            parts = split_windows(samples, self.limits)
            windows.extend(parts)
            keys.extend(f"{key}#{i}" for i in range(len(parts)))
            infos.append(AudioInfo(os.path.basename(_audio_source(source)), len(samples) / SAMPLE_RATE, len(parts)))
        return windows, infos, keys

    def _load_all(self, sources: Sequence[Any]) -> list[np.ndarray]:
        """Decode every audio, several at once (each ffmpeg is a process of its own; starting one takes
        about 0.1 s on a small machine). The first unusable one in conversation order is the error raised."""
        if len(sources) <= 1:
            return [self._load(source) for source in sources]
        with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, len(sources)), thread_name_prefix="decode") as pool:
            futures = [pool.submit(self._load, source) for source in sources]
            return [future.result() for future in futures]

    def _text(self, text: str) -> str:
        return _neutralise_special_tokens(text, self._special_tokens)

    def build(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        """Validate ``messages``, decode and window their audio, and render the prompt text.

        Raises ConversationError for a malformed conversation and AudioError for unusable audio.
        """
        _validate(messages)
        if not self.is_chat:
            return self._build_base(messages)
        windows, infos, keys = self._collect_audio(messages)
        rendered: list[dict[str, Any]] = []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                rendered.append({"role": message["role"], "content": self._text(content)})
                continue
            items = []
            for item in content:
                if _is_audio(item):
                    items.append({"type": "audio", "audio": "audio"})
                else:
                    items.append({"type": "text", "text": self._text(item["text"])})
            rendered.append({"role": message["role"], "content": items})
        text = self._apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
        return PreparedPrompt(text=_expand_windows(text, infos), windows=windows, audios=infos, window_keys=keys)

    def _build_base(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        last = messages[-1]["content"]
        items = [{"type": "text", "text": last}] if isinstance(last, str) else list(last)
        audio_items = [item for item in items if _is_audio(item)]
        if len(audio_items) != 1:
            raise ConversationError(
                f"The base model takes exactly one audio per request; this one has {len(audio_items)}. "
                "Use the Instruct model to chat about several audios."
            )
        prompt = "".join(self._text(item["text"]) for item in items if not _is_audio(item))
        windows, infos, keys = self._collect_audio([{"role": "user", "content": audio_items}])
        text = _expand_windows(AUDIO_GROUP + prompt, infos)
        return PreparedPrompt(text=text, windows=windows, audios=infos, window_keys=keys)


def _expand_windows(text: str, infos: Sequence[AudioInfo]) -> str:
    """Repeat the i-th audio group once per window of the i-th audio."""
    parts = text.split(AUDIO_GROUP)
    if len(parts) - 1 != len(infos):
        raise ConversationError(
            f"The chat template rendered {len(parts) - 1} audio placeholders for {len(infos)} audios."
        )
    out = [parts[0]]
    for info, rest in zip(infos, parts[1:]):
        out.append(AUDIO_GROUP * info.windows)
        out.append(rest)
    return "".join(out)
