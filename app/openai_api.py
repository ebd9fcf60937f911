"""``POST /v1/chat/completions`` and ``GET /v1/models`` on the demo's own server and port.

The routes share the UI's backend (and so its queue). Streaming answers are server-sent events ending
with ``data: [DONE]``; errors are OpenAI-style JSON with a fitting status (400 bad request or audio,
401 bad key or login, 413 too large, 429 queue full, 503 not ready). Gradio serves them: the routes are handed to
its FastAPI app through ``launch(app_kwargs={"routes": ...})``, so they exist before the first request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .backend import ChatBackend, ReplyStreamLike, updates, user_message_of
from .openai_protocol import ApiError, ApiLimits, ChatRequest, error_type, parse_chat_request

logger = logging.getLogger(__name__)

_END = object()


class StopFilter:
    """Cuts the reply at the first stop string, holding back only text that could begin one."""

    def __init__(self, stops: list[str]):
        self._stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._pending = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        if not self._stops:
            return piece
        self._pending += piece
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            out, self._pending = self._pending[:cut], ""
            return out
        keep = len(self._pending) - self._hold
        if keep <= 0:
            return ""
        out, self._pending = self._pending[:keep], self._pending[keep:]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _matches_a_login(token: str, logins: Sequence[tuple[str, str]]) -> bool:
    """Whether ``token`` is "user:password" of one of ``logins`` (compared in constant time, every login)."""
    given = token.encode()
    found = False
    for user, password in logins:
        found |= hmac.compare_digest(given, f"{user}:{password}".encode())
    return found


def _api_error_from(exc: BaseException, parsed: ChatRequest | None = None) -> ApiError:
    """An OpenAI-style error for a backend failure; an audio error names the request part it came from."""
    message = user_message_of(exc)
    if message is None:
        logger.error("unexpected error in the API", exc_info=exc)
        return ApiError(500, "The server failed to answer this request (the error was logged).", type="server_error")
    status = int(getattr(exc, "status", 400))
    path = getattr(exc, "path", None)
    part = parsed.part_of(path) if parsed is not None else None
    reason = getattr(exc, "reason", None)
    if part is not None and isinstance(reason, str):
        # "messages[0].content[1] (message1-audio1.wav): the file is empty"
        message = f"{part} ({os.path.basename(str(path))}): {reason}"
    return ApiError(status, message, type=error_type(status), param=part)


def _finish_reason(reply: ReplyStreamLike, stops: StopFilter) -> str:
    if stops.hit:
        return "stop"
    reason = getattr(reply, "finish_reason", None)
    return "length" if reason == "length" else "stop"


def _usage(reply: ReplyStreamLike) -> dict[str, int]:
    prompt = int(getattr(reply, "prompt_tokens", 0) or 0)
    completion = int(getattr(reply, "completion_tokens", 0) or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class OpenAIApi:
    """The ``/v1`` routes for one backend."""

    def __init__(
        self,
        backend: ChatBackend,
        *,
        model_id: str,
        api_key: str | None = None,
        logins: Sequence[tuple[str, str]] = (),
        limits: ApiLimits | None = None,
        ready: Callable[[], bool] = lambda: True,
        stream_interval_s: float = 0.0,
    ):
        """``api_key``: the bearer key every request must send. Without one, ``logins`` (the page's
        (user, password) pairs) protect the API: HTTP Basic auth or ``Bearer user:password``.
        ``stream_interval_s``: the shortest time between two streamed chunks (the text generated
        meanwhile goes out in one chunk)."""
        self.backend = backend
        self.model_id = model_id
        self.api_key = api_key or None
        self.logins = tuple(logins)
        self.limits = limits or ApiLimits()
        self.ready = ready
        self.stream_interval_s = stream_interval_s

    def routes(self) -> list[Any]:
        router = APIRouter()
        router.add_api_route("/v1/models", self.list_models, methods=["GET"], include_in_schema=False)
        router.add_api_route("/v1/chat/completions", self.chat_completions, methods=["POST"], include_in_schema=False)
        return list(router.routes)

    # ------------------------------------------------------------------------------------- checks
    def _check(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if self.api_key:
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                raise ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>'.", type="authentication_error", code="invalid_api_key")
        elif self.logins:
            if scheme.lower() == "basic":
                try:
                    token = base64.b64decode(value.strip(), validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    token = ""
            if not _matches_a_login(token, self.logins):
                raise ApiError(401, "Missing or wrong login: send HTTP Basic auth or 'Authorization: Bearer user:password'.",
                               type="authentication_error", code="invalid_api_key",
                               headers={"WWW-Authenticate": 'Basic realm="qwen2-audio-demo"'})
        if not self.ready():
            raise ApiError(503, "The model is still loading; try again in a moment.", type="service_unavailable")

    async def _read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it is larger than base64 audio of the upload limit
        plus room for text (whether or not the client sent a Content-Length)."""
        max_body = self.limits.max_audio_bytes * 4 // 3 + 1024 * 1024

        def too_large(size: int | None) -> ApiError:
            told = f"{size / 2**20:.1f} MB, " if size else ""
            return ApiError(413, f"The request is {told}larger than the {max_body / 2**20:.1f} MB this server accepts "
                                 f"(audio up to {self.limits.max_audio_bytes / 2**20:g} MB).")

        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            raise too_large(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise too_large(None)
            chunks.append(chunk)
        return b"".join(chunks)

    async def list_models(self, request: Request) -> JSONResponse:
        try:
            self._check(request)
        except ApiError as exc:
            return _error_response(exc)
        info = self.backend.info
        return JSONResponse({"object": "list", "data": [{
            "id": self.model_id, "object": "model", "created": 0, "owned_by": "qwen2-audio-demo",
            "family": info.family, "model_family": info.model_family,
            "random_weights": bool(getattr(info, "random_weights", False)),
        }]})

    async def chat_completions(self, request: Request) -> Any:
        parsed: ChatRequest | None = None
        try:
            self._check(request)
            body = json_body(await self._read_body(request))
            parsed = await run_in_threadpool(parse_chat_request, body, self.limits)
            try:
                reply = await run_in_threadpool(self.backend.stream, parsed.messages, parsed.params)
            except Exception as exc:  # noqa: BLE001 - typed backend errors become status codes
                raise _api_error_from(exc, parsed) from None
        except ApiError as exc:
            if parsed is not None:
                parsed.cleanup()
            return _error_response(exc)
        if parsed.stream:
            return StreamingResponse(self._sse(reply, parsed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await self._complete(reply, parsed)

    # ------------------------------------------------------------------------------------- replies
    async def _complete(self, reply: ReplyStreamLike, parsed: ChatRequest) -> JSONResponse:
        stops = StopFilter(parsed.stop)
        parts: list[str] = []
        chunks = updates(reply)  # each thread hop takes every piece that has arrived
        try:
            while not stops.hit:
                piece = await anyio.to_thread.run_sync(next, chunks, _END)
                if piece is _END:
                    parts.append(stops.flush())
                    break
                parts.append(stops.feed(piece))
        except Exception as exc:  # noqa: BLE001
            return _error_response(_api_error_from(exc))
        finally:
            reply.close()
            parsed.cleanup()
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                         "logprobs": None, "finish_reason": _finish_reason(reply, stops)}],
            "usage": _usage(reply),
        })

    async def _sse(self, reply: ReplyStreamLike, parsed: ChatRequest) -> AsyncIterator[str]:
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model_id}

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            chunk = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra)
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        stops = StopFilter(parsed.stop)
        try:
            yield event({"role": "assistant", "content": ""})
            chunks = updates(reply, self.stream_interval_s)  # the first at once, then at most one per interval
            while not stops.hit:
                piece = await anyio.to_thread.run_sync(next, chunks, _END)
                text = stops.flush() if piece is _END else stops.feed(piece)
                if text:
                    yield event({"content": text})
                if piece is _END:
                    break
            yield event({}, _finish_reason(reply, stops))
            if parsed.include_usage:
                yield f"data: {json.dumps(dict(base, choices=[], usage=_usage(reply)))}\n\n"
        except Exception as exc:  # noqa: BLE001 - errors mid-stream travel as an error event
            yield f"data: {json.dumps(_api_error_from(exc).body(), ensure_ascii=False)}\n\n"
        finally:
            reply.close()  # a dropped client lands here too: generation stops within one token
            parsed.cleanup()
        yield "data: [DONE]\n\n"


def json_body(raw: bytes) -> Any:
    """The parsed JSON of a request body; ApiError 400 when it is not JSON."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None


def served_model_id(checkpoint: str) -> str:
    """The model id ``/v1/models`` reports: the hub id as given, or a local directory's name (never its path)."""
    checkpoint = checkpoint.rstrip("/")
    local = checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1
    return checkpoint.rsplit("/", 1)[-1] if local else checkpoint


def api_routes(backend: ChatBackend, config: Any) -> list[Any]:
    """The ``/v1`` routes for ``backend`` as ``config`` (a DemoConfig) sets them up; [] when the API is off."""
    if not config.api:
        return []
    api = OpenAIApi(
        backend,
        model_id=served_model_id(backend.info.checkpoint),
        api_key=config.api_key or None,
        logins=config.credentials,
        limits=ApiLimits(max_audio_bytes=config.max_upload_bytes, url_allowlist=config.audio_url_hosts),
        stream_interval_s=config.stream_interval_ms / 1000,
    )
    return api.routes()
