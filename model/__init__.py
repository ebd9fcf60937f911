"""The model layer: loading (Qwen2-Audio and Qwen-Audio families), audio decoding, prompts and the streaming worker.

Nothing here imports Gradio. ``from model import ModelWorker, GenerationParams`` is the public API.
"""

from .audio import SAMPLE_RATE, AudioLimits, decode_audio, split_windows
from .conversation import BASE_TASK_LANGUAGES, BASE_TASKS, AudioInfo, BaseTask, PreparedPrompt
from .families.qwen2_audio import base_task_prompt
from .errors import (
    AudioDecodeError,
    AudioError,
    AudioTooLargeError,
    AudioTooLongError,
    CheckpointLoadError,
    ContextTooLongError,
    ConversationError,
    GenerationFailedError,
    GenerationOutOfMemoryError,
    WorkerBusyError,
    WorkerError,
    WorkerRestartedError,
    WorkerStoppedError,
)
from .loading import DEFAULT_CHECKPOINT
from .params import GenerationParams, InvalidParamsError
from .worker import CacheSizes, ModelWorker, ReplyStream, Speedups, WorkerInfo

__all__ = [
    "AudioDecodeError", "AudioError", "AudioInfo", "BaseTask", "CacheSizes", "AudioLimits", "AudioTooLargeError", "AudioTooLongError",
    "BASE_TASKS", "BASE_TASK_LANGUAGES", "CheckpointLoadError", "ContextTooLongError", "ConversationError",
    "DEFAULT_CHECKPOINT", "GenerationFailedError", "GenerationOutOfMemoryError", "GenerationParams",
    "InvalidParamsError", "ModelWorker", "PreparedPrompt", "ReplyStream", "SAMPLE_RATE", "Speedups", "WorkerBusyError",
    "WorkerError", "WorkerInfo", "WorkerRestartedError", "WorkerStoppedError", "base_task_prompt", "decode_audio", "split_windows",
]
