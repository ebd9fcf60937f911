"""Device choice: CUDA, Apple's MPS (the check stubbed: no Mac here), CPU; dtypes and quantization per
device; PyTorch's CPU thread count."""

from __future__ import annotations

import pytest
import torch

from app.config import DemoConfig, load_config
from model import ModelWorker
from model.errors import CheckpointLoadError, UserFacingError
from model.loading import resolve_placement


@pytest.fixture
def mac(monkeypatch):
    """A machine whose PyTorch sees an Apple GPU and no CUDA one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_picks_the_apple_gpu_in_float16_when_there_is_no_cuda(mac):
    placement = resolve_placement("auto", "auto")
    assert (placement.device, placement.dtype, placement.device_map) == ("mps", "float16", None)
    assert resolve_placement("mps", "float32").dtype == "float32"
    assert resolve_placement("cpu", "auto").device == "cpu"


def test_mps_refuses_what_it_cannot_run_in_one_sentence(mac):
    with pytest.raises(CheckpointLoadError, match="bfloat16 is not supported well on Apple's MPS; use --dtype float16"):
        resolve_placement("mps", "bfloat16")
    with pytest.raises(CheckpointLoadError, match="bitsandbytes does not run on Apple's MPS"):
        resolve_placement("auto", "auto", "4bit")


def test_asking_for_a_gpu_that_is_not_there_says_so(no_gpu):
    with pytest.raises(CheckpointLoadError, match="--device mps was asked for, but PyTorch sees no Apple GPU"):
        resolve_placement("mps", "auto")
    with pytest.raises(CheckpointLoadError, match="--device cuda was asked for"):
        resolve_placement("cuda", "auto")
    assert resolve_placement("auto", "auto").device == "cpu"


def test_device_and_threads_options():
    assert load_config(["--device", "mps"]).device == "mps"
    assert load_config(["--threads", "3"]).threads == 3
    assert load_config([], environ={"QWEN_DEMO_THREADS": "2"}).threads == 2
    with pytest.raises(UserFacingError, match="threads must be 0 or more"):
        DemoConfig(threads=-1)


def test_threads_sets_pytorchs_cpu_thread_count(tiny_checkpoint):
    before = torch.get_num_threads()
    try:
        worker = ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32", threads=1)
        assert torch.get_num_threads() == 1
        assert worker.generate([{"role": "user", "content": "hi"}])  # and it answers
        worker.shutdown()
    finally:
        torch.set_num_threads(before)
