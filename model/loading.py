"""Finding, downloading and loading a Qwen2-Audio checkpoint onto the right device in the right dtype."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointLoadError

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "Qwen/Qwen2-Audio-7B-Instruct"
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
# Files a Qwen2-Audio checkpoint needs; no remote code is ever fetched or run.
_CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja"]


@dataclass(frozen=True)
class Placement:
    """Where the model runs: ``device`` ("cpu" or "cuda"), the torch dtype name, and accelerate's device_map."""

    device: str
    dtype: str
    device_map: Any  # None (single device, moved with .to) or "auto" (split across GPUs by accelerate)


def resolve_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """Turn the user's ``device``/``dtype`` choices into a concrete placement.

    ``auto`` device: CUDA when available, else CPU. ``auto`` dtype: bfloat16 on GPUs that support it,
    float16 on older GPUs, float32 on CPU (half precision on CPU is slow and poorly supported).
    More than one GPU: accelerate's ``device_map="auto"`` spreads the layers over them.
    """
    import torch

    if device not in DEVICES:
        raise CheckpointLoadError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if dtype not in DTYPES:
        raise CheckpointLoadError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise CheckpointLoadError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --cpu-only or install a CUDA build of torch.")
    resolved = "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"
    if dtype == "auto":
        if resolved == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    device_map = "auto" if resolved == "cuda" and torch.cuda.device_count() > 1 else None
    return Placement(device=resolved, dtype=dtype, device_map=device_map)


def _looks_local(checkpoint: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (``./x``, ``/abs``, ``~/x``, ``a/b/c``) is a path."""
    return checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1 or "\\" in checkpoint


def locate_checkpoint(checkpoint: str) -> Path:
    """Return a local directory holding ``checkpoint``, downloading a hub id (with progress bars) if needed.

    Raises CheckpointLoadError with one sentence for a missing directory, a repository that does not
    exist or is gated, and no network without a cached copy.
    """
    expanded = os.path.expanduser(checkpoint)
    if os.path.isdir(expanded):
        path = Path(expanded)
    elif _looks_local(checkpoint):
        raise CheckpointLoadError(f"Checkpoint directory {checkpoint} does not exist.")
    else:
        path = _download(checkpoint)
    if not (path / "config.json").is_file():
        raise CheckpointLoadError(f"{checkpoint} is not a model checkpoint: it has no config.json.")
    model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type != "qwen2_audio":
        raise CheckpointLoadError(
            f"{checkpoint} is a {model_type or 'unknown'} checkpoint, not Qwen2-Audio (model_type qwen2_audio)."
        )
    return path


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    logger.info("fetching %s from the Hugging Face hub (about 17 GB the first time; cached afterwards)", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_CHECKPOINT_FILES))
    except GatedRepoError:
        raise CheckpointLoadError(
            f"{repo_id} is gated: accept its terms on huggingface.co and log in with `hf auth login`."
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointLoadError(
            f"{repo_id} was not found on the Hugging Face hub (check the name, or log in if it is private)."
        ) from None
    except RevisionNotFoundError:
        raise CheckpointLoadError(f"{repo_id} has no such revision on the Hugging Face hub.") from None
    except HFValidationError:
        raise CheckpointLoadError(f"{repo_id} is neither an existing directory nor a valid hub model id.") from None
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        reason = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
        raise CheckpointLoadError(
            f"Cannot load {repo_id}: {reason} and no copy is in the local cache; "
            "connect once to download it, or pass a local checkpoint directory with -c."
        ) from None
    except OSError as exc:
        raise CheckpointLoadError(f"Cannot download {repo_id}: {exc.strerror or exc}.") from None


def checkpoint_ships_chat_template(path: Path) -> bool:
    """True when the checkpoint directory carries a chat template (in any of the layouts transformers reads)."""
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    for name in ("processor_config.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file() and json.loads(file.read_text(encoding="utf-8")).get("chat_template"):
            return True
    return False


def load_model_and_processor(path: Path, placement: Placement, attention: str = "auto"):
    """Load ``Qwen2AudioForConditionalGeneration`` and ``AutoProcessor`` from ``path`` onto ``placement``.

    ``attention`` names the attention kernel (``auto`` leaves transformers' default).
    """
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    started = time.perf_counter()
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(
            path,
            dtype=getattr(torch, placement.dtype),
            device_map=placement.device_map,
            low_cpu_mem_usage=True,
            **({} if attention == "auto" else {"attn_implementation": attention}),
        )
    except torch.OutOfMemoryError:
        raise CheckpointLoadError(
            f"Not enough GPU memory to load {path.name} in {placement.dtype} (about 17 GB needed in bfloat16)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - damaged files fail in many ways (OSError, SafetensorError, KeyError...)
        logger.debug("loading %s failed", path, exc_info=exc)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointLoadError(f"Cannot load the checkpoint in {path}: {reason}") from None
    if not checkpoint_ships_chat_template(path):
        # Qwen2AudioProcessor falls back to a built-in chat template; a base checkpoint has none and
        # must be prompted in its pre-training format instead.
        processor.chat_template = None
    if placement.device_map is None:
        model.to(placement.device)
    model.eval()
    logger.info(
        "loaded %s on %s in %s in %.1f s", path, placement.device, placement.dtype, time.perf_counter() - started
    )
    return model, processor
