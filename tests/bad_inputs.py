"""The bad-input corpus: every awkward thing a user or client may send, generated on the spot.

:func:`build_corpus` writes the files into a directory (numpy, ``wave`` and the ffmpeg CLI; no binary
fixtures, nothing downloaded; the largest file is a few MB) and returns one :class:`BadInput` per case
with what must happen to it: ``"answered"`` (handled correctly: a reply comes back), or ``"refused"``
with a sentence that names the file and contains ``reason``.

The corpus assumes a demo configured with ``max_upload_mb=UPLOAD_LIMIT_MB`` (the "huge file" is just
over it), the default ``max_audio_seconds`` (5 minutes) and the tiny checkpoint's 8192-token context.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio_samples import ffmpeg_cli, ffmpeg_convert, tone, write_wav

#: The demo the corpus runs against accepts files up to this size; "huge" is just over it.
UPLOAD_LIMIT_MB = 2
#: Shell metacharacters, spaces, quotes and non-ASCII in one file name (all legal on Linux).
ODD_NAME = "my clip ü 日本語 $(touch PWNED) ; rm -rf ~ & 'q' \"d\" `x` | [a]*?.wav"
#: The tiny checkpoint's context, in tokens.
TINY_CONTEXT = 8192

SURFACES = ("ui", "chat", "v1")
CASE_IDS = (
    "empty-file", "random-bytes-wav", "text-named-mp3", "truncated-mp3", "truncated-wav", "header-only-wav",
    "very-short-0.05s", "pure-silence", "eleven-minutes", "48k-stereo", "8ch-96k", "float-wav-nan-inf",
    "video-with-audio", "video-without-audio", "over-upload-limit", "odd-file-name", "twenty-audios",
    "empty-message", "100k-character-message", "prompt-beyond-context",
)


@dataclass(frozen=True)
class BadInput:
    """One case of the corpus.

    ``files`` are sent with ``text`` in one turn. ``expect`` is "answered" or "refused"; a refusal's
    sentence must contain ``reason`` (or ``reasons[surface]`` where a surface words it differently)
    and, when ``names_file`` is set, the name of the offending file (the case's first). ``http_status``
    is what ``/v1/chat/completions`` answers.
    """

    id: str
    files: tuple[Path, ...] = ()
    text: str = "What do you hear?"
    expect: str = "answered"
    reason: str = ""
    reasons: dict[str, str] = field(default_factory=dict)
    names_file: bool = True
    http_status: int = 200

    @property
    def refused(self) -> bool:
        return self.expect == "refused"

    def reason_for(self, surface: str) -> str:
        return self.reasons.get(surface, self.reason)

    def api_format(self, index: int) -> str:
        """The ``input_audio`` format /v1 is told for ``files[index]``: its extension."""
        return self.files[index].suffix.lstrip(".").lower()


def _ffmpeg(*args: str) -> None:
    ffmpeg_cli(*args)


def _float_wav(path: Path, samples: np.ndarray, sr: int = 16000) -> Path:
    """A mono IEEE-float32 WAV (format 3), which may hold NaN and infinities, unlike PCM."""
    data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 3, 1, sr, sr * 4, 4, 32) + b"data" + struct.pack("<I", len(data))
    path.write_bytes(header + data)
    return path


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def build_corpus(directory: Path | str) -> list[BadInput]:
    """Write the corpus into ``directory`` (created if needed) and return its cases, in a stable order."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cases: list[BadInput] = []

    empty = d / "empty.wav"
    empty.write_bytes(b"")
    cases.append(BadInput("empty-file", (empty,), expect="refused", reason="empty", http_status=400))

    noise = d / "random bytes.wav"
    noise.write_bytes(np.random.default_rng(7).integers(0, 256, 48_000, dtype=np.uint8).tobytes())
    cases.append(BadInput("random-bytes-wav", (noise,), expect="refused", reason="not an audio file",
                          http_status=400))

    text_mp3 = d / "notes.mp3"
    text_mp3.write_text("These are my meeting notes, not an mp3.\n" * 200, encoding="utf-8")
    cases.append(BadInput("text-named-mp3", (text_mp3,), expect="refused", reason="not an audio file",
                          http_status=400))

    source = write_wav(d / "source.wav", tone(3.0, 440.0, seed=1))
    full_mp3 = ffmpeg_convert(source, d / "full.mp3", "-b:a", "64k")
    cases.append(BadInput("truncated-mp3", (_truncate(full_mp3, d / "truncated.mp3", 0.55),)))
    cases.append(BadInput("truncated-wav", (_truncate(source, d / "truncated.wav", 0.5),)))
    full_mp3.unlink()

    header_only = d / "header only.wav"
    header_only.write_bytes(source.read_bytes()[:44])
    source.unlink()
    cases.append(BadInput("header-only-wav", (header_only,), expect="refused", reason="no audio samples",
                          http_status=400))

    cases.append(BadInput("very-short-0.05s", (write_wav(d / "blip.wav", tone(0.05, 880.0)),)))
    cases.append(BadInput("pure-silence", (write_wav(d / "silence.wav", np.zeros(32_000, dtype=np.float32)),)))

    long_mp3 = d / "eleven minutes.mp3"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=660", "-ac", "1", "-b:a", "8k",
            str(long_mp3))
    cases.append(BadInput("eleven-minutes", (long_mp3,), expect="refused", reason="the limit is 5 min",
                          http_status=400))

    stereo = np.stack([tone(2.0, 440.0, sr=48000, seed=2), tone(2.0, 550.0, sr=48000, seed=3)], axis=1)
    cases.append(BadInput("48k-stereo", (write_wav(d / "stereo48k.wav", stereo, sr=48000),)))

    eight = np.stack([tone(0.5, 200.0 + 100.0 * c, sr=96000, seed=c) for c in range(8)], axis=1)
    cases.append(BadInput("8ch-96k", (write_wav(d / "surround 8ch 96k.wav", eight, sr=96000),)))

    poisoned = tone(1.5, 440.0, seed=4)
    poisoned[100:200] = np.nan
    poisoned[300:310] = np.inf
    poisoned[400:410] = -np.inf
    cases.append(BadInput("float-wav-nan-inf", (_float_wav(d / "nan inf.wav", poisoned),)))

    video = d / "clip with sound.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=2", "-f", "lavfi", "-i",
            "sine=frequency=440:duration=2", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(video))
    cases.append(BadInput("video-with-audio", (video,)))

    silent_video = d / "silent film.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=2", "-c:v", "mpeg4", "-an", str(silent_video))
    cases.append(BadInput("video-without-audio", (silent_video,), expect="refused", reason="no audio stream",
                          http_status=400))

    # Valid audio, only too big: 16 kHz PCM16 is 32 KB/s.
    seconds = (UPLOAD_LIMIT_MB * 1024 * 1024 * 1.25) / 32_000
    huge = write_wav(d / "huge.wav", tone(seconds, 330.0, seed=5))
    # Refused before it reaches the demo's code: by Gradio's upload check in the page and in gradio_client.
    cases.append(BadInput("over-upload-limit", (huge,), expect="refused", http_status=413, reasons={
        "ui": f"exceed the maximum allowed size of {UPLOAD_LIMIT_MB}.0 Mb",
        "chat": f"exceeds the maximum file size of {UPLOAD_LIMIT_MB * 1024 * 1024} bytes",
        "v1": f"larger than the limit of {UPLOAD_LIMIT_MB} MB"}))

    cases.append(BadInput("odd-file-name", (write_wav(d / ODD_NAME, tone(1.0, 500.0, seed=6)),)))

    many = tuple(write_wav(d / f"many_{i:02d}.wav", tone(1.0, 150.0 + 40.0 * i, seed=20 + i)) for i in range(20))
    cases.append(BadInput("twenty-audios", many, text="Which of these twenty clips is the highest?"))

    cases.append(BadInput("empty-message", (), text="", expect="refused", names_file=False, http_status=400,
                          reasons={"ui": "Type a question or attach an audio first",
                                   "chat": "message needs text or at least one audio file",
                                   "v1": "The last message is empty"}))

    # The tiny tokenizer makes one token of one to three characters: 100 000 characters cannot fit.
    words = "the quick brown fox jumps over the lazy dog and then 0123456789 what does the speaker say "
    hundred_k = (words * (100_000 // len(words) + 1))[:100_000]
    cases.append(BadInput("100k-character-message", (), text=hundred_k, expect="refused", names_file=False,
                          reason=f"beyond the model's context of {TINY_CONTEXT} tokens", http_status=400))

    # Just beyond the context: about 1.1 x 8192 tokens of digits (the tiny tokenizer splits digits one by one).
    beyond = " ".join(str(i % 10) for i in range(math.ceil(TINY_CONTEXT * 1.1)))
    cases.append(BadInput("prompt-beyond-context", (write_wav(d / "short.wav", tone(1.0, 300.0, seed=8)),),
                          text=beyond, expect="refused", names_file=False,
                          reason=f"beyond the model's context of {TINY_CONTEXT} tokens", http_status=400))
    assert tuple(c.id for c in cases) == CASE_IDS
    return cases
