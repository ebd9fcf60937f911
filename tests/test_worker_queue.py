"""One generation at a time, in FIFO order; closing a stream cancels it and frees the worker at once (both families)."""

from __future__ import annotations

import threading
import time

import pytest

from model import GenerationParams, ModelWorker

LONG = GenerationParams(temperature=0, max_new_tokens=600, min_new_tokens=600)


def ask(path, text="What is it?"):
    return [{"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": text}]}]


def test_closing_a_stream_frees_the_worker_before_the_cancelled_reply_would_have_finished(any_worker, audio_dir):
    worker = any_worker
    messages = ask(audio_dir / "tone_a.wav")
    started = time.perf_counter()
    full = worker.stream(messages, LONG)
    assert len("".join(full)) > 0 and full.completion_tokens == 600
    full_duration = time.perf_counter() - started

    started = time.perf_counter()
    cancelled = worker.stream(messages, LONG)
    for _ in range(5):
        next(cancelled)
    cancelled.close()
    follow_up = worker.stream(ask(audio_dir / "tone_b.wav"), GenerationParams(temperature=0, max_new_tokens=4))
    first = next(follow_up)
    first_piece_at = time.perf_counter() - started
    assert first
    assert first_piece_at < full_duration, (first_piece_at, full_duration)
    list(follow_up)
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.completion_tokens < 600
    assert not worker.busy


def test_closing_a_waiting_stream_removes_it_from_the_queue(any_worker, audio_dir):
    worker = any_worker
    running = worker.stream(ask(audio_dir / "tone_a.wav"), LONG)
    next(running)
    waiting = worker.stream(ask(audio_dir / "tone_b.wav"), LONG)
    assert waiting.position == 1
    waiting.close()
    assert waiting.position is None
    assert list(waiting) == []
    assert waiting.finish_reason == "cancelled"
    running.close()
    assert worker.generate(ask(audio_dir / "tone_c.wav"), GenerationParams(temperature=0, max_new_tokens=3)) is not None


def test_requests_are_served_first_in_first_out_with_readable_positions(any_worker, audio_dir):
    worker = any_worker
    first = worker.stream(ask(audio_dir / "tone_a.wav"), LONG)
    assert first.wait_started(10)
    second = worker.stream(ask(audio_dir / "tone_b.wav"), GenerationParams(temperature=0, max_new_tokens=300, min_new_tokens=300))
    third = worker.stream(ask(audio_dir / "tone_c.wav"), GenerationParams(temperature=0, max_new_tokens=5))
    assert (first.position, second.position, third.position) == (0, 1, 2)
    assert worker.queue_length == 2
    assert not second.wait_started(0.2) and not third.wait_started(0)
    list(first)
    assert second.wait_started(10)
    assert first.position is None and second.position == 0 and third.position == 1
    assert not third.wait_started(0)
    list(second)
    assert third.wait_started(10)
    assert len("".join(third)) > 0 and third.position is None


def test_eight_threads_streaming_at_once_each_get_their_own_reply(any_worker, audio_dir):
    worker = any_worker
    params = GenerationParams(temperature=0, max_new_tokens=24)
    conversations = [ask(audio_dir / f"client_{i}.wav", f"Clip {i}: what is it?") for i in range(8)]
    expected = [worker.generate(c, params) for c in conversations]
    assert len(set(expected)) > 1
    results: list[str | None] = [None] * 8
    barrier = threading.Barrier(8)

    def client(i):
        barrier.wait()
        results[i] = "".join(worker.stream(conversations[i], params))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == expected


def test_from_pretrained_is_a_thread_safe_singleton(tiny_checkpoint):
    workers = []
    threads = [
        threading.Thread(target=lambda: workers.append(ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(workers) == 4 and all(w is workers[0] for w in workers)
    assert ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32") is workers[0]


@pytest.mark.parametrize("family", ["qwen2-audio", "qwen-audio-chat"])
def test_full_queue_is_refused_with_a_busy_error(make_worker, audio_dir, family, request):
    from model import WorkerBusyError

    checkpoint = None if family == "qwen2-audio" else request.getfixturevalue("tiny_qwen_audio_checkpoint")
    small = make_worker(max_queue=1, checkpoint=checkpoint)
    try:
        running = small.stream(ask(audio_dir / "tone_a.wav"), LONG)
        assert running.wait_started(10)
        waiting = small.stream(ask(audio_dir / "tone_b.wav"), LONG)
        with pytest.raises(WorkerBusyError) as info:
            small.stream(ask(audio_dir / "tone_c.wav"), LONG)
        assert info.value.status == 429 and "try again" in info.value.user_message
        waiting.close()
        running.close()
    finally:
        small.shutdown()
