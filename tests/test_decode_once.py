"""Decode once: the page's check of an upload, its echo, the model's request and the clips cut from it share
one content-keyed cache (the backend's), so a file costs one ffmpeg run while it is cached."""

from __future__ import annotations

import subprocess

import pytest

from app.config import DemoConfig
from app.handlers import ChatHandlers
from app.history import audio_paths
from audio_samples import tone, write_wav
from test_app_handlers import SETTINGS, FakeRequest


@pytest.fixture
def ffmpeg_runs(monkeypatch) -> list[list[str]]:
    """Every ffmpeg process started from now on (its argument list)."""
    runs: list[list[str]] = []
    real = subprocess.Popen

    def counting(args, *rest, **kwargs):
        if isinstance(args, (list, tuple)) and args and str(args[0]).endswith("ffmpeg"):
            runs.append([str(a) for a in args])
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counting)
    return runs


@pytest.mark.parametrize("family", ["qwen2-audio", "qwen-audio-chat"])
def test_one_ffmpeg_run_per_distinct_upload_over_a_three_turn_conversation(family, make_worker, tmp_path,
                                                                           ffmpeg_runs, request):
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
    decoded = [run for run in ffmpeg_runs if "pipe:" in run]
    assert len(decoded) == 2, decoded  # question.wav once (sent twice, re-sent in every turn), other.wav once
