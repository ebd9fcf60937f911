"""Event wiring: which handler runs on which trigger, in which order, and what Stop cancels.

Submit: check the input (a validator: a bad file is refused next to the input and the chat stays as
it was), echo the user's turn, stream the reply, then give the input back. Regenerate: drop the last
answer, then the same two steps. Stop (the button, the input's own stop icon, or Esc) and Clear cancel
a running reply: they close it themselves and answer once its handler has finished (see
:meth:`ChatHandlers.stop`); a closed tab cancels it through Gradio, whose closing of the reply
generator closes the backend stream. The chat has no trash icon of its own: Clear is the one clear control.
Every event except ``/chat`` is private: the API page shows only the API.

Events that take the chat history run with ``preprocess=False``: their handlers get the history as the
plain message dicts Gradio validated. Gradio's own preprocessing would instantiate a ``gr.Audio`` for
every audio item of the history and decode the file at whatever path the client named in it, before
any handler could check that the file was uploaded (a private event can still be called by any
client). The handlers check paths themselves (:meth:`ChatHandlers.model_messages`, ``uploaded``); the
conversation service checks the settings (:meth:`app.service.ChatService.params`).
"""

from __future__ import annotations

from typing import Any

from .api import ChatApi
from .config import DemoConfig
from .handlers import ChatHandlers
from .layout import Layout
from .voice import STREAM_EVERY_S, VoiceHandlers

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
#: For every event whose inputs include the chat history (see the module docstring).
RAW: dict[str, Any] = {"preprocess": False}
#: Generation events share one concurrency group without a limit of Gradio's: every request reaches the
#: conversation service at once, whose one admission control (shared with /v1) queues it or says "busy".
GENERATE_GROUP = "generate"
#: The input's file paths as a JSON list, computed in the browser from the input's value.
PATHS_OF_INPUT = "(value) => JSON.stringify(((value && value.files) || []).map((f) => f && f.path).filter(Boolean))"
#: Voice mode in the browser (static/keys.js): the switch starts or stops the microphone (or says why it
#: cannot start); an answer that ran to its end is read aloud when asked (one that Stop, Clear or talking
#: cut is not), and those silence it. These steps run in the browser alone: no request, so none is ever
#: pending when the next question is sent (Gradio drops a validator's refusal while one is).
VOICE_SWITCH_JS = "(on) => { window.qwenVoice && window.qwenVoice.toggle(on); return on; }"
BEGIN_JS = "() => { window.qwenVoice && window.qwenVoice.begin(); }"
SPEAK_JS = "(on) => { window.qwenVoice && window.qwenVoice.speakAnswer(on); }"
CUT_JS = "() => { window.qwenVoice && window.qwenVoice.cut(); }"
SILENCE_JS = "() => { window.qwenVoice && window.qwenVoice.silence(); }"


def wire_events(ui: Layout, handlers: ChatHandlers, api: ChatApi, config: DemoConfig,
                voice: VoiceHandlers | None = None) -> None:
    lock = ui.input_lock
    generate: dict[str, Any] = dict(concurrency_limit=None, concurrency_id=GENERATE_GROUP)
    respond = dict(
        fn=handlers.respond,
        inputs=[ui.chatbot, *ui.settings, ui.task, ui.language, ui.timestamps],
        outputs=[ui.chatbot],
        show_progress="minimal",
        **generate,
        **PRIVATE,
        **RAW,
    )
    # A new question that is refused before its answer starts goes back into the input.
    answer = respond | dict(fn=handlers.answer, outputs=[ui.chatbot, ui.textbox], show_progress_on=[ui.chatbot])
    idle = dict(fn=handlers.idle, inputs=[ui.chatbot], outputs=[ui.chatbot, *lock], queue=False, **PRIVATE, **RAW)

    # Validators refuse bad input next to the input itself; the chat stays as it was.
    submitted = ui.textbox.submit(
        handlers.add_user_turn, [ui.textbox, ui.chatbot], [ui.chatbot, *lock],
        validator=handlers.validate_user_turn, **PRIVATE, **RAW,
    )
    reply = submitted.success(**answer)
    reply.then(**idle)
    # Read-aloud (voice mode's layout only): each answer starts uncut; one that ran to its end is read.
    spoken = dict(fn=None, inputs=[ui.voice.read_aloud], outputs=None, js=SPEAK_JS, queue=False,
                  **PRIVATE) if ui.voice and voice else {}
    begin = dict(fn=None, inputs=None, outputs=None, js=BEGIN_JS, queue=False, **PRIVATE)

    # Regenerate (the button, or the last answer's own retry icon): drop the last answer, answer again.
    regenerate = dict(fn=handlers.prepare_regenerate, inputs=[ui.chatbot], outputs=[ui.chatbot, *lock],
                      validator=handlers.validate_regenerate, **PRIVATE, **RAW)
    prepared = [submitted, ui.regen_btn.click(**regenerate), ui.chatbot.retry(**regenerate)]
    regenerated = prepared[1].success(**respond)
    regenerated.then(**idle)
    retried = prepared[2].success(**respond)
    retried.then(**idle)
    # Edit an earlier question (the chat's own pencil): the conversation goes on from there.
    prepared.append(ui.chatbot.edit(handlers.edit, [ui.chatbot], [ui.chatbot, *lock], **PRIVATE, **RAW))
    edited = prepared[3].success(**respond)
    edited.then(**idle)

    running = [reply, regenerated, retried, edited]
    if spoken:  # an answer that ran to its end (not one cut by Stop, Clear or talking) is read aloud if asked
        for step, answered in zip(prepared, running):
            step.success(**begin)
            answered.success(**spoken)
    if ui.voice is not None and voice is not None:
        running.append(wire_voice(ui, voice, answer, idle, spoken, begin, running))
    # Stop and Clear answer once the cancelled reply has ended (see ChatHandlers.stop / clear).
    stop = idle | dict(fn=handlers.stop)
    ui.stop_btn.click(cancels=running, **stop)
    ui.textbox.stop(cancels=running, **stop)
    if ui.voice is not None:  # Stop and Clear silence read-aloud too
        for trigger in (ui.stop_btn.click, ui.textbox.stop, ui.clear_btn.click):
            trigger(None, None, None, js=CUT_JS, queue=False, **PRIVATE)
    # Undo (the button, or the last answer's own undo icon): the last question goes back into the input.
    for trigger in (ui.undo_btn.click, ui.chatbot.undo):
        trigger(handlers.undo, [ui.chatbot], [ui.chatbot, ui.textbox], **PRIVATE, **RAW)
    ui.clear_btn.click(handlers.clear, None, [ui.chatbot, *lock], cancels=running, queue=False, **PRIVATE)
    # Save: the zip is made, then the hidden download button hands it to the browser. Load replaces the chat.
    ui.save_btn.click(handlers.save, [ui.chatbot], [ui.save_file], **PRIVATE, **RAW).success(
        None, None, None, js="() => document.querySelector('#save-file')?.click()", **PRIVATE)
    ui.load_btn.upload(handlers.load, [ui.load_btn], [ui.chatbot, *lock], cancels=running, **PRIVATE)

    # The input's clips by name, duration and player. The browser picks the paths out of the input at every
    # change (no request: typing sends nothing); only when they differ does the server list them. A request
    # of the input's own at each keystroke would be pending when Send is clicked, and Gradio then dropped
    # the send's refusal (or the send).
    ui.textbox.change(None, [ui.textbox], [ui.attached_paths], js=PATHS_OF_INPUT, queue=False, **PRIVATE)
    ui.attached_paths.change(handlers.attachments, [ui.attached_paths], [ui.attached], queue=False,
                             show_progress="hidden", **PRIVATE)
    # An example clicked in the empty chat fills the input.
    ui.chatbot.example_select(handlers.example, None, [ui.textbox], queue=False, **PRIVATE)

    ui.api_trigger.click(
        api.chat,
        [ui.textbox, ui.api_history, *ui.settings, *ui.api_task],
        [ui.api_output],
        api_name="chat",
        api_description="Answer a message (text and audio files) after the earlier turns; streams the reply so far.",
        api_visibility="public",
        show_progress="hidden",
        **generate,
        **RAW,
    )


def wire_voice(ui: Layout, voice: VoiceHandlers, answer: dict[str, Any], idle: dict[str, Any],
               spoken: dict[str, Any], begin: dict[str, Any], running: list[Any]) -> Any:
    """Voice mode (see :mod:`app.voice`); returns the voice turn's reply event (for Stop and Clear to cancel)."""
    v = ui.voice
    assert v is not None
    v.mode.change(None, [v.mode], None, js=VOICE_SWITCH_JS, queue=False, **PRIVATE)
    v.mode.change(voice.toggle, [v.mode], [v.status], queue=False, show_progress="hidden", **PRIVATE)
    v.mic.stream(voice.chunk, [v.mic], [v.status, v.speech, v.barge, v.utterance], stream_every=STREAM_EVERY_S,
                 time_limit=None, concurrency_limit=None, concurrency_id="voice", show_progress="hidden", **PRIVATE)
    v.speech.change(None, None, None, js=SILENCE_JS, queue=False, **PRIVATE)
    v.barge.change(None, None, None, js=CUT_JS, queue=False, **PRIVATE)
    v.read_aloud.change(None, [v.read_aloud], None, js="(on) => { if (!on) window.qwenVoice && window.qwenVoice.silence(); }",
                        queue=False, **PRIVATE)
    turn = v.utterance.change(voice.add_turn, [v.utterance, ui.chatbot], [ui.chatbot, *ui.input_lock],
                              show_progress="hidden", **PRIVATE, **RAW)
    turn.success(**begin)
    replied = turn.success(**answer)
    replied.then(**idle)
    replied.success(**spoken)
    # Talking over an answer stops it, as Stop does.
    v.barge.change(voice.barge_in, [ui.chatbot], [ui.chatbot, *ui.input_lock], cancels=[*running, replied],
                   show_progress="hidden", **PRIVATE, **RAW)
    return replied
