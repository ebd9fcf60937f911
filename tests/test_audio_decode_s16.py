"""model.audio's ``pcm="s16"`` mode: the samples of the original Qwen-Audio's ffmpeg call, bit for bit.

The original decodes with ``ffmpeg -i F -f s16le -ac 1 -acodec pcm_s16le -ar 16000 -`` and divides by
32768; the reference fixture records the sha256 of those int16 bytes for every clip it uses. The
s16 mode must reproduce them while keeping every safety measure (and error) of the default f32 path.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_samples import ffmpeg_cli, ffmpeg_exe, tone, write_wav  # tests/ is on sys.path (conftest)
from model import audio
from model.audio import SAMPLE_RATE, AudioLimits, decode_audio
from model.caches import LruCache, cached_decoder
from model.errors import AudioDecodeError, AudioError, AudioTooLargeError, AudioTooLongError
from qwen_audio_fixture import FIXTURE, cases

SR = SAMPLE_RATE


@pytest.fixture(autouse=True, params=["pyav", "ffmpeg"])
def decoder(request, monkeypatch) -> str:
    """Each test once per decoder: this module's ``decode_audio`` is model.audio's with ``decoder=`` set."""
    monkeypatch.setattr(sys.modules[__name__], "decode_audio", functools.partial(audio.decode_audio, decoder=request.param))
    return request.param


def expected_pcm() -> dict[str, dict]:
    """Per fixture audio file (as the cases name it): its ``audio_files`` entry, the same in every case."""
    by_file: dict[str, dict] = {}
    for case in cases():
        for entry in case.get("audio_files") or []:
            known = by_file.setdefault(entry["file"], entry)
            assert (known["pcm_s16le_sha256"], known["n_samples_16k"]) == (
                entry["pcm_s16le_sha256"],
                entry["n_samples_16k"],
            ), f"the fixture disagrees with itself on {entry['file']}"
    return by_file


EXPECTED = expected_pcm()
MP3 = "audio/chirp_stereo.mp3"


def as_int16(samples: np.ndarray) -> np.ndarray:
    """s16-mode samples back to the int16 ffmpeg wrote (exact: every sample is k / 32768)."""
    scaled = samples.astype(np.float64) * 32768.0
    assert np.array_equal(scaled, np.round(scaled)), "not int16 / 32768"
    assert scaled.min() >= -32768 and scaled.max() <= 32767
    return scaled.astype("<i2")


def sha256_of(samples_int16: np.ndarray) -> str:
    return hashlib.sha256(samples_int16.astype("<i2").tobytes()).hexdigest()


# ------------------------------------------------------------------------ the original's samples


def test_fixture_names_every_audio_file_it_ships():
    shipped = {f"audio/{p.name}" for p in (FIXTURE / "audio").iterdir() if p.is_file()}
    assert len(shipped) == 5
    assert set(EXPECTED) == shipped  # so the parametrised test below covers every clip
    assert MP3 in shipped


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_s16_decode_matches_the_originals_pcm(rel):
    expected = EXPECTED[rel]
    x = decode_audio(FIXTURE / rel, pcm="s16")
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    pcm = as_int16(x)
    assert len(pcm) == expected["n_samples_16k"]
    assert sha256_of(pcm) == expected["pcm_s16le_sha256"]


def test_f32_default_differs_for_the_stereo_mp3():
    path = FIXTURE / MP3
    s16 = decode_audio(path, pcm="s16")
    f32 = decode_audio(path)
    assert len(f32) == len(s16) == EXPECTED[MP3]["n_samples_16k"]
    assert not np.array_equal(f32, s16)
    scaled = f32.astype(np.float64) * 32768.0
    assert not np.array_equal(scaled, np.round(scaled))  # f32 is not 16-bit: its hash cannot match
    # Only the quantisation differs: at most one int16 step, the same level (for integer output
    # ffmpeg's default downmix is normalised like the f32 path's rematrix_maxval=1).
    assert np.abs(f32 - s16).max() <= 1.0 / 32768.0
    assert np.sqrt(np.mean(np.square(f32, dtype=np.float64))) == pytest.approx(
        np.sqrt(np.mean(np.square(s16, dtype=np.float64))), rel=1e-3
    )


def test_16k_mono_pcm16_wav_is_the_same_in_both_modes():
    path = FIXTURE / "audio/speech_short.wav"
    assert np.array_equal(decode_audio(path, pcm="s16"), decode_audio(path))


def test_s16_stereo_of_identical_loud_channels_keeps_their_level(tmp_path):
    # What ffmpeg's default does for int16 output (the docstring's claim): no x1.41 boost, no clipping.
    loud = tone(1.0, freq=500.0, amplitude=0.9)
    x = decode_audio(write_wav(tmp_path / "loud stereo.wav", np.stack([loud, loud], axis=1)), pcm="s16")
    assert np.abs(x).max() == pytest.approx(0.9, abs=0.01)
    mono = decode_audio(write_wav(tmp_path / "loud mono.wav", loud), pcm="s16")
    assert np.abs(x - mono).max() <= 2.0 / 32768.0


def test_unknown_pcm_mode_is_a_value_error_before_the_file_is_touched(tmp_path):
    with pytest.raises(ValueError, match="pcm"):
        decode_audio(tmp_path / "does not exist.wav", pcm="s24")
    with pytest.raises(ValueError, match="pcm"):
        decode_audio(FIXTURE / MP3, pcm="F32")


# ------------------------------------------------------------------------ the same safety measures


def test_s16_command_keeps_every_safety_option(tmp_path, monkeypatch):
    """Run the real ffmpeg through a logging wrapper and read the arguments it was given."""
    log = tmp_path / "argv.txt"
    wrapper = tmp_path / "ffmpeg-logging"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\nexec "{ffmpeg_exe()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(audio, "_FFMPEG", str(wrapper))
    src = FIXTURE / "audio/tone_1s37.wav"
    x = audio.decode_audio(src, AudioLimits(max_seconds=20.0), pcm="s16", decoder="ffmpeg")
    assert sha256_of(as_int16(x)) == EXPECTED["audio/tone_1s37.wav"]["pcm_s16le_sha256"]
    argv = log.read_text().splitlines()

    def value_of(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value_of("-i") == "file:" + os.path.abspath(src)
    assert value_of("-protocol_whitelist") == "file"
    assert float(value_of("-t")) == 21.0  # stops reading one second past the limit
    assert value_of("-map") == "0:a:0"
    assert value_of("-f") == "s16le" and value_of("-acodec") == "pcm_s16le"
    assert value_of("-ac") == "1" and value_of("-ar") == str(SR)
    assert {"-vn", "-sn", "-dn", "-nostdin"} <= set(argv)
    assert "-rematrix_maxval" not in argv  # ffmpeg's default downmix, as the original


def make_missing(tmp_path: Path) -> tuple[Path, AudioLimits]:
    return tmp_path / "gone.wav", AudioLimits()


def make_garbage(tmp_path: Path) -> tuple[Path, AudioLimits]:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path, AudioLimits()


def make_text(tmp_path: Path) -> tuple[Path, AudioLimits]:
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio at all\n" * 100)
    return path, AudioLimits()


def make_empty(tmp_path: Path) -> tuple[Path, AudioLimits]:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path, AudioLimits()


def make_header_only(tmp_path: Path) -> tuple[Path, AudioLimits]:
    return write_wav(tmp_path / "header.wav", np.zeros(0, dtype=np.float32)), AudioLimits()


def make_too_long(tmp_path: Path) -> tuple[Path, AudioLimits]:
    return write_wav(tmp_path / "three seconds.wav", tone(3.0)), AudioLimits(max_seconds=2.0)


def make_too_large(tmp_path: Path) -> tuple[Path, AudioLimits]:
    path = tmp_path / "huge.wav"
    path.write_bytes(b"\x00junk" * 300)
    return path, AudioLimits(max_bytes=1000)


def make_no_audio_stream(tmp_path: Path) -> tuple[Path, AudioLimits]:
    path = tmp_path / "silent film.mp4"
    ffmpeg_cli("-f", "lavfi", "-i", "color=c=blue:s=32x32:d=0.5", "-c:v", "mpeg4", str(path))
    return path, AudioLimits()


BAD_INPUTS = [
    (make_missing, AudioDecodeError, "file not found"),
    (make_garbage, AudioDecodeError, "is not an audio file ffmpeg can read"),
    (make_text, AudioDecodeError, "is not an audio file ffmpeg can read"),
    (make_empty, AudioDecodeError, "the file is empty"),
    (make_header_only, AudioDecodeError, "contains no audio samples"),
    (make_too_long, AudioTooLongError, "is 3 s long; the limit is 2 s"),
    (make_too_large, AudioTooLargeError, "the file is 1.5 KB; the limit is 1000 bytes"),
    (make_no_audio_stream, AudioDecodeError, "contains no audio stream"),
]


@pytest.mark.parametrize("make,error,reason", BAD_INPUTS, ids=[m.__name__.removeprefix("make_") for m, _, _ in BAD_INPUTS])
def test_s16_refuses_bad_input_with_the_same_typed_error_as_f32(tmp_path, make, error, reason):
    path, limits = make(tmp_path)
    raised: dict[str, AudioError] = {}
    for pcm in ("f32", "s16"):
        with pytest.raises(error) as info:
            decode_audio(path, limits, pcm=pcm)
        raised[pcm] = info.value
    s16, f32 = raised["s16"], raised["f32"]
    assert type(s16) is type(f32)
    assert str(s16) == str(f32)
    assert str(s16).startswith(f"{path.name}: ") and reason in str(s16), str(s16)
    assert s16.path == str(path)


def test_s16_decoding_stops_one_second_past_the_limit(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "long.wav", tone(30.0))
    monkeypatch.setattr(audio, "_LENGTH_SLACK_S", 1e6)  # disable the refusal to see what was decoded
    assert len(decode_audio(path, AudioLimits(max_seconds=10.0), pcm="s16")) == 11 * SR


# ------------------------------------------------------------------------ the decoded-audio cache


def test_cache_keeps_s16_and_f32_of_one_file_apart():
    cache: LruCache[np.ndarray] = LruCache(64 << 20, name="decoded audio")
    decode = cached_decoder(decode_audio, cache)
    path, limits = str(FIXTURE / MP3), AudioLimits()
    f32 = decode(path, limits)
    s16 = decode(path, limits, pcm="s16")
    assert len(cache) == 2 and cache.hits == 0
    assert np.array_equal(f32, decode_audio(path))
    assert np.array_equal(s16, decode_audio(path, pcm="s16"))
    assert decode(path, limits, pcm="s16") is s16 and decode(path, limits) is f32
    assert cache.hits == 2 and len(cache) == 2


def test_cache_still_wraps_a_decoder_that_takes_only_path_and_limits(tmp_path):
    calls = []

    def old_style_decode(path: str, limits: AudioLimits) -> np.ndarray:
        calls.append(path)
        return np.zeros(8, dtype=np.float32)

    path = write_wav(tmp_path / "a.wav", tone(0.2))
    decode = cached_decoder(old_style_decode, LruCache(1 << 20))
    assert len(decode(str(path), AudioLimits())) == 8
    assert len(decode(str(path), AudioLimits())) == 8
    assert calls == [str(path)]
