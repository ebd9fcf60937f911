"""Token-by-token text streaming.

transformers' ``TextIteratorStreamer`` flushes only at spaces, newlines and CJK characters, so a
reply arrives in a few large lumps. Here text is emitted after every token and only an unfinished
UTF-8 tail is held back (byte-level BPE tokens can split a character):

- :class:`ByteLevelDetokenizer` (Qwen's tokenizers are byte-level BPE) maps each token to its bytes
  and feeds them to an incremental UTF-8 decoder, which holds back exactly the bytes of a character
  that may still be completed and renders invalid bytes at once, as the full decode does.
- :class:`IncrementalDetokenizer`, for any other tokenizer, decodes a short window of recent tokens
  twice and emits the difference, holding back text that ends in a replacement character.

Either way ``"".join(pieces)`` equals ``tokenizer.decode(ids, skip_special_tokens=True)``.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text pieces whose concatenation is the full decode.

    ``decode`` maps a list of ids to text (special tokens skipped). Call :meth:`push` per new token;
    it returns the newly completed text (possibly ``""`` while a character is unfinished). Call
    :meth:`flush` at the end: it returns whatever is left so that ``"".join(pieces) == decode(all ids)``.
    """

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the window decoded for context
        self._read_offset = 0  # ids before this are already emitted
        self._emitted: list[str] = []

    @property
    def token_ids(self) -> list[int]:
        return list(self._ids)

    @property
    def text(self) -> str:
        """The text emitted so far."""
        return "".join(self._emitted)

    def push(self, token_id: int) -> str:
        self._ids.append(int(token_id))
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHAR):
            piece = new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            self._emitted.append(piece)
            return piece
        return ""

    def flush(self) -> str:
        """Emit the held-back tail; afterwards the emitted text equals the full decode."""
        full = self._decode(self._ids)
        done = self.text
        if not full.startswith(done):
            # Never seen with byte-level BPE; logged so a tokenizer that breaks the scheme is noticed.
            logger.warning("incremental decode diverged from the full decode; sending the remainder as is")
            return ""
        rest = full[len(done) :]
        if rest:
            self._emitted.append(rest)
        self._prefix_offset = self._read_offset = len(self._ids)
        return rest


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted: printable character -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class ByteLevelDetokenizer:
    """Streams the text of a byte-level BPE tokenizer token by token (see the module docstring).

    Build one per reply with :func:`detokenizer_factory`, which prepares the per-tokenizer tables once.
    """

    def __init__(self, token_bytes: Callable[[int], bytes]):
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._emitted: list[str] = []

    @property
    def token_ids(self) -> list[int]:
        return list(self._ids)

    @property
    def text(self) -> str:
        return "".join(self._emitted)

    def push(self, token_id: int) -> str:
        self._ids.append(int(token_id))
        piece = self._decoder.decode(self._token_bytes(int(token_id)))
        if piece:
            self._emitted.append(piece)
        return piece

    def flush(self) -> str:
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._emitted.append(rest)
        return rest


def _byte_level_token_bytes(tokenizer: Any) -> Callable[[int], bytes]:
    """id -> the bytes that token stands for; special tokens -> b"" (they are skipped in replies)."""
    backend = tokenizer.backend_tokenizer
    alphabet = byte_level_alphabet()
    skipped = set(tokenizer.all_special_ids)
    added = {i: t.content for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if not t.special}

    @lru_cache(maxsize=None)
    def token_bytes(token_id: int) -> bytes:
        if token_id in skipped:
            return b""
        if token_id in added:
            return added[token_id].encode("utf-8")
        token = backend.id_to_token(token_id)
        if token is None:
            return b""
        try:
            return bytes(alphabet[c] for c in token)
        except KeyError:
            return token.encode("utf-8")

    return token_bytes


def detokenizer_factory(tokenizer: Any) -> "Callable[[], ByteLevelDetokenizer | IncrementalDetokenizer]":
    """A function that makes a fresh streaming detokenizer for ``tokenizer`` (one per reply)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.decoder).__name__ == "ByteLevel":
        token_bytes = _byte_level_token_bytes(tokenizer)
        return lambda: ByteLevelDetokenizer(token_bytes)
    return lambda: IncrementalDetokenizer(lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
