"""The page's screenshot set, each state checked before it is taken: desktop light, desktop dark and a
390x844 phone, each showing the empty state, an answer streaming, a stopped answer, a long-audio message
and an error. They land in artifacts/screenshots/ as ``{view}-{state}.png`` (looked at by a person before
a release; docs/images/ holds the README's).

The scripted backend splits every audio into 3 windows (the long-audio note) and writes a slow answer
that waits at its 12th word until the test lets it go, so "streaming" is caught mid-answer, not by timing.
"""

from __future__ import annotations

import threading

import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.examples import build_examples
from app_fixtures import SCREENSHOTS, ScriptedStream, ScriptedWorker, serving, wait_for
from audio_samples import tone, write_wav
from browser_fixtures import IDLE, browser, new_chat, playwright  # noqa: F401 (fixtures)

VIEWS = {
    "desktop-light": dict(viewport={"width": 1180, "height": 900}, color_scheme="light"),
    "desktop-dark": dict(viewport={"width": 1180, "height": 900}, color_scheme="dark"),
    "phone": dict(viewport={"width": 390, "height": 844}, color_scheme="light", device_scale_factor=2),
}
RELEASE = threading.Event()


ANSWER = ["It is a doorbell: a two-note chime (ding-dong) over a quiet room, ", "about three seconds long, recorded indoors."]
STORY = [f"word{i} " for i in range(200)]


class HeldStream(ScriptedStream):
    """A story's stream: its 12th word waits until RELEASE is set, or the reply is closed (Stop)."""

    def __next__(self) -> str:
        if self.emitted == 12:
            while not RELEASE.is_set():
                if self.cancelled.wait(0.02):
                    raise StopIteration
        return super().__next__()


class HeldWorker(ScriptedWorker):
    def stream(self, messages, params=None):
        stream = super().stream(messages, params)
        if "story" in str(messages[-1]["content"]):
            stream.__class__ = HeldStream
        return stream


def script(messages: list[dict], n: int) -> list[str]:
    return STORY if "story" in str(messages[-1]["content"]) else ANSWER


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    work = tmp_path_factory.mktemp("shots")
    worker = HeldWorker(reply=script, delay=0.02, windows=3)
    config = DemoConfig(max_audio_seconds=5)
    demo = build_demo(worker, config, examples=build_examples(work / "examples"), work_dir=work)
    with serving(demo, config) as served:
        yield served


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("shot-audio")
    return {"long": write_wav(d / "meeting-recording.wav", tone(4.0, 300.0, seed=3)),
            "too_long": write_wav(d / "whole-lecture.wav", tone(6.0, 250.0, seed=4))}


def shoot(chat, view: str, state: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Buttons fade between states: the picture is taken once no transition runs.
    chat.page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')", timeout=5000)
    chat.page.screenshot(path=str(SCREENSHOTS / f"{view}-{state}.png"))


@pytest.mark.parametrize("view", list(VIEWS))
def test_screenshot_set(new_chat, url, audio, view):
    chat = new_chat(url, **VIEWS[view])
    page = chat.page
    assert page.evaluate("document.body.classList.contains('dark')") == ("dark" in view)
    assert page.locator("#chatbot .example").count() >= 4 and "Ask about any audio" in page.inner_text("#chatbot")
    shoot(chat, view, "empty")

    chat.attach(audio["long"])
    wait_for(lambda: "0:04.0" in page.inner_text("#attached"), timeout=10)
    chat.ask("What is this sound?")
    wait_for(lambda: "recorded indoors" in page.inner_text("#chatbot") and page.evaluate(IDLE), timeout=20)
    page.locator("#chatbot .thought-group", has_text="split into 3 windows").wait_for()
    shoot(chat, view, "long-audio")

    RELEASE.clear()
    chat.ask("Now tell me a story about it.")
    wait_for(lambda: "word11" in page.inner_text("#chatbot"), timeout=20)
    assert page.locator("#stop").is_enabled()
    shoot(chat, view, "streaming")

    page.click("#stop")
    chat.wait_idle(timeout=10)
    RELEASE.set()
    page.locator("#chatbot .thought-group", has_text="Stopped").wait_for()
    assert "word12" not in page.inner_text("#chatbot")
    shoot(chat, view, "stopped")

    chat.attach(audio["too_long"])
    page.locator("#attached li.unusable", has_text="whole-lecture.wav: the audio is 6 s long").wait_for()
    chat.ask("And this one?")
    refused = page.get_by_text("whole-lecture.wav: the audio is 6 s long; the limit is 5 s. Remove it")
    refused.wait_for()
    shoot(chat, view, "error")
    assert refused.is_visible(), "the refusal was gone from the picture"
