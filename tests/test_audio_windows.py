"""model.audio.split_windows / window_count / AudioLimits: cutting decoded samples into the windows the encoder sees."""

from __future__ import annotations

import numpy as np
import pytest

from model.audio import SAMPLE_RATE, AudioLimits, split_windows, window_count

SR = SAMPLE_RATE


def test_split_75_seconds():
    x = np.random.default_rng(0).uniform(-1, 1, 75 * SR).astype(np.float32)
    windows = split_windows(x)
    assert [len(w) for w in windows] == [480000, 480000, 240000]
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in windows)
    assert np.array_equal(np.concatenate(windows)[: len(x)], x)


def test_split_exactly_60_seconds():
    x = np.ones(60 * SR, dtype=np.float32)
    assert [len(w) for w in split_windows(x)] == [480000, 480000]


def test_split_60_2_seconds_pads_the_last_window():
    x = np.random.default_rng(1).uniform(-1, 1, int(60.2 * SR)).astype(np.float32)
    windows = split_windows(x)
    assert [len(w) for w in windows] == [480000, 480000, 8000]
    assert np.array_equal(windows[2][:3200], x[960000:])
    assert not windows[2][3200:].any()
    assert np.array_equal(np.concatenate(windows)[: len(x)], x)


def test_split_short_and_edge_lengths():
    assert [len(w) for w in split_windows(np.ones(1, np.float32))] == [8000]
    assert [len(w) for w in split_windows(np.ones(7999, np.float32))] == [8000]
    assert [len(w) for w in split_windows(np.ones(8000, np.float32))] == [8000]
    assert [len(w) for w in split_windows(np.ones(8001, np.float32))] == [8001]
    assert [len(w) for w in split_windows(np.ones(480001, np.float32))] == [480000, 8000]
    assert split_windows(np.zeros(0, np.float32)) == []


def test_split_custom_limits():
    limits = AudioLimits(window_seconds=1.0, min_seconds=0.25)
    x = np.arange(int(2.1 * SR), dtype=np.float32)
    assert [len(w) for w in split_windows(x, limits)] == [16000, 16000, 4000]


def test_split_returns_copies_not_views():
    x = np.ones(40 * SR, dtype=np.float32)
    windows = split_windows(x)
    windows[0][:] = 0.0
    assert x.min() == 1.0


def test_split_rejects_multichannel():
    with pytest.raises(ValueError, match="1-D"):
        split_windows(np.zeros((100, 2), np.float32))


def test_limits_validation():
    assert AudioLimits() == AudioLimits(300.0, 200 * 1024 * 1024, 30.0, 0.5)
    with pytest.raises(ValueError):
        AudioLimits(min_seconds=31.0)
    with pytest.raises(ValueError):
        AudioLimits(max_seconds=0)
    with pytest.raises(ValueError):
        AudioLimits(max_bytes=-1)


def test_window_count_is_the_number_of_windows_split_windows_cuts():
    for n in (0, 1, 1599, 16000, 480000 - 1, 480000, 480001, 960000, 75 * 16000):
        assert window_count(n) == len(split_windows(np.zeros(n, dtype=np.float32))), n
