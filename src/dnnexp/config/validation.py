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
from dnnexp.config.keras_args import check_arguments, collect_arguments
from dnnexp.config.schema import ActivationConfig, Config, InitializerConfig, OptimizerConfig
from dnnexp.typos import type_name, unknown_key, wrong_type

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


# The keys a whole sweep shares that its sweeper reads before any job has checked its own config.
SWEEP_KEYS = ("claims_margin",)


def validate_sweep(cfg: DictConfig) -> None:
    """Raise ConfigError, worded as validate words it, naming the first bad key of SWEEP_KEYS in a multirun's config.

    Each job of a sweep validates its own config; the claims sweeper reads claims_margin before
    any job starts, so a bad margin is refused at the door of the whole command.
    """
    validate(OmegaConf.create({key: cfg[key] for key in SWEEP_KEYS if key in cfg}))


def _interpolations(node: Any, prefix: str = "") -> dict[str, str]:
    """{dotted key: its ${...} text} for every interpolated value in the config (list entries as ``key.0``)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    found: dict[str, str] = {}
    for key, value in items:
        if isinstance(value, str) and "${" in value:
            found[f"{prefix}{key}"] = value
        else:
            found.update(_interpolations(value, f"{prefix}{key}."))
    return found


def _resolved(user: DictConfig, interpolated: dict[str, str]) -> DictConfig:
    """A copy with every ${...} replaced by its value, or ConfigError naming the first that cannot be resolved."""
    if not interpolated:
        return user
    for key, text in interpolated.items():
        try:
            OmegaConf.select(user, key, throw_on_resolution_failure=True)
        except InterpolationResolutionError as err:
            reason = str(err).splitlines()[0].split(": ", 1)[-1].strip('"')
            raise ConfigError(f"{key}={text} cannot be resolved ({reason}); {key} must be {_expected_type(key)}") from None
    user = copy.deepcopy(user)
    OmegaConf.resolve(user)
    return user


def _describe_type_error(err: OmegaConfBaseException, interpolated: dict[str, str]) -> str:
    key = getattr(err, "full_key", None) or "config"
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key(err) or f"{key} is not a known key ({str(err).splitlines()[0]})"
    if isinstance(err, ValidationError):
        return wrong_type(err) + (f" (from {interpolated[key]})" if key in interpolated else "")
    return f"{key}: {str(err).splitlines()[0]}"


def _expected_type(full_key: str) -> str:
    """What the schema's field at ``full_key`` takes, in words."""
    *groups, key = full_key.split(".")
    node: Any = Config
    for part in groups:
        node = typing.get_type_hints(node).get(part) if dataclasses.is_dataclass(node) else None
        node = next((t for t in typing.get_args(node) if dataclasses.is_dataclass(t)), node)  # X | None -> X
    return type_name(node, key)
