"""The two audio decoders side by side: in-process (PyAV, the default) against the ffmpeg binary.

    python -m bench.decoders [--seconds 5 30 300] [--repeats 7] [--json OUT]

For each length, a tone with seeded noise is written as the formats people send (16 kHz mono WAV,
44.1 kHz stereo WAV, mp3, Opus in WebM as a browser records it, AAC in m4a), encoded once by the
ffmpeg binary (the system's, else imageio-ffmpeg's). Each file is then decoded by
``model.audio.decode_audio`` with ``decoder="pyav"`` and ``decoder="ffmpeg"``, interleaved, and the
median wall time of ``--repeats`` runs is printed per decoder, with the largest difference between
their samples. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.audio import write_tone

FORMATS = {  # name: ffmpeg output arguments (the source is the 16 kHz mono WAV)
    "wav 16 kHz mono": None,
    "wav 44.1 kHz stereo": ("-ac", "2", "-ar", "44100"),
    "mp3 44.1 kHz stereo": ("-ac", "2", "-ar", "44100", "-b:a", "128k"),
    "webm/opus 48 kHz": ("-ar", "48000", "-c:a", "libopus", "-b:a", "48k"),
    "m4a/aac 44.1 kHz": ("-ar", "44100", "-c:a", "aac", "-b:a", "96k"),
}
SUFFIX = {"wav 16 kHz mono": ".wav", "wav 44.1 kHz stereo": ".wav", "mp3 44.1 kHz stereo": ".mp3",
          "webm/opus 48 kHz": ".webm", "m4a/aac 44.1 kHz": ".m4a"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0, 300.0], help="audio lengths (default: 5 30 300)")
    parser.add_argument("--repeats", type=int, default=7, help="measured runs per file and decoder, after one warm-up (default: 7)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    from model.audio import AudioLimits, decode_audio, ffmpeg_binary

    binary = ffmpeg_binary()
    if binary is None:
        print("no ffmpeg binary (install imageio-ffmpeg, a test requirement) to encode the files and time it against")
        return 1
    limits = AudioLimits(max_seconds=max(args.seconds) + 1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-decoders-"))
    rows = []
    for seconds in args.seconds:
        source = tmp / f"tone{seconds:g}.wav"
        write_tone(source, seconds, 440.0, seed=0)
        for name, out_args in FORMATS.items():
            path = source if out_args is None else tmp / f"tone{seconds:g}-{len(rows)}{SUFFIX[name]}"
            if out_args is not None:
                subprocess.run([binary, "-nostdin", "-v", "error", "-y", "-i", str(source), *out_args, str(path)], check=True)
            times: dict[str, list[float]] = {"pyav": [], "ffmpeg": []}
            samples = {}
            for decoder in times:  # warm-up
                samples[decoder] = decode_audio(path, limits, decoder=decoder)
            for _ in range(args.repeats):
                for decoder, runs in times.items():
                    started = time.perf_counter()
                    decode_audio(path, limits, decoder=decoder)
                    runs.append((time.perf_counter() - started) * 1000)
            a, b = samples["pyav"], samples["ffmpeg"]
            rows.append({
                "seconds": seconds, "format": name,
                "pyav_ms": statistics.median(times["pyav"]), "ffmpeg_ms": statistics.median(times["ffmpeg"]),
                "same_length": len(a) == len(b),
                "max_abs_difference": float(np.abs(a - b).max()) if len(a) == len(b) else None,
            })
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}; "
          f"binary: {binary}; median of {args.repeats}".rstrip())
    print(f"{'audio':>7}  {'format':<22}{'PyAV ms':>9}{'binary ms':>11}{'x faster':>10}  samples")
    for r in rows:
        same = ("identical" if r["max_abs_difference"] == 0 else f"max diff {r['max_abs_difference']:.1e}") if r["same_length"] else "lengths differ"
        print(f"{r['seconds']:>6g}s  {r['format']:<22}{r['pyav_ms']:>9.1f}{r['ffmpeg_ms']:>11.1f}"
              f"{r['ffmpeg_ms'] / r['pyav_ms']:>10.1f}  {same}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"binary": binary, "repeats": args.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
