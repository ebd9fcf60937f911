"""Uploaded and derived files: deleted when their sessions end, when unused for long, and beyond a cap.

Unit tests drive :class:`app.temp_files.TempFiles` with a controlled clock on a temporary folder; the
server tests go through a served demo with ``gradio_client`` (its session ends when the client is
closed, as a browser tab's does when closed: Gradio's ``unload`` event). The browser case is in
``test_browser.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file

from app.config import DemoConfig
from app.demo import build_demo
from app.temp_files import RECENT_S, TempFiles
from app_fixtures import ScriptedWorker, component, gradio_call, serving, wait_for
from audio_samples import tone, write_wav

GREEDY = dict(system_prompt="", max_new_tokens=16, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
              seed=-1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def upload(folder: Path, name: str, size: int = 1000, at: float | None = None) -> str:
    """A file as Gradio stores an upload: folder/<content hash>/name; ``at`` sets its mtime."""
    path = folder / f"hash-{name}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    if at is not None:
        os.utime(path, (at, at))
    return str(path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def files_in(folder: Path, clock: Clock, **kwargs) -> TempFiles:
    options = dict(ttl_s=3600, max_bytes=0) | kwargs
    return TempFiles(folder, clock=clock, **options)


def test_a_session_end_deletes_what_only_that_session_used(tmp_path, clock):
    mine = upload(tmp_path, "mine.wav", at=clock.now - 10)
    shared = upload(tmp_path, "shared.wav", at=clock.now - 10)
    theirs = upload(tmp_path, "theirs.wav", at=clock.now - 10)
    files = files_in(tmp_path, clock)
    files.use("a", [mine, shared])
    files.use("b", [shared, theirs])

    assert sorted(files.end_session("a")) == [os.path.realpath(mine)]
    assert not os.path.exists(mine) and not os.path.exists(os.path.dirname(mine)), "file and its folder go"
    assert os.path.exists(shared) and os.path.exists(theirs)
    assert sorted(files.end_session("b")) == sorted(map(os.path.realpath, [shared, theirs]))
    assert list(tmp_path.iterdir()) == []


def test_a_file_uploaded_again_after_its_last_use_is_left_for_its_new_user(tmp_path, clock):
    path = upload(tmp_path, "again.wav", at=clock.now - 100)
    files = files_in(tmp_path, clock)
    files.use("a", [path])
    os.utime(path, (clock.now + 30, clock.now + 30))  # Gradio moved a fresh upload of the same content there
    assert files.end_session("a") == []
    assert os.path.exists(path)


def test_files_outside_the_folder_and_protected_ones_are_never_deleted(tmp_path, clock):
    folder = tmp_path / "uploads"
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"keep me")
    example = upload(folder, "example.wav", at=clock.now - 10)
    files = files_in(folder, clock, protected=lambda: [example])
    files.use("a", [str(outside), example, str(folder / ".." / "elsewhere.wav")])
    assert files.end_session("a") == []
    assert outside.exists() and os.path.exists(example)
    clock.now += 10 * 3600
    assert files.sweep() == []
    assert outside.exists() and os.path.exists(example)


def test_the_sweep_deletes_what_no_request_used_for_the_ttl_including_uploads_never_sent(tmp_path, clock):
    never_sent = upload(tmp_path, "never-sent.wav", at=clock.now - 7200)  # known only from Gradio's upload set
    old = upload(tmp_path, "old.wav", at=clock.now - 7200)
    fresh = upload(tmp_path, "fresh.wav", at=clock.now - 7200)
    other_app = upload(tmp_path, "other-app.wav", at=clock.now - 7200)  # in the folder, unknown to this demo
    uploads = {never_sent, old, fresh}
    files = files_in(tmp_path, clock, uploads=uploads)
    files.use("a", [old])
    clock.now += 1800
    files.use("a", [fresh])
    clock.now += 1900  # old: unused for 3700 s; fresh: 1900 s

    deleted = files.sweep()
    assert sorted(deleted) == sorted(map(os.path.realpath, [never_sent, old]))
    assert os.path.exists(fresh) and os.path.exists(other_app)
    assert uploads == {fresh}, "deleted files leave Gradio's record of uploads too"


def test_the_cap_deletes_the_least_recently_used_but_never_a_file_in_use(tmp_path, clock):
    paths = [upload(tmp_path, f"f{i}.wav", size=1000, at=clock.now - 5000) for i in range(5)]
    files = files_in(tmp_path, clock, ttl_s=0, max_bytes=2500)
    for i, path in enumerate(paths):  # f0 used longest ago ... f4 most recently
        clock.now += 100
        files.use(f"s{i}", [path])
    clock.now += RECENT_S / 2  # f4 was used within the last minute: not deletable
    deleted = files.sweep()
    assert sorted(deleted) == sorted(map(os.path.realpath, paths[:3]))
    assert all(os.path.exists(p) for p in paths[3:])

    files2 = files_in(tmp_path, clock, ttl_s=0, max_bytes=10)
    assert files2.sweep() == [], "files this object never saw are not its to delete"
    files2.use(None, paths[3:])
    assert files2.sweep() == [], "both used within the last minute"
    clock.now += RECENT_S
    assert sorted(files2.sweep()) == sorted(map(os.path.realpath, paths[3:]))


def test_a_ttl_of_zero_keeps_files_until_their_session_ends(tmp_path, clock):
    path = upload(tmp_path, "kept.wav", at=clock.now - 10)
    files = files_in(tmp_path, clock, ttl_s=0, uploads={path})
    files.use("a", [path])
    clock.now += 100 * 24 * 3600
    assert files.sweep() == []
    assert files.end_session("a") == [os.path.realpath(path)]


# ---------------------------------------------------------------------- through the served demo
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    config = DemoConfig(examples=False)
    demo = build_demo(ScriptedWorker(reply=lambda m, n: ["an ", "answer"]), config,
                      work_dir=tmp_path_factory.mktemp("temp-files-demo"))
    with serving(demo, config) as url:
        yield demo, url


def test_closing_an_api_client_deletes_its_uploads_and_the_others_stay(served, tmp_path):
    demo, url = served
    first = write_wav(tmp_path / "first.wav", tone(1.0, 300.0, seed=11))
    second = write_wav(tmp_path / "second.wav", tone(1.0, 500.0, seed=12))
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    try:
        a.predict({"text": "what is it?", "files": [handle_file(str(first))]}, [], **GREEDY, api_name="/chat")
        held_a = set(demo.temp_files.held())
        b.predict({"text": "and this?", "files": [handle_file(str(second))]}, [], **GREEDY, api_name="/chat")
        held_b = set(demo.temp_files.held()) - held_a
        assert held_a and held_b and all(os.path.isfile(p) for p in held_a | held_b)
        assert all(p.startswith(os.path.realpath(get_upload_folder())) for p in held_a | held_b)

        a.close()
        wait_for(lambda: not any(os.path.exists(p) for p in held_a), timeout=30)
        assert all(os.path.isfile(p) for p in held_b), "another session's files stay"
    finally:
        a.close()
        b.close()
    wait_for(lambda: not any(os.path.exists(p) for p in held_b), timeout=30)


def test_a_turn_naming_a_deleted_upload_is_answered_with_a_sentence_and_the_server_goes_on(served, tmp_path):
    demo, url = served
    audio = write_wav(tmp_path / "gone-soon.wav", tone(1.0, 700.0, seed=13))
    client = Client(url, verbose=False)
    try:
        client.predict({"text": "first", "files": [handle_file(str(audio))]}, [], **GREEDY, api_name="/chat")
        (path,) = [p for p in demo.temp_files.held() if p.endswith("gone-soon.wav")]
        os.remove(path)  # expired (or over the cap) while the tab stayed open
        # The history as the page sends it back (plain HTTP: gradio_client would upload the file again).
        history = [{"role": "user", "content": [component(path)]},
                   {"role": "user", "content": [{"type": "text", "text": "first"}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "an answer"}]}]
        events = gradio_call(url, "chat", [{"text": "follow-up", "files": []}, history, *GREEDY.values(), "", "", False])
        assert "event: error" in events and "gone-soon.wav is no longer on the server" in events, events
        assert client.predict({"text": "a new question", "files": []}, [], **GREEDY, api_name="/chat") == "an answer"
    finally:
        client.close()
