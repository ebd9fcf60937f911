"""Accessibility of the page, checked in Chromium with axe-core and with Chromium's own accessibility tree.

axe-core (the npm package pinned in tests/a11y/package.json, installed with ``npm ci --prefix tests/a11y``,
as .ci/run does; without it the axe tests fail saying so) is injected into the served page: no violation of
impact "serious" or "critical" is allowed (static/keys.js mends the few in Gradio's own markup), on the chat and the base-model page, light and dark (Gradio's ``?__theme=dark``),
desktop and a 390 px phone, English and Chinese; each on the empty page, with a clip attached and after
the answer (with the settings open). axe does not check placeholders: their contrast is checked here.
Every control and player has an accessible name (as Chromium computes it), and in a Chinese browser our
own controls are named in Chinese.

A scripted backend answers with timestamps, so the reply has time chips and clip players."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app_fixtures import ROOT, FakeInfo, ScriptedWorker, serving
from audio_samples import tone, write_wav
from browser_fixtures import browser, new_chat, playwright  # noqa: F401 (fixtures)

AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
INSTALL = "npm ci --prefix tests/a11y"
DESKTOP = {"width": 1180, "height": 1000}
PHONE = {"width": 390, "height": 844}
#: The impacts that fail the test (axe's others: "moderate", "minor").
BLOCKING = ("serious", "critical")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def reply(messages: list[dict], n: int) -> list[str]:
    return ["The tone starts at <|0.20|> ", "and ends at <|0.90|>."]


def axe_script() -> Path:
    """axe-core's script; a test without it fails (no skip) with the command that installs it."""
    assert AXE.is_file(), (f"axe-core is not installed ({AXE.relative_to(ROOT)} is missing): run `{INSTALL}` "
                           "in the repository root (it installs the version pinned in tests/a11y/package-lock.json).")
    return AXE


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("a11y-audio") / "tone.wav", tone(1.5, 440.0, seed=1))


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The chat page (a Qwen2-Audio chat model) and the base-model page (Qwen-Audio, random weights: the
    task selector, the timestamps checkbox and the "random" badge), served for the whole module, with the
    example clips the empty chat offers."""
    config = DemoConfig(examples=True)
    chat = ScriptedWorker(reply=reply)
    base = ScriptedWorker(reply=reply, info=FakeInfo(checkpoint="scripted/fake-qwen-audio", family="base",
                                                     model_family="Qwen-Audio", random_weights=True))
    with serving(build_demo(chat, config, work_dir=tmp_path_factory.mktemp("a11y-chat")), config) as chat_url, \
            serving(build_demo(base, config, work_dir=tmp_path_factory.mktemp("a11y-base")), config) as base_url:
        yield {"chat": chat_url, "base": base_url}


def open_page(new_chat, pages, kind: str, *, dark: bool = False, phone: bool = False, locale: str = "en-US"):
    return new_chat(pages[kind] + ("?__theme=dark" if dark else ""), viewport=PHONE if phone else DESKTOP,
                    locale=locale)


def attach(chat, clip: Path) -> None:
    chat.attach(clip)
    chat.page.locator("#input .thumbnail-item").first.wait_for(timeout=10000)
    chat.page.wait_for_timeout(300)


def answer(chat, kind: str) -> None:
    """Ask about the attached clip (a base page needs no text), wait for the answer, open the settings."""
    chat.ask("" if kind == "base" else "When does the tone start?")
    chat.answer(1)
    chat.page.locator("#chatbot time").first.wait_for(timeout=10000)
    chat.page.locator("#chatbot [data-testid=bot] [data-testid^=waveform-]").first.wait_for(timeout=10000)
    chat.page.click("#settings > button")
    chat.page.locator("#temperature input[type=range]").wait_for(timeout=10000)
    chat.page.wait_for_timeout(300)  # the accordion's and the players' transitions


def axe_violations(page, axe_script: Path) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script))
    return page.evaluate("""async () => {
      const result = await axe.run(document, {resultTypes: ['violations']});
      return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => ({target: n.target.join(' '), impact: n.impact || v.impact, html: n.html,
                                  summary: (n.failureSummary || '').replace(/\\s+/g, ' ').trim()}))}));
    }""")


#: The contrast of every visible placeholder with the background it is drawn on (axe skips placeholders).
PLACEHOLDERS = """() => {
  const rgba = s => { const m = s.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, bottom) => top.slice(0, 3).map((c, i) => c * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255, 1]);
  };
  const luminance = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  return [...document.querySelectorAll('textarea[placeholder], input[placeholder]')]
    .filter(e => e.placeholder && e.getClientRects().length && getComputedStyle(e).visibility === 'visible')
    .map(e => {
      const back = background(e), fore = over(rgba(getComputedStyle(e, '::placeholder').color), back);
      const [a, b] = [luminance(fore), luminance(back)].sort((x, y) => y - x);
      return {target: (e.closest('[id]') ? '#' + e.closest('[id]').id + ' ' : '') + e.tagName.toLowerCase(),
              ratio: Math.round((a + 0.05) / (b + 0.05) * 100) / 100};
    });
}"""


def problems(page, axe_script: Path) -> list[str]:
    found = []
    for v in axe_violations(page, axe_script):
        for node in v["nodes"]:
            if node["impact"] not in BLOCKING:
                continue
            found.append(f"{v['id']} ({node['impact']}) at {node['target']}: {node['summary']}")
    found += [f"placeholder-contrast (serious) at {p['target']}: contrast {p['ratio']}:1, expected 4.5:1"
              for p in page.evaluate(PLACEHOLDERS) if p["ratio"] < 4.5]
    return found


#: Page x theme x viewport x language: every pair of values appears in some case (with the plain desktop
#: cases of both themes), rather than all 16 combinations.
CASES = [
    ("chat", False, False, "en-US"),
    ("chat", True, False, "en-US"),
    ("chat", True, True, "zh-CN"),
    ("base", False, True, "zh-CN"),
    ("base", True, False, "zh-CN"),
    ("base", True, True, "en-US"),
]


@pytest.mark.parametrize("kind, dark, phone, locale", CASES, ids=[
    f"{kind}-{'dark' if dark else 'light'}-{'phone' if phone else 'desktop'}-{locale}" for kind, dark, phone, locale in CASES])
def test_axe_finds_no_serious_violation(new_chat, pages, clip, kind, dark, phone, locale):
    axe = axe_script()
    chat = open_page(new_chat, pages, kind, dark=dark, phone=phone, locale=locale)
    assert chat.page.evaluate("document.body.classList.contains('dark')") == dark
    report = [f"empty page: {p}" for p in problems(chat.page, axe)]
    attach(chat, clip)
    report += [f"with a clip attached: {p}" for p in problems(chat.page, axe)]
    answer(chat, kind)
    report += [f"after the answer (settings open): {p}" for p in problems(chat.page, axe)]
    assert not report, f"{len(report)} serious or critical accessibility problem(s):\n" + "\n".join(report)


#: The controls whose accessible name must not be empty, and the media players.
CONTROLS = ("button, textarea, select, input, audio, video, [role=button], [role=textbox], [role=slider], "
            "[role=spinbutton], [role=checkbox], [role=radio], [role=switch], [role=combobox], [role=listbox], "
            "[data-testid^=waveform-]")
#: Our own controls (app/layout.py), which must be named in the page's language.
OWN = {
    "Stop": "#stop", "Regenerate": "#regenerate", "Undo": "#undo", "Clear": "#clear",
    "the input": "#input textarea", "the settings accordion": "#settings > button",
    "Max new tokens": "#max-new-tokens input[type=range]", "Temperature": "#temperature input[type=range]",
    "Top-p": "#top-p input[type=range]", "Top-k": "#top-k input[type=range]",
    "Repetition penalty": "#repetition-penalty input[type=range]", "Seed": "#seed input",
}
OWN_CHAT = {"System prompt": "#system-prompt textarea"}
OWN_BASE = {"the first task": "#task input[type=radio]", "Language": "#language input", "Timestamps": "#timestamps input"}

DESCRIBE = """e => {
  const owner = e.closest('[id]');
  return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.type ? '[type=' + e.type + ']' : '')
    + (e.dataset.testid ? '[data-testid="' + e.dataset.testid + '"]' : '')
    + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/)[0] : '')
    + (owner && owner !== e ? ' in #' + owner.id : '');
}"""


def accessible_names(page, selector: str) -> list[tuple[str, str | None]]:
    """(description, Chromium's accessible name) of each element matching ``selector``; the name is None
    for an element out of the accessibility tree (hidden), "" for one without a name."""
    cdp = page.context.new_cdp_session(page)
    try:
        tree = {n["backendDOMNodeId"]: n for n in cdp.send("Accessibility.getFullAXTree")["nodes"]
                if "backendDOMNodeId" in n}
        root = cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        names = []
        for node_id in cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]:
            backend = cdp.send("DOM.describeNode", {"nodeId": node_id})["node"]["backendNodeId"]
            obj = cdp.send("DOM.resolveNode", {"backendNodeId": backend})["object"]["objectId"]
            description = cdp.send("Runtime.callFunctionOn", {"objectId": obj, "functionDeclaration": DESCRIBE,
                                                               "arguments": [{"objectId": obj}],
                                                               "returnByValue": True})["result"]["value"]
            ax = tree.get(backend)
            hidden = ax is None or ax.get("ignored", False)
            names.append((description, None if hidden else (ax.get("name", {}).get("value") or "").strip()))
        return names
    finally:
        cdp.detach()


def file_inputs_without_name(page) -> list[str]:
    """File inputs are hidden (display: none, out of the tree): a button opens them. Each needs a label of its
    own, or a visible, named button right after it (Gradio's UploadButton draws its input before its button)."""
    return page.eval_on_selector_all("input[type=file]", """els => els.filter(e => {
      const own = (e.getAttribute('aria-label') || '').trim() || [...(e.labels || [])].some(l => l.innerText.trim())
        || (e.title || '').trim();
      const named = b => b.getClientRects().length && ((b.getAttribute('aria-label') || '').trim()
        || b.innerText.trim() || [...b.querySelectorAll('img[alt]')].some(i => i.alt.trim()));
      const opener = e.nextElementSibling;
      return !own && !(opener && opener.tagName === 'BUTTON' && named(opener));
    }).map(e => e.outerHTML.slice(0, 160))""")


def own_names(page, controls: dict[str, str]) -> dict[str, str | None]:
    return {what: next((name for _, name in accessible_names(page, selector) if name is not None), None)
            for what, selector in controls.items()}


@pytest.mark.parametrize("kind", ["chat", "base"])
def test_every_control_has_a_name_and_ours_are_chinese_for_a_chinese_browser(new_chat, pages, clip, kind):
    own = OWN | (OWN_BASE if kind == "base" else OWN_CHAT)
    named = {}
    for locale in ("en-US", "zh-CN"):
        chat = open_page(new_chat, pages, kind, locale=locale)
        attach(chat, clip)
        unnamed = [f"with a clip attached: {what}" for what, name in accessible_names(chat.page, CONTROLS) if name == ""]
        answer(chat, kind)
        shown = [(what, name) for what, name in accessible_names(chat.page, CONTROLS) if name is not None]
        assert len(shown) > 20, f"{locale}: only {len(shown)} controls found: {shown}"
        unnamed += [f"after the answer: {what}" for what, name in shown if not name] + file_inputs_without_name(chat.page)
        assert not unnamed, f"{locale}: {len(unnamed)} control(s) without an accessible name:\n" + "\n".join(unnamed)
        named[locale] = own_names(chat.page, own)
        missing = [what for what, name in named[locale].items() if not name]
        assert not missing, f"{locale}: our controls not found or hidden: {missing}"
    english, chinese = named["en-US"], named["zh-CN"]
    wrong = [f"{what}: {chinese[what]!r} (English: {english[what]!r})" for what in own
             if chinese[what] == english[what] or not CJK.search(chinese[what])]
    assert not wrong, "in a Chinese browser these controls are not named in Chinese:\n" + "\n".join(wrong)
