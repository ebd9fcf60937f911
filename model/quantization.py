"""Loading the language model in 8 or 4 bits (bitsandbytes, through transformers' ``BitsAndBytesConfig``).

``none`` keeps every weight in the placement's dtype. ``8bit`` is LLM.int8(); ``4bit`` is NF4 with
bfloat16 compute (float16 where the placement is float16). Only the language model's linear layers are
quantized: each family names, as full module paths, what stays in the placement's dtype (the audio
encoder, the projector into the language model, ``lm_head``). In transformers 5 a skip list entry must
be the full path (a bare ``audio_tower`` matches nothing and the encoder is quantized too), and a given
list replaces transformers' default one, so ``lm_head`` is named as well.

:func:`weight_bytes` says what a setting needs before anything is loaded (from the architecture built on
the ``meta`` device); :func:`memory_plan` words it with what the device has and, when that is too little,
the setting that fits. bitsandbytes runs on CPU too, so all of this is tested without a GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

QUANTIZATION_CHOICES = ("none", "8bit", "4bit")
BITS = {"none": None, "8bit": 8, "4bit": 4}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 1024 ** 3
#: What loading takes beyond the weights (CUDA context, activations, a first KV cache): a rough margin.
OVERHEAD_GIB = 1.5


def check_choice(mode: str) -> str:
    if mode not in QUANTIZATION_CHOICES:
        from .errors import CheckpointLoadError

        raise CheckpointLoadError(f"Unknown quantization {mode!r}; choose one of {', '.join(QUANTIZATION_CHOICES)}.")
    return mode


#: What bitsandbytes (0.49+) logs as a warning when it is imported on a CPU with AVX512-BF16 and the optional
#: ``kernels`` package is missing (peft imports bitsandbytes too). That package would fetch a faster 4-bit
#: CPU matmul from the Hugging Face hub; without it bitsandbytes uses the kernel it ships, with the same
#: results, so the line is noise for a user of this demo and goes to this module's debug log instead.
KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
_BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"


class _KernelsNoticeToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(KERNELS_NOTICE):
            logger.debug("bitsandbytes: %s", record.getMessage())
            return False
        return True


def quiet_bitsandbytes_notice() -> None:
    """Keep bitsandbytes' "kernels-community" notice off the console; call before bitsandbytes (or peft,
    which imports it) is first imported. Every other bitsandbytes message stays as it is."""
    bnb_logger = logging.getLogger(_BNB_CPU_LOGGER)
    if not any(isinstance(f, _KernelsNoticeToDebug) for f in bnb_logger.filters):
        bnb_logger.addFilter(_KernelsNoticeToDebug())


def is_kept(name: str, keep: Sequence[str]) -> bool:
    """Whether module ``name`` lies under one of the full paths in ``keep``."""
    return any(name == k or name.startswith(k + ".") for k in keep)


def bnb_config(mode: str, keep: Sequence[str], dtype: str) -> Any:
    """transformers' ``BitsAndBytesConfig`` for ``mode`` (None for "none"), leaving ``keep`` unquantized."""
    if check_choice(mode) == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    quiet_bitsandbytes_notice()
    try:
        import bitsandbytes  # noqa: F401 - transformers uses it; a missing install is said here in one sentence
    except ImportError:
        from .errors import CheckpointLoadError

        raise CheckpointLoadError(f"--quantization {mode} needs the bitsandbytes package: pip install bitsandbytes") from None
    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(keep))
    compute = torch.float16 if dtype == "float16" else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=False, llm_int8_skip_modules=list(keep))


@dataclass(frozen=True)
class WeightBytes:
    parameters: int  # all of them
    quantized: int  # the parameters of the linear layers that are quantized
    total: int  # bytes the weights take under the setting

    @property
    def gib(self) -> float:
        return self.total / GIB


def weight_bytes(model: Any, mode: str, keep: Sequence[str], dtype: str) -> WeightBytes:
    """The bytes ``model``'s weights take under ``mode`` (works on a model built on the ``meta`` device):
    the quantized linear weights at their bits (4-bit also keeps one scale per 64 weights, 8-bit one per
    row), everything else (biases, norms, embeddings, the kept modules) in ``dtype``, buffers as built."""
    import torch

    bits = BITS[check_choice(mode)]
    per = DTYPE_BYTES[dtype]
    parameters = sum(p.numel() for p in model.parameters())
    quantized = rows = 0
    if bits is not None:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not is_kept(name, keep):
                quantized += module.weight.numel()
                rows += module.weight.shape[0]
    if bits is None:
        total = parameters * per
    else:
        scales = quantized // 64 * 4 if bits == 4 else rows * 4  # float32 scales: per 64 weights / per row
        total = quantized * bits // 8 + scales + (parameters - quantized) * per
    # Buffers (rotary frequencies, positional tables) stay in their own dtype whatever the setting.
    total += sum(b.numel() * (per if b.is_floating_point() and b.dtype != torch.float32 else b.element_size())
                 for b in model.buffers())
    return WeightBytes(parameters=parameters, quantized=quantized, total=total)


def parameter_count(model: Any) -> int:
    """How many parameters ``model`` has, counting a 4-bit layer's weights as the matrix they stand for
    (bitsandbytes stores them packed, two to a byte, so ``numel()`` is half of it, or less)."""
    total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        shape = getattr(state, "shape", None)
        total += math.prod(shape) if shape is not None else param.numel()
    return total


def fitting_setting(needs: dict[str, float], free_gib: float) -> str | None:
    """The least-compressed setting whose weights (plus a margin) fit ``free_gib``, or None."""
    for mode in QUANTIZATION_CHOICES:
        if needs[mode] + OVERHEAD_GIB <= free_gib:
            return mode
    return None


def memory_plan(needs: dict[str, float], mode: str, device: str, free_gib: float | None) -> str:
    """One sentence: what ``mode`` needs, what the device has, and on too small a GPU what fits."""
    what = f"quantization {mode}: the weights need about {needs[mode]:.1f} GiB"
    if free_gib is None:
        return f"{what} of memory on {device}."
    sentence = f"{what}; {device} has {free_gib:.1f} GiB free."
    if needs[mode] + OVERHEAD_GIB > free_gib:
        fits = fitting_setting(needs, free_gib)
        sentence += (f" That is too little: use --quantization {fits} ({needs[fits]:.1f} GiB)." if fits else
                     " Even 4bit does not fit: use a larger GPU or --device cpu.")
    return sentence
