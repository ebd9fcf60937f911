"""Hugging Face ZeroGPU support: run generation inside ``@spaces.GPU`` when the Space has ZeroGPU hardware.

On a ZeroGPU Space (``SPACES_ZERO_GPU`` is set) a GPU is attached only while a function decorated with
``spaces.GPU`` runs, in a forked process whose yields are sent back one by one. The worker's generation
step (:func:`model.generation.generate_tokens`) is a plain generator of picklable arguments, so it is
wrapped here and nothing else changes: streaming and Stop work as everywhere else. ``spaces`` must be
imported before torch; ``web_demo_audio.py`` calls :func:`import_spaces_first` before anything else.
Everywhere else this module does nothing (and ``spaces`` need not be installed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def on_zerogpu() -> bool:
    """True on a Hugging Face Space with ZeroGPU hardware."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def import_spaces_first() -> bool:
    """On ZeroGPU, import ``spaces`` now, before torch is imported (it must patch torch). Returns whether it did."""
    if not on_zerogpu():
        return False
    import spaces  # noqa: F401 - imported for its side effects on torch

    logger.info("ZeroGPU Space: generation will run inside @spaces.GPU")
    return True


def gpu(fn: F, duration: int) -> F:
    """``spaces.GPU(fn, duration=...)`` on ZeroGPU; ``fn`` itself everywhere else."""
    if not on_zerogpu():
        return fn
    import spaces

    return spaces.GPU(fn, duration=duration)
