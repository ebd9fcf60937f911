"""The Transcribe page in a real Chromium: drop a recording, watch the progress and the segments come in,
play a segment, download an .srt that parses; Stop; the link between the two pages.

The tiny random checkpoint answers; the model is held (an event, not a clock) before its second window,
so the page is seen mid-job, with one segment done and the bar part way.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.service import ChatService
from app_fixtures import SCREENSHOTS, serving, wait_for
from audio_samples import write_wav
from browser_fixtures import CHROMIUM, FLAGS, playwright  # noqa: F401 (fixtures)
from model.audio import decode_audio
from model.pauses import PauseWindows

SR = 16000


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """75 s of tone bursts with pauses of room noise at 27.0-27.5 s and 50.2-50.8 s."""
    rng = np.random.default_rng(0)

    def burst(seconds):
        t = np.arange(int(seconds * SR)) / SR
        return 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))

    def pause(seconds):
        return 0.003 * rng.standard_normal(int(seconds * SR))

    samples = np.concatenate([burst(12), pause(0.6), burst(14.4), pause(0.5), burst(22.7), pause(0.6), burst(24.2)])
    return write_wav(tmp_path_factory.mktemp("recording") / "lecture.wav", samples)


class HeldWorker:
    """The worker, with its second window's request held until the test lets it go."""

    def __init__(self, worker):
        self.worker = worker
        self.calls = 0
        self.second = threading.Event()
        self.release = threading.Event()
        self.streams = []

    def stream(self, messages, params=None):
        self.calls += 1
        if self.calls == 2:
            self.second.set()
            assert self.release.wait(60), "the test never let the second window go"
        stream = self.worker.stream(messages, params)
        self.streams.append(stream)
        return stream


@pytest.fixture(scope="module")
def site(worker, tmp_path_factory):
    config = DemoConfig(examples=False, max_new_tokens_limit=8)
    service = ChatService(worker, config)
    held = HeldWorker(worker)
    service.backend = held  # the service's requests go through the hold; everything else is the worker's
    held.info, held.family, held.decode_audio = worker.info, worker.family, worker.decode_audio
    demo = build_demo(service, config, work_dir=tmp_path_factory.mktemp("site"))
    with serving(demo, config) as url:
        yield url, service, held


@pytest.fixture
def page(playwright, site):  # noqa: F811
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    context = browser.new_context(viewport={"width": 1180, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(site[0] + "transcribe", wait_until="domcontentloaded")
    page.wait_for_selector("#tr-start", timeout=20000)
    yield page
    context.close()
    browser.close()


def test_progress_segments_playback_and_srt_download(page, site, recording, tmp_path):
    url, service, held = site
    held.calls, held.streams = 0, []
    held.second.clear()
    held.release.clear()
    windows = PauseWindows().cut(decode_audio(recording))
    assert len(windows) == 3
    page.set_input_files("#tr-audio input[type=file]", str(recording))
    wait_for(lambda: page.locator("#tr-audio audio, #tr-audio [data-testid=waveform-Recording]").count() > 0, timeout=20)
    page.click("#tr-start")
    assert held.second.wait(60)  # the first window is answered, the second held
    page.wait_for_selector("#tr-segments .seg", timeout=20000)
    assert page.locator("#tr-segments .seg").count() == 1
    bar = page.locator("#tr-progress [role=progressbar]")
    wait_for(lambda: 0 < int(bar.get_attribute("aria-valuenow")) < 100, timeout=10)
    assert re.search(r"0:27 of 1:15 · 1 window\(s\) done · about \d+:\d\d left", page.inner_text("#tr-progress"))
    assert page.locator("#tr-start").is_disabled() and page.locator("#tr-stop").is_enabled()
    page.screenshot(path=str(SCREENSHOTS / "transcribe-running.png"))
    held.release.set()
    page.wait_for_selector("#tr-files a[href*='lecture.srt']", timeout=60000)
    assert bar.get_attribute("aria-valuenow") == "100"
    assert "1:15 of 1:15 · 3 window(s) done" in page.inner_text("#tr-progress")
    times = page.locator("#tr-segments .seg").all_inner_texts()
    assert times == ["0:00–0:27", "0:27–0:51", "0:51–1:15"]
    assert [round(w.start_s, 3) for w in windows] == [float(b.get_attribute("data-start")) for b in page.locator("#tr-segments .seg").all()]
    page.screenshot(path=str(SCREENSHOTS / "transcribe-done.png"), full_page=True)

    # A segment's time plays that stretch of the recording.
    page.locator("#tr-segments .seg").nth(1).click()
    wait_for(lambda: page.evaluate("() => { const a = document.querySelector('#tr-player'); return !a.paused && a.currentTime > 27.3; }"),
             timeout=10)
    assert page.evaluate("() => document.querySelector('#tr-player').currentTime") < 50.6

    # The .srt downloads and parses: one cue per segment, at the segments' times.
    with page.expect_download() as download:
        page.locator("#tr-files a[href*='lecture.srt']").first.click()
    srt = (tmp_path / "lecture.srt")
    download.value.save_as(srt)
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)\n", srt.read_text(encoding="utf-8"))
    assert [c[0] for c in cues] == ["1", "2", "3"]
    assert [c[1] for c in cues] == ["00:00:00,000", "00:00:27,310", "00:00:50,580"]
    assert cues[-1][2] == "00:01:15,000"
    shown = [t.strip() for t in page.locator("#tr-segments li .text").all_inner_texts()]
    assert [c[3].strip() for c in cues] == shown
    assert page.locator("#tr-start").is_enabled() and page.locator("#tr-stop").is_disabled()
    assert service.admission.count == 0


def test_stop_ends_the_job_and_the_page_is_ready_again(page, site, recording):
    url, service, held = site
    held.calls, held.streams = 0, []
    held.second.clear()
    held.release.clear()
    page.set_input_files("#tr-audio input[type=file]", str(recording))
    wait_for(lambda: page.locator("#tr-audio audio, #tr-audio [data-testid=waveform-Recording]").count() > 0, timeout=20)
    page.click("#tr-start")
    assert held.second.wait(60)
    page.click("#tr-stop")
    held.release.set()  # the held request goes on to the worker only to be closed there
    wait_for(lambda: page.locator("#tr-start").is_enabled() and page.locator("#tr-stop").is_disabled(), timeout=20)
    wait_for(lambda: service.admission.count == 0, timeout=20)
    assert page.locator("#tr-files").is_hidden()


def test_the_pages_link_to_each_other(page, site):
    page.click("#page-link")
    page.wait_for_selector("#input textarea", timeout=20000)
    assert page.inner_text("#title-text").strip() == "Qwen2-Audio chat"
    page.click("#page-link")
    page.wait_for_selector("#tr-start", timeout=20000)
    assert page.inner_text("#title-text").strip() == "Transcribe a recording"
    assert not page.locator(".nav-holder").is_visible()  # Gradio's own navbar: the header links instead


def test_a_file_that_is_no_audio_is_named_and_the_page_stays(page, site, tmp_path):
    broken = tmp_path / "minutes.wav"
    broken.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    page.set_input_files("#tr-audio input[type=file]", str(broken))
    page.wait_for_timeout(500)
    if page.locator("#tr-start").is_enabled():
        page.click("#tr-start")
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=20000)
    assert "minutes.wav" in toast.inner_text()
    wait_for(lambda: page.locator("#tr-start").is_enabled(), timeout=10)
    assert site[1].admission.count == 0


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_axe_finds_no_serious_violation_on_the_transcribe_page(playwright, site, recording, dark):  # noqa: F811
    from test_browser_a11y import axe_script, problems

    url, service, held = site
    held.calls, held.streams = 0, []
    held.release.set()  # nothing held: the job runs through
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    try:
        page = browser.new_context(viewport={"width": 1180, "height": 1000}).new_page()
        page.goto(url + "transcribe" + ("?__theme=dark" if dark else ""), wait_until="domcontentloaded")
        page.wait_for_selector("#tr-start", timeout=20000)
        report = [f"empty page: {p}" for p in problems(page, axe_script())]
        page.set_input_files("#tr-audio input[type=file]", str(recording))
        wait_for(lambda: page.locator("#tr-audio audio, #tr-audio [data-testid=waveform-Recording]").count() > 0, timeout=20)
        page.click("#tr-start")
        page.wait_for_selector("#tr-files a[href*='lecture.srt']", timeout=60000)
        wait_for(lambda: page.locator("#tr-start").is_enabled(), timeout=20)  # the page at rest, as a person sees it
        report += [f"transcribed: {p}" for p in problems(page, axe_script())]
        assert not report, "\n".join(report)
        names = page.eval_on_selector_all("#tr-segments .seg", "els => els.map(e => e.getAttribute('aria-label'))")
        assert names == ["Play 0:00–0:27", "Play 0:27–0:51", "Play 0:51–1:15"]
    finally:
        browser.close()
    held.release.clear()
