"""Bounded caches keyed by content, so a follow-up turn does not redo the work of earlier turns.

- :class:`LruCache`: least-recently-used entries within a size budget (bytes, tokens: the caller says).
- :func:`file_digest` / :func:`array_digest`: content hashes. Keys are contents, never paths, so the same
  audio sent again (a new upload, the ``/v1`` API resending the conversation) hits the cache, and an
  edited file misses it.
- :func:`cached_decoder`: ``decode_audio`` behind an LRU of decoded samples keyed by the file's content.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from .audio import AudioLimits

logger = logging.getLogger(__name__)

V = TypeVar("V")


@dataclass(frozen=True)
class CacheSizes:
    """Budgets of the worker's content-keyed caches; 0 turns one off.

    ``prefix_tokens`` bounds the prompt KV caches kept for reuse: on Qwen2-Audio-7B in bfloat16 a token
    costs about 0.5 MiB of GPU memory, so the default 8192 tokens is up to 4 GiB.
    """

    audio_mb: int = 256
    features_mb: int = 256
    prefix_tokens: int = 8192


class LruCache(Generic[V]):
    """Thread-safe LRU map whose entries each have a size; the total stays within ``budget``."""

    def __init__(self, budget: int, name: str = "cache"):
        self.budget = int(budget)
        self.name = name
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        if size > self.budget:
            return  # larger than the whole budget: not worth evicting everything for
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.budget and self._entries:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._size -= evicted

    def items(self) -> list[tuple[Hashable, V]]:
        with self._lock:
            return [(k, v) for k, (v, _) in self._entries.items()]

    def touch(self, key: Hashable) -> None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """A content hash of the file (BLAKE2b, 128 bits)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def array_digest(samples: np.ndarray) -> str:
    """A content hash of an array's dtype, shape and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{samples.dtype}{samples.shape}".encode())
    h.update(np.ascontiguousarray(samples).data)
    return h.hexdigest()


class FileDigests:
    """:func:`file_digest`, remembered per (path, size, mtime, inode): a file seen again is not re-read."""

    def __init__(self, max_entries: int = 4096):
        self._memo: LruCache[str] = LruCache(max_entries, name="file digests")

    def __call__(self, path: str | os.PathLike) -> str:
        st = os.stat(path)
        key = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
        digest = self._memo.get(key)
        if digest is None:
            digest = file_digest(path)
            self._memo.put(key, digest, 1)
        return digest


def cached_decoder(
    decode: Callable[..., np.ndarray],
    cache: LruCache[np.ndarray],
    digest: Callable[[str], str] = file_digest,
) -> Callable[..., np.ndarray]:
    """``decode`` with its results kept in ``cache`` (by file content, limits and sample format).

    The result is called as ``decode_cached(path, limits)`` or ``decode_cached(path, limits, pcm="s16")``
    (see :func:`model.audio.decode_audio`); ``pcm`` is passed on to ``decode`` only when it is not the
    default, so a decoder taking just ``(path, limits)`` still works. An ``"s16"`` and an ``"f32"``
    decode of one file are different entries. Errors are not cached.
    """

    def call_decode(path: str, limits: AudioLimits, pcm: str) -> np.ndarray:
        return decode(path, limits) if pcm == "f32" else decode(path, limits, pcm=pcm)

    def decode_cached(path: str, limits: AudioLimits, *, pcm: str = "f32") -> np.ndarray:
        try:
            if os.stat(path).st_size > limits.max_bytes:
                return call_decode(path, limits, pcm)  # refused by size before anything is read
            key = (digest(path), limits, pcm)
        except OSError:
            return call_decode(path, limits, pcm)  # let the decoder word the error (missing file, directory...)
        samples = cache.get(key)
        if samples is None:
            samples = call_decode(path, limits, pcm)
            samples.setflags(write=False)
            cache.put(key, samples, samples.nbytes)
        return samples

    return decode_cached

