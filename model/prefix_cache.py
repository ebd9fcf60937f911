"""Reusing the KV cache of the longest matching prompt prefix, so turn 6 is about as fast as turn 1.

After each reply the worker keeps the KV cache of that request's prompt (cropped to the prompt, so every
entry comes from one prefill). A new prompt that starts with the same tokens and the same audio reuses
the longest such prefix: only the rest is prefilled, and only the audio windows in the rest go through
the audio encoder. Matching is by token ids *and* audio content (each window's hash), so it works for
the UI, ``/chat`` and ``/v1`` alike, and an edited history, a regenerate or a cleared chat simply match
less or not at all. A ``tag`` (:attr:`model.inputs.ModelInputs.cache_tag`) names anything else a prefix
must agree on: an entry is reused only by a prompt with the same tag. Entries are evicted least-recently-used within a budget of cached tokens.

Only the generation thread touches this cache.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .caches import LruCache
from .inputs import AudioSpan

logger = logging.getLogger(__name__)

#: Prefixes shorter than this are not worth a cache copy.
MIN_REUSE_TOKENS = 16


@dataclass
class PrefixEntry:
    ids: np.ndarray  # int64 [n]
    spans: list[AudioSpan]
    kv: Any  # a transformers Cache holding exactly ids' keys and values
    tag: str = ""


@dataclass
class PrefixHit:
    length: int  # tokens of the new prompt whose KV comes from the cache
    kv: Any  # a private copy, cropped to ``length``
    windows_skipped: int  # audio windows entirely inside the reused prefix


def _usable_length(entry: PrefixEntry, ids: np.ndarray, spans: list[AudioSpan], tag: str = "") -> int:
    n = min(len(entry.ids), len(ids) - 1)  # at least one token must be prefilled to get logits
    if n <= 0 or entry.tag != tag:
        return 0
    mismatch = np.flatnonzero(entry.ids[:n] != ids[:n])
    length = int(mismatch[0]) if mismatch.size else n
    cached = {(s.start, s.end): s.digest for s in entry.spans}
    for span in spans:
        if span.start >= length:
            break
        if span.end > length or cached.get((span.start, span.end)) != span.digest:
            return span.start  # the audio differs (or is cut): reuse only what precedes it
    return length


class PrefixCache:
    """KV caches of earlier prompts, looked up by longest matching prefix (tokens and audio)."""

    def __init__(self, max_tokens: int):
        self._entries: LruCache[PrefixEntry] = LruCache(max_tokens, name="prefix KV cache")

    @property
    def enabled(self) -> bool:
        return self._entries.budget > 0

    @property
    def stats(self) -> LruCache[PrefixEntry]:
        return self._entries

    def lookup(self, ids: np.ndarray, spans: list[AudioSpan], tag: str = "") -> PrefixHit | None:
        if not self.enabled:
            return None
        best, best_length = None, 0
        for key, entry in self._entries.items():
            length = _usable_length(entry, ids, spans, tag)
            if length > best_length:
                best, best_length = (key, entry), length
        if best is None or best_length < MIN_REUSE_TOKENS:
            self._entries.misses += 1
            return None
        key, entry = best
        self._entries.touch(key)
        self._entries.hits += 1
        kv = copy.deepcopy(entry.kv)  # generate() extends the cache it is given
        extra = kv.get_seq_length() - best_length
        if extra > 0:
            kv.crop(-extra)
        skipped = sum(1 for s in spans if s.end <= best_length)
        return PrefixHit(best_length, kv, skipped)

    def store(self, ids: np.ndarray, spans: list[AudioSpan], kv: Any, tag: str = "") -> None:
        """Keep ``kv`` (which may run past the prompt) as the cache of the prompt ``ids`` under ``tag``."""
        if not self.enabled or len(ids) < MIN_REUSE_TOKENS:
            return
        extra = kv.get_seq_length() - len(ids)
        if extra > 0:
            kv.crop(-extra)
        if kv.get_seq_length() != len(ids):
            return  # e.g. generation failed before the prefill completed
        key = ids.tobytes() + "".join(s.digest for s in spans).encode() + tag.encode()
        self._entries.put(key, PrefixEntry(ids.copy(), list(spans), kv, tag), len(ids))

    def clear(self) -> None:
        self._entries.clear()
