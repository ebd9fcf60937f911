"""Time grounding: ``<|2.33|>`` tokens become readable times and playable clips of the audio."""

from __future__ import annotations

import wave

import pytest

from app.timestamps import clip_ranges, cut_clips, find_timestamps, format_time, render_timestamps, restore_timestamps
from audio_samples import tone, write_wav


@pytest.mark.parametrize(
    "token, readable",
    [("<|2.33|>", "0:02.33"), ("<|62.5|>", "1:02.5"), ("<|3|>", "0:03"), ("<|0.00|>", "0:00.00"),
     ("<|125.04|>", "2:05.04")],
)
def test_tokens_read_as_minutes_and_seconds(token, readable):
    rendered = render_timestamps(f"at {token}.")
    assert f">{readable}</time>." in rendered
    assert "<|" not in rendered


def test_rendering_round_trips_exactly():
    text = "Speech from <|0.52|> to <|2.3|>, then a beep <|12|><|13.75|>. Not a time: <|en|> <|2.3"
    assert restore_timestamps(render_timestamps(text)) == text
    assert "<|2.3" in render_timestamps(text)  # an unfinished token (mid-stream) is left alone


def test_find_and_pair_timestamps():
    assert find_timestamps("a <|1.5|> b <|2.25|> c <|4|>") == [1.5, 2.25, 4.0]
    assert clip_ranges([1.5, 2.25, 4.0], duration=10) == [(1.5, 2.25), (4.0, 7.0)]
    assert clip_ranges([3.0, 1.0], duration=10) == [(1.0, 3.0)]  # a backwards pair is swapped
    assert clip_ranges([8.0, 12.0, 20.0, 21.0], duration=10) == [(8.0, 10)]  # cut to the audio; outside dropped
    assert format_time("75", ".5") == "1:15.5"


def test_cut_clips_writes_playable_wavs_of_the_named_ranges(tmp_path):
    source = write_wav(tmp_path / "beep.wav", tone(5.0, 440.0, seed=1))
    clips = cut_clips("The beep is from <|1.00|> to <|2.50|>, again at <|4.2|>.", str(source), tmp_path / "clips")
    assert [(c.start, c.end) for c in clips] == [(1.0, 2.5), (4.2, 5.0)]
    assert clips[0].label == "0:01.00 – 0:02.50"
    for clip in clips:
        with wave.open(str(clip.path)) as w:
            assert w.getframerate() == 16000
            assert abs(w.getnframes() / 16000 - (clip.end - clip.start)) < 0.01
    assert cut_clips("no times here", str(source), tmp_path / "clips") == []
