"""Faults: a closed tab or dropped client stops generation within a second and the next request starts;
a failure during one user's generation reaches that user only; a model that cannot load exits in one
line; a full queue says "busy, try again"."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.config import DemoConfig
from app.demo import build_demo
from app_fixtures import ROOT, serving
from model import GenerationParams
from test_browser import Chat, browser, new_chat, playwright  # noqa: F401 - fixtures

LONG_SETTINGS = dict(system_prompt="", max_new_tokens=2000, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1)
SHORT_SETTINGS = dict(LONG_SETTINGS, max_new_tokens=12)


def idle_within(worker, seconds: float) -> float:
    """Seconds until the worker is idle (raises AssertionError past ``seconds``)."""
    started = time.monotonic()
    while worker.busy:
        if time.monotonic() - started > seconds:
            raise AssertionError(f"the worker was still generating {seconds} s later")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture()
def own_worker(make_worker):
    return make_worker(max_queue=1)


@pytest.fixture()
def long_page(own_worker, tmp_path):
    config = DemoConfig(examples=False, temperature=0.0, max_new_tokens=2000, max_new_tokens_limit=2000)
    with serving(build_demo(own_worker, config, work_dir=tmp_path), config) as url:
        yield url


def test_closing_the_tab_mid_reply_stops_generation_within_a_second_and_the_next_request_starts(
        new_chat, long_page, own_worker, audio_dir):  # noqa: F811
    chat = new_chat(long_page)
    chat.attach(audio_dir / "tone_a.wav")
    chat.ask("Talk for a long time.")
    from app_fixtures import wait_for

    wait_for(lambda: (texts := chat.bot_texts()) and len(texts[-1]) > 30, timeout=30)
    queued = own_worker.stream([{"role": "user", "content": "next in line"}], GenerationParams(temperature=0, max_new_tokens=3))
    assert queued.position == 1
    chat.page.context.close()  # the person closes the tab
    closed = time.monotonic()
    assert queued.wait_started(5), "the queued request never started"
    started_after = time.monotonic() - closed
    assert started_after < 1.0, f"the next request started {started_after:.2f} s after the tab closed"
    assert len("".join(queued)) > 0


def test_cancelled_client_job_stops_generation_within_a_second(long_page, own_worker, audio_dir):
    client = Client(long_page, verbose=False)
    job = client.submit(message={"text": "Go on and on.", "files": [handle_file(str(audio_dir / "tone_b.wav"))]},
                        history=[], **LONG_SETTINGS, api_name="/chat")
    deadline = time.monotonic() + 30
    while not own_worker.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert own_worker.busy
    job.cancel()
    assert idle_within(own_worker, 1.0) < 1.0


def test_a_failure_in_one_users_generation_reaches_only_that_user(own_worker, tmp_path, audio_dir):
    config = DemoConfig(examples=False)
    real_generate = own_worker.model.generate
    gate = threading.Event()
    calls = {"n": 0}

    def generate_failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            gate.wait(10)  # let the second user queue up behind this one
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_generate(*args, **kwargs)

    own_worker.model.generate = generate_failing_once
    own_worker.max_queue = 8
    with serving(build_demo(own_worker, config, work_dir=tmp_path), config) as url:
        first, second = Client(url, verbose=False), Client(url, verbose=False)
        wav_a, wav_b = audio_dir / "tone_a.wav", audio_dir / "tone_b.wav"
        job_a = first.submit(message={"text": "A", "files": [handle_file(str(wav_a))]}, history=[], **SHORT_SETTINGS, api_name="/chat")
        deadline = time.monotonic() + 20
        while calls["n"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        job_b = second.submit(message={"text": "B", "files": [handle_file(str(wav_b))]}, history=[], **SHORT_SETTINGS, api_name="/chat")
        while own_worker.queue_length == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.set()
        with pytest.raises(AppError) as info:
            job_a.result()
        assert "out of memory" in str(info.value) and "Traceback" not in str(info.value)
        expected = own_worker.generate(
            [{"role": "user", "content": [{"type": "audio", "audio": str(wav_b)}, {"type": "text", "text": "B"}]}],
            GenerationParams(temperature=0, max_new_tokens=12, top_p=1.0, top_k=0, repetition_penalty=1.0))
        assert job_b.result() == expected
        assert not own_worker.busy


def test_full_queue_says_busy_try_again(own_worker, tmp_path, audio_dir):
    config = DemoConfig(examples=False)
    long = GenerationParams(temperature=0, max_new_tokens=2000, min_new_tokens=2000)
    running = own_worker.stream([{"role": "user", "content": "hold the model"}], long)
    assert running.wait_started(10)
    waiting = own_worker.stream([{"role": "user", "content": "wait in line"}], long)  # max_queue=1: now full
    try:
        with serving(build_demo(own_worker, config, work_dir=tmp_path), config) as url:
            with pytest.raises(AppError) as info:
                Client(url, verbose=False).predict(message={"text": "hello", "files": []}, history=[], **SHORT_SETTINGS,
                                                   api_name="/chat")
            assert "busy" in str(info.value) and "try again" in str(info.value)
    finally:
        waiting.close()
        running.close()


def test_a_checkpoint_that_fails_to_load_exits_with_one_line(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_checkpoint.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)  # weights damaged on disk
    result = subprocess.run([sys.executable, str(ROOT / "web_demo_audio.py"), "-c", str(broken), "--cpu-only"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert result.returncode == 1
    errors = [line for line in (result.stdout + result.stderr).splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Cannot load the checkpoint in" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
