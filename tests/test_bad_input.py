"""The bad-input corpus (:mod:`bad_inputs`) through ``/chat``, ``/v1/chat/completions`` and the page.

One demo on the tiny checkpoint's real worker, with ``max_upload_mb`` small enough for the "huge file"
case, serves all three. Every case is answered, or refused with a sentence that names the file and
the reason and never a traceback; after every refusal the conversation that came before it is intact
and the next request is answered.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.config import DemoConfig
from app.demo import build_demo
from app.openai_api import api_routes
from app_fixtures import ROOT, serving, wait_for
from audio_samples import tone, write_wav
from bad_inputs import CASE_IDS, UPLOAD_LIMIT_MB, BadInput, build_corpus
from test_browser import CHROMIUM, FLAGS, IDLE, Chat

SETTINGS = dict(system_prompt="", max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1)
EARLIER_QUESTION = "What is this tone?"
EARLIER_ANSWER = "A steady tone."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, BadInput]:
    return {case.id: case for case in build_corpus(tmp_path_factory.mktemp("bad-inputs"))}


@pytest.fixture(scope="module")
def earlier_clip(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("earlier") / "earlier.wav", tone(1.5, 440.0, seed=11))


@pytest.fixture(scope="module")
def server(worker, tmp_path_factory):
    """The demo with /v1 as ``web_demo_audio.py`` wires it, refusing files over UPLOAD_LIMIT_MB."""
    config = DemoConfig(examples=False, temperature=0.0, max_new_tokens=8, repetition_penalty=1.0,
                        max_upload_mb=UPLOAD_LIMIT_MB)
    demo = build_demo(worker, config, work_dir=tmp_path_factory.mktemp("bad-input-demo"))
    with serving(demo, config, api_routes(worker, config)) as url:
        yield url.rstrip("/")


def no_shell_was_run() -> bool:
    """The odd file name holds ``$(touch PWNED)``: nothing may have run it."""
    return not (ROOT / "PWNED").exists() and not Path("PWNED").exists()


# --------------------------------------------------------------------------------------------- /chat
@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def chat(client: Client, text: str, files=(), history=None) -> str:
    job = client.submit(message={"text": text, "files": [handle_file(str(f)) for f in files]}, history=history or [],
                        **SETTINGS, api_name="/chat")
    return job.result()


def earlier_turn(clip: Path) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "file", "file": handle_file(str(clip))}]},
        {"role": "user", "content": [{"type": "text", "text": EARLIER_QUESTION}]},
        {"role": "assistant", "content": [{"type": "text", "text": EARLIER_ANSWER}]},
    ]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_chat_api(client, corpus, earlier_clip, case_id):
    case = corpus[case_id]
    history = earlier_turn(earlier_clip)
    if not case.refused:
        assert isinstance(chat(client, case.text, case.files, history), str)
        assert no_shell_was_run()
        return
    with pytest.raises((AppError, ValueError)) as refused:
        chat(client, case.text, case.files, history)
    message = str(refused.value)
    assert case.reason_for("chat") in message
    if case.names_file:
        assert case.files[0].name in message
    assert "Traceback" not in message and "File \"" not in message
    # The same earlier conversation goes on: the next question is answered.
    assert isinstance(chat(client, "And now?", history=history), str)


# --------------------------------------------------------------------------------------------- /v1
def audio_part(path: Path, fmt: str) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(), "format": fmt}}


def completion(server: str, content: list[dict], earlier_clip: Path) -> httpx.Response:
    messages = [
        {"role": "user", "content": [audio_part(earlier_clip, "wav"), {"type": "text", "text": EARLIER_QUESTION}]},
        {"role": "assistant", "content": EARLIER_ANSWER},
        {"role": "user", "content": content},
    ]
    return httpx.post(f"{server}/v1/chat/completions", timeout=120,
                      json={"messages": messages, "max_tokens": 8, "temperature": 0})


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_openai_api(server, corpus, earlier_clip, case_id):
    case = corpus[case_id]
    content = [audio_part(f, case.api_format(i)) for i, f in enumerate(case.files)]
    content.append({"type": "text", "text": case.text})
    response = completion(server, content, earlier_clip)
    assert response.status_code == case.http_status, response.text[:300]
    if not case.refused:
        assert response.json()["choices"][0]["message"]["role"] == "assistant"
        return
    error = response.json()["error"]
    assert case.reason_for("v1") in error["message"] and error["type"] == "invalid_request_error"
    if case.names_file:  # the part the audio came in, as the client knows it
        assert error["message"].startswith("messages[2].content[0]") and error["param"] == "messages[2].content[0]"
    assert "Traceback" not in response.text
    after = completion(server, [{"type": "text", "text": "And now?"}], earlier_clip)
    assert after.status_code == 200, after.text[:300]


# --------------------------------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_the_page_refuses_or_answers_every_case_and_keeps_the_chat(server, corpus, browser, earlier_clip):
    """The whole corpus through one page: attach, send, read the refusal or wait for the answer."""
    context = browser.new_context(viewport={"width": 1180, "height": 1000})
    try:
        chat = Chat(context.new_page(), server)
        page = chat.page
        chat.attach(earlier_clip)
        chat.ask(EARLIER_QUESTION)
        first_answer = chat.answer(1)
        users, bots = chat.user_messages(), len(chat.bot_texts())

        def visible_errors() -> str:
            texts = page.eval_on_selector_all("#input .validation-error, [data-testid=toast-body]",
                                              "els => els.map(e => e.innerText)")
            return "\n".join(texts)

        def dismiss_errors() -> None:
            page.evaluate("""() => document.querySelectorAll(
                '[data-testid=toast-close], #input .validation-error button[aria-label=Clear]').forEach(b => b.click())""")
            wait_for(lambda: not visible_errors(), timeout=10)

        def clear_input() -> None:
            while page.locator("#input button[aria-label='Remove file']").count():
                page.locator("#input button[aria-label='Remove file']").first.click(force=True)
            page.fill("#input textarea", "")

        for case in corpus.values():
            dismiss_errors()
            clear_input()
            if case.id == "over-upload-limit":  # refused by the page as it is attached; nothing is sent
                page.set_input_files("#input input[type=file]", [str(f) for f in case.files])
                wait_for(lambda: case.reason_for("ui") in visible_errors(), timeout=10)
                assert case.files[0].name in visible_errors()
                assert page.locator("#input button[aria-label='Remove file']").count() == 0
                continue
            if case.files:
                chat.attach(*case.files)
            page.fill("#input textarea", case.text)
            page.click("#input [data-testid=submit-button]")
            if case.refused:
                expected = case.reason_for("ui")
                wait_for(lambda: expected in visible_errors() and page.evaluate(IDLE), timeout=30)
                message = visible_errors()
                if case.names_file:
                    assert case.files[0].name in message, message
                assert "Traceback" not in message
                # The chat is exactly as it was; the question is back in (or still in) the input.
                assert (chat.user_messages(), len(chat.bot_texts())) == (users, bots), case.id
                assert page.input_value("#input textarea") == case.text.strip()
                assert page.locator("#input [aria-label='File thumbnail']").count() == len(case.files)
            else:
                wait_for(lambda: len(chat.bot_texts()) > bots and page.evaluate(IDLE), timeout=60)
                assert not page.locator("#input .validation-error").count(), visible_errors()
                users, bots = chat.user_messages(), len(chat.bot_texts())
            assert chat.bot_texts()[0] == first_answer, f"the earlier answer changed after {case.id}"
        assert no_shell_was_run()
        chat.shot("11-bad-input-corpus")

        dismiss_errors()
        clear_input()
        chat.ask("After all that, one more question.")
        wait_for(lambda: len(chat.bot_texts()) > bots and page.evaluate(IDLE), timeout=30)
        assert chat.bot_texts()[0] == first_answer and chat.user_messages() == users + 1
    finally:
        context.close()


def test_a_long_paste_stays_text(server, browser):
    """Gradio turns a paste longer than ``max_plain_text_length`` into "pasted_text.txt", which is no audio."""
    context = browser.new_context(viewport={"width": 1180, "height": 1000})
    try:
        chat = Chat(context.new_page(), server)
        pasted = "Please summarise: " + "the quick brown fox " * 500  # 10 018 characters
        chat.page.focus("#input textarea")
        chat.page.evaluate("""text => {
            const data = new DataTransfer();
            data.setData('text/plain', text);
            document.querySelector('#input textarea').dispatchEvent(
                new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
        }""", pasted)
        time.sleep(0.5)
        toasts = chat.page.eval_on_selector_all("[data-testid=toast-body]", "els => els.map(e => e.innerText)")
        assert toasts == [] and chat.page.locator("#input [aria-label='File thumbnail']").count() == 0
    finally:
        context.close()
