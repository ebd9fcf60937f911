"""Saving a conversation as a ZIP file and loading it back (app.transcript): real WAV files, real ZIPs."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import struct
import subprocess
import sys
import wave
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from app.history import note
from app.transcript import (
    FORMAT,
    VERSION,
    ImportedMessage,
    TranscriptError,
    export_conversation,
    import_conversation,
    safe_name,
)
from audio_samples import tone, write_wav

ROOT = Path(__file__).resolve().parent.parent
REPLY = 'The bird sings from <time datetime="PT2.33S">0:02.33</time> to <time datetime="PT4.10S">0:04.10</time>.'


def seconds_of(path: str) -> float:
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


def audio_component(path):
    """A user audio as the page sends it back (preprocess=False)."""
    return {"type": "component", "component": "audio", "value": {"path": path, "url": None, "orig_name": None},
            "constructor_args": {"label": "x"}, "props": {}}


def message(role, content, metadata=None):
    return {"role": role, "metadata": metadata, "content": content, "options": None}


@pytest.fixture
def uploads(tmp_path):
    """Three WAV files where Gradio keeps uploads (one folder per upload) and cut clips."""
    for folder in ("gradio/aa11", "gradio/bb22", "clips"):
        (tmp_path / folder).mkdir(parents=True)
    first = write_wav(tmp_path / "gradio" / "aa11" / "bird song.wav", tone(2.5, 440, seed=1))
    second = write_wav(tmp_path / "gradio" / "bb22" / "voice.wav", tone(1.0, 220, seed=2))
    clip = write_wav(tmp_path / "clips" / "clip1_2.33-4.10.wav", tone(1.77, 880, seed=3))
    return str(first), str(second), str(clip)


@pytest.fixture
def history(uploads):
    """A chat in every shape app.history reads: component dicts, file dicts, bare {"path": ...}, a single item."""
    first, second, clip = uploads
    return [
        message("user", [audio_component(first)]),
        message("assistant", "", {"title": "The audio was split into windows", "status": "done"}),
        message("user", [{"type": "text", "text": "When does the bird sing?"}]),
        message("assistant", "", {"title": "Waiting for the model", "status": "pending"}),
        message("assistant", [{"type": "text", "text": REPLY}]),
        message("assistant", {"type": "file", "file": {"path": clip, "mime_type": "audio/wav"}}),
        message("assistant", note("Stopped")["content"], note("Stopped")["metadata"]),
        message("user", [{"path": second}]),
        message("user", "And this one?"),
        message("assistant", ""),  # a reply stopped before its first word
        message("user", [audio_component(first)]),  # the same file again
        message("assistant", "Same bird."),
    ]


EXPECTED_MESSAGES = [
    {"role": "user", "audio": "audio/01-bird-song.wav", "name": "bird song.wav"},
    {"role": "assistant", "note": "The audio was split into windows"},
    {"role": "user", "text": "When does the bird sing?"},
    {"role": "assistant", "text": REPLY},
    {"role": "assistant", "audio": "audio/02-clip1_2.33-4.10.wav", "name": "clip1_2.33-4.10.wav"},
    {"role": "assistant", "note": "Stopped"},
    {"role": "user", "audio": "audio/03-voice.wav", "name": "voice.wav"},
    {"role": "user", "text": "And this one?"},
    {"role": "user", "audio": "audio/01-bird-song.wav", "name": "bird song.wav"},
    {"role": "assistant", "text": "Same bird."},
]


def open_zip(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def test_export_holds_the_json_the_transcript_and_each_audio_once(history, uploads):
    data = export_conversation(history, model_label="Qwen2-Audio-7B-Instruct")
    first, second, clip = uploads
    with open_zip(data) as z:
        assert sorted(z.namelist()) == ["audio/01-bird-song.wav", "audio/02-clip1_2.33-4.10.wav", "audio/03-voice.wav",
                                        "conversation.json", "transcript.md"]
        document = json.loads(z.read("conversation.json"))
        assert z.read("audio/01-bird-song.wav") == Path(first).read_bytes()
        assert z.read("audio/02-clip1_2.33-4.10.wav") == Path(clip).read_bytes()
        assert z.read("audio/03-voice.wav") == Path(second).read_bytes()
    assert document["format"] == FORMAT == "qwen-audio-demo-conversation"
    assert document["version"] == VERSION == 1
    assert document["model"] == "Qwen2-Audio-7B-Instruct"
    assert datetime.fromisoformat(document["exported"]).tzinfo is not None
    assert document["messages"] == EXPECTED_MESSAGES


def test_transcript_reads_as_a_conversation(history):
    data = export_conversation(history, model_label="Qwen2-Audio-7B-Instruct", audio_seconds=seconds_of)
    with open_zip(data) as z:
        md = z.read("transcript.md").decode("utf-8")
    assert md.startswith("# Conversation with Qwen2-Audio-7B-Instruct\n")
    assert "[bird song.wav](audio/01-bird-song.wav) (0:02.5)" in md
    assert "[clip1\\_2.33-4.10.wav](audio/02-clip1_2.33-4.10.wav) (0:01.8)" in md
    assert "[voice.wav](audio/03-voice.wav) (0:01.0)" in md
    assert "*The audio was split into windows*" in md and "*Stopped*" in md
    assert "Waiting for the model" not in md
    assert "The bird sings from 0:02.33 to 0:04.10." in md and "<time" not in md
    # one heading per turn, in order; notes do not start turns
    headings = [line for line in md.splitlines() if line in ("**You**", "**Assistant**")]
    assert headings == ["**You**", "**Assistant**", "**You**", "**Assistant**"]
    body = md[md.index("**You**"):]
    assert body.index("bird song.wav") < body.index("*The audio was split") < body.index("When does the bird sing?") \
        < body.index("The bird sings") < body.index("clip1") < body.index("*Stopped*") < body.index("voice.wav") \
        < body.index("And this one?") < body.index("Same bird.")


def test_transcript_without_durations_has_none(history):
    with open_zip(export_conversation(history, model_label="m")) as z:
        md = z.read("transcript.md").decode("utf-8")
    assert "[voice.wav](audio/03-voice.wav)\n" in md


def test_round_trip(history, uploads, tmp_path):
    archive = tmp_path / "conversation.zip"
    archive.write_bytes(export_conversation(history, model_label="m"))
    dest = tmp_path / "imported"
    messages = import_conversation(archive, dest, max_bytes=10_000_000)
    assert all(isinstance(m, ImportedMessage) for m in messages)
    assert len(messages) == len(EXPECTED_MESSAGES)
    first, second, clip = uploads
    sources = {"bird song.wav": first, "clip1_2.33-4.10.wav": clip, "voice.wav": second}
    for got, want in zip(messages, EXPECTED_MESSAGES):
        assert got.role == want["role"]
        assert got.text == want.get("text") and got.note == want.get("note")
        if "audio" in want:
            assert got.name == want["name"]
            assert Path(got.audio).read_bytes() == Path(sources[want["name"]]).read_bytes()
            assert Path(got.audio).resolve().parent.parent == dest.resolve()  # in a new folder of dest_dir
        else:
            assert got.audio is None and got.name is None
    assert messages[3].text == REPLY  # readable times stay the page's markup
    assert messages[0].audio == messages[8].audio  # one file, extracted once
    extracted = sorted(p.name for p in dest.rglob("*") if p.is_file())
    assert extracted == ["bird-song.wav", "clip1_2.33-4.10.wav", "voice.wav"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        messages[0].role = "assistant"


def test_each_import_gets_a_fresh_folder_and_overwrites_nothing(history, tmp_path):
    archive = tmp_path / "c.zip"
    archive.write_bytes(export_conversation(history, model_label="m"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "voice.wav").write_bytes(b"keep me")
    one = import_conversation(archive, dest, max_bytes=10_000_000)
    two = import_conversation(archive, dest, max_bytes=10_000_000)
    assert {m.audio for m in one if m.audio}.isdisjoint({m.audio for m in two if m.audio})
    assert (dest / "voice.wav").read_bytes() == b"keep me"


def test_a_conversation_without_audio_writes_nothing(tmp_path):
    archive = tmp_path / "c.zip"
    archive.write_bytes(export_conversation([message("user", "hi"), message("assistant", "hello")], model_label="m"))
    dest = tmp_path / "dest"
    assert import_conversation(archive, dest, max_bytes=100_000) == [
        ImportedMessage("user", text="hi"), ImportedMessage("assistant", text="hello")]
    assert not dest.exists()


def test_two_files_of_one_name_get_distinct_safe_names(tmp_path):
    paths = []
    for folder, freq in (("x1", 300), ("x2", 600)):
        (tmp_path / folder).mkdir()
        paths.append(str(write_wav(tmp_path / folder / "录音 (1).wav", tone(0.2, freq))))
    archive = tmp_path / "c.zip"
    archive.write_bytes(export_conversation([message("user", {"path": p}) for p in paths], model_label="m"))
    with open_zip(archive.read_bytes()) as z:
        assert sorted(n for n in z.namelist() if n.startswith("audio/")) == ["audio/01-1.wav", "audio/02-1.wav"]
    messages = import_conversation(archive, tmp_path / "dest", max_bytes=1_000_000)
    assert [m.name for m in messages] == ["录音 (1).wav", "录音 (1).wav"]
    assert [os.path.basename(m.audio) for m in messages] == ["1.wav", "1-2.wav"]
    assert [Path(m.audio).read_bytes() for m in messages] == [Path(p).read_bytes() for p in paths]


def test_safe_name():
    assert safe_name("bird song.wav") == "bird-song.wav"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..") == "audio"
    assert safe_name("C:\\Users\\x\\clip.WAV") == "clip.wav"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("a\x00b.wav") == "ab.wav"
    assert safe_name("clip.weird extension") == "clip"
    assert len(safe_name("x" * 500 + ".wav")) == 64


# --- export refusals ---------------------------------------------------------------------------


def test_export_names_an_audio_file_that_is_gone(history, uploads):
    os.remove(uploads[1])
    with pytest.raises(TranscriptError) as caught:
        export_conversation(history, model_label="m")
    assert caught.value.status == 400
    assert caught.value.user_message.startswith("voice.wav is no longer on the server")


def test_export_reads_audio_only_inside_the_allowed_folders(history, uploads, tmp_path):
    data = export_conversation(history, model_label="m", allowed_roots=[str(tmp_path / "gradio"), str(tmp_path / "clips")])
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    with pytest.raises(TranscriptError) as caught:
        export_conversation(history, model_label="m", allowed_roots=[str(tmp_path / "gradio")])
    assert caught.value.user_message.startswith("clip1_2.33-4.10.wav is not a file this demo received")
    with pytest.raises(TranscriptError, match="^passwd is not a file this demo received"):
        export_conversation([message("user", {"path": "/etc/passwd"})], model_label="m", allowed_roots=[str(tmp_path)])


# --- import refusals ---------------------------------------------------------------------------


def wav_bytes(tmp_path, seconds=0.3) -> bytes:
    return write_wav(tmp_path / "src.wav", tone(seconds, 500, seed=4)).read_bytes()


def document(*messages, **fields):
    return json.dumps({"format": FORMAT, "version": VERSION, "model": "m", "exported": "2025-01-01T00:00:00+00:00",
                       "messages": list(messages), **fields})


def make_zip(path: Path, entries: dict) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            if isinstance(data, zipfile.ZipInfo):
                info, data = data, data.comment
                info.comment = b""
                z.writestr(info, data)
            else:
                z.writestr(name, data)
    return path


def special_entry(name: str, kind: int, data: bytes) -> zipfile.ZipInfo:
    """An entry whose Unix mode says it is a link (``stat.S_IFLNK``, ``data`` its target), a folder..."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o777) << 16
    info.comment = data  # make_zip writes the comment as the data
    return info


def lie_about_size(path: Path, member: str, size: int) -> None:
    """Rewrite the central directory so that ``member`` declares ``size`` bytes unpacked."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_length = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46: pos + 46 + name_length] == member.encode():
            struct.pack_into("<I", data, pos + 24, size)
            path.write_bytes(bytes(data))
            return
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(member)


AUDIO = {"role": "user", "audio": "audio/01-a.wav", "name": "a.wav"}


def refusal_cases(tmp_path):
    """(zip file name, builder, import keywords, words the sentence must hold)."""
    wav = wav_bytes(tmp_path)
    good = {"conversation.json": document(AUDIO), "audio/01-a.wav": wav}
    return {
        "not a zip": ("notes.zip", lambda p: p.write_bytes(b"just some text, not a zip"), {}, "is not a ZIP file"),
        "empty file": ("empty.zip", lambda p: p.write_bytes(b""), {}, "is not a ZIP file"),
        "no json": ("conversation.zip", lambda p: make_zip(p, {"audio/01-a.wav": wav, "notes.txt": "hi"}), {},
                    "is not a conversation saved by this demo: it has no conversation.json."),
        "bad json": ("chat.zip", lambda p: make_zip(p, {"conversation.json": '{"format": "qwen-audio-demo-conv'}), {},
                     "its conversation.json is not valid JSON"),
        "not utf-8": ("chat.zip", lambda p: make_zip(p, {"conversation.json": b"\xff\xfe{}"}), {}, "not valid JSON"),
        "deep json": ("chat.zip", lambda p: make_zip(p, {"conversation.json": "[" * 100_000}), {}, "not valid JSON"),
        "not an object": ("chat.zip", lambda p: make_zip(p, {"conversation.json": "[1, 2]"}), {}, "of another format"),
        "other format": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document(format="something-else")}), {},
                         "of another format"),
        "newer version": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document(version=2)}), {},
                          "was saved by a newer version of this demo (format version 2)"),
        "version as text": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document(version="1")}), {},
                            "its format version is not 1"),
        "no version": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document(version=None)}), {},
                       "its format version is not 1"),
        "no messages": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document(messages={"a": 1})}), {},
                        "has no list of messages"),
        "system role": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document({"role": "system", "text": "x"})}),
                        {}, "message 1 is of an unknown kind"),
        "two kinds": ("chat.zip", lambda p: make_zip(p, {**good, "conversation.json": document(
            {"role": "user", "text": "x"}, {"role": "user", "text": "x", "audio": "audio/01-a.wav"})}), {},
            "message 2 is of an unknown kind"),
        "unknown kind": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document({"role": "user", "image": "x.png"})}),
                         {}, "message 1 is of an unknown kind"),
        "extra key": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document({"role": "user", "text": "x", "html": 1})}),
                      {}, "message 1 is of an unknown kind"),
        "text not a string": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document({"role": "user", "text": 5})}),
                              {}, "message 1 is of an unknown kind"),
        "message not an object": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document("hello")}), {},
                                  "message 1 is of an unknown kind"),
        "traversal": ("evil.zip", lambda p: make_zip(p, {"conversation.json": document(
            {"role": "user", "text": "hi"}, {"role": "user", "audio": "../../x.wav", "name": "x.wav"}),
            "../../x.wav": wav}), {}, "message 2 refers to audio outside its audio folder"),
        "traversal inside audio": ("evil.zip", lambda p: make_zip(p, {"conversation.json": document(
            {"role": "user", "audio": "audio/../../x.wav"}), "audio/../../x.wav": wav}), {}, "outside its audio folder"),
        "absolute": ("evil.zip", lambda p: make_zip(p, {"conversation.json": document(
            {"role": "user", "audio": "/tmp/x.wav"})}), {}, "outside its audio folder"),
        "missing audio": ("chat.zip", lambda p: make_zip(p, {"conversation.json": document(
            AUDIO, {"role": "assistant", "audio": "audio/02-b.wav"}), "audio/01-a.wav": wav}), {},
            "is incomplete: the audio of message 2 is missing from it"),
        "symlink": ("links.zip", lambda p: make_zip(p, {"conversation.json": document(AUDIO),
                                                         "audio/01-a.wav": special_entry("audio/01-a.wav", stat.S_IFLNK, b"/etc/passwd")}),
                    {}, "the audio of message 1 is not a plain file"),
        "folder": ("links.zip", lambda p: make_zip(p, {"conversation.json": document({"role": "user", "audio": "audio/d/"}),
                                                        "audio/d/": b""}), {}, "outside its audio folder"),
        "fifo": ("links.zip", lambda p: make_zip(p, {"conversation.json": document(AUDIO),
                                                      "audio/01-a.wav": special_entry("audio/01-a.wav", stat.S_IFIFO, b"")}),
                 {}, "the audio of message 1 is not a plain file"),
        "zip bomb": ("bomb.zip", lambda p: make_zip(p, {"conversation.json": document(AUDIO),
                                                         "audio/01-a.wav": b"\0" * 5_000_000}),
                     {"max_bytes": 1_000_000}, "is too large: its files take 5.0 MB unpacked, more than the 1.0 MB"),
        "huge json": ("bomb.zip", lambda p: make_zip(p, {"conversation.json": document({"role": "user", "text": " " * 3_000_000})}),
                      {"max_bytes": 1_000_000}, "is too large"),
        "too many files": ("many.zip", lambda p: make_zip(p, {**good, **{f"x/{i}": b"" for i in range(5)}}),
                           {"max_files": 4}, "holds 7 files, more than the 4 a conversation may hold"),
    }


@pytest.mark.parametrize("case", [
    "not a zip", "empty file", "no json", "bad json", "not utf-8", "deep json", "not an object", "other format",
    "newer version", "version as text", "no version", "no messages", "system role", "two kinds", "unknown kind",
    "extra key", "text not a string", "message not an object", "traversal", "traversal inside audio", "absolute",
    "missing audio", "symlink", "folder", "fifo", "zip bomb", "huge json", "too many files",
])
def test_import_refuses(case, tmp_path):
    zip_name, build, keywords, words = refusal_cases(tmp_path)[case]
    path = tmp_path / zip_name
    build(path)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(TranscriptError) as caught:
        import_conversation(path, dest, **{"max_bytes": 10_000_000, **keywords})
    sentence = caught.value.user_message
    assert sentence.startswith(zip_name + " "), sentence
    assert words in sentence, sentence
    assert sentence.endswith(".") and "\n" not in sentence and "Traceback" not in sentence and "Error" not in sentence
    assert caught.value.status == 400
    assert list(dest.iterdir()) == []
    assert not (dest / "../../x.wav").resolve().exists() and not (tmp_path / "x.wav").exists()


def test_import_of_a_missing_file(tmp_path):
    with pytest.raises(TranscriptError, match=r"^gone\.zip could not be read\.$"):
        import_conversation(tmp_path / "gone.zip", tmp_path / "dest", max_bytes=1000)


def test_a_lying_entry_is_refused_and_what_was_extracted_is_removed(tmp_path):
    """A zip bomb that declares small sizes: unpacking stops at the declared size, and the files
    already extracted (here the first audio) are removed."""
    wav = wav_bytes(tmp_path)
    path = make_zip(tmp_path / "liar.zip", {
        "conversation.json": document(AUDIO, {"role": "user", "audio": "audio/02-b.wav"}),
        "audio/01-a.wav": wav, "audio/02-b.wav": b"\0" * 2_000_000})
    lie_about_size(path, "audio/02-b.wav", 100)
    dest = tmp_path / "dest"
    with pytest.raises(TranscriptError) as caught:
        import_conversation(path, dest, max_bytes=1_000_000)
    assert caught.value.user_message == "liar.zip is damaged: its files could not be unpacked."
    assert list(dest.iterdir()) == []


def test_the_budget_counts_only_the_entries_read(tmp_path):
    """Entries the JSON does not refer to are neither extracted nor counted."""
    wav = wav_bytes(tmp_path)
    path = make_zip(tmp_path / "c.zip", {"conversation.json": document(AUDIO), "audio/01-a.wav": wav,
                                         "audio/99-unused.wav": b"\0" * 3_000_000, "run.sh": "rm -rf /"})
    messages = import_conversation(path, tmp_path / "dest", max_bytes=1_000_000)
    assert [m.name for m in messages] == ["a.wav"]
    assert [p.name for p in (tmp_path / "dest").rglob("*") if p.is_file()] == ["a.wav"]
    assert Path(messages[0].audio).read_bytes() == wav


def test_names_in_the_file_are_not_trusted(tmp_path):
    wav = wav_bytes(tmp_path)
    path = make_zip(tmp_path / "c.zip", {
        "conversation.json": document({"role": "user", "audio": "audio/01-a.wav", "name": "../../../etc/x\x07.wav"},
                                      {"role": "assistant", "audio": "audio/.hidden"}),
        "audio/01-a.wav": wav, "audio/.hidden": wav})
    dest = tmp_path / "dest"
    messages = import_conversation(path, dest, max_bytes=1_000_000)
    assert [m.name for m in messages] == ["x.wav", "hidden"]
    for m in messages:
        assert Path(m.audio).resolve().parent.parent == dest.resolve()
    assert sorted(os.path.basename(m.audio) for m in messages) == ["hidden", "x.wav"]


def test_the_module_imports_neither_torch_nor_gradio():
    code = ("import sys, app.transcript; "
            "print([m for m in ('torch', 'gradio', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
