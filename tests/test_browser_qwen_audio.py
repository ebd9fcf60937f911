"""The page on first-generation Qwen-Audio, in a real browser: Playwright driving Debian's Chromium against
the demo served in-process on the tiny random Qwen-Audio-Chat and Qwen-Audio (base) checkpoints.

Every answer is checked against the worker's own greedy reply to the conversation the page should send,
shown as the page shows it (timestamps as readable times). The tiny random model emits ``<|s.ss|>``
timestamps on its own, so here the timestamps and their clips come from the real pipeline, not a script.
Screenshots (``qa-*.png``) go to artifacts/screenshots/.
"""

from __future__ import annotations

import io
import re
import threading
import unicodedata
import wave
from pathlib import Path

import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.timestamps import Clip, clip_ranges, find_timestamps, render_timestamps
from app_fixtures import serving, wait_for
from audio_samples import tone, write_wav
from browser_fixtures import Chat, browser, new_chat, playwright  # noqa: F401 (fixtures)
from model import BaseTask, GenerationParams, ModelWorker

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: Reply lengths of the served demos: long enough to stream in several updates, and for the timestamps
#: page short enough for a few clips (the tiny model on 30 s of audio writes a timestamp every other token).
CHAT_TOKENS = 64
STAMPS_TOKENS = 6
BASE_TOKENS = 40
STAMPS_SECONDS = 30.0  # one encoder window: the times are the file's own
#: Fixed questions tried in order for a reply with a time range inside the audio.
STAMPS_QUESTIONS = ("When does the beep start and end?", "Give the start and end time of each sound.",
                    "Where in the recording is the tone?", "What happens, and when?")
#: Watches the last answer while it streams: every length it shows, and whether a raw token ever showed.
WATCH = """() => {
  window.__lengths = []; window.__raw = [];
  new MutationObserver(() => {
    const bots = document.querySelectorAll('#chatbot [data-testid=bot] .message-content');
    const text = bots.length ? bots[bots.length - 1].innerText : '';
    if (text && window.__lengths[window.__lengths.length - 1] !== text.length) window.__lengths.push(text.length);
    if (/<\\|/.test(document.querySelector('#chatbot').innerText)) window.__raw.push(text);
  }).observe(document.querySelector('#chatbot'), {childList: true, subtree: true, characterData: true});
}"""
TIMES = "els => els.map(e => e.innerText)"
TIME_ELEMENT = re.compile(r"<time[^>]*>([^<]*)</time>")


def greedy(tokens: int) -> GenerationParams:
    return GenerationParams(temperature=0, max_new_tokens=tokens, repetition_penalty=1.0)


def shown(reply: str, windows: int = 1) -> tuple[str, list[str]]:
    """What the page should show of ``reply``: its visible text (each timestamp as its readable time) and
    the readable times, in order."""
    rendered = render_timestamps(reply, windows)
    return TIME_ELEMENT.sub(lambda m: m.group(1), rendered), TIME_ELEMENT.findall(rendered)


def words(text: str) -> list[str]:
    """The letters and digits of ``text`` in runs: what survives Markdown rendering and innerText unchanged
    (control characters, spacing and markup characters of the tiny model's gibberish do not)."""
    return re.findall(r"\w+", unicodedata.normalize("NFC", text))


def clip_labels(reply: str, seconds: float) -> list[str]:
    """The labels of the clips the page should cut for ``reply`` about audio of ``seconds``."""
    return [Clip(start, end, Path()).label for start, end in clip_ranges(find_timestamps(reply), seconds)]


def assert_shown_as(chat: Chat, reply: str, windows: int = 1) -> None:
    """The last answer on the page is ``reply``, rendered: the same readable times and the same words."""
    text, times = shown(reply, windows)
    assert chat.page.locator("#chatbot [data-testid=bot] .message-content").last.locator("time").all_inner_texts() == times
    on_page = chat.bot_texts()[-1]
    assert "<|" not in on_page
    assert words(on_page) == words(text), f"page: {on_page!r}\nworker: {text!r}"


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("qwen-audio-browser")
    beep = tone(STAMPS_SECONDS, 1000.0, seed=21)
    beep[: 12 * 16000] *= 0.02
    beep[18 * 16000:] *= 0.02
    return {
        "speech": write_wav(d / "question.wav", tone(2.0, 300.0, seed=1)),
        "long": write_wav(d / "beep30.wav", beep),
    }


@pytest.fixture(scope="module")
def first_question(audio, qwen_audio_worker) -> tuple[str, list[dict], str]:
    """The chat pages' first question about the 2 s clip, its conversation and the worker's greedy reply."""
    question = "What is said in this clip?"
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(audio["speech"])},
                                             {"type": "text", "text": question}]}]
    return question, messages, qwen_audio_worker.generate(messages, greedy(CHAT_TOKENS))


def serve(worker, tokens: int, work_dir: Path):
    config = DemoConfig(temperature=0.0, max_new_tokens=tokens, repetition_penalty=1.0)
    return serving(build_demo(worker, config, work_dir=work_dir), config)


@pytest.fixture(scope="module")
def chat_url(qwen_audio_worker, tmp_path_factory):
    with serve(qwen_audio_worker, CHAT_TOKENS, tmp_path_factory.mktemp("qwen-audio-chat-demo")) as url:
        yield url


@pytest.fixture(scope="module")
def stamps_url(qwen_audio_worker, tmp_path_factory):
    with serve(qwen_audio_worker, STAMPS_TOKENS, tmp_path_factory.mktemp("qwen-audio-stamps-demo")) as url:
        yield url


@pytest.fixture(scope="module")
def base_worker(tiny_qwen_audio_base_checkpoint):
    return ModelWorker.from_pretrained(str(tiny_qwen_audio_base_checkpoint), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def base_url(base_worker, tmp_path_factory):
    with serve(base_worker, BASE_TOKENS, tmp_path_factory.mktemp("qwen-audio-base-demo")) as url:
        yield url


def test_chat_page_names_the_family_streams_the_worker_reply_and_follows_up(new_chat, chat_url, audio, first_question,
                                                                            qwen_audio_worker):
    chat = new_chat(chat_url, viewport=DESKTOP)
    assert chat.page.title() == "Qwen-Audio chat"
    assert chat.page.inner_text("#title-text").strip() == "Qwen-Audio chat"
    badge = chat.page.inner_text("#model-badge")
    assert "(Qwen-Audio chat)" in badge and "RANDOM WEIGHTS" in badge, badge
    assert not chat.page.locator("#task-row").is_visible(), "a chat checkpoint has no task selector"

    question, first, expected = first_question
    assert expected.strip()

    chat.attach(audio["speech"])
    chat.page.evaluate(WATCH)
    # The model waits at its 12th step until the page has shown the words so far: the reply must be seen
    # growing however fast this machine generates (no timing involved).
    model, held, release = qwen_audio_worker.model, threading.Event(), threading.Event()
    steps = iter(range(10_000))
    forward = model.forward

    def held_forward(*args, **kwargs):
        if next(steps) == 12:
            held.set()
            release.wait(30)
        return forward(*args, **kwargs)

    model.forward = held_forward
    try:
        chat.ask(question)
        wait_for(held.is_set, timeout=30)
        wait_for(lambda: chat.page.evaluate("window.__lengths").__len__() >= 1, timeout=10)
        partial = chat.page.evaluate("window.__lengths")[-1]
    finally:
        release.set()
        del model.forward
    chat.answer(1)
    lengths: list[int] = chat.page.evaluate("window.__lengths")
    assert 0 < partial < lengths[-1] and len(lengths) >= 2, f"the reply did not grow in steps: {lengths}"
    assert lengths == sorted(lengths)
    assert chat.players("user") == ["question.wav · 0:02.0"]
    assert_shown_as(chat, expected)
    wait_for(lambda: chat.players("bot") == clip_labels(expected, 2.0), timeout=10)  # its times, cut from the clip

    follow_up = "And what else can you hear?"
    second = first + [{"role": "assistant", "content": expected},
                      {"role": "user", "content": [{"type": "text", "text": follow_up}]}]
    expected_follow_up = qwen_audio_worker.generate(second, greedy(CHAT_TOKENS))
    chat.ask(follow_up, enter=True)
    chat.answer(2, timeout=60)
    assert chat.user_messages() == 3  # the audio, the question, the follow-up
    assert_shown_as(chat, expected_follow_up)
    chat.shot("qa-01-chat")


def test_timestamps_show_as_readable_times_with_playable_clips(new_chat, stamps_url, audio, qwen_audio_worker):
    long = audio["long"]
    found = None
    for question in STAMPS_QUESTIONS:
        messages = [{"role": "user", "content": [{"type": "audio", "audio": str(long)},
                                                 {"type": "text", "text": question}]}]
        reply = qwen_audio_worker.generate(messages, greedy(STAMPS_TOKENS))
        times = find_timestamps(reply)
        inside = [(a, b) for a, b in zip(times[0::2], times[1::2]) if 0 <= min(a, b) < max(a, b) <= STAMPS_SECONDS]
        if inside:  # a (start, end) pair as the page pairs them, both ends within the audio
            found = question, reply
            break
    assert found, "precondition: no fixed question got a greedy reply with a time range inside the audio"
    question, reply = found
    labels = clip_labels(reply, STAMPS_SECONDS)
    assert labels

    chat = new_chat(stamps_url, viewport=DESKTOP)
    clips: list[str] = []
    chat.page.on("request", lambda r: clips.append(r.url) if "/clips/" in r.url else None)
    chat.attach(long)
    chat.page.evaluate(WATCH)
    chat.ask(question)
    chat.answer(1)
    wait_for(lambda: chat.players("bot"), timeout=15)
    times_shown = chat.page.eval_on_selector_all("#chatbot [data-testid=bot] time", TIMES)
    assert len(times_shown) >= 2 and all(re.fullmatch(r"\d+:\d\d\.\d\d", t) for t in times_shown), times_shown
    assert_shown_as(chat, reply)
    assert "<|" not in chat.page.inner_text("#chatbot")
    assert chat.page.evaluate("window.__raw") == [], "a raw timestamp token showed while the answer streamed"
    assert chat.players("user") == ["beep30.wav · 0:30.0"]
    assert chat.players("bot") == labels
    # Each clip has a Play button, and the file behind it is served: a WAV as long as its range.
    players = chat.page.locator("#chatbot [data-testid=bot] [data-testid^=waveform-]")
    assert players.locator("button[aria-label=Play]").count() == len(labels)
    ranges = clip_ranges(find_timestamps(reply), STAMPS_SECONDS)
    wait_for(lambda: len(set(clips)) == len(ranges), timeout=15)  # each player loads its clip
    for link, (start, end) in zip(sorted(set(clips), key=clips.index), ranges):
        response = chat.page.request.get(link)
        assert response.ok, link
        with wave.open(io.BytesIO(response.body())) as clip:
            assert abs(clip.getnframes() / clip.getframerate() - (end - start)) < 0.01
    chat.shot("qa-02-timestamps")


def test_base_page_transcribes_in_english_with_timestamps(new_chat, base_url, audio, base_worker):
    chat = new_chat(base_url, viewport=DESKTOP)
    assert chat.page.title() == "Qwen-Audio chat"
    badge = chat.page.inner_text("#model-badge")
    assert "(Qwen-Audio base)" in badge and "RANDOM WEIGHTS" in badge, badge
    for part in ("#task-row", "#task", "#language", "#timestamps"):
        assert chat.page.locator(part).is_visible(), part

    chat.page.locator("#task").get_by_text("Transcribe", exact=True).click()
    chat.page.click("#language input")
    chat.page.get_by_role("option", name="English", exact=True).click()
    wait_for(lambda: chat.page.input_value("#language input") == "English")
    chat.page.check("#timestamps input[type=checkbox]")
    assert chat.page.locator("#task input[value=transcribe]").is_checked()

    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(audio["speech"])},
                                             BaseTask("transcribe", "en", True).as_item()]}]
    expected = base_worker.generate(messages, greedy(BASE_TOKENS))
    assert expected.strip()
    chat.attach(audio["speech"])
    chat.ask("")
    chat.answer(1)
    assert chat.players("user") == ["question.wav · 0:02.0"]
    assert_shown_as(chat, expected)
    chat.shot("qa-03-base-tasks")


@pytest.mark.parametrize("layout", ["dark", "phone"])
def test_chat_page_in_dark_mode_and_on_a_phone(new_chat, chat_url, audio, first_question, layout):
    options = {"color_scheme": "dark", "viewport": DESKTOP} if layout == "dark" else {
        "viewport": PHONE, "is_mobile": True, "has_touch": True}
    chat = new_chat(chat_url, **options)
    question, _, expected = first_question
    chat.attach(audio["speech"])
    chat.ask(question)
    chat.answer(1)
    assert_shown_as(chat, expected)
    wait_for(lambda: chat.players("bot") == clip_labels(expected, 2.0), timeout=10)
    if layout == "dark":
        assert chat.page.evaluate("document.body.classList.contains('dark')"), "Gradio did not follow the dark scheme"
        shade = chat.page.evaluate("""() => {
          const [r, g, b] = getComputedStyle(document.querySelector('.gradio-container')).backgroundColor
            .match(/\\d+/g).map(Number);
          return (r + g + b) / 3;
        }""")
        assert shade < 80, f"the page background is not dark: {shade}"
        chat.shot("qa-04-chat-dark")
    else:
        width = chat.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is wider than the phone: {width} px"
        assert chat.page.locator("#input [data-testid=submit-button]").is_visible()
        chat.shot("qa-05-chat-phone", full_page=False)  # what the phone shows: 390x844
