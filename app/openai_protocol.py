"""OpenAI Chat Completions requests -> the backend's conversation format, as vLLM accepts them for Qwen2-Audio.

Content parts: ``text``, ``input_audio`` (``{"data": base64, "format": "wav"|"mp3"|...}``) and
``audio_url`` with a ``data:`` URL. Plain http(s) audio URLs are fetched only from hosts on an explicit
allow-list and never from loopback, private or link-local addresses (no server-side request forgery);
``file://`` URLs and paths are always refused. Audio is written to a per-request temp directory and
the conversation refers to those files; the caller removes the directory when the reply is done.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from model.conversation import BaseTask, ConversationError
from model.errors import UserFacingError

logger = logging.getLogger(__name__)

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "opus", "webm", "m4a", "aac", "mp4")
_MIME_TO_FORMAT = {
    "wav": "wav", "x-wav": "wav", "wave": "wav", "vnd.wave": "wav", "mpeg": "mp3", "mp3": "mp3", "flac": "flac",
    "x-flac": "flac", "ogg": "ogg", "opus": "opus", "webm": "webm", "mp4": "m4a", "m4a": "m4a", "x-m4a": "m4a",
    "aac": "aac",
}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)


#: Our setting names (:data:`model.params.PARAMS`) as the API names them.
API_NAMES = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
             "repetition_penalty": "repetition_penalty", "seed": "seed", "min_new_tokens": "min_tokens"}


class ApiError(UserFacingError):
    """An error answered as OpenAI-style JSON: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message, status)
        self.message, self.type, self.param, self.code = message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_type(status: int) -> str:
    return {
        400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
        413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable",
    }.get(status, "server_error")


@dataclass
class ApiLimits:
    """What the API accepts: audio bytes per request, audios per request, and fetchable URL hosts."""

    max_audio_bytes: int = 200 * 1024 * 1024
    #: Audios per request, counting the earlier turns a client sends again: a long voice chat carries one
    #: per turn, and the model's context is the real limit. This only bounds the decoding work.
    max_audios: int = 100
    url_allowlist: tuple[str, ...] = ()  # host names whose http(s) audio URLs may be fetched
    url_timeout_s: float = 10.0


@dataclass
class ChatRequest:
    """A parsed request: the backend conversation, its settings, and the temp dir holding its audio."""

    messages: list[dict[str, Any]]
    #: The request's generation settings as sent, by our names (the service checks and completes them).
    settings: dict[str, Any]
    stream: bool
    include_usage: bool
    stop: list[str]
    model: str | None
    workdir: Path | None = None
    audio_files: list[Path] = field(default_factory=list)
    #: Where each saved audio came from in the request ("messages[0].content[1]"), by its path.
    audio_parts: dict[str, str] = field(default_factory=dict)

    def part_of(self, path: Any) -> str | None:
        """The request location of a saved audio file, or None for any other path."""
        return self.audio_parts.get(str(path)) if path is not None else None

    def cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


#: Request fields this server cannot honour, with when a value is harmless (the default, or "off"): anything
#: else is refused with 400 naming the field, instead of being silently ignored.
UNSUPPORTED: dict[str, Any] = {
    "tools": lambda v: not v, "tool_choice": lambda v: v in (None, "none"), "functions": lambda v: not v,
    "function_call": lambda v: v in (None, "none"), "parallel_tool_calls": lambda v: True,
    "logprobs": lambda v: not v, "top_logprobs": lambda v: not v, "logit_bias": lambda v: not v,
    "presence_penalty": lambda v: not v, "frequency_penalty": lambda v: not v,
    "response_format": lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"),
    "modalities": lambda v: v is None or v == ["text"], "audio": lambda v: v is None,
    "prediction": lambda v: v is None, "web_search_options": lambda v: v is None,
}


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, harmless in UNSUPPORTED.items():
        if name in body and not harmless(body[name]):
            raise ApiError(400, f"'{name}' is not supported by this server (it answers with text only: no tools, "
                                "logprobs, penalties other than repetition_penalty, JSON modes or audio output).",
                           param=name)


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    """The generation settings of ``body`` by our names; each must be a JSON number (or absent/null).
    ``top_k: -1`` (vLLM's "off") is our 0; ``max_completion_tokens`` wins over ``max_tokens``."""
    raw = {ours: body.get(theirs) for ours, theirs in API_NAMES.items()}
    if body.get("max_completion_tokens") is not None:
        raw["max_new_tokens"] = body["max_completion_tokens"]
    if raw["top_k"] == -1:
        raw["top_k"] = 0
    for ours, value in raw.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            name = API_NAMES[ours]
            raise ApiError(400, f"{name} must be a number, not {value!r}.", param=name)
    return {k: v for k, v in raw.items() if v is not None}


def parse_chat_request(body: Any, limits: ApiLimits) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body and turn it into a :class:`ChatRequest` (raises ApiError)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ApiError(400, "'messages' must be a non-empty list.", param="messages")
    if body.get("n", 1) not in (1, None):
        raise ApiError(400, "Only n=1 is supported.", param="n")
    _refuse_unsupported(body)
    settings = _settings(body)
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise ApiError(400, "'stop' must be a string or a list of up to 4 non-empty strings.", param="stop")
    stream_options = body.get("stream_options") or {}
    request = ChatRequest(
        messages=[], settings=settings, stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        stop=stop, model=body.get("model") if isinstance(body.get("model"), str) else None,
    )
    try:
        request.messages = [_convert_message(i, m, request, limits) for i, m in enumerate(raw_messages)]
        if body.get("task") is not None:
            _attach_task(body["task"], request.messages)
    except BaseException:
        request.cleanup()
        raise
    return request


def _attach_task(task: Any, messages: list[dict[str, Any]]) -> None:
    """The ``task`` extension (base checkpoints): ``{"task": "transcribe", "language": "en", "timestamps": false,
    "prompt": ""}`` becomes a task item of the last user message, which the model renders in its own format."""
    if not isinstance(task, dict):
        raise ApiError(400, "'task' must be an object such as {\"task\": \"transcribe\", \"language\": \"en\"}.", param="task")
    try:
        item = BaseTask.from_item(task).as_item()
    except ConversationError as exc:
        raise ApiError(400, f"'task': {exc.user_message}", param="task") from None
    last = messages[-1]
    if last["role"] != "user":
        raise ApiError(400, "'task' needs the last message to be the user's.", param="task")
    content = last["content"]
    last["content"] = ([{"type": "text", "text": content}] if content else []) if isinstance(content, str) else content
    last["content"].append(item)


def _convert_message(index: int, message: Any, request: ChatRequest, limits: ApiLimits) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise ApiError(400, f"{where} must be an object.", param=where)
    role = message.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant"):
        raise ApiError(400, f"{where} has an unsupported role {role!r}.", param=f"{where}.role")
    content = message.get("content")
    if content is None:
        content = ""
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise ApiError(400, f"{where}.content must be a string or a list of content parts.", param=f"{where}.content")
    items = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ApiError(400, f"{at} has no text.", param=at)
            items.append({"type": "text", "text": part["text"]})
        elif kind in ("input_audio", "audio_url"):
            if role != "user":
                raise ApiError(400, f"{at}: only user messages may carry audio.", param=at)
            data, fmt = _audio_bytes(part, at, limits)
            saved = str(_save_audio(request, data, fmt, index, limits))
            request.audio_parts[saved] = at
            items.append({"type": "audio", "audio": saved})
        else:
            raise ApiError(400, f"{at} has an unsupported type {kind!r}; use text, input_audio or audio_url.", param=at)
    return {"role": role, "content": items}


def _audio_bytes(part: dict[str, Any], at: str, limits: ApiLimits) -> tuple[bytes, str]:
    if part["type"] == "input_audio":
        spec = part.get("input_audio")
        if not isinstance(spec, dict) or not isinstance(spec.get("data"), str):
            raise ApiError(400, f"{at}.input_audio needs base64 'data'.", param=at)
        fmt = str(spec.get("format") or "wav").lower()
        if fmt not in AUDIO_FORMATS:
            raise ApiError(400, f"{at}.input_audio has an unsupported format {fmt!r}; use one of {', '.join(AUDIO_FORMATS)}.", param=at)
        return _b64decode(spec["data"], at, limits), fmt
    spec = part.get("audio_url")
    url = spec.get("url") if isinstance(spec, dict) else spec if isinstance(spec, str) else None
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{at}.audio_url needs a 'url'.", param=at)
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or not match.group("b64"):
            raise ApiError(400, f"{at}.audio_url is not a base64 data: URL.", param=at)
        subtype = (match.group("mime") or "audio/wav").split("/", 1)[1].lower()
        return _b64decode(match.group("data"), at, limits), _MIME_TO_FORMAT.get(subtype, "wav")
    return _fetch_url(url, at, limits)


def _b64decode(data: str, at: str, limits: ApiLimits) -> bytes:
    if len(data) * 3 // 4 > limits.max_audio_bytes:
        raise ApiError(413, f"{at}: the audio is larger than the limit of {limits.max_audio_bytes // (1024 * 1024)} MB.", param=at)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{at}: the audio data is not valid base64.", param=at) from None


def _refuse_internal(host: str, at: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        raise ApiError(400, f"{at}: the host {host} of the audio URL cannot be resolved.", param=at) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
        # Only public unicast addresses: this also refuses shared address space such as 100.100.100.200,
        # where some clouds (Alibaba Cloud among them) serve instance metadata.
        if any(not a.is_global or a.is_multicast for a in filter(None, (address, mapped))):
            raise ApiError(400, f"{at}: audio URLs may not point at internal addresses.", param=at)


def _fetch_url(url: str, at: str, limits: ApiLimits) -> tuple[bytes, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ApiError(400, f"{at}: only data: URLs are accepted for audio_url (file:// and paths are never read).", param=at)
    host = (parts.hostname or "").lower()
    if not limits.url_allowlist or host not in limits.url_allowlist:
        raise ApiError(400, f"{at}: fetching audio from {host or 'that URL'} is not enabled on this server; send the audio inline as input_audio or a data: URL.", param=at)
    _refuse_internal(host, at)
    import httpx

    try:
        with httpx.stream("GET", url, timeout=limits.url_timeout_s, follow_redirects=False) as response:
            if response.status_code != 200:
                raise ApiError(400, f"{at}: fetching the audio URL gave HTTP {response.status_code}.", param=at)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limits.max_audio_bytes:
                    raise ApiError(413, f"{at}: the audio at that URL is larger than the limit.", param=at)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ApiError(400, f"{at}: the audio URL could not be fetched ({type(exc).__name__}).", param=at) from None
    suffix = Path(parts.path).suffix.lstrip(".").lower()
    return b"".join(chunks), suffix if suffix in AUDIO_FORMATS else "wav"


def _save_audio(request: ChatRequest, data: bytes, fmt: str, message_index: int, limits: ApiLimits) -> Path:
    if len(request.audio_files) >= limits.max_audios:
        raise ApiError(400, f"At most {limits.max_audios} audios are accepted per request, earlier turns included.",
                       param="messages")
    if request.workdir is None:
        request.workdir = Path(tempfile.mkdtemp(prefix="qwen-demo-api-"))
    path = request.workdir / f"message{message_index + 1}-audio{len(request.audio_files) + 1}.{fmt}"
    path.write_bytes(data)
    request.audio_files.append(path)
    return path
