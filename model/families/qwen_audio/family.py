"""Qwen-Audio-Chat and Qwen-Audio behind the worker: loading the published checkpoints, prompts, inputs.

A checkpoint directory as the hub publishes it (``config.json`` with ``model_type: "qwen"`` and its
``audio`` block, sharded safetensors, ``qwen.tiktoken``, ``mel_filters.npz``,
``generation_config.json``) loads unchanged; its ``auto_map`` and ``.py`` files are ignored and never
imported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...caches import LruCache
from ...conversation import AudioCollector, PreparedPrompt
from ...errors import CheckpointLoadError
from ...inputs import AudioSpan, ModelInputs
from ...streaming import ByteLevelDetokenizer
from ..base import ModelFamily
from .features import LogMelExtractor, load_mel_filters, token_counts
from .prompt import QwenAudioPromptBuilder
from .tokenizer import QwenAudioTokenizer

logger = logging.getLogger(__name__)

MODEL_TYPE = "qwen"
#: Files a Qwen-Audio checkpoint needs: never its *.py (remote code).
CHECKPOINT_FILES = ["*.json", "*.safetensors", "qwen.tiktoken", "mel_filters.npz"]


def is_qwen_audio_config(config: dict[str, Any]) -> bool:
    return config.get("model_type") == MODEL_TYPE and isinstance(config.get("audio"), dict)


@dataclass
class QwenAudioProcessor:
    """Tokenizer, log-mel extractor and prompt format of one Qwen-Audio checkpoint."""

    tokenizer: QwenAudioTokenizer
    features: LogMelExtractor
    chat_format: str  # "chatml" (Qwen-Audio-Chat) or "raw" (the base model Qwen-Audio)
    max_window_size: int = 6144

    @property
    def is_chat(self) -> bool:
        return self.chat_format == "chatml"


def generation_config_of(path: Path, tokenizer: QwenAudioTokenizer, vocab_size: int) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's sampling defaults as a transformers GenerationConfig, and its raw JSON.

    A chat reply ends at ``<|im_end|>`` (or ``<|im_start|>``, the original's other stop word, or
    ``<|endoftext|>``); a base one at ``<|endoftext|>``. The ids between the tokenizer's last token
    and the embedding size are padding: they are suppressed, so sampling never picks one.
    """
    from transformers import GenerationConfig

    file = path / "generation_config.json"
    raw = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    chat = raw.get("chat_format", "chatml") == "chatml"
    eos = [tokenizer.im_end_id, tokenizer.im_start_id, tokenizer.eod_id] if chat else [tokenizer.eod_id]
    config = GenerationConfig(
        do_sample=bool(raw.get("do_sample", False)),
        top_k=int(raw.get("top_k", 0)),
        top_p=float(raw.get("top_p", 1.0)),
        temperature=float(raw.get("temperature", 1.0)),
        max_new_tokens=int(raw.get("max_new_tokens", 512)),
        eos_token_id=eos,
        pad_token_id=int(raw.get("pad_token_id", tokenizer.eod_id)),
        suppress_tokens=list(range(tokenizer.n_vocab, vocab_size)) or None,
        **({"repetition_penalty": float(raw["repetition_penalty"])} if "repetition_penalty" in raw else {}),
    )
    return config, raw


def load(path: Path, dtype: Any, device_map: Any, attention: str, fail: Callable[[Exception], Exception],
         quantization: Any = None):
    """The model and its :class:`QwenAudioProcessor` from ``path`` (not yet moved to a device)."""
    from .configuration import QwenAudioConfig
    from .modeling import QwenAudioForCausalLM

    try:
        tokenizer = QwenAudioTokenizer.from_pretrained(path)
        filters = load_mel_filters(path)
        config = QwenAudioConfig.from_pretrained(path)
        config.validate_architecture()
    except ValueError as exc:
        raise CheckpointLoadError(f"Cannot load the checkpoint in {path}: {exc}") from None
    if tokenizer.audio_start_id != config.audio_start_id or tokenizer.n_vocab > config.vocab_size:
        raise CheckpointLoadError(
            f"Cannot load the checkpoint in {path}: its qwen.tiktoken ({tokenizer.n_vocab} tokens, <audio> = "
            f"{tokenizer.audio_start_id}) does not fit its config.json (vocab_size {config.vocab_size}, "
            f"audio_start_id {config.audio_start_id})."
        )
    try:
        model = QwenAudioForCausalLM.from_pretrained(
            path, config=config, dtype=dtype, device_map=device_map, low_cpu_mem_usage=True,
            **({} if attention == "auto" else {"attn_implementation": attention}),
            **({} if quantization is None else {"quantization_config": quantization}),
        )
    except Exception as exc:  # noqa: BLE001 - worded by the caller
        raise fail(exc) from None
    model.generation_config, raw = generation_config_of(path, tokenizer, config.vocab_size)
    processor = QwenAudioProcessor(
        tokenizer=tokenizer,
        features=LogMelExtractor(filters),
        chat_format=raw.get("chat_format", "chatml"),
        max_window_size=int(raw.get("max_window_size", 6144)),
    )
    return model, processor


@dataclass
class QwenAudioInputs(ModelInputs):
    """Token ids + per window: the log-mel [80, 3000] and the conv length, and the batch's longest one."""

    audio_lengths: list[int] | None = None
    audio_batch_length: int = 0

    def audio_inputs(self, first_window: int = 0) -> dict[str, Any]:
        import torch

        if first_window >= len(self.window_features):
            return {}
        return {
            "input_features": torch.stack(self.window_features[first_window:]),
            "audio_lengths": torch.tensor(self.audio_lengths[first_window:], dtype=torch.long),
            "audio_batch_length": self.audio_batch_length,
        }


class QwenAudioFamily(ModelFamily):
    """``QwenAudioForCausalLM`` + :class:`QwenAudioProcessor`."""

    name = "Qwen-Audio"
    audio_pcm = "s16"  # the original decodes to 16-bit PCM with ffmpeg's default downmix

    def __init__(self, model: Any, processor: QwenAudioProcessor, collector: AudioCollector,
                 feature_cache: LruCache[Any]):
        super().__init__(model, processor, collector, feature_cache)
        self.tokenizer = processor.tokenizer
        self._builder = QwenAudioPromptBuilder(self.tokenizer, collector, chat=processor.is_chat,
                                               max_window_size=processor.max_window_size)

    @property
    def is_chat(self) -> bool:
        return self.processor.is_chat

    def build(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        return self._builder.build(messages)

    def _features(self, window: np.ndarray, key: str) -> Any:
        mel = self.feature_cache.get(key)
        if mel is None:
            mel = self.processor.features(window)
            self.feature_cache.put(key, mel, mel.numel() * mel.element_size())
        return mel

    def encode(self, prepared: PreparedPrompt) -> ModelInputs:
        import torch

        ids = list(prepared.ids or [])
        counts = [token_counts(len(w)) for w in prepared.windows]
        lengths = [c.len_after_cnn for c in counts]
        longest = max(lengths, default=0)
        starts = [i for i, t in enumerate(ids) if t == self.tokenizer.audio_start_id]
        if len(starts) != len(prepared.windows):
            raise ValueError(f"the prompt has {len(starts)} audio spans for {len(prepared.windows)} audio windows")
        features, spans = [], []
        for start, window, key, count in zip(starts, prepared.windows, prepared.window_keys, counts):
            features.append(self._features(window, key))
            # A clip's embeddings differ when a longer clip is encoded beside it (see the modeling docs):
            # the span's key says which case it is, so a cached prefix is reused only when they match.
            case = "padded" if count.len_after_cnn < longest else "longest"
            spans.append(AudioSpan(start, start + count.span_tokens, f"{key}|{case}"))
        input_ids = torch.tensor([ids], dtype=torch.long)
        alpha = self.model.config.ntk_alpha(len(ids))
        return QwenAudioInputs(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), window_features=features,
            window_masks=[], spans=spans, cache_tag=f"ntk-alpha={alpha:g}", audio_lengths=lengths,
            audio_batch_length=longest,
        )

    def new_detokenizer(self) -> ByteLevelDetokenizer:
        # Replies keep their timestamp tokens (<|2.33|>, shown as times with clips) and drop every other
        # special token; the rest are byte-level BPE tokens.
        return ByteLevelDetokenizer(self.tokenizer.token_bytes)
