"""Uploaded and derived audio on disk: removed when the sessions that used them end, and capped.

Gradio keeps every upload (one copy per distinct content, under its upload folder) until the server
stops, and the clips cut at timestamps are written next to them. :class:`TempFiles` bounds that:

* every request tells it which files it used and for which session (:meth:`TempFiles.use`);
* when a session ends (the tab is closed or reloaded, a ``gradio_client`` is closed: Gradio's
  ``unload`` event), the files only that session used are deleted at once (:meth:`TempFiles.end_session`);
  a file uploaded again since (Gradio dedupes uploads by content) is left for its new user;
* a sweep every minute (:meth:`TempFiles.start`) deletes files no request has used for
  ``ttl_s`` seconds (uploads that were never sent, sessions that never ended), then, while the files
  together take more than ``max_bytes``, the least recently used ones (never one used in the last
  minute).

Only files this demo knows are touched: the ones requests named, and the uploads Gradio recorded for
this app. Other apps sharing Gradio's folder, and the copies Gradio keeps for the page itself (the
example clips a user may pick and send), are left alone. A later turn that
names a deleted file is answered with a sentence saying it expired (see :mod:`app.handlers`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

#: A file used this recently is never deleted by the size cap (a request may be reading it).
RECENT_S = 60.0
SWEEP_EVERY_S = 60.0


class TempFiles:
    """Which session used which file under ``folder``, and the deletion rules in the module docstring."""

    def __init__(self, folder: str | Path, *, ttl_s: float, max_bytes: int, uploads: Collection[str] = (),
                 protected: Callable[[], Iterable[str]] = tuple, clock: Callable[[], float] = time.time):
        self.folder = os.path.realpath(folder)
        self.ttl_s = float(ttl_s)
        self.max_bytes = int(max_bytes)
        self.uploads = uploads  # Gradio's own record of this app's uploads (a set it keeps adding to)
        self.protected = protected  # files Gradio keeps for the page itself: the examples' copies
        self.clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}
        self._last_used: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ bookkeeping
    def _inside(self, path: str) -> str | None:
        real = os.path.realpath(path)
        return real if real.startswith(self.folder + os.sep) else None

    def use(self, session: str | None, paths: Iterable[str]) -> None:
        """Record that ``session`` (None: no session) uses ``paths`` now; paths outside the folder are ignored."""
        now = self.clock()
        with self._lock:
            for path in paths:
                real = self._inside(path)
                if real is None:
                    continue
                self._last_used[real] = now
                if session:
                    self._held.setdefault(session, set()).add(real)

    def held(self) -> set[str]:
        """Every file some open session uses."""
        with self._lock:
            return set().union(*self._held.values()) if self._held else set()

    def sessions(self) -> dict[str, set[str]]:
        """The open sessions and the files each uses (a copy)."""
        with self._lock:
            return {session: set(paths) for session, paths in self._held.items()}

    def known(self) -> set[str]:
        """Every file this demo manages (some may have gone from disk since)."""
        with self._lock:
            names = set(self._last_used)
        return names | {real for real in map(self._inside, self._upload_names()) if real}

    def _upload_names(self) -> list[str]:
        for _ in range(5):  # Gradio adds to the set from the server's thread while we copy it
            try:
                return list(self.uploads)
            except RuntimeError:
                continue
        return []

    # ------------------------------------------------------------------ deletion
    def end_session(self, session: str | None) -> list[str]:
        """Forget ``session``; delete the files no other session holds and nobody uploaded again since."""
        if not session:
            return []
        with self._lock:
            mine = self._held.pop(session, set())
            others = set().union(*self._held.values()) if self._held else set()
            candidates = [(p, self._last_used.get(p, 0.0)) for p in mine - others]
        protected = self._protected()
        deleted = [p for p, used in candidates if not _modified_after(p, used) and self._delete(p, protected)]
        if deleted:
            logger.info("session ended: deleted %d file(s) it alone used", len(deleted))
        return deleted

    def sweep(self) -> list[str]:
        """Delete files unused for ``ttl_s``, then the least recently used beyond ``max_bytes``."""
        now = self.clock()
        protected = self._protected()
        files = []
        for path in self.known():
            try:
                stat = os.stat(path)
            except OSError:  # gone already (deleted by hand, say): forget it
                self._forget(path)
                continue
            with self._lock:
                used = max(self._last_used.get(path, 0.0), stat.st_mtime)
            files.append((used, stat.st_size, path))
        deleted = []
        kept = []
        for used, size, path in sorted(files):
            if self.ttl_s > 0 and now - used > self.ttl_s and self._delete(path, protected):
                deleted.append(path)
            else:
                kept.append((used, size, path))
        total = sum(size for _, size, _ in kept)
        if self.max_bytes > 0:
            for used, size, path in kept:  # oldest use first
                if total <= self.max_bytes:
                    break
                if now - used >= RECENT_S and self._delete(path, protected):
                    deleted.append(path)
                    total -= size
        if deleted:
            logger.info("temp files: deleted %d unused or over the cap; %.1f MB kept", len(deleted), total / 1e6)
        return deleted

    def _protected(self) -> set[str]:
        return {os.path.realpath(p) for p in self.protected()}

    def _forget(self, path: str) -> None:
        with self._lock:
            self._last_used.pop(path, None)
            for held in self._held.values():
                held.discard(path)
        discard = getattr(self.uploads, "discard", None)
        if discard is not None:
            discard(path)

    def _delete(self, path: str, protected: set[str]) -> bool:
        if path in protected:
            return False
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not delete %s: %s", path, exc)
            return False
        self._forget(path)
        parent = os.path.dirname(path)
        if parent != self.folder:  # Gradio's per-content folder, or a clip folder: gone when empty
            try:
                os.rmdir(parent)
            except OSError:
                pass
        return True

    # ------------------------------------------------------------------ schedule
    def start(self, every_s: float = SWEEP_EVERY_S) -> None:
        """Sweep every ``every_s`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - the sweep must outlive a bad file
                    logger.warning("temp file sweep failed", exc_info=True)

        self._thread = threading.Thread(target=loop, name="temp-files", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _modified_after(path: str, when: float) -> bool:
    """True when ``path`` was written after ``when`` (uploaded again since that use)."""
    try:
        return os.stat(path).st_mtime > when + 1.0
    except OSError:
        return False
