"""Voice mode in Chromium, whose fake capture device plays a prepared file as the microphone.

The file: silence, a spoken question, 1 s of silence, a second one, 2.5 s of silence, a third one,
silence. Voice mode turns the first two into audio-only turns by itself; each is answered by the tiny
random checkpoint through the real pipeline (Silero VAD, the worker). The second answer is an
event-driven stand-in that holds until it is stopped, so that the third utterance comes while it is
being written: talking stops it (barge-in). The browser's speech synthesis is replaced by a spy.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.service import ChatService
from app_fixtures import ScriptedStream, serving, wait_for
from audio_samples import speak, trim, write_wav
from browser_fixtures import CHROMIUM, FLAGS, IDLE, playwright  # noqa: F401 - fixtures
from model.audio import SAMPLE_RATE

SR = SAMPLE_RATE
#: Voice mode's pause for these tests (0.8 s by default): the file's 1 s silences end an utterance.
PAUSE_MS = 500
#: Replaces the browser's speech synthesis with a recorder (before the page's own script runs).
SPY = """
window.__spoken = []; window.__silenced = 0;
speechSynthesis.speak = (u) => window.__spoken.push(u.text);
speechSynthesis.cancel = () => { window.__silenced += 1; };
"""


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """The fake microphone's file, and where each of its three utterances' speech is (seconds)."""
    out = tmp_path_factory.mktemp("voice")
    said = [trim(speak(t, out / f"q{i}")) for i, t in enumerate(
        ["What is the weather like today?", "Tell me a long story about a cat.", "Stop, please."])]
    parts, spans, t = [], [], 0.0
    for gap, speech in zip([0.5, 1.0, 2.5], said):
        parts += [np.zeros(int(gap * SR), np.float32), speech]
        spans.append((t + gap, t + gap + len(speech) / SR))
        t += gap + len(speech) / SR
    parts.append(np.zeros(int(4.0 * SR), np.float32))
    return write_wav(out / "microphone.wav", np.concatenate(parts)), spans


class HeldSecond:
    """The worker, except that the second request is answered by a stand-in that writes three words and
    then holds until it is closed (by barge-in)."""

    def __init__(self, worker):
        self.worker = worker
        self.info, self.family, self.decode_audio = worker.info, worker.family, worker.decode_audio
        self.voice_detector = worker.voice_detector
        self.calls: list[list[dict]] = []
        self.held: ScriptedStream | None = None
        self.holding = threading.Event()

    def stream(self, messages, params=None):
        self.calls.append(list(messages))
        if len(self.calls) != 2:
            return self.worker.stream(messages, params)
        held = self

        class Held(ScriptedStream):
            def __next__(self):
                if self.emitted == 3:
                    held.holding.set()
                    self.cancelled.wait(60)
                    raise StopIteration
                return super().__next__()

        self.held = Held(["Once ", "upon ", "a "] + ["time "] * 50, 0.01, [], lambda s: None)
        return self.held


@pytest.fixture(scope="module")
def site(worker, tmp_path_factory):
    config = DemoConfig(examples=False, temperature=0.0, max_new_tokens=4, vad_pause_ms=PAUSE_MS)
    service = ChatService(worker, config)
    held = HeldSecond(worker)
    service.backend = held
    demo = build_demo(service, config, work_dir=tmp_path_factory.mktemp("voice-site"))
    with serving(demo, config) as url:
        yield url, held


def open_page(playwright, url, microphone_file=None, extra=()):  # noqa: F811
    flags = FLAGS + list(extra)
    if microphone_file:
        flags += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={microphone_file}%noloop"]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
    context = browser.new_context(viewport={"width": 1180, "height": 1000})
    context.add_init_script(SPY)
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#voice-mode input", timeout=20000)
    page.wait_for_function(IDLE, timeout=20000)
    return browser, page


def states(page) -> list[str]:
    return page.evaluate("window.__states || []")


#: Records every state the status line shows (the test reads them afterwards).
WATCH_STATES = """() => {
  window.__states = [];
  const note = () => {
    const s = document.querySelector('#voice-status .voice-status');
    const state = s && s.dataset.state;
    if (state && window.__states[window.__states.length - 1] !== state) window.__states.push(state);
  };
  new MutationObserver(note).observe(document.querySelector('#voice-status'), {subtree: true, childList: true, attributes: true});
}"""


def voice_turns(page) -> list[str]:
    return page.eval_on_selector_all("#chatbot [data-testid=user] [data-testid^=waveform-]",
                                     "els => els.map(e => e.getAttribute('aria-label'))")


def answers(page) -> list[str]:
    return page.eval_on_selector_all("#chatbot [data-testid=bot] .message-content",
                                     "els => els.filter(e => !e.closest('.thought-group')).map(e => e.innerText.trim())")


def notes(page) -> list[str]:
    return page.eval_on_selector_all("#chatbot .thought-group", "els => els.map(e => e.innerText.trim())")


def test_talking_makes_turns_that_are_answered_and_talking_over_an_answer_stops_it(playwright, site, microphone):  # noqa: F811
    url, held = site
    file, spans = microphone
    browser, page = open_page(playwright, url, file)
    try:
        page.evaluate(WATCH_STATES)
        page.click("#read-aloud input")
        page.click("#voice-mode input")  # the one click: from here on, only talking
        # The first utterance: an audio-only turn, answered by the model, read aloud.
        wait_for(lambda: len(voice_turns(page)) >= 1 and len(answers(page)) >= 1 and page.evaluate(IDLE), timeout=30)
        first_answer = answers(page)[0]
        assert first_answer
        wait_for(lambda: first_answer in page.evaluate("window.__spoken"), timeout=10)
        # The second: answered by the held stand-in, which writes three words and waits.
        assert held.holding.wait(30), "the second utterance was not turned into a question"
        wait_for(lambda: "Once upon a" in " ".join(answers(page)), timeout=10)
        silenced_before = page.evaluate("window.__silenced")
        # The third utterance, while the second answer is being written, stops it (and read-aloud).
        wait_for(lambda: held.held.cancelled.is_set(), timeout=30)
        wait_for(lambda: len(voice_turns(page)) == 3 and len(answers(page)) >= 3 and page.evaluate(IDLE), timeout=30)
        assert page.evaluate("window.__silenced") > silenced_before
        # Everything answered: the line says it is listening again.
        wait_for(lambda: page.get_attribute("#voice-status .voice-status", "data-state") == "listening", timeout=10)
    finally:
        shown = dict(turns=voice_turns(page), answers=answers(page), notes=notes(page), states=states(page),
                     spoken=page.evaluate("window.__spoken"))
        browser.close()
    turns, said = shown["turns"], shown["answers"]
    # Three voice turns, each a clip of the speech with the silence trimmed (0.2 s kept on each side).
    assert [t.split(" · ")[0] for t in turns] == ["voice 1", "voice 2", "voice 3"], turns
    for label, (start, end) in zip(turns, spans):
        minutes, seconds = label.split(" · ")[1].split(":")
        assert abs(int(minutes) * 60 + float(seconds) - (end - start + 0.4)) < 0.35, (label, end - start)
    # Each turn reached the model as audio only: voice chat, the spoken words are the question.
    assert len(held.calls) == 3
    for messages in held.calls:
        last = messages[-1]
        assert last["role"] == "user" and [item["type"] for item in last["content"]] == ["audio"], last
    # The second answer was cut and marked stopped; the first and third ran to their end.
    assert said[1].startswith("Once upon a") and "time" not in said[1]
    assert any("Stopped" in n for n in shown["notes"]), shown["notes"]
    assert said[0] and said[2]
    # Read aloud: the finished answers, not the stopped one.
    assert shown["spoken"][0] == said[0] and said[2] in shown["spoken"]
    assert not any(s.startswith("Once upon a") for s in shown["spoken"])
    # The status line went through every state.
    for state in ("listening", "hearing", "thinking", "answering"):
        assert state in shown["states"], shown["states"]


def test_on_plain_http_the_switch_says_why_the_microphone_cannot_start(playwright, site):  # noqa: F811
    url, _ = site
    port = url.rstrip("/").rsplit(":", 1)[1]
    # A name other than localhost over http: the browser gives such a page no microphone.
    browser, page = open_page(playwright, f"http://voice-demo.test:{port}/",
                              extra=["--host-resolver-rules=MAP voice-demo.test 127.0.0.1"])
    try:
        assert page.evaluate("window.isSecureContext") is False
        page.click("#voice-mode input")
        page.wait_for_selector("#voice-problem", timeout=10000)
        problem = page.inner_text("#voice-problem")
        assert "https://" in problem and f"http://voice-demo.test:{port}" in problem
        wait_for(lambda: not page.is_checked("#voice-mode input"), timeout=10)  # the switch goes back off
        # The page keeps working: a typed question is answered.
        page.fill("#input textarea", "hello")
        page.click("#input [data-testid=submit-button]")
        wait_for(lambda: answers(page) and page.evaluate(IDLE), timeout=30)
    finally:
        browser.close()


def voice_switches(demo) -> int:
    return sum(getattr(b, "elem_id", None) == "voice-mode" for b in demo.blocks.values())


def test_the_switch_is_offered_only_where_the_backend_can_hear_and_the_config_allows(worker, tmp_path):
    """A backend without a voice detector (a remote server's) gets no switch; ``--no-voice`` removes it."""
    from app_fixtures import ScriptedWorker

    assert voice_switches(build_demo(worker, DemoConfig(examples=False), work_dir=tmp_path / "a")) == 1
    assert voice_switches(build_demo(worker, DemoConfig(examples=False, voice=False), work_dir=tmp_path / "b")) == 0
    assert voice_switches(build_demo(ScriptedWorker(), DemoConfig(examples=False), work_dir=tmp_path / "c")) == 0
