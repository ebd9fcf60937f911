"""Per-request generation settings, and the one table of their ranges.

:data:`PARAMS` is the only place a setting's range is written: :class:`GenerationParams` checks
against it, :func:`parse_params` turns the raw values of the page, ``/chat``, ``/v1`` and the
operator's config into settings with it, and the page builds its sliders from it.

Defaults come in layers (:func:`resolve`): :data:`FALLBACK` <- the checkpoint's
``generation_config`` (:meth:`GenerationParams.from_generation_config`) <- what the operator set <-
the request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import WorkerError

#: The speed-up choices (:class:`model.worker.Speedups`), also offered by the demo's config and benchmarks.
ATTENTION_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")
KV_CACHE_CHOICES = ("dynamic", "static", "static-compile")


class InvalidParamsError(WorkerError):
    """A generation setting is not a number, or out of its range; ``param`` names it as the caller does."""

    status = 400

    def __init__(self, user_message: str, param: str | None = None):
        super().__init__(user_message)
        self.param = param


@dataclass(frozen=True)
class ParamRange:
    """One setting's range. ``above``: the lowest value is excluded. ``ui_minimum`` / ``ui_maximum`` /
    ``step``: the page's slider (narrower than the range where the rest is rarely useful)."""

    name: str
    kind: type  # int or float
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    note: str = ""
    ui_minimum: float | None = None
    ui_maximum: float | None = None
    step: float = 1

    def wanted(self) -> str:
        """What a valid value is, in words: "a number in (0, 1]", "an integer of at least 1"."""
        noun = "an integer" if self.kind is int else "a number"
        if self.minimum is not None and self.maximum is not None:
            low = "(" if self.above else "["
            text = f"{noun} in {low}{_num(self.minimum)}, {_num(self.maximum)}]"
        elif self.minimum is not None:
            text = f"{noun} {'greater than' if self.above else 'of at least'} {_num(self.minimum)}"
        else:
            text = noun
        return f"{text}{f' ({self.note})' if self.note else ''}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if self.minimum is not None and (value <= self.minimum if self.above else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    @property
    def slider(self) -> tuple[float, float, float]:
        """(minimum, maximum, step) of the page's slider."""
        low = self.ui_minimum if self.ui_minimum is not None else (self.minimum or 0) + (self.step if self.above else 0)
        high = self.ui_maximum if self.ui_maximum is not None else self.maximum
        return low, high, self.step


def _num(value: float) -> str:
    return f"{value:g}"


#: Every generation setting's range. ``max_new_tokens`` is further bounded by the operator's
#: ``max_new_tokens_limit`` (see :func:`check_limit`).
PARAMS: dict[str, ParamRange] = {p.name: p for p in (
    ParamRange("max_new_tokens", int, 1),
    ParamRange("temperature", float, 0, 2, note="0 = greedy", step=0.05),
    ParamRange("top_p", float, 0, 1, above=True, step=0.05),
    ParamRange("top_k", int, 0, note="0 disables it", ui_maximum=100),
    ParamRange("repetition_penalty", float, 0, 2, above=True, note="1 disables it", ui_minimum=1.0, step=0.01),
    ParamRange("seed", int),
    ParamRange("min_new_tokens", int, 0),
)}


#: The settings the page, ``/chat`` and the operator's config offer (``min_new_tokens`` is for ``/v1`` and
#: benchmarks only), in the page's order.
SETTINGS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one reply. ``None`` means "the default" (see :func:`resolve`).

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
        for name, spec in PARAMS.items():
            value = getattr(self, name)
            if value is not None and not spec.accepts(value):
                raise InvalidParamsError(f"{name} must be {spec.wanted()}, not {value!r}.", name)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "GenerationParams":
        """Build from a dict, ignoring keys that are not fields and values that are ``None``."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})

    @classmethod
    def from_generation_config(cls, config: Any) -> "GenerationParams":
        """The sampling defaults a checkpoint's ``generation_config`` sets (unset ones stay ``None``);
        a checkpoint that does not sample (``do_sample`` false) gives temperature 0."""
        if config is None:
            return cls()
        sampling = bool(getattr(config, "do_sample", False))
        values: dict[str, Any] = {
            "temperature": getattr(config, "temperature", None) if sampling else 0.0,
            "top_p": getattr(config, "top_p", None),
            "top_k": getattr(config, "top_k", None),
            "repetition_penalty": getattr(config, "repetition_penalty", None),
            "max_new_tokens": getattr(config, "max_new_tokens", None),
        }
        # A value outside the table's ranges (a hand-edited file) is left to the fallback, not refused.
        return cls.from_mapping({k: v for k, v in values.items() if v is not None and PARAMS[k].accepts(v)})

    def as_dict(self) -> dict[str, Any]:
        """The settings that are set (for logs and ``/v1/models``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def merged(self, **overrides: Any) -> "GenerationParams":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def over(self, defaults: "GenerationParams") -> "GenerationParams":
        """These settings, with ``defaults`` for the ones that are not set."""
        return defaults.merged(**asdict(self))

    def to_generate_kwargs(self, defaults: Any) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` on top of ``defaults`` (the checkpoint's GenerationConfig)."""
        temperature = self.temperature if self.temperature is not None else getattr(defaults, "temperature", None)
        do_sample = bool(getattr(defaults, "do_sample", False)) if self.temperature is None else self.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": do_sample}
        if do_sample:
            kwargs["temperature"] = temperature if temperature is not None else 1.0
            kwargs["top_p"] = self.top_p if self.top_p is not None else (getattr(defaults, "top_p", None) or 1.0)
            top_k = self.top_k if self.top_k is not None else getattr(defaults, "top_k", None)
            kwargs["top_k"] = 50 if top_k is None else top_k
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


#: What applies where neither the checkpoint nor the operator sets a value: transformers' own sampling
#: defaults (transformers 5 leaves them unset) and a reply length of 512 tokens.
FALLBACK = GenerationParams(max_new_tokens=512, temperature=1.0, top_p=1.0, top_k=50, repetition_penalty=1.0)


def resolve(*layers: GenerationParams) -> GenerationParams:
    """The settings in force: :data:`FALLBACK`, then each layer (lowest first) over it."""
    result = FALLBACK
    for layer in layers:
        result = layer.over(result)
    return result


def parse_value(name: str, value: Any, shown: str | None = None) -> Any:
    """``value`` (a number, or its text as a form or an env variable sends it) as the setting ``name``;
    ``None`` or "" is ``None``. Raises InvalidParamsError naming the setting as ``shown`` (default ``name``)."""
    spec = PARAMS[name]
    shown = shown or name
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if spec.kind is int and math.isfinite(number) and number.is_integer():
        number = int(number)
    if not spec.accepts(number):  # not a number, not finite, not an integer where one is wanted, out of range
        raise InvalidParamsError(f"{shown} must be {spec.wanted()}, not {value!r}.", shown)
    return number


def parse_params(values: Mapping[str, Any], shown: Mapping[str, str] | None = None) -> GenerationParams:
    """GenerationParams from raw values keyed by setting name (unknown keys are ignored); ``shown``
    renames settings in the error sentence (``/v1`` calls ``max_new_tokens`` ``max_tokens``)."""
    shown = shown or {}
    return GenerationParams(**{name: parse_value(name, values[name], shown.get(name))
                               for name in PARAMS if name in values})


def check_limit(params: GenerationParams, max_new_tokens_limit: int, shown: str = "max_new_tokens") -> None:
    """Refuse a reply length beyond the operator's limit (the same sentence on every entry point)."""
    if params.max_new_tokens is not None and params.max_new_tokens > max_new_tokens_limit:
        raise InvalidParamsError(
            f"{shown} must be at most {max_new_tokens_limit} on this server, not {params.max_new_tokens}.", shown)
