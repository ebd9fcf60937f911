"""The Transcribe page (``/transcribe``): drop or record a long recording, watch its segments appear with
their times and a progress bar, click a segment to hear it, download ``.srt`` / ``.vtt`` / ``.txt``.

It runs the same job as ``/v1/audio/transcriptions`` (:meth:`app.service.ChatService.transcribe`): windows
of at most 30 s cut at pauses, one model request each, in the chat's queue. Stop ends the window being
answered within a token. Layout and handlers are here; the click-to-play lives in ``static/keys.js``.
"""

from __future__ import annotations

import html
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from model.audio import format_clock
from model.conversation import BASE_TASK_LANGUAGES

from .handlers import as_gradio_error, refusal, sentence
from .i18n import label, language_of, say
from .service import ChatService, Failed
from .transcription import Progress, Segment, SegmentText, Transcribed, to_srt, to_text, to_vtt

#: The segments' text is re-drawn at most this often while a window's words stream in.
REDRAW_S = 0.25


@dataclass
class TranscribePage:
    audio: gr.Audio
    language: gr.Dropdown
    task: gr.Radio
    start_btn: gr.Button
    stop_btn: gr.Button
    progress: gr.HTML
    segments: gr.HTML
    files: gr.File


def build_transcribe_layout() -> TranscribePage:
    """The page's components (inside the current route's context)."""
    with gr.Row(elem_id="tr-controls"):
        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label=label("tr_audio"), elem_id="tr-audio",
                         scale=3)
        with gr.Column(scale=2, min_width=240):
            language = gr.Dropdown([(label("tr_auto"), "")] + [(name, code) for code, name in BASE_TASK_LANGUAGES.items()],
                                   value="", label=label("tr_language"), elem_id="tr-language")
            task = gr.Radio([(label("tr_transcribe"), "transcribe"), (label("tr_translate"), "translate")],
                            value="transcribe", label=label("tr_task"), elem_id="tr-task")
            with gr.Row():
                start_btn = gr.Button(label("tr_start"), variant="primary", elem_id="tr-start")
                stop_btn = gr.Button(label("stop"), variant="stop", interactive=False, elem_id="tr-stop")
    progress = gr.HTML("", elem_id="tr-progress", js_on_load=None)
    segments = gr.HTML("", elem_id="tr-segments", js_on_load=None)
    files = gr.File(label=label("tr_files"), file_count="multiple", interactive=False, visible=False, elem_id="tr-files")
    return TranscribePage(audio, language, task, start_btn, stop_btn, progress, segments, files)


def progress_html(progress: Progress, started: float, lang: str) -> str:
    """The bar and one line: how far, how many windows, about how long is left."""
    total = progress.total_seconds
    share = min(1.0, progress.done_seconds / total) if total else 0.0
    status = say("tr_status", lang, done=format_clock(progress.done_seconds), total=format_clock(total) if total else "?",
                 windows=progress.windows)
    elapsed = time.monotonic() - started
    if total and 0 < progress.done_seconds < total and elapsed > 0:
        left = elapsed / progress.done_seconds * (total - progress.done_seconds)
        status += " · " + say("tr_left", lang, left=format_clock(left))
    percent = int(round(share * 100))
    name = html.escape(say("tr_progress", lang), quote=True)
    return (f'<div class="tr-bar" role="progressbar" aria-label="{name}" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{percent}"><div style="width:{percent}%"></div></div>'
            f'<p class="tr-status">{html.escape(status)}</p>')


def segments_html(path: str, segments: Sequence[Segment], writing: tuple[float, str] | None, lang: str) -> str:
    """The segments so far, each with its times as a button that plays it (and the one being written)."""
    src = html.escape("gradio_api/file=" + path, quote=True)
    rows = []
    for s in segments:
        if not s.text:
            continue
        times = f"{format_clock(s.start)}–{format_clock(s.end)}"
        play = html.escape(say("tr_play", lang, times=times), quote=True)
        rows.append(f'<li><button class="seg" type="button" data-start="{s.start}" data-end="{s.end}" aria-label="{play}">'
                    f'{times}</button> <span class="text">{html.escape(s.text)}</span></li>')
    if writing is not None and writing[1].strip():
        rows.append(f'<li class="writing"><span class="seg-time">{format_clock(writing[0])}–</span> '
                    f'<span class="text">{html.escape(writing[1].strip())}</span></li>')
    if not rows:
        return ""
    return f'<audio id="tr-player" preload="metadata" src="{src}"></audio><ol class="segments">{"".join(rows)}</ol>'


class TranscribeHandlers:
    """The page's one long event: the job's events as page updates."""

    def __init__(self, service: ChatService, uploaded: Callable[[Sequence[str]], list[str]], out_dir: Path):
        self.service = service
        self.uploaded = uploaded
        self.out_dir = Path(out_dir)

    def run(self, path: str | None, language: str, task: str, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        lang = language_of(request)
        if not path:
            raise refusal(say("tr_no_audio", lang))
        if not self.uploaded([path]):
            raise refusal(say("not_uploaded", lang, name=os.path.basename(path)))
        try:
            job = self.service.transcribe(path, task=task or "transcribe", language=language or None)
        except Exception as exc:  # noqa: BLE001 - one sentence naming the file and the reason
            raise as_gradio_error(exc, self.service, lang) from None
        started = time.monotonic()
        segments: list[Segment] = []
        writing = ""
        window_start = 0.0
        drawn = 0.0
        bar = ""
        busy = (gr.Button(interactive=False), gr.Button(interactive=True))
        try:
            for event in job.events():
                if isinstance(event, Progress):
                    bar = progress_html(event, started, lang)
                    window_start = event.done_seconds
                    yield (bar, segments_html(path, segments, None, lang), gr.File(visible=False), *busy)
                elif isinstance(event, SegmentText):
                    writing += event.delta
                    if time.monotonic() - drawn >= REDRAW_S:
                        drawn = time.monotonic()
                        yield (bar, segments_html(path, segments, (window_start, writing), lang), gr.File(visible=False), *busy)
                elif isinstance(event, Segment):
                    segments.append(event)
                    writing = ""
                elif isinstance(event, Transcribed):
                    files = self.write_files(path, event)
                    yield (bar, segments_html(path, segments, None, lang), gr.File(value=files, visible=True),
                           gr.Button(interactive=True), gr.Button(interactive=False))
                elif isinstance(event, Failed):
                    raise refusal(sentence(event.error, lang))
        finally:
            job.close()

    def write_files(self, path: str, done: Transcribed) -> list[str]:
        """The transcript as .srt, .vtt and .txt, named after the recording."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.out_dir))
        stem = Path(path).stem or "transcript"
        out = []
        for suffix, text in ((".srt", to_srt(done.segments)), (".vtt", to_vtt(done.segments)), (".txt", to_text(done.segments))):
            target = folder / f"{stem}{suffix}"
            target.write_text(text, encoding="utf-8")
            out.append(str(target))
        return out

    @staticmethod
    def idle() -> tuple[Any, Any]:
        return gr.Button(interactive=True), gr.Button(interactive=False)


def wire_transcribe_page(page: TranscribePage, handlers: TranscribeHandlers) -> None:
    running = page.start_btn.click(
        handlers.run, [page.audio, page.language, page.task],
        [page.progress, page.segments, page.files, page.start_btn, page.stop_btn],
        api_name=False, show_progress="hidden",
    )
    running.then(handlers.idle, None, [page.start_btn, page.stop_btn], api_name=False, show_progress="hidden")
    page.stop_btn.click(handlers.idle, None, [page.start_btn, page.stop_btn], cancels=[running], api_name=False,
                        show_progress="hidden")
