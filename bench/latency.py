"""Time to first token, decode rate and per-turn prefill through every layer of the demo, in one run.

    python -m bench.latency [--checkpoint DIR | --random-full-size] [--family qwen2-audio|qwen-audio-chat]
                            [--device auto] [--dtype auto]
                            [--attn-implementation auto] [--kv-cache dynamic] [--audio-seconds 30]
                            [--tokens 64] [--turns 2] [--repeats 5] [--json OUT]

The same conversation goes through four paths, interleaved in every repeat so that drift in machine
load hits all alike:

* **bare**: what a script using transformers does: the chat template and the processor on samples
  already in memory, then ``model.generate`` with a streamer that only timestamps each token;
* **worker**: ``worker.stream`` from file paths: ffmpeg decoding, prompt building, features, the queue
  to the generation thread, the per-token detokenizer;
* **/chat**: the demo served on loopback (in this process, on the same worker, as
  ``web_demo_audio.py`` serves it) called through Gradio's HTTP API, the file uploaded beforehand as a
  browser does when it is attached;
* **/v1**: the OpenAI-compatible streaming endpoint of the same server, audio inline as base64.

The HTTP client runs in a process of its own, as a browser would: its work does not compete with
the server's for this process's interpreter.

Turn *t* of ``--turns`` sends a conversation of *t* user turns, each with its own audio of
``--audio-seconds`` and a question, the earlier answers being the worker's greedy replies; its time to
first token is that turn's prefill cost. The worker's caches are off, so every path does the same
work at every turn (what the caches save at later turns: ``bench.multiturn``). Greedy without
repetition penalty, at most ``--tokens`` new tokens; the replies of all paths must be the same text
(checked, reported).

Reported per turn and path: time to first token (median), decode rate ((tokens - 1) / (last - first
token arrival)), whole reply; then the ratios the app is held to: its decode rate against the worker's
and its first-token overhead in ms, each taken within a repeat and then the median over repeats; the
CPU the idle server uses; and ffmpeg decoding time per minute of audio. On CUDA also: the
weights' bytes, the measured device memory bandwidth, the decode rate that bandwidth allows at batch 1
(bandwidth / bytes of the language model's weights, which every new token reads), and peak memory.

Without ``--checkpoint`` the tiny random checkpoint is built in a temp dir (CPU figures that say how much
the demo adds, nothing about the real model's speed). ``--random-full-size`` builds Qwen2-Audio-7B's
full architecture with random weights directly on the device (bfloat16 by default; about 17 GB: a GPU
run; ``--family qwen-audio-chat`` builds Qwen-Audio-Chat's instead). A benchmark: it asserts nothing,
and exits 1 only if the paths' replies differ.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.audio import write_tone
from model.params import ATTENTION_CHOICES, KV_CACHE_CHOICES

logger = logging.getLogger("bench.latency")
PATHS = ("bare", "worker", "/chat", "/v1")
QUESTION = "Turn {turn}: what can you hear in this recording?"


class Timing:
    """When a reply started and when each of its pieces arrived."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.arrivals: list[float] = []
        self.text = ""

    def piece(self, text_so_far: str) -> None:
        self.arrivals.append(time.perf_counter())
        self.text = text_so_far

    def result(self, tokens: int) -> dict[str, float]:
        if not self.arrivals:
            return {"ttft_ms": float("nan"), "total_ms": float("nan"), "tokens_per_s": float("nan"), "text": ""}
        span = self.arrivals[-1] - self.arrivals[0]
        return {
            "ttft_ms": (self.arrivals[0] - self.started) * 1000,
            "total_ms": (self.arrivals[-1] - self.started) * 1000,
            "tokens_per_s": (tokens - 1) / span if tokens > 1 and span > 0 else float("nan"),
            "text": self.text,
        }


class Conversation:
    """The same conversation in each path's form: worker messages, samples, questions, earlier replies."""

    def __init__(self, audio: list[Path], samples: list[np.ndarray], replies: list[str]):
        self.audio, self.samples, self.replies = audio, samples, replies

    def question(self, turn: int) -> str:
        return QUESTION.format(turn=turn + 1)

    def worker_messages(self, turns: int, samples: list[np.ndarray] | None = None) -> list[dict]:
        """The worker's messages: audio as file paths, or as ``samples`` already decoded."""
        messages: list[dict] = []
        for t in range(turns):
            if t:
                messages.append({"role": "assistant", "content": self.replies[t - 1]})
            audio = samples[t] if samples is not None else str(self.audio[t])
            messages.append({"role": "user", "content": [{"type": "audio", "audio": audio},
                                                         {"type": "text", "text": self.question(t)}]})
        return messages


# ---------------------------------------------------------------------------------------------- paths
def run_bare(worker: Any, conversation: Conversation, turns: int, params: dict) -> dict:
    import torch

    from model.generation import CallbackStreamer

    processor, model = worker.processor, worker.model
    timing = Timing()
    if worker.info.model_family == "Qwen-Audio":
        # transformers has no processor for it: the prompt ids and log-mels as the family builds them
        # from the samples already in memory (what a script using our model class does).
        family = worker.family_adapter
        messages = conversation.worker_messages(turns, samples=conversation.samples)
        encoded = family.encode(family.build(messages))
        inputs = {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask, **encoded.audio_inputs()}
        inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        decode = lambda ids: family.tokenizer.decode(ids, specials="timestamps")  # noqa: E731
    else:
        text = processor.apply_chat_template(conversation.worker_messages(turns), tokenize=False,
                                             add_generation_prompt=True)
        inputs = processor(text=[text], audio=conversation.samples[:turns], sampling_rate=16000, return_tensors="pt")
        inputs = inputs.to(model.device)
        inputs["input_features"] = inputs["input_features"].to(model.dtype)
        decode = lambda ids: processor.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    new_ids: list[int] = []

    def arrived(ids: list[int]) -> None:
        new_ids.extend(ids)
        timing.arrivals.append(time.perf_counter())

    with torch.inference_mode():
        model.generate(**inputs, do_sample=False, max_new_tokens=params["max_new_tokens"], repetition_penalty=1.0,
                       streamer=CallbackStreamer(arrived),
                       **worker.speedups.generate_kwargs(worker.placement.device))
    timing.text = decode(new_ids)
    result = timing.result(len(new_ids))
    result["prompt_tokens"] = int(inputs["input_ids"].shape[1])
    result["completion_tokens"] = len(new_ids)
    return result


def run_worker(worker: Any, conversation: Conversation, turns: int, params: dict) -> dict:
    from model import GenerationParams

    timing = Timing()
    text = ""
    greedy = GenerationParams(temperature=0, repetition_penalty=1.0, **params)
    with worker.stream(conversation.worker_messages(turns), greedy) as reply:
        for piece in reply:
            text += piece
            timing.piece(text)
    result = timing.result(reply.completion_tokens)
    result["prompt_tokens"] = reply.prompt_tokens
    result["completion_tokens"] = reply.completion_tokens
    return result


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def run_chat(url: str, http: Any, conversation: Conversation, uploaded: list[str], turns: int, params: dict) -> dict:
    history: list[dict] = []
    for t in range(turns - 1):
        history += [{"role": "user", "content": [{"type": "file", "file": _file(uploaded[t])}]},
                    {"role": "user", "content": [{"type": "text", "text": conversation.question(t)}]},
                    {"role": "assistant", "content": [{"type": "text", "text": conversation.replies[t]}]}]
    message = {"text": conversation.question(turns - 1), "files": [_file(uploaded[turns - 1])]}
    data = [message, history, "", params["max_new_tokens"], 0.0, 1.0, 0, 1.0, -1, "", "", False]
    timing = Timing()
    event_id = http.post(f"{url}/gradio_api/call/chat", json={"data": data}).json()["event_id"]
    event = ""
    with http.stream("GET", f"{url}/gradio_api/call/chat/{event_id}") as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "generating":
                text = json.loads(line[6:])[0]
                if text and text != timing.text:
                    timing.piece(text)
            elif line.startswith("data: ") and event == "error":
                raise RuntimeError(f"/chat failed: {line[6:]}")
    return timing.result(0)


def run_v1(url: str, http: Any, conversation: Conversation, encoded: list[str], turns: int, params: dict) -> dict:
    messages: list[dict] = []
    for t in range(turns):
        if t:
            messages.append({"role": "assistant", "content": conversation.replies[t - 1]})
        messages.append({"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": encoded[t], "format": "wav"}},
            {"type": "text", "text": conversation.question(t)}]})
    body = {"messages": messages, "stream": True, "temperature": 0, "top_p": 1.0,
            "repetition_penalty": 1.0, "max_tokens": params["max_new_tokens"]}
    timing = Timing()
    text = ""
    with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            piece = (choices[0].get("delta") or {}).get("content")
            if piece:
                text += piece
                timing.piece(text)
    return timing.result(0)


def _client_process(conn: Any, url: str, uploaded: list[str], encoded: list[str], replies: list[str],
                    params: dict) -> None:
    """The HTTP paths' client, in a process of its own: runs each (path, turns) it is sent, sends back the result."""
    import httpx

    conversation = Conversation([], [], replies)
    with httpx.Client(timeout=600) as http:
        while (job := conn.recv()) is not None:
            path, turns = job
            try:
                if path == "/chat":
                    conn.send(run_chat(url, http, conversation, uploaded, turns, params))
                else:
                    conn.send(run_v1(url, http, conversation, encoded, turns, params))
            except Exception as exc:  # noqa: BLE001 - reported by the parent
                conn.send({"error": f"{type(exc).__name__}: {exc}"})


class HttpClient:
    """Runs /chat and /v1 requests in a child process and returns their timings."""

    def __init__(self, url: str, uploaded: list[str], encoded: list[str], replies: list[str], params: dict):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_client_process, args=(child, url, uploaded, encoded, replies, params),
                                       daemon=True)
        self.process.start()

    def run(self, path: str, turns: int) -> dict:
        self.conn.send((path, turns))
        result = self.conn.recv()
        if "error" in result:
            raise RuntimeError(f"{path} failed: {result['error']}")
        return result

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(30)


# ---------------------------------------------------------------------------------------------- setup
def load_worker(args: argparse.Namespace, tmp: Path) -> Any:
    from model import CacheSizes, ModelWorker, Speedups
    from model.loading import resolve_placement

    speedups = Speedups(attention=args.attn_implementation, kv_cache=args.kv_cache)
    off = CacheSizes(0, 0, 0)  # every request pays for decoding, features and the whole prefill
    if args.random_full_size:
        from model.tiny import build_full_size_model, build_processor

        placement = resolve_placement(args.device, "bfloat16" if args.dtype == "auto" else args.dtype)
        started = time.perf_counter()
        if args.family == "qwen2-audio":
            processor = build_processor()
            model = build_full_size_model(processor.tokenizer, device=placement.device, dtype=placement.dtype,
                                          attention=args.attn_implementation)
        else:
            from model.families.qwen_audio.tiny import build_full_size_qwen_audio

            model, processor = build_full_size_qwen_audio(tmp / "tokenizer", chat=args.family == "qwen-audio-chat",
                                                          device=placement.device, dtype=placement.dtype,
                                                          attention=args.attn_implementation)
        logger.warning("built the full-size random model on %s in %.0f s", placement.device, time.perf_counter() - started)
        return ModelWorker(model, processor, checkpoint="random-full-size", placement=placement, cache=off,
                           speedups=speedups)
    if args.checkpoint is None:
        if args.family == "qwen2-audio":
            from model.tiny import build_tiny_checkpoint

            args.checkpoint = str(build_tiny_checkpoint(tmp / "tiny"))
        else:
            from model.families.qwen_audio.tiny import build_tiny_qwen_audio_checkpoint

            args.checkpoint = str(build_tiny_qwen_audio_checkpoint(tmp / "tiny", chat=args.family == "qwen-audio-chat"))
    return ModelWorker.from_pretrained(args.checkpoint, device=args.device, dtype=args.dtype, cache=off,
                                       speedups=speedups)


def serve(worker: Any, poll_ms: float | None = None) -> tuple[Any, str]:
    """The demo on a free loopback port, in this process, on ``worker``: (demo, base URL).

    ``poll_ms`` overrides how often Gradio's idle queue looks for work (the demo's own: 10 ms).
    """
    import socket

    from app.config import DemoConfig
    from app.demo import build_demo, launch_demo
    from app.openai_api import api_routes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = DemoConfig(examples=False, server_port=port, log_level="WARNING")
    demo = build_demo(worker, config)
    url = launch_demo(demo, config, block=False, app_kwargs={"routes": api_routes(worker, config)})
    if poll_ms is not None:
        demo._queue.sleep_when_free = poll_ms / 1000
    return demo, url.rstrip("/")


def gpu_figures(worker: Any) -> dict[str, float]:
    """Weight bytes, measured copy bandwidth, the batch-1 decode bound it implies, peak memory (CUDA only)."""
    import torch

    language_model = worker.model.get_decoder() if hasattr(worker.model, "get_decoder") else worker.model
    head = worker.model.get_output_embeddings()
    total = sum(p.numel() * p.element_size() for p in worker.model.parameters())
    decode_bytes = sum(p.numel() * p.element_size() for p in language_model.parameters())
    decode_bytes += sum(p.numel() * p.element_size() for p in head.parameters()) if head is not None else 0
    block = torch.empty(1 << 30, dtype=torch.uint8, device=worker.model.device)  # 1 GiB
    target = torch.empty_like(block)
    for _ in range(3):
        target.copy_(block)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        target.copy_(block)
    end.record()
    torch.cuda.synchronize()
    bandwidth = 2 * 20 * block.numel() / (start.elapsed_time(end) / 1000)  # bytes read + written per second
    del block, target
    return {
        "weight_bytes": total,
        "decode_weight_bytes": decode_bytes,
        "bandwidth_bytes_per_s": bandwidth,
        "decode_bound_tokens_per_s": bandwidth / decode_bytes,
        "all_weights_bound_tokens_per_s": bandwidth / total,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "gpu": torch.cuda.get_device_name(),
    }


def decode_ms_per_minute(tmp: Path, repeats: int) -> float:
    from model.audio import decode_audio

    path = tmp / "minute.wav"
    write_tone(path, 60.0, 440.0, seed=99)
    times = []
    for _ in range(max(3, repeats)):
        started = time.perf_counter()
        decode_audio(path)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> dict:
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    worker = load_worker(args, tmp)
    demo, url = serve(worker, args.gradio_poll_ms)
    params = {"max_new_tokens": args.tokens}
    try:
        time.sleep(1.0)
        cpu = time.process_time()
        time.sleep(5.0)  # the server and the worker idle: what does the process spend?
        idle_cpu = (time.process_time() - cpu) / 5.0
        audio = [tmp / f"turn{t + 1}.wav" for t in range(args.turns)]
        samples = [write_tone(path, args.audio_seconds, 220 + 55 * t, seed=t) for t, path in enumerate(audio)]
        conversation = Conversation(audio, samples, [])
        for t in range(args.turns - 1):  # the earlier answers: the worker's own greedy replies
            conversation.replies.append(run_worker(worker, conversation, t + 1, params)["text"])
        encoded = [base64.b64encode(path.read_bytes()).decode() for path in audio]
        with httpx.Client(timeout=600) as http:
            uploaded = [http.post(f"{url}/gradio_api/upload", files={"files": (p.name, p.read_bytes())}).json()[0]
                        for p in audio]
        client = HttpClient(url, uploaded, encoded, conversation.replies, params)

        def one(path: str, turns: int) -> dict:
            if path == "bare":
                return run_bare(worker, conversation, turns, params)
            if path == "worker":
                return run_worker(worker, conversation, turns, params)
            return client.run(path, turns)

        runs: dict[int, dict[str, list[dict]]] = {t: {p: [] for p in PATHS} for t in range(1, args.turns + 1)}
        try:
            for turn in runs:  # warm-up: one of each
                for path in PATHS:
                    one(path, turn)
            for _ in range(args.repeats):
                for turn in runs:
                    for path in PATHS:
                        runs[turn][path].append(one(path, turn))
        finally:
            client.close()
        result = summarize(runs)
        result["decode_ms_per_minute_of_audio"] = decode_ms_per_minute(tmp, args.repeats)
        result["model"] = worker.info.label
        result["parameters"] = worker.info.parameters
        result["speedups"] = {"attention": worker.model.config._attn_implementation, "kv_cache": args.kv_cache}
        result["gradio_idle_poll_ms"] = demo._queue.sleep_when_free * 1000
        result["idle_server_cpu_s_per_s"] = idle_cpu
        result["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        result["args"] = {k: str(v) for k, v in vars(args).items()}
        if worker.placement.device.startswith("cuda"):
            result["gpu"] = gpu_figures(worker)
        result["runs"] = {str(t): v for t, v in runs.items()}
        return result
    finally:
        demo.close()
        worker.shutdown()


def summarize(runs: dict[int, dict[str, list[dict]]]) -> dict:
    turns = {}
    same = True
    for turn, by_path in runs.items():
        worker_runs = by_path["worker"]
        tokens = worker_runs[0]["completion_tokens"]
        rows = {}
        for path, results in by_path.items():
            if path in ("/chat", "/v1"):  # their pieces carry no token counts: the reply is the worker's
                for r in results:
                    span = (r["total_ms"] - r["ttft_ms"]) / 1000
                    r["tokens_per_s"] = (tokens - 1) / span if tokens > 1 and span > 0 else float("nan")
            rows[path] = {
                "ttft_ms": statistics.median(r["ttft_ms"] for r in results),
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in results),
                "total_ms": statistics.median(r["total_ms"] for r in results),
                "same_reply": all(r["text"] == worker_runs[0]["text"] for r in results),
            }
            same &= rows[path]["same_reply"]
        turns[turn] = {
            "prompt_tokens": worker_runs[0]["prompt_tokens"],
            "completion_tokens": tokens,
            "paths": rows,
            "app_over_worker": {path: paired(by_path[path], worker_runs) for path in ("/chat", "/v1")},
            "worker_over_bare": paired(worker_runs, by_path["bare"]),
        }
    return {"turns": turns, "all_paths_same_reply": same}


def paired(runs: list[dict], reference: list[dict]) -> dict[str, float]:
    """Ratio of decode rates and difference of first-token times against ``reference``, each taken within
    one repeat (the paths of a repeat run back to back, so they share the machine's state), then the median."""
    return {
        "tokens_per_s_ratio": statistics.median(a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs, reference)),
        "first_token_overhead_ms": statistics.median(a["ttft_ms"] - b["ttft_ms"] for a, b in zip(runs, reference)),
    }


def report(result: dict, args: argparse.Namespace) -> None:
    print(f"model: {result['model']}; {result['parameters'] / 1e9:.2f} B parameters; "
          f"attention {result['speedups']['attention']}, kv cache {result['speedups']['kv_cache']}")
    print(f"machine: {result['machine']}; {args.audio_seconds:g} s of new audio per turn, at most {args.tokens} "
          f"new tokens, greedy, median of {args.repeats}; Gradio's idle queue polls every "
          f"{result['gradio_idle_poll_ms']:g} ms")
    print(f"{'turn':<6}{'path':<8}{'prompt tok':>11}{'new tok':>8}{'first token ms':>16}{'tokens/s':>10}"
          f"{'reply ms':>10}{'same reply':>12}")
    for turn, row in result["turns"].items():
        for path, r in row["paths"].items():
            print(f"{turn:<6}{path:<8}{row['prompt_tokens']:>11}{row['completion_tokens']:>8}{r['ttft_ms']:>16.1f}"
                  f"{r['tokens_per_s']:>10.1f}{r['total_ms']:>10.1f}{'yes' if r['same_reply'] else 'NO':>12}")
        ratios = row["app_over_worker"]
        print(f"      app/worker: /chat tokens/s x{ratios['/chat']['tokens_per_s_ratio']:.2f}, first token "
              f"{ratios['/chat']['first_token_overhead_ms']:+.1f} ms; /v1 tokens/s x{ratios['/v1']['tokens_per_s_ratio']:.2f},"
              f" first token {ratios['/v1']['first_token_overhead_ms']:+.1f} ms")
        bare = row["worker_over_bare"]
        print(f"      worker/bare: tokens/s x{bare['tokens_per_s_ratio']:.2f}, first token "
              f"{bare['first_token_overhead_ms']:+.1f} ms")
    print(f"ffmpeg decoding: {result['decode_ms_per_minute_of_audio']:.1f} ms per minute of audio; the idle server "
          f"used {result['idle_server_cpu_s_per_s'] * 1000:.0f} ms of CPU per second")
    if "gpu" in result:
        g = result["gpu"]
        print(f"{g['gpu']}: weights {g['weight_bytes'] / 1e9:.2f} GB ({g['decode_weight_bytes'] / 1e9:.2f} GB read per "
              f"new token); copy bandwidth {g['bandwidth_bytes_per_s'] / 1e12:.2f} TB/s -> batch-1 decode bound "
              f"{g['decode_bound_tokens_per_s']:.0f} tokens/s ({g['all_weights_bound_tokens_per_s']:.0f} counting all "
              f"weights); peak memory {g['peak_memory_bytes'] / 2**30:.1f} GiB")
    if not result["all_paths_same_reply"]:
        print("REPLIES DIFFER between paths: the ratios compare different work")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="checkpoint directory or hub id (default: build the tiny random one)")
    source.add_argument("--random-full-size", action="store_true",
                        help="Qwen2-Audio-7B's architecture with random weights, built on the device (a GPU run)")
    parser.add_argument("--family", default="qwen2-audio", choices=("qwen2-audio", "qwen-audio-chat"),
                        help="the architecture of --random-full-size and of the tiny checkpoint built without "
                             "--checkpoint (default: qwen2-audio)")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32 (default: auto)")
    parser.add_argument("--attn-implementation", default="auto", choices=ATTENTION_CHOICES)
    parser.add_argument("--kv-cache", default="dynamic", choices=KV_CACHE_CHOICES)
    parser.add_argument("--audio-seconds", type=float, default=30.0, help="audio per turn (default: 30)")
    parser.add_argument("--tokens", type=int, default=64, help="most new tokens per reply (default: 64)")
    parser.add_argument("--turns", type=int, default=2, help="turns (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per path and turn after a warm-up (default: 5)")
    parser.add_argument("--gradio-poll-ms", type=float,
                        help="how often Gradio's idle queue looks for work (default: the demo's, 10; Gradio's own: 1)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    report(result, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["all_paths_same_reply"] else 1


if __name__ == "__main__":
    sys.exit(main())
