"""Browser plumbing shared by the browser tests: Debian's Chromium under Playwright, and a page helper.

Import the fixtures by name into a test module (``from browser_fixtures import browser, new_chat, playwright``):
pytest finds fixtures in a module's namespace. ``playwright`` and ``browser`` are module-scoped (one
Chromium per test module); ``new_chat(url, **context_options)`` opens the page in a fresh browser context
(its own cookies, so its own Gradio session) and closes every context it opened after the test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app_fixtures import SCREENSHOTS, wait_for

#: Debian's Chromium (`make test` installs it), or the browser $CHROMIUM names (e.g. a Chrome elsewhere).
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
#: True when the page is ready for a question: the input is editable and Stop is off.
IDLE = """() => {
  const box = document.querySelector('#input textarea'), stop = document.querySelector('#stop');
  return !!box && !box.disabled && !box.readOnly && !!stop && stop.disabled;
}"""
#: The viewport of ``new_chat`` unless a test asks for another.
VIEWPORT = {"width": 1180, "height": 1000}


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield b
    b.close()


class Chat:
    """A page of the demo, with the steps a person takes."""

    def __init__(self, page: Page, url: str):
        self.page = page
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#input textarea", timeout=20000)
        page.wait_for_function(IDLE, timeout=20000)

    def attach(self, *files: Path) -> None:
        self.page.set_input_files("#input input[type=file]", [str(f) for f in files])
        wait_for(lambda: self.page.locator("#input [data-testid=submit-button]").is_enabled(), timeout=10)

    def ask(self, text: str, *, enter: bool = False) -> None:
        self.page.fill("#input textarea", text)
        if enter:
            self.page.press("#input textarea", "Enter")
        else:
            self.page.click("#input [data-testid=submit-button]")

    def wait_idle(self, timeout: float = 30) -> None:
        self.page.wait_for_function(IDLE, timeout=timeout * 1000)

    def bot_texts(self) -> list[str]:
        return self.page.eval_on_selector_all("#chatbot [data-testid=bot] .message-content", "els => els.map(e => e.innerText)")

    def answers(self) -> list[str]:
        """The answers' texts, as shown (the notes beside them left out)."""
        return self.page.eval_on_selector_all(
            "#chatbot [data-testid=bot] .message-content", "els => els.filter(e => !e.closest('.thought-group'))"
            ".map(e => e.innerText)")

    def user_messages(self) -> int:
        return self.page.locator("#chatbot [data-testid=user]").count()

    def players(self, role: str) -> list[str]:
        return self.page.eval_on_selector_all(f"#chatbot [data-testid={role}] [data-testid^=waveform-]",
                                              "els => els.map(e => e.getAttribute('aria-label'))")

    def answer(self, count: int, timeout: float = 30) -> str:
        """Wait until there are ``count`` bot text messages and the input is usable again; return the last."""
        wait_for(lambda: len(self.bot_texts()) >= count and self.page.evaluate(IDLE), timeout=timeout)
        return self.bot_texts()[-1]

    def shot(self, name: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def new_chat(browser: Browser):
    contexts = []

    def open_chat(url: str, **context_options) -> Chat:
        context = browser.new_context(**({"viewport": VIEWPORT} | context_options))
        contexts.append(context)
        return Chat(context.new_page(), url)

    yield open_chat
    for context in contexts:
        context.close()
