"""What the worker needs from a model family, and nothing more.

A family turns a validated conversation into a prompt (:meth:`ModelFamily.build`), the prompt into
the tensors ``generate`` takes (:meth:`ModelFamily.encode`), and generated token ids back into text
(:meth:`ModelFamily.new_detokenizer`). Everything above it — the queue, streaming, cancellation,
the caches, windows, errors — is the worker's and the same for every family.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..caches import LruCache
from ..conversation import AudioCollector, PreparedPrompt
from ..inputs import ModelInputs


class ModelFamily(ABC):
    """One loaded model and its processor, seen through the worker's interface."""

    #: The family's name as people know it ("Qwen2-Audio", "Qwen-Audio").
    name: str = ""
    #: How the family's audio is decoded: "f32" (float samples, level-preserving downmix) or "s16"
    #: (16-bit samples with ffmpeg's default downmix, as the first-generation models were trained).
    audio_pcm: str = "f32"

    def __init__(self, model: Any, processor: Any, collector: AudioCollector, feature_cache: LruCache[Any]):
        self.model = model
        self.processor = processor
        self.collector = collector
        self.feature_cache = feature_cache

    @property
    @abstractmethod
    def is_chat(self) -> bool:
        """True for chat checkpoints (free conversation), False for base ones (task prompts)."""

    @property
    def kind(self) -> str:
        return "chat" if self.is_chat else "base"

    @property
    def context_length(self) -> int:
        text_config = self.model.config.get_text_config()
        return int(getattr(text_config, "max_position_embeddings", 8192))

    @property
    def eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    @abstractmethod
    def build(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        """Validate, decode and render ``messages`` (ConversationError / AudioError otherwise)."""

    @abstractmethod
    def encode(self, prepared: PreparedPrompt) -> ModelInputs:
        """The tensors of ``prepared`` (features per window from the feature cache when seen before)."""

    @abstractmethod
    def new_detokenizer(self) -> Any:
        """A fresh streaming detokenizer (``push(id) -> str``, ``flush() -> str``, ``token_ids``) for one reply."""

    def new_cache(self) -> Any:
        """An empty KV cache of the kind the prefix cache keeps."""
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config.get_text_config())

    @staticmethod
    def private_copy(tokenizer: Any) -> Any:
        """A tokenizer of its own for the generation thread (a Rust tokenizer shared with a thread that
        is encoding can fail with "Already borrowed")."""
        return copy.deepcopy(tokenizer)
