"""Handlers on a scripted backend: streaming, clips, queue notes, errors as sentences, cancellation."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest

from app.api import user_turn_messages
from app.config import DemoConfig
from app.handlers import ChatHandlers
from model.audio import format_clock
from model.errors import UserFacingError
from app_fixtures import ScriptedWorker
from audio_samples import tone, write_wav

SETTINGS = ("", 64, 0.0, 1.0, 0, 1.0, -1)


class FakeRequest:
    def __init__(self, language: str = "en-US", session_hash: str = "session-1"):
        self.headers = {"accept-language": language}
        self.session_hash = session_hash


@pytest.fixture
def clip_audio(tmp_path) -> Path:
    return write_wav(tmp_path / "beep.wav", tone(4.0, 1000.0, seed=3))


def user_turn(handlers: ChatHandlers, path: Path, question: str) -> list[dict]:
    """The history after the echo step, as the browser would send it back (audio copied into Gradio's cache)."""
    history, *_ = handlers.add_user_turn({"text": question, "files": [str(path)]}, [], FakeRequest())
    assert history[-1]["metadata"]["status"] == "pending"  # the answer's place: replaced by the reply
    return history[:-1]


def run(handlers: ChatHandlers, history: list[dict], *settings, request=None) -> list[list[dict]]:
    return list(handlers.respond(history, *(settings or SETTINGS), "transcribe", "", False, request or FakeRequest()))


def test_reply_streams_with_readable_times_and_clips(tmp_path, clip_audio):
    worker = ScriptedWorker(reply=lambda m, n: ["The beep ", "is from ", "<|1.00|>", " to <|2.", "50|>."])
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path / "clips")
    history = user_turn(handlers, clip_audio, "When is the beep?")
    steps = run(handlers, history)
    assert steps[0][len(history)]["metadata"]["title"] == "Listening and thinking…"  # shown before any text
    steps = steps[1:]
    texts = [s[len(history)]["content"] for s in steps]
    assert texts[:5] == ["The beep ", "The beep is from ", 'The beep is from <time datetime="PT1.00S">0:01.00</time>',
                         'The beep is from <time datetime="PT1.00S">0:01.00</time> to <|2.', texts[4]]
    assert texts[4].endswith('to <time datetime="PT2.50S">0:02.50</time>.')
    final = steps[-1]
    assert len(final) == len(history) + 2
    clip = final[-1]["content"]
    assert isinstance(clip, gr.Audio) and clip.label == "0:01.00 – 0:02.50"
    # The model saw the user's audio and question, nothing else.
    (messages,) = worker.calls
    assert [i["type"] for i in messages[0]["content"]] == ["audio", "text"]


def test_user_turn_shows_each_audio_with_its_duration_and_locks_the_input(tmp_path, clip_audio):
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(), clips_dir=tmp_path)
    message = {"text": "  Compare  ", "files": [str(clip_audio), str(clip_audio)]}
    assert [v["is_valid"] for v in handlers.validate_user_turn(message, [], FakeRequest())] == [True, True]
    history, textbox, stop, regenerate, undo = handlers.add_user_turn(message, [], FakeRequest())
    assert [type(m["content"]) for m in history] == [gr.Audio, gr.Audio, str, str]
    assert history[3]["metadata"] == {"title": "Listening and thinking…", "status": "pending"}
    assert history[0]["content"].label == "beep.wav · 0:04.0"
    assert history[2]["content"] == "Compare"
    assert textbox.interactive is False and stop.interactive is True and regenerate.interactive is False


def test_corrupt_file_is_refused_at_the_input_before_the_chat_changes(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(), clips_dir=tmp_path)
    on_input, on_chat = handlers.validate_user_turn({"text": "hi", "files": [str(bad)]}, [], FakeRequest())
    assert on_input["is_valid"] is False and on_input["message"].startswith("corrupt.wav: ")
    assert on_chat["is_valid"] is True


def test_too_long_audio_is_refused_with_the_limit(tmp_path):
    long = write_wav(tmp_path / "long.wav", tone(8.0, 300.0))
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(max_audio_seconds=5), clips_dir=tmp_path)
    on_input, _ = handlers.validate_user_turn({"text": "", "files": [str(long)]}, [], FakeRequest())
    assert on_input["is_valid"] is False and "long.wav" in on_input["message"] and "5 s" in on_input["message"]


def test_empty_input_is_refused_in_the_browsers_language(tmp_path):
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(), clips_dir=tmp_path)
    english, _ = handlers.validate_user_turn({"text": " ", "files": []}, [], FakeRequest())
    chinese, _ = handlers.validate_user_turn({"text": "", "files": []}, [], FakeRequest("zh-CN,zh;q=0.9"))
    assert english["message"].startswith("Type a question") and chinese["message"].startswith("请先输入问题")


def test_backend_errors_become_their_sentence_and_others_an_apology(tmp_path, caplog, toasts):
    class Refusal(UserFacingError):
        user_message = "a.wav: the audio is 6 min long; the limit is 5 min"

        def __init__(self):
            super().__init__(self.user_message)

    def failing(exc):
        def reply(messages, n):
            raise exc
        return reply

    history = [{"role": "user", "content": "hi"}]
    handlers = ChatHandlers(ScriptedWorker(reply=failing(Refusal())), DemoConfig(), clips_dir=tmp_path)
    steps = run(handlers, history)
    assert steps[-1] == history  # the chat stays as it was; the error is a toast
    handlers = ChatHandlers(ScriptedWorker(reply=failing(RuntimeError("CUDA exploded"))), DemoConfig(), clips_dir=tmp_path)
    with caplog.at_level(logging.ERROR):
        run(handlers, history)
    assert toasts[0] == "a.wav: the audio is 6 min long; the limit is 5 min"
    assert "CUDA" not in toasts[1] and toasts[1].startswith("Sorry")
    assert any(r.exc_info for r in caplog.records)  # the traceback went to the log, not the page


def test_an_error_mid_reply_keeps_what_was_answered(tmp_path, toasts):
    class OutOfMemory(UserFacingError):
        user_message = "The GPU ran out of memory."

        def __init__(self):
            super().__init__(self.user_message)

    worker = ScriptedWorker(reply=lambda m, n: ["Half ", "an answer", OutOfMemory()])
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    steps = run(handlers, [{"role": "user", "content": "hi"}])
    assert steps[-1][-1] == {"role": "assistant", "content": "Half an answer"}
    assert toasts == ["The GPU ran out of memory."]


def test_file_names_in_toasts_are_escaped(tmp_path, toasts):
    class Refusal(UserFacingError):
        user_message = "<img src=x onerror=alert(1)>.wav: bad"

        def __init__(self):
            super().__init__(self.user_message)

    def reply(messages, n):
        raise Refusal()

    handlers = ChatHandlers(ScriptedWorker(reply=reply), DemoConfig(), clips_dir=tmp_path)
    run(handlers, [{"role": "user", "content": "hi"}])
    assert toasts == ["&lt;img src=x onerror=alert(1)&gt;.wav: bad"]


def test_audio_not_uploaded_through_gradio_is_refused(tmp_path, clip_audio, toasts):
    worker = ScriptedWorker()
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    history = [{"role": "user", "content": [{"type": "file", "file": {"path": str(clip_audio)}}, {"type": "text", "text": "q"}]}]
    run(handlers, history)
    assert toasts == ["beep.wav was not uploaded through this page; attach the file again."]
    assert worker.calls == []


def test_closing_the_reply_cancels_the_backend_stream(tmp_path):
    worker = ScriptedWorker(reply=lambda m, n: ["x"] * 100, delay=0.01)
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    steps = handlers.respond([{"role": "user", "content": "hi"}], *SETTINGS, "transcribe", "", False, FakeRequest())
    next(steps), next(steps)
    steps.close()  # what Gradio does on Stop, on a closed tab, or on a cancelled API job
    assert worker.cancelled == worker.streams


def note_titles(history: list[dict]) -> list[str]:
    return [m["metadata"]["title"] for m in history if m.get("metadata")]


def test_long_audio_split_and_the_length_limit_are_notes_beside_the_answer_not_toasts(tmp_path, toasts, clip_audio):
    worker = ScriptedWorker(reply=lambda m, n: ["a", "b"], windows=3, finish="length")  # cut at max_new_tokens
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    history = user_turn(handlers, clip_audio, "q")
    final = run(handlers, history)[-1]
    split = "beep.wav is 1 s long: split into 3 windows of ≤30 s."
    length = "The answer reached the limit of 64 new tokens; raise “Max new tokens” in Settings for more."
    # The split note sits between the question and the answer, the length note after the answer.
    assert final[len(history)]["metadata"] == {"title": split, "status": "done"}
    assert final[len(history) + 1] == {"role": "assistant", "content": "ab"}
    assert final[len(history) + 2]["metadata"]["title"] == length
    assert toasts == []  # nothing covers the chat
    # The notes stay for the next turn (display only: the model never sees them).
    follow_up = final + [{"role": "user", "content": "and?"}]
    assert note_titles(run(handlers, follow_up)[-1]) == [split, length, length]  # the split is said once


def test_waiting_in_the_worker_queue_shows_the_position(tmp_path):
    worker = ScriptedWorker()
    original = worker.stream

    def queued_stream(messages, params=None):
        stream = original(messages, params)
        polls = iter([False, False, True])
        stream.wait_started = lambda timeout=None: next(polls)
        type(stream).position = property(lambda self: 2)
        return stream

    worker.stream = queued_stream
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    steps = run(handlers, [{"role": "user", "content": "hi"}])
    notes = [s[-1]["metadata"]["title"] for s in steps if s[-1].get("metadata")]
    # The answer's place says at once that it is coming, then where the request waits.
    assert notes == ["Listening and thinking…"] + ["Waiting for the model: 2 request(s) ahead…"] * 2
    assert all(s[-1]["metadata"]["status"] == "pending" for s in steps if s[-1].get("metadata"))
    assert steps[-1][-1]["content"] == "answer 1"


def test_settings_become_generation_params(tmp_path):
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(), clips_dir=tmp_path)
    params = handlers.settings((64.0, 0, 1.0, 0.0, 1.0, -1))
    assert (params.max_new_tokens, params.temperature, params.top_k, params.seed) == (64, 0.0, 0, None)
    assert handlers.settings((10, 0.7, 0.5, 20, 1.1, 42.0)).seed == 42
    # Nothing set: the service's defaults (the scripted checkpoint sets none: the fallback, 512 tokens).
    assert handlers.settings((None, None, None, None, None, None)) == handlers.service.defaults
    assert handlers.service.defaults.max_new_tokens == 512


def test_regenerate_undo_and_clear(tmp_path):
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(), clips_dir=tmp_path)
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    trimmed, *_ = handlers.prepare_regenerate(history)
    assert trimmed == history[:1]
    assert handlers.validate_regenerate(history, FakeRequest())["is_valid"] is True
    refused = handlers.validate_regenerate([], FakeRequest())
    assert refused["is_valid"] is False and "no answer to regenerate" in refused["message"]
    rest, textbox = handlers.undo(history, FakeRequest())
    assert rest == [] and textbox.value == {"text": "q", "files": []}
    assert handlers.clear(FakeRequest())[0] == []
    notes = [{"role": "assistant", "content": "", "metadata": {"title": "waiting", "status": "pending"}}]
    assert handlers.idle(history + notes)[0] == history


def test_api_message_becomes_display_messages():
    assert user_turn_messages({"text": " hi ", "files": ["/a.wav", {"path": "/b.wav"}]}) == [
        {"role": "user", "content": [{"type": "file", "file": {"path": "/a.wav"}}]},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/b.wav"}}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]


def test_format_clock():
    assert [format_clock(s, 1) for s in (0.04, 2.46, 59.96, 75)] == ["0:00.0", "0:02.5", "1:00.0", "1:15.0"]
    assert [format_clock(s, 2) for s in (1.0, 61.5, 119.999)] == ["0:01.00", "1:01.50", "2:00.00"]
    assert format_clock(75) == "1:15"


def test_long_audio_on_the_real_worker_is_split_and_announced(worker, audio_dir, tmp_path, toasts):
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    history = user_turn(handlers, audio_dir / "long_75s.wav", "Summarise it.")
    assert history[0]["content"].label == "long_75s.wav · 1:15.0"
    steps = run(handlers, history, "", 8, 0.0, 1.0, 0, 1.0, -1)
    assert note_titles(steps[-1])[0] == "long_75s.wav is 75 s long: split into 3 windows of ≤30 s."
    assert toasts == [] and steps[-1][-1]["role"] == "assistant"


def test_a_new_question_refused_before_its_answer_goes_back_into_the_input(tmp_path, toasts):
    class TooLong(UserFacingError):
        user_message = "The conversation is 9000 tokens long, beyond the context of 8192 tokens."

        def __init__(self):
            super().__init__(self.user_message)

    def reply(messages, n):
        raise TooLong()

    handlers = ChatHandlers(ScriptedWorker(reply=reply), DemoConfig(), clips_dir=tmp_path)
    earlier = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "an answer"}]
    history = earlier + [{"role": "user", "content": "a very long question"}]
    steps = list(handlers.answer(history, *SETTINGS, "transcribe", "", False, FakeRequest()))
    chat, textbox = steps[-1]
    assert chat == earlier and textbox.value == {"text": "a very long question", "files": []}
    assert toasts == [TooLong.user_message]


def test_an_answer_cut_short_by_an_error_stays_in_the_chat(tmp_path, toasts):
    class OutOfMemory(UserFacingError):
        user_message = "The GPU ran out of memory."

        def __init__(self):
            super().__init__(self.user_message)

    handlers = ChatHandlers(ScriptedWorker(reply=lambda m, n: ["Half ", OutOfMemory()]), DemoConfig(), clips_dir=tmp_path)
    history = [{"role": "user", "content": "hi"}]
    chat, textbox = list(handlers.answer(history, *SETTINGS, "transcribe", "", False, FakeRequest()))[-1]
    assert chat == history + [{"role": "assistant", "content": "Half "}] and textbox == gr.skip()


def test_a_refused_attachment_is_named_and_the_next_send_goes_without_it(tmp_path):
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(max_audio_seconds=2), clips_dir=tmp_path)
    long = write_wav(tmp_path / "long-clip.wav", tone(3.0, 500.0, seed=4))
    message = {"text": "what is it?", "files": [str(long)]}
    first, _ = handlers.validate_user_turn(message, [], FakeRequest())
    assert not first["is_valid"] and first["message"].startswith("long-clip.wav: the audio is 3 s long; the limit is 2 s")
    assert "it will be left out" in first["message"]
    again, _ = handlers.validate_user_turn(message, [], FakeRequest())  # the file still sits in the input
    assert again["is_valid"]
    history, *_ = handlers.add_user_turn(message, [], FakeRequest())
    assert history[0] == {"role": "user", "content": "what is it?"}
    assert history[1]["metadata"]["title"].startswith("Left out: long-clip.wav: the audio is 3 s long")
    # With nothing else to send, the refusal is said again rather than "type a question".
    alone, _ = handlers.validate_user_turn({"text": "", "files": [str(long)]}, [], FakeRequest())
    assert not alone["is_valid"] and alone["message"].startswith("long-clip.wav:")
    # Another tab is not affected.
    other, _ = handlers.validate_user_turn(message, [], FakeRequest(session_hash="session-2"))
    assert not other["is_valid"]
