"""Build a tiny, randomly initialised checkpoint that loads like the real one.

    python -m model.tiny OUT_DIR [--family qwen2-audio|qwen-audio-chat|qwen-audio] [--layout current|hub] [--base] [--seed N]

``--family qwen-audio-chat`` / ``qwen-audio`` write a first-generation Qwen-Audio-Chat / Qwen-Audio
checkpoint in the hub's published layout (see :mod:`model.families.qwen_audio.tiny`); the rest of this
page is about the default, Qwen2-Audio.

The checkpoint uses the real ``Qwen2AudioConfig`` architecture with tiny sizes, a byte-level BPE
tokenizer trained here with Qwen2's pre-tokenizer and special tokens, the Qwen2-Audio-7B-Instruct
chat template (left out with ``--base``, like the base model ``Qwen/Qwen2-Audio-7B``) and a
128-bin Whisper feature extractor with 30 s windows. It is written with ``save_pretrained``
(``--layout current``) or in the older file layout the published checkpoints use
(``--layout hub``). Either way ``ModelWorker.from_pretrained(OUT_DIR)`` loads it exactly like a
downloaded checkpoint.

ITS WEIGHTS ARE RANDOM: its answers are gibberish. It exists for tests and for trying the UI
without the 17 GB download, and is labelled as such wherever it is offered.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from .audio import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Written into the checkpoint's config so every consumer can say plainly what it is.
TINY_MARKER = "tiny-random-qwen2-audio"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]

# Qwen2's pre-tokenizer split, as its tokenizer uses it.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The chat template Qwen/Qwen2-Audio-7B-Instruct ships (chat_template.json on the hub).
QWEN2_AUDIO_INSTRUCT_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)

# Text in the demo's eight UI languages and a little code, so the tokenizer has real merges in each.
TOKENIZER_CORPUS = [
    "What does the speaker say? Please transcribe the audio and translate it into English.",
    "Describe the sound in this clip. Is it music, speech, or an environmental noise like rain or a dog barking?",
    "The quick brown fox jumps over the lazy dog. I'm sure they'll say it's what we'd've done.",
    "请转写这段音频，并告诉我说话人的情绪。这是什么声音？音乐的风格是什么？",
    "この音声を文字に起こしてください。話者は何と言っていますか？",
    "이 오디오를 받아 적어 주세요. 화자는 무엇이라고 말합니까?",
    "Transcribe este audio, por favor. ¿Qué dice la persona que habla?",
    "Transcris cet audio, s'il te plaît. Que dit la personne qui parle ?",
    "Bitte transkribiere diese Aufnahme. Was sagt die sprechende Person?",
    "Per favore, trascrivi questo audio. Che cosa dice chi parla?",
    "Detect the language and recognize the speech: <|en|> Generate the caption in English:",
    "Translate the speech into Chinese: Audio 1: Audio 2: compare the two clips, 0.5 seconds, 12.34 s, 2024.",
    "def stream_reply(messages):\n    for piece in worker.stream(messages):\n        yield piece\n",
]


def build_tokenizer(vocab_size: int = 1200):
    """Train a byte-level BPE with Qwen2's pre-tokenizer and return a ``Qwen2Tokenizer`` with Qwen2-Audio's special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    bpe.train_from_iterator(TOKENIZER_CORPUS * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]

    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, errors="replace", model_max_length=32768)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    # Attribute names Qwen2AudioProcessor and templates look for.
    tokenizer.audio_token = "<|AUDIO|>"
    tokenizer.audio_bos_token = "<|audio_bos|>"
    tokenizer.audio_eos_token = "<|audio_eos|>"
    return tokenizer


def build_processor(chat: bool = True):
    """The processor: 128-mel Whisper features with 30 s windows + the tiny tokenizer (+ the chat template)."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    feature_extractor = WhisperFeatureExtractor(
        feature_size=128,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=True,
    )
    tokenizer = build_tokenizer()
    processor = Qwen2AudioProcessor(
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=QWEN2_AUDIO_INSTRUCT_CHAT_TEMPLATE if chat else None,
    )
    if not chat:
        # The processor fills in a default template when given none; the base checkpoint ships none.
        processor.chat_template = None
    return processor


def build_model(tokenizer, seed: int = 0):
    """A randomly initialised ``Qwen2AudioForConditionalGeneration`` with tiny sizes, on CPU in float32."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2Config,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = len(tokenizer)
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=128,
            d_model=64,
            max_source_positions=1500,
        ),
        text_config=Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|endoftext|>"],
        ),
        audio_token_index=ids["<|AUDIO|>"],
    )
    config.tie_word_embeddings = False
    config.name_or_path = TINY_MARKER
    config.tiny_random = True  # read by the worker to label the model honestly
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    # Random init leaves many norms at exactly 1 and biases at 0; perturb every weight a little so
    # different inputs give visibly different (still meaningless) outputs.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.generation_config = build_model_generation_config(tokenizer)
    return model


def build_model_generation_config(tokenizer):
    """The sampling defaults of Qwen2-Audio-7B-Instruct's generation_config.json, with ``tokenizer``'s ids."""
    from transformers import GenerationConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.5,
        repetition_penalty=1.1,
        max_new_tokens=256,
    )


#: The label of the full-size random model (``bench.latency --random-full-size``).
FULL_SIZE_MARKER = "full-size-random-qwen2-audio"


def full_size_config(tokenizer):
    """Qwen2-Audio-7B's architecture (the sizes of its published config.json: a 32-layer Whisper-large
    encoder and a 32-layer 4096-wide Qwen-7B decoder with a 156 032-token vocabulary, 8.4 B parameters)
    with ``tokenizer``'s special-token ids, marked as random."""
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, d_model=1280,
            max_source_positions=1500,
        ),
        text_config=Qwen2Config(
            vocab_size=156032, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192, rope_theta=10000.0,
            rms_norm_eps=1e-5, tie_word_embeddings=False,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        ),
        audio_token_index=ids["<|AUDIO|>"],
    )
    config.tie_word_embeddings = False
    config.name_or_path = FULL_SIZE_MARKER
    config.tiny_random = True  # random weights: labelled so wherever the worker shows its model
    return config


def build_full_size_model(tokenizer, device: str = "cuda", dtype: str = "bfloat16", seed: int = 0,
                          attention: str = "auto"):
    """A randomly initialised model of Qwen2-Audio-7B's size, built directly on ``device`` in ``dtype``.

    For speed and memory measurements without the 17 GB download (about 16.8 GB in bfloat16); its
    answers are gibberish. The generation config is the tiny checkpoint's (the real one's sampling
    defaults).
    """
    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2AudioForConditionalGeneration._from_config(
            full_size_config(tokenizer), dtype=getattr(torch, dtype),
            **({} if attention == "auto" else {"attn_implementation": attention}))
    model.generation_config = build_model_generation_config(tokenizer)
    return model.eval()


def _write_hub_layout(out: Path, model, processor) -> None:
    """Rewrite a ``save_pretrained`` directory into the older layout the published checkpoints use.

    That layout has ``preprocessor_config.json`` instead of ``processor_config.json``, ``vocab.json`` +
    ``merges.txt`` and a ``tokenizer_config.json`` carrying the chat template instead of
    ``tokenizer.json`` / ``chat_template.jinja``, ``chat_template.json``, ``torch_dtype`` in
    ``config.json``, and sharded safetensors with an index.
    """
    tokenizer = processor.tokenizer
    for name in ("processor_config.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "model.safetensors"):
        (out / name).unlink(missing_ok=True)
    model.save_pretrained(out, max_shard_size="400KB")

    config = json.loads((out / "config.json").read_text())
    config["torch_dtype"] = config.pop("dtype", "float32")
    config["transformers_version"] = "4.45.0.dev0"
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    fe = processor.feature_extractor.to_dict()
    fe["processor_class"] = "Qwen2AudioProcessor"
    fe["feature_extractor_type"] = "WhisperFeatureExtractor"
    (out / "preprocessor_config.json").write_text(json.dumps(fe, indent=2, sort_keys=True))

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["model"]["merges"]]
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = {
        str(tokenizer.convert_tokens_to_ids(tok)): {
            "content": tok, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True,
        }
        for tok in SPECIAL_TOKENS
    }
    tok_config = {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    if processor.chat_template:
        tok_config["chat_template"] = processor.chat_template
        (out / "chat_template.json").write_text(json.dumps({"chat_template": processor.chat_template}, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    (out / "special_tokens_map.json").write_text(json.dumps({
        "additional_special_tokens": SPECIAL_TOKENS[1:], "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }, indent=2))


def build_tiny_checkpoint(out_dir: str | os.PathLike, *, layout: str = "current", chat: bool = True, seed: int = 0) -> Path:
    """Build the tiny random checkpoint into ``out_dir`` and return its path.

    ``layout`` is ``"current"`` (what ``save_pretrained`` writes today) or ``"hub"`` (the older layout of
    the published checkpoints). ``chat=False`` builds a base-model checkpoint without a chat template.
    """
    if layout not in ("current", "hub"):
        raise ValueError(f"layout must be 'current' or 'hub', not {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(chat=chat)
    model = build_model(processor.tokenizer, seed=seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if layout == "hub":
        _write_hub_layout(out, model, processor)
    (out / "README.md").write_text(
        "# Tiny random Qwen2-Audio checkpoint\n\n"
        "Built by `python -m model.tiny` for tests and UI try-outs. Its weights are RANDOM: every answer "
        "is gibberish. Use `Qwen/Qwen2-Audio-7B-Instruct` for real answers.\n",
        encoding="utf-8",
    )
    logger.info("wrote tiny random %s checkpoint (%s layout) to %s", "chat" if chat else "base", layout, out)
    return out


FAMILY_CHOICES = ("qwen2-audio", "qwen-audio-chat", "qwen-audio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.tiny",
        description="Build a tiny checkpoint with RANDOM weights (gibberish answers) for tests and try-outs.",
    )
    parser.add_argument("out_dir", help="directory to write the checkpoint into")
    parser.add_argument("--family", choices=FAMILY_CHOICES, default="qwen2-audio",
                        help="qwen2-audio (default; --base for the base model), or the first generation: qwen-audio-chat, "
                             "qwen-audio (base), always in the hub's published layout")
    parser.add_argument("--layout", choices=["current", "hub"], default="current",
                        help="'current': today's save_pretrained files; 'hub': the older layout of the published checkpoints (default: current)")
    parser.add_argument("--base", action="store_true", help="build a base-model checkpoint (no chat template), like Qwen/Qwen2-Audio-7B")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.family != "qwen2-audio":
        if args.base or args.layout != "current":
            parser.error("--base and --layout are for --family qwen2-audio; the Qwen-Audio families are always "
                         "written in the hub's layout (use --family qwen-audio for the base model)")
        from model.families.qwen_audio.tiny import build_tiny_qwen_audio_checkpoint

        path = build_tiny_qwen_audio_checkpoint(args.out_dir, chat=args.family == "qwen-audio-chat", seed=args.seed)
        logger.info("%s: random weights, gibberish answers; load it with -c %s", path, path)
        return 0
    path = build_tiny_checkpoint(args.out_dir, layout=args.layout, chat=not args.base, seed=args.seed)
    logger.info("%s: random weights, gibberish answers; load it with -c %s", path, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
