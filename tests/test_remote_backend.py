"""The UI driving a second instance of the demo over real HTTP (loopback) gives the local replies."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client, handle_file

from app.backend import ChatBackend
from app.config import DemoConfig
from app.demo import build_demo
from app.remote_backend import RemoteBackend, RemoteBackendError, float_wav_bytes
from app_fixtures import free_port, serving, wait_for
from audio_samples import ffmpeg_convert
from model import AudioDecodeError, GenerationParams
from model.audio import decode_audio
from test_openai_api import serve_with_api, worker_messages

GREEDY = GenerationParams(temperature=0, max_new_tokens=32)
CHAT_GREEDY = dict(system_prompt="", max_new_tokens=32, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.1, seed=-1)


@pytest.fixture(scope="module")
def upstream(worker, tmp_path_factory):
    """The model server: the demo with the tiny checkpoint, serving /v1."""
    with serve_with_api(worker, tmp_path_factory.mktemp("upstream")) as url:
        yield url


@pytest.fixture(scope="module")
def remote(upstream):
    backend = RemoteBackend(upstream)
    yield backend
    backend.shutdown()


def test_remote_backend_satisfies_the_ui_interface(remote):
    assert isinstance(remote, ChatBackend)
    assert remote.info.checkpoint == "qwen2-audio-tiny" and remote.info.random_weights
    assert remote.family == "chat" and "via http://127.0.0.1" in remote.info.label


@pytest.mark.parametrize("name", ["tone_a.wav", "webm"])
def test_remote_replies_equal_local_ones(remote, worker, audio_dir, tmp_path, name):
    path = audio_dir / name if name.endswith(".wav") else ffmpeg_convert(audio_dir / "tone_b.wav", tmp_path / "rec.webm", "-c:a", "libopus")
    turns = [("user", [path, "What is it?"]), ("assistant", "Noise."), ("user", [audio_dir / "tone_c.wav", "And now?"])]
    expected = worker.generate(worker_messages(*turns), GREEDY)
    reply = remote.stream(worker_messages(*turns), GREEDY)
    pieces = list(reply)
    assert "".join(pieces) == expected and len(pieces) > 1
    assert [a.source for a in reply.prepared.audios] == [path.name, "tone_c.wav"]
    assert reply.completion_tokens > 0 and reply.finish_reason in ("stop", "length")


def test_float_wav_keeps_samples_exactly(audio_dir, tmp_path):
    samples = decode_audio(ffmpeg_convert(audio_dir / "tone_a.wav", tmp_path / "a.ogg"))
    (tmp_path / "f.wav").write_bytes(float_wav_bytes(samples))
    assert (decode_audio(tmp_path / "f.wav") == samples).all()


def test_bad_audio_is_refused_locally_by_name(remote, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_text("not audio")
    with pytest.raises(AudioDecodeError) as info:
        remote.stream([{"role": "user", "content": [{"type": "audio", "audio": str(bad)}]}])
    assert info.value.user_message.startswith("broken.mp3: ")


def test_server_errors_come_back_as_sentences(remote):
    with pytest.raises(RemoteBackendError) as info:
        remote.stream([{"role": "user", "content": "x" * 60000}], GREEDY)
    assert info.value.status == 400 and "context" in info.value.user_message


def test_unreachable_server_gives_one_sentence():
    with pytest.raises(RemoteBackendError, match="Cannot reach the model server at http://127.0.0.1:"):
        RemoteBackend(f"http://127.0.0.1:{free_port()}")


def test_close_ends_the_remote_stream_and_frees_the_upstream_worker(remote, worker, audio_dir):
    reply = remote.stream(worker_messages(("user", [audio_dir / "tone_a.wav", "Talk."])),
                          GenerationParams(temperature=0, max_new_tokens=2000, min_new_tokens=2000))
    next(reply)
    assert worker.busy
    reply.close()
    closed = time.monotonic()
    while worker.busy and time.monotonic() - closed < 5:
        time.sleep(0.02)
    assert not worker.busy and time.monotonic() - closed < 1.0
    assert list(reply) == []


def test_chat_api_of_a_remote_demo_equals_local_mode(remote, worker, audio_dir, tmp_path):
    config = DemoConfig(examples=False)
    demo = build_demo(remote, config, work_dir=tmp_path)
    with serving(demo, config) as url:
        client = Client(url, verbose=False)
        wav = audio_dir / "tone_b.wav"
        job = client.submit(message={"text": "Describe it.", "files": [handle_file(str(wav))]}, history=[],
                            **CHAT_GREEDY, api_name="/chat")
        steps = list(job)
        expected = worker.generate(
            [{"role": "user", "content": [{"type": "audio", "audio": str(wav)}, {"type": "text", "text": "Describe it."}]}],
            GenerationParams(temperature=0, max_new_tokens=32, top_p=1.0, top_k=0, repetition_penalty=1.1),
        )
        assert job.result() == expected and len(steps) > 2


# ----------------------------------------------------------------------------- in the browser
from test_browser import Chat, browser, new_chat, playwright  # noqa: E402,F401 - fixtures used below


@pytest.fixture(scope="module")
def browser_pair(remote, worker, tmp_path_factory):
    """The same page twice: on the local worker, and on the remote backend that drives it over HTTP."""
    config = DemoConfig(examples=False, temperature=0.0, max_new_tokens=24)
    local = build_demo(worker, config, work_dir=tmp_path_factory.mktemp("local-page"))
    far = build_demo(remote, config, work_dir=tmp_path_factory.mktemp("remote-page"))
    with serving(local, config) as local_url, serving(far, config) as remote_url:
        yield local_url, remote_url


def test_remote_mode_in_the_browser_answers_like_local_mode(new_chat, browser_pair, audio_dir):  # noqa: F811
    local_url, remote_url = browser_pair
    answers = []
    for url in (local_url, remote_url):
        chat = new_chat(url)
        chat.attach(audio_dir / "tone_a.wav")
        chat.ask("What is it?")
        answers.append(chat.answer(1, timeout=60))
        chat.ask("And then?", enter=True)
        answers.append(chat.answer(2, timeout=60))
        if url == remote_url:
            assert "via http://127.0.0.1" in chat.page.inner_text("#model-badge")
            chat.shot("10-remote-backend")
    assert all(answers) and answers[:2] == answers[2:], "the remote page answered differently from the local one"


def test_stop_in_the_browser_ends_the_remote_stream(new_chat, remote, worker, audio_dir, tmp_path):  # noqa: F811
    config = DemoConfig(examples=False, temperature=0.0, max_new_tokens=2000, max_new_tokens_limit=2000)
    with serving(build_demo(remote, config, work_dir=tmp_path), config) as url:
        chat = new_chat(url)
        chat.attach(audio_dir / "tone_b.wav")
        chat.ask("Tell me everything, at length.")
        wait_for(lambda: (texts := chat.bot_texts()) and len(texts[-1]) > 40, timeout=30)
        assert worker.busy, "the upstream worker should still be generating"
        chat.page.click("#stop")
        stopped = time.monotonic()
        while worker.busy and time.monotonic() - stopped < 5:
            time.sleep(0.02)
        assert not worker.busy and time.monotonic() - stopped < 2.0
        chat.wait_idle(timeout=10)


def test_command_line_backend_openai_serves_the_same_replies(upstream, worker, audio_dir, tmp_path):
    """``web_demo_audio.py --backend openai --api-base URL`` against a second demo over loopback."""
    import httpx

    from app_fixtures import demo_process

    port = free_port()
    args = ["--backend", "openai", "--api-base", f"{upstream}/v1", "--server-port", str(port), "--no-examples",
            "--api-key", "k3y"]
    log = tmp_path / "remote-demo.log"
    with demo_process(args, port, log):
        wav = audio_dir / "tone_c.wav"
        reply = Client(f"http://127.0.0.1:{port}", verbose=False).predict(
            message={"text": "What is it?", "files": [handle_file(str(wav))]}, history=[], **CHAT_GREEDY, api_name="/chat")
        expected = worker.generate(
            [{"role": "user", "content": [{"type": "audio", "audio": str(wav)}, {"type": "text", "text": "What is it?"}]}],
            GenerationParams(temperature=0, max_new_tokens=32, top_p=1.0, top_k=0, repetition_penalty=1.1),
        )
        assert reply == expected
        # The front demo serves /v1 too, behind its own key, relaying to the upstream server.
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer k3y"}).json()
        assert models["data"][0]["id"] == "qwen2-audio-tiny"
        assert "via http://127.0.0.1" in log.read_text()
