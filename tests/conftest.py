"""Shared fixtures: tiny random checkpoints built locally (no hub) of both families, workers on them, generated audio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio_samples import tone, write_wav  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen2-Audio chat checkpoint in today's save_pretrained layout."""
    from model.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def tiny_hub_checkpoint(tmp_path_factory) -> Path:
    """The same kind of checkpoint in the older layout of the published checkpoints."""
    from model.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-hub"), layout="hub")


@pytest.fixture(scope="session")
def tiny_base_checkpoint(tmp_path_factory) -> Path:
    """A tiny random base-model checkpoint (no chat template), like Qwen/Qwen2-Audio-7B."""
    from model.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-base"), chat=False)


@pytest.fixture(scope="session")
def tiny_qwen_audio_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen-Audio-Chat checkpoint in the hub's published layout (``model.tiny --family qwen-audio-chat``)."""
    from model.families.qwen_audio.tiny import build_tiny_qwen_audio_checkpoint

    return build_tiny_qwen_audio_checkpoint(tmp_path_factory.mktemp("tiny-qwen-audio-chat"))


@pytest.fixture(scope="session")
def tiny_qwen_audio_base_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen-Audio (base) checkpoint in the hub's published layout."""
    from model.families.qwen_audio.tiny import build_tiny_qwen_audio_checkpoint

    return build_tiny_qwen_audio_checkpoint(tmp_path_factory.mktemp("tiny-qwen-audio"), chat=False)


@pytest.fixture(scope="session")
def qwen_audio_worker(tiny_qwen_audio_checkpoint):
    """The process-wide worker on the tiny Qwen-Audio-Chat checkpoint (CPU, float32)."""
    from model import ModelWorker

    return ModelWorker.from_pretrained(str(tiny_qwen_audio_checkpoint), device="cpu", dtype="float32")


#: The chat families the family-agnostic worker tests run on.
CHAT_FAMILIES = ("qwen2-audio", "qwen-audio-chat")


@pytest.fixture(params=CHAT_FAMILIES)
def any_worker(request):
    """The shared worker of each chat family in turn (Qwen2-Audio-Instruct, Qwen-Audio-Chat)."""
    return request.getfixturevalue("worker" if request.param == "qwen2-audio" else "qwen_audio_worker")


@pytest.fixture(scope="session")
def worker(tiny_checkpoint):
    """The process-wide worker on the tiny chat checkpoint (CPU, float32)."""
    from model import ModelWorker

    return ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32")


@pytest.fixture()
def make_worker(tiny_checkpoint):
    """A factory of workers of their own (a fresh model each), for tests that change settings or inject
    failures without touching the shared ``worker``; every worker made is shut down afterwards."""
    from model import ModelWorker
    from model.loading import Placement, load_model_and_processor

    made = []

    def make(attention: str = "auto", checkpoint: Path | None = None, **options):
        checkpoint = Path(checkpoint or tiny_checkpoint)
        placement = Placement("cpu", "float32", None)
        model, processor = load_model_and_processor(checkpoint, placement, attention=attention)
        made.append(ModelWorker(model, processor, checkpoint=str(checkpoint), placement=placement, **options))
        return made[-1]

    yield make
    for w in made:
        w.shutdown()


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    """16 kHz mono PCM16 WAVs: distinct tones (with seeded noise) of various lengths."""
    d = tmp_path_factory.mktemp("audio")
    write_wav(d / "tone_a.wav", tone(2.5, 440.0, seed=1))
    write_wav(d / "tone_b.wav", tone(4.0, 660.0, seed=2))
    write_wav(d / "tone_c.wav", tone(1.2, 220.0, seed=3))
    write_wav(d / "long_75s.wav", tone(75.0, 330.0, seed=4))
    for i in range(8):
        write_wav(d / f"client_{i}.wav", tone(1.0 + 0.4 * i, 200.0 + 90.0 * i, seed=10 + i))
    return d


@pytest.fixture
def toasts(monkeypatch) -> list[str]:
    """The page's toasts (``gr.Warning`` and ``gr.Info`` from the handlers), in order."""
    from app import handlers

    shown: list[str] = []
    monkeypatch.setattr(handlers.gr, "Warning", lambda message, *a, **k: shown.append(message))
    monkeypatch.setattr(handlers.gr, "Info", lambda message, *a, **k: shown.append(message))
    return shown
