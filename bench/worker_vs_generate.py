"""Time to first piece and throughput: the model worker against bare ``model.generate``.

    python -m bench.worker_vs_generate [--checkpoint DIR] [--tokens 128] [--repeats 5] [--audio-seconds 10] [--json OUT]

Both paths get the same conversation (one audio of ``--audio-seconds`` + a question), greedy, with
exactly ``--tokens`` new tokens. The bare path is what a script using transformers directly does:
processor call on already-decoded audio, then ``model.generate`` with a streamer that only records
when each token arrives. The worker path is what the demo does: ``worker.stream(messages)`` from a
file path, including decoding it (in-process, PyAV), prompt rendering, the processor, the queue
hand-off and the per-token UTF-8 detokenizer; "worker, ffmpeg binary" is the same with the file
decoded by the ffmpeg binary instead (the demo's decoder before), and the decoders are also timed on
their own, side by side. Without ``--checkpoint`` a tiny random checkpoint is built in a temp dir
(its speed says nothing about the real 8.4 B model). This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import functools
from contextlib import contextmanager

from bench.audio import write_tone


logger = logging.getLogger("bench.worker_vs_generate")


def bench_bare(worker, messages, samples, tokens: int) -> dict[str, float]:
    import torch

    from model.generation import CallbackStreamer

    started = time.perf_counter()
    text = worker.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = worker.processor(text=[text], audio=[samples], sampling_rate=16000, return_tensors="pt")
    inputs = inputs.to(worker.model.device)
    inputs["input_features"] = inputs["input_features"].to(worker.model.dtype)
    times: list[float] = []  # when each new token arrived
    arrivals = CallbackStreamer(lambda ids: times.extend([time.perf_counter()] * len(ids)))
    with torch.inference_mode():
        worker.model.generate(**inputs, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, streamer=arrivals)
    total = time.perf_counter() - started
    first = times[0] - started
    return {"first_s": first, "total_s": total, "units": len(times), "rate": (len(times) - 1) / (times[-1] - times[0])}


def bench_worker(worker, messages, tokens: int) -> dict[str, float]:
    from model import GenerationParams

    started = time.perf_counter()
    times = []
    for piece in worker.stream(messages, GenerationParams(temperature=0, max_new_tokens=tokens, min_new_tokens=tokens)):
        if piece:
            times.append(time.perf_counter())
    total = time.perf_counter() - started
    return {"first_s": times[0] - started, "total_s": total, "units": len(times), "rate": (len(times) - 1) / (times[-1] - times[0])}


@contextmanager
def binary_decoder():
    """The worker decoding with the ffmpeg binary (model.audio's ``decoder="ffmpeg"``) while inside."""
    import model.worker
    from model.audio import decode_audio

    real = model.worker.decode_audio
    model.worker.decode_audio = functools.partial(decode_audio, decoder="ffmpeg")
    try:
        yield
    finally:
        model.worker.decode_audio = real


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory or hub id (default: build the tiny random one)")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (default: auto)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per reply (default: 128)")
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per path, after one warm-up (default: 5)")
    parser.add_argument("--audio-seconds", type=float, default=10.0, help="length of the test audio (default: 10)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from model import CacheSizes, ModelWorker
    from model.tiny import build_tiny_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    checkpoint = args.checkpoint or str(build_tiny_checkpoint(tmp / "tiny"))
    # Caches off: every run pays for decoding, features and the whole prefill, like a first turn.
    worker = ModelWorker.from_pretrained(checkpoint, device=args.device, cache=CacheSizes(0, 0, 0))
    cached = ModelWorker(worker.model, worker.processor, checkpoint=checkpoint, placement=worker.placement)
    with binary_decoder():  # the decoder is bound when a worker is made
        with_binary = ModelWorker(worker.model, worker.processor, checkpoint=checkpoint, placement=worker.placement,
                                  cache=CacheSizes(0, 0, 0))
    audio = tmp / "tone.wav"
    samples = write_tone(audio, args.audio_seconds, 440.0, seed=0)
    question = "What can you hear in this recording?"
    worker_messages = [{"role": "user", "content": [{"type": "audio", "audio": str(audio)}, {"type": "text", "text": question}]}]
    template_messages = [{"role": "user", "content": [{"type": "audio", "audio": "a"}, {"type": "text", "text": question}]}]

    bench_bare(worker, template_messages, samples, args.tokens)  # warm-up
    bench_worker(worker, worker_messages, args.tokens)
    bench_worker(with_binary, worker_messages, args.tokens)
    bench_worker(cached, worker_messages, args.tokens)  # fills its caches: later runs repeat a known request
    runs = {"bare generate": [], "worker.stream": [], "worker, ffmpeg binary": [], "repeat, cached": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits all alike
        runs["bare generate"].append(bench_bare(worker, template_messages, samples, args.tokens))
        runs["worker.stream"].append(bench_worker(worker, worker_messages, args.tokens))
        runs["worker, ffmpeg binary"].append(bench_worker(with_binary, worker_messages, args.tokens))
        runs["repeat, cached"].append(bench_worker(cached, worker_messages, args.tokens))

    from model.audio import decode_audio

    decode_ms: dict[str, list[float]] = {"pyav": [], "ffmpeg": []}
    for _ in range(args.repeats):
        for decoder, times in decode_ms.items():
            started = time.perf_counter()
            decode_audio(audio, decoder=decoder)
            times.append((time.perf_counter() - started) * 1000)

    summary = {
        name: {
            "first_piece_ms": statistics.median(r["first_s"] for r in rs) * 1000,
            "pieces": statistics.median(r["units"] for r in rs),
            "pieces_per_s": statistics.median(r["rate"] for r in rs),
            "total_ms": statistics.median(r["total_s"] for r in rs) * 1000,
        }
        for name, rs in runs.items()
    }
    bare, ours = summary["bare generate"], summary["worker.stream"]
    print(f"model: {worker.info.label}; {args.audio_seconds:g} s audio, {args.tokens} new tokens, median of {args.repeats}")
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}".rstrip())
    print(f"{'path':<24}{'first piece ms':>16}{'pieces':>8}{'pieces/s':>10}{'total ms':>10}")
    for name, s in summary.items():
        print(f"{name:<24}{s['first_piece_ms']:>16.1f}{s['pieces']:>8.0f}{s['pieces_per_s']:>10.1f}{s['total_ms']:>10.1f}")
    print(
        f"worker/bare: first piece x{ours['first_piece_ms'] / bare['first_piece_ms']:.2f}, "
        f"total time x{ours['total_ms'] / bare['total_ms']:.2f} "
        "(bare 'pieces' are tokens; the worker's are non-empty text pieces)"
    )
    binary = summary["worker, ffmpeg binary"]
    print(f"the worker's first-piece overhead over bare generate: {ours['first_piece_ms'] - bare['first_piece_ms']:+.1f} ms "
          f"(decoding with the ffmpeg binary: {binary['first_piece_ms'] - bare['first_piece_ms']:+.1f} ms)")
    print(f"decoding the file alone (the bare path starts from decoded samples): in-process (PyAV) "
          f"{statistics.median(decode_ms['pyav']):.1f} ms, ffmpeg binary {statistics.median(decode_ms['ffmpeg']):.1f} ms")
    print("worker.stream runs with its caches off (a first turn); 'repeat, cached' sends the same request to a "
          "worker with caches on, as a regenerate does")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": worker.info.label, "args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "decode_ms": decode_ms, "runs": runs}, indent=2))
    for each in (worker, cached, with_binary):
        each.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
