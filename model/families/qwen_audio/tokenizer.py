"""The tokenizer of the first-generation Qwen-Audio and Qwen-Audio-Chat checkpoints, on tiktoken.

Those checkpoints ship ``qwen.tiktoken`` (lines ``base64-token rank``) and a ``tokenization_qwen.py``
meant for ``trust_remote_code``; this module reads only the vocabulary file and never imports or runs
a checkpoint's Python. Ids: ranks ``0 .. n_base-1`` are byte-level BPE tokens; then, from ``n_base``
on, ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ``<|extra_0|>`` .. ``<|extra_204|>`` and the
3314 :data:`AUDIO_SPECIAL_TOKENS` (task and language tags, ``<|0.00|>`` .. ``<|30.00|>``, ...,
``<audio>``, ``</audio>``). Text is NFC-normalised before encoding, as the original does.

Which special strings an encode recognises is the caller's choice (:meth:`QwenAudioTokenizer.encode_with_specials`):
text a user typed belongs in :meth:`~QwenAudioTokenizer.encode_plain`, so that ``<|im_start|>`` or
``<audio>`` in it stays plain text.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import tiktoken

VOCAB_FILE = "qwen.tiktoken"

# Qwen's pre-tokenizer. Unlike cl100k's it splits digits one by one (\p{N}, not \p{N}{1,3}).
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
EXTRAS = tuple(f"<|extra_{i}|>" for i in range(205))
AUDIO_PAD = "[[[AUDIO:modality]]]"
AUDIO_START = "<audio>"
AUDIO_END = "</audio>"

LANGUAGES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese",
    "de": "German",
    "es": "Spanish",
    "ko": "Korean",
    "fr": "French",
    "ja": "Japanese",
    "it": "Italian",
}
"""The tokenizer's language tags (``<|en|>`` ...) in tag order, with their English names."""

# The same float formatting as the original: the strings must match it byte for byte.
TIMESTAMP_TOKENS = tuple(f"<|{i * 0.01:.2f}|>" for i in range(3001))


def _tags(*names: str) -> tuple[str, ...]:
    return tuple(f"<|{name}|>" for name in names)


AUDIO_SPECIAL_TOKENS: tuple[str, ...] = (
    AUDIO_PAD,
    *_tags("startoftranscript", "startofanalysis"),
    *_tags("translate", "transcribe", "caption", "keyword"),
    *_tags("unknown", *LANGUAGES, "zh_tr"),
    *_tags("notimestamps", "sil", "timestamps"),
    *TIMESTAMP_TOKENS,
    *_tags(
        "caption_audiocaps", "caption_clotho", "audioset_ontology", "caption_plain", "itn", "wo_itn",
        "startofentityvalue", "endofentityvalue", "startofentitytype", "endofentitytype",
        "named_entity_recognition", "audio_grounding", "startofword", "endofword", "delim",
        "emotion_recognition", "music_description", "note_analysis", "pitch",
    ),
    *_tags(*(f"midi_pitch_{i}" for i in range(128))),
    *_tags("velocity"),
    *_tags(*(f"midi_velocity_{i}" for i in range(128))),
    *_tags(
        "sonic", "instrument", "speaker_meta", "song_meta", "question", "answer", "choice", "scene",
        "event", "vocal_classification", "speech_understanding", "scenario", "action", "entities",
        "speech_edit",
    ),
    AUDIO_START,
    AUDIO_END,
)
"""The 3314 audio, task, language and timestamp strings, in id order (the original's ``AUDIO_ST``)."""

SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, *EXTRAS, *AUDIO_SPECIAL_TOKENS)
"""Every special string in id order; the first has id ``n_base``."""

# Every special string matches this; which of them count is decided per encode mode. (Handing tiktoken
# its allowed set instead costs about 1 ms per call: it converts all ~3500 strings every time.)
_SPECIAL_CANDIDATE = re.compile(r"<\|[^|<>]*\|>|</?audio>|\[\[\[AUDIO:modality\]\]\]")

_ENCODE_MODES = ("all", "audio", "timestamps")
_DECODE_MODES = ("keep", "skip", "timestamps")


def load_ranks(vocab_file: str | os.PathLike) -> dict[bytes, int]:
    """The BPE ranks of a tiktoken file (``base64-token rank`` per line), checked to be a byte-level
    BPE with ranks ``0 .. n-1``; raises ValueError with a sentence naming the file otherwise."""
    name = os.fspath(vocab_file)
    try:
        contents = Path(vocab_file).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{name} does not exist: a Qwen-Audio checkpoint needs it as its tokenizer vocabulary.") from None
    except OSError as error:
        raise ValueError(f"{name} cannot be read as the tokenizer vocabulary ({error.strerror or error}).") from None
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(contents.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise ValueError(f"{name} is not a tiktoken vocabulary: line {number} is not 'base64-token rank'.") from None
    if not ranks:
        raise ValueError(f"{name} is not a tiktoken vocabulary: it holds no tokens.")
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{name} is not a tiktoken vocabulary: its ranks are not 0..{len(ranks) - 1}, each once.")
    missing = sum(bytes([b]) not in ranks for b in range(256))
    if missing:
        raise ValueError(f"{name} is not a byte-level BPE vocabulary: {missing} of the 256 single bytes have no token.")
    return ranks


class QwenAudioTokenizer:
    """Encode and decode for Qwen-Audio(-Chat): tiktoken BPE plus the original's special tokens.

    Attributes: ``n_base`` (BPE ranks), ``n_vocab`` (ids with a token; a model's embedding may have
    more rows, the padding ids, which decode to nothing), ``eod_id`` (``<|endoftext|>``, the first
    special), ``im_start_id``, ``im_end_id``, ``audio_start_id`` / ``audio_end_id`` (``<audio>`` /
    ``</audio>``), ``audio_pad_id`` (``[[[AUDIO:modality]]]``) and ``special_tokens`` (string -> id).
    """

    def __init__(self, vocab_file: str | os.PathLike):
        ranks = load_ranks(vocab_file)
        self.vocab_file = Path(vocab_file)
        self.n_base = len(ranks)
        self.special_tokens: dict[str, int] = {token: self.n_base + i for i, token in enumerate(SPECIAL_TOKENS)}
        self.n_vocab = self.n_base + len(SPECIAL_TOKENS)
        self._encoding = tiktoken.Encoding(
            "qwen-audio",
            pat_str=PAT_STR,
            mergeable_ranks=ranks,
            special_tokens=self.special_tokens,
            explicit_n_vocab=self.n_vocab,
        )
        self.eod_id = self.special_tokens[ENDOFTEXT]
        self.im_start_id = self.special_tokens[IM_START]
        self.im_end_id = self.special_tokens[IM_END]
        self.audio_start_id = self.special_tokens[AUDIO_START]
        self.audio_end_id = self.special_tokens[AUDIO_END]
        self.audio_pad_id = self.special_tokens[AUDIO_PAD]
        self._first_timestamp_id = self.special_tokens[TIMESTAMP_TOKENS[0]]
        self._last_timestamp_id = self.special_tokens[TIMESTAMP_TOKENS[-1]]
        self._allowed: dict[str, dict[str, int]] = {
            mode: {token: self.special_tokens[token] for token in tokens}
            for mode, tokens in (("all", SPECIAL_TOKENS), ("audio", AUDIO_SPECIAL_TOKENS), ("timestamps", TIMESTAMP_TOKENS))
        }
        # One bytes table per decode mode, indexed by id, so decoding and streaming are list lookups.
        base = [b""] * self.n_base
        for token, rank in ranks.items():
            base[rank] = token
        kept = [token.encode("utf-8") for token in SPECIAL_TOKENS]
        timestamps_only = [
            text if self._first_timestamp_id <= self.n_base + i <= self._last_timestamp_id else b""
            for i, text in enumerate(kept)
        ]
        self._tables: dict[str, list[bytes]] = {
            "keep": base + kept,
            "skip": base + [b""] * len(SPECIAL_TOKENS),
            "timestamps": base + timestamps_only,
        }

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "QwenAudioTokenizer":
        """The tokenizer of the checkpoint directory ``path`` (its ``qwen.tiktoken``); raises ValueError
        with a sentence naming the file when it is missing or not a tiktoken vocabulary."""
        return cls(Path(path) / VOCAB_FILE)

    def __repr__(self) -> str:
        return f"QwenAudioTokenizer({str(self.vocab_file)!r}, n_base={self.n_base}, n_vocab={self.n_vocab})"

    def token_id(self, token: str) -> int:
        """The id of the special string ``token`` (``"<|im_end|>"``); KeyError if it is not one."""
        try:
            return self.special_tokens[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a special token of the Qwen-Audio tokenizer") from None

    def encode_plain(self, text: str) -> list[int]:
        """Ids of ``text`` (NFC-normalised) with no special string recognised: ``<|im_end|>`` in it is
        plain text. For anything a user typed."""
        return self._encoding.encode_ordinary(unicodedata.normalize("NFC", text))

    def encode_with_specials(self, text: str, allowed: str = "all") -> list[int]:
        """Ids of ``text`` (NFC-normalised) with some special strings parsed as their own ids, the rest
        left as plain text: ``allowed="all"`` every special string (the base model's prompt path);
        ``"audio"`` only :data:`AUDIO_SPECIAL_TOKENS` (how the original chat encodes each message);
        ``"timestamps"`` only ``<|0.00|>`` .. ``<|30.00|>`` (the assistant's own earlier replies)."""
        try:
            specials = self._allowed[allowed]
        except KeyError:
            raise ValueError(f"allowed must be one of {', '.join(_ENCODE_MODES)}, not {allowed!r}") from None
        text = unicodedata.normalize("NFC", text)
        # tiktoken's own rule: the leftmost special string wins; one not allowed is plain text and the
        # search goes on from the character after its start (another special may begin inside it).
        encode_ordinary = self._encoding.encode_ordinary
        ids: list[int] = []
        start = pos = 0
        while (found := _SPECIAL_CANDIDATE.search(text, pos)) is not None:
            token_id = specials.get(found.group())
            if token_id is None:
                pos = found.start() + 1
                continue
            if found.start() > start:
                ids += encode_ordinary(text[start:found.start()])
            ids.append(token_id)
            start = pos = found.end()
        if start < len(text):
            ids += encode_ordinary(text[start:])
        return ids

    def _table(self, specials: str) -> list[bytes]:
        try:
            return self._tables[specials]
        except KeyError:
            raise ValueError(f"specials must be one of {', '.join(_DECODE_MODES)}, not {specials!r}") from None

    def decode(self, ids: Iterable[int], *, specials: str = "keep", errors: str = "replace") -> str:
        """The text of ``ids`` (ints, or anything with ``tolist()`` such as a 1-D tensor), its bytes
        decoded as UTF-8 with ``errors``. ``specials="keep"`` writes every special token as its string,
        ``"skip"`` drops them all (every id >= ``eod_id``, timestamps included, like the original's
        ``skip_special_tokens``), ``"timestamps"`` keeps only the timestamp tokens. Ids without a token
        (vocabulary padding, >= ``n_vocab``, or negative) are dropped silently."""
        table = self._table(specials)
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        n = len(table)
        return b"".join([table[i] for i in ids if 0 <= i < n]).decode("utf-8", errors)

    def token_bytes(self, token_id: int, specials: str = "timestamps") -> bytes:
        """The bytes one token adds to a stream: a BPE token's bytes (possibly part of a UTF-8
        character), a special token's UTF-8 string if ``specials`` keeps it (same modes as
        :meth:`decode`) else ``b""``; ``b""`` for an id without a token."""
        table = self._table(specials)
        return table[token_id] if 0 <= token_id < len(table) else b""

    def is_timestamp(self, token_id: int) -> bool:
        """Whether ``token_id`` is one of ``<|0.00|>`` .. ``<|30.00|>``."""
        return self._first_timestamp_id <= token_id <= self._last_timestamp_id

    def timestamp_seconds(self, token_id: int) -> float:
        """The seconds a timestamp token stands for (``<|2.33|>`` -> 2.33); ValueError for another id."""
        if not self.is_timestamp(token_id):
            raise ValueError(f"token id {token_id} is not a timestamp token")
        return (token_id - self._first_timestamp_id) / 100
