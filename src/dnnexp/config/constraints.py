"""What a config key allows, declared next to its field, and the one walker that checks it.

As scikit-learn's ``_parameter_constraints`` (``Interval``, ``StrOptions``): a field of the
schema is ``setting(default, meaning, *allowed)``, and :func:`check_fields` turns the first
value a constraint refuses into one line with the command-line key, the value and what is
allowed (``regularization.rate must be in [0, 1), got 1.5``). The rules that span several
fields are each dataclass's ``check`` method, which the walker calls after its fields.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A config value a user set is not allowed; the message says which and why."""


@dataclass(frozen=True)
class Interval:
    """A number in [low, high]; ``closed`` says which ends belong to it: both, left, right or neither. NaN never does."""

    low: float
    high: float = math.inf
    closed: str = "both"

    def __str__(self) -> str:
        low, high = ("[" if self.closed in ("both", "left") else "("), ("]" if self.closed in ("both", "right") else ")")
        return f"{low}{self.low}, {self.high}{high}"

    def check(self, key: str, value: float) -> None:
        low_in, high_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        bad_low = value < self.low if low_in else value <= self.low
        bad_high = value > self.high if high_in else value >= self.high
        if bad_low or bad_high or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(f"{key} must be in {self}, got {value}")


POSITIVE = Interval(0, math.inf, "neither")
FRACTION = Interval(0, 1, "left")  # [0, 1): a rate, a momentum, a beta
SEED = Interval(0, 2**32 - 1)  # what NumPy's and Keras' seeds take


@dataclass(frozen=True)
class OneOf:
    """One of a list of names."""

    names: tuple[str, ...]

    def __str__(self) -> str:
        return f"one of {', '.join(self.names)}"

    def check(self, key: str, value: Any) -> None:
        if value not in self.names:
            raise ConfigError(f"{key} must be {self}; got {value!r}")


@dataclass(frozen=True)
class KerasName:
    """One of dnnexp's names, or any other name a Keras ``get`` resolves (a user's YAML adds a choice without code)."""

    ours: tuple[str, ...]
    keras: tuple[str, ...]
    resolver: str

    def __str__(self) -> str:
        others = [n for n in self.keras if n not in self.ours][:3]
        return f"one of {', '.join(self.ours)}, or any other identifier {self.resolver} resolves (e.g. {', '.join(others)})"

    def check(self, key: str, value: str) -> None:
        if value not in self.ours and value not in self.keras:
            raise ConfigError(f"{key} must be {self}; got {value!r}")


@dataclass(frozen=True)
class Satisfies:
    """A value ``test`` accepts, described to the user as ``what``."""

    what: str
    test: Callable[[Any], bool]

    def __str__(self) -> str:
        return self.what

    def check(self, key: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(f"{key} must be {self.what}, got {value!r}")


@dataclass(frozen=True)
class Each:
    """Every entry of a list satisfies ``constraint``."""

    constraint: Any

    def __str__(self) -> str:
        return f"each {self.constraint}"

    def check(self, key: str, value: list) -> None:
        for entry in value:
            self.constraint.check(key, entry)


def is_count(value: Any) -> bool:
    """A positive integer (true and false are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def setting(default: Any, meaning: str, *allowed: Any) -> Any:
    """A schema field: its default, what it means (one line) and the constraints its value must meet.

    None is always allowed where the field's type allows it: it means "not set" (Keras' default, the whole run, ...).
    """
    metadata = {"meaning": meaning, "allowed": allowed}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def described(node: type, prefix: str = "") -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, allowed, meaning) of every field of dataclass ``node`` and the groups in it: the schema's reference."""
    rows = []
    hints = typing.get_type_hints(node)
    for f in dataclasses.fields(node):
        kind = hints[f.name]
        inner = [t for t in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(t)]
        if inner:
            rows += described(inner[0], f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        allowed = "; ".join(str(c) for c in f.metadata.get("allowed", ()))
        rows.append((f"{prefix}{f.name}", _type_text(kind), _yaml_text(default), allowed, f.metadata.get("meaning", "")))
    return rows


def _type_text(kind: Any) -> str:
    if kind is Any:
        return "any"
    return str(kind).replace("typing.", "") if typing.get_args(kind) else kind.__name__


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def check_fields(node: Any, prefix: str = "") -> None:
    """Check every field of ``node`` against its constraints, depth first, then the rules of ``node.check()``."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{prefix}{f.name}.")
        elif value is not None:
            for constraint in f.metadata.get("allowed", ()):
                constraint.check(f"{prefix}{f.name}", value)
    if hasattr(node, "check"):
        node.check()
