"""The reference cases of the original Qwen-Audio code through ``/chat`` (gradio_client) and ``/v1`` (openai).

The fixture checkpoints are served by the demo exactly as any checkpoint is; the greedy replies that
come back over HTTP must be the reference replies (the original's greedy ids, decoded with timestamps
kept), for the chat model and, through the ``task`` parameter, for the base model.
"""

from __future__ import annotations

import base64
from pathlib import Path

import openai
import pytest
from gradio_client import Client, handle_file

import qwen_audio_fixture as fx
from app.config import DemoConfig
from app.demo import build_demo
from app.openai_api import OpenAIApi
from app_fixtures import serving
from model import CacheSizes, ModelWorker

CHAT_CASES = [c["name"] for c in fx.cases("chat") if c["checkpoint"] == "tiny-chat"]
BASE_CASES = [c["name"] for c in fx.cases("base")]
SETTINGS = dict(system_prompt="", max_new_tokens=24, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1)


@pytest.fixture(scope="module", params=["tiny-chat", "tiny-base"])
def served(request, tmp_path_factory):
    folder = fx.checkpoint(request.param, tmp_path_factory.mktemp("ckpt"))
    worker = ModelWorker.from_pretrained(str(folder), device="cpu", dtype="float32",
                                         cache=CacheSizes(audio_mb=0, features_mb=0, prefix_tokens=0))
    config = DemoConfig(examples=False)
    demo = build_demo(worker, config, work_dir=tmp_path_factory.mktemp("demo"))
    with serving(demo, config, OpenAIApi(worker, model_id=request.param).routes()) as url:
        yield request.param, url.rstrip("/")
    worker.shutdown()


def _reference_reply(case: dict) -> str:
    return fx.expected(case)["reply_text"]["keep_timestamps_only"]


def _api_content(items):
    if isinstance(items, str):
        return items
    parts = []
    for item in items:
        if item["type"] == "audio":
            path = Path(item["audio"])
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append({"type": "input_audio", "input_audio": {"data": data, "format": path.suffix[1:]}})
        elif item["type"] == "text":
            parts.append({"type": "text", "text": item["text"]})
    return parts


def _v1_request(case: dict) -> tuple[list[dict], dict]:
    messages = fx.messages_of(case)
    extra = {}
    if case["kind"] == "base":
        *items, task = messages[-1]["content"]
        messages = [{"role": "user", "content": items}]
        extra = {"task": {k: v for k, v in task.items() if k != "type"}}
    return [{"role": m["role"], "content": _api_content(m["content"])} for m in messages], extra


def _cases_for(checkpoint: str) -> list[str]:
    return CHAT_CASES if checkpoint == "tiny-chat" else BASE_CASES


def test_v1_replies_are_the_reference_replies_streamed_and_not(served):
    checkpoint, url = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    for name in _cases_for(checkpoint):
        case = fx.case(name)
        messages, extra = _v1_request(case)
        whole = client.chat.completions.create(model=checkpoint, messages=messages, temperature=0, max_tokens=24,
                                               extra_body=extra)
        assert whole.choices[0].message.content == _reference_reply(case), name
        chunks = client.chat.completions.create(model=checkpoint, messages=messages, temperature=0, max_tokens=24,
                                                stream=True, extra_body=extra)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == _reference_reply(case), name


def _display_history(messages: list[dict]) -> list[dict]:
    """Earlier turns as /chat takes them: Gradio's messages format, audio uploaded with handle_file."""
    out = []
    for message in messages:
        if message["role"] == "system":
            continue
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        for item in content:
            if item["type"] == "audio":
                out.append({"role": "user", "content": [{"type": "file", "file": handle_file(item["audio"])}]})
            else:
                out.append({"role": message["role"], "content": [{"type": "text", "text": item["text"]}]})
    return out


def test_chat_replies_are_the_reference_replies(served):
    checkpoint, url = served
    client = Client(url, verbose=False)
    for name in _cases_for(checkpoint):
        case = fx.case(name)
        messages = fx.messages_of(case)
        last = messages[-1]["content"]
        items = [{"type": "text", "text": last}] if isinstance(last, str) else last
        message = {"text": "".join(i["text"] for i in items if i["type"] == "text"),
                   "files": [handle_file(i["audio"]) for i in items if i["type"] == "audio"]}
        task = {}
        if case["kind"] == "base":
            spec = next(i for i in items if i["type"] == "task")
            task = dict(task=spec["task"], language=spec["language"], timestamps=spec["timestamps"])
        job = client.submit(message=message, history=_display_history(messages[:-1]), **SETTINGS, **task,
                            api_name="/chat")
        assert job.result() == _reference_reply(case), name


def test_a_task_is_refused_with_a_sentence_where_it_does_not_fit(served):
    """A chat checkpoint takes no task; a base one takes only the tasks it knows."""
    checkpoint, url = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    task, sentence = ({"task": "transcribe"}, "Task items are for base checkpoints") if checkpoint == "tiny-chat" \
        else ({"task": "sing"}, "Unknown task 'sing'")
    with pytest.raises(openai.BadRequestError, match=sentence):
        client.chat.completions.create(model=checkpoint, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"task": task})


def test_the_remote_backend_gives_the_reference_replies(served):
    """--backend openai against a demo serving the checkpoint: decoded here as the family decodes, the
    task sent along for the base model; the replies are the original's."""
    from app.remote_backend import RemoteBackend
    from model import GenerationParams

    checkpoint, url = served
    remote = RemoteBackend(url)
    try:
        assert remote.info.model_family == "Qwen-Audio"
        assert remote.info.family == ("chat" if checkpoint == "tiny-chat" else "base")
        for name in _cases_for(checkpoint):
            case = fx.case(name)
            with remote.stream(fx.messages_of(case), GenerationParams(temperature=0, max_new_tokens=24)) as reply:
                assert "".join(reply) == _reference_reply(case), name
    finally:
        remote.shutdown()


def test_the_remote_backend_sends_the_samples_the_server_s_own_decoding_gives(served, tmp_path):
    """A 44.1 kHz stereo mp3: what the remote side sends decodes, on the server, to exactly the samples the
    server gets from the file itself (a float decode would differ by a step of 16-bit rounding)."""
    import numpy as np

    from app.remote_backend import RemotePrepared, RemoteBackend
    from model.audio import decode_audio

    _, url = served
    remote = RemoteBackend(url)
    try:
        mp3 = fx.audio("audio/chirp_stereo.mp3")
        (part,) = remote._content([{"type": "audio", "audio": str(mp3)}], RemotePrepared())
        sent = tmp_path / "sent.wav"
        sent.write_bytes(base64.b64decode(part["input_audio"]["data"]))
        direct = decode_audio(mp3, pcm="s16")
        assert np.array_equal(decode_audio(sent, pcm="s16"), direct)
        assert not np.array_equal(decode_audio(mp3), direct)  # the other decoding is not the same
    finally:
        remote.shutdown()
