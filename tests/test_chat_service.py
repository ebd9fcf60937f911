"""One conversation service behind the page, ``/chat`` and ``/v1``: the same defaults, limits and admission.

The page is driven through its handlers with the values its sliders start at (what a person who
changes nothing sends); ``/chat`` through gradio_client and plain HTTP with no settings; ``/v1`` with
an OpenAI body without sampling fields. A recording proxy in front of the real worker shows the
settings each entry point made of that, and the greedy replies must be equal.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client

from app.config import DemoConfig
from app.demo import build_demo
from app.handlers import ChatHandlers
from app.openai_api import api_routes
from app.service import BusyError, ChatService, Failed, Finished, Queued, Text
from app_fixtures import ScriptedWorker, gradio_call, serving
from model.params import FALLBACK, PARAMS, GenerationParams, parse_params

QUESTION = "Say something about tones."

#: A generation_config unlike Qwen2-Audio-7B-Instruct's (0.7 / 0.5 / 20 / 1.1, sampling).
OWN_GENERATION = {"do_sample": False, "max_new_tokens": 9, "top_p": 0.8, "top_k": 7, "repetition_penalty": 1.3}


class FakeRequest:
    headers = {"accept-language": "en-US"}
    session_hash = "service-test"


class Recording:
    """A backend that records the settings of every request, then lets the real one answer it."""

    def __init__(self, backend):
        self.backend = backend
        self.params: list[GenerationParams] = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def stream(self, messages, params=None):
        self.params.append(params)
        return self.backend.stream(messages, params)


@pytest.fixture(scope="module")
def own_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with a generation_config of its own (greedy, 9 tokens, top-k 7...)."""
    folder = tmp_path_factory.mktemp("own-generation") / "tiny"
    shutil.copytree(tiny_checkpoint, folder)
    path = folder / "generation_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | OWN_GENERATION))
    return folder


@pytest.fixture()
def own_worker(make_worker, own_checkpoint):
    return make_worker(checkpoint=own_checkpoint)


def slider_values(demo: gr.Blocks) -> tuple:
    """What the page's settings start at, in the order the page sends them."""
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    return tuple(by_id[i].value for i in ("max-new-tokens", "temperature", "top-p", "top-k", "repetition-penalty", "seed"))


def page_reply(demo: gr.Blocks, service: ChatService, tmp_path: Path) -> str:
    handlers = ChatHandlers(service, service.config, clips_dir=tmp_path / "clips")
    history = [{"role": "user", "content": QUESTION}]
    steps = list(handlers.answer(history, "", *slider_values(demo), "", "", False, FakeRequest()))
    answers = [m["content"] for m in steps[-1][0] if m["role"] == "assistant" and not m.get("metadata")]
    return answers[-1]


def v1(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]} | body,
                      timeout=120)


def all_three(service: ChatService, tmp_path: Path) -> dict[str, str]:
    """The reply of each entry point to QUESTION with no settings of its own."""
    demo = build_demo(service, service.config, work_dir=tmp_path)
    with serving(demo, service.config, api_routes(service, service.config)) as url:
        replies = {"page": page_reply(demo, service, tmp_path)}
        client = Client(url, verbose=False)
        replies["/chat"] = client.predict(message={"text": QUESTION, "files": []}, api_name="/chat")
        raw = gradio_call(url, "chat", [{"text": QUESTION, "files": []}, [], "", None, None, None, None, None, None,
                                        "", "", False])
        replies["/chat raw"] = json.loads(raw.strip().rsplit("data: ", 1)[1])[0]
        response = v1(url)
        assert response.status_code == 200, response.text
        replies["/v1"] = response.json()["choices"][0]["message"]["content"]
    return replies


def test_every_entry_point_uses_the_checkpoint_s_generation_config(own_worker, tmp_path):
    recording = Recording(own_worker)
    service = ChatService(recording, DemoConfig(examples=False))
    expected = GenerationParams(max_new_tokens=9, temperature=0.0, top_p=0.8, top_k=7, repetition_penalty=1.3)
    assert service.defaults == expected
    replies = all_three(service, tmp_path)
    assert recording.params == [expected] * 4  # page, /chat (client), /chat (raw HTTP), /v1
    assert len(set(replies.values())) == 1, replies  # greedy: the same reply everywhere
    direct = own_worker.generate([{"role": "user", "content": QUESTION}], expected)
    assert replies["/v1"] == direct and direct


def test_the_operator_s_settings_win_over_the_checkpoint_s_everywhere(own_worker, tmp_path):
    recording = Recording(own_worker)
    config = DemoConfig(examples=False, max_new_tokens=5, repetition_penalty=1.0, top_k=0)
    service = ChatService(recording, config)
    expected = GenerationParams(max_new_tokens=5, temperature=0.0, top_p=0.8, top_k=0, repetition_penalty=1.0)
    assert service.defaults == expected
    replies = all_three(service, tmp_path)
    assert recording.params == [expected] * 4
    assert len(set(replies.values())) == 1, replies


def test_a_request_s_own_settings_win_over_the_defaults(own_worker):
    service = ChatService(own_worker, DemoConfig(examples=False, max_new_tokens=5))
    params = service.params({"max_new_tokens": 3, "top_k": "", "seed": -1})
    assert params == GenerationParams(max_new_tokens=3, temperature=0.0, top_p=0.8, top_k=7, repetition_penalty=1.3)


def test_a_checkpoint_that_sets_nothing_gets_the_fallback(tmp_path):
    assert ChatService(ScriptedWorker(), DemoConfig()).defaults == FALLBACK
    # A limit below the fallback's length bounds the default too.
    assert ChatService(ScriptedWorker(), DemoConfig(max_new_tokens_limit=100)).defaults.max_new_tokens == 100


def test_max_new_tokens_limit_is_refused_alike_on_all_three(worker, tmp_path, toasts):
    config = DemoConfig(examples=False, max_new_tokens_limit=16)
    service = ChatService(worker, config)
    demo = build_demo(service, config, work_dir=tmp_path)
    with serving(demo, config, api_routes(service, config)) as url:
        handlers = ChatHandlers(service, config, clips_dir=tmp_path / "clips")
        history = [{"role": "user", "content": QUESTION}]
        chat, textbox = list(handlers.answer(history, "", 17, 0, 1, 0, 1, -1, "", "", False, FakeRequest()))[-1]
        assert chat == [] and textbox.value["text"] == QUESTION  # the question goes back into the input
        assert toasts == ["max_new_tokens must be at most 16 on this server, not 17."]
        with pytest.raises(Exception, match=r"max_new_tokens must be at most 16 on this server, not 17\."):
            Client(url, verbose=False).predict(message={"text": QUESTION, "files": []}, max_new_tokens=17,
                                               api_name="/chat")
        response = v1(url, max_tokens=17)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "max_tokens must be at most 16 on this server, not 17."
        assert response.json()["error"]["param"] == "max_tokens"
        assert v1(url, max_tokens=16, temperature=0).status_code == 200  # at the limit: answered


def test_a_full_server_says_busy_on_the_page_and_chat_and_429_on_v1(tmp_path, toasts):
    config = DemoConfig(examples=False, max_queue_size=1)  # one answered + one waiting
    scripted = ScriptedWorker()
    service = ChatService(scripted, config)
    demo = build_demo(service, config, work_dir=tmp_path)
    with serving(demo, config, api_routes(service, config)) as url:
        held = [service.start([{"role": "user", "content": "hold"}], service.defaults) for _ in range(2)]
        assert service.admission.count == 2
        with pytest.raises(BusyError):
            service.start([{"role": "user", "content": "one more"}], service.defaults)
        handlers = ChatHandlers(service, config, clips_dir=tmp_path / "clips")
        history = [{"role": "user", "content": QUESTION}]
        chat, textbox = list(handlers.answer(history, "", *slider_values(demo), "", "", False, FakeRequest()))[-1]
        assert chat == [] and textbox.value["text"] == QUESTION
        busy = "The server is busy: 1 request(s) are already waiting for the model; please try again in a moment."
        assert toasts == [busy]
        with pytest.raises(Exception, match="The server is busy"):
            Client(url, verbose=False).predict(message={"text": QUESTION, "files": []}, api_name="/chat")
        response = v1(url)
        assert response.status_code == 429 and response.json()["error"]["message"] == busy
        assert response.json()["error"]["type"] == "rate_limit_error"
        for reply in held:
            reply.close()
        assert service.admission.count == 0
        # Room again: all three are answered.
        assert v1(url).status_code == 200
        assert Client(url, verbose=False).predict(message={"text": QUESTION, "files": []}, api_name="/chat")
        chat, _ = list(handlers.answer(history, "", *slider_values(demo), "", "", False, FakeRequest()))[-1]
        assert chat[-1]["role"] == "assistant"
    assert service.admission.count == 0  # every admitted request gave its place back


def test_the_reply_is_typed_events(worker):
    service = ChatService(worker, DemoConfig(stream_interval_ms=0))
    params = service.params({"max_new_tokens": 6, "temperature": 0, "min_new_tokens": 6})
    with service.start([{"role": "user", "content": QUESTION}], params) as reply:
        events = list(reply.events())
    texts = [e for e in events if isinstance(e, Text)]
    assert texts and "".join(t.delta for t in texts) == texts[-1].text
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "length" and finished.text == texts[-1].text
    assert finished.usage.completion_tokens == 6 and finished.usage.prompt_tokens > 0
    assert [e.key for e in events if type(e).__name__ == "Notice"] == ["length"]
    assert service.admission.count == 0


class WaitingStream:
    """A stream that waits one poll behind another request, then fails: the backend protocol, scripted."""

    prepared = type("Prepared", (), {"audios": [], "dropped_turns": 0})()
    finish_reason = None
    prompt_tokens = completion_tokens = 0

    def __init__(self):
        self.polls = 0
        self.closed = False

    @property
    def position(self):
        return 1 if self.polls < 2 else 0

    def wait_started(self, timeout=None):
        self.polls += 1
        return self.polls > 1

    def take_ready(self, until=None):
        return ""

    def __iter__(self):
        return self

    def __next__(self):
        self.finish_reason = "error"
        raise RuntimeError("the device fell over")

    def close(self):
        self.closed = True


def test_a_queued_request_reports_its_place_and_a_fault_is_a_failed_event(caplog):
    stream = WaitingStream()

    class Backend(ScriptedWorker):
        def stream(self, messages, params=None):
            return stream

    service = ChatService(Backend(), DemoConfig())
    with caplog.at_level(logging.ERROR):
        events = list(service.start([{"role": "user", "content": "a"}], service.defaults).events())
    assert events[0] == Queued(1)
    assert isinstance(events[-1], Failed) and events[-1].error.status == 500
    assert "the error was logged" in events[-1].error.user_message and "device" not in events[-1].error.user_message
    assert any(r.exc_info for r in caplog.records)  # the fault's traceback is in the log
    assert stream.closed and service.admission.count == 0


def test_one_table_of_ranges_serves_sliders_config_and_requests():
    from app.config import ConfigError

    for name, spec in PARAMS.items():
        if spec.maximum is not None:
            with pytest.raises(Exception, match=f"{name} must be"):
                parse_params({name: spec.maximum + 1})
            with pytest.raises(Exception, match=f"{name} must be"):
                GenerationParams(**{name: spec.maximum + 1})
    with pytest.raises(ConfigError, match=r"top_p must be a number in \(0, 1\]"):
        DemoConfig(top_p=0)
    assert PARAMS["top_p"].slider == (0.05, 1, 0.05)
    assert parse_params({"top_k": "20", "temperature": "0.5"}) == GenerationParams(top_k=20, temperature=0.5)
    with pytest.raises(Exception, match=r"top_k must be an integer of at least 0 \(0 disables it\), not 2.5"):
        parse_params({"top_k": 2.5})


def test_a_normal_request_logs_no_warning_and_a_refused_one_one_line(worker, tmp_path, caplog, capfd):
    config = DemoConfig(examples=False)
    service = ChatService(worker, config)
    demo = build_demo(service, config, work_dir=tmp_path)
    with serving(demo, config, api_routes(service, config)) as url:
        capfd.readouterr()
        with caplog.at_level(logging.INFO):
            client = Client(url, verbose=False)
            assert client.predict(message={"text": QUESTION, "files": []}, max_new_tokens=4, temperature=0,
                                  api_name="/chat") is not None
            assert v1(url, max_tokens=4, temperature=0, stream=True).status_code == 200
        output = capfd.readouterr()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        assert "Traceback" not in output.out + output.err and "Warning" not in output.out + output.err
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert v1(url, temperature=-1).status_code == 400
            with pytest.raises(Exception, match="temperature must be"):
                client.predict(message={"text": QUESTION, "files": []}, temperature=-1, api_name="/chat")
        output = capfd.readouterr()
        refusals = [r for r in caplog.records if "temperature must be" in r.getMessage()]
        assert len(refusals) == 2 and all(r.levelno == logging.INFO and not r.exc_info for r in refusals)
        assert "Traceback" not in output.out + output.err
        # A refusal the service itself makes (here: audio that is not audio) is one line on /v1 too.
        caplog.clear()
        junk = base64.b64encode(b"not audio at all" * 40).decode()
        with caplog.at_level(logging.INFO):
            response = v1(url, messages=[{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": junk, "format": "wav"}}]}])
        assert response.status_code == 400
        lines = [r for r in caplog.records if "is not an audio file" in r.getMessage()]
        assert len(lines) == 1 and not lines[0].exc_info, [r.getMessage() for r in lines]


def test_a_remote_page_starts_at_the_server_s_defaults(own_worker, tmp_path):
    from app.remote_backend import RemoteBackend

    config = DemoConfig(examples=False, max_new_tokens=6)
    service = ChatService(own_worker, config)
    with serving(build_demo(service, config, work_dir=tmp_path), config, api_routes(service, config)) as url:
        listed = httpx.get(f"{url}v1/models").json()["data"][0]
        assert listed["generation_defaults"] == service.defaults.as_dict() and listed["max_new_tokens_limit"] == 2048
        remote = RemoteBackend(url)
        try:
            assert remote.info.generation_defaults == service.defaults
            assert ChatService(remote, DemoConfig()).defaults == service.defaults
        finally:
            remote.shutdown()
