"""Unknown keys and choices, answered in one line: what was typed, the closest valid name, the valid names.

Hydra's own messages for these run to several lines and, for a key, advise appending it
with ``+``, which is wrong for a typo. The errors it raises carry what a better answer
needs: OmegaConf's error holds the node the key was looked up in (its keys are the valid
names), and ``MissingConfigException`` holds the group's options, read from every folder
on the search path (so a ``--config-dir`` adds its choices). No TensorFlow here.
"""

from __future__ import annotations

import difflib

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException


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


def composition_error(err: ConfigCompositionException) -> str | None:
    """The one-line answer to a config Hydra could not compose because of an unknown key or choice, else None."""
    if isinstance(err, MissingConfigException):
        return unknown_choice(err)
    cause = err.__cause__
    return unknown_key(cause) if isinstance(cause, OmegaConfBaseException) else None


def did_you_mean(name: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else ""
