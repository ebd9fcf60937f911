"""Transcription of long recordings: windows cut at pauses, the streamed decoding, the service's job and
OpenAI's audio API (``/v1/audio/transcriptions`` and ``/translations``) through the official client.

Spoken test audio is made with espeak-ng (sentences joined by pauses of known place and length);
everything else with numpy. The model is the tiny random checkpoint: its words are gibberish, but
greedy decoding makes every segment comparable with the worker's own reply to that window alone.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from app.config import DemoConfig
from app.demo import build_demo
from app.openai_api import api_routes
from app.service import BusyError, ChatService, Failed
from app.transcription import Progress, Segment, SegmentText, Transcribed, instruction, to_srt, to_vtt
from app_fixtures import serving
from audio_samples import ffmpeg_convert, speak, tone, trim, write_wav
from model import GenerationParams
from model.audio import SAMPLE_RATE, AudioLimits, decode_audio, stream_audio
from model.errors import AudioDecodeError, AudioTooLongError, UserFacingError
from model.pauses import PauseWindows, quietest_point

SR = SAMPLE_RATE
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Seven silver swans swam slowly across the wide and windy lake this morning.",
    "Please remember to bring your notebook and a pencil to the meeting tomorrow.",
    "A small red boat drifted past the old stone bridge as the sun went down.",
    "Every evening the baker sells warm bread and sweet cakes to the neighbours.",
    "The children played football in the park until it was too dark to see.",
]


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> tuple[Path, list[tuple[float, float]]]:
    """About 80 s of speech: sentences repeated and joined by 0.7 s pauses of room noise (-50 dB), written
    as a WAV; returns it with the pauses' (start, end) times. Word gaps inside the sentences are far
    shorter than the pauses."""
    d = tmp_path_factory.mktemp("talk")
    rng = np.random.default_rng(7)
    spoken = [trim(speak(s, d / f"s{i}")) for i, s in enumerate(SENTENCES)]
    parts, pauses, t = [], [], 0.0
    for i in range(14):
        clip = spoken[i % len(spoken)]
        parts.append(clip)
        t += len(clip) / SR
        if t > 80:
            break
        gap = (0.003 * rng.standard_normal(int(0.7 * SR))).astype(np.float32)
        parts.append(gap)
        pauses.append((t, t + len(gap) / SR))
        t += len(gap) / SR
    samples = np.concatenate(parts)
    return write_wav(d / "talk.wav", samples), pauses


def in_a_pause(t: float, pauses: list[tuple[float, float]]) -> bool:
    return any(start <= t <= end for start, end in pauses)


# ------------------------------------------------------------------------------------------ windows


def test_windows_end_in_the_pauses_between_sentences(talk):
    path, pauses = talk
    samples = decode_audio(path)
    windows = PauseWindows().cut(samples)
    assert len(windows) >= 3
    assert np.array_equal(np.concatenate([w.samples for w in windows]), samples)  # every sample, in order
    for before, after in zip(windows, windows[1:]):
        assert after.start == before.start + len(before.samples)
        assert len(before.samples) <= 30 * SR
        assert in_a_pause(before.end_s, pauses), (before.end_s, pauses)  # never inside a sentence
        assert len(before.samples) >= 22 * SR  # within the last 8 s before the 30 s mark
    assert not any(w.silent for w in windows)


def test_without_pauses_windows_still_hold_at_most_30_s_and_cover_everything():
    t = np.arange(95 * SR) / SR
    music = (0.3 * np.sin(2 * np.pi * 440 * t) * (0.7 + 0.3 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    windows = PauseWindows().cut(music)
    assert [w.start for w in windows] == [0] + list(np.cumsum([len(w.samples) for w in windows])[:-1])
    assert all(22 * SR <= len(w.samples) <= 30 * SR for w in windows[:-1])
    assert sum(len(w.samples) for w in windows) == len(music)
    # The cut is the quietest point of the search range: the tremolo's trough nearest the 30 s mark.
    first_end = len(windows[0].samples) / SR
    assert abs((0.7 + 0.3 * np.sin(2 * np.pi * 0.5 * first_end)) - 0.4) < 0.05


@pytest.mark.parametrize("chunk_seconds", [0.37, 1.0, 10.0, 45.0])
def test_chunked_input_gives_the_same_windows(talk, chunk_seconds):
    samples = decode_audio(talk[0])
    whole = PauseWindows().cut(samples)
    step = int(chunk_seconds * SR)
    chunked = list(PauseWindows().windows(samples[i : i + step] for i in range(0, len(samples), step)))
    assert [(w.start, len(w.samples)) for w in chunked] == [(w.start, len(w.samples)) for w in whole]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(chunked, whole))


def test_silent_windows_are_marked():
    silence = np.zeros(65 * SR, dtype=np.float32)
    speech = tone(10.0, 300.0, seed=1)
    windows = PauseWindows().cut(np.concatenate([silence, speech]))
    assert [w.silent for w in windows] == [True, True, False]


def test_quietest_point_prefers_the_latest_of_equal_stretches():
    x = np.ones(10 * SR, dtype=np.float32)
    x[2 * SR : 3 * SR] = 0
    x[6 * SR : 7 * SR] = 0
    cut = quietest_point(x, 0, len(x), 320, 15)
    assert 6 * SR <= cut <= 7 * SR


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match="search_seconds"):
        PauseWindows(window_seconds=30, search_seconds=30)


def test_memory_stays_flat_however_long_the_recording():
    """Two hours through the windowing as 10 s chunks (as the decoder hands them): what is allocated at
    once stays a few windows' worth; the whole recording would be 461 MB of float32."""

    def chunks(minutes: int):
        rng = np.random.default_rng(0)
        block = (0.2 * rng.standard_normal(10 * SR)).astype(np.float32)
        block[-SR // 2 :] *= 0.01  # a pause every 10 s
        for _ in range(minutes * 6):
            yield block.copy()

    peaks = {}
    for minutes in (10, 120):
        tracemalloc.start()
        count = sum(1 for _ in PauseWindows().windows(chunks(minutes)))
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count >= minutes * 2
    assert peaks[120] < 20 * 2**20, peaks  # 2 h: under 20 MB at any moment
    assert peaks[120] < 1.5 * peaks[10], peaks  # and no more than for 10 minutes


# ------------------------------------------------------------------------------ streamed decoding


@pytest.mark.parametrize("pcm", ["f32", "s16"])
def test_streamed_decoding_equals_the_whole_decoding(talk, tmp_path, pcm):
    sources = {"wav": talk[0], "mp3": ffmpeg_convert(talk[0], tmp_path / "talk.mp3"),
               "webm": ffmpeg_convert(talk[0], tmp_path / "talk.webm", "-c:a", "libopus")}
    for name, path in sources.items():
        chunks = list(stream_audio(path, pcm=pcm, chunk_seconds=7.0))
        assert all(c.dtype == np.float32 and len(c) >= 7 * SR for c in chunks[:-1]), name
        assert np.array_equal(np.concatenate(chunks), decode_audio(path, pcm=pcm)), name


def test_streamed_decoding_refuses_bad_files_before_the_first_chunk(tmp_path):
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError, match=r"^noise.wav: is not an audio file"):
        next(stream_audio(noise))
    with pytest.raises(AudioDecodeError, match="file not found"):
        next(stream_audio(tmp_path / "gone.wav"))
    long = write_wav(tmp_path / "three.wav", tone(3.0))
    with pytest.raises(AudioTooLongError, match="the limit is 2 s"):
        list(stream_audio(long, AudioLimits(max_seconds=2.0), chunk_seconds=0.5))


# ------------------------------------------------------------------------------------ the service


def window_reply(worker, job, window) -> str:
    return worker.generate(job.messages(window), job.params).strip()


@pytest.fixture
def service(worker):
    return ChatService(worker, DemoConfig(examples=False, stream_interval_ms=0))


def test_each_segment_is_the_models_reply_to_its_window_alone(service, worker, talk):
    path, _ = talk
    job = service.transcribe(str(path), language="en", settings={"max_new_tokens": 12})
    events = list(job.events())
    segments = [e for e in events if isinstance(e, Segment)]
    done = events[-1]
    assert isinstance(done, Transcribed)
    windows = PauseWindows().cut(decode_audio(path))
    assert [(s.start, s.end) for s in segments] == [(round(w.start_s, 3), round(w.end_s, 3)) for w in windows]
    assert [s.text for s in segments] == [window_reply(worker, job, w) for w in windows]
    assert done.text == " ".join(s.text for s in segments)
    assert done.duration == pytest.approx(len(decode_audio(path)) / SR, abs=1e-3)
    streamed = {}
    for e in events:
        if isinstance(e, SegmentText):
            streamed[e.segment] = streamed.get(e.segment, "") + e.delta
    assert [streamed[s.id].strip() for s in segments] == [s.text for s in segments]
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].done_seconds == 0 and progress[-1].done_seconds == pytest.approx(done.duration)
    assert [p.windows for p in progress] == list(range(len(windows) + 1))
    assert all(p.total_seconds == pytest.approx(done.duration, abs=0.05) for p in progress)
    assert service.admission.count == 0
    assert "in English" in instruction("transcribe", "en", "") and "into English" in instruction("translate", None, "")


def test_a_base_checkpoint_is_asked_with_its_task_prompt(tiny_base_checkpoint, talk):
    from model import ModelWorker

    base = ModelWorker.from_pretrained(str(tiny_base_checkpoint), device="cpu", dtype="float32")
    service = ChatService(base, DemoConfig(examples=False, stream_interval_ms=0))
    job = service.transcribe(str(talk[0]), settings={"max_new_tokens": 8})
    window = PauseWindows().cut(decode_audio(talk[0]))[0]
    assert job.messages(window)[0]["content"][1]["type"] == "task"
    segments = [e for e in job.events() if isinstance(e, Segment)]
    assert segments[0].text == window_reply(base, job, window)


def test_qwen_audio_base_times_its_words_and_the_segments_follow_those_times_in_the_file(talk):
    """Qwen-Audio's base model is asked with <|timestamps|>; each timed stretch of a window's reply becomes a
    segment, shifted by the window's start (a stand-in answers: the tiny random model emits no times)."""
    from app_fixtures import FakeInfo, ScriptedWorker

    reply = ["<|0.00|>", "first words", "<|2.50|>", "<|3.00|>", "second words", "<|7.00|>"]
    backend = ScriptedWorker(reply=lambda messages, n: reply, info=FakeInfo(family="base", model_family="Qwen-Audio"))
    service = ChatService(backend, DemoConfig(examples=False, stream_interval_ms=0))
    job = service.transcribe(str(talk[0]))
    events = list(job.events())
    windows = [w for w in PauseWindows().cut(decode_audio(talk[0])) if not w.silent]
    asked = [call[0]["content"][1] for call in backend.calls]
    assert len(asked) == len(windows) and all(a["type"] == "task" and a["task"] == "transcribe" and a["timestamps"] is True
                                              for a in asked), asked[0]
    segments = [e for e in events if isinstance(e, Segment)]
    expected = [(round(w.start_s + a, 3), round(w.start_s + b, 3), text) for w in windows
                for a, b, text in ((0.0, 2.5, "first words"), (3.0, 7.0, "second words"))]
    assert [(s.start, s.end, s.text) for s in segments] == expected
    assert [s.id for s in segments] == list(range(len(segments)))
    # What streams to the page and the API is the words, without the time tokens.
    streamed = "".join(e.delta for e in events if isinstance(e, SegmentText))
    assert "<|" not in streamed and streamed.count("first words") == len(windows)


def test_timed_parts_of_a_reply():
    from app.transcription import timed_parts

    assert timed_parts("<|0.00|>Hello there<|1.50|><|1.80|>world<|3.20|>", 30.0, 58.0) == [
        (30.0, 31.5, "Hello there"), (31.8, 33.2, "world")]
    assert timed_parts("before <|0.00|>a<|1.00|> after", 0.0, 10.0) == [(0.0, 1.0, "before a"), (1.0, 10.0, "after")]
    assert timed_parts("no times at all", 5.0, 9.0) == [(5.0, 9.0, "no times at all")]
    assert timed_parts("<|2.00|>one time only", 0.0, 10.0) == [(0.0, 10.0, "one time only")]
    assert timed_parts("<|0.00|>past the end<|45.00|>", 20.0, 48.0) == [(20.0, 48.0, "past the end")]


def test_silent_windows_cost_no_model_call(service, worker, tmp_path, monkeypatch):
    path = write_wav(tmp_path / "gap.wav", np.concatenate([tone(5.0, 300.0, seed=1), np.zeros(62 * SR, np.float32),
                                                            tone(5.0, 500.0, seed=2)]))
    asked = []
    real = worker.stream
    monkeypatch.setattr(worker, "stream", lambda messages, params=None: asked.append(1) or real(messages, params))
    events = list(service.transcribe(str(path), settings={"max_new_tokens": 4}).events())
    windows = PauseWindows().cut(decode_audio(path))
    assert sum(not w.silent for w in windows) == len(asked) == len([e for e in events if isinstance(e, Segment)]) < len(windows)


def test_closing_the_job_stops_the_window_being_answered(service, worker, talk, monkeypatch):
    streams = []
    real = worker.stream

    def recording(messages, params=None):
        streams.append(real(messages, params))
        return streams[-1]

    monkeypatch.setattr(worker, "stream", recording)
    job = service.transcribe(str(talk[0]), settings={"max_new_tokens": 200, "min_new_tokens": 200})
    events = job.events()
    for event in events:
        if isinstance(event, SegmentText):
            break  # the first words of the first window have arrived
    job.close()
    assert list(events) == []
    assert len(streams) == 1  # the next window was never asked
    assert streams[0]._request.finished.wait(10)  # the generation ended (within a token: it checks each step)
    assert streams[0].finish_reason == "cancelled" and streams[0].completion_tokens < 200
    assert service.admission.count == 0
    assert worker.generate([{"role": "user", "content": "still there?"}], GenerationParams(temperature=0, max_new_tokens=3))


def test_refusals_come_at_once_in_one_sentence(worker, tmp_path):
    service = ChatService(worker, DemoConfig(examples=False, max_transcription_minutes=1.0))
    long = write_wav(tmp_path / "lecture.wav", tone(75.0, 300.0, seed=3))
    with pytest.raises(AudioTooLongError, match=r"^lecture.wav: the audio is 1 min 15 s long; the limit for a transcription is 1 min$"):
        service.transcribe(str(long))
    with pytest.raises(UserFacingError, match="language must be one of en, zh"):
        service.transcribe(str(long), language="xx")
    broken = tmp_path / "broken.mp3"
    broken.write_text("not audio\n" * 40)
    with pytest.raises(AudioDecodeError, match="^broken.mp3: is not an audio file"):
        service.transcribe(str(broken))
    assert service.admission.count == 0


def test_a_transcription_takes_a_queue_place_like_a_chat(tmp_path):
    from app_fixtures import ScriptedWorker

    service = ChatService(ScriptedWorker(), DemoConfig(examples=False, max_queue_size=1))
    path = write_wav(tmp_path / "a.wav", tone(2.0, 300.0, seed=1))
    held = [service.transcribe(str(path)), service.start([{"role": "user", "content": "hold"}], service.defaults)]
    with pytest.raises(BusyError):
        service.transcribe(str(path))
    for job in held:
        job.close()
    assert service.admission.count == 0


# -------------------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def api(worker, tmp_path_factory):
    config = DemoConfig(examples=False, max_new_tokens_limit=10)  # each window's text: at most 10 tokens
    service = ChatService(worker, config)
    demo = build_demo(service, config, work_dir=tmp_path_factory.mktemp("transcribe"))
    with serving(demo, config, api_routes(service, config)) as url:
        yield url.rstrip("/"), service


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url=f"{api[0]}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(api) -> str:
    """The model id the server lists (its checkpoint directory's name), as a client would send it."""
    return httpx.get(f"{api[0]}/v1/models", timeout=10).json()["data"][0]["id"]


@pytest.fixture(scope="module")
def expected(api, talk, worker):
    """The segments the service itself makes of the file, for the API's answers to equal."""
    events = list(api[1].transcribe(str(talk[0])).events())
    return events[-1]


def cues(text: str, separator: str) -> list[tuple[str, str, str]]:
    pattern = rf"(\d\d:\d\d:\d\d{separator}\d\d\d) --> (\d\d:\d\d:\d\d{separator}\d\d\d)\n(.+)"
    return re.findall(pattern, text)


def clock(seconds: float, separator: str) -> str:
    whole = int(round(seconds * 1000))
    return f"{whole // 3600000:02d}:{whole // 60000 % 60:02d}:{whole // 1000 % 60:02d}{separator}{whole % 1000:03d}"


def test_every_response_format_through_the_openai_client(client, model, talk, expected):
    with open(talk[0], "rb") as f:
        as_json = client.audio.transcriptions.create(model=model, file=f, response_format="json", temperature=0)
    assert as_json.text == expected.text
    assert as_json.usage.output_tokens == expected.usage.completion_tokens
    with open(talk[0], "rb") as f:
        assert client.audio.transcriptions.create(model=model, file=f, response_format="text") == expected.text + "\n"
    with open(talk[0], "rb") as f:
        srt = client.audio.transcriptions.create(model=model, file=f, response_format="srt")
    assert srt == to_srt(expected.segments)
    assert cues(srt, ",") == [(clock(s.start, ","), clock(s.end, ","), s.text) for s in expected.segments]
    assert re.match(r"^1\n00:00:00,000 --> ", srt)
    with open(talk[0], "rb") as f:
        vtt = client.audio.transcriptions.create(model=model, file=f, response_format="vtt")
    assert vtt == to_vtt(expected.segments) and vtt.startswith("WEBVTT\n\n")
    assert cues(vtt, r"\.") == [(clock(s.start, "."), clock(s.end, "."), s.text) for s in expected.segments]
    with open(talk[0], "rb") as f:
        verbose = client.audio.transcriptions.create(model=model, file=f, response_format="verbose_json",
                                                     timestamp_granularities=["segment"], language="en")
    assert verbose.text == expected.text and verbose.language == "english"
    assert verbose.duration == pytest.approx(expected.duration)
    assert [(s.id, s.start, s.end, s.text) for s in verbose.segments] == [(s.id, s.start, s.end, s.text) for s in expected.segments]
    assert all(s.tokens for s in verbose.segments)


def test_a_streamed_transcription(client, model, talk, expected):
    with open(talk[0], "rb") as f:
        events = list(client.audio.transcriptions.create(model=model, file=f, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(deltas) > len(expected.segments) and len(done) == 1
    assert "".join(deltas) == done[0].text == expected.text


def test_a_translation(client, model, talk, api, worker):
    with open(talk[0], "rb") as f:
        translated = client.audio.translations.create(model=model, file=f)
    job = api[1].transcribe(str(talk[0]), task="translate")
    window = PauseWindows().cut(decode_audio(talk[0]))[0]
    assert "into English" in job.messages(window)[0]["content"][1]["text"]
    assert translated.text.startswith(window_reply(worker, job, window))
    job.close()


def test_bad_requests_are_refused_in_one_sentence(api, model, tmp_path):
    url = api[0]
    broken = tmp_path / "holiday.mp3"
    broken.write_text("not audio\n" * 40)

    def post(files=None, **data):
        return httpx.post(f"{url}/v1/audio/transcriptions", files=files, data={"model": model, **data}, timeout=60)

    wav = write_wav(tmp_path / "a.wav", tone(1.0, 300.0, seed=1))
    cases = [
        (post({"file": ("holiday.mp3", broken.read_bytes())}), 400, "file", "file (holiday.mp3): is not an audio file ffmpeg can read (invalid data)"),
        (post(), 400, "file", "Send the audio as multipart/form-data with a 'file' part (as OpenAI's audio API takes it)."),
        (post({"other": ("a.wav", b"RIFF")}), 400, "file", "The request has no audio: send it as the multipart part 'file'."),
        (post({"file": ("a.wav", wav.read_bytes())}, response_format="docx"), 400, "response_format", "response_format must be one of json, text, srt, vtt, verbose_json, not 'docx'."),
        (post({"file": ("a.wav", wav.read_bytes())}, response_format="verbose_json", **{"timestamp_granularities[]": "word"}), 400, "timestamp_granularities", None),
        (post({"file": ("a.wav", wav.read_bytes())}, language="xx"), 400, "language", None),
        (post({"file": ("a.wav", wav.read_bytes())}, temperature="-1"), 400, "temperature", None),
        (post({"file": ("a.wav", wav.read_bytes())}, stream="true", response_format="srt"), 400, "stream", None),
    ]
    for response, status, param, message in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["param"] == param, error
        if message:
            assert error["message"] == message
        assert "Traceback" not in response.text
    response = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("a.wav", wav.read_bytes())},
                          data={"model": "whisper-1"}, timeout=60)
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert api[1].admission.count == 0


def test_auth_and_a_full_queue_as_for_chat(worker, tmp_path):
    config = DemoConfig(examples=False, api_key="secret", max_queue_size=1)
    service = ChatService(worker, config)
    demo = build_demo(service, config, work_dir=tmp_path)
    wav = write_wav(tmp_path / "a.wav", tone(1.0, 300.0, seed=1))
    with serving(demo, config, api_routes(service, config)) as url:
        endpoint = f"{url.rstrip('/')}/v1/audio/transcriptions"
        files = {"file": ("a.wav", wav.read_bytes())}
        assert httpx.post(endpoint, files=files, data={"model": ""}, timeout=30).status_code == 401
        auth = {"Authorization": "Bearer secret"}
        held = [service.start([{"role": "user", "content": "hold"}], service.defaults) for _ in range(2)]
        busy = httpx.post(endpoint, files=files, data={"model": ""}, headers=auth, timeout=30)
        assert busy.status_code == 429 and busy.json()["error"]["type"] == "rate_limit_error"
        for reply in held:
            reply.close()
        answered = httpx.post(endpoint, files=files, data={"model": ""}, headers=auth, timeout=60)
        assert answered.status_code == 200 and "text" in answered.json()
    assert service.admission.count == 0


def test_failures_mid_job_are_a_failed_event(service, worker, talk, monkeypatch):
    calls = []
    real = worker.stream

    def failing_second(messages, params=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected")
        return real(messages, params)

    monkeypatch.setattr(worker, "stream", failing_second)
    events = list(service.transcribe(str(talk[0]), settings={"max_new_tokens": 4}).events())
    assert isinstance(events[-1], Failed) and "failed to answer" in events[-1].error.user_message
    assert len([e for e in events if isinstance(e, Segment)]) == 1
    assert service.admission.count == 0
