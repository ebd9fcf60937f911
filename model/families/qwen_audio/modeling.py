"""Qwen-Audio(-Chat), written natively with transformers 5 building blocks.

The published checkpoints (``Qwen/Qwen-Audio-Chat``, ``Qwen/Qwen-Audio``) load into these classes
unchanged: the module tree carries the original parameter names (``transformer.wte``,
``transformer.h.N.attn.c_attn``, ``transformer.audio.blocks.N.attn.query``, ``lm_head``...), so the
sharded safetensors map one to one and nothing is converted, re-initialised or left out.

The language model is Qwen-7B v1: RMSNorm (computed in float32), one fused ``c_attn`` projection
with bias, ``c_proj`` without, rotary embeddings on the whole head (rotate-half), a SwiGLU MLP
``c_proj(w1(x) * silu(w2(x)))``, and two length extensions the original applies at inference:

- **dynamic NTK**: a prefill of L tokens beyond ``seq_length`` raises the rotary base by
  ``alpha ** (d / (d - 2))`` with ``alpha = 2 ** ceil(log2(L / seq_length) + 1) - 1``; the alpha of
  the prefill is kept for every later step (it is stored on the KV cache, so a cached prefix is only
  ever continued with the alpha it was computed with);
- **logn attention**: the query at 0-based position p is scaled by ``log(p + 1) / log(seq_length)``
  once ``p + 1 > seq_length``.

The audio encoder is Whisper's (two convolutions, sinusoidal positions, pre-norm blocks whose key
projection has no bias), followed by average pooling, a final LayerNorm, a projection to the LLM
width and two learned embeddings that open and close every audio span. All audios of a prompt are
encoded as one batch cut to the longest clip, exactly like the original: each clip's own positions
past its length are zeroed and masked as keys, but the convolutions at its last frames read the
padded log-mel of a longer neighbour, so a clip's embeddings depend on whether a longer clip is
encoded with it (``audio_batch_length``).

Attention runs through transformers' attention interface (SDPA by default, eager, or
FlashAttention 2), the KV cache is any transformers ``Cache``, and ``generate`` (streamers,
stopping criteria, static caches, ``torch.compile``) works as for any transformers model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration import QwenAudioConfig

logger = logging.getLogger(__name__)

#: The attribute of a KV cache that remembers the NTK alpha its keys were rotated with.
NTK_ALPHA_ATTRIBUTE = "qwen_audio_ntk_alpha"


# ----------------------------------------------------------------------------- language model
class QwenAudioRMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of ``x`` [b, h, s, d] in float32, like the original."""
    rot = cos.shape[-1]
    head, rest = x[..., :rot].float(), x[..., rot:]
    rotated = head * cos + _rotate_half(head) * sin
    return torch.cat((rotated.type_as(x), rest), dim=-1) if rest.shape[-1] else rotated.type_as(x)


def eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
    """Plain attention in matrix products (``attn_implementation="eager"``)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class QwenAudioAttention(nn.Module):
    def __init__(self, config: QwenAudioConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.num_key_value_groups = 1
        self.is_causal = True
        self.scaling = self.head_dim ** -0.5
        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=not config.no_bias)

    def forward(self, hidden_states: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                logn: torch.Tensor | None, attention_mask: torch.Tensor | None, cache: Cache | None,
                **kwargs) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query, key, value = self.c_attn(hidden_states).split(self.config.hidden_size, dim=2)
        query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
        cos, sin = rotary
        query, key = _apply_rotary(query, cos, sin), _apply_rotary(key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        if logn is not None:
            query = query * logn.type_as(query)
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention)
        output, _ = attention(
            self, query, key, value, attention_mask,
            dropout=self.config.attn_dropout_prob if self.training else 0.0, scaling=self.scaling, **kwargs,
        )
        return self.c_proj(output.reshape(batch, length, -1))


class QwenAudioMLP(nn.Module):
    def __init__(self, config: QwenAudioConfig):
        super().__init__()
        half = config.intermediate_size // 2
        self.w1 = nn.Linear(config.hidden_size, half, bias=not config.no_bias)
        self.w2 = nn.Linear(config.hidden_size, half, bias=not config.no_bias)
        self.c_proj = nn.Linear(half, config.hidden_size, bias=not config.no_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.w1(x) * F.silu(self.w2(x)))


class QwenAudioBlock(nn.Module):
    def __init__(self, config: QwenAudioConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = QwenAudioRMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.attn = QwenAudioAttention(config, layer_idx)
        self.ln_2 = QwenAudioRMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = QwenAudioMLP(config)

    def forward(self, hidden_states: torch.Tensor, rotary, logn, attention_mask, cache, **kwargs) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.ln_1(hidden_states), rotary, logn, attention_mask, cache, **kwargs)
        return hidden_states + self.mlp(self.ln_2(hidden_states))


# ----------------------------------------------------------------------------- audio encoder
def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal positional embedding [length, channels] (sin half, then cos half)."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class AudioAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        split = lambda t: t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # Whisper scales q and k by d ** -0.25 each: the same as SDPA's single 1/sqrt(d).
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(batch, length, width))


class AudioBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = AudioAttention(width, heads)
        self.attn_ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_ln = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), mask)
        return x + self.mlp(self.mlp_ln(x))


def audio_token_count(length_after_cnn: int) -> int:
    """Audio embeddings one clip yields after average pooling (the span holds two more: bos, eos)."""
    return (int(length_after_cnn) - 2) // 2 + 1


class QwenAudioEncoder(nn.Module):
    """Log-mel [n, n_mels, frames] -> per clip [n_tokens + 2, output_dim] (bos, audio, eos)."""

    def __init__(self, audio: dict):
        super().__init__()
        width, heads = int(audio["n_state"]), int(audio["n_head"])
        self.n_ctx = int(audio["n_ctx"])
        self.conv1 = nn.Conv1d(int(audio["n_mels"]), width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(self.n_ctx, width))
        self.blocks = nn.ModuleList([AudioBlock(width, heads) for _ in range(int(audio["n_layer"]))])
        self.ln_post = nn.LayerNorm(width)
        self.avg_pool = bool(audio.get("avg_pool", True))
        self.proj = nn.Linear(width, int(audio["output_dim"]))
        self.audio_bos_eos_token = (
            nn.Embedding(2, int(audio["output_dim"])) if audio.get("add_audio_bos_eos_token", True) else None
        )

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, batch_length: int | None = None) -> list[torch.Tensor]:
        """Encode clips of conv lengths ``lengths`` (``len_after_cnn`` each) as one batch.

        ``batch_length`` is the longest ``len_after_cnn`` of the batch the prompt's audios form
        (default: the longest of ``lengths``); encoding only some of a prompt's clips with the whole
        prompt's ``batch_length`` gives them exactly the embeddings a full encode gives them.
        """
        lengths = [int(n) for n in lengths.reshape(-1).tolist()]
        if len(lengths) != features.shape[0]:
            raise ValueError(f"{features.shape[0]} audio feature rows for {len(lengths)} lengths")
        longest = max(lengths) if batch_length is None else int(batch_length)
        if longest < max(lengths) or longest > self.n_ctx or min(lengths) < 1:
            raise ValueError(f"audio lengths {lengths} do not fit a batch of {longest} (at most {self.n_ctx})")
        weight = self.conv1.weight
        x = features.to(dtype=weight.dtype, device=weight.device)[:, :, : 2 * longest]
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < torch.tensor(lengths, device=x.device)[:, None]
        x = x.masked_fill(~valid[..., None], 0.0)
        mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, float("-inf"))
        mask = mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        if self.avg_pool:
            x = F.avg_pool1d(x.transpose(1, 2), kernel_size=2, stride=2).transpose(1, 2)
        x = self.proj(self.ln_post(x))
        out = []
        for row, length in enumerate(lengths):
            audio = x[row, : audio_token_count(length)]
            if self.audio_bos_eos_token is not None:
                marks = self.audio_bos_eos_token.weight.to(audio.dtype)
                audio = torch.cat([marks[:1], audio, marks[1:]])
            out.append(audio)
        return out


# ----------------------------------------------------------------------------- models
class QwenAudioPreTrainedModel(PreTrainedModel):
    config_class = QwenAudioConfig
    config: QwenAudioConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    _no_split_modules = ["QwenAudioBlock", "AudioBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = False
    _supports_attention_backend = True
    _can_compile_fullgraph = False  # the audio splice is data-dependent; the decoding step compiles

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, QwenAudioEncoder):
            with torch.no_grad():
                module.positional_embedding.copy_(sinusoids(*module.positional_embedding.shape))


def audio_spans(input_ids: torch.Tensor, start_id: int) -> list[tuple[int, int, int]]:
    """(row, index of ``<audio>``, index of ``</audio>``) of every audio span, row by row, in order."""
    spans = []
    for row in range(input_ids.shape[0]):
        starts = (input_ids[row] == start_id).nonzero().flatten().tolist()
        ends = (input_ids[row] == start_id + 1).nonzero().flatten().tolist()
        if len(starts) != len(ends) or any(s >= e for s, e in zip(starts, ends)):
            raise ValueError(f"row {row} of input_ids has unmatched <audio>/</audio> tokens")
        spans.extend((row, s, e) for s, e in zip(starts, ends))
    return spans


class QwenAudioModel(QwenAudioPreTrainedModel):
    """Embeddings (with audio spliced in), the decoder blocks and the final norm."""

    def __init__(self, config: QwenAudioConfig):
        super().__init__(config)
        config.validate_architecture()
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.drop = nn.Dropout(config.emb_dropout_prob)
        self.h = nn.ModuleList([QwenAudioBlock(config, i) for i in range(config.num_hidden_layers)])
        self.ln_f = QwenAudioRMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.audio = QwenAudioEncoder(config.audio)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def _rotary(self, position_ids: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        dim = self.config.rotary_dim
        base = self.config.rotary_emb_base * alpha ** (dim / (dim - 2))
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=position_ids.device).float() / dim))
        freqs = position_ids[..., None].float() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [b, 1, s, dim]
        return emb.cos(), emb.sin()

    def _logn(self, position_ids: torch.Tensor) -> torch.Tensor | None:
        if not self.config.use_logn_attn or self.training:
            return None
        seq_length = self.config.seq_length
        positions = position_ids.double() + 1
        scale = torch.where(positions > seq_length, torch.log(positions) / math.log(seq_length), torch.ones_like(positions))
        return scale.float()[:, None, :, None]  # [b, 1, s, 1]

    def _ntk_alpha(self, cache: Cache | None, past: int, total: int) -> float:
        if self.training:
            return 1.0
        kept = getattr(cache, NTK_ALPHA_ATTRIBUTE, None) if cache is not None and past > 0 else None
        if kept is not None:
            return kept
        alpha = self.config.ntk_alpha(total)
        if cache is not None:
            setattr(cache, NTK_ALPHA_ATTRIBUTE, alpha)
        return alpha

    def embed(self, input_ids: torch.Tensor, input_features: torch.Tensor | None = None,
              audio_lengths: torch.Tensor | None = None, audio_batch_length: int | torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with each ``<audio>``..``</audio>`` span replaced by its clip's encoding."""
        embeds = self.wte(input_ids)
        if input_features is None:
            return embeds
        spans = audio_spans(input_ids, self.config.audio_start_id)
        if audio_lengths is None or len(spans) != int(input_features.shape[0]):
            raise ValueError(f"input_ids hold {len(spans)} audio spans for {int(input_features.shape[0])} audio inputs")
        batch_length = int(audio_batch_length) if audio_batch_length is not None else None
        audios = self.audio(input_features, audio_lengths, batch_length)
        for (row, start, end), audio in zip(spans, audios):
            if end - start + 1 != audio.shape[0]:
                raise ValueError(f"an audio span of {end - start + 1} tokens for an audio of {audio.shape[0]} embeddings")
            embeds[row, start : end + 1] = audio.to(embeds.dtype)
        return embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        input_features: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        audio_batch_length: int | torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """``input_features`` [n, n_mels, 3000] (log-mels, one per audio span in ``input_ids``, in order),
        ``audio_lengths`` [n] (their ``len_after_cnn``) and ``audio_batch_length`` (the longest
        ``len_after_cnn`` among ALL the prompt's audios, when only some are encoded here) are read
        only where ``input_ids`` hold the spans (the prefill)."""
        cache = cache if cache is not None else past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, input_features, audio_lengths, audio_batch_length)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        length = inputs_embeds.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        padded = isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 2 and not bool(attention_mask.all())
        if position_ids is None:
            if padded:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
            else:
                position_ids = torch.arange(past, past + length, device=inputs_embeds.device)[None, :]
        alpha = self._ntk_alpha(cache, past, past + length)
        rotary = self._rotary(position_ids, alpha)
        logn = self._logn(position_ids)
        if isinstance(attention_mask, dict):  # prepared by generate() for a static cache
            mask = attention_mask["full_attention"]
        else:
            mask = create_causal_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                      cache=cache, position_ids=position_ids)
        hidden = self.drop(inputs_embeds)
        for block in self.h:
            hidden = block(hidden, rotary, logn, mask, cache, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=self.ln_f(hidden), cache=cache if use_cache else None)


class QwenAudioForCausalLM(QwenAudioPreTrainedModel, GenerationMixin):
    """Qwen-Audio(-Chat) with its LM head: ``forward`` gives logits, ``generate`` works as usual."""

    _keys_to_ignore_on_load_unexpected = [r"\.attn\.masked_bias$", r"\.attn\.bias$", r"rotary_emb\.inv_freq$"]

    def __init__(self, config: QwenAudioConfig):
        super().__init__(config)
        self.transformer = QwenAudioModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_decoder(self) -> QwenAudioModel:
        return self.transformer

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        input_features: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        audio_batch_length: int | torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            cache=cache if cache is not None else past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
            input_features=input_features, audio_lengths=audio_lengths, audio_batch_length=audio_batch_length, **kwargs,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1).to(logits.device))
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache)
