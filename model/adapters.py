"""LoRA adapters (PEFT) on top of a checkpoint: find one, check it, apply it, optionally merge it.

``--adapter PATH_OR_HUB_ID`` names a directory (or a hub repository) as PEFT's ``save_pretrained``
writes it: ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``.bin``). :func:`locate_adapter`
finds and checks it before the base model is loaded, so a typo costs no minutes of loading.
:func:`apply_adapter` does what ``PeftModel.from_pretrained`` does, with the functions peft offers
integrations (``peft.functional``: inject the LoRA layers, keep their weights in float32, load the
file), on the model itself; then it checks that every tensor of the file was applied and every LoRA
weight came from the file, which peft only warns about. ``--merge-adapter`` folds the LoRA products
into the base weights and puts the plain layers back (:func:`merge_into_weights`), so generation runs
at the base model's speed.

Adapters trained under transformers 4.x name Qwen2-Audio's modules ``language_model.model.layers…``,
``language_model.lm_head``, ``audio_tower…`` and ``multi_modal_projector…``; 5.x names them
``model.language_model.layers…``, ``lm_head``, ``model.audio_tower…``, ``model.multi_modal_projector…``
(transformers renames a 4.x checkpoint's own weights with the model's conversion mapping). The tensor
names and the full module paths in ``adapter_config.json`` are renamed here with one table,
:data:`LEGACY_MODULE_PATHS`: peft 0.21's own renaming converts the language model's tensors of a 4.x
adapter but drops the audio tower's with only a warning.

No call needs more than peft 0.21: transformers 5.24 wants peft >= 0.22 for its adapter methods
(``active_adapters``, ``enable_adapters``, ``disable_adapters``, ``set_adapter``, which raise with 0.21),
and none of them is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointLoadError

logger = logging.getLogger(__name__)

#: The files of an adapter a hub download fetches (PEFT's save_pretrained layout).
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"]
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
#: The name the adapter gets inside the model (its LoRA weights are ``…lora_A.default.weight``, as with peft).
ADAPTER_NAME = "default"
#: What the names of LoRA's own tensors contain (lora_A, lora_B, lora_embedding_A, lora_magnitude_vector...).
LORA_MARKER = "lora_"
#: Per family: module paths as transformers 4.x named them -> as 5.x does (a path equal to the old one or
#: under it is renamed). The first-generation Qwen-Audio is our own class, whose names never changed.
LEGACY_MODULE_PATHS: dict[str, tuple[tuple[str, str], ...]] = {
    "Qwen2-Audio": (
        ("language_model.model", "model.language_model"),
        ("language_model.lm_head", "lm_head"),
        ("audio_tower", "model.audio_tower"),
        ("multi_modal_projector", "model.multi_modal_projector"),
    ),
    "Qwen-Audio": (),
}
#: Fields of adapter_config.json that may hold module paths (a list of names or a name-keyed mapping).
_PATH_FIELDS = ("target_modules", "exclude_modules", "modules_to_save")
_PATTERN_FIELDS = ("rank_pattern", "alpha_pattern")


@dataclass(frozen=True)
class AdapterSource:
    """An adapter found on disk: ``name`` as the user gave it, its directory, its parsed adapter_config.json
    and its weights file."""

    name: str
    path: Path
    config: dict[str, Any]
    weights: Path

    @property
    def short_name(self) -> str:
        """The last part of the name (``org/my-lora`` -> ``my-lora``), for the page's badge."""
        return self.name.rstrip("/\\").replace("\\", "/").split("/")[-1] or self.name


@dataclass(frozen=True)
class LoadedAdapter:
    """What :func:`apply_adapter` applied: the adapter's short name, whether it was merged, its tensor count."""

    name: str
    merged: bool
    tensors: int


def check_merge(merge: bool, quantization: str) -> None:
    """Refuse ``--merge-adapter`` where merging would change the answers: into 4-bit weights.

    Measured on the tiny checkpoint: merging into NF4 weights moved the logits by more than the adapter
    itself does (rounding to 4 bits swallows the LoRA update); into LLM.int8 weights by about 2% of it,
    which is allowed with a warning in the log.
    """
    if merge and quantization == "4bit":
        raise CheckpointLoadError(
            "--merge-adapter cannot merge a LoRA adapter into 4-bit weights (rounding to 4 bits loses most of its "
            "update); leave --merge-adapter off, the adapter then runs unmerged on the 4-bit model.")


def locate_adapter(adapter: str) -> AdapterSource:
    """Find the adapter ``adapter`` names (a directory, or a hub id fetched with its adapter files only) and
    check it: a readable adapter_config.json of a LoRA adapter and a weights file. Raises CheckpointLoadError
    with one sentence otherwise."""
    from .loading import _download, _looks_local

    expanded = os.path.expanduser(adapter)
    if os.path.isdir(expanded):
        path = Path(expanded)
    elif _looks_local(adapter) or ("/" in adapter and os.path.isdir(adapter.partition("/")[0])):
        raise CheckpointLoadError(f"No such directory: {adapter} (an adapter path; hub ids look like org/name).")
    else:
        path = _download(adapter, ADAPTER_FILES, what="adapter", flag="--adapter", size="adapters are small")
    file = path / "adapter_config.json"
    if not file.is_file():
        hint = " (it looks like a full checkpoint: pass it with -c instead)" if (path / "config.json").is_file() else ""
        raise CheckpointLoadError(f"{adapter} is not a PEFT adapter: it has no adapter_config.json{hint}.")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointLoadError(f"{adapter} has an adapter_config.json that cannot be read ({type(exc).__name__}).") from None
    if not isinstance(config, dict):
        raise CheckpointLoadError(f"{adapter} has an adapter_config.json that is not a mapping of settings.")
    kind = str(config.get("peft_type") or "unknown")
    if kind.upper() != "LORA":
        raise CheckpointLoadError(f"{adapter} is a PEFT {kind} adapter, not LoRA; only LoRA adapters are supported.")
    weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
        raise CheckpointLoadError(f"{adapter} has no adapter weights (adapter_model.safetensors or adapter_model.bin).")
    return AdapterSource(name=adapter, path=path, config=config, weights=weights)


def legacy_path(name: str, family: str) -> str:
    """A module path (or a tensor name) of the transformers 4.x layout as 5.x names it; others unchanged."""
    for old, new in LEGACY_MODULE_PATHS.get(family, ()):
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return name


def rename_legacy_paths(config: dict[str, Any], family: str) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the 4.x full module paths of its list and mapping fields renamed to 5.x, and the
    names that were renamed. A regex ``target_modules`` (a string) is left as it is: it either still
    matches, or :func:`apply_adapter` names the tensors it leaves out."""
    renamed: list[str] = []

    def rename(name: str) -> str:
        new = legacy_path(name, family)
        if new != name:
            renamed.append(name)
        return new

    out = dict(config)
    for key in _PATH_FIELDS:
        if isinstance(out.get(key), list):
            out[key] = [rename(n) if isinstance(n, str) else n for n in out[key]]
    for key in _PATTERN_FIELDS:
        if isinstance(out.get(key), dict):
            out[key] = {rename(k): v for k, v in out[key].items()}
    return out, renamed


def import_peft() -> Any:
    """The peft module (its bitsandbytes notice kept off the console), or one sentence saying to install it."""
    from .quantization import quiet_bitsandbytes_notice

    quiet_bitsandbytes_notice()
    try:
        import peft
    except ImportError:
        raise CheckpointLoadError("--adapter needs the peft package: pip install 'peft>=0.21.2'") from None
    return peft


def _warn_on_other_base(source: AdapterSource, model: Any, checkpoint: str) -> None:
    """Log (never refuse) when the adapter says it was trained on another model: its base_model_name_or_path
    is often a hub id where the checkpoint is a local copy, so only the class is a strong hint."""
    base = str(source.config.get("base_model_name_or_path") or "")
    base_name = base.rstrip("/").split("/")[-1]
    if base_name and base_name != checkpoint.rstrip("/").split("/")[-1]:
        logger.warning("adapter %s was trained on %s; it is applied to %s", source.name, base, checkpoint)
    wanted_class = (source.config.get("auto_mapping") or {}).get("base_model_class")
    if wanted_class and wanted_class != type(model).__name__:
        logger.warning("adapter %s was made for a %s; this model is a %s", source.name, wanted_class, type(model).__name__)


def _listing(names: Iterable[str], limit: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def apply_adapter(model: Any, source: AdapterSource, family: str, *, checkpoint: str, merge: bool = False,
                  quantization: str = "none") -> LoadedAdapter:
    """Inject the LoRA adapter ``source`` into ``model`` (a transformers model of ``family``, already on its
    device) and load its weights; with ``merge``, fold them into the base weights.

    This is what ``PeftModel.from_pretrained`` does, through peft's functions for integrations
    (``peft.functional``), on the model itself: the model keeps its class, and its LoRA weights stay in
    float32 as peft keeps them (transformers' own ``load_adapter`` would round them to a bfloat16 model's
    dtype). Raises CheckpointLoadError with one sentence when peft is missing, the adapter cannot be
    injected (its target modules are not in the model), a tensor's shape differs from the model's, or the
    file and the model's LoRA weights do not correspond one to one (naming the keys left over on either side).
    """
    check_merge(merge, quantization)
    peft = import_peft()
    from peft.functional import cast_adapter_dtype, inject_adapter_in_model, set_peft_model_state_dict

    _warn_on_other_base(source, model, checkpoint)
    config, renamed = rename_legacy_paths(source.config, family)
    tensors = read_tensors(source.weights)
    state, renamed_tensors = rename_legacy_tensors(tensors, family)
    if renamed or renamed_tensors:
        logger.info("adapter %s is in the transformers 4.x layout: renamed %d module paths and %d tensors",
                    source.name, len(renamed), renamed_tensors)
    config.pop("runtime_config", None)  # what peft's own reader drops too
    try:  # as peft's LoraConfig.from_pretrained reads the file (fields of newer peft versions are dropped)
        peft_config = peft.LoraConfig.from_peft_type(**peft.LoraConfig.check_kwargs(**config))
    except (TypeError, ValueError) as exc:
        raise CheckpointLoadError(f"{source.name} has an adapter_config.json peft cannot read: {_first_line(exc)}") from None
    peft_config.inference_mode = True
    try:
        inject_adapter_in_model(peft_config, model, ADAPTER_NAME)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise CheckpointLoadError(f"Cannot apply the adapter {source.name} to {checkpoint}: {_first_line(exc)}") from None
    cast_adapter_dtype(model, ADAPTER_NAME, autocast_adapter_dtype=True)
    try:
        result = set_peft_model_state_dict(model, state, ADAPTER_NAME)
    except RuntimeError as exc:  # torch's load_state_dict: "size mismatch for NAME: copying a param with shape..."
        mismatched = re.findall(r"size mismatch for (\S+?):", str(exc))
        if not mismatched:
            raise CheckpointLoadError(f"Cannot load the adapter weights in {source.weights}: {_first_line(exc)}") from None
        raise CheckpointLoadError(
            f"The adapter {source.name} does not fit {checkpoint}: the model's weights have another shape for "
            f"{len(mismatched)} of its tensors ({_listing(mismatched)}) (an adapter for another model size?).") from None
    _check_complete(model, source, checkpoint, list(tensors), result)
    if merge:
        with warnings.catch_warnings():
            if quantization != "none":  # said once here, not once per layer as peft does
                logger.warning("merging adapter %s into %s weights rounds its update (unmerged keeps it exact)",
                               source.name, quantization)
                warnings.filterwarnings("ignore", message="Merge lora module to .* may get different generations")
            merged = merge_into_weights(model)
        logger.info("adapter %s merged into %d layers", source.name, merged)
    model.eval()
    logger.info("adapter %s applied to %s%s: %d tensors", source.name, checkpoint, " (merged)" if merge else "",
                len(tensors))
    return LoadedAdapter(name=source.short_name, merged=merge, tensors=len(tensors))


def read_tensors(weights: Path) -> dict[str, Any]:
    """Every tensor of an adapter's weights file, on the CPU (safetensors, or a .bin read with weights_only)."""
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(weights))
        import torch

        return dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; one line names it
        raise CheckpointLoadError(f"Cannot read the adapter weights in {weights}: {_first_line(exc)}") from None


def rename_legacy_tensors(tensors: dict[str, Any], family: str) -> tuple[dict[str, Any], int]:
    """``tensors`` with 4.x module paths renamed to 5.x (behind peft's ``base_model.model.`` prefix), and
    how many were renamed. The same table as for adapter_config.json; it mirrors the conversion mapping
    transformers applies to a 4.x checkpoint's own weights (``language_model.model`` -> ``model.language_model``...)."""
    prefix = "base_model.model."
    out: dict[str, Any] = {}
    count = 0
    for name, tensor in tensors.items():
        head, rest = (prefix, name[len(prefix):]) if name.startswith(prefix) else ("", name)
        renamed = legacy_path(rest, family)
        count += renamed != rest
        out[head + renamed] = tensor
    return out, count


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def adapter_parameters(model: Any) -> list[str]:
    """The names of the model's parameters that belong to the adapter (LoRA A/B, DoRA magnitudes, saved modules)."""
    marker = f".{ADAPTER_NAME}."
    return [name for name, _ in model.named_parameters() if marker in name]


def _check_complete(model: Any, source: AdapterSource, checkpoint: str, in_file: list[str], result: Any) -> None:
    """Refuse, in one sentence, an adapter whose file and the model's LoRA weights do not correspond one to
    one: a tensor no module takes (unused) or a LoRA weight the file lacks (it would keep its random initial
    value). peft only warns about either, and only as a PeftModel."""
    marker = f".{ADAPTER_NAME}."
    unused = set(result.unexpected_keys)
    missing = {k for k in result.missing_keys if marker in k}  # the base model's weights are "missing" too
    problems = []
    if unused:
        problems.append(f"{len(unused)} of its {len(in_file)} tensors fit no module of the model ({_listing(unused)})")
    if missing:
        problems.append(f"{len(missing)} LoRA weights the model expects are not in it ({_listing(missing)})")
    # Besides LoRA's A and B a file may hold whole weights (peft saves lm_head's or the embeddings' with a LoRA
    # on them, and modules_to_save): those are placed or reported as unused above; LoRA's must pair up exactly.
    lora_in_file = [name for name in in_file if LORA_MARKER in name]
    lora_in_model = [name for name in adapter_parameters(model) if LORA_MARKER in name]
    if not problems and len(lora_in_model) != len(lora_in_file):
        problems.append(f"its {len(lora_in_file)} LoRA tensors were loaded into {len(lora_in_model)} LoRA weights")
    if problems:
        raise CheckpointLoadError(f"The adapter {source.name} does not fit {checkpoint}: " + "; ".join(problems)
                                  + " (an adapter for another model, or target_modules that match other layers).")
    logger.debug("adapter %s: all %d tensors applied", source.name, len(in_file))


def merge_into_weights(model: Any) -> int:
    """Fold every LoRA layer of ``model`` into its base layer and put the base layer back in its place,
    so the model is a plain transformers model again (peft's merge_and_unload, for a model that carries
    adapters through transformers' integration rather than a PeftModel). Returns the layers merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    tuners = {name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}
    merged = 0
    for name, module in list(model.named_modules()):
        parent_name, _, child = name.rpartition(".")
        if not name or any(parent_name == t or parent_name.startswith(t + ".") for t in tuners):
            continue  # the layers inside a LoRA layer (lora_A, base_layer...) go with it
        if hasattr(module, "unload_and_optionally_merge_module"):  # saved whole modules (modules_to_save)
            replacement = module.unload_and_optionally_merge_module(merge=True, safe_merge=True, adapter_names=None)
        elif isinstance(module, BaseTunerLayer):
            module.merge(safe_merge=True)
            replacement = module.get_base_layer()
        else:
            continue
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
        merged += 1
    if hasattr(model, "peft_config"):
        del model.peft_config
    model._hf_peft_config_loaded = False
    return merged
