"""Tiny random Qwen-Audio-Chat / Qwen-Audio checkpoints, written exactly in the layout the hub publishes.

``python -m model.tiny OUT --family qwen-audio-chat`` (or ``qwen-audio``) calls
:func:`build_tiny_qwen_audio_checkpoint`: ``config.json`` with ``model_type: "qwen"``, the ``audio``
block, ``auto_map`` and ``architectures: ["QWenLMHeadModel"]`` as published; the weights under their
original names in three safetensors shards with ``model.safetensors.index.json``; a ``qwen.tiktoken``
(a byte-level BPE trained here on a small multilingual corpus) with the special tokens at the original
positions after it; ``mel_filters.npz`` (librosa's 80-bin Whisper filters, as the original file was
made); the chat or base ``generation_config.json``; ``tokenizer_config.json``. No ``.py`` file is
written: the demo never needs one.

ITS WEIGHTS ARE RANDOM: its answers are gibberish. ``config.json`` says so (``tiny_random``), and the
demo labels it wherever it shows the model.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

TINY_MARKER = "tiny-random-qwen-audio"

def _corpus() -> list[str]:
    """The Qwen2-Audio tiny tokenizer's corpus (the eight languages, task words, code) plus Qwen-Audio's own words."""
    from model.tiny import TOKENIZER_CORPUS

    return TOKENIZER_CORPUS + [
        "Find the start time and end time of the word. The word starts at 2.33 seconds and ends at 3.26 seconds.",
        "Audio 1: Audio 2: Is there any difference between these two audio clips? You are a helpful assistant.",
        "system user assistant\n你没事吧。",
    ]


#: The tiny architecture: the same shapes as the reference fixture's tiny checkpoints.
TINY_SIZES = {
    "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128, "kv_channels": 16,
}
TINY_AUDIO = {"n_mels": 80, "n_ctx": 1500, "n_state": 32, "n_head": 2, "n_layer": 2, "output_dim": 64,
              "avg_pool": True, "add_audio_bos_eos_token": True}


def train_tiktoken_ranks(vocab_size: int = 600) -> list[bytes]:
    """A byte-level BPE trained on the corpus, as tiktoken ranks: the 256 bytes in byte order, then every
    merged token in merge order (so each merge's parts rank below it, as tiktoken needs)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    from ...streaming import byte_level_alphabet
    from .tokenizer import PAT_STR

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    bpe.train_from_iterator(_corpus() * 4, trainer=trainer)
    alphabet = byte_level_alphabet()
    vocab = json.loads(bpe.to_str())["model"]["vocab"]
    merged = [bytes(alphabet[c] for c in token) for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    singles = [bytes([b]) for b in range(256)]
    return singles + [token for token in merged if len(token) > 1]


def write_tiktoken(path: Path, ranks: list[bytes]) -> None:
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(ranks)),
                    encoding="utf-8")


def _generation_config(chat: bool, eod: int) -> dict:
    """The published generation_config.json of Qwen-Audio-Chat (chat) or Qwen-Audio (base), with tiny ids."""
    if chat:
        return {"chat_format": "chatml", "eos_token_id": eod, "pad_token_id": eod, "max_window_size": 6144,
                "max_new_tokens": 512, "do_sample": True, "top_k": 0, "top_p": 0.5, "transformers_version": "4.31.0"}
    return {"chat_format": "raw", "eos_token_id": eod, "pad_token_id": eod, "stop_words_ids": [[eod]],
            "max_new_tokens": 512, "do_sample": True, "top_k": 0, "top_p": 0.8, "transformers_version": "4.31.0"}


def build_tiny_qwen_audio_checkpoint(out_dir: str | os.PathLike, *, chat: bool = True, seed: int = 0) -> Path:
    """Write a tiny random Qwen-Audio-Chat (``chat``) or Qwen-Audio (base) checkpoint to ``out_dir``."""
    import numpy as np
    import torch

    from .configuration import QwenAudioConfig
    from .features import MEL_FILTERS_FILE, compute_mel_filters
    from .modeling import QwenAudioForCausalLM
    from .tokenizer import VOCAB_FILE, QwenAudioTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tiktoken(out / VOCAB_FILE, train_tiktoken_ranks())
    tokenizer = QwenAudioTokenizer(out / VOCAB_FILE)
    vocab_size = -(-tokenizer.n_vocab // 64) * 64  # the published vocab_size is padded past n_vocab too
    audio = {**TINY_AUDIO, "audio_start_id": tokenizer.audio_start_id}
    config = QwenAudioConfig(vocab_size=vocab_size, audio=audio, seq_length=2048, max_position_embeddings=8192,
                             **TINY_SIZES)
    torch.manual_seed(seed)
    model = QwenAudioForCausalLM(config).eval()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        for name, param in model.named_parameters():
            # Perturb everything (norm weights off 1, biases off 0) so inputs give visibly different outputs.
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
        for table in (model.transformer.wte.weight, model.lm_head.weight):
            table[tokenizer.n_vocab:] = 0  # padding rows, as in the published weights
    model.save_pretrained(out, max_shard_size="1MB")
    shards = sorted(out.glob("model-*.safetensors"))
    published = {
        "architectures": ["QWenLMHeadModel"],
        "auto_map": {"AutoConfig": "configuration_qwen.QWenConfig", "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
        "attn_dropout_prob": 0.0, "bf16": False, "fp16": False, "fp32": False, "emb_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "qwen", "max_position_embeddings": 8192,
        "no_bias": True, "onnx_safe": None, "rotary_emb_base": 10000, "rotary_pct": 1.0, "scale_attn_weights": True,
        "seq_length": 2048, "tie_word_embeddings": False, "tokenizer_type": "QWenTokenizer",
        "transformers_version": "4.31.0", "use_cache": True, "vocab_size": vocab_size, "use_dynamic_ntk": True,
        "use_logn_attn": True, **TINY_SIZES, "audio": audio,
        "tiny_random": True, "tiny_random_marker": f"{TINY_MARKER}-{'chat' if chat else 'base'} (seed {seed}): RANDOM WEIGHTS, gibberish answers",
    }
    (out / "config.json").write_text(json.dumps(published, indent=2), encoding="utf-8")
    (out / "generation_config.json").write_text(json.dumps(_generation_config(chat, tokenizer.eod_id), indent=2),
                                               encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 8192, "tokenizer_class": "QWenTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer", None]},
    }, indent=2), encoding="utf-8")
    np.savez_compressed(out / MEL_FILTERS_FILE, mel_80=compute_mel_filters(80))
    name = "Qwen-Audio-Chat" if chat else "Qwen-Audio (base)"
    (out / "README.md").write_text(
        f"# Tiny random {name} checkpoint\n\n"
        "Built by `python -m model.tiny` in the layout the hub publishes, for tests and UI try-outs. Its weights "
        f"are RANDOM: every answer is gibberish. Use `Qwen/{'Qwen-Audio-Chat' if chat else 'Qwen-Audio'}` for real "
        "answers.\n",
        encoding="utf-8",
    )
    logger.info("wrote tiny random %s checkpoint (%d shards) to %s", name, len(shards), out)
    return out


#: The label of the full-size random model (``bench.latency --random-full-size --family qwen-audio-chat``).
FULL_SIZE_MARKER = "full-size-random-qwen-audio"


def build_full_size_qwen_audio(tokenizer_dir: str | os.PathLike, *, chat: bool = True, device: str = "cuda",
                               dtype: str = "bfloat16", seed: int = 0, attention: str = "auto"):
    """A randomly initialised model of Qwen-Audio-Chat's size (the published config.json: 8.39 B
    parameters, about 16.8 GB in bfloat16), built directly on ``device``, and a processor for it.

    For speed and memory measurements without the download; its answers are gibberish. The tokenizer
    is the tiny one (written to ``tokenizer_dir``) with its special ids; the embedding has the real
    model's 155,947 rows.
    """
    import torch

    from .configuration import QwenAudioConfig
    from .family import QwenAudioProcessor, generation_config_of
    from .features import LogMelExtractor, compute_mel_filters
    from .modeling import QwenAudioForCausalLM
    from .tokenizer import VOCAB_FILE, QwenAudioTokenizer

    folder = Path(tokenizer_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiktoken(folder / VOCAB_FILE, train_tiktoken_ranks())
    tokenizer = QwenAudioTokenizer(folder / VOCAB_FILE)
    (folder / "generation_config.json").write_text(json.dumps(_generation_config(chat, tokenizer.eod_id)))
    config = QwenAudioConfig(audio={"audio_start_id": tokenizer.audio_start_id})
    config.tiny_random = True  # random weights: labelled so wherever the worker shows its model
    config.name_or_path = FULL_SIZE_MARKER
    torch.manual_seed(seed)
    with torch.device(device):
        model = QwenAudioForCausalLM._from_config(
            config, dtype=getattr(torch, dtype), **({} if attention == "auto" else {"attn_implementation": attention}))
    model.generation_config, _ = generation_config_of(folder, tokenizer, config.vocab_size)
    processor = QwenAudioProcessor(tokenizer, LogMelExtractor(compute_mel_filters(80)), "chatml" if chat else "raw")
    return model.eval(), processor
