"""The page in a real browser: Playwright driving Debian's Chromium against the demo served in-process.

Real-pipeline scenarios run on the tiny checkpoint's worker; what the tiny random model cannot produce
(timestamps, a reply slow enough to Stop, a countable script for Regenerate/Undo) runs on a scripted
backend. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app_fixtures import ScriptedWorker, serving, wait_for
from audio_samples import ffmpeg_convert, tone, write_wav
from browser_fixtures import CHROMIUM, FLAGS, IDLE, VIEWPORT, Chat, browser, new_chat, playwright  # noqa: F401 (fixtures)


def script(messages: list[dict], n: int) -> list[str]:
    """The scripted backend's answers, chosen by the question."""
    last = messages[-1]["content"]
    question = " ".join(i.get("text", "") for i in last if i.get("type") == "text") if isinstance(last, list) else last
    if "beep" in question:
        return ["The beep ", "lasts from ", "<|2.00|>", " to ", "<|3.00|>", "."]
    if "slow" in question:
        return [f"word{i} " for i in range(400)]
    return ["answer ", str(n)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("browser-audio")
    beep = tone(5.0, 1000.0, seed=5)
    beep[: 2 * 16000] *= 0.02
    beep[3 * 16000:] *= 0.02
    files = {
        "speech": write_wav(d / "question.wav", tone(2.0, 300.0, seed=1)),
        "other": ffmpeg_convert(write_wav(d / "other.wav", tone(1.5, 500.0, seed=2)), d / "other.mp3"),
        "beep": write_wav(d / "beep.wav", beep),
        "mic": write_wav(d / "mic.wav", tone(6.0, 440.0, seed=3), sr=44100),
    }
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + bytes(range(256)) * 8)
    files["corrupt"] = corrupt
    return files


@pytest.fixture(scope="module")
def tiny_url(worker, tmp_path_factory):
    config = DemoConfig(temperature=0.0, max_new_tokens=160, repetition_penalty=1.0)
    demo = build_demo(worker, config, work_dir=tmp_path_factory.mktemp("tiny-demo"))
    with serving(demo, config) as url:
        yield url


@pytest.fixture(scope="module")
def scripted():
    return ScriptedWorker(reply=script, delay=0.03)


@pytest.fixture(scope="module")
def scripted_demo(scripted, tmp_path_factory):
    config = DemoConfig(examples=False)
    return build_demo(scripted, config, work_dir=tmp_path_factory.mktemp("scripted-demo")), config


@pytest.fixture(scope="module")
def scripted_url(scripted_demo):
    with serving(*scripted_demo) as url:
        yield url


def test_upload_ask_streams_then_follow_up_with_enter(new_chat, tiny_url, clips):
    chat = new_chat(tiny_url)
    requested: list[str] = []
    chat.page.on("request", lambda r: requested.append(r.url))
    chat.page.reload(wait_until="domcontentloaded")
    chat.page.wait_for_function(IDLE, timeout=20000)
    chat.attach(clips["speech"])
    # Every length the answer shows, as the page renders it (polling from here would miss updates).
    chat.page.evaluate("""() => {
      window.__lengths = [];
      new MutationObserver(() => {
        const bots = document.querySelectorAll('#chatbot [data-testid=bot] .message-content');
        const n = bots.length ? bots[bots.length - 1].innerText.length : 0;
        if (n && window.__lengths[window.__lengths.length - 1] !== n) window.__lengths.push(n);
      }).observe(document.querySelector('#chatbot'), {childList: true, subtree: true, characterData: true});
    }""")
    chat.ask("What is said in this clip?")
    chat.answer(1)
    lengths: list[int] = chat.page.evaluate("window.__lengths")
    assert len(lengths) >= 3, f"the reply did not grow in steps: {lengths}"
    assert lengths == sorted(lengths)
    assert chat.players("user") == ["question.wav · 0:02.0"]
    assert chat.page.title() == "Qwen2-Audio chat"
    assert "RANDOM WEIGHTS" in chat.page.inner_text("#model-badge")  # the model and device are named
    chat.shot("01-tiny-first-answer")

    chat.ask("And what else can you hear?", enter=True)
    assert chat.answer(2)
    assert chat.user_messages() == 3
    chat.shot("02-tiny-follow-up")
    remote = [u for u in requested if urlparse(u).hostname not in ("127.0.0.1", "localhost", None)
              and not u.startswith(("data:", "blob:"))]
    assert remote == [], f"the page loaded from other hosts: {remote[:5]}"


def test_two_audios_in_one_turn(new_chat, tiny_url, clips):
    chat = new_chat(tiny_url)
    chat.attach(clips["speech"], clips["other"])
    chat.ask("Compare the two clips.")
    assert chat.answer(1)
    assert chat.players("user") == ["question.wav · 0:02.0", "other.mp3 · 0:01.5"]
    chat.shot("03-tiny-two-audios")


def test_an_example_fills_the_input_and_is_answered(new_chat, tiny_url):
    chat = new_chat(tiny_url)
    chat.page.get_by_text("Describe this music: instrument, tempo and mood.").first.click()
    wait_for(lambda: chat.page.input_value("#input textarea") == "Describe this music: instrument, tempo and mood.")
    chat.page.click("#input [data-testid=submit-button]")
    assert chat.answer(1)
    assert chat.players("user") == ["melody.wav · 0:08.0"]


def test_microphone_recording_is_answered(playwright, tiny_url, clips):
    flags = FLAGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={clips['mic']}"]
    if True:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            context = browser.new_context(viewport=VIEWPORT, permissions=["microphone"])
            chat = Chat(context.new_page(), tiny_url)
            chat.page.click("#input [data-testid=microphone-button]")
            chat.page.get_by_role("button", name="Start recording").click()
            chat.page.wait_for_timeout(2000)
            chat.page.get_by_role("button", name="Stop recording").click()
            chat.page.get_by_role("button", name="Attach audio").click()
            wait_for(lambda: chat.page.locator("#input [data-testid=submit-button]").is_enabled(), timeout=10)
            chat.ask("What did I just say?")
            assert chat.answer(1)
            (label,) = chat.players("user")
            assert label.startswith("audio.wav · 0:0"), label
            chat.shot("04-tiny-microphone")
        finally:
            browser.close()


def test_stop_mid_reply_cancels_generation_and_gives_the_input_back(new_chat, scripted_url, scripted):
    chat = new_chat(scripted_url)
    chat.ask("Tell me a slow story.")
    wait_for(lambda: (texts := chat.bot_texts()) and len(texts[-1]) > 20, timeout=15)
    stream = scripted.streams[-1]
    chat.page.click("#stop")
    wait_for(lambda: stream in scripted.cancelled, timeout=3)
    chat.wait_idle(timeout=5)
    stopped = chat.bot_texts()[-1]
    time.sleep(0.5)
    assert chat.bot_texts()[-1] == stopped, "the reply kept growing after Stop"
    assert 20 < len(stopped) < len("".join(f"word{i} " for i in range(400)))
    chat.shot("05-stopped")
    chat.ask("Are you still there?", enter=True)
    assert chat.answer(2).startswith("answer ")

    # The input's own stop icon does the same.
    chat.ask("Another slow one, please.")
    wait_for(lambda: len(chat.bot_texts()) == 3 and len(chat.bot_texts()[-1]) > 20, timeout=15)
    stream = scripted.streams[-1]
    chat.page.click("#input button[aria-label=Stop]")
    wait_for(lambda: stream in scripted.cancelled, timeout=3)
    chat.wait_idle(timeout=5)


def test_regenerate_undo_and_clear(new_chat, scripted_url):
    chat = new_chat(scripted_url)
    chat.ask("First question")
    first = chat.answer(1)
    chat.page.click("#regenerate")
    wait_for(lambda: (texts := chat.bot_texts()) and texts[-1] != first and chat.page.evaluate(IDLE), timeout=15)
    assert len(chat.bot_texts()) == 1 and chat.bot_texts()[0].startswith("answer ")
    chat.shot("06-regenerated")

    chat.page.click("#undo")
    wait_for(lambda: chat.user_messages() == 0, timeout=10)
    assert chat.bot_texts() == []
    assert chat.page.input_value("#input textarea") == "First question"  # the question comes back to the input

    chat.page.press("#input textarea", "Enter")
    assert chat.answer(1)
    chat.page.click("#clear")
    wait_for(lambda: chat.user_messages() == 0 and not chat.bot_texts(), timeout=10)
    chat.ask("After clearing")
    assert chat.answer(1) and chat.user_messages() == 1


def test_corrupt_file_shows_an_error_and_keeps_the_chat(new_chat, scripted_url, clips):
    chat = new_chat(scripted_url)
    chat.ask("hello")
    chat.answer(1)
    chat.attach(clips["corrupt"])
    chat.ask("and this one?")
    # Said beside the file in the input's list as soon as it is attached, and next to the input when sent.
    chat.page.locator("#attached li.unusable", has_text="corrupt.wav: is not an audio file").wait_for(timeout=10000)
    error = chat.page.locator("#input .validation-error", has_text="corrupt.wav: is not an audio file")
    error.wait_for(timeout=10000)
    assert error.is_visible()
    assert chat.user_messages() == 1 and len(chat.bot_texts()) == 1  # the chat is intact
    assert chat.page.evaluate(IDLE) and chat.page.input_value("#input textarea") == "and this one?"
    chat.shot("07-corrupt-file")


def test_timestamps_become_readable_times_with_clips(new_chat, scripted_url, clips):
    chat = new_chat(scripted_url)
    chat.attach(clips["beep"])
    chat.ask("When does the beep happen?")
    chat.answer(1)
    wait_for(lambda: chat.players("bot"), timeout=10)
    times = chat.page.eval_on_selector_all("#chatbot [data-testid=bot] time", "els => els.map(e => e.innerText)")
    assert times == ["0:02.00", "0:03.00"]
    assert "<|" not in chat.bot_texts()[-1]
    assert chat.players("bot") == ["0:02.00 – 0:03.00"]
    chat.shot("08-timestamps-and-clips")


def test_sessions_are_private(new_chat, scripted_url):
    alice = new_chat(scripted_url)
    bob = new_chat(scripted_url)
    alice.ask("Alice's secret question")
    alice.answer(1)
    bob.page.reload(wait_until="domcontentloaded")
    bob.page.wait_for_function(IDLE, timeout=20000)
    assert bob.user_messages() == 0 and bob.bot_texts() == []
    bob.ask("Bob's question")
    bob.answer(1)
    assert alice.user_messages() == 1 and "Bob" not in alice.page.inner_text("#chatbot")


def test_closing_a_tab_deletes_its_uploads_and_clips_and_other_tabs_keep_theirs(new_chat, scripted_demo, scripted_url,
                                                                                 clips):
    files = scripted_demo[0].temp_files
    stays = new_chat(scripted_url)
    stays.attach(clips["other"])
    stays.ask("Describe it.")
    stays.answer(1)
    before = set(files.sessions())
    leaves = new_chat(scripted_url)
    leaves.attach(clips["beep"])
    leaves.ask("When does the beep happen?")
    leaves.answer(1)
    wait_for(lambda: leaves.players("bot"), timeout=10)
    (session,) = set(files.sessions()) - before
    theirs = files.sessions()[session]
    assert sorted(os.path.basename(p) for p in theirs) == ["beep.wav", "clip1_2.00-3.00.wav"]
    assert all(os.path.isfile(p) for p in theirs)
    kept = files.held() - theirs
    assert any(p.endswith("other.mp3") for p in kept)

    leaves.page.close()
    wait_for(lambda: not any(os.path.exists(p) for p in theirs), timeout=30)
    assert session not in files.sessions()
    assert all(os.path.isfile(p) for p in kept), "the open tab's audio stays"
    stays.ask("And a follow-up?")
    assert stays.answer(2).startswith("answer ") and len(stays.bot_texts()) == 2 and stays.players("user")


def test_a_follow_up_about_a_deleted_upload_is_refused_with_a_sentence_and_the_chat_stays(new_chat, scripted_demo,
                                                                                           scripted_url, clips):
    files = scripted_demo[0].temp_files
    before = set(files.sessions())
    chat = new_chat(scripted_url)
    chat.attach(clips["speech"])
    chat.ask("What is said?")
    chat.answer(1)
    shown = chat.user_messages()
    (session,) = set(files.sessions()) - before
    (upload,) = files.sessions()[session]
    os.remove(upload)  # as the TTL or the disk cap would, while the tab stays open
    chat.ask("And the follow-up?")
    toast = chat.page.get_by_text("question.wav is no longer on the server")
    toast.wait_for(timeout=10000)
    chat.wait_idle()
    assert chat.user_messages() == shown and len(chat.bot_texts()) == 1, "the chat is as it was"
    assert chat.page.input_value("#input textarea") == "And the follow-up?", "the question is back in the input"
    chat.page.wait_for_timeout(500)  # the toast's fade-in
    chat.shot("12-deleted-upload", full_page=False)  # the toast is fixed to the viewport


def test_a_chinese_browser_gets_chinese_labels(new_chat, scripted_url):
    chat = new_chat(scripted_url, locale="zh-CN")
    for text in ("重新生成", "撤销", "清空", "设置"):
        assert chat.page.get_by_text(text, exact=True).first.is_visible(), text
    assert chat.page.get_attribute("#input textarea", "placeholder").startswith("就你的音频提问")
    chat.ask("")  # an empty question is refused in Chinese, next to the input
    chat.page.get_by_text("请先输入问题或附加音频。").wait_for(timeout=10000)
    chat.shot("09-chinese")
