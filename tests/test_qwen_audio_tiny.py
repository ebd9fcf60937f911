"""``python -m model.tiny OUT --family qwen-audio-chat`` (and ``qwen-audio``): tiny random checkpoints in the
hub's published layout, loaded exactly like the real ones and labelled random."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors import safe_open

import qwen_audio_fixture as fx
from model import AudioDecodeError, AudioTooLongError, GenerationParams, ModelWorker
from model.families.qwen_audio.tokenizer import QwenAudioTokenizer

ROOT = fx.FIXTURE.parents[2]


def _keys(folder) -> dict[str, list[int]]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(folder / shard, "pt") as f:
            out.update({k: list(f.get_slice(k).get_shape()) for k in f.keys()})
    assert set(out) == set(index["weight_map"])
    return out


@pytest.mark.parametrize("family,generation", [("qwen-audio-chat", "chatml"), ("qwen-audio", "raw")])
def test_the_command_writes_the_published_layout(tmp_path, family, generation):
    out = tmp_path / family
    run = subprocess.run([sys.executable, "-m", "model.tiny", str(out), "--family", family], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "random weights" in run.stderr.lower()
    published = fx.checkpoint("tiny-chat", tmp_path)
    assert sorted(p.name for p in out.iterdir() if p.name != "README.md") == sorted(p.name for p in published.iterdir())
    assert not list(out.glob("*.py"))
    config = json.loads((out / "config.json").read_text())
    reference = json.loads((published / "config.json").read_text())
    assert config["model_type"] == "qwen" and config["architectures"] == ["QWenLMHeadModel"]
    assert config["auto_map"] == reference["auto_map"] and config["tiny_random"] is True
    assert set(config) - {"tiny_random_marker"} == set(reference) - {"tiny_random_marker"}
    assert set(config["audio"]) == set(reference["audio"])
    # The same parameter names and shapes as the fixture's tiny checkpoint (other vocabulary size).
    ours, theirs = _keys(out), _keys(published)
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if "wte" not in k and "lm_head" not in k} == \
        {k: v for k, v in theirs.items() if "wte" not in k and "lm_head" not in k}
    assert json.loads((out / "generation_config.json").read_text())["chat_format"] == generation
    tokenizer = QwenAudioTokenizer.from_pretrained(out)
    assert config["audio"]["audio_start_id"] == tokenizer.audio_start_id
    assert config["vocab_size"] >= tokenizer.n_vocab
    worker = ModelWorker.from_pretrained(str(out), device="cpu", dtype="float32")
    try:
        assert worker.info.model_family == "Qwen-Audio"
        assert worker.info.family == ("chat" if generation == "chatml" else "base")
        assert worker.info.random_weights and "RANDOM WEIGHTS" in worker.info.label
    finally:
        worker.shutdown()


def test_qwen_audio_streams_a_piece_per_token_that_joins_to_the_decode(qwen_audio_worker):
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(fx.audio("audio/speech_zh.wav"))},
                                             {"type": "text", "text": "请转写这段音频。"}]}]
    with qwen_audio_worker.stream(messages, GenerationParams(temperature=0, max_new_tokens=64, min_new_tokens=64)) as reply:
        pieces = list(reply)
    assert len(reply.token_ids) == 64
    tokenizer = qwen_audio_worker.family_adapter.tokenizer
    assert "".join(pieces) == tokenizer.decode(reply.token_ids, specials="timestamps")
    assert len(pieces) >= 40, len(pieces)


def test_bad_audio_is_refused_by_name(qwen_audio_worker, tmp_path):
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    ask = lambda path: [{"role": "user", "content": [{"type": "audio", "audio": str(path)}]}]  # noqa: E731
    with pytest.raises(AudioDecodeError, match="notes.wav"):
        qwen_audio_worker.stream(ask(garbage))
    from audio_samples import tone, write_wav

    long = write_wav(tmp_path / "eleven.wav", tone(301.0, 200.0))
    with pytest.raises(AudioTooLongError, match="eleven.wav: the audio is 5 min 1 s long; the limit is 5 min"):
        qwen_audio_worker.stream(ask(long))
    assert qwen_audio_worker.generate(ask(fx.audio("audio/tone_1s37.wav")), GenerationParams(temperature=0, max_new_tokens=3))
