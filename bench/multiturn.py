"""Time to first piece at every turn of a conversation that adds one new audio per turn.

    python -m bench.multiturn [--checkpoint DIR] [--turns 6] [--audio-seconds 30] [--tokens 32] [--json OUT]

Runs the same conversation twice through the worker: with its content-keyed caches (decoded audio,
per-window features, prompt KV prefix) and with them turned off, the way a demo that re-processes the
whole history at every turn behaves. Each turn adds a user message with a new audio file and a question;
the reply (greedy, ``--tokens`` tokens) is appended as the assistant's message. Without ``--checkpoint``
the tiny random checkpoint is built in a temp dir. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.audio import write_tone



def run_conversation(worker, audio: list[Path], tokens: int) -> list[dict[str, float]]:
    from model import GenerationParams

    params = GenerationParams(temperature=0, max_new_tokens=tokens, min_new_tokens=tokens)
    messages, rows = [], []
    for turn, path in enumerate(audio, 1):
        messages.append({"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": f"Clip {turn}: what changed?"}]})
        started = time.perf_counter()
        reply = worker.stream(messages, params)
        pieces = []
        first = None
        for piece in reply:
            if first is None:
                first = time.perf_counter() - started
            pieces.append(piece)
        total = time.perf_counter() - started
        rows.append({"turn": turn, "ttft_ms": first * 1000, "total_ms": total * 1000,
                     "prompt_tokens": reply.prompt_tokens, "reused_tokens": reply.reused_tokens})
        messages.append({"role": "assistant", "content": "".join(pieces)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory or hub id (default: build the tiny random one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--audio-seconds", type=float, default=30.0)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="conversations per mode; the median per turn is reported")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from model import CacheSizes, ModelWorker
    from model.loading import Placement, load_model_and_processor, locate_checkpoint, resolve_placement
    from model.tiny import build_tiny_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="bench-multiturn-"))
    checkpoint = args.checkpoint or str(build_tiny_checkpoint(tmp / "tiny"))
    placement: Placement = resolve_placement(args.device, "auto")
    model, processor = load_model_and_processor(locate_checkpoint(checkpoint), placement)
    results = {}
    for mode, sizes in (("cached", CacheSizes()), ("uncached", CacheSizes(audio_mb=0, features_mb=0, prefix_tokens=0))):
        runs = []
        for repeat in range(args.repeats + 1):  # the first conversation is a warm-up
            worker = ModelWorker(model, processor, checkpoint=checkpoint, placement=placement, cache=sizes)
            audio = []
            for turn in range(args.turns):
                path = tmp / f"{mode}-{repeat}-{turn}.wav"
                write_tone(path, args.audio_seconds, 200 + 60 * turn, seed=turn)  # same sounds each run, fresh files
                audio.append(path)
            rows = run_conversation(worker, audio, args.tokens)
            worker.shutdown()
            if repeat:
                runs.append(rows)
        results[mode] = [
            {key: statistics.median(run[i][key] for run in runs) for key in runs[0][i]} for i in range(args.turns)
        ]

    print(f"model: {checkpoint}; {args.turns} turns, one new {args.audio_seconds:g} s audio per turn, {args.tokens} tokens "
          f"per reply, median of {args.repeats}; {platform.machine()} python {platform.python_version()}")
    print(f"{'turn':>4} {'prompt':>7} {'reused':>7} {'TTFT cached':>12} {'TTFT uncached':>14}")
    for cached, uncached in zip(results["cached"], results["uncached"]):
        print(f"{cached['turn']:>4.0f} {cached['prompt_tokens']:>7.0f} {cached['reused_tokens']:>7.0f} "
              f"{cached['ttft_ms']:>10.1f}ms {uncached['ttft_ms']:>12.1f}ms")
    last, first = results["cached"][-1]["ttft_ms"], results["cached"][0]["ttft_ms"]
    print(f"turn {args.turns} / turn 1 time to first piece: cached x{last / first:.2f}, "
          f"uncached x{results['uncached'][-1]['ttft_ms'] / results['uncached'][0]['ttft_ms']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
