"""Voice mode's voice activity detection (model/vad.py) on prepared audio: speech, silence, noise, music.

The speech is espeak-ng's, placed at known times with known pauses; the real Silero VAD model (inside the
silero-vad wheel) judges it. Cut points are checked against where the speech's samples really are.
"""

from __future__ import annotations

import numpy as np
import pytest

from audio_samples import speak, trim
from model.audio import SAMPLE_RATE
from model.vad import FRAME, SpeechStarted, Utterance, VadSettings, VoiceDetector, find_utterances, load_model

SR = SAMPLE_RATE
#: How far a detected start or end may lie from the speech's first or last loud sample (Silero judges
#: 32 ms frames, and its probability rises and falls over a frame or two).
START_SLACK_S = 0.12
END_SLACK_S = 0.25


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> list[np.ndarray]:
    out = tmp_path_factory.mktemp("vad")
    texts = ["Hello there, what is the weather like today in the city?",
             "Tell me a short story about a cat.",
             "Please stop."]
    return [trim(speak(t, out / f"s{i}")) for i, t in enumerate(texts)]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def room(seconds: float, level: float = 0.003, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def place(*parts: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The parts joined; the (start, end) in seconds of every part that is speech (odd positions)."""
    spans, t = [], 0
    for i, part in enumerate(parts):
        if i % 2:
            spans.append((t / SR, (t + len(part)) / SR))
        t += len(part)
    return np.concatenate(parts).astype(np.float32), spans


def melody(seconds: float) -> np.ndarray:
    """Music: a scale of notes with five harmonics each, a quarter of a second per note."""
    notes = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3]
    n = SR // 4
    t = np.arange(n) / SR
    bars = [sum(0.2 / k * np.sin(2 * np.pi * f * k * t) for k in range(1, 6)) * np.hanning(n) for f in notes]
    music = np.concatenate(bars * int(np.ceil(seconds / 2)))
    return music[: int(seconds * SR)].astype(np.float32)


def chords(seconds: float) -> np.ndarray:
    """Music: a sustained C major chord with a slow tremolo."""
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.15 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) for f in (261.6, 329.6, 392.0)).astype(np.float32)


def assert_cut(u: Utterance, span: tuple[float, float], pad: float = VadSettings.pad_ms / 1000) -> None:
    start, end = span
    assert abs(u.speech_start - start) <= START_SLACK_S, (u.speech_start, start)
    assert abs(u.speech_end - end) <= END_SLACK_S, (u.speech_end, end)
    # The clip is the speech and pad_ms around it: the silence beyond is trimmed.
    assert u.start == pytest.approx(max(0.0, u.speech_start - pad), abs=1 / SR)
    assert u.end == pytest.approx(u.speech_end + pad, abs=1 / SR)
    assert len(u.samples) == round((u.end - u.start) * SR)


def test_two_sentences_with_a_pause_are_two_utterances_cut_where_the_speech_is(model, sentences):
    audio, spans = place(silence(0.5), sentences[0], silence(1.0), sentences[1], silence(1.5))
    found = find_utterances(audio, model=model)
    assert len(found) == 2
    for u, span in zip(found, spans):
        assert_cut(u, span)
        # The clip holds exactly the audio at those times.
        assert np.array_equal(u.samples, audio[round(u.start * SR): round(u.end * SR)])


def test_a_pause_shorter_than_pause_ms_does_not_end_the_utterance(model, sentences):
    audio, spans = place(room(0.5), sentences[0], room(0.4, seed=1), sentences[1], room(1.2, seed=2))
    found = find_utterances(audio, model=model)
    assert len(found) == 1
    assert_cut(found[0], (spans[0][0], spans[1][1]))
    # The same audio with a shorter pause_ms splits at the 0.4 s pause.
    split = find_utterances(audio, VadSettings(pause_ms=300), model=model)
    assert len(split) == 2
    assert split[0].speech_end <= spans[1][0] and split[1].speech_start >= spans[0][1] - END_SLACK_S


@pytest.mark.parametrize("name, make", [
    ("silence", silence),
    ("room noise", lambda s: room(s, level=0.01)),
    ("white noise", lambda s: room(s, level=0.1)),
    ("melody", melody),
    ("chords", chords),
])
def test_no_utterance_in_silence_noise_or_music(model, name, make):
    audio = make(6.0)
    assert find_utterances(audio, model=model) == [], name
    detector = VoiceDetector(model=model)
    assert not any(isinstance(e, SpeechStarted) for e in detector.feed(audio)), name


def test_speech_over_music_is_found(model, sentences):
    """Someone talking while music plays quietly: the speech is the utterance."""
    speech, spans = place(silence(1.0), sentences[1], silence(1.5))
    audio = speech + 0.3 * melody(len(speech) / SR)
    found = find_utterances(audio, model=model)
    assert len(found) == 1
    assert_cut(found[0], spans[0])


def test_streamed_in_chunks_is_the_same_as_whole(model, sentences):
    audio, _ = place(silence(0.3), sentences[0], silence(1.0), sentences[2], silence(1.0))
    whole = find_utterances(audio, model=model)
    for chunk in (4000, 777, FRAME):
        pieces = find_utterances(audio, model=model, chunk=chunk)
        assert [(u.start, u.end) for u in pieces] == [(u.start, u.end) for u in whole], chunk
        assert all(np.array_equal(a.samples, b.samples) for a, b in zip(pieces, whole))


def test_speech_started_comes_once_speech_has_lasted_min_speech_ms(model, sentences):
    audio, spans = place(silence(1.0), sentences[1], silence(1.2))
    detector = VoiceDetector(model=model)
    seen: list[tuple[float, object]] = []
    step = SR // 4  # the page's quarter-second pieces
    for i in range(0, len(audio), step):
        seen.extend(((i + step) / SR, e) for e in detector.feed(audio[i:i + step]))
    kinds = [type(e).__name__ for _, e in seen]
    assert kinds == ["SpeechStarted", "Utterance"]
    (heard_at, started), (ended_at, utterance) = seen
    assert abs(started.at - spans[0][0]) <= START_SLACK_S
    # Known within a piece of min_speech_ms after the speech began; the end within a piece of the pause.
    assert heard_at - spans[0][0] <= VadSettings.min_speech_ms / 1000 + 0.25 + START_SLACK_S
    assert ended_at - utterance.speech_end <= VadSettings.pause_ms / 1000 + 0.25 + FRAME / SR
    assert not detector.hearing


def test_a_short_sound_is_not_speech(model, sentences):
    blip = sentences[2][: int(0.12 * SR)]  # 120 ms of a word
    audio, _ = place(silence(1.0), blip, silence(1.5))
    assert find_utterances(audio, model=model) == []


def test_speech_without_a_pause_is_cut_at_max_utterance_s(model, sentences):
    talk = np.concatenate([sentences[0], sentences[1], sentences[0]])  # about 9 s without a pause
    audio, spans = place(silence(0.5), talk, silence(1.2))
    found = find_utterances(audio, VadSettings(max_utterance_s=4.0), model=model)
    assert len(found) >= 2
    assert all(u.speech_end - u.speech_start <= 4.0 + 1e-6 for u in found)
    assert found[0].speech_start == pytest.approx(spans[0][0], abs=START_SLACK_S)
    assert found[-1].speech_end == pytest.approx(spans[0][1], abs=END_SLACK_S)
    # Nothing is lost between the pieces.
    for a, b in zip(found, found[1:]):
        assert b.speech_start <= a.speech_end + FRAME / SR


def test_speech_still_going_when_the_stream_ends_is_flushed(model, sentences):
    audio, spans = place(silence(0.5), sentences[0], silence(0.2))
    detector = VoiceDetector(model=model)
    assert not [e for e in detector.feed(audio) if isinstance(e, Utterance)]
    assert detector.hearing
    (u,) = detector.flush()
    assert abs(u.speech_start - spans[0][0]) <= START_SLACK_S
    assert u.end <= len(audio) / SR


def test_memory_stays_bounded_while_nobody_talks(model):
    detector = VoiceDetector(model=model)
    for seed in range(40):  # 40 s of room noise
        detector.feed(room(1.0, seed=seed))
    kept = sum(len(k) for k in detector._kept)
    assert kept <= VadSettings.pad_ms / 1000 * SR + FRAME


@pytest.mark.parametrize("bad", [dict(threshold=0.0), dict(threshold=1.0), dict(pause_ms=10), dict(pad_ms=-1),
                                 dict(min_speech_ms=-5), dict(max_utterance_s=0.5)])
def test_settings_out_of_range_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        VadSettings(**bad)
