"""A composed config -> the typed :class:`Config`, or ConfigError naming the first bad key, its value and what is allowed.

In order: interpolations (``${oc.env:HOME}``) are resolved, so their values are checked like
typed ones; the Keras groups' extra keys move into ``args``; OmegaConf merges the result into
the schema, refusing wrong types and unknown keys; then every field meets its constraints and
every dataclass its ``check`` (constraints.check_fields), and every Keras argument its
object's signature (keras_args). No TensorFlow here.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError, ConfigKeyError, InterpolationResolutionError, OmegaConfBaseException, ValidationError,
)

from dnnexp.config.constraints import ConfigError, check_fields
from dnnexp.config.keras_args import TYPE_NAMES, check_arguments, collect_arguments
from dnnexp.config.schema import ActivationConfig, Config, InitializerConfig, OptimizerConfig
from dnnexp.typos import unknown_key

# The groups whose YAMLs name a Keras object and may pass it any argument.
KERAS_GROUPS = {"activation": ActivationConfig, "initializer": InitializerConfig, "optimizer": OptimizerConfig}


def validate(cfg: DictConfig) -> Config:
    """Return the typed config, or raise ConfigError naming the first bad key."""
    user = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    interpolated = _interpolations(user)
    try:
        user = collect_arguments(_resolved(user, interpolated), KERAS_GROUPS)
        typed = OmegaConf.merge(OmegaConf.structured(Config), user)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe_type_error(err, interpolated)) from None
    config: Config = OmegaConf.to_object(typed)  # type: ignore[assignment]
    check_fields(config)
    for group in KERAS_GROUPS:
        check_arguments(group, getattr(config, group))
    return config


def _interpolations(node: Any, prefix: str = "") -> dict[str, str]:
    """{dotted key: its ${...} text} for every interpolated value in the config, as the user wrote it."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        items = [(f"{prefix}{key}", value) for key, value in node.items()]
    elif isinstance(node, list):
        items = [(f"{prefix.rstrip('.')}[{i}]", value) for i, value in enumerate(node)]
    else:
        return {}
    found: dict[str, str] = {}
    for key, value in items:
        if isinstance(value, str) and "${" in value:
            found[key] = value
        else:
            found.update(_interpolations(value, f"{key}."))
    return found


def _resolved(user: DictConfig, interpolated: dict[str, str]) -> DictConfig:
    """A copy with every ${...} replaced by its value, or ConfigError naming the one that cannot be resolved."""
    if not interpolated:
        return user
    user = copy.deepcopy(user)
    try:
        OmegaConf.resolve(user)
    except InterpolationResolutionError as err:
        key = getattr(err, "full_key", None) or "config"
        reason = str(err).splitlines()[0]
        cause = err.__cause__
        if isinstance(cause, KeyError) and cause.args:
            reason = str(cause.args[0])
        raise ConfigError(f"{key}={interpolated.get(key, '${...}')} cannot be resolved ({reason}); "
                          f"{key} must be {_expected_type(key)}") from None
    return user


def _describe_type_error(err: OmegaConfBaseException, interpolated: dict[str, str]) -> str:
    key = getattr(err, "full_key", None) or "config"
    msg = str(err).splitlines()[0]
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key(err) or f"{key} is not a known key ({msg})"
    if isinstance(err, ValidationError):
        value = getattr(err, "value", None)
        shown = repr(value) if isinstance(value, str) else str(value)
        source = f" (from {interpolated[key]})" if key in interpolated else ""
        return f"{key} must be {_expected_type(key)}, got {shown}{source}"
    return f"{key}: {msg}"


def _expected_type(full_key: str) -> str:
    node: Any = Config
    for part in full_key.split("."):
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            return "a value of the right type"
        node = hints[part]
    allowed = [t for t in typing.get_args(node) if t is not type(None)] or [node]
    return TYPE_NAMES.get(allowed[0], getattr(allowed[0], "__name__", str(allowed[0])))
