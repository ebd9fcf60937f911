"""How soon the page shows a sent question, in Chromium, on the real pipeline.

    python -m bench.page_echo [--checkpoint DIR] [--repeats 5] [--audio-seconds 5] [--port 7899] [--at-once-only]

Serves ``web_demo_audio.py`` with ``configs/cpu-tryout.yaml`` on the given checkpoint (default: the
tiny random one, built in a temp dir) and, in Debian's Chromium, repeats: attach a fresh clip, type a
question, press send, and time in the page (``performance.now()`` from the click, by a MutationObserver)

* **echo**: until the question shows in the chat,
* **place**: until the answer's place shows (the "Listening and thinking…" note, or its first words),
* **first words**: until the answer's first text shows,

once after the clip's row in the input's list has shown (the person saw it, the decode is done) and
once sending at once after attaching (the decode is part of the send). Then Clear. Medians are printed
with the machine; a benchmark, it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.audio import write_tone

ROOT = Path(__file__).resolve().parent.parent
IDLE = """() => { const box = document.querySelector('#input textarea'), stop = document.querySelector('#stop');
  return !!box && !box.disabled && !box.readOnly && !!stop && stop.disabled; }"""
#: Click send and resolve with the times (ms from the click) at which the chat first showed each thing.
MEASURE = """(question) => new Promise(done => {
  const chat = document.querySelector('#chatbot'), times = {};
  const look = () => {
    const now = performance.now() - start;
    const users = [...chat.querySelectorAll('[data-testid=user] .message-content')].map(e => e.innerText);
    if (times.echo === undefined && users.some(t => t.includes(question))) times.echo = now;
    if (times.place === undefined && chat.querySelector('[data-testid=bot]')) times.place = now;
    const bots = [...chat.querySelectorAll('[data-testid=bot] .message-content')]
      .filter(e => !e.closest('.thought-group')).map(e => e.innerText.trim()).filter(t => t);
    if (times.first === undefined && bots.length) times.first = now;
    if (times.echo !== undefined && times.place !== undefined && times.first !== undefined) {
      observer.disconnect(); done(times);
    }
  };
  const observer = new MutationObserver(look);
  observer.observe(chat, {childList: true, subtree: true, characterData: true});
  const start = performance.now();
  document.querySelector('#input [data-testid=submit-button]').click();
  setTimeout(() => { observer.disconnect(); done(times); }, 60000);
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_served(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the demo did not answer in time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--audio-seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--at-once-only", action="store_true",
                        help="only send at once after attaching (for a page without the input's clip list)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = str(tmp_path / "tiny")
            subprocess.run([sys.executable, "-m", "model.tiny", checkpoint], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        port = args.port or free_port()
        log = open(tmp_path / "demo.log", "w")
        proc = subprocess.Popen([sys.executable, "web_demo_audio.py", "--config", "configs/cpu-tryout.yaml",
                                 "-c", checkpoint, "--server-port", str(port), "--no-examples"],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        results: dict[str, list[dict]] = {"after the clip's row showed": [], "sent at once": []}
        if args.at_once_only:
            del results["after the clip's row showed"]
        try:
            wait_served(url, proc)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1180, "height": 1000})
                page.goto(url)
                page.wait_for_function(IDLE, timeout=30000)
                n = 0
                for _ in range(args.repeats):
                    for mode in results:
                        n += 1
                        clip = tmp_path / f"clip-{n}.wav"
                        write_tone(clip, args.audio_seconds, 200.0 + 37 * n, seed=n)
                        page.set_input_files("#input input[type=file]", [str(clip)])
                        page.wait_for_function("() => document.querySelector('#input [data-testid=submit-button]')"
                                               "?.disabled === false")
                        if mode.startswith("after"):
                            page.wait_for_function(f"() => document.querySelector('#attached')?.innerText"
                                                   f".includes('clip-{n}.wav')")
                        question = f"What is in clip {n}?"
                        page.fill("#input textarea", question)
                        times = page.evaluate(MEASURE, question)
                        results[mode].append(times)
                        page.wait_for_function(IDLE, timeout=120000)
                        page.click("#clear")
                        page.wait_for_function("() => !document.querySelector('#chatbot [data-testid=user]')")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, {platform.python_version()}; "
          f"checkpoint: {args.checkpoint or 'tiny random (built here)'}; {args.audio_seconds:g} s clips; "
          f"{args.repeats} repeats")
    for mode, runs in results.items():
        row = []
        for key, name in (("echo", "echo"), ("place", "answer's place"), ("first", "first words")):
            values = [r[key] for r in runs if key in r]
            row.append(f"{name} {statistics.median(values):.0f} ms" if values else f"{name} -")
        print(f"{mode:>28}: " + ", ".join(row) + f"  (median of {len(runs)})")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
