"""Both checkpoint layouts load; a missing or unreachable checkpoint gives one clear sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from model import CheckpointLoadError, GenerationParams, ModelWorker
from model.families.qwen2_audio import checkpoint_ships_chat_template
from model.loading import locate_checkpoint, resolve_placement

GREEDY = GenerationParams(temperature=0, max_new_tokens=20)


def test_both_layouts_load_and_answer_identically(worker, tiny_hub_checkpoint, audio_dir):
    files = set(os.listdir(tiny_hub_checkpoint))
    assert {"preprocessor_config.json", "vocab.json", "merges.txt", "chat_template.json", "model.safetensors.index.json"} <= files
    assert not files & {"processor_config.json", "tokenizer.json", "chat_template.jinja", "model.safetensors"}
    assert "torch_dtype" in json.loads((tiny_hub_checkpoint / "config.json").read_text())
    hub = ModelWorker.from_pretrained(str(tiny_hub_checkpoint), device="cpu")
    assert hub is not worker and hub.family == "chat" and hub.info.random_weights
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(audio_dir / "tone_a.wav")}, {"type": "text", "text": "Hi"}]}]
    assert hub.generate(messages, GREEDY) == worker.generate(messages, GREEDY)


def test_current_layout_is_what_save_pretrained_writes(tiny_checkpoint):
    files = set(os.listdir(tiny_checkpoint))
    assert {"processor_config.json", "tokenizer.json", "chat_template.jinja", "model.safetensors"} <= files


def test_family_detection(tiny_checkpoint, tiny_hub_checkpoint, tiny_base_checkpoint):
    assert checkpoint_ships_chat_template(tiny_checkpoint)
    assert checkpoint_ships_chat_template(tiny_hub_checkpoint)
    assert not checkpoint_ships_chat_template(tiny_base_checkpoint)
    assert ModelWorker.from_pretrained(str(tiny_base_checkpoint), device="cpu").family == "base"


def test_worker_labels_random_weights(worker):
    assert worker.info.random_weights
    assert "RANDOM WEIGHTS" in worker.info.label and "gibberish" in worker.info.label
    assert (worker.info.device, worker.info.dtype, worker.family) == ("cpu", "float32", "chat")


def test_absent_path_gives_one_sentence(tmp_path):
    with pytest.raises(CheckpointLoadError) as info:
        ModelWorker.from_pretrained(str(tmp_path / "no-such-checkpoint"))
    message = info.value.user_message
    assert message == (f"No such directory: {tmp_path / 'no-such-checkpoint'} (a checkpoint path; hub ids look like "
                       "Qwen/Qwen2-Audio-7B-Instruct).")


def test_directory_without_config_or_of_another_model(tmp_path):
    with pytest.raises(CheckpointLoadError, match="no config.json"):
        locate_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointLoadError, match="is a llama checkpoint, not Qwen2-Audio .* or Qwen-Audio"):
        locate_checkpoint(str(tmp_path))


@pytest.mark.parametrize("offline", ["1", "0"])
def test_hub_id_without_network_or_cache_gives_one_sentence(tmp_path, offline):
    """No network here: a hub id that is not cached must fail with a sentence, not a traceback."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE=offline)
    code = (
        "from model import ModelWorker, CheckpointLoadError\n"
        "try:\n    ModelWorker.from_pretrained('Qwen/Qwen2-Audio-7B-Instruct', device='cpu')\n"
        "except CheckpointLoadError as e:\n    print(e.user_message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout + out.stderr
    assert lines[0].startswith("Cannot load Qwen/Qwen2-Audio-7B-Instruct: ")
    assert ("HF_HUB_OFFLINE is set" if offline == "1" else "cannot be reached") in lines[0]
    assert "Traceback" not in out.stderr


def test_placement_on_this_cpu_machine():
    p = resolve_placement("auto", "auto")
    assert (p.device, p.dtype, p.device_map) == ("cpu", "float32", None)
    assert resolve_placement("cpu", "bfloat16").dtype == "bfloat16"
    with pytest.raises(CheckpointLoadError, match="no CUDA GPU"):
        resolve_placement("cuda", "auto")
    with pytest.raises(CheckpointLoadError, match="Unknown dtype"):
        resolve_placement("cpu", "int3")


def test_tiny_command_line_builds_a_loadable_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, "-m", "model.tiny", str(tmp_path / "t"), "--layout", "hub"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "random weights" in (out.stdout + out.stderr).lower()
    assert "RANDOM" in (tmp_path / "t" / "README.md").read_text()
    assert ModelWorker.from_pretrained(str(tmp_path / "t"), device="cpu").info.random_weights
