"""On a ZeroGPU Space generation runs inside @spaces.GPU; streaming, parity and Stop still hold.

The real ``spaces`` package needs Hugging Face's ZeroGPU service, so a stand-in module records what the
worker hands to ``spaces.GPU`` and runs it the way ZeroGPU does: arguments pickled across a process
boundary, yields passed back one by one, and the generator closed when the caller stops reading.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import types

import pytest

from model import GenerationParams

GREEDY = GenerationParams(temperature=0, max_new_tokens=40)


@pytest.fixture()
def fake_spaces(monkeypatch):
    calls = {"decorated": [], "runs": 0, "arg_types": [], "closed": 0}

    def GPU(fn, duration=None):  # noqa: N802 - spaces' own name
        calls["decorated"].append((fn.__name__, duration))

        def wrapper(*args, **kwargs):
            payload = pickle.dumps((args, kwargs))  # what ZeroGPU sends to its forked GPU process
            calls["arg_types"].append([type(a).__name__ for a in args] + [type(v).__name__ for v in kwargs.values()])
            calls["runs"] += 1
            args, kwargs = pickle.loads(payload)
            gen = fn(*args, **kwargs)
            try:
                for item in gen:
                    yield pickle.loads(pickle.dumps(item))
            except GeneratorExit:
                calls["closed"] += 1
                gen.close()
                raise

        return wrapper

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    return calls


@pytest.fixture()
def zero_worker(fake_spaces, make_worker):
    return make_worker(gpu_duration=90)


def ask(path):
    return [{"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": "What is it?"}]}]


def test_generation_runs_inside_spaces_gpu_with_the_same_replies(zero_worker, fake_spaces, worker, audio_dir):
    assert fake_spaces["decorated"] == [("generate_on_device", 90)]
    pieces = list(zero_worker.stream(ask(audio_dir / "tone_a.wav"), GREEDY))
    assert fake_spaces["runs"] == 1
    assert len(pieces) > 1
    assert "".join(pieces) == worker.generate(ask(audio_dir / "tone_a.wav"), GREEDY)
    # Only the request's tensors and settings cross to the GPU process, never the model.
    assert fake_spaces["arg_types"] == [["dict", "dict", "NoneType"]]


def test_stop_closes_the_gpu_generator(zero_worker, fake_spaces, audio_dir):
    reply = zero_worker.stream(ask(audio_dir / "tone_a.wav"), GenerationParams(temperature=0, max_new_tokens=600, min_new_tokens=600))
    next(reply)
    reply.close()
    follow = zero_worker.generate(ask(audio_dir / "tone_b.wav"), GenerationParams(temperature=0, max_new_tokens=3))
    assert follow is not None
    assert reply.finish_reason == "cancelled" and reply.completion_tokens < 600
    assert fake_spaces["closed"] >= 1


def test_off_spaces_nothing_is_wrapped(monkeypatch):
    from model import zerogpu

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def fn():
        yield 1

    assert zerogpu.gpu(fn, duration=60) is fn
    assert zerogpu.import_spaces_first() is False


def test_spaces_is_imported_before_torch(tmp_path):
    fake = tmp_path / "spaces"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import sys
        TORCH_WAS_IMPORTED = "torch" in sys.modules
        def GPU(fn, duration=None):
            return fn
    """))
    code = (
        "import model.zerogpu as z, sys\n"
        "assert z.import_spaces_first()\n"
        "import spaces\n"
        "print('torch before spaces:', spaces.TORCH_WAS_IMPORTED)\n"
    )
    env = dict(os.environ, SPACES_ZERO_GPU="true", PYTHONPATH=f"{tmp_path}{os.pathsep}{os.getcwd()}")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch before spaces: False" in out.stdout
