"""Event wiring: which handler runs on which trigger, in which order, and what Stop cancels.

Submit: check the input (a validator: a bad file is refused next to the input and the chat stays as
it was), echo the user's turn, stream the reply, then give the input back. Regenerate: drop the last
answer, then the same two steps. Stop (the button or the input's own stop icon), Clear and the chat's
trash icon cancel a running reply; cancelling closes the reply generator, whose ``finally`` closes the
backend stream and so stops generation in the worker.
Every event except ``/chat`` is private: the API page shows only the API.
"""

from __future__ import annotations

from typing import Any

from .api import ChatApi
from .config import DemoConfig
from .handlers import ChatHandlers
from .layout import Layout

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
#: Generation events share one concurrency group, so the limit counts page and API requests together.
GENERATE_GROUP = "generate"


def wire_events(ui: Layout, handlers: ChatHandlers, api: ChatApi, config: DemoConfig) -> None:
    lock = ui.input_lock
    generate: dict[str, Any] = dict(
        concurrency_limit=config.concurrency_limit, concurrency_id=GENERATE_GROUP,
    )
    respond = dict(
        fn=handlers.respond,
        inputs=[ui.chatbot, *ui.settings, ui.task, ui.language],
        outputs=[ui.chatbot],
        show_progress="minimal",
        **generate,
        **PRIVATE,
    )
    idle = dict(fn=handlers.idle, inputs=[ui.chatbot], outputs=[ui.chatbot, *lock], queue=False, **PRIVATE)

    # Validators refuse bad input next to the input itself; the chat stays as it was.
    submitted = ui.textbox.submit(
        handlers.add_user_turn, [ui.textbox, ui.chatbot], [ui.chatbot, *lock],
        validator=handlers.validate_user_turn, **PRIVATE,
    )
    reply = submitted.success(**respond)
    reply.then(**idle)

    regenerate = ui.regen_btn.click(
        handlers.prepare_regenerate, [ui.chatbot], [ui.chatbot, *lock],
        validator=handlers.validate_regenerate, **PRIVATE,
    )
    regenerated = regenerate.success(**respond)
    regenerated.then(**idle)

    running = [reply, regenerated]
    ui.stop_btn.click(cancels=running, **idle)
    ui.textbox.stop(cancels=running, **idle)
    ui.undo_btn.click(handlers.undo, [ui.chatbot], [ui.chatbot, ui.textbox], **PRIVATE)
    ui.clear_btn.click(handlers.clear, None, [ui.chatbot, *lock], cancels=running, queue=False, **PRIVATE)
    ui.chatbot.clear(cancels=running, **idle)

    ui.api_trigger.click(
        api.chat,
        [ui.textbox, ui.chatbot, *ui.settings],
        [ui.api_output],
        api_name="chat",
        api_description="Answer a message (text and audio files) after the earlier turns; streams the reply so far.",
        api_visibility="public",
        show_progress="hidden",
        **generate,
    )
