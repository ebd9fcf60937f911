"""The configuration of the first-generation Qwen-Audio models, read from their published config.json.

``Qwen/Qwen-Audio-Chat`` and ``Qwen/Qwen-Audio`` ship ``model_type: "qwen"`` with the Qwen-7B (v1)
language-model fields and an ``audio`` block for the Whisper-derived encoder. This class reads that
file unchanged: every field keeps its original name, ``auto_map`` is kept as data and never followed.
"""

from __future__ import annotations

import math
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

#: The audio block of the published 7B checkpoints (a 32-layer Whisper-large-v2-sized encoder).
DEFAULT_AUDIO = {
    "n_mels": 80,
    "n_ctx": 1500,
    "n_state": 1280,
    "n_head": 20,
    "n_layer": 32,
    "output_dim": 4096,
    "avg_pool": True,
    "add_audio_bos_eos_token": True,
    "audio_start_id": 155163,
}


@strict
class QwenAudioConfig(PreTrainedConfig):
    """Qwen-7B v1 decoder + audio encoder, as the published ``config.json`` describes them.

    Fields (original names): ``kv_channels`` is the head size; ``intermediate_size`` is the sum of
    the two SwiGLU branches (each ``intermediate_size // 2``); ``seq_length`` is the training
    context, beyond which dynamic NTK rotary scaling (``use_dynamic_ntk``) and logn attention
    scaling (``use_logn_attn``) act; ``no_bias`` leaves the output projections without bias;
    ``audio`` configures the encoder (``n_mels``, ``n_ctx``, ``n_state``, ``n_head``, ``n_layer``,
    ``output_dim``, ``avg_pool``, ``add_audio_bos_eos_token``, ``audio_start_id``; ``</audio>`` is
    ``audio_start_id + 1``).
    """

    model_type = "qwen"

    vocab_size: int = 155947
    hidden_size: int = 4096
    num_attention_heads: int = 32
    num_hidden_layers: int = 32
    intermediate_size: int = 22016
    kv_channels: int = 128
    layer_norm_epsilon: float = 1e-5
    max_position_embeddings: int = 8192
    seq_length: int = 2048
    rotary_emb_base: float = 10000.0
    rotary_pct: float = 1.0
    use_dynamic_ntk: bool = True
    use_logn_attn: bool = True
    no_bias: bool = True
    emb_dropout_prob: float = 0.0
    attn_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = False
    # The original's precision switches (all False: it picks bf16/fp16/fp32 by hardware; so do we).
    bf16: bool = False
    fp16: bool = False
    fp32: bool = False
    audio: dict[str, Any] | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.audio = {**DEFAULT_AUDIO, **(self.audio or {})}
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Refuse sizes this implementation (and the original) cannot build, with one sentence."""
        if self.kv_channels * self.num_attention_heads != self.hidden_size:
            raise ValueError(
                f"kv_channels ({self.kv_channels}) x num_attention_heads ({self.num_attention_heads}) must equal "
                f"hidden_size ({self.hidden_size})."
            )
        if not 0 < self.rotary_pct <= 1:
            raise ValueError(f"rotary_pct must be in (0, 1], not {self.rotary_pct}.")
        if self.audio["n_state"] % self.audio["n_head"]:
            raise ValueError("audio.n_state must be a multiple of audio.n_head.")

    # What transformers' cache classes and mask helpers ask a decoder config for.
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_key_value_heads(self) -> int:
        return self.num_attention_heads

    @property
    def layer_types(self) -> list[str]:
        return ["full_attention"] * self.num_hidden_layers

    @property
    def sliding_window(self) -> None:
        return None

    @property
    def rotary_dim(self) -> int:
        """Head dimensions that get rotary embeddings (all of them for ``rotary_pct`` 1.0)."""
        return self.kv_channels if self.rotary_pct == 1.0 else int(self.kv_channels * self.rotary_pct)

    @property
    def audio_start_id(self) -> int:
        return int(self.audio["audio_start_id"])

    @property
    def audio_end_id(self) -> int:
        return self.audio_start_id + 1

    def ntk_alpha(self, length: int) -> float:
        """The dynamic-NTK factor for a prefill of ``length`` tokens: 1 up to ``seq_length``, then
        ``2 ** ceil(log2(length / seq_length) + 1) - 1`` (3, 7, 15...), as the original computes it."""
        if not self.use_dynamic_ntk or length <= 0:
            return 1.0
        alpha = 2 ** math.ceil(math.log(length / self.seq_length, 2) + 1) - 1
        return float(max(alpha, 1))
