"""``POST /v1/chat/completions`` and ``GET /v1/models`` on the demo's own server and port.

The routes share the UI's backend (and so its queue). Streaming answers are server-sent events ending
with ``data: [DONE]``; errors are OpenAI-style JSON with a fitting status (400 bad request or audio,
401 bad key, 413 too large, 429 queue full, 503 not ready). Gradio serves them: the routes are handed to
its FastAPI app through ``launch(app_kwargs={"routes": ...})``, so they exist before the first request.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .backend import ChatBackend, ReplyStreamLike, user_message_of
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
    return JSONResponse(exc.body(), status_code=exc.status)


def _api_error_from(exc: BaseException) -> ApiError:
    message = user_message_of(exc)
    if message is None:
        logger.error("unexpected error in the API", exc_info=exc)
        return ApiError(500, "The server failed to answer this request (the error was logged).", type="server_error")
    status = int(getattr(exc, "status", 400))
    return ApiError(status, message, type=error_type(status))


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
        limits: ApiLimits | None = None,
        ready: Callable[[], bool] = lambda: True,
    ):
        self.backend = backend
        self.model_id = model_id
        self.api_key = api_key or None
        self.limits = limits or ApiLimits()
        self.ready = ready

    def routes(self) -> list[Any]:
        router = APIRouter()
        router.add_api_route("/v1/models", self.list_models, methods=["GET"], include_in_schema=False)
        router.add_api_route("/v1/chat/completions", self.chat_completions, methods=["POST"], include_in_schema=False)
        return list(router.routes)

    # ------------------------------------------------------------------------------------- checks
    def _check(self, request: Request) -> None:
        if self.api_key:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                raise ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>'.", type="authentication_error", code="invalid_api_key")
        if not self.ready():
            raise ApiError(503, "The model is still loading; try again in a moment.", type="service_unavailable")

    async def list_models(self, request: Request) -> JSONResponse:
        try:
            self._check(request)
        except ApiError as exc:
            return _error_response(exc)
        info = self.backend.info
        return JSONResponse({"object": "list", "data": [{
            "id": self.model_id, "object": "model", "created": 0, "owned_by": "qwen2-audio-demo",
            "family": info.family, "random_weights": bool(getattr(info, "random_weights", False)),
        }]})

    async def chat_completions(self, request: Request) -> Any:
        parsed: ChatRequest | None = None
        try:
            self._check(request)
            length = int(request.headers.get("content-length") or 0)
            if length > self.limits.max_audio_bytes * 4 // 3 + 1024 * 1024:
                raise ApiError(413, "The request is larger than this server accepts.")
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "The request body is not valid JSON.") from None
            parsed = await run_in_threadpool(parse_chat_request, body, self.limits)
            try:
                reply = await run_in_threadpool(self.backend.stream, parsed.messages, parsed.params)
            except Exception as exc:  # noqa: BLE001 - typed backend errors become status codes
                raise _api_error_from(exc) from None
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
        try:
            while not stops.hit:
                piece = await anyio.to_thread.run_sync(next, reply, _END)
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
            while not stops.hit:
                piece = await anyio.to_thread.run_sync(next, reply, _END)
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
        limits=ApiLimits(max_audio_bytes=config.max_upload_bytes, url_allowlist=config.audio_url_hosts),
    )
    return api.routes()
