"""Finding, downloading and loading a checkpoint of any supported family onto the right device in the right dtype."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointLoadError, NotDownloadedError
from .families import CHECKPOINT_FILES, family_of_config

if TYPE_CHECKING:
    from .adapters import AdapterSource

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "Qwen/Qwen2-Audio-7B-Instruct"
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class Placement:
    """Where the model runs: ``device`` ("cpu" or "cuda"), the torch dtype name, and accelerate's device_map."""

    device: str
    dtype: str
    device_map: Any  # None (single device, moved with .to), "auto" (split across GPUs by accelerate) or {"": device}
    quantization: str = "none"  # "8bit" / "4bit": the language model's linear layers (model.quantization)


def resolve_placement(device: str = "auto", dtype: str = "auto", quantization: str = "none") -> Placement:
    """Turn the user's ``device``/``dtype`` choices into a concrete placement.

    ``auto`` device: CUDA when available, else an Apple GPU (MPS), else CPU. ``auto`` dtype: bfloat16 on
    GPUs that support it, float16 on older GPUs and on MPS, float32 on CPU (half precision on CPU is slow
    and poorly supported).
    More than one GPU: accelerate's ``device_map="auto"`` spreads the layers over them. A quantized
    model is loaded straight onto its device (bitsandbytes' layers are not moved afterwards).
    """
    import torch

    from .quantization import check_choice

    check_choice(quantization)
    if device not in DEVICES:
        raise CheckpointLoadError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if dtype not in DTYPES:
        raise CheckpointLoadError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    has_cuda = torch.cuda.is_available()
    has_mps = has_apple_gpu()
    if device == "cuda" and not has_cuda:
        raise CheckpointLoadError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --cpu-only or install a CUDA build of torch.")
    if device == "mps" and not has_mps:
        raise CheckpointLoadError("--device mps was asked for, but PyTorch sees no Apple GPU (MPS needs a Mac with Apple silicon and macOS 12.3 or later); use --cpu-only.")
    if device == "auto":
        resolved = "cuda" if has_cuda else "mps" if has_mps else "cpu"
    else:
        resolved = device
    if dtype == "auto":
        if resolved == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif resolved == "mps":
            dtype = "float16"  # Apple's GPUs run float16 and float32; bfloat16 only partly
        else:
            dtype = "float32"
    if resolved == "mps" and dtype == "bfloat16":
        raise CheckpointLoadError("bfloat16 is not supported well on Apple's MPS; use --dtype float16 (the default there) or float32.")
    if resolved == "mps" and quantization != "none":
        raise CheckpointLoadError("bitsandbytes does not run on Apple's MPS: use --quantization none (float16 needs about "
                                  "16 GB of unified memory) or --cpu-only.")
    device_map = "auto" if resolved == "cuda" and torch.cuda.device_count() > 1 else None
    if device_map is None and quantization != "none":
        device_map = {"": resolved}
    return Placement(device=resolved, dtype=dtype, device_map=device_map, quantization=quantization)


def has_apple_gpu() -> bool:
    """Whether PyTorch can use an Apple GPU (MPS)."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for PyTorch's operators (0: PyTorch's default, one per core)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
        logger.info("PyTorch uses %d CPU thread(s)", threads)


def free_memory_gib(device: str) -> float | None:
    """Free memory on ``device`` in GiB: the GPU's (all GPUs together), or the machine's available RAM."""
    import torch

    try:
        if device == "cuda":
            return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())) / 1024 ** 3
        if device == "mps":
            return torch.mps.recommended_max_memory() / 1024 ** 3
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024 ** 3
    except (OSError, ValueError, RuntimeError):
        return None


def quantization_plan(path: Path, family: str, placement: Placement) -> str:
    """What the chosen quantization needs for this checkpoint and what the device has (one sentence, before
    loading; on a device too small for it, the setting that fits)."""
    from . import families
    from .quantization import QUANTIZATION_CHOICES, memory_plan, weight_bytes

    architecture = families.meta_model(family, path)
    keep = families.UNQUANTIZED[family]
    needs = {mode: weight_bytes(architecture, mode, keep, placement.dtype).gib for mode in QUANTIZATION_CHOICES}
    return memory_plan(needs, placement.quantization, placement.device, free_memory_gib(placement.device))


def _looks_local(checkpoint: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (``./x``, ``/abs``, ``~/x``, ``a/b/c``) is a path."""
    return checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1 or "\\" in checkpoint


def _no_such_directory(checkpoint: str) -> CheckpointLoadError:
    return CheckpointLoadError(
        f"No such directory: {checkpoint} (a checkpoint path; hub ids look like Qwen/Qwen2-Audio-7B-Instruct).")


#: What a CPU-only machine without the checkpoint is told instead of starting the download by itself.
TRYOUT = ("{checkpoint} is not downloaded yet and this machine has no GPU: it is about 17 GB to download and "
          "needs about 32 GB of memory on the CPU. For a try-out, run `python -m model.tiny checkpoints/tiny-random` "
          "and `python web_demo_audio.py -c checkpoints/tiny-random --config configs/cpu-tryout.yaml` (random "
          "weights, gibberish answers); to download and run it on the CPU anyway, pass --device cpu.")


#: What the default run says when it serves the tiny random checkpoint instead (web_demo_audio.py).
TRYOUT_INSTEAD = ("{checkpoint} is not downloaded yet and this machine has no GPU (it is about 17 GB to download "
                  "and needs about 32 GB of memory on the CPU): serving the tiny random checkpoint in {path} for a "
                  "try-out instead (random weights: the answers are gibberish by design). To download and run the "
                  "real model on the CPU, pass --device cpu; on a GPU machine it is the default.")


def tryout_checkpoint() -> Path:
    """Where the default run keeps the tiny random checkpoint it serves for a try-out (built on first use)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "qwen-audio-demo" / "tiny-random"


def is_downloaded(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is a local directory or a hub id whose files are in the local hub cache."""
    if os.path.isdir(os.path.expanduser(checkpoint)) or _looks_local(checkpoint):
        return True
    if "/" in checkpoint and os.path.isdir(checkpoint.partition("/")[0]):
        return True  # a mistyped path under a directory here: locate_checkpoint says "no such directory"
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(checkpoint, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the hub would refuse: locate_checkpoint says why
        return True


def check_tryout(checkpoint: str, device: str, placement: Placement) -> None:
    """Refuse, in one sentence offering the tiny checkpoint, to start a 17 GB download by itself on a
    machine that found no GPU (``--device auto``); an explicit ``--device cpu`` downloads."""
    if device == "auto" and placement.device == "cpu" and not is_downloaded(checkpoint):
        raise NotDownloadedError(TRYOUT.format(checkpoint=checkpoint), checkpoint)


def locate_checkpoint(checkpoint: str) -> Path:
    """Return a local directory holding ``checkpoint``, downloading a hub id (with progress bars) if needed.

    Raises CheckpointLoadError with one sentence for a missing directory, a repository that does not
    exist or is gated, and no network without a cached copy.
    """
    expanded = os.path.expanduser(checkpoint)
    if os.path.isdir(expanded):
        path = Path(expanded)
    elif _looks_local(checkpoint):
        raise _no_such_directory(checkpoint)
    else:
        try:
            path = _download(checkpoint)
        except CheckpointLoadError:
            # "checkpoints/tiny-randm" is shaped like a hub id, but its first part is a directory here:
            # a mistyped path, which the hub's "not found" or "cannot be reached" would not explain.
            if os.path.isdir(checkpoint.partition("/")[0]) and "/" in checkpoint:
                raise _no_such_directory(checkpoint) from None
            raise
    if not (path / "config.json").is_file():
        raise CheckpointLoadError(f"{checkpoint} is not a model checkpoint: it has no config.json.")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointLoadError(f"{checkpoint} has a config.json that cannot be read ({type(exc).__name__}).") from None
    if not isinstance(config, dict) or family_of_config(config) is None:
        model_type = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointLoadError(
            f"{checkpoint} is a {model_type or 'unknown'} checkpoint, not Qwen2-Audio (model_type qwen2_audio) "
            "or Qwen-Audio (model_type qwen with an audio block)."
        )
    return path


def checkpoint_family(path: Path) -> str:
    """"Qwen2-Audio" or "Qwen-Audio" for a directory :func:`locate_checkpoint` returned."""
    family = family_of_config(json.loads((path / "config.json").read_text(encoding="utf-8")))
    if family is None:
        raise CheckpointLoadError(f"{path} is not a checkpoint of a supported family.")
    return family


def _download(repo_id: str, allow_patterns: list[str] | None = None, what: str = "checkpoint", flag: str = "-c",
              size: str = "the 7B checkpoints are about 17 GB") -> Path:
    """Download (or find in the hub cache) the files of ``repo_id`` that match ``allow_patterns`` (a
    checkpoint's by default); every hub failure becomes one sentence, offering a local ``what`` directory
    given with ``flag`` instead."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    logger.info("fetching %s from the Hugging Face hub (%s; cached afterwards)", repo_id, size)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns or CHECKPOINT_FILES))
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
            f"connect once to download it, or pass a local {what} directory with {flag}."
        ) from None
    except OSError as exc:
        raise CheckpointLoadError(f"Cannot download {repo_id}: {exc.strerror or exc}.") from None


def load_model_and_processor(path: Path, placement: Placement, attention: str = "auto", *,
                             adapter: "AdapterSource | str | None" = None, merge_adapter: bool = False,
                             checkpoint: str = ""):
    """Load the model and processor of the checkpoint at ``path`` (either family) onto ``placement``.

    Qwen2-Audio: ``Qwen2AudioForConditionalGeneration`` and its ``AutoProcessor``. Qwen-Audio:
    :class:`model.families.qwen_audio.modeling.QwenAudioForCausalLM` and its processor. ``attention``
    names the attention kernel (``auto`` leaves transformers' default). ``adapter`` (a directory, a hub
    id, or what :func:`model.adapters.locate_adapter` found) is a LoRA adapter applied on top, merged into
    the weights with ``merge_adapter``; what was applied is recorded as ``model.loaded_adapter`` (a
    :class:`model.adapters.LoadedAdapter`, None without one). ``checkpoint`` is the name messages use
    (default: ``path``). Raises CheckpointLoadError with one sentence.
    """
    import torch

    from . import families
    from .adapters import apply_adapter, check_merge, locate_adapter

    from .quantization import bnb_config

    family = checkpoint_family(path)
    checkpoint = checkpoint or str(path)
    if isinstance(adapter, (str, os.PathLike)) and str(adapter):
        adapter = locate_adapter(str(adapter))
    if adapter:
        check_merge(merge_adapter, placement.quantization)  # before minutes of loading
    started = time.perf_counter()
    try:
        logger.info("%s", quantization_plan(path, family, placement))
    except Exception:  # noqa: BLE001 - a plan is advice; loading says what is wrong itself
        logger.debug("could not work out what %s needs", path, exc_info=True)

    def fail(exc: Exception) -> CheckpointLoadError:
        if isinstance(exc, torch.OutOfMemoryError):
            setting = placement.dtype if placement.quantization == "none" else placement.quantization
            try:
                advice = " " + quantization_plan(path, family, placement)
            except Exception:  # noqa: BLE001
                advice = " (about 17 GB are needed in bfloat16; --quantization 4bit needs about a third)"
            return CheckpointLoadError(f"Not enough GPU memory to load {path.name} in {setting}.{advice}")
        if isinstance(exc, CheckpointLoadError):
            return exc
        # Damaged files fail in many ways (OSError, SafetensorError, KeyError...): one line names it.
        logger.debug("loading %s failed", path, exc_info=exc)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return CheckpointLoadError(f"Cannot load the checkpoint in {path}: {reason}")

    quantization = bnb_config(placement.quantization, families.UNQUANTIZED[family], placement.dtype)
    model, processor = families.load(family, path, getattr(torch, placement.dtype), placement.device_map, attention, fail,
                                     quantization)
    if placement.device_map is None:
        try:
            model.to(placement.device)
        except torch.OutOfMemoryError as exc:
            raise fail(exc) from None
    model.loaded_adapter = None
    if adapter:
        try:
            model.loaded_adapter = apply_adapter(model, adapter, family, checkpoint=checkpoint, merge=merge_adapter,
                                                 quantization=placement.quantization)
        except torch.OutOfMemoryError as exc:
            raise fail(exc) from None
    model.eval()
    logger.info(
        "loaded %s (%s) on %s in %s%s in %.1f s; the weights take %.1f MiB", path, family, placement.device,
        placement.dtype, "" if placement.quantization == "none" else f", {placement.quantization}",
        time.perf_counter() - started, model.get_memory_footprint() / 1024 ** 2,
    )
    return model, processor
