"""A backend that drives an OpenAI-compatible server (vLLM, or another instance of this demo) over HTTP.

``--backend openai --api-base URL`` makes the UI use it instead of loading a model in-process: it
satisfies the same :class:`app.backend.ChatBackend` interface as ``model.ModelWorker``, so the UI does
not know which one it has. Audio is decoded here as in local mode (model.audio, so bad files are refused with their
name, as in local mode) and sent inline as 16 kHz mono float32 WAV, which keeps the samples exactly as
the local path would see them. Replies stream as server-sent events; ``close()`` (Stop) closes the HTTP
stream, which makes the server stop generating.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from model.audio import SAMPLE_RATE, AudioLimits, decode_audio, family_pcm, window_count
from model.caches import CacheSizes, FileDigests, LruCache, cached_decoder
from model.errors import UserFacingError
from model.params import GenerationParams

from .openai_protocol import API_NAMES

logger = logging.getLogger(__name__)


class RemoteBackendError(UserFacingError):
    """The server refused or failed a request; ``user_message`` is its sentence (or ours)."""

    status = 502


@dataclass(frozen=True)
class RemoteInfo:
    checkpoint: str
    api_base: str
    family: str = "chat"
    model_family: str = "Qwen2-Audio"  # as the server's /v1/models says (this demo's does)
    device: str = "remote"
    dtype: str = "remote"
    random_weights: bool = False
    #: The server's defaults, as its /v1/models reports them (this demo's does; others: none).
    generation_defaults: GenerationParams = field(default_factory=GenerationParams)

    @property
    def label(self) -> str:
        suffix = " — RANDOM WEIGHTS, answers are gibberish" if self.random_weights else ""
        return f"{self.checkpoint} via {self.api_base}{suffix}"


@dataclass(frozen=True)
class RemoteAudioInfo:
    source: str
    seconds: float
    windows: int


@dataclass
class RemotePrepared:
    audios: list[RemoteAudioInfo] = field(default_factory=list)
    task: dict[str, Any] | None = None  # a base checkpoint's task, sent as the request's "task" extension
    dropped_turns: int = 0  # the server's own; /v1 does not report it


def float_wav_bytes(samples: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """A WAV (IEEE float32, mono) holding ``samples`` exactly."""
    data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    header = io.BytesIO()
    header.write(b"RIFF")
    header.write((36 + len(data)).to_bytes(4, "little"))
    header.write(b"WAVEfmt ")
    header.write((16).to_bytes(4, "little"))
    header.write((3).to_bytes(2, "little"))  # WAVE_FORMAT_IEEE_FLOAT
    header.write((1).to_bytes(2, "little"))
    header.write(sr.to_bytes(4, "little"))
    header.write((sr * 4).to_bytes(4, "little"))
    header.write((4).to_bytes(2, "little"))
    header.write((32).to_bytes(2, "little"))
    header.write(b"data")
    header.write(len(data).to_bytes(4, "little"))
    return header.getvalue() + data


def _error_sentence(response: httpx.Response) -> str:
    try:
        body = json.loads(response.read())
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("message")
    except (ValueError, AttributeError):
        message = None
    return message or f"The model server answered HTTP {response.status_code}."


def _defaults_of(entry: dict[str, Any]) -> GenerationParams:
    """The ``generation_defaults`` a /v1/models entry reports, or none when it reports none usable."""
    try:
        return GenerationParams.from_mapping(entry.get("generation_defaults") or {})
    except (UserFacingError, TypeError, AttributeError):
        logger.warning("the model server reports unusable generation defaults: %r", entry.get("generation_defaults"))
        return GenerationParams()


class RemoteReplyStream:
    """Text pieces of one streamed reply from the server; ``close()`` closes the HTTP stream."""

    def __init__(self, response: httpx.Response, prepared: RemotePrepared):
        self._response = response
        self._lines = response.iter_lines()
        self.prepared = prepared
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._closed = False

    @property
    def position(self) -> int | None:
        return None if self._closed else 0

    def wait_started(self, timeout: float | None = None) -> bool:
        return True  # the server has answered with its headers: generation is under way there

    def take_ready(self, until: float | None = None) -> str:
        return ""  # each server-sent event is one update already

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while not self._closed:
            try:
                line = next(self._lines)
            except StopIteration:
                self.close()
                break
            except httpx.HTTPError as exc:
                self.close("error")
                raise RemoteBackendError(f"The connection to the model server broke off ({type(exc).__name__}).") from None
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                self.close()
                break
            chunk = json.loads(data)
            if "error" in chunk:
                self.close("error")
                error = chunk["error"]
                raise RemoteBackendError(error.get("message") or "The model server failed.", int(error.get("code") or 502) if str(error.get("code", "")).isdigit() else 502)
            if chunk.get("usage"):
                self.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                self.completion_tokens = chunk["usage"].get("completion_tokens", 0)
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    return piece
        raise StopIteration

    def close(self, reason: str = "cancelled") -> None:
        if not self._closed:
            self._closed = True
            self._response.close()
            if self.finish_reason is None:
                self.finish_reason = reason

    def __enter__(self) -> "RemoteReplyStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class RemoteBackend:
    """Streams replies from an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    def __init__(self, api_base: str, *, api_key: str | None = None, model: str | None = None,
                 audio_limits: AudioLimits | None = None, timeout_s: float = 600.0,
                 audio_cache_mb: int = CacheSizes.audio_mb):
        """``audio_cache_mb``: decoded audio kept for the page's checks, the requests and the clips."""
        self.api_base = api_base.rstrip("/")
        if not self.api_base.endswith("/v1"):
            self.api_base += "/v1"
        self.audio_limits = audio_limits or AudioLimits()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0))
        listed = self._models()
        if model is None:
            if not listed:
                raise RemoteBackendError(f"The model server at {self.api_base} lists no models; pass --remote-model.")
            entry = listed[0]
        else:
            entry = next((m for m in listed if m.get("id") == model), {"id": model})
        self.info = RemoteInfo(
            checkpoint=entry["id"], api_base=self.api_base,
            family=entry.get("family", "chat"), model_family=entry.get("model_family") or "Qwen2-Audio",
            random_weights=bool(entry.get("random_weights", False)),
            generation_defaults=_defaults_of(entry),
        )
        logger.info("remote backend: %s", self.info.label)
        # Decoded here as the server's model family decodes (Qwen-Audio: 16-bit samples), and sent as float
        # samples that its decoder reads back exactly; one decode per distinct file while it is cached.
        pcm = family_pcm(self.info.model_family)
        decode = decode_audio if pcm == "f32" else functools.partial(decode_audio, pcm=pcm)
        self._decode = cached_decoder(decode, LruCache(audio_cache_mb << 20, name="decoded audio"), FileDigests())

    @property
    def family(self) -> str:
        return self.info.family

    def decode_audio(self, path: str, limits: AudioLimits | None = None) -> np.ndarray:
        """``path`` decoded here as the server's model family decodes it, kept by content for the page's
        checks, the request and the clips."""
        return self._decode(os.fspath(path), limits or self.audio_limits)

    def _models(self) -> list[dict[str, Any]]:
        try:
            response = self._client.get(f"{self.api_base}/models", timeout=10.0)
        except httpx.HTTPError as exc:
            raise RemoteBackendError(f"Cannot reach the model server at {self.api_base} ({type(exc).__name__}).", 503) from None
        if response.status_code != 200:
            raise RemoteBackendError(f"{self.api_base}/models: {_error_sentence(response)}", response.status_code)
        return list(response.json().get("data") or [])

    def _content(self, content: Any, prepared: RemotePrepared) -> Any:
        if isinstance(content, str):
            return content
        parts = []
        for item in content:
            if item.get("type") == "task":
                prepared.task = {k: v for k, v in item.items() if k != "type"}
            elif item.get("type") == "audio" or ("type" not in item and "audio" in item):
                audio = item["audio"]
                # Decoded here as the server's model family decodes (Qwen-Audio: 16-bit samples), and sent
                # as float samples that its decoder reads back exactly.
                samples = audio if isinstance(audio, np.ndarray) else self.decode_audio(audio, self.audio_limits)
                seconds = len(samples) / SAMPLE_RATE
                name = "<array>" if isinstance(audio, np.ndarray) else os.path.basename(os.fspath(audio))
                prepared.audios.append(RemoteAudioInfo(name, seconds, max(1, window_count(len(samples), self.audio_limits))))
                data = base64.b64encode(float_wav_bytes(np.asarray(samples, dtype=np.float32))).decode("ascii")
                parts.append({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
            else:
                parts.append({"type": "text", "text": item.get("text", "")})
        return parts

    def stream(self, messages: Sequence[dict[str, Any]], params: GenerationParams | None = None) -> RemoteReplyStream:
        """Send the conversation and return its reply stream once the server has accepted it."""
        params = params or GenerationParams()
        prepared = RemotePrepared()
        body: dict[str, Any] = {
            "model": self.info.checkpoint,
            "messages": [{"role": m["role"], "content": self._content(m["content"], prepared)} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prepared.task is not None:
            body["task"] = prepared.task
        for ours, value in params.as_dict().items():
            body[API_NAMES[ours]] = value
        request = self._client.build_request("POST", f"{self.api_base}/chat/completions", json=body)
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise RemoteBackendError(f"Cannot reach the model server at {self.api_base} ({type(exc).__name__}).", 503) from None
        if response.status_code != 200:
            message = _error_sentence(response)
            response.close()
            raise RemoteBackendError(message, response.status_code)
        return RemoteReplyStream(response, prepared)

    def shutdown(self) -> None:
        self._client.close()
