"""Bad input and failures give typed errors with one actionable sentence; the worker keeps serving."""

from __future__ import annotations

import os

import numpy as np
import pytest

from audio_samples import ffmpeg_convert, tone, write_wav
from model import (
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    ContextTooLongError,
    ConversationError,
    GenerationFailedError,
    GenerationOutOfMemoryError,
    GenerationParams,
    InvalidParamsError,
)

QUICK = GenerationParams(temperature=0, max_new_tokens=6)


def ask(path, text="What is it?"):
    return [{"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": text}]}]


def assert_still_serving(worker, audio_dir):
    assert len(worker.generate(ask(audio_dir / "tone_a.wav"), QUICK)) > 0
    assert not worker.busy


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """name -> (path, expected outcome): an AudioError subclass, or None for 'decodes and is answered'."""
    d = tmp_path_factory.mktemp("bad")
    src = write_wav(d / "src.wav", tone(3.0, seed=5))
    (d / "empty.wav").write_bytes(b"")
    (d / "random.wav").write_bytes(np.random.default_rng(0).bytes(20000))
    (d / "notes.mp3").write_text("This is a text file, not an MP3.\n" * 50)
    mp3 = ffmpeg_convert(src, d / "full.mp3")
    (d / "truncated.mp3").write_bytes(mp3.read_bytes()[: mp3.stat().st_size // 2])
    write_wav(d / "click.wav", tone(0.05, 1000.0))
    ffmpeg_convert(src, d / "long11min.wav", "-af", "aloop=loop=-1:size=48000", "-t", "660")
    write_wav(d / "stereo48k.wav", np.stack([tone(2.0, 440, sr=48000), tone(2.0, 880, sr=48000)], axis=1), sr=48000)
    ffmpeg_convert(src, d / "recording.webm", "-c:a", "libopus")
    ffmpeg_convert(src, d / "voice.m4a", "-c:a", "aac")
    return {
        "empty": (d / "empty.wav", AudioDecodeError),
        "random bytes named .wav": (d / "random.wav", AudioDecodeError),
        "text named .mp3": (d / "notes.mp3", AudioDecodeError),
        "truncated mp3": (d / "truncated.mp3", None),
        "0.05 s click": (d / "click.wav", None),
        "11 minutes": (d / "long11min.wav", AudioTooLongError),
        "48 kHz stereo": (d / "stereo48k.wav", None),
        "webm/opus": (d / "recording.webm", None),
        "m4a": (d / "voice.m4a", None),
    }


CASES = ["empty", "random bytes named .wav", "text named .mp3", "truncated mp3", "0.05 s click", "11 minutes",
         "48 kHz stereo", "webm/opus", "m4a"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_answered_or_refused_by_name_and_the_worker_keeps_serving(worker, audio_dir, bad_inputs, case):
    path, expected = bad_inputs[case]
    if expected is None:
        reply = worker.stream(ask(path), QUICK)
        assert len("".join(reply)) > 0
        assert reply.prepared.audios[0].source == path.name
        assert reply.prepared.audios[0].seconds > 0
    else:
        with pytest.raises(expected) as info:
            worker.stream(ask(path), QUICK)
        err = info.value
        assert isinstance(err, AudioError) and err.status in (400, 413)
        assert err.user_message.startswith(path.name + ": ")
        assert "\n" not in err.user_message and "Traceback" not in err.user_message
    assert_still_serving(worker, audio_dir)


def test_eleven_minutes_names_the_limit(worker, bad_inputs):
    with pytest.raises(AudioTooLongError) as info:
        worker.prepare(ask(bad_inputs["11 minutes"][0]))
    assert "5 min" in info.value.user_message


@pytest.mark.parametrize("messages,fragment", [
    ([], "empty"),
    ([{"role": "user", "content": "   "}], "empty"),
    ([{"role": "wizard", "content": "hi"}], "role"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "end with a user message"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}], "first message"),
    ([{"role": "user", "content": [{"type": "video", "video": "x"}]}], "unknown type"),
    ([{"role": "assistant", "content": [{"type": "audio", "audio": "x.wav"}]}, {"role": "user", "content": "hi"}], "only user"),
])
def test_malformed_conversations_are_refused_with_a_sentence(worker, messages, fragment):
    with pytest.raises(ConversationError) as info:
        worker.stream(messages, QUICK)
    assert fragment in info.value.user_message


def test_bad_generation_params_are_refused():
    for bad in (dict(temperature=-1), dict(top_p=0), dict(max_new_tokens=0), dict(top_k=1.5), dict(seed="x")):
        with pytest.raises(InvalidParamsError):
            GenerationParams(**bad)


def test_prompt_beyond_the_context_is_refused_and_the_worker_keeps_serving(worker, audio_dir):
    huge = "audio " * 9000  # about 9000 tokens; the context is 8192
    with pytest.raises(ContextTooLongError) as info:
        worker.stream([{"role": "user", "content": huge}], QUICK)
    assert "8192" in info.value.user_message and "clear the chat" in info.value.user_message
    assert_still_serving(worker, audio_dir)


def test_max_new_tokens_is_clamped_to_the_room_left_in_the_context(worker):
    text = "audio " * 8100
    reply = worker.stream([{"role": "user", "content": text}], GenerationParams(temperature=0, max_new_tokens=500, min_new_tokens=500))
    list(reply)
    assert reply.prompt_tokens + reply.completion_tokens <= worker.info.context_length
    assert reply.finish_reason == "length"


@pytest.fixture()
def own_worker(make_worker):
    """A worker of its own, so failures injected into its model do not touch the shared one."""
    return make_worker()


@pytest.mark.parametrize("failure,expected,fragment", [
    (RuntimeError("CUDA error: device-side assert triggered"), GenerationFailedError, "try again"),
    (__import__("torch").OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), GenerationOutOfMemoryError, "out of memory"),
])
def test_failure_during_generation_reaches_that_caller_and_the_worker_recovers(own_worker, audio_dir, failure, expected, fragment):
    real_generate = own_worker.model.generate
    calls = {"n": 0}

    def failing_generate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise failure
        return real_generate(*args, **kwargs)

    own_worker.model.generate = failing_generate
    reply = own_worker.stream(ask(audio_dir / "tone_a.wav"), QUICK)
    with pytest.raises(expected) as info:
        "".join(reply)
    assert reply.finish_reason == "error"
    assert fragment in info.value.user_message
    assert "Traceback" not in info.value.user_message and "device-side" not in info.value.user_message
    assert_still_serving(own_worker, audio_dir)


def test_missing_audio_file_is_named(worker, tmp_path):
    missing = tmp_path / "gone.wav"
    with pytest.raises(AudioDecodeError) as info:
        worker.stream(ask(missing), QUICK)
    assert info.value.user_message.startswith("gone.wav: ") and not os.path.exists(missing)


def test_with_several_unusable_files_the_first_in_the_conversation_is_named(worker, audio_dir, tmp_path):
    # The files of one request are decoded at once; the error is still the first bad one in order.
    first_bad, second_bad = tmp_path / "first-bad.wav", tmp_path / "second-bad.wav"
    first_bad.write_bytes(b"RIFF....WAVEjunk" * 64)
    messages = [{"role": "user", "content": [
        {"type": "audio", "audio": str(audio_dir / "tone_a.wav")},
        {"type": "audio", "audio": str(first_bad)},
        {"type": "audio", "audio": str(second_bad)},  # missing: fails faster than the damaged one
        {"type": "text", "text": "Compare them."}]}]
    for _ in range(3):
        with pytest.raises(AudioDecodeError) as info:
            worker.stream(messages, QUICK)
        assert info.value.user_message.startswith("first-bad.wav: ")
