"""The chat UI conventions people know, in Chromium: examples in the empty chat, the input's clips named
with a player before sending, an echo that does not wait for a decode, one font for bold text, editing an
earlier question, the last answer's own retry/undo, saving and loading a conversation, a chat that fills
the viewport on desktop and phone.

A scripted backend (real FFmpeg decoding, scripted answers) stands in for the model.
"""

from __future__ import annotations

import json
import threading
import zipfile
from dataclasses import dataclass, field

import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.examples import Example
from app_fixtures import ScriptedWorker, serving, wait_for
from audio_samples import tone, write_wav
from browser_fixtures import IDLE, browser, new_chat, playwright  # noqa: F401 (fixtures)


@dataclass
class GatedDecoder(ScriptedWorker):
    """Decodes as the worker does, into a cache keyed by the file (the worker's is keyed by its content);
    a decode that is not in the cache waits while ``gate`` is closed, a reply while ``hold`` is."""

    gate: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event = field(default_factory=threading.Event)
    decoded: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gate.set()
        self.hold.set()

    def stream(self, messages, params=None):
        self.hold.wait(30)
        return super().stream(messages, params)

    def decode_audio(self, path, limits=None):
        if path not in self.decoded:
            self.gate.wait(30)
            self.decoded[path] = super().decode_audio(path, limits)
        return self.decoded[path]


def script(messages: list[dict], n: int) -> list[str]:
    last = messages[-1]["content"]
    question = " ".join(i.get("text", "") for i in last if i.get("type") == "text") if isinstance(last, list) else last
    return [f"answer to {question.strip()}"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui-audio")
    return {"bell": write_wav(d / "bell-sound.wav", tone(1.5, 400.0, seed=1)),
            "hum": write_wav(d / "low-hum.wav", tone(2.5, 120.0, seed=2))}


@pytest.fixture(scope="module")
def backend():
    return GatedDecoder(reply=script)


@pytest.fixture(scope="module")
def url(backend, clips, tmp_path_factory):
    examples = [Example("What sound is this?", (str(clips["bell"]),)),
                Example("Compare the two clips.", (str(clips["bell"]), str(clips["hum"])))]
    config = DemoConfig(max_audio_seconds=60)
    demo = build_demo(backend, config, examples=examples, work_dir=tmp_path_factory.mktemp("ui-demo"))
    with serving(demo, config) as served:
        yield served


def answers(chat) -> list[str]:
    return [text.strip() for text in chat.answers()]


def user_texts(chat) -> list[str]:
    return chat.page.eval_on_selector_all("#chatbot [data-testid=user] .message-content",
                                          "els => els.map(e => e.innerText.trim()).filter(t => t)")


def settle(chat, count: int) -> None:
    wait_for(lambda: len(answers(chat)) == count and chat.page.evaluate(IDLE), timeout=20)


def test_the_empty_chat_offers_the_examples_and_a_click_anywhere_on_one_fills_the_input(new_chat, url):
    chat = new_chat(url)
    examples = chat.page.locator("#chatbot .example")
    assert examples.count() == 2
    assert "Ask about any audio" in chat.page.inner_text("#chatbot")
    assert "bell-sound.wav + low-hum.wav" in examples.nth(1).inner_text()  # the clips are named
    box = examples.nth(1).bounding_box()
    chat.page.mouse.click(box["x"] + box["width"] - 8, box["y"] + box["height"] - 8)  # a corner, not the text
    wait_for(lambda: chat.page.input_value("#input textarea") == "Compare the two clips.", timeout=10)
    wait_for(lambda: chat.page.locator("#attached li").count() == 2, timeout=10)
    chat.page.click("#input [data-testid=submit-button]")
    settle(chat, 1)
    assert chat.players("user") and len(chat.players("user")) == 2
    assert chat.page.locator("#chatbot .example").count() == 0  # the examples leave with the empty state


def test_attached_clips_show_name_duration_and_a_player_before_sending(new_chat, url, clips, tmp_path):
    chat = new_chat(url)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnot audio at all")
    chat.attach(clips["bell"], clips["hum"], broken)
    wait_for(lambda: chat.page.locator("#attached li").count() == 3, timeout=10)
    rows = chat.page.eval_on_selector_all("#attached li", "els => els.map(e => e.innerText.trim())")
    assert rows[0].startswith("bell-sound.wav") and "0:01.5" in rows[0], rows
    assert rows[1].startswith("low-hum.wav") and "0:02.5" in rows[1], rows
    assert rows[2].startswith("Cannot be used: broken.wav"), rows
    player = chat.page.locator("#attached audio").first
    assert player.get_attribute("aria-label") == "Listen to bell-sound.wav"
    # The player plays the attached file: its source is served, and is that clip.
    duration = player.evaluate("""a => new Promise(done => { a.preload = 'metadata';
        a.addEventListener('loadedmetadata', () => done(a.duration), {once: true}); a.load(); })""")
    assert abs(duration - 1.5) < 0.05
    chat.page.click("#input [data-testid=remove-file-button], #input .thumbnail-wrapper:last-child .delete-button")
    wait_for(lambda: chat.page.locator("#attached li").count() == 2, timeout=10)
    chat.ask("Which is longer?")
    settle(chat, 1)
    assert chat.page.locator("#attached li").count() == 0  # sent: the list empties with the input


def test_the_question_shows_at_once_without_waiting_for_a_decode(new_chat, url, backend, clips, tmp_path):
    chat = new_chat(url)
    clip = write_wav(tmp_path / "fresh-clip.wav", tone(1.0, 660.0, seed=5))
    chat.attach(clip)
    wait_for(lambda: "0:01.0" in chat.page.inner_text("#attached"), timeout=10)  # decoded on attach
    backend.gate.clear()  # from now on, any decode not done yet would hang
    backend.hold.clear()  # and the answer waits: its place must show that it is coming
    try:
        chat.ask("Quick?")
        wait_for(lambda: "Quick?" in user_texts(chat) and chat.players("user"), timeout=5)
        wait_for(lambda: chat.page.locator("#chatbot .thought-group").count() >= 1, timeout=5)  # the answer's place
    finally:
        backend.gate.set()
        backend.hold.set()
    settle(chat, 1)


def test_bold_text_is_drawn_in_one_font(new_chat, url):
    chat = new_chat(url)
    cdp = chat.page.context.new_cdp_session(chat.page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    for selector in ("#title-text p", "#chatbot .placeholder strong, #chatbot strong"):
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        assert len(fonts) == 1 and fonts[0]["isCustomFont"], f"{selector} mixes fonts: {fonts}"


def test_editing_an_earlier_question_continues_the_conversation_from_there(new_chat, url, backend):
    chat = new_chat(url)
    for question in ("first question", "second question", "third question"):
        chat.ask(question)
        settle(chat, len(answers(chat)) + 1)
    assert answers(chat) == ["answer to first question", "answer to second question", "answer to third question"]
    calls = len(backend.calls)
    user = chat.page.locator("#chatbot [data-testid=user]").nth(1)
    user.hover()
    chat.page.locator("#chatbot button[aria-label=Edit]").nth(1).click()
    editor = chat.page.locator("#chatbot textarea").first
    editor.fill("second question, edited")
    chat.page.get_by_role("button", name="Submit").first.click()
    wait_for(lambda: answers(chat) == ["answer to first question", "answer to second question, edited"]
             and chat.page.evaluate(IDLE), timeout=20)
    assert user_texts(chat) == ["first question", "second question, edited"]
    sent = backend.calls[calls]  # the model saw the first turn and the edited question, nothing after
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[-1]["content"][-1]["text"] == "second question, edited"


def test_the_last_answer_has_its_own_retry_and_undo(new_chat, url, backend):
    chat = new_chat(url)
    chat.ask("retry me")
    settle(chat, 1)
    calls = len(backend.calls)
    chat.page.locator("#chatbot button[aria-label=Retry]").click()
    wait_for(lambda: len(backend.calls) == calls + 1 and chat.page.evaluate(IDLE), timeout=20)
    settle(chat, 1)
    assert user_texts(chat) == ["retry me"]
    chat.page.locator("#chatbot button[aria-label=Undo]").click()
    wait_for(lambda: chat.user_messages() == 0 and chat.page.input_value("#input textarea") == "retry me", timeout=10)


def test_a_conversation_is_saved_as_a_zip_and_loaded_back(new_chat, url, clips, tmp_path):
    chat = new_chat(url, accept_downloads=True)
    chat.attach(clips["bell"])
    chat.ask("What is it?")
    settle(chat, 1)
    chat.ask("And then?")
    settle(chat, 2)
    with chat.page.expect_download() as download:
        chat.page.click("#save")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith("conversation-") and saved.suffix == ".zip"
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
        document = json.loads(archive.read("conversation.json"))
        audio = archive.read(next(n for n in names if n.startswith("audio/")))
    assert "transcript.md" in names
    assert audio == clips["bell"].read_bytes()
    texts = [m.get("text") for m in document["messages"] if m.get("text")]
    assert texts == ["What is it?", "answer to What is it?", "And then?", "answer to And then?"]

    chat.page.click("#clear")
    wait_for(lambda: chat.user_messages() == 0, timeout=10)
    chat.page.set_input_files("#load input[type=file], input[type=file][accept='.zip']", str(saved))
    wait_for(lambda: answers(chat) == ["answer to What is it?", "answer to And then?"] and chat.page.evaluate(IDLE),
             timeout=20)
    assert chat.players("user") == ["bell-sound.wav · 0:01.5"] or "bell-sound.wav" in chat.page.inner_text("#chatbot")
    chat.ask("One more?")  # the loaded conversation goes on, its audio included
    settle(chat, 3)

    bad = tmp_path / "holiday.zip"
    bad.write_bytes(b"this is no zip")
    chat.page.set_input_files("#load input[type=file], input[type=file][accept='.zip']", str(bad))
    chat.page.get_by_text("holiday.zip").first.wait_for(timeout=10000)
    assert len(answers(chat)) == 3, "a refused file replaced the chat"


@pytest.mark.parametrize("viewport", [{"width": 1180, "height": 1000}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_the_chat_fills_the_viewport_and_the_input_stays_reachable(new_chat, url, viewport):
    chat = new_chat(url, viewport=viewport)
    for i in range(6):  # more than fits: the chat scrolls inside, the page does not push the input away
        chat.ask(f"question {i} " + "with a longer text " * 6)
        settle(chat, i + 1)
    height = viewport["height"]
    chat_box = chat.page.locator("#chatbot").bounding_box()
    input_box = chat.page.locator("#input").bounding_box()
    assert input_box["y"] + input_box["height"] <= height, f"the input is below the fold: {input_box}"
    assert chat_box["height"] >= 0.45 * height, f"the chat is a small box: {chat_box} in {viewport}"
    # The page is one screen: nothing to scroll to, and no blank band below it (the chat takes the rest).
    assert chat.page.evaluate("document.documentElement.scrollHeight") <= height + 1
    footer = chat.page.locator("footer").bounding_box()
    assert height - (footer["y"] + footer["height"]) <= 80, f"a blank band below the page: {footer} in {viewport}"


def test_typing_sends_no_request_so_a_quick_send_and_its_refusal_are_not_dropped(new_chat, url, clips, tmp_path):
    chat = new_chat(url)
    chat.attach(clips["bell"])
    wait_for(lambda: "0:01.5" in chat.page.inner_text("#attached"), timeout=10)
    requests = []
    chat.page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)
    chat.page.locator("#input textarea").press_sequentially("typed key by key", delay=20)
    chat.page.wait_for_timeout(300)  # a request per keystroke would have been sent by now
    assert requests == [], f"typing sent {len(requests)} requests: {requests[:3]}"
    # A refused file, attached and sent at once: the refusal shows and stays.
    broken = tmp_path / "quick-broken.wav"
    broken.write_bytes(b"RIFF....WAVE" + bytes(range(256)) * 8)
    chat.page.locator("#input button[aria-label='Remove file']").first.click()
    chat.attach(broken)
    chat.page.click("#input [data-testid=submit-button]")
    refusal = chat.page.locator("#input .validation-error", has_text="quick-broken.wav")
    refusal.wait_for(timeout=10000)
    chat.page.wait_for_timeout(1000)
    assert refusal.is_visible(), "the refusal vanished"
    assert chat.user_messages() == 0


def test_a_question_with_audio_offers_no_pencil_that_would_do_nothing(new_chat, url, clips):
    # Gradio edits a turn's messages as text and gives up on an audio one: no edit is sent at all.
    chat = new_chat(url)
    chat.attach(clips["bell"])
    chat.ask("with audio")
    settle(chat, 1)
    chat.ask("text only")
    settle(chat, 2)
    pencils = chat.page.eval_on_selector_all("#chatbot button[aria-label=Edit]",
                                             "els => els.map(e => e.getClientRects().length > 0)")
    assert pencils == [False, True], pencils
