"""``POST /v1/chat/completions``, ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``, and
``GET /v1/models`` on the demo's own server and port.

The routes share the UI's backend (and so its queue). Streaming answers are server-sent events ending
with ``data: [DONE]``; errors are OpenAI-style JSON with a fitting status (400 bad request or audio,
401 bad key or login, 413 too large, 429 queue full, 503 not ready). Gradio serves them: the routes are handed to
its FastAPI app through ``launch(app_kwargs={"routes": ...})``, so they exist before the first request.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from model.conversation import BASE_TASK_LANGUAGES
from model.errors import UserFacingError
from model.params import InvalidParamsError

from .backend import ChatBackend
from .config import DemoConfig
from .openai_protocol import API_NAMES, ApiError, ApiLimits, ChatRequest, error_type, parse_chat_request
from .service import FAULT, ChatService, Failed, Finished, Reply, ServerFault, Text, service_of
from .transcription import SegmentText, Transcribed, to_srt, to_vtt

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


def _api_error_from(exc: UserFacingError, parsed: ChatRequest | None = None) -> ApiError:
    """An OpenAI-style error for one the service raised or reported; an audio error names the request part
    it came from."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServerFault):
        return ApiError(500, exc.user_message, type="server_error")
    message, status = exc.user_message, exc.status
    path = getattr(exc, "path", None)
    part = parsed.part_of(path) if parsed is not None else None
    reason = getattr(exc, "reason", None)
    if part is not None and isinstance(reason, str):
        # "messages[0].content[1] (message1-audio1.wav): the file is empty"
        message = f"{part} ({os.path.basename(str(path))}): {reason}"
    return ApiError(status, message, type=error_type(status), param=part)


def _finish_reason(finished: Finished | None, stops: StopFilter) -> str:
    """OpenAI's finish_reason: "length" for a reply cut at max_tokens, else "stop" (a stop string, the end)."""
    return "length" if finished is not None and finished.reason == "length" and not stops.hit else "stop"


class OpenAIApi:
    """The ``/v1`` routes over one :class:`~app.service.ChatService` (the page's own, in the demo)."""

    def __init__(
        self,
        service: ChatService | ChatBackend,
        *,
        model_id: str,
        api_key: str | None = None,
        logins: Sequence[tuple[str, str]] = (),
        limits: ApiLimits | None = None,
        ready: Callable[[], bool] = lambda: True,
    ):
        """``service``: the conversation service (a bare backend gets one of its own, with the default
        config). ``api_key``: the bearer key every request must send. Without one, ``logins`` (the page's
        (user, password) pairs) protect the API: HTTP Basic auth or ``Bearer user:password``. Streamed
        chunks come at most every ``stream_interval_ms`` of the service's config (the text generated
        meanwhile goes out in one chunk)."""
        self.service = service_of(service, DemoConfig(examples=False))
        self.model_id = model_id
        self.api_key = api_key or None
        self.logins = tuple(logins)
        self.limits = limits or ApiLimits(max_audio_bytes=self.service.limits.max_bytes)
        self.ready = ready

    def routes(self) -> list[Any]:
        router = APIRouter()
        router.add_api_route("/v1/models", self.list_models, methods=["GET"], include_in_schema=False)
        router.add_api_route("/v1/chat/completions", self.chat_completions, methods=["POST"], include_in_schema=False)
        router.add_api_route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"], include_in_schema=False)
        router.add_api_route("/v1/audio/translations", self.translations, methods=["POST"], include_in_schema=False)
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
        info = self.service.info
        return JSONResponse({"object": "list", "data": [{
            "id": self.model_id, "object": "model", "created": 0, "owned_by": "qwen2-audio-demo",
            "family": info.family, "model_family": info.model_family, "random_weights": info.random_weights,
            # What a request without settings gets (a demo using this one as its remote backend shows them).
            "generation_defaults": self.service.defaults.as_dict(),
            "max_new_tokens_limit": self.service.config.max_new_tokens_limit,
        }]})

    async def chat_completions(self, request: Request) -> Any:
        parsed: ChatRequest | None = None
        try:
            self._check(request)
            body = json_body(await self._read_body(request))
            parsed = await run_in_threadpool(parse_chat_request, body, self.limits)
            if parsed.model and parsed.model not in (self.model_id, self.service.info.checkpoint):
                raise ApiError(404, f"The model {parsed.model!r} does not exist on this server, which serves "
                                    f"{self.model_id!r} (see GET /v1/models).", param="model", code="model_not_found",
                               type="invalid_request_error")
            try:
                params = self.service.params(parsed.settings, API_NAMES)
            except InvalidParamsError as exc:
                raise ApiError(400, exc.user_message, param=exc.param) from None
        except ApiError as exc:  # refused here: logged here, as one line
            self.service.user_error(exc)
            if parsed is not None:
                parsed.cleanup()
            return _error_response(exc)
        try:
            reply = await run_in_threadpool(self.service.start, parsed.messages, params)
        except UserFacingError as exc:  # busy (429), bad audio, beyond the context...: the service logged it
            parsed.cleanup()
            return _error_response(_api_error_from(exc, parsed))
        if parsed.stream:
            return StreamingResponse(self._sse(reply, parsed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await self._complete(reply, parsed)

    # ------------------------------------------------------------------------------------- replies
    async def _complete(self, reply: Reply, parsed: ChatRequest) -> JSONResponse:
        stops = StopFilter(parsed.stop)
        parts: list[str] = []
        events = reply.events(0)  # each thread hop takes every piece that has arrived
        finished: Finished | None = None
        try:
            while not stops.hit:
                event = await anyio.to_thread.run_sync(next, events, _END)
                if event is _END:
                    break
                if isinstance(event, Text):
                    parts.append(stops.feed(event.delta))
                elif isinstance(event, Failed):
                    return _error_response(_api_error_from(event.error, parsed))
                elif isinstance(event, Finished):
                    finished = event
                    parts.append(stops.flush())
        finally:
            reply.close()
            parsed.cleanup()
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                         "logprobs": None, "finish_reason": _finish_reason(finished, stops)}],
            "usage": reply.usage.as_dict(),
        })

    async def _sse(self, reply: Reply, parsed: ChatRequest) -> AsyncIterator[str]:
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model_id}

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            chunk = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra)
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        stops = StopFilter(parsed.stop)
        events = reply.events()  # the first text at once, then at most one chunk per stream interval
        finished: Finished | None = None
        try:
            yield event({"role": "assistant", "content": ""})
            while not stops.hit:
                item = await anyio.to_thread.run_sync(next, events, _END)
                if item is _END:
                    break
                if isinstance(item, Text):
                    text = stops.feed(item.delta)
                    if text:
                        yield event({"content": text})
                elif isinstance(item, Failed):  # errors mid-stream travel as an error event
                    yield f"data: {json.dumps(_api_error_from(item.error, parsed).body(), ensure_ascii=False)}\n\n"
                    break
                elif isinstance(item, Finished):
                    finished = item
                    rest = stops.flush()
                    if rest:
                        yield event({"content": rest})
            if finished is not None or stops.hit:
                yield event({}, _finish_reason(finished, stops))
                if parsed.include_usage:
                    yield f"data: {json.dumps(dict(base, choices=[], usage=reply.usage.as_dict()))}\n\n"
        finally:
            reply.close()  # a dropped client lands here too: generation stops within one token
            parsed.cleanup()
        yield "data: [DONE]\n\n"


    # ------------------------------------------------------------------------------ transcriptions
    async def transcriptions(self, request: Request) -> Any:
        return await self._audio_job(request, "transcribe")

    async def translations(self, request: Request) -> Any:
        return await self._audio_job(request, "translate")

    async def _audio_job(self, request: Request, task: str) -> Any:
        """OpenAI's audio endpoints: a multipart form with ``file`` and ``model`` (and ``language``,
        ``prompt``, ``response_format``, ``temperature``, ``timestamp_granularities[]``, ``stream``)."""
        workdir: Path | None = None
        try:
            self._check(request)
            form_request = await self._read_form(request)
            workdir, path, fields = form_request
            if fields.model and fields.model not in (self.model_id, self.service.info.checkpoint):
                raise ApiError(404, f"The model {fields.model!r} does not exist on this server, which serves "
                                    f"{self.model_id!r} (see GET /v1/models).", param="model", code="model_not_found",
                               type="invalid_request_error")
        except ApiError as exc:
            self.service.user_error(exc)
            _remove(workdir)
            return _error_response(exc)
        settings = {"temperature": fields.temperature}
        try:
            job = await run_in_threadpool(
                functools.partial(self.service.transcribe, str(path), task=task, language=fields.language,
                                  prompt=fields.prompt, settings=settings, shown={"temperature": "temperature"}))
        except UserFacingError as exc:  # busy (429), bad or too long audio, an unknown language...
            _remove(workdir)
            return _error_response(_transcription_error(exc, fields.filename))
        if fields.stream:
            return StreamingResponse(self._transcript_sse(job, workdir, fields), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await self._transcript(job, workdir, fields, task)

    async def _read_form(self, request: Request) -> tuple[Path, Path, "AudioForm"]:
        declared = request.headers.get("content-length")
        limit = self.limits.max_audio_bytes + 1024 * 1024
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"The request is {int(declared) / 2**20:.1f} MB, larger than the "
                                f"{self.limits.max_audio_bytes / 2**20:g} MB of audio this server accepts.")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "Send the audio as multipart/form-data with a 'file' part (as OpenAI's audio API takes it).",
                           param="file")
        try:
            form = await request.form(max_files=1, max_fields=32)
        except Exception as exc:  # noqa: BLE001 - a malformed body
            raise ApiError(400, f"The form could not be read ({str(exc).strip() or type(exc).__name__}).") from None
        try:
            fields = AudioForm.parse(form)
            upload = form.get("file")
            workdir = Path(tempfile.mkdtemp(prefix="qwen-demo-transcribe-"))
            path = workdir / fields.filename
            size = 0
            with open(path, "wb") as out:
                while chunk := await upload.read(1 << 20):
                    size += len(chunk)
                    if size > self.limits.max_audio_bytes:
                        _remove(workdir)
                        raise ApiError(413, f"file ({fields.filename}): the file is larger than the "
                                            f"{self.limits.max_audio_bytes / 2**20:g} MB this server accepts.", param="file")
                    out.write(chunk)
        finally:
            await form.close()
        return workdir, path, fields

    async def _transcript(self, job: Any, workdir: Path, fields: "AudioForm", task: str) -> Any:
        from fastapi.responses import PlainTextResponse

        events = job.events(0)
        done = None
        try:
            while True:
                event = await anyio.to_thread.run_sync(next, events, _END)
                if event is _END:
                    break
                if isinstance(event, Failed):
                    return _error_response(_transcription_error(event.error, fields.filename))
                if isinstance(event, Transcribed):
                    done = event
        finally:
            job.close()
            _remove(workdir)
        if done is None:  # closed before the end (never for a request that was read to its end)
            return _error_response(ApiError(500, FAULT, type="server_error"))
        usage = _audio_usage(done)
        kind = fields.response_format
        if kind == "text":
            return PlainTextResponse(done.text + "\n")
        if kind == "srt":
            return PlainTextResponse(to_srt(done.segments), media_type="application/x-subrip")
        if kind == "vtt":
            return PlainTextResponse(to_vtt(done.segments), media_type="text/vtt")
        if kind == "verbose_json":
            language = "english" if task == "translate" else (BASE_TASK_LANGUAGES[fields.language].lower() if fields.language else None)
            return JSONResponse({
                "task": task, "language": language, "duration": done.duration, "text": done.text,
                "segments": [{"id": s.id, "seek": int(round(s.start * 100)), "start": s.start, "end": s.end, "text": s.text,
                              "tokens": list(s.tokens), "temperature": fields.temperature or 0.0} for s in done.segments],
                "usage": usage,
            })
        return JSONResponse({"text": done.text, "usage": usage})

    async def _transcript_sse(self, job: Any, workdir: Path, fields: "AudioForm") -> AsyncIterator[str]:
        def event(body: dict[str, Any]) -> str:
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        events = job.events()
        raw: dict[int, str] = {}  # each segment's text so far, as the model writes it
        sent: dict[int, str] = {}  # what went out of it: the text stripped, so the deltas add up to the text
        try:
            while True:
                item = await anyio.to_thread.run_sync(next, events, _END)
                if item is _END:
                    break
                if isinstance(item, SegmentText):
                    raw[item.segment] = raw.get(item.segment, "") + item.delta
                    text = raw[item.segment].strip()
                    new = text[len(sent.get(item.segment, "")):]
                    if new:
                        lead = " " if item.segment not in sent and any(sent.values()) else ""
                        sent[item.segment] = text
                        yield event({"type": "transcript.text.delta", "delta": lead + new})
                elif isinstance(item, Failed):
                    yield event(_transcription_error(item.error, fields.filename).body())
                    break
                elif isinstance(item, Transcribed):
                    yield event({"type": "transcript.text.done", "text": item.text, "usage": _audio_usage(item)})
        finally:
            job.close()  # a dropped client lands here too: the window being answered stops within a token
            _remove(workdir)
        yield "data: [DONE]\n\n"


@dataclass
class AudioForm:
    """The fields of an audio request other than the file itself, checked."""

    filename: str
    model: str = ""
    language: str | None = None
    prompt: str = ""
    response_format: str = "json"
    temperature: float | None = None
    stream: bool = False

    @classmethod
    def parse(cls, form: Any) -> "AudioForm":
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not hasattr(upload, "read"):
            raise ApiError(400, "The request has no audio: send it as the multipart part 'file'.", param="file")
        name = os.path.basename((getattr(upload, "filename", None) or "audio").replace("\\", "/")).strip() or "audio"
        name = "".join(ch for ch in name if ch.isprintable() and ch not in '/\x00')[:200] or "audio"

        def text(key: str) -> str:
            value = form.get(key)
            return value.strip() if isinstance(value, str) else ""

        response_format = text("response_format") or "json"
        if response_format not in RESPONSE_FORMATS:
            raise ApiError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {response_format!r}.",
                           param="response_format")
        temperature = None
        if text("temperature"):
            try:
                temperature = float(text("temperature"))
            except ValueError:
                raise ApiError(400, f"temperature must be a number, not {text('temperature')!r}.", param="temperature") from None
        granularities = [g for key in ("timestamp_granularities[]", "timestamp_granularities")
                         for g in form.getlist(key) if isinstance(g, str)]
        if any(g != "segment" for g in granularities):
            raise ApiError(400, "timestamp_granularities: only 'segment' is available (segments are the windows of "
                                "at most 30 s the recording is cut into, at pauses); words have no times here.",
                           param="timestamp_granularities")
        if granularities and response_format != "verbose_json":
            raise ApiError(400, "timestamp_granularities needs response_format verbose_json.", param="timestamp_granularities")
        stream = text("stream").lower() in ("true", "1")
        if stream and response_format not in ("json", "text"):
            raise ApiError(400, "stream=true works with response_format json or text.", param="stream")
        return cls(name, text("model"), text("language") or None, text("prompt"), response_format, temperature, stream)


RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def _transcription_error(exc: UserFacingError, filename: str) -> ApiError:
    """An OpenAI-style error for a transcription: an audio error names the file part."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServerFault):
        return ApiError(500, exc.user_message, type="server_error")
    param = getattr(exc, "param", None)
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return ApiError(exc.status, f"file ({filename}): {reason}", type=error_type(exc.status), param="file")
    if isinstance(exc, InvalidParamsError):
        param = exc.param
    return ApiError(exc.status, exc.user_message, type=error_type(exc.status), param=param)


def _audio_usage(done: Transcribed) -> dict[str, Any]:
    """A transcription's ``usage`` as OpenAI's audio endpoints give it (token counts, all windows together)."""
    return {"type": "tokens", "input_tokens": done.usage.prompt_tokens, "output_tokens": done.usage.completion_tokens,
            "total_tokens": done.usage.total_tokens}


def _remove(workdir: Path | None) -> None:
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


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


def api_routes(service: ChatService | ChatBackend, config: DemoConfig) -> list[Any]:
    """The ``/v1`` routes over ``service`` (pass the page's, so that both share one admission) as
    ``config`` sets them up; [] when the API is off."""
    if not config.api:
        return []
    service = service_of(service, config)
    api = OpenAIApi(
        service,
        model_id=served_model_id(service.info.checkpoint),
        api_key=config.api_key or None,
        logins=config.credentials,
        limits=ApiLimits(max_audio_bytes=config.max_upload_bytes, url_allowlist=config.audio_url_hosts),
    )
    return api.routes()
