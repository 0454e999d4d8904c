"""Unknown keys and choices, wrong types and unquoted values, answered in one line: what was typed and what is allowed.

Hydra's own messages for these run to several lines and, for a key, advise appending it
with ``+``, which is wrong for a typo. The errors it raises carry what a better answer
needs: OmegaConf's error holds the node the key was looked up in (its keys are the valid
names), and ``MissingConfigException`` holds the group's options, read from every folder
on the search path (so a ``--config-dir`` adds its choices). A value of the wrong type for a
typed group (regularization) is named with the type its field declares; an override Hydra's
lexer cannot read because a value needs quotes is answered with the quoted form. No TensorFlow here.
"""

from __future__ import annotations

import difflib
import typing

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def unknown_key(err: OmegaConfBaseException) -> str | None:
    """``dataset.standardise is not a key of dataset; did you mean dataset.standardize? (keys: ...)``.

    None if ``err`` is not about a key missing from a dict-like node.
    """
    parent, key, full_key = getattr(err, "parent_node", None), getattr(err, "key", None), getattr(err, "full_key", None)
    if not isinstance(err, (ConfigAttributeError, ConfigKeyError)) or not isinstance(parent, DictConfig):
        return None
    if not isinstance(key, str) or not full_key or key in parent:
        return None
    keys = sorted(str(k) for k in parent.keys())
    prefix = full_key[: -len(key)]  # "dataset." for dataset.standardise, "" at the top
    where = f"a key of {prefix.rstrip('.')}" if prefix else "a top-level key or group"
    return f"{full_key} is not {where}{did_you_mean(key, keys, prefix)} (keys: {', '.join(keys)})"


def unknown_choice(err: MissingConfigException) -> str | None:
    """``activation=relux is not a choice; did you mean relu? (choices: ...)``.

    None if ``err`` is not about an option of an existing group (e.g. a missing primary config).
    """
    if not err.missing_cfg_file or "/" not in err.missing_cfg_file or not err.options:
        return None
    group, name = err.missing_cfg_file.rsplit("/", 1)
    choices = sorted(err.options)
    return f"{group}={name} is not a choice{did_you_mean(name, choices)} (choices: {', '.join(choices)})"


def wrong_type(err: ValidationError) -> str:
    """``regularization.rate must be a number, got 'abc'``: the type the field's dataclass declares."""
    key = getattr(err, "full_key", None) or "config"
    value = getattr(err, "value", None)
    shown = repr(value) if isinstance(value, str) else str(value)
    return f"{key} must be {type_name(getattr(err, 'object_type', None), getattr(err, 'key', None))}, got {shown}"


def type_name(schema: object, key: object) -> str:
    """What field ``key`` of dataclass ``schema`` takes, in words: "an integer", "a number", ..."""
    hints = typing.get_type_hints(schema) if isinstance(schema, type) and isinstance(key, str) else {}
    if key not in hints:
        return "a value of the right type"
    allowed = [t for t in typing.get_args(hints[key]) if t is not type(None)] or [hints[key]]
    return TYPE_NAMES.get(allowed[0], getattr(allowed[0], "__name__", str(allowed[0])))


def unquoted_value(err: OverrideParseException) -> str | None:
    """An override that needs quotes: a word the shell split off a value with spaces, or a value with non-ASCII letters."""
    override = err.override
    if "=" not in override and override.strip():
        return f"{override} is not KEY=VALUE; a value with spaces must be quoted as one argument, as in 'task_name=my run'"
    key, _, value = override.partition("=")
    if not override.isascii() and key.isascii() and '"' not in value and "'" not in value:
        return f"{override}: a value with non-ASCII letters must be quoted for Hydra, as in '{key}=\"{value}\"'"
    return None


def composition_error(err: ConfigCompositionException | OverrideParseException) -> str | None:
    """The one-line answer to a config Hydra could not compose because of an unknown key or choice, a value of
    the wrong type, or an override it could not parse because it needs quotes; else None."""
    if isinstance(err, OverrideParseException):
        return unquoted_value(err)
    if isinstance(err, MissingConfigException):
        return unknown_choice(err)
    cause = err.__cause__
    if isinstance(cause, ValidationError):
        return wrong_type(cause)
    return unknown_key(cause) if isinstance(cause, OmegaConfBaseException) else None


def did_you_mean(name: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else ""
