"""model.audio: decoding any user audio to 16 kHz mono float32 and refusing bad input clearly.

Every test runs with both decoders: in-process (PyAV, the default) and the ffmpeg binary. Every input
is generated in tmp_path with numpy, ``wave`` or the ffmpeg CLI: no binary fixtures. The windowing is
tested in test_audio_windows.py, what is particular to each decoder in test_audio_decoders.py.
"""

from __future__ import annotations

import ast
import functools
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from model import audio
from model.audio import SAMPLE_RATE, AudioLimits, decode_audio, split_windows
from model.errors import AudioDecodeError, AudioError, AudioTooLargeError, AudioTooLongError
from audio_samples import ffmpeg_cli, ffmpeg_convert, read_wav16k, tone, write_wav  # tests/ is on sys.path (conftest)

SR = SAMPLE_RATE


@pytest.fixture(autouse=True, params=["pyav", "ffmpeg"])
def decoder(request, monkeypatch) -> str:
    """Each test once per decoder: this module's ``decode_audio`` is model.audio's with ``decoder=`` set."""
    monkeypatch.setattr(sys.modules[__name__], "decode_audio", functools.partial(audio.decode_audio, decoder=request.param))
    return request.param


# ---------------------------------------------------------------------------------------- helpers


def write_float_wav(path: Path, samples: np.ndarray, sr: int = SR) -> Path:
    """Write a mono IEEE-float32 WAV (format tag 3) byte by byte: ``wave`` only writes PCM."""
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, sr, sr * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def dominant_frequency(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.fft.rfftfreq(len(x), 1.0 / sr)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def assert_decoded(x: np.ndarray) -> None:
    """The contract of decode_audio's result."""
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float32
    assert x.ndim == 1
    assert x.flags.c_contiguous
    assert len(x) > 0
    assert np.isfinite(x).all()
    assert x.min() >= -1.0 and x.max() <= 1.0


def assert_clear_error(err: AudioError, path: Path, *fragments: str) -> None:
    """One short line, starting with the file's name, naming the problem, no traceback or stderr dump."""
    message = str(err)
    assert message.startswith(path.name + ": "), message
    assert err.path == str(path)
    assert err.user_message == message
    assert "\n" not in message
    assert "Traceback" not in message
    assert str(path.parent) not in message  # only the name, never the full path
    assert len(message) < len(path.name) + 200
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory) -> Path:
    """3 s of a 1 kHz tone, 16 kHz mono PCM16: the source of every format conversion."""
    return write_wav(tmp_path_factory.mktemp("src") / "tone.wav", tone(3.0, freq=1000.0))


# ---------------------------------------------------------------------------------------- decoding


def test_pcm16_16k_wav_decodes_bit_exact(tmp_path):
    path = write_wav(tmp_path / "speech.wav", tone(1.3, freq=440.0, seed=7))
    x = decode_audio(path)
    assert_decoded(x)
    expected = read_wav16k(path)
    assert len(x) == 20800
    assert np.array_equal(x, expected)


def test_path_given_as_str_or_pathlike(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(0.7))
    assert np.array_equal(decode_audio(str(path)), decode_audio(path))


def test_48k_stereo_wav_becomes_16k_mono(tmp_path):
    left = tone(2.5, freq=500.0, sr=48000)
    stereo = np.stack([left, left], axis=1)
    x = decode_audio(write_wav(tmp_path / "stereo48k.wav", stereo, sr=48000))
    assert_decoded(x)
    assert abs(len(x) - 2.5 * SR) <= 3  # ±1 sample per second
    assert abs(dominant_frequency(x) - 500.0) < 2.0
    # Both channels carry the same tone: the mono mix keeps its level (ffmpeg's default would be x1.41).
    assert rms(x) == pytest.approx(rms(left), rel=0.02)


def test_stereo_downmix_is_the_channel_mean_and_does_not_clip(tmp_path):
    loud = tone(1.0, freq=500.0, amplitude=0.9)
    x = decode_audio(write_wav(tmp_path / "loud.wav", np.stack([loud, loud], axis=1)))
    assert np.abs(x).max() == pytest.approx(0.9, abs=0.01)  # not clipped at 1.0
    assert np.allclose(x, read_wav16k(write_wav(tmp_path / "mono.wav", loud)), atol=1e-4)
    one_sided = decode_audio(write_wav(tmp_path / "left only.wav", np.stack([loud, np.zeros_like(loud)], axis=1)))
    assert np.abs(one_sided).max() == pytest.approx(0.45, abs=0.01)


CODECS = [
    ("tone.flac", ()),
    ("tone.mp3", ()),
    ("vorbis.ogg", ("-c:a", "libvorbis")),
    ("tone.opus", ()),
    ("opus.ogg", ("-c:a", "libopus")),
    ("recording.webm", ("-c:a", "libopus")),  # what a browser's MediaRecorder produces
    ("tone.m4a", ()),
    ("tone.aac", ()),  # raw ADTS: no edit list, so AAC priming and frame padding stay (~72 ms)
]


@pytest.mark.parametrize("name,args", CODECS, ids=[c[0] for c in CODECS])
def test_compressed_formats_decode(tone_wav, tmp_path, name, args):
    path = ffmpeg_convert(tone_wav, tmp_path / name, *args)
    x = decode_audio(path)
    assert_decoded(x)
    source = read_wav16k(tone_wav)
    assert abs(len(x) - len(source)) / SR < 0.1
    assert abs(dominant_frequency(x) - 1000.0) < 2.0
    assert rms(x) == pytest.approx(rms(source), rel=0.15)
    if name.endswith(".flac"):  # lossless: identical to the PCM source
        assert np.array_equal(x, source)


def test_float_wav_with_nan_and_inf_at_16k_is_cleaned(tmp_path):
    samples = np.full(SR, 0.5, dtype=np.float32)
    samples[100], samples[200], samples[300] = np.nan, np.inf, -np.inf
    samples[400], samples[500] = 3.0, -2.0
    x = decode_audio(write_float_wav(tmp_path / "nan.wav", samples))
    assert_decoded(x)
    assert len(x) == SR
    assert x[100] == 0.0 and x[200] == 0.0 and x[300] == 0.0
    assert x[400] == 1.0 and x[500] == -1.0
    untouched = np.ones(SR, dtype=bool)
    untouched[[100, 200, 300, 400, 500]] = False
    assert np.all(x[untouched] == 0.5)


def test_float_wav_with_nan_resampled_is_finite(tmp_path):
    # Resampling smears one NaN over ~100 output samples; all must come back finite.
    samples = np.asarray(tone(1.0, freq=300.0, sr=44100), dtype=np.float32)
    samples[1000], samples[2000] = np.nan, np.inf
    x = decode_audio(write_float_wav(tmp_path / "nan44k.wav", samples, sr=44100))
    assert_decoded(x)
    assert abs(len(x) - SR) <= 1


def test_eight_channel_96k_wav(tmp_path):
    mono = tone(1.0, freq=700.0, sr=96000)
    x = decode_audio(write_wav(tmp_path / "surround.wav", np.tile(mono[:, None], (1, 8)), sr=96000))
    assert_decoded(x)
    assert abs(len(x) - SR) <= 1
    assert abs(dominant_frequency(x) - 700.0) < 2.0
    # Eight identical channels mix to the same level (ffmpeg's default would be x4.4, then clipped).
    assert rms(x) == pytest.approx(rms(mono), rel=0.02)
    assert np.abs(x).max() == pytest.approx(0.3, abs=0.01)


def test_video_with_audio_track_decodes_its_audio(tmp_path):
    path = tmp_path / "screen capture.mp4"
    ffmpeg_cli(
        "-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=10",
        "-f", "lavfi", "-i", "sine=frequency=600:duration=2:sample_rate=16000",
        "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path),
    )  # fmt: skip
    x = decode_audio(path)
    assert_decoded(x)
    assert abs(len(x) / SR - 2.0) < 0.1
    assert abs(dominant_frequency(x) - 600.0) < 2.0


def test_video_without_audio_is_refused(tmp_path):
    path = tmp_path / "silent film.mp4"
    ffmpeg_cli("-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=10", "-c:v", "mpeg4", str(path))
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "contains no audio stream")


def test_truncated_mp3_decodes_partially(tone_wav, tmp_path):
    full = ffmpeg_convert(tone_wav, tmp_path / "full.mp3")
    data = full.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    x = decode_audio(cut)
    assert_decoded(x)
    assert 0.5 * SR < len(x) < 2.5 * SR  # about half of the 3 s
    assert abs(dominant_frequency(x) - 1000.0) < 3.0


def test_truncated_wav_decodes_partially(tmp_path):
    full = write_wav(tmp_path / "full.wav", tone(2.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 12000])
    x = decode_audio(cut)
    assert np.array_equal(x, read_wav16k(full)[:12000])


def test_short_click_decodes_unpadded_and_windows_pad_it(tmp_path):
    click = tone(0.05, freq=2000.0)
    assert len(click) == 800
    path = write_wav(tmp_path / "click.wav", click)
    x = decode_audio(path)
    assert len(x) == 800
    windows = split_windows(x)
    assert [len(w) for w in windows] == [8000]
    assert np.array_equal(windows[0][:800], read_wav16k(path))
    assert not windows[0][800:].any()


# ---------------------------------------------------------------------------------------- refusals


def test_missing_file(tmp_path):
    path = tmp_path / "gone.wav"
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "file not found")


def test_directory_is_refused(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "the file is empty")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_bytes_named_wav(tmp_path, seed):
    # Depending on the bytes, ffmpeg fails with "Invalid data found" or (when its mp3 prober claims
    # them) with "Invalid argument": both must read as "not audio".
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "is not an audio file ffmpeg can read")


@pytest.mark.parametrize("repeat", [1, 100])
def test_text_named_mp3(tmp_path, repeat):
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio at all\n" * repeat)
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "is not an audio file ffmpeg can read")


def test_header_only_wav_has_no_samples(tmp_path):
    path = write_wav(tmp_path / "header.wav", np.zeros(0, dtype=np.float32))
    assert path.stat().st_size == 44
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "contains no audio samples")


def test_eleven_minutes_is_too_long(tmp_path):
    path = tmp_path / "lecture recording.wav"
    ffmpeg_cli("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=660", str(path))
    with pytest.raises(AudioTooLongError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "is 11 min 0 s long; the limit is 5 min")


def test_decoding_stops_one_second_past_the_limit(tmp_path, monkeypatch):
    # With the refusal disabled, what comes back shows how much ffmpeg decoded: max_seconds + 1.
    path = tmp_path / "long.wav"
    ffmpeg_cli("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=30", str(path))
    monkeypatch.setattr(audio, "_LENGTH_SLACK_S", 1e6)
    x = decode_audio(path, AudioLimits(max_seconds=10.0))
    assert len(x) == 11 * SR


def test_custom_duration_limit_boundary(tmp_path):
    limits = AudioLimits(max_seconds=2.0)
    at_limit = write_wav(tmp_path / "two.wav", tone(2.0))
    assert len(decode_audio(at_limit, limits)) == 2 * SR
    over = write_wav(tmp_path / "three.wav", tone(3.0))
    with pytest.raises(AudioTooLongError) as info:
        decode_audio(over, limits)
    assert_clear_error(info.value, over, "is 3 s long; the limit is 2 s")


def test_too_large_is_refused_before_decoding(tmp_path):
    # Garbage over the size limit: AudioTooLargeError, not the AudioDecodeError decoding would give.
    path = tmp_path / "huge.wav"
    path.write_bytes(b"\x00junk" * 300)
    with pytest.raises(AudioTooLargeError) as info:
        decode_audio(path, AudioLimits(max_bytes=1000))
    assert_clear_error(info.value, path, "the file is 1.5 KB; the limit is 1000 bytes")
    assert info.value.status == 413


def test_file_at_the_size_limit_is_accepted(tmp_path):
    path = write_wav(tmp_path / "small.wav", tone(0.5))
    size = path.stat().st_size
    assert len(decode_audio(path, AudioLimits(max_bytes=size))) == 8000
    with pytest.raises(AudioTooLargeError):
        decode_audio(path, AudioLimits(max_bytes=size - 1))


# ---------------------------------------------------------------------------------------- file names

AWKWARD_NAMES = [
    "my clip; rm -rf $HOME 'ü' (1).wav",
    "meeting 12:30.wav",  # a colon makes ffmpeg read a bare name as a protocol
    "-starts-with-dash.wav",
    'q?uery#frag%20 "quoted" 录音.wav',
]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_awkward_file_names_decode(tmp_path, name):
    path = write_wav(tmp_path / name, tone(0.6, seed=3))
    assert np.array_equal(decode_audio(path), read_wav16k(path))


def test_awkward_name_appears_in_errors(tmp_path):
    path = tmp_path / AWKWARD_NAMES[0]
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "the file is empty")


def test_relative_path_with_a_colon(tmp_path, monkeypatch):
    # Given to ffmpeg as is, "take2:30.wav" would be read as a URL of the unknown protocol "take2".
    path = write_wav(tmp_path / "take2:30.wav", tone(0.5, seed=5))
    monkeypatch.chdir(tmp_path)
    assert np.array_equal(decode_audio("take2:30.wav"), read_wav16k(path))


def test_playlist_pointing_at_the_network_is_refused(tmp_path):
    path = tmp_path / "playlist.wav"
    path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/seg.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)
    assert_clear_error(info.value, path, "is not an audio file ffmpeg can read")


# ---------------------------------------------------------------------------------------- module hygiene


def test_module_imports_neither_torch_nor_gradio_and_never_prints():
    tree = ast.parse(Path(audio.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "gradio", "transformers", "librosa", "soundfile"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "print" not in calls
    for name in ("decode_audio", "split_windows", "AudioLimits"):
        assert getattr(audio, name).__doc__


def test_debug_log_names_path_and_duration(tmp_path, caplog):
    path = write_wav(tmp_path / "logged.wav", tone(1.5))
    with caplog.at_level("DEBUG", logger="model.audio"):
        decode_audio(path)
    messages = [r.getMessage() for r in caplog.records if r.name == "model.audio"]
    assert any(str(path) in m and "1.50 s" in m for m in messages), messages
    assert all(len(m) < 500 for m in messages)


def test_too_long_reason_without_the_containers_length(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "three.wav", tone(3.0))
    monkeypatch.setattr(audio, "_container_duration", lambda source: None)
    with pytest.raises(AudioTooLongError) as info:
        decode_audio(path, AudioLimits(max_seconds=1.0))
    assert_clear_error(info.value, path, "the audio is longer than the limit of 1 s")
