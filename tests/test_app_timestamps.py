"""Time grounding: ``<|2.33|>`` tokens become readable times and playable clips of the audio."""

from __future__ import annotations

import wave

import pytest

from app.timestamps import clip_ranges, cut_clips, find_timestamps, render_timestamps, restore_timestamps
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
    assert render_timestamps("<|75.5|>") == '<time datetime="PT75.5S">1:15.5</time>'


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


def test_times_in_a_reply_about_windowed_audio_are_shown_at_the_file_s_time_and_restore_to_the_tokens():
    from app.timestamps import find_timestamps, render_timestamps, restore_timestamps
    from model.audio import window_count

    reply = "<|0.00|>one<|29.50|><|0.40|>two<|12.00|><|3.00|>three<|4.25|><|1.00|>"
    assert window_count(75 * 16000) == 3 and window_count(30 * 16000) == 1 and window_count(2 * 16000) == 1
    # Backward jumps move to the next window, never past the last one.
    assert find_timestamps(reply, windows=3) == [0.0, 29.5, 30.4, 42.0, 63.0, 64.25, 61.0]
    shown = render_timestamps(reply, windows=3)
    assert '<time datetime="PT30.40S" data-token="0.40">0:30.40</time>' in shown
    assert '<time datetime="PT64.25S" data-token="4.25">1:04.25</time>' in shown
    assert restore_timestamps(shown) == reply
    assert find_timestamps(reply) == [0.0, 29.5, 0.4, 12.0, 3.0, 4.25, 1.0]  # one window: as written


def test_a_range_named_twice_gets_one_clip():
    from app.timestamps import clip_ranges

    assert clip_ranges([13.89, 28.54, 13.89, 28.54], 30.0) == [(13.89, 28.54)]
