"""The displayed history is the source of truth; one pure function derives what the model sees."""

from __future__ import annotations

import copy
import os

import gradio as gr
import pytest

from app.history import (
    BaseTask,
    audio_paths,
    paths_outside,
    pop_last_turn,
    to_model_messages,
    turns,
    without_last_reply,
    note,
    without_pending,
)
from app.timestamps import render_timestamps

A, B = "/tmp/gradio/x/a.wav", "/tmp/gradio/y/b.wav"


def audio_component(path):
    """A user audio as Gradio hands it back to handlers after a round trip through the browser."""
    return {"type": "component", "component": "audio", "value": {"path": path, "url": None},
            "constructor_args": {"label": "a.wav · 0:02.5"}, "props": {}}


def normalised(role, *items):
    return {"role": role, "metadata": None, "content": list(items), "options": None}


def text(t):
    return {"type": "text", "text": t}


def file(path):
    return {"type": "file", "file": {"path": path, "meta": {"_type": "gradio.FileData"}}, "alt_text": None}


def test_one_turn_audio_then_question():
    history = [normalised("user", audio_component(A)), normalised("user", text("What is this?"))]
    assert to_model_messages(history) == [
        {"role": "user", "content": [{"type": "audio", "audio": A}, {"type": "text", "text": "What is this?"}]}
    ]


def test_multi_turn_with_several_audios_keeps_display_order():
    history = [
        normalised("user", audio_component(A)),
        normalised("user", audio_component(B)),
        normalised("user", text("Compare them.")),
        normalised("assistant", text("The second is higher.")),
        normalised("user", text("By how much?")),
    ]
    assert to_model_messages(history, system_prompt="  Be brief.  ") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "audio", "audio": A}, {"type": "audio", "audio": B},
                                     {"type": "text", "text": "Compare them."}]},
        {"role": "assistant", "content": "The second is higher."},
        {"role": "user", "content": [{"type": "text", "text": "By how much?"}]},
    ]


def test_every_shape_gradio_and_clients_use_for_audio():
    unserialised = gr.Audio(value=None)
    unserialised.value = {"path": B}
    history = [
        {"role": "user", "content": {"path": A}},  # what a handler returns before Gradio serialises it
        {"role": "user", "content": unserialised},
        {"role": "user", "content": [file(A), text("q")]},  # what API clients send
        {"role": "user", "content": "plain string"},
    ]
    assert audio_paths(history) == [A, B, A]
    (message,) = to_model_messages(history)
    assert [i.get("audio", i.get("text")) for i in message["content"]] == [A, B, A, "q", "plain string"]


def test_assistant_clips_and_status_notes_are_display_only():
    history = [
        normalised("user", audio_component(A), text("When is the beep?")),
        normalised("assistant", text(render_timestamps("From <|2.00|> to <|3.5|>."))),
        normalised("assistant", audio_component("/tmp/gradio/clips/clip1.wav")),
        {"role": "assistant", "content": "", "metadata": {"title": "Waiting for the model…", "status": "pending"}},
        normalised("user", text("Thanks")),
    ]
    messages = to_model_messages(history)
    assert messages[1] == {"role": "assistant", "content": "From <|2.00|> to <|3.5|>."}  # tokens restored exactly
    assert audio_paths(history) == [A]
    assert len(without_pending(history)) == 4
    # A note about an answer stays on screen, and is not conversation either.
    noted = history[:2] + [note("The answer reached the limit of 64 new tokens.")] + history[2:]
    assert len(without_pending(noted)) == 5 and to_model_messages(noted) == messages


def test_empty_replies_and_blank_text_are_dropped():
    history = [normalised("user", text("hi")), normalised("assistant", text("")), normalised("user", text("   ")),
               normalised("user", text("again"))]
    assert to_model_messages(history) == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}
    ]


def test_derivation_is_pure():
    history = [normalised("user", audio_component(A), text("q")), normalised("assistant", text("a"))]
    before = copy.deepcopy(history)
    first = to_model_messages(history, system_prompt="s")
    first[0]["content"] = "changed"
    assert history == before
    assert to_model_messages(history, system_prompt="s") == to_model_messages(before, system_prompt="s")


def test_base_model_gets_one_audio_and_the_task():
    history = [normalised("user", audio_component(A), text("ignored for transcription"))]
    assert to_model_messages(history, base_task=BaseTask("transcribe")) == [
        {"role": "user", "content": [{"type": "audio", "audio": A},
                                     {"type": "task", "task": "transcribe", "language": None, "timestamps": False,
                                      "prompt": ""}]}
    ]
    translate = to_model_messages(history, base_task=BaseTask("translate", "fr"))
    assert translate[0]["content"][-1] == {"type": "task", "task": "translate", "language": "fr", "timestamps": False,
                                           "prompt": ""}
    timed = to_model_messages(history, base_task=BaseTask("transcribe", "en", timestamps=True))
    assert timed[0]["content"][-1]["timestamps"] is True


def test_base_model_follow_up_reuses_the_latest_audio_and_free_prompt():
    history = [
        normalised("user", audio_component(A)), normalised("assistant", text("...")),
        normalised("user", audio_component(B)), normalised("assistant", text("...")),
        normalised("user", text("Is the speaker happy?")),
    ]
    (message,) = to_model_messages(history, base_task=BaseTask("free"))
    assert message["content"] == [{"type": "audio", "audio": B}, {"type": "task", "task": "free", "language": None,
                                                                 "timestamps": False, "prompt": "Is the speaker happy?"}]


def test_turns_group_consecutive_messages():
    history = [normalised("user", text("a")), normalised("user", audio_component(A)), normalised("assistant", text("b"))]
    assert [(t.role, t.items) for t in turns(history)] == [("user", [("text", "a"), ("audio", A)]),
                                                          ("assistant", [("text", "b")])]


def test_regenerate_drops_only_the_last_answer():
    history = [normalised("user", text("q1")), normalised("assistant", text("a1")), normalised("user", text("q2")),
               normalised("assistant", text("a2")), normalised("assistant", audio_component("/clip.wav"))]
    assert without_last_reply(history) == history[:3]
    assert without_last_reply(history[:3]) == history[:3]
    assert without_last_reply([]) is None


def test_undo_pops_the_whole_last_turn_and_gives_it_back():
    history = [normalised("user", text("q1")), normalised("assistant", text("a1")),
               normalised("user", audio_component(A)), normalised("user", text("q2")), normalised("assistant", text("a2"))]
    rest, question, files = pop_last_turn(history)
    assert rest == history[:2] and question == "q2" and files == [A]
    assert pop_last_turn([]) is None


def test_paths_outside_resolves_links_and_dots(tmp_path):
    root = tmp_path / "uploads"
    (root / "h").mkdir(parents=True)
    inside = root / "h" / "a.wav"
    inside.write_bytes(b"x")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    link = root / "h" / "link.wav"
    os.symlink(outside, link)
    dotted = str(root / "h" / ".." / ".." / "secret.wav")
    assert paths_outside([str(inside), str(outside), str(link), dotted], [str(root)]) == [str(outside), str(link), dotted]
    assert paths_outside([str(root) + "-evil/a.wav"], [str(root)]) == [str(root) + "-evil/a.wav"]


@pytest.mark.parametrize("content", [None, [], [{"type": "unknown"}], [{"type": "file", "file": {}}]])
def test_odd_content_is_ignored_not_fatal(content):
    assert to_model_messages([{"role": "user", "content": content}]) == []
