"""Qwen-Audio(-Chat)'s prompt formats, built as token ids.

**Chat** (``chat_format: chatml``), as the original ``from_list_format`` + ``make_context`` render it:
a ChatML system block (default "You are a helpful assistant."), then per message
``\\n<|im_start|>role\\ncontent<|im_end|>``, then ``\\n<|im_start|>assistant\\n``. In a user message
every audio is written ``Audio N:<audio>…</audio>\\n`` with N counting from 1 in each message, and the
span between the tags holds one ``[[[AUDIO:modality]]]`` per audio embedding; an audio longer than
30 s gets one span per window, one after the other. The oldest turns are left out once the history
would reach the checkpoint's ``max_window_size`` (6144 tokens), as the original does.

**Base** (``chat_format: raw``): the audio span, then the task in the tag format of the model's
training and evaluation, e.g. ``<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>``.

Unlike the original, which finds ``<audio>PATH</audio>`` in the text of any message and opens what it
names (a local file or a URL), audio comes only from audio items: text a user typed is encoded as
plain text, so ``<audio>``, ``<|im_start|>`` or ``<|2.33|>`` in it are characters, not tokens. The
assistant's own earlier replies keep their timestamp tokens (``<|2.33|>``) as tokens, as the original
re-encodes them.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...conversation import (
    AudioCollector,
    BaseTask,
    base_audio_count_error,
    CollectedAudio,
    PreparedPrompt,
    audio_sources,
    is_audio,
    is_task,
    message_items,
    validate_messages,
)
from ...errors import ConversationError
from .features import token_counts
from .tokenizer import QwenAudioTokenizer

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM = "You are a helpful assistant."


@dataclass
class _Block:
    """One rendered message: its ids (audio spans in place), its text view and its audios."""

    ids: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    audios: list[CollectedAudio] = field(default_factory=list)


class QwenAudioPromptBuilder:
    """Renders conversations for one Qwen-Audio checkpoint (``chat`` or base)."""

    def __init__(self, tokenizer: QwenAudioTokenizer, collector: AudioCollector, *, chat: bool,
                 max_window_size: int = 6144):
        self.tokenizer = tokenizer
        self.collector = collector
        self.chat = chat
        self.max_window_size = max_window_size
        self._nl = tokenizer.encode_plain("\n")

    # ------------------------------------------------------------------ pieces
    def _plain(self, text: str) -> list[int]:
        return self.tokenizer.encode_plain(unicodedata.normalize("NFC", text))

    def _span(self, samples_count: int) -> list[int]:
        counts = token_counts(samples_count)
        t = self.tokenizer
        return [t.audio_start_id] + [t.audio_pad_id] * counts.n_tokens + [t.audio_end_id]

    def _audio(self, block: _Block, audio: CollectedAudio) -> None:
        for window in audio.windows:
            block.ids += self._span(len(window))
            block.text.append(f"<audio>{audio.info.source}</audio>")
        block.audios.append(audio)

    def _tags(self, *names: str) -> list[int]:
        return [self.tokenizer.token_id(f"<|{name}|>") for name in names]

    # ------------------------------------------------------------------ chat
    def _message(self, role: str, items: list[dict[str, Any]], audios: list[CollectedAudio]) -> _Block:
        block = _Block()
        block.ids += [self.tokenizer.im_start_id] + self._plain(role) + self._nl
        block.text.append(f"<|im_start|>{role}\n")
        pending = ""  # text between audio spans is encoded as one piece, like the original's
        number = 0

        def flush() -> None:
            nonlocal pending
            if pending:
                if role == "assistant":
                    block.ids.extend(self.tokenizer.encode_with_specials(
                        unicodedata.normalize("NFC", pending), allowed="timestamps"))
                else:
                    block.ids.extend(self._plain(pending))
                block.text.append(pending)
            pending = ""

        for item in items:
            if is_audio(item):
                number += 1
                pending += f"Audio {number}:"
                flush()
                self._audio(block, audios.pop(0))
                pending = "\n"
            elif is_task(item):
                raise ConversationError("Task items are for base checkpoints; ask a chat checkpoint in words.")
            else:
                pending += item["text"]
        flush()
        block.ids.append(self.tokenizer.im_end_id)
        block.text.append("<|im_end|>")
        return block

    def _build_chat(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        collected = self.collector.collect(audio_sources(messages))
        system = DEFAULT_SYSTEM
        if messages[0]["role"] == "system":
            system = "".join(i.get("text", "") for i in message_items(messages[0]) if not is_audio(i))
            messages = messages[1:]
        system_block = self._message("system", [{"type": "text", "text": system}], [])
        blocks = []
        for message in messages:
            items = message_items(message)
            own = [collected.pop(0) for item in items if is_audio(item)]
            blocks.append((message["role"], self._message(message["role"], items, own)))
        # Turns start at a user message; the last turn is the question and is always kept.
        turns: list[list[_Block]] = []
        for role, block in blocks:
            if role == "user" or not turns:
                turns.append([])
            turns[-1].append(block)
        *history, query = turns
        kept: list[list[_Block]] = []
        size = len(system_block.ids)
        for turn in reversed(history):
            turn_size = sum(len(self._nl) + len(b.ids) for b in turn)
            if size + turn_size >= self.max_window_size:
                break
            kept.insert(0, turn)
            size += turn_size
        dropped = len(history) - len(kept)
        if dropped:
            logger.info("left out the oldest %d turn(s): the history would pass %d tokens", dropped, self.max_window_size)
        ids = list(system_block.ids)
        text = ["".join(system_block.text)]
        audios: list[CollectedAudio] = []
        for block in [b for turn in kept + [query] for b in turn]:
            ids += self._nl + block.ids
            text.append("\n" + "".join(block.text))
            audios += block.audios
        ids += self._nl + [self.tokenizer.im_start_id] + self._plain("assistant") + self._nl
        text.append("\n<|im_start|>assistant\n")
        return _prepared("".join(text), ids, audios, dropped)

    # ------------------------------------------------------------------ base
    def task_ids(self, task: BaseTask) -> list[int]:
        """The tags (and plain-text question) that ask the base model for ``task`` after its audio."""
        timestamps = "timestamps" if task.timestamps else "notimestamps"
        if task.task == "transcribe":
            if task.language is None:  # the model names the language itself, as it was trained to
                return self._tags("startoftranscript")
            return self._tags("startoftranscript", task.language, "transcribe", task.language, timestamps, "wo_itn")
        if task.task == "translate":
            return self._tags("startoftranscript", "unknown", "translate", task.language or "en", "notimestamps", "itn")
        if task.task == "caption":
            return self._tags("startofanalysis", "unknown", "caption", "en", "notimestamps", "caption_clotho")
        if not task.prompt.strip():
            raise ConversationError("Type a question about the audio for the free task.")
        return self._tags("startofanalysis", "en", "question") + self._plain(task.prompt) + self._tags("answer")

    def _build_base(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        items = message_items(messages[-1])
        audio_items = [item for item in items if is_audio(item)]
        if len(audio_items) != 1:
            raise ConversationError(base_audio_count_error(len(audio_items)))
        tasks = [BaseTask.from_item(item) for item in items if is_task(item)]
        typed = "".join(item.get("text", "") for item in items if not is_audio(item) and not is_task(item)).strip()
        task = tasks[-1] if tasks else BaseTask("free", prompt=typed) if typed else BaseTask("transcribe")
        (audio,) = self.collector.collect([audio_items[0]["audio"]])
        block = _Block()
        self._audio(block, audio)
        tags = self.task_ids(task)
        text = "".join(block.text) + self.tokenizer.decode(tags, specials="keep")
        return _prepared(text, block.ids + tags, block.audios, 0)

    def build(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        """Validate ``messages``, decode and window their audio, and render the prompt ids."""
        validate_messages(messages)
        return self._build_chat(messages) if self.chat else self._build_base(messages)


def _prepared(text: str, ids: list[int], audios: list[CollectedAudio], dropped: int) -> PreparedPrompt:
    return PreparedPrompt(
        text=text,
        ids=ids,
        windows=[w for a in audios for w in a.windows],
        audios=[a.info for a in audios],
        window_keys=[k for a in audios for k in a.keys],
        dropped_turns=dropped,
    )
