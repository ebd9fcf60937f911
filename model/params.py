"""Per-request generation settings."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import WorkerError

#: The speed-up choices (:class:`model.worker.Speedups`), also offered by the demo's config and benchmarks.
ATTENTION_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")
KV_CACHE_CHOICES = ("dynamic", "static", "static-compile")


class InvalidParamsError(WorkerError):
    status = 400


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one reply. ``None`` means "the checkpoint's generation_config default".

    - ``max_new_tokens``: upper bound on the reply length in tokens.
    - ``temperature``: 0 means greedy decoding (deterministic); > 0 samples.
    - ``top_p``, ``top_k``: nucleus / top-k filtering when sampling.
    - ``repetition_penalty``: 1.0 disables it.
    - ``seed``: makes sampling reproducible.
    - ``min_new_tokens``: forces at least this many tokens (benchmarks and tests use it for fixed lengths).
    """

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    min_new_tokens: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("max_new_tokens", lambda v: isinstance(v, int) and v >= 1, "an integer of at least 1"),
            ("temperature", lambda v: v >= 0, "0 (greedy) or more"),
            ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
            ("top_k", lambda v: isinstance(v, int) and v >= 0, "an integer of at least 0 (0 disables it)"),
            ("repetition_penalty", lambda v: v > 0, "greater than 0"),
            ("seed", lambda v: isinstance(v, int), "an integer"),
            ("min_new_tokens", lambda v: isinstance(v, int) and v >= 0, "an integer of at least 0"),
        ]
        for name, ok, wanted in checks:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise InvalidParamsError(f"{name} must be {wanted}, not {value!r}.")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "GenerationParams":
        """Build from a dict, ignoring keys that are not fields and values that are ``None``."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})

    def merged(self, **overrides: Any) -> "GenerationParams":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_generate_kwargs(self, defaults: Any) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` on top of ``defaults`` (the checkpoint's GenerationConfig)."""
        temperature = self.temperature if self.temperature is not None else getattr(defaults, "temperature", None)
        do_sample = bool(getattr(defaults, "do_sample", False)) if self.temperature is None else self.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": do_sample}
        if do_sample:
            kwargs["temperature"] = temperature if temperature is not None else 1.0
            kwargs["top_p"] = self.top_p if self.top_p is not None else getattr(defaults, "top_p", 1.0)
            kwargs["top_k"] = self.top_k if self.top_k is not None else getattr(defaults, "top_k", 50)
        else:
            # Greedy: neutral sampling values keep transformers from warning about unused flags.
            kwargs.update(temperature=1.0, top_p=1.0, top_k=50)
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        if self.min_new_tokens is not None:
            kwargs["min_new_tokens"] = self.min_new_tokens
        return kwargs
