"""A named pipe that tells whether anything opened it: proof that a path was never read."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class Tripwire:
    """A FIFO at ``path``: ``opened`` turns True if anything opens it for reading."""

    def __init__(self, path: Path):
        self.path = path
        os.mkfifo(path)
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        with open(self.path, "wb", buffering=0) as pipe:  # blocks until a reader opens the FIFO
            self._opened.set()
            try:
                pipe.write(b"RIFF" + bytes(64))
            except BrokenPipeError:
                pass

    @property
    def opened(self) -> bool:
        return self._opened.is_set()

    def disarm(self) -> None:
        if not self.opened:
            with open(self.path, "rb"):  # release the writer thread
                pass
        self._thread.join(5)
