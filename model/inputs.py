"""Prompt text + audio windows -> the tensors ``generate`` takes, reusing per-window audio features.

This produces exactly what ``processor(text=..., audio=windows, sampling_rate=16000)`` produces (the
tests check it tensor for tensor) but computes each window's Whisper features once: features are
cached by the window's content hash, so a follow-up turn only extracts features for its new audio.
The text is tokenized with one ``<|AUDIO|>`` per window and each is then expanded to as many tokens as
the window yields, with the processor's own formula; special tokens are atomic, so this equals
expanding the text first.

It also records where each window's audio tokens sit in the prompt (``spans``), which the prefix
cache uses to tell whether a cached prefix holds the same audio, not just the same token ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE
from .caches import LruCache, array_digest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioSpan:
    """The audio tokens of one window: ``ids[start:end]``, for the window with content hash ``digest``."""

    start: int
    end: int
    digest: str


@dataclass
class ModelInputs:
    """What one request hands to the model: token ids, and each window's audio features and span.

    ``cache_tag`` names whatever else a reused KV prefix must agree on besides tokens and audio (for
    Qwen-Audio, the NTK alpha of the whole prompt); prefixes are only reused under the same tag.
    """

    input_ids: Any  # LongTensor [1, n]
    attention_mask: Any  # LongTensor [1, n]
    window_features: list[Any]  # per window: FloatTensor [mels, frames]
    window_masks: list[Any]  # per window: LongTensor [frames]
    spans: list[AudioSpan]
    cache_tag: str = ""

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    def audio_inputs(self, first_window: int = 0) -> dict[str, Any]:
        """``input_features`` / ``feature_attention_mask`` for the windows from ``first_window`` on ({} if none)."""
        import torch

        if first_window >= len(self.window_features):
            return {}
        return {
            "input_features": torch.stack(self.window_features[first_window:]),
            "feature_attention_mask": torch.stack(self.window_masks[first_window:]),
        }


def _num_audio_tokens(feature_frames: int) -> int:
    # Qwen2AudioProcessor's count: two stride-2 stages (the encoder's conv and its pooling).
    return (((feature_frames - 1) // 2 + 1) - 2) // 2 + 1


class InputEncoder:
    """Builds :class:`ModelInputs` for one processor, caching features per window content."""

    def __init__(self, processor: Any, feature_cache: LruCache[tuple[Any, Any, int]]):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.audio_token = getattr(processor, "audio_token", "<|AUDIO|>")
        self.audio_token_id = self.tokenizer.convert_tokens_to_ids(self.audio_token)
        self.cache = feature_cache

    def _features(self, window: np.ndarray, digest: str) -> tuple[str, Any, Any, int]:
        hit = self.cache.get(digest)
        if hit is None:
            out = self.processor.feature_extractor(
                window, sampling_rate=SAMPLE_RATE, return_attention_mask=True, padding="max_length", return_tensors="pt"
            )
            features, mask = out["input_features"][0], out["attention_mask"][0]
            hit = (features, mask, _num_audio_tokens(int(mask.sum())))
            self.cache.put(digest, hit, features.numel() * features.element_size())
        return (digest, *hit)

    def encode(self, text: str, windows: list[np.ndarray], keys: list[str] | None = None) -> ModelInputs:
        """Tokenize ``text`` (one ``<|AUDIO|>`` per window) and attach each window's features.

        ``keys`` are content keys of the windows (see PreparedPrompt.window_keys); without them each
        window's samples are hashed.
        """
        import torch

        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        slots = [i for i, t in enumerate(ids) if t == self.audio_token_id]
        if len(slots) != len(windows):
            raise ValueError(f"the prompt has {len(slots)} audio placeholders for {len(windows)} audio windows")
        features, masks, spans, expanded = [], [], [], []
        previous = 0
        keys = keys or [array_digest(w) for w in windows]
        for slot, window, key in zip(slots, windows, keys):
            digest, feats, mask, count = self._features(window, key)
            expanded.extend(ids[previous:slot])
            spans.append(AudioSpan(len(expanded), len(expanded) + count, digest))
            expanded.extend([self.audio_token_id] * count)
            features.append(feats)
            masks.append(mask)
            previous = slot + 1
        expanded.extend(ids[previous:])
        input_ids = torch.tensor([expanded], dtype=torch.long)
        return ModelInputs(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            window_features=features,
            window_masks=masks,
            spans=spans,
        )
