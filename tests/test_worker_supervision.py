"""A worker that cannot wedge: a failure anywhere in the generation thread ends only its request, with a
reason and a sentence; a dead thread is noticed and replaced; shutdown ends every request with a reason."""

from __future__ import annotations

import time

import pytest

from model import (
    GenerationFailedError,
    GenerationParams,
    WorkerError,
    WorkerRestartedError,
    WorkerStoppedError,
)

GREEDY = GenerationParams(temperature=0, max_new_tokens=8)
LONG = GenerationParams(temperature=0, max_new_tokens=600, min_new_tokens=600)


def ask(path, text="What is it?"):
    return [{"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": text}]}]


def _fail(*args, **kwargs):
    raise RuntimeError("injected")


class _FailingDetokenizer:
    """Wraps a detokenizer; ``push`` or ``flush`` raises."""

    def __init__(self, inner, where: str):
        self._inner, self._where = inner, where

    @property
    def token_ids(self):
        return self._inner.token_ids

    def push(self, token_id):
        if self._where == "push":
            raise RuntimeError("injected in the token callback")
        return self._inner.push(token_id)

    def flush(self):
        if self._where == "flush":
            raise RuntimeError("injected after generate returned")
        return self._inner.flush()


def _inject(worker, stage: str, monkeypatch) -> None:
    family = worker.family_adapter
    if stage == "before generate":
        monkeypatch.setattr(worker.prefix_cache, "lookup", _fail)
    elif stage == "creating the detokenizer":
        monkeypatch.setattr(family, "new_detokenizer", _fail)
    elif stage in ("token callback", "after generate returns"):
        make = family.new_detokenizer
        where = "push" if stage == "token callback" else "flush"
        monkeypatch.setattr(family, "new_detokenizer", lambda: _FailingDetokenizer(make(), where))
    elif stage == "prefix-cache store":
        monkeypatch.setattr(worker.prefix_cache, "store", _fail)
    else:
        raise AssertionError(stage)


@pytest.mark.parametrize("stage", ["before generate", "creating the detokenizer", "token callback",
                                   "prefix-cache store", "after generate returns"])
def test_an_exception_at_any_stage_ends_only_that_request(stage, make_worker, audio_dir, monkeypatch):
    worker = make_worker()
    expected = worker.generate(ask(audio_dir / "tone_b.wav"), GREEDY)
    with monkeypatch.context() as patch:
        _inject(worker, stage, patch)
        failing = worker.stream(ask(audio_dir / "tone_a.wav"), GREEDY)
        with pytest.raises(GenerationFailedError, match="please try again"):
            "".join(failing)
        assert failing.finish_reason == "error"
    assert worker.generate(ask(audio_dir / "tone_b.wav"), GREEDY) == expected
    assert not worker.busy


#: The generation thread dies on purpose in these tests; pytest would report that as an unhandled exception.
THREAD_DIES = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@THREAD_DIES
def test_a_killed_generation_thread_is_replaced_and_the_next_caller_told(make_worker, audio_dir, monkeypatch):
    worker = make_worker()
    expected = worker.generate(ask(audio_dir / "tone_b.wav"), GREEDY)

    def die(*args, **kwargs):
        raise SystemExit("the generation thread is killed")

    with monkeypatch.context() as patch:
        patch.setattr(worker.model, "generate", die)
        dying = worker.stream(ask(audio_dir / "tone_a.wav"), GREEDY)
        with pytest.raises(WorkerError, match="stopped unexpectedly"):
            "".join(dying)
        assert dying.finish_reason == "error"
        old = worker._thread
        old.join(5)
        assert not old.is_alive()
    started = time.monotonic()
    with pytest.raises(WorkerRestartedError, match="send your message again"):
        worker.stream(ask(audio_dir / "tone_b.wav"), GREEDY)
    assert time.monotonic() - started < 1.0
    assert worker.generate(ask(audio_dir / "tone_b.wav"), GREEDY) == expected


@THREAD_DIES
def test_a_request_waiting_for_a_dead_thread_ends_with_a_sentence_instead_of_waiting_forever(make_worker, audio_dir,
                                                                                            monkeypatch):
    worker = make_worker()
    with monkeypatch.context() as patch:
        first = worker.stream(ask(audio_dir / "tone_a.wav"), LONG)
        assert first.wait_started(10)
        second = worker.stream(ask(audio_dir / "tone_b.wav"), GREEDY)  # waits behind the first

        def die(*args, **kwargs):
            raise SystemExit("killed")

        patch.setattr(worker.prefix_cache, "store", die)  # the thread dies once the first reply is done
        with pytest.raises(WorkerError):
            "".join(first)
        with pytest.raises(WorkerRestartedError, match="send your message again"):
            "".join(second)
        assert second.finish_reason == "error"
    assert worker.generate(ask(audio_dir / "tone_c.wav"), GREEDY)


def test_finish_reason_is_set_before_any_stream_ends_200_times(make_worker, audio_dir, monkeypatch):
    worker = make_worker()
    monkeypatch.setattr(worker.model, "generate", _fail)
    messages = ask(audio_dir / "tone_a.wav")
    unset = 0
    for _ in range(200):
        reply = worker.stream(messages, GREEDY)
        try:
            for _ in reply:
                pass
        except GenerationFailedError:
            pass
        unset += reply.finish_reason is None
        assert reply.finish_reason == "error"
    assert unset == 0


def test_shutdown_ends_every_request_with_a_reason(make_worker, audio_dir):
    worker = make_worker()
    running = worker.stream(ask(audio_dir / "tone_a.wav"), LONG)
    assert running.wait_started(10)
    waiting = [worker.stream(ask(audio_dir / f"client_{i}.wav"), GREEDY) for i in range(3)]
    assert [w.position for w in waiting] == [1, 2, 3]
    worker.shutdown()
    for reply in waiting:
        with pytest.raises(WorkerStoppedError, match="shutting down"):
            "".join(reply)
        assert reply.finish_reason == "cancelled"
    "".join(running)
    assert running.finish_reason == "cancelled"
    with pytest.raises(WorkerStoppedError):
        worker.stream(ask(audio_dir / "tone_a.wav"), GREEDY)
