"""The model families the demo runs, each behind the worker's one interface (:class:`ModelFamily`).

- ``Qwen2-Audio`` (``model_type: qwen2_audio``): Qwen2-Audio-7B-Instruct and its base model, through
  transformers' own classes.
- ``Qwen-Audio`` (``model_type: qwen`` with an ``audio`` block): Qwen-Audio-Chat and the base model
  Qwen-Audio, through our native implementation in :mod:`model.families.qwen_audio`.

:func:`family_of_config` tells a checkpoint's family from its ``config.json``; :func:`load` reads the
model and its processor; :func:`make_family` wraps them for the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..caches import LruCache
from ..conversation import AudioCollector
from .base import ModelFamily

#: What config.json's model_type says, by family.
FAMILIES = {"qwen2_audio": "Qwen2-Audio", "qwen": "Qwen-Audio"}
#: Files any supported checkpoint needs (the union of the families'); never a *.py file.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "qwen.tiktoken", "mel_filters.npz"]


def family_of_config(config: dict[str, Any]) -> str | None:
    """"Qwen2-Audio", "Qwen-Audio", or None for a checkpoint of another kind."""
    model_type = config.get("model_type")
    if model_type == "qwen2_audio":
        return "Qwen2-Audio"
    if model_type == "qwen" and isinstance(config.get("audio"), dict):
        return "Qwen-Audio"
    return None


#: Per family, the modules (full paths) that stay in the placement's dtype when the model is quantized:
#: the audio encoder, the projector into the language model, lm_head (see model.quantization).
UNQUANTIZED = {
    "Qwen2-Audio": ("model.audio_tower", "model.multi_modal_projector", "lm_head"),
    "Qwen-Audio": ("transformer.audio", "lm_head"),  # transformer.audio.proj is Qwen-Audio's projector
}


def load(family: str, path: Path, dtype: Any, device_map: Any, attention: str,
         fail: Callable[[Exception], Exception], quantization: Any = None) -> tuple[Any, Any]:
    """The model (on CPU or spread by ``device_map``) and processor of a ``family`` checkpoint at ``path``;
    ``quantization``: a ``BitsAndBytesConfig`` or None."""
    if family == "Qwen-Audio":
        from .qwen_audio.family import load as load_qwen_audio

        return load_qwen_audio(path, dtype, device_map, attention, fail, quantization)
    from .qwen2_audio import load as load_qwen2_audio

    return load_qwen2_audio(path, dtype, device_map, attention, fail, quantization)


def meta_model(family: str, path: Path) -> Any:
    """The ``family`` checkpoint's architecture on the ``meta`` device (no memory, nothing read but config.json)."""
    import torch

    if family == "Qwen-Audio":
        from .qwen_audio.configuration import QwenAudioConfig
        from .qwen_audio.modeling import QwenAudioForCausalLM

        config, cls = QwenAudioConfig.from_pretrained(path), QwenAudioForCausalLM
    else:
        from transformers import AutoConfig, Qwen2AudioForConditionalGeneration

        config, cls = AutoConfig.from_pretrained(path), Qwen2AudioForConditionalGeneration
    with torch.device("meta"):
        return cls(config)


def make_family(model: Any, processor: Any, *, make_collector: Callable[[str], AudioCollector],
                feature_cache: LruCache[Any]) -> ModelFamily:
    """Wrap a loaded model and processor; ``make_collector(pcm)`` gives the audio collector for the
    family's decoding ("f32" or "s16")."""
    from .qwen_audio.family import QwenAudioFamily, QwenAudioProcessor

    if isinstance(processor, QwenAudioProcessor):
        return QwenAudioFamily(model, processor, make_collector(QwenAudioFamily.audio_pcm), feature_cache)
    from .qwen2_audio import Qwen2AudioFamily

    return Qwen2AudioFamily(model, processor, make_collector(Qwen2AudioFamily.audio_pcm), feature_cache)


__all__ = ["CHECKPOINT_FILES", "FAMILIES", "UNQUANTIZED", "ModelFamily", "family_of_config", "load", "make_family",
           "meta_model"]
