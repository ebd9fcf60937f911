"""Decode once: the page's check of an upload, its echo, the model's request and the clips cut from it share
one content-keyed cache (the backend's), so a file is decoded once while it is cached."""

from __future__ import annotations

import pytest

from app.config import DemoConfig
from app.handlers import ChatHandlers
from app.history import audio_paths
from audio_samples import tone, write_wav
from model import audio
from test_app_handlers import SETTINGS, FakeRequest


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every file decoded from now on (by either decoder: in-process or the binary)."""
    files: list[str] = []
    for name in ("_decode_in_process", "_decode_with_binary"):
        real = getattr(audio, name)

        def counting(path, *rest, _real=real, **kwargs):
            files.append(path)
            return _real(path, *rest, **kwargs)

        monkeypatch.setattr(audio, name, counting)
    return files


@pytest.mark.parametrize("family", ["qwen2-audio", "qwen-audio-chat"])
def test_one_decode_per_distinct_upload_over_a_three_turn_conversation(family, make_worker, tmp_path, decodes,
                                                                      request):
    checkpoint = None if family == "qwen2-audio" else request.getfixturevalue("tiny_qwen_audio_checkpoint")
    worker = make_worker(checkpoint=checkpoint)
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path / "clips")
    clip = write_wav(tmp_path / "question.wav", tone(3.0, 400.0, seed=2))
    other = write_wav(tmp_path / "other.wav", tone(2.0, 600.0, seed=3))
    history: list[dict] = []
    for turn, path in enumerate([clip, clip, other]):  # the second turn sends the same file again
        message = {"text": f"Turn {turn}: what is it? Answer with timestamps.", "files": [str(path)]}
        assert handlers.validate_user_turn(message, history, FakeRequest())[0]["is_valid"]
        history, *_ = handlers.add_user_turn(message, history, FakeRequest())
        *_, (history, _) = list(handlers.answer(history, *SETTINGS, "transcribe", "", False, FakeRequest()))
        assert history[-1]["role"] == "assistant"
    assert len(audio_paths(history)) == 3
    assert len(decodes) == 2, decodes  # question.wav once (sent twice, re-sent in every turn), other.wav once
