"""Load and isolation: many clients, several turns each, every one with its own audio, over loopback.

    python -m bench.load [--clients 16] [--turns 5] [--soak 500] [--api chat|v1] [--url URL] [--json OUT]

Without ``--url`` it starts ``web_demo_audio.py`` on the tiny random checkpoint (CPU) on a free
loopback port and stops it at the end. Phases:

1. **alone**: each client's conversation runs by itself, one after the other (greedy), giving that
   client's reference replies.
2. **together**: all clients run their conversations at once; every reply must equal the client's own
   reference reply (no audio or history crosses sessions) and no request may fail.
3. **soak** (``--soak N``): N more single-turn requests; the server's resident memory is read after the
   first 50 and after all N.

At the end (a server it started), the audio files left in Gradio's upload folder are counted once every
client has closed its session (uploads and clips go when their session ends).

Only loopback addresses are contacted; every phase is bounded in requests and by ``--max-seconds``.
It prints a table and exits 1 if any request failed or any reply differed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from bench.audio import write_tone


logger = logging.getLogger("bench.load")
ROOT = Path(__file__).resolve().parent.parent
GREEDY = dict(system_prompt="", max_new_tokens=16, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_files(folder: Path) -> int:
    """Audio files in ``folder`` (the clients send WAV; Gradio's copies of the page's icons are not counted).

    The server deletes files and folders meanwhile: ``os.walk`` skips a folder that is gone by the time it
    is listed (``Path.rglob`` raises FileNotFoundError then)."""
    return sum(1 for _, _, names in os.walk(folder) for name in names if name.endswith(".wav"))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ChatClient:
    """One person: a conversation of turns, each with its own audio, through ``/chat`` or ``/v1``."""

    def __init__(self, url: str, api: str, audio: list[Path], index: int):
        self.url, self.api, self.audio, self.index = url.rstrip("/"), api, audio, index

    def question(self, turn: int) -> str:
        return f"Client {self.index}, turn {turn + 1}: what is in this clip?"

    def converse(self, turns: int) -> list[tuple[str, float]]:
        """Run the conversation; return (reply, seconds) per turn."""
        return self._converse_chat(turns) if self.api == "chat" else self._converse_v1(turns)

    def _converse_chat(self, turns: int) -> list[tuple[str, float]]:
        from gradio_client import Client, handle_file

        client = Client(self.url, verbose=False)
        history: list[dict] = []
        out = []
        try:
            for turn in range(turns):
                path = self.audio[turn % len(self.audio)]
                started = time.perf_counter()
                reply = client.predict(message={"text": self.question(turn), "files": [handle_file(str(path))]},
                                       history=history, **GREEDY, api_name="/chat")
                out.append((reply, time.perf_counter() - started))
                history += [
                    {"role": "user", "content": [{"type": "file", "file": handle_file(str(path))}]},
                    {"role": "user", "content": [{"type": "text", "text": self.question(turn)}]},
                    {"role": "assistant", "content": [{"type": "text", "text": reply}]},
                ]
        finally:
            client.close()  # ends the session: the server deletes the files it alone used
        return out

    def _converse_v1(self, turns: int) -> list[tuple[str, float]]:
        import base64

        import httpx

        messages: list[dict] = []
        out = []
        with httpx.Client(timeout=300) as http:
            for turn in range(turns):
                data = base64.b64encode(self.audio[turn % len(self.audio)].read_bytes()).decode()
                messages.append({"role": "user", "content": [
                    {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
                    {"type": "text", "text": self.question(turn)}]})
                started = time.perf_counter()
                response = http.post(f"{self.url}/v1/chat/completions", json={
                    "messages": messages, "temperature": 0, "max_tokens": GREEDY["max_new_tokens"],
                    "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0})
                response.raise_for_status()
                reply = response.json()["choices"][0]["message"]["content"]
                out.append((reply, time.perf_counter() - started))
                messages.append({"role": "assistant", "content": reply})
        return out


def _start_server(workdir: Path, checkpoint: str | None, port: int) -> tuple[subprocess.Popen, str]:
    if checkpoint is None:
        from model.tiny import build_tiny_checkpoint

        checkpoint = str(build_tiny_checkpoint(workdir / "tiny"))
    env = os.environ | {"GRADIO_TEMP_DIR": str(workdir / "gradio-uploads"), "PYTHONUNBUFFERED": "1"}
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "web_demo_audio.py"), "-c", checkpoint, "--cpu-only", "--server-port", str(port),
         "--no-examples", "--max-queue-size", "64", "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start within 120 s")


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    proc = None
    url = args.url
    if url is None:
        proc, url = _start_server(workdir, args.checkpoint, _free_port())
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {host}: this script only targets loopback addresses")
    deadline = time.monotonic() + args.max_seconds
    clients = []
    for i in range(args.clients):
        audio = [workdir / f"client{i}-turn{t}.wav" for t in range(args.turns)]
        for t, path in enumerate(audio):
            write_tone(path, 1.0 + 0.25 * ((i + t) % 5), 180 + 37 * i + 11 * t, 100 * i + t)
        clients.append(ChatClient(url, args.api, audio, i))
    result: dict = {"url": url, "api": args.api, "clients": args.clients, "turns": args.turns}
    try:
        started = time.perf_counter()
        alone = [c.converse(args.turns) for c in clients]
        result["alone_s"] = time.perf_counter() - started
        if time.monotonic() > deadline:
            raise TimeoutError("the time budget ran out after the reference phase")

        errors: list[str] = []
        together: list[list[tuple[str, float]] | None] = [None] * len(clients)

        def play(i: int) -> None:
            try:
                together[i] = clients[i].converse(args.turns)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"client {i}: {type(exc).__name__}: {exc}"[:300])

        started = time.perf_counter()
        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(play, range(len(clients))))
        result["together_s"] = time.perf_counter() - started
        mismatches = [
            (i, t) for i, (ref, got) in enumerate(zip(alone, together)) if got is not None
            for t in range(args.turns) if ref[t][0] != got[t][0]
        ]
        latencies = [s for got in together if got for _, s in got]
        result.update(
            requests=len(clients) * args.turns, errors=errors, mismatches=mismatches,
            latency_p50_s=statistics.median(latencies) if latencies else None,
            latency_p95_s=sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else None,
        )

        if args.soak and proc is not None:
            soak_client = ChatClient(url, args.api, clients[0].audio, 999)
            rss = {}
            for n in range(1, args.soak + 1):
                if time.monotonic() > deadline:
                    result["soak_stopped_at"] = n
                    break
                soak_client.audio = [clients[n % len(clients)].audio[n % args.turns]]
                soak_client.converse(1)
                if n in (50, args.soak):
                    rss[n] = _rss_mb(proc.pid)
            result["rss_mb"] = rss
        if proc is not None:
            # Every client has closed: its session's files go (Gradio notices a closed session within seconds).
            uploads = workdir / "gradio-uploads"
            result["upload_files_seen"] = _count_files(uploads)
            settle = time.monotonic() + 30
            while _count_files(uploads) and time.monotonic() < settle:
                time.sleep(0.5)
            result["upload_files"] = _count_files(uploads)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running demo on loopback (default: start one on the tiny checkpoint)")
    parser.add_argument("--checkpoint", help="checkpoint for the started server (default: the tiny random one)")
    parser.add_argument("--api", choices=["chat", "v1"], default="chat", help="gradio_client /chat or the OpenAI API (default: chat)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--turns", type=int, default=5, help="turns per client (default: 5)")
    parser.add_argument("--soak", type=int, default=0, help="extra requests for the memory check (default: 0; 500 for the README figure)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="time budget for the whole run (default: 1800)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    print(f"{args.clients} clients x {args.turns} turns through {args.api} at {result['url']}")
    print(f"  alone (reference): {result['alone_s']:.1f} s; together: {result['together_s']:.1f} s")
    print(f"  requests {result['requests']}, errors {len(result['errors'])}, replies differing from the client's own "
          f"single-client reply {len(result['mismatches'])}")
    if result["latency_p50_s"] is not None:
        print(f"  latency while together: p50 {result['latency_p50_s']:.2f} s, p95 {result['latency_p95_s']:.2f} s")
    if "rss_mb" in result:
        print(f"  server RSS: {', '.join(f'after {n}: {mb:.0f} MB' for n, mb in result['rss_mb'].items())}")
    if "upload_files" in result:
        print(f"  upload files when the last client closed: {result['upload_files_seen']}; "
              f"left after their sessions ended: {result['upload_files']}")
    for error in result["errors"][:5]:
        print("  error:", error)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if not result["errors"] and not result["mismatches"] else 1


if __name__ == "__main__":
    sys.exit(main())
