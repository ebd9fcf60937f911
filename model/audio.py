"""Decoding user audio for Qwen2-Audio: any file FFmpeg can read -> 16 kHz mono float32.

Everything a browser or a user produces (wav, flac, mp3, ogg/vorbis, opus, webm, m4a/aac, the audio
track of a video) is decoded **in this process** by FFmpeg's own libraries through PyAV (``av``,
whose wheels bundle them): no ffmpeg binary is needed, and no process is started per file (one start
of the binary costs about 0.1 s on a small machine, most of a first turn's overhead). The samples go
through the same filter the ffmpeg command line inserts for ``-ac 1 -ar 16000`` (libswresample,
through ``aresample`` + ``aformat``), so they are bit for bit what the command line gives.

The ffmpeg binary (driven through ffmpeg-python; the system's, else imageio-ffmpeg's bundled one when
that package is installed) stays for what it still does better: a file whose codec PyAV's FFmpeg
build lacks (e.g. Speex, which the binaries of Debian and imageio-ffmpeg decode) is handed to it when
one is there (``decoder="auto"``, the default). ``decoder="pyav"`` / ``"ffmpeg"`` force one of them.

Problems surface as the typed errors of :mod:`model.errors`, whose message is ``"<file name>:
<reason>"`` and never contains a traceback or FFmpeg's whole log.

Two sample formats (``decode_audio(..., pcm=...)``):

- ``"f32"`` (the default, for Qwen2-Audio): float32, with a downmix that keeps the level of identical
  channels (``rematrix_maxval=1``), so nothing is quantised to 16 bits or clipped by the mix.
- ``"s16"`` (for the first-generation Qwen-Audio): int16 with FFmpeg's default downmix, divided by
  32768, which is what Qwen-Audio's own ``load_audio`` feeds its encoder, sample for sample. For
  integer output FFmpeg already normalises the mix as ``rematrix_maxval=1`` does, so the level is the
  same; what differs from ``"f32"`` is the 16-bit quantisation of anything not 16-bit to begin with
  (an mp3, a resampled or mixed-down file).

Both decoders and both formats share every safety measure: ``file:`` URLs with a local-files-only
protocol whitelist, the first audio stream only, an early stop one second past the length limit, a
wall-clock limit, and the same typed errors.

:func:`split_windows` then cuts the samples into the <= 30 s windows Qwen2-Audio's encoder can see
(the feature extractor would otherwise silently drop everything after the first 30 s) and pads clips
too short for ``generate``.

This module imports neither torch nor gradio.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import stat
import subprocess
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass

import av
import av.filter
import ffmpeg
import numpy as np

from model.errors import AudioDecodeError, AudioTooLargeError, AudioTooLongError

__all__ = ["DECODERS", "SAMPLE_RATE", "AudioLimits", "audio_duration", "decode_audio", "family_pcm", "ffmpeg_binary", "split_windows",
           "stream_audio", "window_count"]

logger = logging.getLogger(__name__)

#: The only sampling rate Qwen2-Audio's feature extractor accepts.
SAMPLE_RATE = 16000

#: ``auto``: in-process (PyAV), the binary for a codec PyAV's build lacks; ``pyav`` / ``ffmpeg``: only that one.
DECODERS = ("auto", "pyav", "ffmpeg")

#: The ffmpeg binary to use; None: the one on PATH, else imageio-ffmpeg's (see :func:`ffmpeg_binary`).
_FFMPEG: str | None = None
#: Wall-clock limit for decoding one file. Decoding 5 minutes of any common format takes well under 2 s.
_DECODE_TIMEOUT_S = 120.0
#: Audio exactly at the limit may decode a little longer (AAC priming and frame padding add up to
#: ~0.13 s, resampling rounds); that much over ``max_seconds`` is still accepted.
_LENGTH_SLACK_S = 0.25
#: Longest FFmpeg message quoted in an error message.
_MAX_REASON_CHARS = 160


@dataclass(frozen=True)
class _PcmFormat:
    """The samples one ``pcm`` mode of :func:`decode_audio` asks FFmpeg for."""

    format: str  # the binary's raw output format
    codec: str  # the binary's output codec
    sample_fmt: str  # libavutil's name, for the in-process filter
    dtype: np.dtype
    resampler: dict[str, str]  # libswresample options besides rate, layout and sample format


_PCM_FORMATS = {
    "f32": _PcmFormat(
        "f32le",
        "pcm_f32le",
        "flt",
        np.dtype("<f4"),
        # FFmpeg's default downmix does not normalise for float output: identical channels come out
        # louder (x1.41 for stereo, x4.4 for 7.1) and would then be clipped. With maxval 1 the mix of
        # identical channels keeps their level (stereo -> (L + R) / 2, like librosa.to_mono).
        {"rematrix_maxval": "1.0"},
    ),
    # Qwen-Audio's original decoding: FFmpeg's default downmix and resampler, 16-bit output (for integer
    # output FFmpeg normalises the mix itself, so no rematrix option is needed, and none may be added).
    "s16": _PcmFormat("s16le", "pcm_s16le", "s16", np.dtype("<i2"), {}),
}

_INVALID_DATA = "is not an audio file ffmpeg can read (invalid data)"
_NO_AUDIO_STREAM = "contains no audio stream"
# ffmpeg lines that explain nothing on their own.
_NOISE_PREFIXES = (
    "conversion failed",
    "to ignore this, add a trailing",
    "error opening input file",
    "error opening output file",
    "did you mean file:",
    "exiting normally",
)


@dataclass(frozen=True)
class AudioLimits:
    """Limits applied to every audio input.

    ``max_seconds``: longer audio is refused with :class:`AudioTooLongError`.
    ``max_bytes``: larger files are refused with :class:`AudioTooLargeError` before any decoding.
    ``window_seconds``: Qwen2-Audio's encoder sees at most 30 s; longer audio is split.
    ``min_seconds``: shorter windows are zero-padded to this (very short clips crash ``generate``).
    """

    max_seconds: float = 300.0
    max_bytes: int = 200 * 1024 * 1024
    window_seconds: float = 30.0
    min_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds!r}")
        if not self.max_bytes > 0:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes!r}")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise ValueError(f"window_seconds must be positive and finite, got {self.window_seconds!r}")
        if not 0 <= self.min_seconds <= self.window_seconds:
            raise ValueError(
                f"min_seconds must be between 0 and window_seconds ({self.window_seconds!r}), "
                f"got {self.min_seconds!r}"
            )


class _MissingDecoder(Exception):
    """PyAV's FFmpeg build has no decoder for the file's audio codec (the binary may have one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_audio(
    path: str | os.PathLike, limits: AudioLimits = AudioLimits(), *, pcm: str = "f32", decoder: str = "auto"
) -> np.ndarray:
    """Decode any file FFmpeg can read to 16 kHz mono float32.

    Returns a 1-D, C-contiguous ``float32`` array of finite values clipped to [-1, 1] (NaN and
    infinities become 0). It is NOT padded: see :func:`split_windows`. A video file yields its first
    audio track. A truncated file decodes as far as it can, without error.

    ``pcm`` picks the samples: ``"f32"`` (float32, level-keeping downmix) or ``"s16"`` (int16 with
    FFmpeg's default downmix, returned as ``int16 / 32768``: exactly the samples of Qwen-Audio's
    original ``ffmpeg -f s16le -ac 1 -acodec pcm_s16le -ar 16000``). ``decoder`` picks who decodes:
    ``"auto"`` (in-process, and the ffmpeg binary for a codec the in-process build lacks, when there is
    a binary), ``"pyav"`` or ``"ffmpeg"``. Any other value of either: ValueError.

    Raises:
        AudioTooLargeError: the file is larger than ``limits.max_bytes`` (checked before decoding).
        AudioTooLongError: the audio is longer than ``limits.max_seconds``; at most
            ``max_seconds + 1`` seconds are ever decoded.
        AudioDecodeError: the file is missing, empty, not audio, has no audio stream, decodes to no
            samples, uses a codec no decoder here has, or decoding failed (the reason quotes FFmpeg's
            own words, shortened).
    """
    pcm_format = _PCM_FORMATS.get(pcm)
    if pcm_format is None:
        raise ValueError(f"pcm must be one of {sorted(_PCM_FORMATS)}, got {pcm!r}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {list(DECODERS)}, got {decoder!r}")
    path_str = os.fsdecode(os.fspath(path))
    size = _check_file(path_str, limits)

    # "file:" keeps FFmpeg from reading names like "clip 12:30.wav" or "http://..." as URLs, and the
    # protocol whitelist stops playlists inside a file from fetching anything but local files.
    source = "file:" + os.path.abspath(path_str)
    started = time.perf_counter()
    if decoder == "ffmpeg":
        raw, problem = _decode_with_binary(path_str, source, limits, pcm_format)
        used = "the ffmpeg binary"
    else:
        try:
            raw, problem = _decode_in_process(path_str, source, limits, pcm_format)
            used = "PyAV"
        except _MissingDecoder as missing:
            binary = ffmpeg_binary() if decoder == "auto" else None
            if binary is None:
                raise AudioDecodeError(path_str, missing.reason) from None
            logger.info("%s: %s; decoding it with %s", path_str, missing.reason, binary)
            raw, problem = _decode_with_binary(path_str, source, limits, pcm_format)
            used = "the ffmpeg binary"

    n_samples = len(raw)
    if n_samples == 0:
        raise AudioDecodeError(path_str, "contains no audio samples")
    max_samples = limits.max_seconds * SAMPLE_RATE
    if n_samples > max_samples + _LENGTH_SLACK_S * SAMPLE_RATE:
        raise AudioTooLongError(path_str, _too_long_reason(source, limits.max_seconds))
    if problem:
        # Typically a truncated or damaged file: what decoded is returned.
        logger.info("FFmpeg reported problems decoding %s (decoded %.2f s): %s",
                    path_str, n_samples / SAMPLE_RATE, problem)

    samples = _as_float(raw, pcm_format)
    logger.debug("decoded %s (%d bytes) with %s in %.1f ms: %.2f s", path_str, size, used,
                 (time.perf_counter() - started) * 1000, n_samples / SAMPLE_RATE)
    return samples


def _as_float(raw: np.ndarray, pcm_format: _PcmFormat) -> np.ndarray:
    """Decoded samples as the contiguous float32 in [-1, 1] every caller gets."""
    if pcm_format.dtype.kind == "i":
        # int16 / 32768 lies in [-1, 1) and is always finite: nothing to clean. Same arithmetic as the
        # original (float32 array divided by 32768.0), so every sample is bit-identical to the original's.
        samples = raw.astype(np.float32) / np.float32(32768.0)
    else:
        samples = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)  # a new, writable array
        np.clip(samples, -1.0, 1.0, out=samples)
    return np.ascontiguousarray(samples, dtype=np.float32)


def stream_audio(path: str | os.PathLike, limits: AudioLimits = AudioLimits(), *, pcm: str = "f32",
                 chunk_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """The samples of :func:`decode_audio`, in chunks of about ``chunk_seconds`` as they decode, so that a
    long recording never lies in memory whole (transcription of hours of audio).

    Each chunk is float32 in [-1, 1]; the chunks joined are exactly ``decode_audio(path, limits, pcm=pcm)``.
    The file is checked as by :func:`decode_audio` before the first chunk (missing, empty, too large, not
    audio, no audio stream: the same typed errors). Longer audio than ``limits.max_seconds`` raises
    AudioTooLongError when the decoding gets there (ask :func:`audio_duration` first to refuse it at once);
    no samples at all raise AudioDecodeError after the last. No wall-clock limit: the consumer sets the pace.
    A codec the in-process build lacks is decoded whole by the ffmpeg binary, when there is one.
    """
    pcm_format = _PCM_FORMATS.get(pcm)
    if pcm_format is None:
        raise ValueError(f"pcm must be one of {sorted(_PCM_FORMATS)}, got {pcm!r}")
    path_str = os.fsdecode(os.fspath(path))
    _check_file(path_str, limits)
    source = "file:" + os.path.abspath(path_str)
    max_samples = limits.max_seconds * SAMPLE_RATE + _LENGTH_SLACK_S * SAMPLE_RATE
    chunk_samples = max(1, int(chunk_seconds * SAMPLE_RATE))
    problems: list[str] = []
    frames = _in_process_frames(path_str, source, pcm_format, problems)
    try:
        first = next(frames, None)
    except _MissingDecoder as missing:
        if ffmpeg_binary() is None:
            raise AudioDecodeError(path_str, missing.reason) from None
        samples = decode_audio(path_str, limits, pcm=pcm, decoder="ffmpeg")
        for start in range(0, len(samples), chunk_samples):
            yield samples[start : start + chunk_samples]
        return
    pending: list[np.ndarray] = [] if first is None else [first]
    pending_count = 0 if first is None else len(first)
    total = 0
    with contextlib.closing(frames):
        for frame in frames:
            pending.append(frame)
            pending_count += len(frame)
            if pending_count >= chunk_samples:
                total += pending_count
                if total > max_samples:
                    raise AudioTooLongError(path_str, _too_long_reason(source, limits.max_seconds))
                yield _as_float(np.concatenate(pending), pcm_format)
                pending, pending_count = [], 0
    total += pending_count
    if total > max_samples:
        raise AudioTooLongError(path_str, _too_long_reason(source, limits.max_seconds))
    if pending:
        yield _as_float(np.concatenate(pending), pcm_format)
    if total == 0:
        raise AudioDecodeError(path_str, f"could not be decoded: {problems[0]}" if problems else "contains no audio samples")
    if problems:
        logger.info("FFmpeg reported problems decoding %s (decoded %.2f s): %s", path_str, total / SAMPLE_RATE, problems[0])


def audio_duration(path: str | os.PathLike) -> float | None:
    """The length in seconds ``path``'s container declares (without decoding it), or None when it says none."""
    return _container_duration("file:" + os.path.abspath(os.fsdecode(os.fspath(path))))


def family_pcm(model_family: str) -> str:
    """The ``pcm`` mode a model family's audio is decoded in: "s16" for the first-generation Qwen-Audio
    (as its original code decoded), "f32" for Qwen2-Audio."""
    return "s16" if model_family == "Qwen-Audio" else "f32"


def ffmpeg_binary() -> str | None:
    """The ffmpeg binary this module would start: the system's (on PATH), else the one imageio-ffmpeg
    bundles when that package is installed, else None."""
    if _FFMPEG is not None:
        return _FFMPEG
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # optional: a binary in a wheel, for machines without a system ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # its binary is missing for this platform
        return None


# ------------------------------------------------------------------------------- in process (PyAV)


def _decode_in_process(path: str, source: str, limits: AudioLimits, pcm_format: _PcmFormat) -> tuple[np.ndarray, str | None]:
    """The first audio stream of ``source`` through the command line's resampling filter, in this process.

    Returns the samples (``pcm_format.dtype``) and FFmpeg's complaint about a damaged stream, if any
    (what decoded before it is kept). Raises AudioDecodeError, or _MissingDecoder for a codec this
    build lacks.
    """
    max_samples = int(round((limits.max_seconds + 1) * SAMPLE_RATE)) if math.isfinite(limits.max_seconds) else None
    deadline = time.monotonic() + _DECODE_TIMEOUT_S
    problems: list[str] = []
    chunks: list[np.ndarray] = []
    count = 0
    for chunk in _in_process_frames(path, source, pcm_format, problems):
        chunks.append(chunk)
        count += len(chunk)
        if max_samples is not None and count > max_samples:
            break  # one second past the limit is enough to refuse it
        if time.monotonic() > deadline:
            logger.warning("decoding %s took longer than %.0f s; stopped", path, _DECODE_TIMEOUT_S)
            raise AudioDecodeError(path, f"decoding took longer than {_DECODE_TIMEOUT_S:.0f} s and was stopped")
    problem = problems[0] if problems else None
    if not chunks:
        if problem:
            raise AudioDecodeError(path, f"could not be decoded: {problem}")
        return np.zeros(0, dtype=pcm_format.dtype), None
    raw = np.concatenate(chunks).astype(pcm_format.dtype, copy=False)
    if max_samples is not None and len(raw) > max_samples:
        raw = raw[:max_samples]
    return raw, problem


def _in_process_frames(path: str, source: str, pcm_format: _PcmFormat, problems: list[str]) -> Iterator[np.ndarray]:
    """Each resampled frame of ``source``'s first audio stream as it decodes (``pcm_format.dtype``).

    A damaged frame is skipped and a container that breaks off ends the frames, as on the command line;
    FFmpeg's first complaint is appended to ``problems``. Raises AudioDecodeError, or _MissingDecoder for
    a codec this build lacks, before the first frame. Closing the iterator closes the file.
    """
    try:
        container = av.open(source, container_options={"protocol_whitelist": "file"}, metadata_errors="replace")
    except av.FFmpegError as exc:
        raise AudioDecodeError(path, _reason_from_open_error(exc)) from None
    except (OSError, ValueError, UnicodeError) as exc:
        raise AudioDecodeError(path, f"could not be opened ({_shorten(str(exc))})") from None

    def complain(exc: BaseException) -> None:
        if not problems:
            problems.append(_shorten(_ffmpeg_message(exc)))

    with container:
        if not container.streams.audio:
            raise AudioDecodeError(path, _NO_AUDIO_STREAM)
        stream = container.streams.audio[0]
        if not _has_decoder(stream):
            raise _MissingDecoder("uses an audio codec the in-process decoder (PyAV's FFmpeg) has no decoder for")
        try:
            graph = _resampling_graph(stream, pcm_format)
        except (av.FFmpegError, ValueError) as exc:
            raise AudioDecodeError(path, f"could not be decoded: {_shorten(str(exc))}") from None

        def drain() -> Iterator[np.ndarray]:
            while True:
                try:
                    frame = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                yield frame.to_ndarray().reshape(-1)

        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:  # the container breaks off (truncated): keep what decoded
                complain(exc)
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:  # a damaged frame is skipped, as the command line does
                complain(exc)
                continue
            for frame in frames:
                graph.push(frame)
                yield from drain()
        try:
            graph.push(None)
            yield from drain()
        except av.FFmpegError as exc:
            complain(exc)


def _has_decoder(stream) -> bool:
    """Whether PyAV's FFmpeg build can decode ``stream`` (PyAV gives a stream without one no codec context)."""
    return stream.codec_context is not None


def _resampling_graph(stream, pcm_format: _PcmFormat) -> av.filter.Graph:
    """abuffer -> aresample -> aformat -> abuffersink: what the command line builds for ``-ac 1 -ar 16000``."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(template=stream)
    resample = graph.add("aresample", out_sample_rate=str(SAMPLE_RATE), out_chlayout="mono",
                         out_sample_fmt=pcm_format.sample_fmt, **pcm_format.resampler)
    convert = graph.add("aformat", sample_fmts=pcm_format.sample_fmt, sample_rates=str(SAMPLE_RATE),
                        channel_layouts="mono")
    sink = graph.add("abuffersink")
    source.link_to(resample)
    resample.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    return graph


def _ffmpeg_message(exc: BaseException) -> str:
    """FFmpeg's own words in a PyAV error, without the file name PyAV appends."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else str(exc)


def _reason_from_open_error(exc: BaseException) -> str:
    """Why FFmpeg could not open a file, as one short reason a person can act on."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "cannot be read (permission denied)"
    lowered = _ffmpeg_message(exc).lower()
    if "invalid data" in lowered or "invalid argument" in lowered or "end of file" in lowered:
        # The mp3 prober claims text and random bytes, then fails with "Invalid argument".
        return _INVALID_DATA
    if "protocol not on whitelist" in lowered or "protocol not found" in lowered:
        return _INVALID_DATA  # a playlist that points elsewhere: not an audio file
    return f"could not be opened by ffmpeg ({_shorten(_ffmpeg_message(exc))})"


# ------------------------------------------------------------------------------- the ffmpeg binary


def _decode_with_binary(path: str, source: str, limits: AudioLimits, pcm_format: _PcmFormat) -> tuple[np.ndarray, str | None]:
    """The same decoding by the ffmpeg binary, raw samples on a pipe; returns (samples, complaint)."""
    binary = ffmpeg_binary()
    if binary is None:
        raise AudioDecodeError(path, "cannot be decoded: ffmpeg is not available on this server")
    input_kwargs: dict[str, object] = {"protocol_whitelist": "file"}
    if math.isfinite(limits.max_seconds):
        # Stop reading a long file early: one second past the limit is enough to refuse it.
        input_kwargs["t"] = f"{limits.max_seconds + 1:.3f}"
    output_kwargs: dict[str, object] = {
        "format": pcm_format.format,
        "acodec": pcm_format.codec,
        "ac": 1,
        "ar": SAMPLE_RATE,
        **pcm_format.resampler,
        "vn": None,
        "sn": None,
        "dn": None,
    }
    stream = (
        ffmpeg.input(source, **input_kwargs)["a:0"]
        .output("pipe:", **output_kwargs)
        .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error")
    )
    try:
        proc = stream.run_async(cmd=binary, pipe_stdout=True, pipe_stderr=True)
    except OSError as exc:  # the binary is missing or not executable
        logger.error("cannot start %s to decode %s: %s", binary, path, exc)
        raise AudioDecodeError(path, "cannot be decoded: ffmpeg is not available on this server") from None
    try:
        out, err = proc.communicate(timeout=_DECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        logger.warning("ffmpeg took longer than %.0f s on %s; stopped", _DECODE_TIMEOUT_S, path)
        raise AudioDecodeError(path, f"decoding took longer than {_DECODE_TIMEOUT_S:.0f} s and was stopped") from None

    stderr = err.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        reason = _reason_from_stderr(stderr, source)
        logger.debug("ffmpeg exited with %s on %s: %s", proc.returncode, path, reason)
        raise AudioDecodeError(path, reason)
    n_samples = len(out) // pcm_format.dtype.itemsize
    raw = np.frombuffer(out, dtype=pcm_format.dtype, count=n_samples)
    return raw, (_last_meaningful_line(stderr, source) if stderr.strip() else None)


def _window_samples(limits: AudioLimits) -> int:
    return max(1, int(round(limits.window_seconds * SAMPLE_RATE)))


def window_count(n_samples: int, limits: AudioLimits = AudioLimits()) -> int:
    """How many windows :func:`split_windows` cuts ``n_samples`` samples into (75 s: 3, 60 s: 2, 0: 0)."""
    return -(-int(n_samples) // _window_samples(limits))


def split_windows(samples: np.ndarray, limits: AudioLimits = AudioLimits()) -> list[np.ndarray]:
    """Cut ``samples`` into consecutive windows the encoder can see.

    Windows hold at most ``limits.window_seconds`` each, in order, cover every sample, and do not
    overlap; each is zero-padded at its end to at least ``limits.min_seconds``. For example a 75 s
    input gives [30 s, 30 s, 15 s], 0.05 s gives [0.5 s], exactly 60 s gives two windows. Every
    window is a new contiguous float32 array. An empty input gives an empty list.
    """
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"split_windows expects 1-D mono samples, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    window = _window_samples(limits)
    min_len = min(window, int(round(limits.min_seconds * SAMPLE_RATE)))
    windows = []
    for start in range(0, len(x), window):
        chunk = x[start : start + window]
        if len(chunk) < min_len:
            padded = np.zeros(min_len, dtype=np.float32)
            padded[: len(chunk)] = chunk
            windows.append(padded)
        else:
            windows.append(np.array(chunk, dtype=np.float32, copy=True, order="C"))
    return windows


def _check_file(path: str, limits: AudioLimits) -> int:
    """Refuse missing, unreadable, non-regular, empty and oversized files; return the size in bytes."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise AudioDecodeError(path, "file not found") from None
    except PermissionError:
        raise AudioDecodeError(path, "cannot be read (permission denied)") from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL byte in the name
        raise AudioDecodeError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioDecodeError(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioDecodeError(path, "is not a regular file")
    if st.st_size == 0:
        raise AudioDecodeError(path, "the file is empty")
    if st.st_size > limits.max_bytes:
        raise AudioTooLargeError(
            path, f"the file is {_format_bytes(st.st_size)}; the limit is {_format_bytes(limits.max_bytes)}"
        )
    return st.st_size


def _clean_line(line: str, source: str) -> str:
    line = line.strip()
    # "[mp3 @ 0x55c49cf3c900] Failed to read frame size" -> "Failed to read frame size"
    if line.startswith("[") and " @ 0x" in line.split("]", 1)[0]:
        line = line.split("]", 1)[1].strip()
    # Never echo the full path (the message already starts with the file name).
    line = line.replace(source, "the file")
    return line


def _meaningful_lines(stderr: str, source: str) -> list[str]:
    lines = []
    for raw in stderr.splitlines():
        line = _clean_line(raw, source)
        if line and not line.lower().startswith(_NOISE_PREFIXES):
            lines.append(line)
    return lines


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1].rstrip() + "…"


def _last_meaningful_line(stderr: str, source: str) -> str:
    lines = _meaningful_lines(stderr, source)
    return _shorten(lines[-1]) if lines else "no details"


def _reason_from_stderr(stderr: str, source: str) -> str:
    """Turn a failed ffmpeg run's stderr into one short reason a person can act on."""
    # ffmpeg reports a failure to open the input as "<url>: <strerror>".
    open_error = None
    for raw in stderr.splitlines():
        line = raw.strip()
        if line.startswith(source + ": "):
            open_error = line[len(source) + 2 :].strip()
    if open_error is not None:
        lowered = open_error.lower()
        if "no such file" in lowered:
            return "file not found"
        if "permission denied" in lowered:
            return "cannot be read (permission denied)"
        if "invalid data" in lowered or "invalid argument" in lowered or "end of file" in lowered:
            # The mp3 prober claims text and random bytes, then fails with "Invalid argument".
            return _INVALID_DATA
        return f"could not be opened by ffmpeg ({_shorten(open_error)})"
    lowered = stderr.lower()
    if "matches no streams" in lowered or "does not contain any stream" in lowered:
        return _NO_AUDIO_STREAM
    if "invalid data found when processing input" in lowered:
        return _INVALID_DATA
    return f"could not be decoded by ffmpeg: {_last_meaningful_line(stderr, source)}"


def _too_long_reason(source: str, max_seconds: float) -> str:
    """The reason for AudioTooLongError, with the file's real length where its container tells it
    (only ``max_seconds + 1`` of it were decoded)."""
    limit = format_duration(max_seconds, short_whole_minutes=True)
    duration = _container_duration(source)
    if duration is not None and duration > max_seconds:
        return f"the audio is {format_duration(duration)} long; the limit is {limit}"
    return f"the audio is longer than the limit of {limit}"


def _container_duration(source: str) -> float | None:
    """The length in seconds the container (or its first audio stream) declares, or None."""
    try:
        with av.open(source, container_options={"protocol_whitelist": "file"}, metadata_errors="replace") as container:
            candidates = []
            if container.duration is not None:
                candidates.append(container.duration / av.time_base)
            for stream in container.streams.audio[:1]:
                if stream.duration is not None and stream.time_base is not None:
                    candidates.append(float(stream.duration * stream.time_base))
    except Exception as exc:  # noqa: BLE001 - the length is only decoration for the message
        logger.debug("could not tell the length of %s: %s", source, exc)
        return None
    values = [v for v in candidates if math.isfinite(v)]
    return max(values) if values else None


def format_clock(seconds: float, decimals: int = 0) -> str:
    """A time as a clock reads it: 75 -> "1:15", (2.46, 1) -> "0:02.5", (61.5, 2) -> "1:01.50"."""
    scale = 10 ** decimals
    whole, fraction = divmod(int(round(seconds * scale)), scale)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}:{secs:02d}" + (f".{fraction:0{decimals}d}" if decimals else "")


def format_duration(seconds: float, short_whole_minutes: bool = False) -> str:
    """660 -> "11 min 0 s", 45.25 -> "45.2 s"; with short_whole_minutes 300 -> "5 min"."""
    tenths = int(round(seconds * 10))
    minutes, rest = divmod(tenths, 600)
    secs = f"{rest // 10}" if rest % 10 == 0 else f"{rest / 10:.1f}"
    if minutes == 0:
        return f"{secs} s"
    if short_whole_minutes and rest == 0:
        return f"{minutes} min"
    return f"{minutes} min {secs} s"


def _format_bytes(n: int) -> str:
    """1000 -> "1000 bytes", 1536 -> "1.5 KB", 200 MiB -> "200 MB"."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024.0
        if value < 1024 or unit == "TB":
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def write_wav(path: "str | os.PathLike[str]", samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """``samples`` (float, -1..1) as a 16-bit mono WAV: the clips the page cuts, records and generates."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
