"""Voice mode: the microphone streams to the server, and each pause ends a question that is answered.

The page's streaming microphone (Gradio's ``gr.Audio(streaming=True)``) sends a short WAV every
``STREAM_EVERY_S``; :meth:`VoiceHandlers.chunk` decodes it (16 kHz, as the model hears it) and feeds the
session's voice detector (Silero VAD, made by the backend: :meth:`model.worker.ModelWorker.voice_detector`).
What the detector finds comes back to the page through three hidden values, each of whose changes runs
its own step (see :mod:`app.events`):

- ``speech`` (a counter): the person started talking — read-aloud is silenced;
- ``barge`` (a counter): they started while an answer was being written — that answer is stopped,
  as the Stop button does;
- ``utterance`` (the clip, as JSON): they stopped — the clip (silence trimmed) becomes an audio-only
  user turn, answered like any other question.

The status line says listening / hearing you / thinking / answering; the page's own script says why
the microphone cannot start (plain http, or a blocked permission) in the same place.
"""

from __future__ import annotations

import html
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from model.audio import AudioLimits, decode_audio, write_wav
from model.vad import SpeechStarted

from .handlers import ChatHandlers, busy_updates, session_of, thinking
from .history import Message, without_pending
from .i18n import language_of, say

logger = logging.getLogger(__name__)

#: How often the browser sends what the microphone heard (Gradio's stream_every), in seconds.
STREAM_EVERY_S = 0.25
#: How long an utterance handed to the page counts as "thinking" before its reply starts (a refused one never does).
HANDED_S = 5.0


@dataclass
class VoiceSession:
    detector: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    speech: int = 0  # speech starts so far (the page's counter)
    barge: int = 0  # answers stopped by talking
    utterances: int = 0
    shown: str = ""  # the status last sent to the page
    handed_at: float | None = None  # when an utterance went to the page as a question whose reply has not started
    replies_then: int = 0  # the session's replies started by then


def status_html(state: str, lang: str) -> str:
    """The status line for ``state`` (off, listening, hearing, thinking, answering: its data-state, which the
    page's CSS colours): a dot and a word, announced politely to screen readers."""
    text = html.escape(say(f"voice_{state}", lang))
    return f'<div class="voice-status" data-state="{state}" role="status" aria-live="polite"><span class="dot"></span>{text}</div>'


class VoiceHandlers:
    """Voice mode's handlers, beside the chat's (whose replies, Stop and files they share)."""

    def __init__(self, chat: ChatHandlers, settings: Any):
        self.chat = chat
        self.settings = settings
        self._sessions: dict[str | None, VoiceSession] = {}
        self._lock = threading.Lock()
        self.dir = chat.clips_dir.parent / "voice"

    @staticmethod
    def available(backend: Any) -> bool:
        """Whether ``backend`` can detect speech (the local worker can; a remote server's backend cannot)."""
        return callable(getattr(backend, "voice_detector", None))

    # ------------------------------------------------------------------ the switch
    def toggle(self, on: bool, request: gr.Request) -> str:
        """Voice mode switched on (a fresh detector: nothing heard before counts) or off."""
        session = session_of(request)
        with self._lock:
            self._sessions.pop(session, None)
        lang = language_of(request)
        if not on:
            return status_html("off", lang)
        try:
            detector = self.chat.service.backend.voice_detector(self.settings)
        except Exception as exc:  # noqa: BLE001 - the page keeps working without voice mode
            logger.warning("voice mode cannot start: %s", exc, exc_info=True)
            gr.Warning(html.escape(say("voice_unavailable", lang)))
            return status_html("off", lang)
        with self._lock:
            self._sessions[session] = VoiceSession(detector, shown="listening")
        return status_html("listening", lang)

    def end_session(self, request: gr.Request) -> None:
        with self._lock:
            self._sessions.pop(session_of(request), None)

    # ------------------------------------------------------------------ what the microphone heard
    def chunk(self, path: str | None, request: gr.Request) -> tuple[Any, Any, Any, Any]:
        """One piece of the microphone's stream: (status, speech, barge, utterance) updates, each skipped
        when unchanged."""
        session = session_of(request)
        voice = self._sessions.get(session)
        skip = gr.skip()
        if voice is None or not path:
            return skip, skip, skip, skip
        try:
            samples = decode_audio(path, AudioLimits())
        except Exception as exc:  # noqa: BLE001 - one bad piece of a stream is left out
            logger.debug("left out a piece of the microphone's stream: %s", exc)
            return skip, skip, skip, skip
        finally:
            self._remove(path)
        speech = barge = utterance = skip
        with voice.lock:
            events = voice.detector.feed(samples)
            for event in events:
                if isinstance(event, SpeechStarted):
                    voice.speech += 1
                    speech = voice.speech
                    if self.chat.phase(session) is not None:  # talking over an answer stops it
                        voice.barge += 1
                        barge = voice.barge
                else:
                    voice.utterances += 1
                    utterance = self._keep(event, voice.utterances, session)
                    voice.handed_at, voice.replies_then = time.monotonic(), self.chat.started(session)
            state = self._state(voice, session)
            status = skip
            if state != voice.shown:
                voice.shown = state
                status = status_html(state, language_of(request))
        return status, speech, barge, utterance

    def _state(self, voice: VoiceSession, session: str | None) -> str:
        phase = self.chat.phase(session)
        if self.chat.started(session) > voice.replies_then:
            voice.handed_at = None  # its reply has started (and may have ended already)
        if voice.detector.hearing:
            return "hearing"
        if phase is None and voice.handed_at is not None and time.monotonic() - voice.handed_at < HANDED_S:
            return "thinking"  # the question is on its way to the model
        return phase or "listening"

    def _keep(self, utterance: Any, n: int, session: str | None) -> str:
        """Write the utterance as a WAV clip in Gradio's folder (served and checked like an upload)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="voice-", dir=self.dir))
        path = folder / f"voice-{time.strftime('%H%M%S')}-{n}.wav"
        write_wav(path, utterance.samples)
        self.chat.use_files(session, [str(path)])
        logger.info("voice mode: an utterance of %.1f s (speech %.2f-%.2f s of the stream)", utterance.seconds,
                    utterance.speech_start, utterance.speech_end)
        return json.dumps({"path": str(path), "n": n, "seconds": round(utterance.seconds, 3)})

    @staticmethod
    def _remove(path: str) -> None:
        """The stream's pieces are read once: they go at once instead of filling the upload folder."""
        try:
            os.remove(path)
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass

    # ------------------------------------------------------------------ the turn
    def add_turn(self, utterance: str | None, history: list[Message] | None, request: gr.Request) -> tuple[Any, ...]:
        """The utterance as an audio-only user turn (voice chat: the spoken words are the question)."""
        lang = language_of(request)
        try:
            value = json.loads(utterance or "")
            path, n, seconds = value["path"], int(value["n"]), float(value["seconds"])
        except (ValueError, TypeError, KeyError):
            return (gr.skip(),) * 5
        if not self.chat.uploaded([path]):  # a client may name any path
            raise gr.Error(say("not_uploaded", lang, name=os.path.basename(path)), print_exception=False)
        history = without_pending(list(history or []))
        turn = {"role": "user", "content": self.chat.audio_message(path, seconds, say("voice_clip", lang, n=n))}
        return (history + [turn, thinking(lang)], *busy_updates())

    def barge_in(self, history: list[Message] | None, request: gr.Request) -> tuple[Any, ...]:
        """Talking stopped the answer being written: as Stop does (the cut answer marked as stopped)."""
        return self.chat.stop(history, request)
