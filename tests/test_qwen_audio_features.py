"""model.families.qwen_audio.features: Qwen-Audio's log-mel and audio token counts, against the reference.

The fixture (tests/fixtures/qwen_audio_reference, produced by the original remote code) records, per
case, the decoded clips' lengths and token counts and, for the first audio of each case, statistics
of the log-mel frames the encoder was fed. Decoding with ``pcm="s16"`` and extracting here must
reproduce them.
"""

from __future__ import annotations

import ast
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_samples import tone, write_wav  # tests/ is on sys.path (conftest)
from model.audio import decode_audio
from model.families.qwen_audio import features
from model.families.qwen_audio.features import (
    HOP,
    N_FFT,
    N_SAMPLES,
    AudioTokenCounts,
    LogMelExtractor,
    compute_mel_filters,
    load_mel_filters,
    token_counts,
)
from qwen_audio_fixture import FIXTURE, audio, cases

MEL_CASES = [c for c in cases() if (c.get("encoder_first_audio") or {}).get("mel_first_audio")]
AUDIO_CASES = [c for c in cases() if c.get("audio_files")]

#: Decimals the fixture rounds each statistic to (checked by test_fixture_rounding_is_as_assumed).
DECIMALS = {"mean": 6, "std": 6, "frame_0": 5, "per_frame_mean": 4}
#: Float32 arithmetic (other thread counts, another CPU's vector units and so FFT order) on top of the
#: fixture's rounding. Single log-mel values (frame 0) move most: 2.3e-6 on one Xeon VM whose means moved
#: less than 1e-7; float32 decoding moves them by 2e-3 and the mean by 6e-6 (caught: see below).
COMPUTE_SLACK = {"mean": 1e-6, "std": 1e-6, "frame_0": 1e-5, "per_frame_mean": 2e-6}


def tolerance(field: str) -> float:
    """Half a unit of the stored last decimal, plus the arithmetic's slack."""
    return 0.5 * 10.0 ** -DECIMALS[field] + COMPUTE_SLACK[field]


def decimals(value: float) -> int:
    return max(0, -Decimal(repr(value)).as_tuple().exponent)


@pytest.fixture(scope="module")
def extractor() -> LogMelExtractor:
    return LogMelExtractor(load_mel_filters(FIXTURE / "tiny-chat"))


def mel_mismatches(mel: torch.Tensor, expected: dict) -> dict[str, float]:
    """Each statistic's distance from the fixture minus its tolerance (> 0: outside it)."""
    frames = mel[:, : expected["frames_fed_to_encoder"]].double()
    got = {
        "mean": frames.mean().item(),
        "std": frames.std().item(),  # torch's default (unbiased), as the fixture's producer used
        "frame_0": frames[:, 0].numpy(),
        "per_frame_mean": frames.mean(dim=0).numpy(),
    }
    return {k: float(np.max(np.abs(np.asarray(got[k]) - np.asarray(expected[k])))) - tolerance(k) for k in got}


# ------------------------------------------------------------------------------------- log-mel


def test_fixture_has_mel_statistics_for_every_case_with_audio():
    assert len(MEL_CASES) >= 10
    assert {c["name"] for c in MEL_CASES} == {c["name"] for c in AUDIO_CASES}


def test_fixture_rounding_is_as_assumed():
    # The tolerances rest on these decimals: no value may carry more, and some must use them all.
    for field, places in DECIMALS.items():
        used = []
        for case in MEL_CASES:
            values = case["encoder_first_audio"]["mel_first_audio"][field]
            used += [decimals(v) for v in (values if isinstance(values, list) else [values])]
        assert max(used) == places, field


@pytest.mark.parametrize("case", MEL_CASES, ids=[c["name"] for c in MEL_CASES])
def test_mel_of_first_audio_matches_the_original(case, extractor):
    expected = case["encoder_first_audio"]["mel_first_audio"]
    mel = extractor(decode_audio(audio(case["audio_files"][0]["file"]), pcm="s16"))
    assert isinstance(mel, torch.Tensor)
    assert mel.dtype == torch.float32 and mel.device.type == "cpu"
    assert list(mel.shape) == expected["full_shape"] == [80, 3000]
    assert len(expected["frame_0"]) == 80
    assert len(expected["per_frame_mean"]) == expected["frames_fed_to_encoder"]
    outside = {k: v for k, v in mel_mismatches(mel, expected).items() if v > 0}
    assert not outside, outside


def test_the_mel_check_catches_float32_decoding(extractor):
    # The same check on the stereo mp3 decoded the default (f32) way fails: the fixture tells the
    # two decodings apart, so passing above means the original's samples were used.
    case = next(c for c in MEL_CASES if c["audio_files"][0]["file"].endswith(".mp3"))
    expected = case["encoder_first_audio"]["mel_first_audio"]
    mel = extractor(decode_audio(audio(case["audio_files"][0]["file"])))
    mismatches = mel_mismatches(mel, expected)
    assert mismatches["frame_0"] > 0 and mismatches["mean"] > 0


def test_mel_of_over_30_seconds_is_the_mel_of_its_first_30(extractor):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 35 * 16000).astype(np.float32)
    mel = extractor(x)
    assert list(mel.shape) == [80, 3000]
    assert torch.equal(mel, extractor(x[:N_SAMPLES]))
    assert not torch.equal(mel, extractor(x[-N_SAMPLES:]))


def test_mel_of_a_short_clip_is_its_zero_padded_mel(extractor):
    x = np.random.default_rng(1).uniform(-0.5, 0.5, 100).astype(np.float32)
    mel = extractor(x)
    assert list(mel.shape) == [80, 3000] and torch.isfinite(mel).all()
    padded = np.zeros(N_SAMPLES, dtype=np.float32)
    padded[:100] = x
    assert torch.equal(mel, extractor(padded))
    silent = extractor(np.zeros(0, dtype=np.float32))
    # All-zero audio: log10(1e-10) everywhere, then (-10 + 4) / 4.
    assert torch.equal(silent, torch.full((80, 3000), -1.5))


def test_mel_matches_an_independent_float64_computation(extractor):
    # Whisper's recipe written out with numpy (reflect-padded frames, periodic Hann, rFFT), float64.
    x = tone(1.3, freq=700.0, seed=3)
    audio64 = np.zeros(N_SAMPLES)
    audio64[: len(x)] = x
    padded = np.pad(audio64, N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:3000]
    power = np.abs(np.fft.rfft(frames * window, axis=1)).T ** 2
    log_spec = np.log10(np.maximum(load_mel_filters(FIXTURE / "tiny-chat").astype(np.float64) @ power, 1e-10))
    reference = (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    assert np.abs(extractor(x).numpy() - reference).max() < 1e-4


def test_extractor_rejects_bad_shapes():
    with pytest.raises(ValueError, match="201"):
        LogMelExtractor(np.zeros((80, 200), dtype=np.float32))
    extractor = LogMelExtractor(np.zeros((80, 201), dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        extractor(np.zeros((2, 16000), dtype=np.float32))


# -------------------------------------------------------------------------------- token counts


def test_token_counts_match_every_audio_file_of_the_fixture():
    checked = 0
    for case in AUDIO_CASES:
        for entry in case["audio_files"]:
            counts = token_counts(entry["n_samples_16k"])
            assert counts == AudioTokenCounts(
                entry["samples_used"], entry["mel_len"], entry["len_after_cnn"], entry["n_audio_tokens"]
            ), (case["name"], entry["file"])
            assert counts.span_tokens == entry["span_tokens"]
            checked += 1
    assert checked == 13  # 11 cases with audio, two of them with two clips


def test_token_counts_match_every_audio_span_of_the_fixture():
    checked = 0
    for case in AUDIO_CASES:
        samples = {e["file"]: e["n_samples_16k"] for e in case["audio_files"]}
        for span in case["audio_spans"]:
            counts = token_counts(samples[span["url"]])
            assert counts.span_tokens == span["span_tokens"] == span["end"] - span["start"] + 1
            assert counts.n_tokens == span["n_audio_tokens"]
            assert [counts.len_after_cnn, counts.n_tokens] == span["input_audio_lengths"]
            checked += 1
    assert checked == 13  # 11 cases with audio, two of them with two clips


def test_token_counts_of_decoded_fixture_audio(extractor):
    entry = AUDIO_CASES[0]["audio_files"][0]
    x = decode_audio(audio(entry["file"]), pcm="s16")
    assert token_counts(len(x)).n_tokens == entry["n_audio_tokens"]


def test_clips_over_30_seconds_are_cut_to_480000_samples(tmp_path):
    thirty = AudioTokenCounts(samples_used=480000, mel_len=3000, len_after_cnn=1500, n_tokens=750)
    assert token_counts(480000) == thirty
    assert token_counts(480001) == thirty
    assert token_counts(35 * 16000) == thirty
    assert token_counts(479999) == AudioTokenCounts(479999, 2999, 1500, 750)  # (2998 // 2 + 1 = 1500)
    long_clip = decode_audio(write_wav(tmp_path / "thirty-one seconds.wav", tone(31.0)), pcm="s16")
    assert len(long_clip) == 31 * 16000
    assert token_counts(len(long_clip)) == thirty
    assert thirty.span_tokens == 752


@pytest.mark.parametrize(
    "n_samples,expected",
    [
        # The original's arithmetic by hand, Python floor division on negatives included:
        (100, (100, 0, 0, 0)),  # mel 100 // 160 = 0; cnn (0 - 1) // 2 + 1 = 0; tokens (0 - 2) // 2 + 1 = 0
        (0, (0, 0, 0, 0)),
        (159, (159, 0, 0, 0)),
        (160, (160, 1, 1, 0)),  # cnn (1 - 1) // 2 + 1 = 1; tokens (1 - 2) // 2 + 1 = 0
        (320, (320, 2, 1, 0)),  # cnn (2 - 1) // 2 + 1 = 1
        (480, (480, 3, 2, 1)),  # cnn (3 - 1) // 2 + 1 = 2; tokens (2 - 2) // 2 + 1 = 1
        (800, (800, 5, 3, 1)),  # cnn 4 // 2 + 1 = 3; tokens 1 // 2 + 1 = 1
        (960, (960, 6, 3, 1)),
        (1120, (1120, 7, 4, 2)),  # cnn 6 // 2 + 1 = 4; tokens 2 // 2 + 1 = 2
        (8000, (8000, 50, 25, 12)),  # 0.5 s: cnn 49 // 2 + 1 = 25; tokens 23 // 2 + 1 = 12
    ],
)
def test_token_counts_of_short_clips_by_hand(n_samples, expected):
    counts = token_counts(n_samples)
    assert (counts.samples_used, counts.mel_len, counts.len_after_cnn, counts.n_tokens) == expected
    assert counts.span_tokens == expected[3] + 2


@pytest.mark.parametrize("bad", [-1, 1.5, "160", True])
def test_token_counts_rejects_what_is_not_a_sample_count(bad):
    with pytest.raises((ValueError, TypeError)):
        token_counts(bad)


# -------------------------------------------------------------------------------- filter bank


def test_load_mel_filters_from_a_checkpoint_or_the_file():
    file = FIXTURE / "tiny-chat" / "mel_filters.npz"
    filters = load_mel_filters(FIXTURE / "tiny-chat")
    assert filters.shape == (80, 201) and filters.dtype == np.float32
    with np.load(file) as raw:
        assert np.array_equal(filters, raw["mel_80"])
    assert np.array_equal(load_mel_filters(file), filters)
    assert np.array_equal(load_mel_filters(FIXTURE / "tiny-base"), filters)


def test_librosa_filters_equal_the_checkpoints():
    computed = compute_mel_filters()
    shipped = load_mel_filters(FIXTURE / "tiny-chat")
    assert computed.dtype == np.float32 and computed.shape == (80, 201)
    # With librosa 0.11 the difference is exactly 0; allow float32 rounding noise of other versions.
    assert float(np.abs(computed - shipped).max()) <= 1e-7
    assert compute_mel_filters(128).shape == (128, 201)


def write_bad_filters(checkpoint: Path, kind: str) -> Path:
    """A checkpoint folder whose mel_filters.npz is broken in the way ``kind`` says; returns the path to load."""
    file = checkpoint / "mel_filters.npz"
    if kind == "missing":
        return checkpoint
    if kind == "garbage bytes":
        file.write_bytes(b"PK\x03\x04 garbage" * 50)  # looks like a zip, is not one
    elif kind == "text":
        file.write_text("no filters here\n")
    elif kind == "bare npy":
        with open(file, "wb") as f:
            np.save(f, np.zeros((80, 201), dtype=np.float32))
    elif kind == "wrong key":
        np.savez(file, mel_128=np.zeros((128, 201), dtype=np.float32))
    elif kind == "wrong shape":
        np.savez(file, mel_80=np.zeros((80, 200), dtype=np.float32))
    elif kind == "nan":
        np.savez(file, mel_80=np.full((80, 201), np.nan, dtype=np.float32))
    else:
        raise AssertionError(kind)
    return checkpoint


BAD_FILTER_FILES = {
    "missing": "not found",
    "garbage bytes": "not a readable",
    "text": "not a readable",
    "bare npy": "not an .npz",
    "wrong key": "has no 'mel_80'",
    "wrong shape": "shape [80, 200]",
    "nan": "finite",
}


@pytest.mark.parametrize("kind", list(BAD_FILTER_FILES))
def test_bad_filter_files_are_a_value_error_naming_the_file(tmp_path, kind):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    with pytest.raises(ValueError) as info:
        load_mel_filters(write_bad_filters(checkpoint, kind))
    message = str(info.value)
    assert message.startswith(str(checkpoint / "mel_filters.npz") + ": ") and BAD_FILTER_FILES[kind] in message, message


def test_truncated_npz_is_a_value_error(tmp_path):
    good = (FIXTURE / "tiny-chat" / "mel_filters.npz").read_bytes()
    assert zipfile.is_zipfile(FIXTURE / "tiny-chat" / "mel_filters.npz")
    path = tmp_path / "mel_filters.npz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="mel_filters.npz"):
        load_mel_filters(tmp_path)


# -------------------------------------------------------------------------------- module hygiene


def test_module_has_no_gradio_and_imports_torch_only_inside_functions():
    tree = ast.parse(Path(features.__file__).read_text(encoding="utf-8"))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    everywhere = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert "gradio" not in everywhere and "transformers" not in everywhere
    assert not top_level & {"torch", "librosa", "gradio"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "print" not in calls
    for name in ("load_mel_filters", "compute_mel_filters", "token_counts", "LogMelExtractor", "AudioTokenCounts"):
        assert getattr(features, name).__doc__
