"""The demo's one typed configuration, built once at start-up and passed down.

Precedence, lowest first: the dataclass defaults below <- a YAML file from ``configs/`` (``--config``
or ``QWEN_DEMO_CONFIG``) <- environment variables (``QWEN_DEMO_<FIELD>``, plus Gradio's own
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``) <- command-line flags. The command line is derived
from the fields, so every field has a flag, and ``--help`` shows each one with its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model.caches import CacheSizes
from model.errors import UserFacingError
from model.loading import DEFAULT_CHECKPOINT, DEVICES, DTYPES
from model.params import ATTENTION_CHOICES, KV_CACHE_CHOICES, PARAMS, SETTINGS
from model.quantization import QUANTIZATION_CHOICES
from model.vad import VadSettings

ENV_PREFIX = "QWEN_DEMO_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
#: Gradio's own variables, honoured so the demo runs unchanged on Spaces and in containers.
GRADIO_ENV = {"server_name": "GRADIO_SERVER_NAME", "server_port": "GRADIO_SERVER_PORT"}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
BACKENDS = ("local", "openai")


class ConfigError(UserFacingError, ValueError):
    """A configuration value is unknown or malformed; the message is one sentence naming it."""

    status = 400


def _field(default: Any, help: str, *, flags: Sequence[str] = (), choices: Sequence[str] | None = None,
           secret: bool = False, repeatable: bool = False) -> Any:
    """A config field; ``secret`` keeps it out of the config's repr (and so out of logs), ``repeatable``
    lets its flag be given several times (the values are joined with commas)."""
    return field(default=default, repr=not secret,
                 metadata={"help": help, "flags": tuple(flags), "choices": choices, "repeatable": repeatable})


def parse_credentials(auth: str, auth_file: str = "") -> tuple[tuple[str, str], ...]:
    """The (user, password) pairs of ``auth`` ("user:pass", comma-separated) and ``auth_file`` (one
    "user:pass" per line; blank lines and lines starting with # are skipped). A password may contain ":".

    Raises ConfigError naming the entry or line, never echoing a password.
    """
    pairs: list[tuple[str, str]] = []

    def add(entry: str, where: str) -> None:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError(f"{where} must be user:password with a non-empty user and password.")
        pairs.append((user.strip(), password))

    for i, entry in enumerate((e.strip() for e in auth.split(",")), start=1):
        if entry:
            add(entry, f"auth entry {i}")
    if auth_file:
        file = Path(auth_file)
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(f"auth_file {auth_file} does not exist.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"auth_file {auth_file} cannot be read ({exc.__class__.__name__}).") from None
        for n, line in enumerate(lines, start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                add(line, f"auth_file {auth_file} line {n}")
        if not any(line.strip() and not line.strip().startswith("#") for line in lines):
            raise ConfigError(f"auth_file {auth_file} holds no user:password line.")
    return tuple(pairs)


@dataclass(frozen=True)
class DemoConfig:
    """Every setting of the demo. Field docs double as ``--help`` text."""

    # The model
    checkpoint_path: str = _field(
        DEFAULT_CHECKPOINT, "Hub id or local directory of the checkpoint (Qwen2-Audio, Qwen-Audio-Chat or Qwen-Audio)",
        flags=("-c", "--checkpoint-path"),
    )
    device: str = _field("auto", "Where the model runs (auto = CUDA when available, else an Apple GPU (mps), else CPU)",
                         choices=DEVICES)
    threads: int = _field(0, "CPU threads PyTorch uses (0 = its default, one per core)")
    dtype: str = _field("auto", "Model dtype (auto = bfloat16 on GPU, float32 on CPU)", choices=DTYPES)
    quantization: str = _field("none", "Language model weights in 8bit or 4bit (nf4) through bitsandbytes, for "
                               "8-16 GB GPUs; the audio encoder, projector and lm_head stay in dtype",
                               choices=QUANTIZATION_CHOICES)
    adapter: str = _field(
        "", "A PEFT LoRA adapter (directory or hub id) applied on top of the checkpoint (empty = none); adapters "
        "saved under transformers 4.x load too")
    merge_adapter: bool = _field(False, "Merge the adapter into the weights (faster replies; refused with "
                                 "--quantization 4bit, where rounding would lose it)")
    backend: str = _field(
        "local", "local: load the model in this process; openai: drive an OpenAI-compatible server (vLLM, another demo)",
        choices=BACKENDS,
    )
    api_base: str = _field("", "With --backend openai: the server's base URL, e.g. http://gpu-box:8000/v1")
    remote_model: str = _field("", "With --backend openai: the model name on that server (empty = the first it lists)")
    remote_api_key: str = _field("", "With --backend openai: the key sent to that server (empty = --api-key)",
                                 secret=True)
    # The server
    server_name: str = _field("127.0.0.1", "Interface to listen on (0.0.0.0 for every interface)")
    server_port: int = _field(7860, "Port to listen on")
    share: bool = _field(False, "Also serve through a public gradio.live link")
    inbrowser: bool = _field(False, "Open the page in the default browser once it is up")
    max_queue_size: int = _field(
        32, "Requests that may wait while the model answers one (it answers them one at a time, in order); one "
        "more is refused as busy: on the page, /chat and /v1 (HTTP 429) alike")
    stream_interval_ms: int = _field(
        40, "Shortest time between two updates of a streaming reply (page, /chat, /v1); the words generated "
        "meanwhile go out together (0 = every piece as it comes)")
    api: bool = _field(True, "Serve the OpenAI-compatible API at /v1/chat/completions and /v1/models")
    api_key: str = _field("", "Bearer key the /v1 API requires (empty = open, or the --auth logins when set)",
                          secret=True)
    auth: str = _field(
        "", "Require a login for the page and the API: user:password (repeat the flag or separate with commas "
        "for several). /v1 then takes HTTP Basic auth or 'Authorization: Bearer user:password' (an OpenAI "
        "client's api_key='user:password'), unless --api-key is set, which it then requires instead. "
        "Command lines are visible to other users of the machine: there, prefer --auth-file or $QWEN_DEMO_AUTH",
        secret=True, repeatable=True,
    )
    auth_file: str = _field("", "File of user:password lines (# comments allowed), added to --auth")
    audio_url_allowlist: str = _field("", "Comma-separated hosts whose http(s) audio_url the /v1 API may fetch (empty = none)")
    # Audio
    max_audio_seconds: float = _field(300.0, "Longest audio accepted, in seconds (longer audio is refused)")
    max_upload_mb: int = _field(200, "Largest file accepted, in MB")
    max_transcription_minutes: float = _field(
        120.0, "Longest recording a transcription (/v1/audio/transcriptions and /translations) accepts, in "
        "minutes; it is cut into windows of at most 30 s at pauses (chat messages keep max_audio_seconds)")
    upload_ttl_minutes: float = _field(
        1440.0, "Uploaded audio and cut clips no request has used for this long are deleted (0 = only when "
        "their session ends)")
    upload_cache_mb: int = _field(
        4096, "Most disk space uploaded audio and cut clips may take; the least recently used are deleted "
        "beyond it (0 = no cap)")
    # Default generation settings, for the page, /chat and /v1 alike (each request may change them). Unset
    # (none): the checkpoint's generation_config, and where that is silent transformers' defaults and 512 tokens.
    system_prompt: str = _field("", "System prompt (empty = the model's default)")
    max_new_tokens: int | None = _field(None, "Default maximum length of a reply, in tokens")
    max_new_tokens_limit: int = _field(2048, "Largest reply length a request may ask for (page, /chat and /v1)")
    temperature: float | None = _field(None, "Default sampling temperature (0 = greedy, deterministic)")
    top_p: float | None = _field(None, "Default nucleus sampling threshold")
    top_k: int | None = _field(None, "Default top-k (0 disables it)")
    repetition_penalty: float | None = _field(None, "Default repetition penalty (1.0 disables it)")
    seed: int = _field(-1, "Default random seed (-1 = a different one each time)")
    # Caches that make follow-up turns fast (0 turns one off)
    cache_audio_mb: int = _field(CacheSizes.audio_mb, "Decoded audio kept for reuse, in MB")
    cache_features_mb: int = _field(CacheSizes.features_mb, "Audio features kept for reuse, in MB")
    prefix_cache_tokens: int = _field(CacheSizes.prefix_tokens, "Prompt KV cache kept for reuse, in tokens (about 0.5 MiB each on the 7B model)")
    # Speed-ups (greedy output is the same with every choice)
    attn_implementation: str = _field("auto", "Attention kernel: auto (transformers' default, sdpa), sdpa, eager, "
                                      "flash_attention_2 (needs the flash-attn package and a GPU)",
                                      choices=ATTENTION_CHOICES)
    kv_cache: str = _field("dynamic", "KV cache: dynamic (needed by prefix_cache_tokens), static, or static-compile "
                           "(static with torch.compile of the decoding step; the first replies compile); static ones "
                           "turn the prefix cache off", choices=KV_CACHE_CHOICES)
    # The page
    examples: bool = _field(True, "Offer example clips and questions under the chat")
    # Voice mode (the page's microphone streams; Silero VAD finds where the person stops talking)
    voice: bool = _field(True, "Offer voice mode on the page: talk, and each pause ends a question that is answered")
    vad_pause_ms: int = _field(VadSettings.pause_ms, "Voice mode: the pause, in ms, that ends what the person says")
    vad_threshold: float = _field(VadSettings.threshold, "Voice mode: the speech probability (0-1) at which Silero "
                                  "VAD counts a 32 ms frame as speech (higher: fewer false starts in noise)")
    vad_min_speech_ms: int = _field(VadSettings.min_speech_ms, "Voice mode: speech shorter than this, in ms, is "
                                    "ignored (a click, a cough); it is also how long talking takes to stop an answer")
    vad_pad_ms: int = _field(VadSettings.pad_ms, "Voice mode: audio kept before and after the speech, in ms (the "
                             "rest of the silence is trimmed)")
    log_level: str = _field("INFO", "Logging level", choices=LOG_LEVELS)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, not {value!r}.")
        checks = {
            "server_port": (0 <= self.server_port <= 65535, "between 0 and 65535"),
            "threads": (self.threads >= 0, "0 or more"),
            "max_queue_size": (self.max_queue_size >= 1, "at least 1"),
            "stream_interval_ms": (0 <= self.stream_interval_ms <= 1000, "between 0 and 1000"),
            "max_audio_seconds": (self.max_audio_seconds > 0, "positive"),
            "max_upload_mb": (self.max_upload_mb >= 1, "at least 1"),
            "max_transcription_minutes": (self.max_transcription_minutes > 0, "positive"),
            "upload_ttl_minutes": (self.upload_ttl_minutes >= 0, "0 or more"),
            "upload_cache_mb": (self.upload_cache_mb >= 0, "0 or more"),
            "max_new_tokens_limit": (self.max_new_tokens_limit >= 1, "at least 1"),
            "max_new_tokens": (self.max_new_tokens is None or self.max_new_tokens <= self.max_new_tokens_limit,
                               "at most max_new_tokens_limit"),
            "api_base": (self.backend != "openai" or self.api_base.startswith(("http://", "https://")),
                         "an http(s) URL when backend is openai"),
            "merge_adapter": (not self.merge_adapter or bool(self.adapter), "false when no adapter is given"),
            "adapter": (not self.adapter or self.backend == "local",
                        "empty with backend openai (the server applies its own adapters)"),
            "vad_pause_ms": (100 <= self.vad_pause_ms <= 10000, "between 100 and 10000"),
            "vad_threshold": (0.0 < self.vad_threshold < 1.0, "between 0 and 1"),
            "vad_min_speech_ms": (0 <= self.vad_min_speech_ms <= 5000, "between 0 and 5000"),
            "vad_pad_ms": (0 <= self.vad_pad_ms <= 2000, "between 0 and 2000"),
            "cache_audio_mb": (self.cache_audio_mb >= 0, "0 or more"),
            "cache_features_mb": (self.cache_features_mb >= 0, "0 or more"),
            "prefix_cache_tokens": (self.prefix_cache_tokens >= 0, "0 or more"),
        }
        for name in SETTINGS:
            value = getattr(self, name)
            if value is not None and not PARAMS[name].accepts(value):  # the table every entry point uses
                raise ConfigError(f"{name} must be {PARAMS[name].wanted()}, not {value!r}.")
        for name, (ok, wanted) in checks.items():
            if not ok:
                raise ConfigError(f"{name} must be {wanted}, not {getattr(self, name)!r}.")
        # Read once, here: malformed logins fail at start-up, and a later edit of the file changes nothing.
        object.__setattr__(self, "_credentials", parse_credentials(self.auth, self.auth_file))

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def vad(self) -> VadSettings:
        """Voice mode's detector settings."""
        return VadSettings(threshold=self.vad_threshold, pause_ms=self.vad_pause_ms,
                           min_speech_ms=self.vad_min_speech_ms, pad_ms=self.vad_pad_ms)

    @property
    def credentials(self) -> tuple[tuple[str, str], ...]:
        """The (user, password) logins of ``auth`` and ``auth_file``; empty = no login required."""
        return self._credentials  # type: ignore[attr-defined]

    @property
    def audio_url_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.audio_url_allowlist.split(",") if h.strip())


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(DemoConfig)
    kind = hints[f.name]
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _optional(f: dataclasses.Field) -> bool:
    """Whether the field may be unset (None: "the checkpoint's")."""
    return f.default is None


#: How an unset optional field is written in YAML, the environment or on the command line.
UNSET_WORDS = ("", "none", "null", "default")


def _coerce(name: str, kind: type, value: Any, source: str, optional: bool = False) -> Any:
    """Turn a YAML/env/CLI value into the field's type, or raise ConfigError naming where it came from."""
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS)):
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return "" if value is None else str(value)
    except (TypeError, ValueError):
        unset = " (or none: the checkpoint's)" if optional else ""
        raise ConfigError(f"{name} from {source} must be {kind.__name__}{unset}, not {value!r}.") from None


def _from_yaml(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of field: value.")
    known = {f.name: f for f in dataclasses.fields(DemoConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"Config file {path} has unknown field(s): {', '.join(unknown)}.")
    return {k: _coerce(k, _field_type(known[k]), ",".join(map(str, v)) if known[k].metadata["repeatable"] and
                       isinstance(v, list) else v, path, _optional(known[k])) for k, v in data.items()}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(DemoConfig):
        for var in (GRADIO_ENV.get(f.name), ENV_PREFIX + f.name.upper()):  # ours wins over Gradio's
            if var and var in environ:
                values[f.name] = _coerce(f.name, _field_type(f), environ[var], f"${var}", _optional(f))
    return values


def build_arg_parser() -> argparse.ArgumentParser:
    """The command line: ``--config``, ``--cpu-only`` and one flag per config field."""
    parser = argparse.ArgumentParser(
        prog="web_demo_audio.py",
        description="Browser chat demo for Qwen2-Audio: record or upload audio, ask about it, watch the answer stream.",
        epilog=f"Every option can also be set in a YAML file (--config) or as ${ENV_PREFIX}<OPTION> "
        "(e.g. QWEN_DEMO_SERVER_PORT=8000); the command line wins over the environment, which wins over the file.",
    )
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help=f"YAML file of settings, e.g. configs/cpu-tryout.yaml (default: ${CONFIG_ENV} or none)")
    parser.add_argument("--cpu-only", action="store_true", default=argparse.SUPPRESS,
                        help="Run on the CPU; the same as --device cpu (default: False)")
    for f in dataclasses.fields(DemoConfig):
        kind = _field_type(f)
        flags = f.metadata["flags"] or ("--" + f.name.replace("_", "-"),)
        default_text = {"": '""', None: "none: the checkpoint's generation_config"}.get(f.default, f.default) \
            if isinstance(f.default, (str, type(None))) else f.default
        help_text = f"{f.metadata['help']} (default: {default_text})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if f.metadata["choices"]:
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata["repeatable"]:
            kwargs["action"] = "append"
        if _optional(f):
            kind = functools.partial(_coerce, f.name, kind, source="the command line", optional=True)
        parser.add_argument(*flags, type=kind, metavar=f.name.upper() if not f.metadata["choices"] else None, **kwargs)
    return parser


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> DemoConfig:
    """Build the config from defaults, a YAML file, the environment and ``argv`` (in that order).

    Raises ConfigError for a bad file or value; argparse exits with usage for a bad flag.
    """
    environ = os.environ if environ is None else environ
    args = vars(build_arg_parser().parse_args(list(argv) if argv is not None else None))
    values: dict[str, Any] = {}
    config_file = args.pop("config", None) or environ.get(CONFIG_ENV)
    if config_file:
        values.update(_from_yaml(config_file))
    values.update(_from_env(environ))
    cpu_only = args.pop("cpu_only", False)
    values.update({k: ",".join(v) if isinstance(v, list) else v for k, v in args.items()})
    if cpu_only:
        values["device"] = "cpu"
    try:
        return DemoConfig(**values)
    except TypeError as exc:  # pragma: no cover - unknown keys are caught above
        raise ConfigError(str(exc)) from None
