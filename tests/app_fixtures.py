"""Helpers for the app tests: a scripted backend, free ports, serving a demo in-process.

The scripted backend satisfies ``app.backend.ChatBackend`` without torch: it answers with pieces it
was given, optionally slowly, and records every conversation and every cancellation, for the UI
behaviour the tiny random model cannot produce (timestamps, slow streams to Stop).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class FakeInfo:
    checkpoint: str = "scripted/fake-audio-chat"
    family: str = "chat"
    device: str = "cpu"
    dtype: str = "float32"
    random_weights: bool = False
    model_family: str = "Qwen2-Audio"
    generation_defaults: Any = None

    def __post_init__(self) -> None:
        if self.generation_defaults is None:
            from model.params import GenerationParams

            object.__setattr__(self, "generation_defaults", GenerationParams())

    @property
    def label(self) -> str:
        return f"{self.checkpoint} ({self.family}) on {self.device.upper()} — scripted test backend"


class ScriptedStream:
    """Yields its pieces (with ``delay`` seconds before each); ``close()`` cancels like the worker's."""

    def __init__(self, pieces: Sequence[str], delay: float, audios: list[Any], on_close: Callable[["ScriptedStream"], None],
                 finish: str = "stop"):
        self._pieces = list(pieces)
        self._finish = finish
        self._delay = delay
        self._on_close = on_close
        self.prepared = SimpleNamespace(audios=audios, dropped_turns=0)
        self.cancelled = threading.Event()
        self.closed_at: float | None = None
        self.emitted = 0
        self.finish_reason: str | None = None
        self.prompt_tokens = 0

    @property
    def completion_tokens(self) -> int:
        return self.emitted

    @property
    def position(self) -> int | None:
        return None if self.closed_at else 0

    def wait_started(self, timeout: float | None = None) -> bool:
        return True

    def take_ready(self, until: float | None = None) -> str:
        return ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.cancelled.is_set():
            raise StopIteration
        if self.emitted >= len(self._pieces):
            self.finish_reason = self.finish_reason or self._finish
            raise StopIteration
        if self._delay:
            if self.cancelled.wait(self._delay):
                raise StopIteration
        piece = self._pieces[self.emitted]
        self.emitted += 1
        if isinstance(piece, BaseException):  # a scripted failure in the middle of a reply
            self.finish_reason = "error"
            raise piece
        return piece

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
            if self.emitted < len(self._pieces):
                self.cancelled.set()
                self.finish_reason = self.finish_reason or "cancelled"
            self._on_close(self)

    def __enter__(self) -> "ScriptedStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@dataclass
class ScriptedWorker:
    """A ChatBackend answering from a script. ``reply(messages, n)`` gives the pieces of the n-th reply;
    an exception among the pieces is raised at that point, as a failing generation would."""

    reply: Callable[[list[dict], int], Sequence[str]] = lambda messages, n: ["answer ", str(n)]
    delay: float = 0.0
    info: FakeInfo = field(default_factory=FakeInfo)
    windows: int = 1
    finish: str = "stop"  # the finish_reason of a reply that ran to its end ("length": cut at max_new_tokens)
    calls: list[list[dict]] = field(default_factory=list)
    streams: list[ScriptedStream] = field(default_factory=list)
    cancelled: list[ScriptedStream] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.info.family

    def shutdown(self) -> None:
        for stream in self.streams:
            stream.close()

    def decode_audio(self, path: str, limits: Any = None) -> Any:
        from model.audio import AudioLimits, decode_audio

        return decode_audio(path, limits or AudioLimits())

    def stream(self, messages: Sequence[dict], params: Any = None) -> ScriptedStream:
        messages = list(messages)
        self.calls.append(messages)
        audios = [
            SimpleNamespace(source=os.path.basename(item["audio"]) if isinstance(item["audio"], str) else "samples",
                            seconds=1.0, windows=self.windows)
            for m in messages if isinstance(m["content"], list) for item in m["content"] if item.get("type") == "audio"
        ]
        stream = ScriptedStream(self.reply(messages, len(self.calls)), self.delay, audios,
                                lambda s: self.cancelled.append(s) if s.cancelled.is_set() else None, self.finish)
        self.streams.append(stream)
        return stream


@contextmanager
def serving(demo: Any, config: Any, routes: Sequence[Any] = ()) -> Iterator[str]:
    """Serve ``demo`` on a free port for the block's duration; yields its URL (ending in "/").

    ``routes``: extra HTTP routes served beside the page, e.g. ``api_routes(backend, config)`` for
    ``/v1``, as ``web_demo_audio.py`` wires them.
    """
    from app.demo import launch_demo

    url = launch_demo(demo, config, block=False, server_port=free_port(),
                      **({"app_kwargs": {"routes": list(routes)}} if routes else {}))
    try:
        yield url
    finally:
        demo.close()


@contextmanager
def demo_process(args: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None,
                 timeout: float = 60) -> Iterator[float]:
    """Run ``web_demo_audio.py ARGS`` (serving on ``port``, output to ``log``) until its page answers;
    yield the seconds that took. Stopped at the end; a traceback in its output fails the test."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "web_demo_audio.py"), *args], cwd=ROOT,
                                env=env or os.environ | {"PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        status = None
        while time.monotonic() - started < timeout and proc.poll() is None and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.25)
        elapsed = time.monotonic() - started
        assert status == 200, f"no page after {elapsed:.1f} s:\n{log.read_text()}"
        yield elapsed
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "Traceback" not in log.read_text()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def gradio_call(url: str, api: str, data: list) -> str:
    """Call a named endpoint over plain HTTP (no gradio_client upload step); the event stream's text."""
    base = f"{url.rstrip('/')}/gradio_api/call/{api}"
    event_id = httpx.post(base, json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{base}/{event_id}", timeout=60) as response:
        return "".join(response.iter_text())


def component(path: str) -> dict:
    """An audio item as the page sends it back, without Gradio's file marker (so Gradio does not check it)."""
    return {"type": "component", "component": "audio", "value": {"path": path}, "constructor_args": {}, "props": {}}
