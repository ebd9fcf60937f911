"""Running ``model.generate`` so that each new token is handed over at once and it can stop between tokens.

:func:`run_generate` runs ``generate`` in the calling thread and calls ``on_tokens`` with each new
token's ids; setting ``stop`` ends it after the token in progress. This is the worker's normal path:
tokens are detokenized right in the generation thread, with no extra thread hop per token.

:func:`generate_tokens` wraps the same call as a generator (``generate`` then runs in a thread of its
own): closing the generator stops ``generate`` after the token in progress and waits for it to return.

Being a plain generator function of picklable arguments is what lets it run unchanged inside a
Hugging Face ZeroGPU ``@spaces.GPU`` function (see :mod:`model.zerogpu`), where it executes in a
forked process and its yields are sent back one by one; closing the caller's side closes it there.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

_END = object()


class CallbackStreamer:
    """The ``streamer`` handed to ``generate``: calls ``on_tokens`` with each new token's ids (skips the prompt)."""

    def __init__(self, on_tokens: Callable[[list[int]], None]):
        self._on_tokens = on_tokens
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first passes the whole prompt
            self._prompt_seen = True
            return
        self._on_tokens(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


def _stop_when(event: threading.Event) -> Any:
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        """Ends generation after the current token once ``event`` is set."""

        def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001 - transformers' signature
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


def run_generate(
    model: Any,
    inputs: Any,
    generate_kwargs: dict[str, Any],
    seed: int | None,
    on_tokens: Callable[[list[int]], None],
    stop: threading.Event,
) -> None:
    """Run ``model.generate`` here, calling ``on_tokens`` with each new token's ids; ``stop`` ends it early.

    ``inputs`` are ``generate``'s tensor arguments (``input_ids``, ``attention_mask``, optionally
    the audio inputs and ``cache``, a KV cache to continue); tensors on CPU are fine:
    they are moved to the model's input device, and the audio features to its dtype, here.
    """
    import torch

    device = model.get_input_embeddings().weight.device
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if "input_features" in inputs:
        inputs["input_features"] = inputs["input_features"].to(model.dtype)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        model.generate(
            **inputs, **generate_kwargs, streamer=CallbackStreamer(on_tokens), stopping_criteria=[_stop_when(stop)]
        )


def generate_tokens(model: Any, inputs: Any, generate_kwargs: dict[str, Any], seed: int | None = None) -> Iterator[list[int]]:
    """:func:`run_generate` as a generator of each new token's ids; exceptions re-raise in the consumer."""
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()

    def run() -> None:
        try:
            run_generate(model, inputs, generate_kwargs, seed, out.put, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            out.put(exc)
        finally:
            out.put(_END)

    thread = threading.Thread(target=run, name="generate", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
