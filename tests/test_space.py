"""On a Hugging Face Space the app configures itself from the Space's environment, unchanged.

Spaces run ``python web_demo_audio.py`` with no arguments and set GRADIO_SERVER_NAME/PORT, SPACE_ID
and SPACE_HOST; ZeroGPU hardware adds SPACES_ZERO_GPU. The real ``spaces`` package needs Hugging
Face's service, so a stand-in records what the app does with it.
"""

from __future__ import annotations

import json
import os
import textwrap

from app.config import load_config
from app_fixtures import ROOT, demo_process, free_port

SPACE_ENV = {
    "SPACE_ID": "someone/qwen2-audio-chat",
    "SPACE_HOST": "someone-qwen2-audio-chat.hf.space",
    "GRADIO_SERVER_NAME": "0.0.0.0",
    "GRADIO_SERVER_PORT": "7860",
    "SYSTEM": "spaces",
}


def test_config_on_a_space_listens_on_every_interface_without_a_share_link():
    config = load_config([], environ=SPACE_ENV)
    assert (config.server_name, config.server_port, config.share) == ("0.0.0.0", 7860, False)
    assert config.checkpoint_path == "Qwen/Qwen2-Audio-7B-Instruct" and config.device == "auto"


def test_zerogpu_space_starts_with_spaces_before_torch_and_serves(tmp_path, tiny_checkpoint):
    fake = tmp_path / "fake" / "spaces"
    fake.mkdir(parents=True)
    record = tmp_path / "spaces.json"
    (fake / "__init__.py").write_text(textwrap.dedent(f"""
        import json, sys
        _record = {{"torch_before_spaces": "torch" in sys.modules, "decorated": []}}
        def _save():
            open({str(record)!r}, "w").write(json.dumps(_record))
        _save()
        def gradio_auto_wrap(fn):  # what gradio calls when `spaces` is loaded
            return fn
        def GPU(fn=None, duration=None):
            _record["decorated"].append([fn.__name__, duration])
            _save()
            return fn
    """))
    # Gradio on a Space hands hot-reloading to `spaces.reloading`; it looks the package's version up.
    (fake / "reloading.py").write_text("def start_reload_server(prerun=None, postrun=None, stop_event=None):\n    pass\n")
    dist = fake.parent / "spaces-0.51.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: spaces\nVersion: 0.51.3\n")
    port = free_port()
    env = os.environ | SPACE_ENV | {
        "SPACES_ZERO_GPU": "true", "GRADIO_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)]),
        "QWEN_DEMO_CHECKPOINT_PATH": str(tiny_checkpoint),  # a Space variable; the real Space keeps the default
        "QWEN_DEMO_EXAMPLES": "false",
    }
    log = tmp_path / "space.log"
    with demo_process([], port, log, env=env):
        recorded = json.loads(record.read_text())
        assert recorded["torch_before_spaces"] is False
        assert recorded["decorated"] == [["generate_on_device", 120]]
        # A reply streams through the @spaces.GPU generator path.
        from gradio_client import Client

        reply = Client(f"http://127.0.0.1:{port}", verbose=False).predict(
            message={"text": "Hello there", "files": []}, history=[], system_prompt="", max_new_tokens=8,
            temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1, api_name="/chat")
        assert isinstance(reply, str) and reply
        text = log.read_text()
        assert "ZeroGPU Space: generation will run inside @spaces.GPU" in text
        assert "serving on http://" in text
