"""model.audio's two decoders side by side: in-process (PyAV, the default) and the ffmpeg binary.

test_audio_decode.py runs every decoding test with each; this module checks what sets them apart:
the same samples from both, no process started by the default, the binary taking over a codec the
in-process build lacks, and each one's own failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audio_samples import ffmpeg_cli, ffmpeg_convert, tone, write_wav  # tests/ is on sys.path (conftest)
from model import audio
from model.audio import SAMPLE_RATE, decode_audio
from model.errors import AudioDecodeError

SR = SAMPLE_RATE
FIXTURES = Path(__file__).parent / "fixtures" / "audio"
ONE_LSB = 1 / 32768


def assert_clear_error(err: AudioDecodeError, path: Path, fragment: str) -> None:
    message = str(err)
    assert message.startswith(path.name + ": ") and fragment in message, message
    assert "\n" not in message and "Traceback" not in message and str(path.parent) not in message


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    """One file per format the tests cover, from a 16 kHz mono and a 48 kHz stereo source."""
    d = tmp_path_factory.mktemp("formats")
    mono = write_wav(d / "mono16k.wav", tone(3.0, freq=1000.0, seed=1))
    stereo = write_wav(d / "stereo48k.wav", np.stack([tone(2.0, 500.0, sr=48000), tone(2.0, 700.0, sr=48000)], axis=1),
                       sr=48000)
    files = {"mono16k.wav": mono, "stereo48k.wav": stereo, "tone.flac": ffmpeg_convert(mono, d / "tone.flac")}
    for name, args in [("tone.mp3", ()), ("vorbis.ogg", ("-c:a", "libvorbis")), ("tone.opus", ()),
                       ("recording.webm", ("-c:a", "libopus")), ("tone.m4a", ()), ("tone.aac", ())]:
        files[name] = ffmpeg_convert(stereo, d / name, *args)
    video = d / "capture.mp4"
    ffmpeg_cli("-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=10", "-i", str(stereo),
               "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(video))
    files["capture.mp4"] = video
    return files


LOSSLESS = {"mono16k.wav", "tone.flac"}


#: AAC in MP4 ends with encoder padding (up to one 1024-sample frame); newer ffmpeg binaries (9.x) cut it
#: at the length the container declares, FFmpeg's libraries as PyAV drives them (and ffmpeg 5.x) keep it
#: (at most 5 ms of near-silence at the end).
PADDED = {"tone.m4a", "capture.mp4"}
ONE_AAC_FRAME_AT_16K = 1024 * SR // 44100 + 1


@pytest.mark.parametrize("pcm", ["f32", "s16"])
def test_both_decoders_give_the_same_samples(formats, pcm):
    """Bit for bit from lossless 16 kHz input; within two 16-bit steps elsewhere (the binary's FFmpeg
    release may differ from the one in PyAV's wheel, and their decoders and resampler round a little
    differently); the same length, but for the AAC padding a newer binary cuts."""
    for name, path in formats.items():
        in_process = decode_audio(path, pcm=pcm, decoder="pyav")
        binary = decode_audio(path, pcm=pcm, decoder="ffmpeg")
        if name in PADDED:
            assert 0 <= len(in_process) - len(binary) <= ONE_AAC_FRAME_AT_16K, (name, len(in_process), len(binary))
        else:
            assert len(in_process) == len(binary), name
        # Where the binary cut the padding before resampling, the resampler's last few outputs differ too.
        common = min(len(in_process), len(binary)) - (64 if len(in_process) != len(binary) else 0)
        if name in LOSSLESS:
            assert np.array_equal(in_process, binary), name
        else:
            assert np.abs(in_process[:common] - binary[:common]).max() <= 2 * ONE_LSB, name


def test_the_default_starts_no_process(formats, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    for name, path in formats.items():
        assert len(decode_audio(path)) > SR, name
    with pytest.raises(AssertionError, match="a process was started"):
        decode_audio(formats["tone.mp3"], decoder="ffmpeg")


def test_the_in_process_decoder_prints_nothing(formats, tmp_path, capfd):
    """FFmpeg's libraries log to stderr unless told not to: a damaged file must not write there."""
    data = formats["tone.mp3"].read_bytes()
    damaged = tmp_path / "damaged.mp3"
    third = len(data) // 3
    damaged.write_bytes(data[:third] + bytes(1500) + data[third + 1500:])  # frames in the middle zeroed
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    capfd.readouterr()
    decoded = decode_audio(damaged, decoder="pyav")
    assert len(decoded) > 0.5 * SR  # what decoded before the damage (and after, where the decoder recovers)
    with pytest.raises(AudioDecodeError):
        decode_audio(noise, decoder="pyav")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert len(decoded) == len(decode_audio(damaged, decoder="ffmpeg"))  # as much as the binary


def test_a_codec_the_in_process_build_lacks_is_refused_in_one_sentence():
    """A real such file: a 1 s tone in Codec 2 (a 3200 bit/s speech codec), made with Debian's ffmpeg, which PyAV's build cannot decode."""
    path = FIXTURES / "tone_codec2.c2"
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path, decoder="pyav")
    assert_clear_error(info.value, path, "uses an audio codec the in-process decoder (PyAV's FFmpeg) has no decoder for")


def test_auto_hands_such_a_file_to_the_binary(formats, monkeypatch, caplog):
    path = formats["tone.opus"]
    expected = decode_audio(path, decoder="ffmpeg")
    monkeypatch.setattr(audio, "_has_decoder", lambda stream: False)  # as if PyAV's build had no Opus decoder
    with caplog.at_level("INFO", logger="model.audio"):
        assert np.array_equal(decode_audio(path), expected)
    assert any("decoding it with" in r.getMessage() for r in caplog.records)
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path, decoder="pyav")
    assert_clear_error(info.value, path, "has no decoder for")
    monkeypatch.setattr(audio, "ffmpeg_binary", lambda: None)  # and no binary on this machine
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "has no decoder for")


def test_ffmpeg_binary_is_the_systems_else_imageio_ffmpegs(monkeypatch, tmp_path):
    import imageio_ffmpeg

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    assert audio.ffmpeg_binary() == str(fake)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    bundled = audio.ffmpeg_binary()
    assert bundled == imageio_ffmpeg.get_ffmpeg_exe() and os.access(bundled, os.X_OK)


def test_an_unknown_decoder_is_a_programming_error(formats):
    with pytest.raises(ValueError, match="decoder must be one of"):
        decode_audio(formats["mono16k.wav"], decoder="sox")


def test_the_binary_missing(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "fine.wav", tone(0.5))
    monkeypatch.setattr(audio, "_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path, decoder="ffmpeg")
    assert_clear_error(info.value, path, "ffmpeg is not available")


def test_the_binarys_other_failures_quote_one_short_line():
    source = "file:/srv/uploads/secret dir/x.wav"
    stderr = (
        "[matroska,webm @ 0x55d0c0ffee00] Something odd happened\n"
        f"[aist#0:0 @ 0x1] Decoder failed for {source}: " + "very long explanation " * 30 + "\n"
        "Conversion failed!\n"
    )
    reason = audio._reason_from_stderr(stderr, source)
    assert reason.startswith("could not be decoded by ffmpeg: Decoder failed for the file: very long explanation")
    assert reason.endswith("…")
    assert len(reason) < 200
    assert "/srv/uploads" not in reason and "Conversion failed" not in reason and "0x" not in reason
