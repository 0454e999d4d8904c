"""The one config flattener: hashing (config/hashing.py), the experiment trackers' params (loggers.py) and the
results' rows (results/runs.py) all read a config through it. Outside the config package, so the report,
which never loads Hydra, imports only this."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any


def flatten(tree: Mapping[str, Any], skip: Collection[str] = (), prefix: str = "") -> dict[str, Any]:
    """A nested config -> {dotted key: value} (``{"optimizer.lr": 0.01, ...}``), one entry per leaf.

    A key in ``skip`` is left out, with everything under it (``"logger"`` drops the whole group).
    An empty group adds nothing. Values are kept as they are; :func:`shown` writes one as text.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name in skip:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten(value, skip, f"{name}."))
        else:
            flat[name] = value
    return flat


def shown(value: Any) -> str:
    """A value as the command line writes it: relu, 0.05, true, null, [8, 9]."""
    return value if isinstance(value, str) else json.dumps(value)
