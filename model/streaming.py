"""Token-by-token text streaming.

transformers' ``TextIteratorStreamer`` flushes only at spaces, newlines and CJK characters, so a
reply arrives in a few large lumps. :class:`IncrementalDetokenizer` emits text after every token and
holds back only an unfinished UTF-8 tail (byte-level BPE tokens can split a character), using the
prefix/read-offset scheme: decode a short window of recent tokens twice and emit the difference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
