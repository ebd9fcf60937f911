"""The OpenAI-compatible API, driven by the official ``openai`` client against the demo on the tiny checkpoint.

Greedy replies (streamed and not) must equal the model worker's own reply to the same conversation.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager

import httpx
import openai
import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.openai_api import OpenAIApi, StopFilter
from app.openai_protocol import ApiLimits
from app_fixtures import serving
from model import GenerationParams

GREEDY = GenerationParams(temperature=0, max_new_tokens=32)


@contextmanager
def serve_with_api(backend, tmp_path, **api_options):
    config = DemoConfig(examples=False)
    demo = build_demo(backend, config, work_dir=tmp_path)
    api = OpenAIApi(backend, model_id="qwen2-audio-tiny", **api_options)
    with serving(demo, config, api.routes()) as url:
        yield url.rstrip("/")


@pytest.fixture(scope="module")
def server(worker, tmp_path_factory):
    with serve_with_api(worker, tmp_path_factory.mktemp("openai"), limits=ApiLimits(max_audio_bytes=5 * 1024 * 1024)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def audio_part(path, style="input_audio"):
    if style == "input_audio":
        return {"type": "input_audio", "input_audio": {"data": b64(path), "format": "wav"}}
    return {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{b64(path)}"}}


def worker_messages(*turns):
    """Our message format from (role, [path | str, ...]) turns."""
    out = []
    for role, items in turns:
        if isinstance(items, str):
            out.append({"role": role, "content": items})
        else:
            out.append({"role": role, "content": [
                {"type": "text", "text": x} if isinstance(x, str) else {"type": "audio", "audio": str(x)} for x in items
            ]})
    return out


def api_messages(*turns, style="input_audio"):
    out = []
    for role, items in turns:
        if isinstance(items, str):
            out.append({"role": role, "content": items})
        else:
            out.append({"role": role, "content": [
                {"type": "text", "text": x} if isinstance(x, str) else audio_part(x, style) for x in items
            ]})
    return out


def both_ways(client, turns, style="input_audio"):
    messages = api_messages(*turns, style=style)
    full = client.chat.completions.create(model="qwen2-audio-tiny", messages=messages, temperature=0, max_tokens=32)
    chunks = list(client.chat.completions.create(model="qwen2-audio-tiny", messages=messages, temperature=0, max_tokens=32,
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return full, streamed, chunks


@pytest.mark.parametrize("case", ["one audio", "two audios", "multi-turn"])
def test_greedy_replies_equal_the_worker(client, worker, audio_dir, case):
    a, b, c = audio_dir / "tone_a.wav", audio_dir / "tone_b.wav", audio_dir / "tone_c.wav"
    turns = {
        "one audio": [("user", [a, "What is this sound?"])],
        "two audios": [("user", [a, b, "Which one is higher?"])],
        "multi-turn": [("system", "You are terse."), ("user", [a, "Describe it."]), ("assistant", "A tone."),
                       ("user", [c, "And this one?"])],
    }[case]
    expected = worker.generate(worker_messages(*turns), GREEDY)
    full, streamed, chunks = both_ways(client, turns, style="audio_url" if case == "two audios" else "input_audio")
    assert full.choices[0].message.content == expected
    assert streamed == expected
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 1
    assert full.usage.completion_tokens > 0 and full.usage.prompt_tokens > 75
    assert chunks[-1].usage.total_tokens == full.usage.total_tokens
    assert full.choices[0].finish_reason in ("stop", "length")


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["qwen2-audio-tiny"]


def test_sse_ends_with_done(server, audio_dir):
    body = {"model": "qwen2-audio-tiny", "stream": True, "max_tokens": 5, "temperature": 0,
            "messages": api_messages(("user", [audio_dir / "tone_a.wav", "hi"]))}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_corrupt_audio_gets_a_400_with_a_message(client):
    bad = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"not audio at all" * 100).decode(), "format": "wav"}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2-audio-tiny", messages=[{"role": "user", "content": [bad, {"type": "text", "text": "?"}]}])
    assert info.value.status_code == 400
    assert "message1-audio1.wav" in info.value.message and "not an audio file" in info.value.message


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "/etc/passwd", "../../etc/passwd", "http://127.0.0.1:22/x.wav", "http://169.254.169.254/latest/meta-data",
    "http://localhost/a.wav", "http://10.0.0.1/a.wav",
])
def test_audio_url_to_local_paths_or_internal_addresses_is_refused(client, url):
    part = {"type": "audio_url", "audio_url": {"url": url}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qwen2-audio-tiny", messages=[{"role": "user", "content": [part]}])
    assert "audio" in info.value.message.lower()


def test_allowlisted_host_still_may_not_be_internal(worker, tmp_path):
    with serve_with_api(worker, tmp_path, limits=ApiLimits(url_allowlist=("localhost",))) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model="qwen2-audio-tiny", messages=[{"role": "user", "content": [
                {"type": "audio_url", "audio_url": {"url": url.replace("127.0.0.1", "localhost") + "/x.wav"}}]}])
        assert "internal addresses" in info.value.message


@pytest.mark.parametrize("body,status,fragment", [
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, "role"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "temperature"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "unsupported type"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "@@@", "format": "wav"}}]}]}, 400, "base64"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "A" * 8_000_000, "format": "wav"}}]}]}, 413, "larger"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "The model 'gpt-4o' does not exist"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]},
     400, "'tools' is not supported"),
    ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400, "'logprobs' is not supported"),
    ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}, 400,
     "'response_format' is not supported"),
    ({"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 0.5}, 400, "'frequency_penalty' is not"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature must be a number"),
])
def test_bad_requests_get_openai_style_errors(server, body, status, fragment):
    response = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"]


def test_unknown_models_and_unsupported_fields_say_which(server):
    model = httpx.post(f"{server}/v1/chat/completions", json={"model": "gpt-4o", "messages": [
        {"role": "user", "content": "hi"}]}, timeout=60).json()["error"]
    assert (model["code"], model["param"]) == ("model_not_found", "model")
    tools = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                             "tool_choice": "auto"}, timeout=60).json()["error"]
    assert tools["param"] == "tool_choice"
    # Harmless values of those fields (the defaults) are accepted, as is a request without a model.
    fine = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0, "tools": [],
            "logprobs": False, "frequency_penalty": 0, "presence_penalty": 0.0, "response_format": {"type": "text"}}
    assert httpx.post(f"{server}/v1/chat/completions", json=fine, timeout=60).status_code == 200


def test_mislabelled_audio_is_decoded_by_its_content(client, worker, audio_dir, tmp_path):
    from audio_samples import ffmpeg_convert

    mp3 = ffmpeg_convert(audio_dir / "tone_a.wav", tmp_path / "tone.mp3")
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(mp3.read_bytes()).decode(), "format": "wav"}}
    labelled_wav = client.chat.completions.create(model="qwen2-audio-tiny", temperature=0, max_tokens=8, messages=[
        {"role": "user", "content": [part, {"type": "text", "text": "What is it?"}]}])
    expected = worker.generate(worker_messages(("user", [mp3, "What is it?"])), GenerationParams(temperature=0, max_new_tokens=8))
    assert labelled_wav.choices[0].message.content == expected


def test_stop_sequences_and_max_tokens_are_honoured(client, worker, audio_dir):
    turns = [("user", [audio_dir / "tone_b.wav", "Go on."])]
    expected = worker.generate(worker_messages(*turns), GenerationParams(temperature=0, max_new_tokens=40))
    stop = expected[5:8]
    assert stop and stop in expected
    cut = expected[: expected.index(stop)]
    full = client.chat.completions.create(model="qwen2-audio-tiny", messages=api_messages(*turns), temperature=0, max_tokens=40, stop=[stop])
    assert full.choices[0].message.content == cut and full.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="qwen2-audio-tiny", messages=api_messages(*turns), temperature=0, max_tokens=40, stop=stop, stream=True) if c.choices)
    assert streamed == cut
    short = client.chat.completions.create(model="qwen2-audio-tiny", messages=api_messages(*turns), temperature=0, max_completion_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_seed_makes_sampling_reproducible(client, audio_dir):
    kw = dict(model="qwen2-audio-tiny", messages=api_messages(("user", [audio_dir / "tone_a.wav", "hi"])), temperature=1.0, top_p=0.9, max_tokens=16)
    assert client.chat.completions.create(seed=7, **kw).choices[0].message.content == \
        client.chat.completions.create(seed=7, **kw).choices[0].message.content


def test_api_key_protects_the_api(worker, tmp_path, audio_dir):
    with serve_with_api(worker, tmp_path, api_key="s3cret") as url:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        assert httpx.get(f"{url}/v1/models").status_code == 401
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert good.models.list().data[0].id == "qwen2-audio-tiny"


def test_full_queue_gets_429(tmp_path, audio_dir):
    from app_fixtures import ScriptedWorker
    from model import WorkerBusyError

    class Busy(ScriptedWorker):
        def stream(self, messages, params=None):
            raise WorkerBusyError("The model is busy with other requests; please try again in a moment.")

    with serve_with_api(Busy(), tmp_path) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model="qwen2-audio-tiny", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 429 and "try again" in info.value.message


def test_not_ready_gets_503(worker, tmp_path):
    with serve_with_api(worker, tmp_path, ready=lambda: False) as url:
        response = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 503 and "loading" in response.json()["error"]["message"]


def test_dropping_a_stream_cancels_generation(server, worker, audio_dir):
    import time

    body = {"model": "qwen2-audio-tiny", "stream": True, "temperature": 0, "max_tokens": 2000, "min_tokens": 2000,
            "messages": api_messages(("user", [audio_dir / "tone_a.wav", "Talk."]))}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        for n, _ in enumerate(response.iter_lines()):
            if n > 6:
                break
        assert worker.busy
    dropped = time.monotonic()
    while worker.busy and time.monotonic() - dropped < 5:
        time.sleep(0.02)
    # 2000 tokens take several seconds on this CPU; the worker is free within a second of the drop.
    assert not worker.busy and time.monotonic() - dropped < 1.0


@pytest.mark.parametrize("stops,pieces,expected,hit", [
    (["END"], ["ab", "cE", "N", "Dxyz"], "abc", True),
    (["END"], ["ab", "cEN", "d"], "abcENd", False),
    ([], ["a", "b"], "ab", False),
    (["\n\n", "Q:"], ["one\n", "\ntwo"], "one", True),
])
def test_stop_filter(stops, pieces, expected, hit):
    f = StopFilter(stops)
    out = "".join(f.feed(p) for p in pieces if not f.hit)
    out += "" if f.hit else f.flush()
    assert out == expected and f.hit is hit
