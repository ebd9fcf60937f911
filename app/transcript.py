"""Save a conversation as a ZIP file and load one back.

:func:`export_conversation` turns the displayed history (Gradio's messages format, see
:mod:`app.history`) into a ZIP holding

- ``conversation.json``: ``{"format": FORMAT, "version": VERSION, "model": ..., "exported": ISO time,
  "messages": [...]}``, each message one of ``{"role": "user"|"assistant", "text": str}``,
  ``{"role": ..., "audio": "audio/01-clip.wav", "name": "clip.wav"}`` or ``{"role": "assistant",
  "note": title}``, in display order;
- ``transcript.md``: the same conversation to read, each audio a relative link into ``audio/``;
- ``audio/NN-name.ext``: each audio file once (a file shown twice is stored once), under a safe name.

:func:`import_conversation` reads such a ZIP back as :class:`ImportedMessage` values, extracting only
the audio files its ``conversation.json`` refers to, under fresh names of its own, into a new folder.
It trusts nothing in the file: names, sizes and shapes are checked, and anything it cannot use is
refused with a :class:`TranscriptError` (one sentence naming the file and why) before anything is
left on disk.

Pure: values and files in, values and files out; no Gradio, no torch.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from model.audio import format_clock
from model.errors import UserFacingError

from .history import is_note, is_pending, message_items, paths_outside

#: ``conversation.json``'s "format"; a file without it was not saved by this demo.
FORMAT = "qwen-audio-demo-conversation"
#: The one version of ``conversation.json`` this module writes and reads.
VERSION = 1
CONVERSATION_JSON = "conversation.json"
TRANSCRIPT_MD = "transcript.md"
AUDIO_FOLDER = "audio"
ROLES = ("user", "assistant")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIME = re.compile(r"<time\b[^>]*>([^<]*)</time>")
_COPY_CHUNK = 1 << 20


class TranscriptError(UserFacingError):
    """A conversation that cannot be saved or loaded: ``name`` (a file's base name) and ``reason``
    make the sentence, e.g. "conversation.zip is not a ZIP file."."""

    status = 400

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name} {reason}")


@dataclass(frozen=True)
class ImportedMessage:
    """One message of a loaded conversation: exactly one of ``text``, ``audio`` (the path of the
    extracted file, with ``name`` the name it was shown under) and ``note`` (a note's title)."""

    role: str
    text: str | None = None
    audio: str | None = None
    name: str | None = None
    note: str | None = None


def safe_name(name: str, default: str = "audio") -> str:
    """A file name safe anywhere: the last path component of ``name``, letters, digits, ``.``, ``-``
    and ``_`` only, a lower-case extension of up to 8 characters; ``default`` if nothing is left."""
    base = _CONTROL.sub("", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(base)
    stem = _UNSAFE.sub("-", stem).strip(".-_")[:60] or default
    ext = ext.lower()
    return stem + (ext if _EXTENSION.fullmatch(ext) else "")


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


# --- export ----------------------------------------------------------------------------------------


def conversation_entries(
    history: Sequence[Any], *, allowed_roots: Sequence[str] | None = None
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The entries of ``conversation.json`` for ``history`` and the audio files they refer to
    (archive name -> source path). Pending notes, blank texts and messages of other roles are left out;
    a message of several items (not one the page makes) gives one entry per item. Raises
    :class:`TranscriptError` for an audio file that is gone, or outside ``allowed_roots`` when given."""
    entries: list[dict[str, str]] = []
    archived: dict[str, str] = {}  # real path -> archive name
    sources: dict[str, str] = {}  # archive name -> path
    for message in history:
        role = _get(message, "role")
        if role not in ROLES:
            continue
        if is_note(message):
            if not is_pending(message):
                entries.append({"role": role, "note": str(_get(_get(message, "metadata"), "title"))})
            continue
        for kind, value in message_items(message):
            if kind == "text":
                if value.strip():
                    entries.append({"role": role, "text": value})
                continue
            shown = os.path.basename(value) or value
            if allowed_roots is not None and paths_outside([value], allowed_roots):
                raise TranscriptError(shown, "is not a file this demo received, so the conversation cannot be saved.")
            if not os.path.isfile(value):
                raise TranscriptError(
                    shown, "is no longer on the server (uploads are deleted after a while), "
                    "so the conversation cannot be saved.")
            real = os.path.realpath(value)
            if real not in archived:
                archived[real] = f"{AUDIO_FOLDER}/{len(archived) + 1:02d}-{safe_name(shown)}"
                sources[archived[real]] = value
            entries.append({"role": role, "audio": archived[real], "name": shown})
    return entries, sources


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


def transcript_markdown(
    entries: Sequence[dict[str, str]],
    *,
    model_label: str,
    exported: str,
    durations: dict[str, float] | None = None,
) -> str:
    """``transcript.md`` for the entries of ``conversation.json``: a heading for each turn, texts as
    they were shown (readable times as their text), audio as relative links with their duration when
    ``durations`` (archive name -> seconds) has it, notes in italics."""
    lines = [f"# Conversation with {_md_escape(model_label)}", "", f"Saved {exported} from the Qwen audio chat demo.", ""]
    role = None
    for entry in entries:
        if "note" in entry:
            lines += [f"*{_md_escape(entry['note'])}*", ""]
            continue
        if entry["role"] != role:
            role = entry["role"]
            lines += ["**You**" if role == "user" else "**Assistant**", ""]
        if "text" in entry:
            lines += [_TIME.sub(r"\1", entry["text"]).strip("\n"), ""]
        else:
            seconds = (durations or {}).get(entry["audio"])
            length = f" ({format_clock(seconds, 1)})" if seconds is not None else ""
            lines += [f"[{_md_escape(entry['name'])}]({entry['audio']}){length}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def export_conversation(
    history: Sequence[Any],
    *,
    model_label: str,
    audio_seconds: Callable[[str], float] | None = None,
    allowed_roots: Sequence[str] | None = None,
) -> bytes:
    """The ZIP file (see the module doc) of the displayed ``history``.

    ``model_label`` names the model in both files; ``audio_seconds(path)``, when given, gives each audio's
    duration for the transcript (its exceptions are not caught); ``allowed_roots``, when given, are the
    only folders audio may be read from (the page sends its history back, so its paths are the
    client's word). Raises :class:`TranscriptError` naming an audio file that cannot be read.
    """
    entries, sources = conversation_entries(history, allowed_roots=allowed_roots)
    exported = datetime.now(timezone.utc).isoformat(timespec="seconds")
    durations = {name: float(audio_seconds(path)) for name, path in sources.items()} if audio_seconds else None
    document = {"format": FORMAT, "version": VERSION, "model": model_label, "exported": exported, "messages": entries}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(CONVERSATION_JSON, json.dumps(document, ensure_ascii=False, indent=1) + "\n")
        archive.writestr(TRANSCRIPT_MD, transcript_markdown(entries, model_label=model_label, exported=exported,
                                                            durations=durations))
        for name, path in sources.items():
            try:
                archive.write(path, name)
            except OSError:
                raise TranscriptError(os.path.basename(path), "could not be read, so the conversation cannot be saved.") from None
    return buffer.getvalue()


# --- import ----------------------------------------------------------------------------------------


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1000:.0f} kB" if n >= 1000 else f"{n} bytes"


class _Reader:
    """One ZIP being imported: every check names ``name``, the file's base name."""

    def __init__(self, archive: zipfile.ZipFile, name: str, max_bytes: int):
        self.archive = archive
        self.name = name
        self.max_bytes = max_bytes
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if info.filename in self.members:
                raise self.refuse("is damaged: it holds two files of the same name.")
            self.members[info.filename] = info

    def refuse(self, reason: str) -> TranscriptError:
        return TranscriptError(self.name, reason)

    def unusable(self, number: int) -> TranscriptError:
        return self.refuse(f"is not a conversation this demo can show: message {number} is of an unknown kind.")

    def member(self, filename: str, what: str) -> zipfile.ZipInfo | None:
        """The entry ``filename`` if it is a plain, unencrypted file (else refused), or None if absent."""
        info = self.members.get(filename)
        if info is None:
            return None
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the tool that made it recorded no file type
        if info.is_dir() or kind not in (0, stat.S_IFREG):
            raise self.refuse(f"is not a conversation this demo can use: {what} is not a plain file.")
        if info.flag_bits & 0x1:
            raise self.refuse("is password-protected; a conversation saved by this demo is not.")
        return info

    def too_large(self, total: int) -> TranscriptError:
        return self.refuse(f"is too large: its files take {_size(total)} unpacked, more than the "
                           f"{_size(self.max_bytes)} a conversation may take.")

    def copy(self, info: zipfile.ZipInfo, out: Any, budget: int) -> int:
        """Copy ``info``'s data into ``out``, at most ``budget`` bytes; the number copied."""
        copied = 0
        try:
            with self.archive.open(info) as source:
                while chunk := source.read(_COPY_CHUNK):
                    copied += len(chunk)
                    if copied > budget:
                        raise self.too_large(self.max_bytes - budget + copied)
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError):
            raise self.refuse("is damaged: its files could not be unpacked.") from None
        return copied

    def document(self) -> tuple[Any, int]:
        """``conversation.json``, parsed, and its size."""
        info = self.member(CONVERSATION_JSON, CONVERSATION_JSON)
        if info is None:
            raise self.refuse(f"is not a conversation saved by this demo: it has no {CONVERSATION_JSON}.")
        if info.file_size > self.max_bytes:
            raise self.too_large(info.file_size)
        out = io.BytesIO()
        size = self.copy(info, out, self.max_bytes)
        try:
            return json.loads(out.getvalue().decode("utf-8")), size
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self.refuse(f"is not a conversation saved by this demo: its {CONVERSATION_JSON} is not valid JSON.") from None

    def messages(self, document: Any) -> list[dict[str, str]]:
        """The checked messages of ``document``."""
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise self.refuse(f"is not a conversation saved by this demo: its {CONVERSATION_JSON} is of another format.")
        version = document.get("version")
        if type(version) is int and version > VERSION:
            raise self.refuse(f"was saved by a newer version of this demo (format version {version}); "
                              f"this one reads version {VERSION}.")
        if version != VERSION or type(version) is not int:
            raise self.refuse(f"is not a conversation this demo can read: its format version is not {VERSION}.")
        messages = document.get("messages")
        if not isinstance(messages, list):
            raise self.refuse(f"is not a conversation this demo can read: its {CONVERSATION_JSON} has no list of messages.")
        checked = []
        for number, message in enumerate(messages, 1):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise self.unusable(number)
            kinds = [k for k in ("text", "audio", "note") if k in message]
            if len(kinds) != 1 or not isinstance(message[kinds[0]], str):
                raise self.unusable(number)
            allowed = {"role", kinds[0]} | ({"name"} if kinds[0] == "audio" else set())
            if set(message) - allowed or not isinstance(message.get("name", ""), str):
                raise self.unusable(number)
            if kinds[0] == "audio":
                folder, _, base = message["audio"].partition("/")
                if folder != AUDIO_FOLDER or not base or "/" in base or "\\" in base or base in (".", "..") \
                        or _CONTROL.search(base):
                    raise self.refuse(f"is not a conversation this demo can use: message {number} refers to "
                                      f"audio outside its {AUDIO_FOLDER} folder.")
            checked.append(message)
        return checked


def _shown_name(name: str | None, fallback: str) -> str:
    """A display name from the file: its last path component, without control characters, at most 200 characters."""
    cleaned = _CONTROL.sub("", name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()[:200]
    return cleaned or fallback


def _fresh_path(folder: str, name: str, taken: set[str]) -> str:
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}{ext}"
    taken.add(candidate)
    return os.path.join(folder, candidate)


def import_conversation(
    zip_path: str | os.PathLike[str], dest_dir: str | os.PathLike[str], *, max_bytes: int, max_files: int = 200
) -> list[ImportedMessage]:
    """The messages of the conversation ZIP ``zip_path`` (one :func:`export_conversation` made).

    The audio files its ``conversation.json`` refers to are extracted, each once, into a new folder in
    ``dest_dir`` (created if need be), under safe names made here from the names they were shown under;
    nothing else in the ZIP is read. Refused with a :class:`TranscriptError` naming the file, with nothing
    left in ``dest_dir``: not a ZIP file; more than ``max_files`` entries; entries read that take more than
    ``max_bytes`` unpacked (declared or actual); no ``conversation.json``, or not valid JSON, or another
    format or version; a message of an unknown shape; audio outside ``audio/``, missing, not a plain file
    (a link, a folder) or damaged.
    """
    name = os.path.basename(os.fspath(zip_path)) or os.fspath(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
        raise TranscriptError(name, "is not a ZIP file (a conversation saved by this demo is one).") from None
    except OSError:
        raise TranscriptError(name, "could not be read.") from None
    with archive:
        reader = _Reader(archive, name, max_bytes)
        if len(reader.members) > max_files:
            raise reader.refuse(f"holds {len(reader.members)} files, more than the {max_files} a conversation may hold.")
        document, used = reader.document()
        messages = reader.messages(document)
        wanted: dict[str, tuple[zipfile.ZipInfo, str]] = {}  # archive name -> (entry, shown name)
        for number, message in enumerate(messages, 1):
            ref = message.get("audio")
            if ref is None or ref in wanted:
                continue
            info = reader.member(ref, f"the audio of message {number}")
            if info is None:
                raise reader.refuse(f"is incomplete: the audio of message {number} is missing from it.")
            wanted[ref] = (info, _shown_name(message.get("name"), safe_name(ref.partition("/")[2])))
        declared = used + sum(info.file_size for info, _ in wanted.values())
        if declared > max_bytes:
            raise reader.too_large(declared)
        paths: dict[str, str] = {}
        if wanted:
            os.makedirs(dest_dir, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="conversation-", dir=dest_dir)
            try:
                taken: set[str] = set()
                for ref, (info, shown) in wanted.items():
                    file_name = safe_name(shown)
                    ext = os.path.splitext(ref)[1].lower()
                    if not os.path.splitext(file_name)[1] and _EXTENSION.fullmatch(ext):
                        file_name += ext
                    path = _fresh_path(folder, file_name, taken)
                    with open(path, "xb") as out:
                        used += reader.copy(info, out, max_bytes - used)
                    paths[ref] = path
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
    result = []
    for message in messages:
        role = message["role"]
        if "text" in message:
            result.append(ImportedMessage(role, text=message["text"]))
        elif "note" in message:
            result.append(ImportedMessage(role, note=message["note"]))
        else:
            ref = message["audio"]
            shown = _shown_name(message.get("name"), os.path.basename(paths[ref]))
            result.append(ImportedMessage(role, audio=paths[ref], name=shown))
    return result
