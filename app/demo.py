"""``build_demo(backend, config)``: the whole page for one backend, and how to launch it."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from .api import ChatApi
from .backend import ChatBackend
from .config import DemoConfig
from .events import wire_events
from .examples import Example, build_examples
from .handlers import ChatHandlers
from .i18n import I18N, LABELS
from .layout import STATIC_DIR, build_layout, header, title_key
from .service import ChatService, service_of
from .temp_files import TempFiles
from .voice import VoiceHandlers
from .transcribe_page import TranscribeHandlers, build_transcribe_layout, wire_transcribe_page

logger = logging.getLogger(__name__)

DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "qwen2-audio-demo"


def build_demo(
    service: ChatService | ChatBackend,
    config: DemoConfig,
    *,
    examples: list[Example] | None = None,
    work_dir: Path | None = None,
) -> gr.Blocks:
    """The page, wired to ``service`` (the conversation service ``/v1`` uses too; a bare backend — a
    ModelWorker or anything satisfying :class:`ChatBackend` — gets a service of its own).

    ``examples`` defaults to the generated example clips when ``config.examples`` is on; ``work_dir``
    holds those clips (default: a folder in the system temp dir). Uploads and the clips cut at
    timestamps live in Gradio's upload folder and are managed by :class:`app.temp_files.TempFiles`.
    """
    service = service_of(service, config)
    info = service.info
    work_dir = Path(work_dir or DEFAULT_WORK_DIR)
    if examples is None:
        examples = build_examples(work_dir / "examples") if config.examples else []
    # The tab title is plain text: Gradio does not translate it.
    with gr.Blocks(title=LABELS["en"][title_key(info)], analytics_enabled=False, fill_width=False, fill_height=True) as demo:
        # Clips are written straight into Gradio's folder (served from there without a second copy)
        # and go with the uploads: when their session ends, when unused for long, beyond the cap.
        upload_folder = Path(get_upload_folder())
        files = TempFiles(upload_folder, ttl_s=config.upload_ttl_minutes * 60,
                          max_bytes=config.upload_cache_mb * 1024 * 1024, uploads=demo.upload_file_set,
                          protected=lambda: kept_by_gradio(demo))
        handlers = ChatHandlers(service, config, clips_dir=upload_folder / "clips", files=files)
        voice = VoiceHandlers(handlers, config.vad) if config.voice and VoiceHandlers.available(service.backend) else None
        ui = build_layout(info, config, examples, defaults=service.defaults, voice=voice is not None)
        wire_events(ui, handlers, ChatApi(handlers), config, voice)
        demo.unload(handlers.end_session)
        if voice is not None:
            demo.unload(voice.end_session)
    with demo.route(LABELS["en"]["tr_title"], "/transcribe"):
        header(info, "tr_title", "tr_subtitle", "nav_chat", "./")
        page = build_transcribe_layout()
        wire_transcribe_page(page, TranscribeHandlers(service, handlers.uploaded, upload_folder / "transcripts"))
    files.start()
    demo.temp_files = files  # for tests and operators: what is kept, and a sweep on demand
    demo.service = service
    # No queue limits of Gradio's own: the service's admission (shared with /v1) is the one that counts.
    demo.queue(default_concurrency_limit=None, max_size=None)
    relax_queue_polling(demo)
    return demo


#: How often Gradio's idle queue looks for new work (Gradio's own default: every 1 ms).
QUEUE_IDLE_POLL_S = 0.01


def relax_queue_polling(demo: gr.Blocks) -> None:
    """Let Gradio's queue look for new work every 10 ms instead of every 1 ms when it is idle.

    The 1 ms loop shares the process (and Python's GIL) with the model's generation thread: on a
    2-core machine it cost about a fifth of the tiny model's decode rate (docs/PERFORMANCE.md). A new
    request now waits at most 10 ms longer before it starts.
    """
    queue = getattr(demo, "_queue", None)
    if queue is None or not hasattr(queue, "sleep_when_free"):
        logger.warning("Gradio's queue has no sleep_when_free any more: its polling interval is left as it is")
        return
    queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_IDLE_POLL_S)


def kept_by_gradio(demo: gr.Blocks) -> set[str]:
    """The files Gradio keeps in its folder for the page itself (examples, default values)."""
    return {path for block in demo.blocks.values() for path in getattr(block, "keep_in_cache", ())}


def theme() -> gr.themes.Base:
    # The default theme's fonts are served locally: the page loads nothing from other hosts.
    return gr.themes.Default(primary_hue="indigo", secondary_hue="blue", neutral_hue="slate")


def launch_options(config: DemoConfig) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: server, login, limits, i18n and the static CSS and logo.

    The share link is off unless ``config.share`` asks for it; ``auth`` is None (no login) unless
    ``config.auth`` / ``config.auth_file`` give logins.
    """
    credentials = config.credentials
    return dict(
        server_name=config.server_name,
        server_port=config.server_port,
        share=bool(config.share),
        auth=list(credentials) or None,
        inbrowser=config.inbrowser,
        max_file_size=f"{config.max_upload_mb}mb",
        show_error=False,
        quiet=True,
        ssr_mode=False,
        i18n=I18N,
        theme=theme(),
        css_paths=[STATIC_DIR / "style.css"],
        favicon_path=str(STATIC_DIR / "logo.svg"),
        js=(STATIC_DIR / "keys.js").read_text(encoding="utf-8"),  # Esc stops
        allowed_paths=[str(STATIC_DIR)],  # the button icons, wherever the demo is started from
        footer_links=["api", "settings"],
        # Every admitted request may hold a thread while it waits for the model, plus room for the rest.
        max_threads=max(40, config.max_queue_size + 1 + 16),
    )


def launch_demo(demo: gr.Blocks, config: DemoConfig, *, block: bool = True, **overrides: Any) -> str:
    """Start serving ``demo``; log one line with the URL; block until stopped unless ``block`` is False."""
    options = launch_options(config) | overrides
    _, local_url, share_url = demo.launch(prevent_thread_lock=True, **options)
    logger.info("serving on %s%s", local_url, f" and {share_url}" if share_url else "")
    if block:
        demo.block_thread()
    return local_url
