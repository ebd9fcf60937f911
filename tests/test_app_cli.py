"""``python web_demo_audio.py``: serves the page quickly, documents every option, fails in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app_fixtures import ROOT, demo_process, free_port

ENTRY = str(ROOT / "web_demo_audio.py")


def run(*args: str, timeout: float = 60, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ENTRY, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {}))


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def test_serves_the_tiny_checkpoint_within_30_seconds(tiny_checkpoint, tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    with demo_process(["-c", str(tiny_checkpoint), "--cpu-only", "--server-port", str(port)], port, log, timeout=30):
        # The URL line is logged right after the server answers its first request.
        deadline = time.monotonic() + 10
        while "serving on" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log.read_text()
        assert re.search(r"model loaded in \d+\.\d s: .*RANDOM WEIGHTS", text), text
        assert f"serving on http://127.0.0.1:{port}" in text
        assert "on CPU" in text
        page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).text
        assert "RANDOM WEIGHTS" in page  # the header names the model and device


def test_serves_the_tiny_checkpoint_in_4bit_and_the_badge_says_so(tiny_checkpoint, tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    args = ["-c", str(tiny_checkpoint), "--cpu-only", "--quantization", "4bit", "--server-port", str(port)]
    with demo_process(args, port, log, timeout=60):
        text = log.read_text()
        assert re.search(r"quantization 4bit: the weights need about \d+\.\d GiB; cpu has \d+\.\d GiB free\.", text), text
        assert re.search(r"loaded .* in float32, 4bit in .* s; the weights take \d+\.\d MiB", text), text
        page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).text
        assert "in 4bit (float32 elsewhere)" in page  # the badge names the setting


def test_help_lists_every_option_with_its_default():
    result = run("--help", timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in ("-c CHECKPOINT_PATH, --checkpoint-path", "--cpu-only", "--share", "--inbrowser", "--server-port",
                   "--server-name", "--config", "--max-audio-seconds", "--temperature", "--system-prompt"):
        assert option in text, option
    assert "(default: Qwen/Qwen2-Audio-7B-Instruct)" in text
    assert "(default: 7860)" in text and "(default: 127.0.0.1)" in text and "(default: 300.0)" in text


def test_a_missing_checkpoint_exits_nonzero_with_one_line(tmp_path):
    result = run("-c", str(tmp_path / "nowhere"), "--cpu-only")
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"No such directory: {tmp_path / 'nowhere'}" in lines[0] and "Traceback" not in lines[0]


def test_a_mistyped_relative_path_is_no_such_directory_not_a_hub_id(tmp_path):
    (tmp_path / "checkpoints" / "tiny-random").mkdir(parents=True)
    result = run("-c", "checkpoints/tiny-randm", "--cpu-only", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    line = [x for x in (result.stdout + result.stderr).splitlines() if "ERROR" in x]
    assert len(line) == 1 and "No such directory: checkpoints/tiny-randm" in line[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_busy_port_is_said_in_one_sentence_before_the_model_loads(tiny_checkpoint):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run("-c", str(tiny_checkpoint), "--cpu-only", "--server-port", str(port))
        elapsed = time.monotonic() - started
    assert result.returncode == 2
    line = one_line(result)
    assert f"Port {port} on 127.0.0.1 is already in use; pass another one with --server-port" in line
    assert "loaded" not in result.stdout + result.stderr  # refused before loading, not after it
    print(f"busy port refused after {elapsed:.1f} s")


def test_a_bad_config_value_exits_with_one_line():
    result = run("--config", "configs/none.yaml")
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "configs/none.yaml does not exist" in lines[0]


def test_the_app_never_imports_torch_or_transformers():
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from app_fixtures import ScriptedWorker\n"
        "from app.config import DemoConfig\n"
        "from app.demo import build_demo\n"
        "import app.api, app.events, app.handlers, app.history, app.layout, app.timestamps\n"
        "build_demo(ScriptedWorker(), DemoConfig())\n"
        "leaked = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not leaked, leaked\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for source in (ROOT / "app").glob("*.py"):
        text = source.read_text()
        assert not re.search(r"^\s*(import|from)\s+(torch|transformers)\b", text, re.M), source.name


def test_layers_stay_apart():
    for source in (ROOT / "model").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+gradio\b", source.read_text(), re.M), source.name
    for source in list((ROOT / "app").glob("*.py")) + [Path(ENTRY)]:
        text = source.read_text()
        assert "print(" not in text, source.name
        assert "argparse" not in text or source.name == "config.py", source.name


def test_on_a_machine_without_gpu_or_model_the_default_run_serves_the_tiny_checkpoint_and_downloads_nothing(tmp_path):
    # A fresh hub cache and no network (every request would fail): the run says in one sentence what it
    # would download and how big it is, then serves the tiny random checkpoint (built on first use)
    # instead; nothing is fetched. A second run reuses the checkpoint it built.
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
                        "CUDA_VISIBLE_DEVICES": ""}
    tryout = tmp_path / "cache" / "qwen-audio-demo" / "tiny-random"
    for attempt in range(2):
        port = free_port()
        log = tmp_path / f"demo{attempt}.log"
        with demo_process(["--server-port", str(port)], port, log, env=env, timeout=90):
            text = log.read_text()
            assert ("Qwen/Qwen2-Audio-7B-Instruct is not downloaded yet and this machine has no GPU (it is about 17 GB "
                    f"to download and needs about 32 GB of memory on the CPU): serving the tiny random checkpoint in {tryout}") in text
            assert "pass --device cpu" in text
            page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).text
            assert "RANDOM WEIGHTS" in page
        assert (tryout / "config.json").is_file() and not tryout.with_name("tiny-random.partial").exists()
        assert "fetching" not in text.lower()
        assert not (tmp_path / "hf" / "hub").exists() or not any((tmp_path / "hf" / "hub").iterdir())


def test_a_named_hub_checkpoint_not_downloaded_on_a_cpu_machine_is_not_fetched_and_offers_the_tiny_one(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    result = run("-c", "Qwen/Qwen-Audio-Chat", env=env, timeout=60)
    assert result.returncode == 1
    line = one_line(result)
    assert "Qwen/Qwen-Audio-Chat is not downloaded yet and this machine has no GPU: it is about 17 GB" in line
    assert "python -m model.tiny checkpoints/tiny-random" in line and "pass --device cpu" in line
    assert not (tmp_path / "hf" / "hub").exists() or not any((tmp_path / "hf" / "hub").iterdir())
    assert not (tmp_path / "cache" / "qwen-audio-demo").exists()