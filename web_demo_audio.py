"""Qwen2-Audio browser chat: ``python web_demo_audio.py [-c CHECKPOINT] [--cpu-only] [--server-port N] ...``.

Parse the options into one config, load the model worker (before the server accepts traffic), build
the page for it and serve it. ``--help`` lists every option with its default.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import time
from collections.abc import Sequence

from app.config import ConfigError, load_config
from model.errors import user_message_of

logger = logging.getLogger("web_demo_audio")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def load_backend(config):  # noqa: ANN001, ANN201 - app.config.DemoConfig in, a ChatBackend out
    """The model worker (``--backend local``) or a client of an OpenAI-compatible server (``openai``)."""
    from model import AudioLimits

    limits = AudioLimits(max_seconds=config.max_audio_seconds, max_bytes=config.max_upload_bytes)
    if config.backend == "openai":
        from app.remote_backend import RemoteBackend

        return RemoteBackend(config.api_base, api_key=config.remote_api_key or config.api_key or None,
                             model=config.remote_model or None, audio_limits=limits,
                             audio_cache_mb=config.cache_audio_mb)
    from model import CacheSizes, ModelWorker, Speedups
    from model.errors import NotDownloadedError
    from model.loading import DEFAULT_CHECKPOINT, TRYOUT_INSTEAD, tryout_checkpoint

    def load(checkpoint: str):  # noqa: ANN202
        return ModelWorker.from_pretrained(
            checkpoint,
            device=config.device,
            dtype=config.dtype,
            audio_limits=limits,
            cache=CacheSizes(config.cache_audio_mb, config.cache_features_mb, config.prefix_cache_tokens),
            speedups=Speedups(attention=config.attn_implementation, kv_cache=config.kv_cache),
            quantization=config.quantization,
            threads=config.threads,
            adapter=config.adapter,
            merge_adapter=config.merge_adapter,
        )

    try:
        return load(config.checkpoint_path)
    except NotDownloadedError:
        if config.checkpoint_path != DEFAULT_CHECKPOINT or config.adapter:
            raise  # a checkpoint the user named (or an adapter for it): the sentence says how to get it
    # The default run on a machine with no GPU and no model: the try-out, said in one sentence.
    path = tryout_checkpoint()
    logger.warning(TRYOUT_INSTEAD.format(checkpoint=config.checkpoint_path, path=path))
    if not (path / "config.json").is_file():
        build_tryout_checkpoint(path)
    return load(str(path))


def build_tryout_checkpoint(path):  # noqa: ANN001, ANN201 - a pathlib.Path
    """Build the tiny random checkpoint at ``path`` (a few seconds), whole or not at all."""
    import shutil

    from model.tiny import build_tiny_checkpoint

    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    build_tiny_checkpoint(partial)
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (checked before the model loads), or None."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"Port {port} on {host} is already in use; pass another one with --server-port (e.g. --server-port {port + 1})."
            return f"Cannot listen on {host}:{port} ({exc.strerror or exc}); check --server-name and --server-port."
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        logger.error("%s", exc)
        return 2
    logging.basicConfig(level=config.log_level, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    problem = port_problem(config.server_name, config.server_port)
    if problem:  # said now, not after minutes of loading
        logger.error("%s", problem)
        return 2

    from model import zerogpu

    zerogpu.import_spaces_first()  # on a ZeroGPU Space, `spaces` must come before torch

    from app.demo import build_demo, launch_demo
    from app.openai_api import api_routes
    from app.service import ChatService

    started = time.perf_counter()
    try:
        worker = load_backend(config)
    except Exception as exc:  # noqa: BLE001 - a load failure is one line, never a traceback
        message = user_message_of(exc)
        if message is None:
            raise
        logger.error("%s", message)
        return 1
    logger.info("model loaded in %.1f s: %s", time.perf_counter() - started, worker.info.label)

    service = ChatService(worker, config)  # one service, one admission: the page, /chat and /v1
    demo = build_demo(service, config)
    try:
        launch_demo(demo, config, app_kwargs={"routes": api_routes(service, config)})
    except KeyboardInterrupt:
        logger.info("stopped")
    finally:
        worker.shutdown()
    return 0


def cli() -> None:
    """The ``qwen-audio-demo`` command an install of the package provides (the same as running this file)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
