"""Qwen2-Audio (``Qwen/Qwen2-Audio-7B-Instruct`` and the base ``Qwen/Qwen2-Audio-7B``): transformers' own classes.

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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..conversation import (
    BASE_TASK_LANGUAGES,
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
from ..errors import ConversationError
from ..inputs import InputEncoder, ModelInputs
from ..streaming import detokenizer_factory
from .base import ModelFamily

logger = logging.getLogger(__name__)

AUDIO_GROUP = "<|audio_bos|><|AUDIO|><|audio_eos|>"


def base_task_prompt(task: str, language: str | None = None, prompt: str = "") -> str:
    """The text the base model (``Qwen/Qwen2-Audio-7B``) expects after its one audio.

    - ``transcribe``: "Detect the language and recognize the speech:" (+ ``<|xx|>`` to force a language).
    - ``translate``: "Translate the speech into <Language>:" (``language`` is a code of BASE_TASK_LANGUAGES).
    - ``caption``: "Generate the caption in English:".
    - ``free``: ``prompt`` as given.
    """
    BaseTask(task, language if task != "translate" else language or "en")
    if task == "transcribe":
        text = "Detect the language and recognize the speech:"
        return f"{text} <|{language}|>" if language else text
    if task == "translate":
        return f"Translate the speech into {BASE_TASK_LANGUAGES[language or 'en']}:"
    if task == "caption":
        return "Generate the caption in English:"
    return prompt


def _neutralise_special_tokens(text: str, special_tokens: Sequence[str]) -> str:
    """Stop user text from smuggling control tokens (``<|im_start|>``, ``<|AUDIO|>``...) into the prompt."""
    for token in special_tokens:
        if token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text


def _expand_windows(text: str, audios: Sequence[CollectedAudio]) -> str:
    """Repeat the i-th audio group once per window of the i-th audio."""
    parts = text.split(AUDIO_GROUP)
    if len(parts) - 1 != len(audios):
        raise ConversationError(f"The chat template rendered {len(parts) - 1} audio placeholders for {len(audios)} audios.")
    out = [parts[0]]
    for audio, rest in zip(audios, parts[1:]):
        out.append(AUDIO_GROUP * len(audio.windows))
        out.append(rest)
    return "".join(out)


def _prepared(text: str, audios: Sequence[CollectedAudio]) -> PreparedPrompt:
    return PreparedPrompt(
        text=_expand_windows(text, audios),
        windows=[w for a in audios for w in a.windows],
        audios=[a.info for a in audios],
        window_keys=[k for a in audios for k in a.keys],
    )


class Qwen2AudioFamily(ModelFamily):
    """``Qwen2AudioForConditionalGeneration`` + ``Qwen2AudioProcessor``."""

    name = "Qwen2-Audio"
    audio_pcm = "f32"

    def __init__(self, model: Any, processor: Any, collector, feature_cache):
        super().__init__(model, processor, collector, feature_cache)
        tokenizer = processor.tokenizer
        specials = list(tokenizer.all_special_tokens) + list(getattr(tokenizer, "added_tokens_encoder", {}))
        self._special_tokens = sorted(set(specials), key=len, reverse=True)
        self._encoder = InputEncoder(processor, feature_cache)
        self._new_detokenizer = detokenizer_factory(self.private_copy(tokenizer))

    @property
    def is_chat(self) -> bool:
        return bool(getattr(self.processor, "chat_template", None))

    def _text(self, text: str) -> str:
        return _neutralise_special_tokens(text, self._special_tokens)

    def build(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        validate_messages(messages)
        if not self.is_chat:
            return self._build_base(messages)
        audios = self.collector.collect(audio_sources(messages))
        rendered: list[dict[str, Any]] = []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                rendered.append({"role": message["role"], "content": self._text(content)})
                continue
            items = []
            for item in content:
                if is_audio(item):
                    items.append({"type": "audio", "audio": "audio"})
                elif is_task(item):
                    raise ConversationError("Task items are for base checkpoints; ask a chat checkpoint in words.")
                else:
                    items.append({"type": "text", "text": self._text(item["text"])})
            rendered.append({"role": message["role"], "content": items})
        text = self.processor.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
        return _prepared(text, audios)

    def _build_base(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        items = message_items(messages[-1])
        audio_items = [item for item in items if is_audio(item)]
        if len(audio_items) != 1:
            raise ConversationError(base_audio_count_error(len(audio_items)))
        prompt = "".join(
            base_task_prompt(*_task_args(item)) if is_task(item) else self._text(item["text"])
            for item in items if not is_audio(item)
        )
        audios = self.collector.collect([audio_items[0]["audio"]])
        return _prepared(AUDIO_GROUP + prompt, audios)

    def encode(self, prepared: PreparedPrompt) -> ModelInputs:
        return self._encoder.encode(prepared.text, prepared.windows, prepared.window_keys)

    def new_detokenizer(self) -> Any:
        return self._new_detokenizer()


def _task_args(item: dict[str, Any]) -> tuple[str, str | None, str]:
    task = BaseTask.from_item(item)
    return task.task, task.language, task.prompt


# ----------------------------------------------------------------------------- loading
#: Files a Qwen2-Audio checkpoint needs; no remote code is ever fetched or run.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja"]


def _config_has_template(file: Path) -> bool:
    import json

    return file.is_file() and bool(json.loads(file.read_text(encoding="utf-8")).get("chat_template"))


def processor_ships_chat_template(path: Path) -> bool:
    """True when the checkpoint carries a chat template of the processor's own (``chat_template.jinja``,
    ``chat_template.json`` or in ``processor_config.json``), the one ``AutoProcessor`` reads."""
    return ((path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file()
            or _config_has_template(path / "processor_config.json"))


def checkpoint_ships_chat_template(path: Path) -> bool:
    """True when the checkpoint directory carries a chat template (in any of the layouts transformers reads)."""
    return processor_ships_chat_template(path) or _config_has_template(path / "tokenizer_config.json")


def load(path: Path, dtype: Any, device_map: Any, attention: str, fail: Callable[[Exception], Exception],
         quantization: Any = None):
    """``Qwen2AudioForConditionalGeneration`` and ``AutoProcessor`` from ``path`` (not yet moved to a device)."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    started = time.perf_counter()
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(
            path, dtype=dtype, device_map=device_map, low_cpu_mem_usage=True,
            **({} if attention == "auto" else {"attn_implementation": attention}),
            **({} if quantization is None else {"quantization_config": quantization}),
        )
    except Exception as exc:  # noqa: BLE001 - worded by the caller
        raise fail(exc) from None
    if not checkpoint_ships_chat_template(path):
        # Qwen2AudioProcessor falls back to a built-in chat template; a base checkpoint has none and
        # must be prompted in its pre-training format instead.
        processor.chat_template = None
    elif not processor_ships_chat_template(path) and isinstance(getattr(processor.tokenizer, "chat_template", None), str):
        # The template is only in tokenizer_config.json (as some fine-tunes are saved): AutoProcessor would
        # ignore it for Qwen2AudioProcessor's built-in one, so a fine-tune's own template would be lost.
        processor.chat_template = processor.tokenizer.chat_template
    logger.debug("read %s in %.1f s", path, time.perf_counter() - started)
    return model, processor

