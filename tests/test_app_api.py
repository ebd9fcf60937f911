"""The named streaming API ``/chat`` through gradio_client, against the real worker on the tiny checkpoint.

Greedy replies through the API must equal the worker's own reply to the same conversation, token for
token, and arrive in many steps.
"""

from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client, handle_file

from app.config import DemoConfig
from app.demo import build_demo
from app_fixtures import serving
from model import GenerationParams

GREEDY = dict(system_prompt="", max_new_tokens=48, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1)
PARAMS = GenerationParams(max_new_tokens=48, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def server(worker, tmp_path_factory):
    config = DemoConfig(examples=False, stream_interval_ms=0)  # every piece its own step (the default: below)
    demo = build_demo(worker, config, work_dir=tmp_path_factory.mktemp("api-demo"))
    with serving(demo, config) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def chat(client: Client, message: dict, history: list | None = None, **settings) -> list[str]:
    job = client.submit(message=message, history=history or [], **(GREEDY | settings), api_name="/chat")
    steps = list(job)
    final = job.result()  # raises the app's error, if any (iterating does not)
    assert steps and steps[-1] == final
    return steps


def test_api_page_lists_only_chat_with_the_documented_parameters(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/chat"]
    names = [p["parameter_name"] for p in api["named_endpoints"]["/chat"]["parameters"]]
    assert names == ["message", "history", "system_prompt", "max_new_tokens", "temperature", "top_p", "top_k",
                     "repetition_penalty", "seed", "task", "language", "timestamps"]
    assert api["unnamed_endpoints"] == {}


def test_one_audio_and_a_question_equals_the_worker_streamed_in_many_steps(client, worker, audio_dir):
    wav = audio_dir / "tone_a.wav"
    steps = chat(client, {"text": "What do you hear?", "files": [handle_file(str(wav))]})
    expected = worker.generate(
        [{"role": "user", "content": [{"type": "audio", "audio": str(wav)}, {"type": "text", "text": "What do you hear?"}]}],
        PARAMS,
    )
    assert steps[-1] == expected
    assert len(expected) > 0
    assert len(steps) >= 10, f"only {len(steps)} streamed steps"
    assert all(later.startswith(earlier) for earlier, later in zip(steps, steps[1:]))


def test_second_turn_with_history_equals_the_worker_on_two_turns(client, worker, audio_dir):
    wav = audio_dir / "tone_b.wav"
    first = chat(client, {"text": "Describe it.", "files": [handle_file(str(wav))]})[-1]
    history = [
        {"role": "user", "content": [{"type": "file", "file": handle_file(str(wav))}]},
        {"role": "user", "content": [{"type": "text", "text": "Describe it."}]},
        {"role": "assistant", "content": [{"type": "text", "text": first}]},
    ]
    second = chat(client, {"text": "And the pitch?", "files": []}, history)[-1]
    expected = worker.generate(
        [
            {"role": "user", "content": [{"type": "audio", "audio": str(wav)}, {"type": "text", "text": "Describe it."}]},
            {"role": "assistant", "content": first},
            {"role": "user", "content": [{"type": "text", "text": "And the pitch?"}]},
        ],
        PARAMS,
    )
    assert second == expected


def test_two_audios_in_one_message_and_a_system_prompt(client, worker, audio_dir):
    a, b = audio_dir / "tone_a.wav", audio_dir / "tone_c.wav"
    reply = chat(client, {"text": "Which is longer?", "files": [handle_file(str(a)), handle_file(str(b))]},
                 system_prompt="Answer briefly.")[-1]
    expected = worker.generate(
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "audio", "audio": str(a)}, {"type": "audio", "audio": str(b)},
                                         {"type": "text", "text": "Which is longer?"}]},
        ],
        PARAMS,
    )
    assert reply == expected


def test_greedy_is_deterministic_and_sampling_with_a_seed_repeats(client, audio_dir):
    message = {"text": "Again?", "files": [handle_file(str(audio_dir / "tone_c.wav"))]}
    assert chat(client, message)[-1] == chat(client, message)[-1]
    sampled = dict(temperature=1.0, top_p=0.9, top_k=50, seed=7, max_new_tokens=16)
    assert chat(client, message, **sampled)[-1] == chat(client, message, **sampled)[-1]


def test_bad_audio_is_refused_with_a_sentence_naming_the_file(client, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio" * 50)
    with pytest.raises(Exception, match="broken.wav") as raised:
        chat(client, {"text": "hi", "files": [handle_file(str(bad))]})
    assert "Traceback" not in str(raised.value)


def test_out_of_range_settings_are_refused_with_a_sentence(client):
    with pytest.raises(Exception, match=r"top_p must be a number in \(0, 1\], not 0.0"):
        chat(client, {"text": "hi", "files": []}, top_p=0.0)
    with pytest.raises(Exception, match="max_new_tokens must be at most 2048 on this server, not 5000"):
        chat(client, {"text": "hi", "files": []}, max_new_tokens=5000)
    with pytest.raises(Exception, match="message needs text or at least one audio"):
        chat(client, {"text": " ", "files": []})


def call_raw(server: str, history: list) -> str:
    """Call /chat over plain HTTP (no gradio_client upload step) and return the event stream's text."""
    data = [{"text": "hi", "files": []}, history, "", 4, 0.0, 1.0, 0, 1.0, -1, "", "", False]
    base = server.rstrip("/") + "/gradio_api/call/chat"
    event_id = httpx.post(base, json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{base}/{event_id}", timeout=60) as response:
        return "".join(response.iter_text())


@pytest.mark.parametrize(
    "item",
    [
        {"type": "file", "file": {"path": "{wav}", "meta": {"_type": "gradio.FileData"}}},
        {"type": "file", "file": {"path": "{wav}"}},
        {"type": "component", "component": "audio", "value": {"path": "{wav}"}, "constructor_args": {}, "props": {}},
    ],
    ids=["file-with-meta", "file-without-meta", "component"],
)
def test_a_path_not_uploaded_through_gradio_is_refused(server, worker, audio_dir, item):
    wav = str(audio_dir / "tone_a.wav")  # exists on the server, but was never uploaded
    item = {k: ({kk: (wav if vv == "{wav}" else vv) for kk, vv in v.items()} if isinstance(v, dict) else v)
            for k, v in item.items()}
    events = call_raw(server, [{"role": "user", "content": [item]}])
    assert "event: error" in events and "event: complete" not in events
    assert "Traceback" not in events


@pytest.fixture(scope="module")
def base_server(tiny_base_checkpoint, tmp_path_factory):
    from model import ModelWorker

    base = ModelWorker.from_pretrained(str(tiny_base_checkpoint), device="cpu", dtype="float32")
    config = DemoConfig(examples=False)
    demo = build_demo(base, config, work_dir=tmp_path_factory.mktemp("base-demo"))
    with serving(demo, config) as url:
        yield url, base
    base.shutdown()


def test_base_checkpoint_page_offers_tasks_instead_of_free_chat(base_server):
    url, _ = base_server
    config = httpx.get(url.rstrip("/") + "/config", timeout=10).json()
    by_id = {c["props"].get("elem_id"): c for c in config["components"] if c["props"].get("elem_id")}
    assert by_id["task-row"]["props"]["visible"] is True
    assert [value for _, value in by_id["task"]["props"]["choices"]] == ["transcribe", "translate", "caption", "free"]


def test_base_checkpoint_api_transcribes_or_follows_a_free_prompt(base_server, audio_dir):
    url, base = base_server
    client = Client(url, verbose=False)
    wav = str(audio_dir / "tone_a.wav")
    for text, prompt in [("", "Detect the language and recognize the speech:"), ("Is it music?", "Is it music?")]:
        reply = chat(client, {"text": text, "files": [handle_file(wav)]})[-1]
        expected = base.generate(
            [{"role": "user", "content": [{"type": "audio", "audio": wav}, {"type": "text", "text": prompt}]}], PARAMS)
        assert reply == expected


def test_base_checkpoint_page_speaks_of_one_audio_and_tasks(base_server, audio_dir):
    url, _ = base_server
    config = httpx.get(url.rstrip("/") + "/config", timeout=10).json()
    by_id = {c["props"].get("elem_id"): c for c in config["components"] if c["props"].get("elem_id")}
    # Each page (the chat, /transcribe) has a header with a subtitle: the chat's is the first.
    subtitle = json.dumps(next(c for c in config["components"] if c["props"].get("elem_id") == "subtitle")["props"]["value"])
    assert "subtitle_base" in subtitle and "follow up" not in subtitle  # the base wording, not the chat one
    placeholder = json.dumps(by_id["chatbot"]["props"]["placeholder"])
    assert "empty_base" in placeholder
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="works on one audio at a time: attach or record one"):
        chat(client, {"text": "What can you do?", "files": []})
    wav = handle_file(str(audio_dir / "tone_a.wav"))
    with pytest.raises(Exception, match="takes one audio per request; this one has 2: send them one at a time"):
        chat(client, {"text": "", "files": [wav, handle_file(str(audio_dir / "tone_b.wav"))]})


def test_base_examples_are_clips_alone(tmp_path):
    from app.examples import Example
    from app_fixtures import FakeInfo, ScriptedWorker
    from audio_samples import tone, write_wav

    clip = str(write_wav(tmp_path / "example.wav", tone(1.0, 440.0)))
    examples = [Example("What is said?", (clip,))]
    for family, text in (("base", ""), ("chat", "What is said?")):
        demo = build_demo(ScriptedWorker(info=FakeInfo(family=family)), DemoConfig(), examples=examples,
                          work_dir=tmp_path / family)
        chatbot = next(b for b in demo.blocks.values() if type(b).__name__ == "Chatbot")
        assert [e["text"] for e in chatbot.examples] == [text]  # shown in the empty chat
        assert [e["files"][0]["orig_name"] for e in chatbot.examples] == ["example.wav"]


def test_the_idle_queue_looks_for_work_every_10_ms_not_every_1_ms(tmp_path):
    from app.demo import QUEUE_IDLE_POLL_S
    from app_fixtures import ScriptedWorker

    demo = build_demo(ScriptedWorker(), DemoConfig(examples=False), work_dir=tmp_path)
    assert demo._queue.sleep_when_free == QUEUE_IDLE_POLL_S == 0.01


def test_updates_come_at_most_every_stream_interval_and_join_to_the_whole_reply(worker, audio_dir):
    import time

    from app.handlers import ChatHandlers

    interval = 0.1
    handlers = ChatHandlers(worker, DemoConfig(stream_interval_ms=int(interval * 1000)), clips_dir=audio_dir)
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(audio_dir / "tone_b.wav")},
                                             {"type": "text", "text": "Describe it."}]}]
    params = GenerationParams(temperature=0, max_new_tokens=96, min_new_tokens=96)
    started = time.monotonic()
    steps = [(time.monotonic(), text) for kind, text in handlers.reply_text(messages, params, "en") if kind == "text"]
    elapsed = time.monotonic() - started
    assert steps[-1][1] == worker.generate(messages, params)
    assert all(later.startswith(earlier) for (_, earlier), (_, later) in zip(steps, steps[1:]))
    gaps = [b - a for (a, _), (b, _) in zip(steps, steps[1:-1])]  # the last one may come early: the reply ended
    assert all(gap >= interval * 0.95 for gap in gaps), gaps
    assert 2 <= len(steps) <= elapsed / interval + 2, (len(steps), elapsed)


def test_history_takes_plain_string_contents_and_says_what_is_wrong_with_others(client):
    plain = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi! Ask me about audio."}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "Hi! Ask me about audio."}]}]
    message = {"text": "What can you do?", "files": []}
    assert chat(client, message, plain)[-1] == chat(client, message, parts)[-1]
    with pytest.raises(Exception, match=r"history\[1\] is not a message such as \[\{\"role\": \"user\""):
        chat(client, message, [plain[0], {"role": "bot", "content": "?"}])
    with pytest.raises(Exception, match="history must be a list of messages"):
        chat(client, message, {"role": "user", "content": "hello"})
