"""Qwen-Audio's audio features: 16 kHz samples -> Whisper log-mel [80, 3000], and the audio token count.

The first-generation Qwen-Audio models compute their encoder input themselves (their remote code, not
a transformers feature extractor); this module does the same arithmetic natively:

- the samples (decoded as ``model.audio.decode_audio(path, pcm="s16")`` to match the original's
  ffmpeg call) are cut to the first 30 s (:data:`N_SAMPLES`) and zero-padded to exactly 30 s;
- a centred STFT (400-point Hann window, hop 160, reflect padding) gives power spectra, the checkpoint's
  ``mel_filters.npz`` filter bank (Whisper's, ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``)
  maps them to mel bands, and Whisper's log compression (log10, floor 8 below the maximum of the whole
  padded 30 s, then ``(x + 4) / 4``) gives the [80, 3000] float32 input;
- :func:`token_counts` gives how many of those frames are real audio and how many prompt tokens the
  clip becomes (the encoder's two convolutions halve the frames once, its pooling once more).

numpy is imported here; torch and librosa only inside the functions that use them.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "HOP",
    "N_FFT",
    "N_FRAMES",
    "N_SAMPLES",
    "AudioTokenCounts",
    "LogMelExtractor",
    "compute_mel_filters",
    "load_mel_filters",
    "token_counts",
]

logger = logging.getLogger(__name__)

#: The encoder's sampling rate (the same as ``model.audio.SAMPLE_RATE``).
SAMPLE_RATE = 16000
#: 30 s at 16 kHz: longer audio is cut, shorter audio is zero-padded to this.
N_SAMPLES = 480000
#: STFT hop (10 ms) and size (25 ms).
HOP = 160
N_FFT = 400
#: Frames of the log-mel of 30 s.
N_FRAMES = N_SAMPLES // HOP
#: Name of the filter bank file in a Qwen-Audio checkpoint, and its array for 80 mel bands.
MEL_FILTERS_FILE = "mel_filters.npz"
_N_FREQS = N_FFT // 2 + 1


def load_mel_filters(path: str | os.PathLike, n_mels: int = 80) -> np.ndarray:
    """The mel filter bank of a checkpoint: ``path/mel_filters.npz`` (or ``path`` itself if it is the file).

    Returns the ``mel_<n_mels>`` array as float32, shape ``[n_mels, 201]``. A missing, unreadable or
    garbled file, a missing key, a wrong shape or non-finite values raise ValueError naming the file.
    """
    path = Path(path)
    file = path / MEL_FILTERS_FILE if path.is_dir() else path
    key = f"mel_{n_mels}"
    if not file.is_file():
        raise ValueError(f"{file}: mel filter bank not found (a Qwen-Audio checkpoint ships {MEL_FILTERS_FILE})")
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("a single array, not an .npz archive")
        with loaded:
            names = sorted(loaded.files)
            filters = np.asarray(loaded[key]) if key in names else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{file}: not a readable .npz mel filter bank ({exc})") from None
    if filters is None:
        raise ValueError(f"{file}: has no {key!r} array (it holds {names})")
    if filters.shape != (n_mels, _N_FREQS):
        raise ValueError(f"{file}: {key} has shape {list(filters.shape)}, expected [{n_mels}, {_N_FREQS}]")
    if not np.issubdtype(filters.dtype, np.floating) or not np.isfinite(filters).all():
        raise ValueError(f"{file}: {key} must hold finite floating-point values (dtype {filters.dtype})")
    return np.ascontiguousarray(filters, dtype=np.float32)


def compute_mel_filters(n_mels: int = 80) -> np.ndarray:
    """Whisper's filter bank, ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels)``, as float32.

    For writing checkpoints (e.g. tiny test ones) that need a ``mel_filters.npz``; with librosa 0.11 it
    is bit-identical to the file the Qwen-Audio checkpoints ship.
    """
    import librosa

    return np.ascontiguousarray(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels), dtype=np.float32)


@dataclass(frozen=True)
class AudioTokenCounts:
    """How one clip enters the encoder and the prompt.

    ``samples_used``: samples after the 30 s cut; ``mel_len``: real (unpadded) log-mel frames;
    ``len_after_cnn``: encoder positions after the stride-2 convolution (what the original calls
    ``audio_len_after_cnn``, the first of ``input_audio_lengths``); ``n_tokens``: audio embeddings
    after the pooling, i.e. ``[[[AUDIO:modality]]]`` placeholders in the prompt.
    """

    samples_used: int
    mel_len: int
    len_after_cnn: int
    n_tokens: int

    @property
    def span_tokens(self) -> int:
        """Ids from ``<audio>`` to ``</audio>``, both tags included."""
        return self.n_tokens + 2


def token_counts(n_samples: int) -> AudioTokenCounts:
    """The counts of a clip of ``n_samples`` samples at 16 kHz (only the first 30 s are used).

    Python's floor division throughout, as in the original: a clip shorter than one hop has
    ``mel_len`` 0 and no audio tokens (its span is just ``<audio></audio>``).
    """
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}")
    samples_used = min(int(n_samples), N_SAMPLES)
    mel_len = samples_used // HOP
    # conv1 (kernel 3, padding 1, stride 1) keeps the length; conv2 (kernel 3, padding 1, stride 2) halves it.
    len_after_cnn = (mel_len - 1) // 2 + 1
    # The average pool (kernel 2, stride 2) over the encoder output.
    n_tokens = (len_after_cnn - 2) // 2 + 1
    return AudioTokenCounts(samples_used, mel_len, len_after_cnn, n_tokens)


class LogMelExtractor:
    """Samples -> the encoder's log-mel input, exactly as Qwen-Audio's original code computes it."""

    def __init__(self, mel_filters: np.ndarray):
        import torch

        filters = np.asarray(mel_filters)
        if filters.ndim != 2 or filters.shape[1] != _N_FREQS:
            raise ValueError(f"mel_filters must have shape [n_mels, {_N_FREQS}], got {list(filters.shape)}")
        self.n_mels = filters.shape[0]
        self._filters = torch.from_numpy(np.array(filters, dtype=np.float32, order="C"))
        self._window = torch.hann_window(N_FFT)

    def __call__(self, samples: np.ndarray) -> "torch.Tensor":
        """1-D 16 kHz samples (float, [-1, 1]; taken as float32) -> float32 ``[n_mels, 3000]`` on the CPU.

        Only the first 30 s are used; shorter audio is zero-padded to 30 s BEFORE the log floor is
        taken, as in the original (so the padding's frames are part of the spectrogram). Which frames
        are real audio: :func:`token_counts`.
        """
        import torch

        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"LogMelExtractor expects 1-D mono samples, got shape {list(x.shape)}")
        audio = np.zeros(N_SAMPLES, dtype=np.float32)
        used = x[:N_SAMPLES]
        audio[: len(used)] = used
        stft = torch.stft(
            torch.from_numpy(audio), N_FFT, HOP, window=self._window, center=True, pad_mode="reflect",
            return_complex=True,
        )
        power = stft[..., :-1].abs() ** 2  # 3001 frames from a centred STFT; the original drops the last
        mel = self._filters @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
