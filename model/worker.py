"""The process-wide model worker: conversation in, streamed text out, one generation at a time.

A request travels: ``stream()`` (caller's thread) validates the conversation, decodes and windows its
audio, renders the prompt and runs the processor; the request then waits in a FIFO queue; the single
generation thread, which owns the device, runs ``model.generate`` with a streamer that turns every
token into text at once; the caller's :class:`ReplyStream` yields those pieces. Closing the stream
cancels the request: a waiting one leaves the queue, a running one stops after the current token.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .adapters import LoadedAdapter, check_merge, locate_adapter
from .audio import AudioLimits, decode_audio
from .caches import CacheSizes, FileDigests, LruCache, cached_decoder
from .conversation import AudioCollector, PreparedPrompt
from .errors import (
    CheckpointLoadError,
    ContextTooLongError,
    GenerationFailedError,
    GenerationOutOfMemoryError,
    WorkerBusyError,
    WorkerError,
    WorkerRestartedError,
    WorkerStoppedError,
)
from .loading import (
    DEFAULT_CHECKPOINT,
    check_tryout,
    Placement,
    load_model_and_processor,
    locate_checkpoint,
    resolve_placement,
    set_threads,
)
from . import zerogpu
from .families import make_family
from .generation import generate_tokens, run_generate
from .params import ATTENTION_CHOICES, FALLBACK, KV_CACHE_CHOICES, GenerationParams
from .prefix_cache import PrefixCache
from .quantization import parameter_count

logger = logging.getLogger(__name__)

_DONE = object()
#: How often a reader waiting for the next piece checks that a generation thread is still there to send it.
_LIVENESS_POLL_S = 0.5
FAILED = "Generation failed unexpectedly (the error was logged); please try again."
RESTARTED = "The model worker stopped unexpectedly and has been restarted; please send your message again."
STOPPED = "The model worker is shutting down; it takes no more requests."


@dataclass(frozen=True)
class Speedups:
    """How the model computes: the attention kernel and the kind of KV cache.

    ``attention``: ``auto`` (transformers' choice, PyTorch's scaled-dot-product attention), ``sdpa``,
    ``eager`` (plain matrix products) or ``flash_attention_2`` (needs the ``flash-attn`` package and a GPU).
    ``kv_cache``: ``dynamic`` (grows with the reply; the only one the prompt prefix cache can reuse),
    ``static`` (preallocated to the prompt plus ``max_new_tokens``) or ``static-compile`` (static, with
    the decoding step compiled by ``torch.compile``; the first replies of each new length are slow
    while it compiles). A static cache turns the prefix cache off. Greedy output is the same with
    every choice (tested on the tiny checkpoint).
    """

    attention: str = "auto"
    kv_cache: str = "dynamic"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, not {self.attention!r}")
        if self.kv_cache not in KV_CACHE_CHOICES:
            raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHE_CHOICES)}, not {self.kv_cache!r}")

    def generate_kwargs(self, device: str) -> dict[str, Any]:
        """What ``model.generate`` needs for this KV cache (nothing for the default)."""
        if self.kv_cache == "dynamic":
            return {}
        if self.kv_cache == "static":
            return {"cache_implementation": "static", "disable_compile": True}
        from transformers import CompileConfig

        compile_config = CompileConfig()
        # transformers compiles a static cache's decoding step by itself on CUDA; elsewhere only if told to.
        compile_config._compile_all_devices = not device.startswith("cuda")
        return {"cache_implementation": "static", "compile_config": compile_config}


@dataclass(frozen=True)
class WorkerInfo:
    """What the worker runs, for headers, logs and ``/v1/models``."""

    checkpoint: str
    family: str  # "chat" (free conversation, e.g. -Instruct, -Chat) or "base" (task prompts)
    device: str
    dtype: str
    random_weights: bool  # True for the tiny test checkpoints: their answers are gibberish
    context_length: int
    parameters: int
    model_family: str = "Qwen2-Audio"  # or "Qwen-Audio" (Qwen-Audio-Chat and Qwen-Audio)
    quantization: str = "none"  # "8bit" / "4bit": the language model's linear layers (model.quantization)
    #: The sampling defaults the checkpoint's generation_config sets (the lowest layer of the app's defaults).
    generation_defaults: GenerationParams = field(default_factory=GenerationParams)
    adapter: str = ""  # the LoRA adapter applied on top (its short name), "" for none
    adapter_merged: bool = False  # True when it was merged into the weights (--merge-adapter)

    @property
    def label(self) -> str:
        name = self.checkpoint.rstrip("/").split("/")[-1] if "/" in self.checkpoint else self.checkpoint
        suffix = " — RANDOM WEIGHTS, answers are gibberish" if self.random_weights else ""
        weights = self.dtype if self.quantization == "none" else f"{self.quantization} ({self.dtype} elsewhere)"
        lora = f" + LoRA {self.adapter}{' (merged)' if self.adapter_merged else ''}" if self.adapter else ""
        return f"{name} ({self.model_family} {self.family}){lora} on {self.device.upper()} in {weights}{suffix}"


class _Request:
    _ids = itertools.count(1)

    def __init__(self, inputs: Any, generate_kwargs: dict[str, Any], seed: int | None, prepared: PreparedPrompt):
        self.id = next(self._ids)
        self.inputs = inputs
        self.generate_kwargs = generate_kwargs
        self.seed = seed
        self.prepared = prepared
        self.prompt_tokens = inputs.length
        self.reused_tokens = 0  # prompt tokens whose KV came from the prefix cache
        self.out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.completion_tokens = 0
        self.token_ids: list[int] = []  # the reply's token ids, once it has ended
        self.finish_reason: str | None = None  # "stop", "length", "cancelled" or "error"
        self.enqueued_at = time.perf_counter()
        self.context = contextvars.copy_context()
        self._end_lock = threading.Lock()

    def end(self, reason: str, error: BaseException | None = None) -> bool:
        """End the request once (later calls do nothing and return False): the reason is set first, then
        the error (if any) and the end of the stream are queued, so a reader that sees either finds the reason."""
        with self._end_lock:
            if self.finished.is_set():
                return False
            self.finish_reason = reason
            if error is not None:
                self.out.put(error)
            self.finished.set()
            self.out.put(_DONE)
            return True


class ReplyStream(Iterator[str]):
    """Iterator over the text pieces of one reply; ``"".join(stream)`` is the whole reply.

    Closing it (``close()``, leaving a ``with`` block, or dropping it) cancels the request. Errors
    raised during generation come out of ``next()`` as :class:`WorkerError` subclasses.
    """

    def __init__(self, worker: "ModelWorker", request: _Request):
        self._worker = worker
        self._request = request
        self._closed = False
        self._held: Any = None  # the end or an error met by take_ready, for the next next()

    # What was done with the input, available before the first piece.
    @property
    def prepared(self) -> PreparedPrompt:
        return self._request.prepared

    @property
    def prompt_tokens(self) -> int:
        return self._request.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self._request.completion_tokens

    @property
    def token_ids(self) -> list[int]:
        """The reply's token ids (the stop token included), complete once the stream has ended."""
        return list(self._request.token_ids)

    @property
    def reused_tokens(self) -> int:
        """Prompt tokens whose KV cache came from an earlier prompt (0 until generation starts)."""
        return self._request.reused_tokens

    @property
    def finish_reason(self) -> str | None:
        """"stop" (end of reply), "length" (max_new_tokens reached), "cancelled" or "error"; None while running."""
        return self._request.finish_reason

    @property
    def position(self) -> int | None:
        """Requests ahead of this one: 0 while it generates, None once it has finished or was closed."""
        return self._worker._position(self._request)

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until generation of this request has begun (True), or ``timeout`` passes or the request
        ends without starting (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._request.started.is_set():
            if self._request.finished.is_set():
                return False
            left = _LIVENESS_POLL_S if deadline is None else min(_LIVENESS_POLL_S, deadline - time.monotonic())
            if left <= 0:
                return False
            if not self._request.started.wait(left):
                self._worker._check_alive()
        return True

    def __iter__(self) -> "ReplyStream":
        return self

    def __next__(self) -> str:
        if self._closed:
            raise StopIteration
        item, self._held = self._held, None
        while item is None:
            try:
                item = self._request.out.get(timeout=_LIVENESS_POLL_S)
            except queue.Empty:  # nothing yet: is there still a thread that can answer?
                self._worker._check_alive()
        if item is _DONE:
            self._closed = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._closed = True
            raise item
        return item

    def take_ready(self, until: float | None = None) -> str:
        """The text of every piece that has already arrived ("" if none has), and, given ``until`` (a
        ``time.monotonic()`` deadline), of those arriving before it; the end of the reply or an error
        ends the wait at once and is left for the next ``next()``.

        A consumer that sends updates over the network calls it after ``next()``: what piles up while
        it sends, or until its next update is due, goes out as one update.
        """
        text = []
        while self._held is None and not self._closed:
            timeout = None if until is None else until - time.monotonic()
            try:
                if timeout is None or timeout <= 0:
                    item = self._request.out.get_nowait()
                else:
                    item = self._request.out.get(timeout=timeout)
            except queue.Empty:
                break
            if item is _DONE or isinstance(item, BaseException):
                self._held = item
            else:
                text.append(item)
        return "".join(text)

    def close(self) -> None:
        """Cancel the request if it is still waiting or running; safe to call more than once."""
        if not self._request.finished.is_set():
            self._worker._cancel(self._request)
        self._closed = True

    def __enter__(self) -> "ReplyStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


class ModelWorker:
    """Owns one model (of any family in :mod:`model.families`); streams replies to conversations one at a time.

    Create it with :meth:`from_pretrained` (the process-wide singleton) and pass it to whoever needs it.
    """

    _instances: dict[tuple[Any, ...], "ModelWorker"] = {}
    _instances_lock = threading.Lock()

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        checkpoint: str,
        placement: Placement,
        audio_limits: AudioLimits | None = None,
        max_queue: int | None = None,
        gpu_duration: int = 120,
        cache: CacheSizes | None = None,
        speedups: Speedups | None = None,
        adapter: LoadedAdapter | None = None,
    ):
        """``adapter``: the LoRA adapter the model carries (default: what the loader recorded on it)."""
        self.model = model
        self.speedups = speedups or Speedups()
        self.processor = processor
        self.placement = placement
        self.audio_limits = audio_limits or AudioLimits()
        self.max_queue = max_queue
        self._encode_lock = threading.Lock()

        # On ZeroGPU generation runs inside @spaces.GPU as a generator (a closure over the model, so only
        # the request's tensors travel to the GPU process); elsewhere it runs in the worker thread itself.
        self._zerogpu = zerogpu.on_zerogpu()
        if self._zerogpu:

            def generate_on_device(inputs: Any, generate_kwargs: dict[str, Any], seed: int | None):
                yield from generate_tokens(self.model, inputs, generate_kwargs, seed)

            self._generate_on_device = zerogpu.gpu(generate_on_device, duration=gpu_duration)
        # Work a follow-up turn would otherwise redo, kept by content: decoded audio, per-window audio
        # features, and the KV cache of earlier prompts (not on ZeroGPU, whose GPU process is short-lived).
        cache = cache or CacheSizes()
        self.audio_cache: LruCache[Any] = LruCache(cache.audio_mb << 20, name="decoded audio")
        self.feature_cache: LruCache[Any] = LruCache(cache.features_mb << 20, name="audio features")
        reuse_kv = not self._zerogpu and self.speedups.kv_cache == "dynamic"
        self.prefix_cache = PrefixCache(cache.prefix_tokens if reuse_kv else 0)
        digests = FileDigests()

        def make_collector(pcm: str) -> AudioCollector:
            decode = decode_audio if pcm == "f32" else functools.partial(decode_audio, pcm=pcm)
            if cache.audio_mb > 0:
                decode = cached_decoder(decode, self.audio_cache, digests)
            return AudioCollector(decode, self.audio_limits, digests)

        # Everything that depends on the checkpoint's family: prompt format, inputs, detokenizing.
        self.family_adapter = make_family(model, processor, make_collector=make_collector,
                                          feature_cache=self.feature_cache)
        adapter = adapter or getattr(model, "loaded_adapter", None)
        self.info = WorkerInfo(
            checkpoint=checkpoint,
            family=self.family_adapter.kind,
            device=placement.device,
            dtype=placement.dtype,
            quantization=placement.quantization,
            random_weights=bool(getattr(model.config, "tiny_random", False)),
            context_length=self.family_adapter.context_length,
            parameters=parameter_count(model),
            model_family=self.family_adapter.name,
            generation_defaults=GenerationParams.from_generation_config(model.generation_config),
            adapter=adapter.name if adapter else "",
            adapter_merged=bool(adapter and adapter.merged),
        )
        self._cv = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._running: _Request | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="model-worker", daemon=True)
        self._thread.start()
        logger.info("worker ready: %s", self.info.label)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str = DEFAULT_CHECKPOINT,
        device: str = "auto",
        dtype: str = "auto",
        *,
        audio_limits: AudioLimits | None = None,
        max_queue: int | None = None,
        gpu_duration: int = 120,
        cache: CacheSizes | None = None,
        speedups: Speedups | None = None,
        quantization: str = "none",
        threads: int = 0,
        adapter: str = "",
        merge_adapter: bool = False,
    ) -> "ModelWorker":
        """Load ``checkpoint`` (hub id or local directory) and return the process-wide worker for it.

        ``adapter`` (a directory or hub id, "" for none) is a PEFT LoRA adapter applied on top, folded into
        the weights with ``merge_adapter`` (see :mod:`model.adapters`). A second call with the same
        arguments returns the same worker. Raises CheckpointLoadError with one sentence when the
        checkpoint or the adapter cannot be found, downloaded or loaded.
        """
        speedups = speedups or Speedups()
        key = (checkpoint, device, dtype, audio_limits or AudioLimits(), max_queue, gpu_duration,
               cache or CacheSizes(), speedups, quantization, threads, adapter, merge_adapter)
        with cls._instances_lock:
            worker = cls._instances.get(key)
            if worker is None:
                placement = resolve_placement(device, dtype, quantization)
                if not adapter and merge_adapter:
                    raise CheckpointLoadError("--merge-adapter needs an adapter to merge: pass one with --adapter.")
                check_tryout(checkpoint, device, placement)
                set_threads(threads)
                path = locate_checkpoint(checkpoint)
                # The adapter is found and checked before the minutes the base model takes to load.
                source = locate_adapter(adapter) if adapter else None
                if source is not None:
                    check_merge(merge_adapter, quantization)
                model, processor = load_model_and_processor(path, placement, attention=speedups.attention,
                                                            adapter=source, merge_adapter=merge_adapter,
                                                            checkpoint=checkpoint)
                worker = cls(
                    model,
                    processor,
                    checkpoint=checkpoint,
                    placement=placement,
                    audio_limits=audio_limits,
                    max_queue=max_queue,
                    gpu_duration=gpu_duration,
                    cache=cache,
                    speedups=speedups,
                )
                cls._instances[key] = worker
            return worker

    @property
    def family(self) -> str:
        """"chat" or "base"; the UI offers free chat for the first and task prompts for the second."""
        return self.info.family

    # ----------------------------------------------------------------------------- public API
    def prepare(self, messages: Sequence[dict[str, Any]]) -> PreparedPrompt:
        """Validate, decode and render ``messages`` without generating (raises the same errors as stream)."""
        return self.family_adapter.build(messages)

    def stream(self, messages: Sequence[dict[str, Any]], params: GenerationParams | None = None) -> ReplyStream:
        """Queue a reply to ``messages`` and return the stream of its text pieces.

        Bad audio, a malformed conversation or a prompt beyond the context raise here, before queueing.
        """
        params = params or GenerationParams()
        prepared = self.family_adapter.build(messages)
        with self._encode_lock:
            inputs = self.family_adapter.encode(prepared)
        prompt_tokens = inputs.length
        room = self.info.context_length - prompt_tokens
        if room < 1:
            raise ContextTooLongError(
                f"The conversation is {prompt_tokens} tokens long, beyond the model's context of "
                f"{self.info.context_length} tokens; clear the chat, shorten the message or use less audio."
            )
        generate_kwargs = params.to_generate_kwargs(self.model.generation_config)
        generate_kwargs.update(self.speedups.generate_kwargs(self.placement.device))
        wanted = generate_kwargs.get("max_new_tokens") or getattr(self.model.generation_config, "max_new_tokens", None)
        generate_kwargs["max_new_tokens"] = min(wanted or FALLBACK.max_new_tokens, room)
        if "min_new_tokens" in generate_kwargs:
            generate_kwargs["min_new_tokens"] = min(generate_kwargs["min_new_tokens"], generate_kwargs["max_new_tokens"])
        request = _Request(inputs, generate_kwargs, params.seed, prepared)
        if not self._check_alive():
            raise WorkerRestartedError(RESTARTED)
        with self._cv:
            if self._stopping:
                raise WorkerStoppedError(STOPPED)
            if self.max_queue is not None and len(self._waiting) >= self.max_queue:
                raise WorkerBusyError("The model is busy with other requests; please try again in a moment.")
            self._waiting.append(request)
            self._cv.notify()
        logger.info(
            "request %d queued: %d prompt tokens, %d audio window(s), position %d",
            request.id, prompt_tokens, len(prepared.windows), self._position(request) or 0,
        )
        return ReplyStream(self, request)

    def voice_detector(self, settings: Any = None) -> Any:
        """A new :class:`model.vad.VoiceDetector` (Silero VAD on the CPU) for one voice-mode session."""
        from .vad import VadSettings, VoiceDetector

        return VoiceDetector(settings or VadSettings())

    def decode_audio(self, path: str, limits: AudioLimits | None = None) -> Any:
        """``path`` decoded as the model uses it (16 kHz mono float32), through the content-keyed cache the
        worker's own requests use: the page's checks, its clips and the reply share one decode."""
        return self.family_adapter.collector.decode(path, limits or self.audio_limits)

    def generate(self, messages: Sequence[dict[str, Any]], params: GenerationParams | None = None) -> str:
        """The whole reply as one string (for callers that do not stream)."""
        with self.stream(messages, params) as reply:
            return "".join(reply)

    @property
    def queue_length(self) -> int:
        """Requests waiting (not counting the one generating)."""
        with self._cv:
            return len(self._waiting)

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running is not None or bool(self._waiting)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the generation thread (tests and clean exits)."""
        with self._cv:
            self._stopping = True
            for request in self._waiting:
                request.cancelled.set()
            if self._running is not None:
                self._running.cancelled.set()
            self._cv.notify_all()
        self._thread.join(timeout)
        with self._cv:  # the thread ends the waiting requests; if it was dead, nobody else would
            waiting, self._waiting = list(self._waiting), deque()
        for request in waiting:
            request.end("cancelled", WorkerStoppedError(STOPPED))
        with self._instances_lock:
            for key, worker in list(self._instances.items()):
                if worker is self:
                    del self._instances[key]

    # ----------------------------------------------------------------------------- queue
    def _position(self, request: _Request) -> int | None:
        with self._cv:
            if request is self._running:
                return 0
            try:
                index = self._waiting.index(request)
            except ValueError:
                return None
            return index + (1 if self._running is not None else 0)

    def _cancel(self, request: _Request) -> None:
        request.cancelled.set()
        with self._cv:
            try:
                self._waiting.remove(request)
            except ValueError:
                return  # already running (stops after the current token) or finished
        if request.end("cancelled"):
            logger.info("request %d cancelled while waiting", request.id)

    def _check_alive(self) -> bool:
        """Restart the generation thread if it has died; the requests that waited for it end with a
        sentence (they may be sent again). Returns whether it was alive."""
        with self._cv:
            if self._thread.is_alive() or self._stopping:
                return True
            waiting, self._waiting = list(self._waiting), deque()
            running, self._running = self._running, None
            self._thread = threading.Thread(target=self._serve, name="model-worker", daemon=True)
            self._thread.start()
        logger.error("the generation thread had stopped; started a new one (%d waiting request(s) ended)", len(waiting))
        for request in ([running] if running is not None else []) + waiting:
            request.end("error", WorkerRestartedError(RESTARTED))
        return False

    def _serve(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    waiting, self._waiting = list(self._waiting), deque()
                    break
                request = self._waiting.popleft()
                self._running = request
            # Whatever happens from here on, this request ends with a reason. An exception ends only it; a
            # BaseException that ends the thread (SystemExit...) still ends it, and the next caller finds
            # the thread dead (``_check_alive``).
            reason, error = "error", WorkerRestartedError(RESTARTED)
            try:
                reason, error = self._run(request)
            except Exception:  # noqa: BLE001 - a failure outside _run's own handling
                logger.exception("request %d failed outside generation", request.id)
                reason, error = "error", GenerationFailedError(FAILED)
            finally:
                with self._cv:
                    self._running = None
                request.end(reason, error)
        for request in waiting:
            request.end("cancelled", WorkerStoppedError(STOPPED))

    def _generate_in_thread(self, request: _Request, on_tokens: Any) -> None:
        import torch

        inputs = request.inputs
        ids = inputs.input_ids[0].numpy()
        hit = self.prefix_cache.lookup(ids, inputs.spans, inputs.cache_tag)
        # With a static KV cache, generate() allocates its own (and nothing is kept for reuse).
        kv = None if self.speedups.kv_cache != "dynamic" else (hit.kv if hit else self.family_adapter.new_cache())
        skipped = hit.windows_skipped if hit else 0
        request.reused_tokens = hit.length if hit else 0
        # Only the windows after the reused prefix go through the audio encoder.
        model_inputs = {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask,
                        **({"cache": kv} if kv is not None else {}), **inputs.audio_inputs(skipped)}
        if hit:
            logger.debug("request %d reuses %d cached prompt tokens (%d audio windows)", request.id, hit.length, skipped)
        run_generate(self.model, model_inputs, request.generate_kwargs, request.seed, on_tokens, request.cancelled)
        if self.prefix_cache.enabled:
            with torch.inference_mode():
                self.prefix_cache.store(ids, inputs.spans, kv, inputs.cache_tag)

    def _generate_via_generator(self, request: _Request, on_tokens: Any) -> None:
        # The caller's context (Gradio's request, which ZeroGPU reads for the user's quota) travels
        # with the request into this thread.
        inputs = request.inputs
        model_inputs = {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask, **inputs.audio_inputs()}
        tokens = request.context.run(self._generate_on_device, model_inputs, request.generate_kwargs, request.seed)
        try:
            while not request.cancelled.is_set():
                chunk = request.context.run(next, tokens, None)
                if chunk is None:
                    return
                on_tokens(chunk)
        finally:
            request.context.run(tokens.close)  # stops generate() after the token in progress

    def _run(self, request: _Request) -> tuple[str, WorkerError | None]:
        """Generate ``request``'s reply into its queue; return its finish reason and the error, if any."""
        import torch

        request.started.set()
        started = time.perf_counter()
        error: WorkerError | None = None
        detokenizer = None
        try:
            detokenizer = self.family_adapter.new_detokenizer()

            def on_tokens(chunk: list[int]) -> None:
                for token_id in chunk:
                    request.completion_tokens += 1
                    piece = detokenizer.push(token_id)
                    if piece:
                        request.out.put(piece)

            if self._zerogpu:
                self._generate_via_generator(request, on_tokens)
            else:
                self._generate_in_thread(request, on_tokens)
            rest = detokenizer.flush()
            if rest:
                request.out.put(rest)
        except torch.OutOfMemoryError:
            logger.warning("request %d ran out of device memory", request.id)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            error = GenerationOutOfMemoryError(
                "The GPU ran out of memory for this request; try shorter audio, fewer clips or a lower max new tokens."
            )
        except WorkerError as exc:
            error = exc
        except Exception:  # noqa: BLE001 - any failure becomes a message; the worker keeps serving
            logger.exception("request %d failed during generation", request.id)
            error = GenerationFailedError(FAILED)
        ids = detokenizer.token_ids if detokenizer is not None else []
        request.token_ids = ids
        if error is not None:
            reason = "error"
        elif request.cancelled.is_set():
            reason = "cancelled"
        elif ids and ids[-1] in self.family_adapter.eos_ids:
            reason = "stop"
        else:
            reason = "length"
        logger.info(
            "request %d %s: %d tokens in %.2f s (waited %.2f s)",
            request.id, reason, request.completion_tokens, time.perf_counter() - started,
            started - request.enqueued_at,
        )
        return reason, error
