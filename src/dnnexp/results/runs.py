"""Finding run folders and reading each into one row: its config flattened, its overrides, metrics and status.

Never fails on a folder that is empty, half-written or corrupt: each becomes a row whose
status says what is wrong with it.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from dnnexp.files import BACKUP, HISTORY, METRICS, SOURCE_CONFIG
from dnnexp.flat_config import flatten
from dnnexp.folder_lock import lock_held
from dnnexp.results.columns import DEFAULT_METRICS

CLAIMS_KEY = "claims"  # a config's claims (results/claims.py): read apart, not a column
MARGIN_KEY = "claims_margin"  # the practical margin a sweep gives its claims: read apart too
CLAIMS_SWEEPER = "ClaimsSweeper"  # the class name ending hydra.sweeper._target_ in a claims sweeper's multirun.yaml
SWEEP_FILE = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser: 100 runs in well under a second


@dataclass
class Runs:
    """One row per run folder, and which of its columns are the overrides a user typed."""

    frame: pd.DataFrame
    params: list[str] = field(default_factory=list)  # override keys, in the order first typed
    metrics: list[str] = field(default_factory=list)  # keys found in the runs' metrics.json
    claims: list[str] = field(default_factory=list)  # the claims their configs state (a preset's ``claims:``)
    margin: float | None = None  # their configs' claims_margin (the first one set)
    design: tuple[int, int] | None = None  # (seeds_per_round, max_seeds) when the runs are one claims sweeper's sweep

    def summary(self) -> pd.DataFrame:
        """summary.csv: one row per run, every override, then status and all metrics, then the folder."""
        return self.frame[[*self.params, "status", *self.metrics, "error", "run"]]


def find_run_dirs(paths: Iterable[Path], include_pretrained: bool = False) -> list[Path]:
    """Every run folder at or under ``paths``: a folder with ``.hydra/`` or a ``metrics.json``.

    Transfer learning's task-A caches (``transfer.cache_dir``, ``outputs/pretrained/<hash>``)
    are models a comparison reuses, not variants of it: they are left out unless
    ``include_pretrained``, or unless the path given is the cache folder or one cache itself.
    """
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if _is_run_dir(path):
            found[path] = None
            continue
        candidates = [marker.parent for marker in sorted(path.rglob(".hydra"))]
        candidates += [metrics.parent for metrics in sorted(path.rglob(METRICS))]
        for run_dir in candidates:
            if include_pretrained or run_dir.parent == path or not is_pretrained(run_dir):
                found[run_dir] = None
    return sorted(found, key=_natural_key)


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / METRICS).is_file()


def is_pretrained(run_dir: Path) -> bool:
    """A task-A cache that transfer.pretrained_task_a wrote: its own config file and no Hydra folder."""
    return (run_dir / SOURCE_CONFIG).is_file() and not (run_dir / ".hydra").is_dir()


def _natural_key(path: Path) -> list[Any]:
    # Job folders are numbered: 2 before 10.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def load_runs(paths: Iterable[Path], finished: bool = False, include_pretrained: bool = False) -> Runs:
    """Read every run under ``paths``; missing jobs of a sweep become rows with status ``missing``.

    ``finished`` says the sweep is over (the multirun-end callback): a run without
    metrics then is ``incomplete`` or ``interrupted`` (it crashed or was killed) instead of ``running``.
    ``include_pretrained`` keeps transfer learning's task-A caches (see :func:`find_run_dirs`).
    """
    paths = [Path(p) for p in paths]
    run_dirs = find_run_dirs(paths, include_pretrained)
    rows, params, metrics, claims, margins = [], {}, {}, {}, []
    for run_dir in run_dirs:
        row, overrides, result = read_run(run_dir, finished)
        claims.update(dict.fromkeys(row.pop(CLAIMS_KEY, None) or ()))
        margins.append(row.pop(MARGIN_KEY, None))
        rows.append(row)
        params.update(dict.fromkeys(overrides))
        metrics.update(dict.fromkeys(k for k in result if k not in ("status", "error")))
    fill_choices(rows, list(params))
    rows += [{"status": "missing", "run": str(d)} for d in missing_jobs(paths, run_dirs)]
    frame = pd.DataFrame(rows)
    for column in ("status", "run", "error", *DEFAULT_METRICS):
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    metrics.update(dict.fromkeys(DEFAULT_METRICS))
    margin = next((m for m in margins if m is not None), None)
    sweeps = {d.parent for d in run_dirs if (d.parent / SWEEP_FILE).is_file()}
    design = read_design(sweeps.pop()) if len(sweeps) == 1 else None
    return Runs(frame, [p for p in params if p in frame], list(metrics), list(claims), margin, design)


def read_design(sweep_dir: Path) -> tuple[int, int] | None:
    """(seeds_per_round, max_seeds) of a claims sweeper's sweep (from its multirun.yaml), None for any other sweeper."""
    sweeper = _get(_read_yaml(Path(sweep_dir) / SWEEP_FILE), "hydra", "sweeper")
    if not isinstance(sweeper, dict) or not str(sweeper.get("_target_", "")).endswith(CLAIMS_SWEEPER):
        return None
    try:
        return int(sweeper["seeds_per_round"]), int(sweeper["max_seeds"])
    except (KeyError, TypeError, ValueError):
        return None


def read_run(run_dir: Path, finished: bool = False) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """One run folder -> (row, the override keys it was started with, its result). Never raises on bad files."""
    hydra_dir = run_dir / ".hydra"
    config = _read_yaml(hydra_dir / "config.yaml")
    overrides = _parse_overrides(_read_yaml(hydra_dir / "overrides.yaml"))
    config = config if isinstance(config, dict) else {}
    claims = config.pop(CLAIMS_KEY, None)
    margin = config.pop(MARGIN_KEY, None)
    row = {key: str(value) if isinstance(value, list) else value for key, value in flatten(config).items()}  # lists as text
    if isinstance(claims, list):
        row[CLAIMS_KEY] = [str(c) for c in claims]
    if isinstance(margin, (int, float)) and not isinstance(margin, bool):
        row[MARGIN_KEY] = float(margin)
    for key, value in overrides.items():  # a group choice (activation=elu) or a key no config shows (+experiment)
        row.setdefault(key, value)
    result = _read_result(run_dir, finished)
    row.update(result)
    row["run"] = str(run_dir)
    return row, list(overrides), result


def fill_choices(rows: list[dict[str, Any]], params: list[str]) -> None:
    """Give runs that did not override a group (``activation``) the option they ran with.

    Only Hydra's hydra.yaml knows it (``hydra.runtime.choices``); it is read for just
    those runs, because parsing it for every run would take most of a report's second.
    """
    for row in rows:
        absent = [p for p in params if p not in row]
        if absent:
            hydra = _read_yaml(Path(row["run"]) / ".hydra" / "hydra.yaml")
            choices = _get(hydra, "hydra", "runtime", "choices") or {}
            row.update({p: choices[p] for p in absent if p in choices})


def _read_result(run_dir: Path, finished: bool) -> dict[str, Any]:
    try:
        metrics = json.loads((run_dir / METRICS).read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
        metrics.setdefault("status", "completed")
        return metrics
    except FileNotFoundError:
        return {"status": _unfinished_status(run_dir, finished), **_progress(run_dir)}
    except (OSError, ValueError) as err:
        return {"status": "corrupt", "error": f"{METRICS}: {err}", **_progress(run_dir)}


def _unfinished_status(run_dir: Path, finished: bool) -> str:
    """A run without metrics.json: running, or, once no live process holds its folder (a
    run's own, a job's sweep folder), interrupted (its backup lets the same command resume
    it) or incomplete. Folders written before dnnexp locked them count as running.
    """
    held = [lock_held(folder) for folder in (run_dir, run_dir.parent)]
    if not finished and (True in held or held == [None, None]):
        return "running"
    return "interrupted" if (run_dir / BACKUP).exists() else "incomplete"


def _progress(run_dir: Path) -> dict[str, Any]:
    """How far a run without metrics.json got, from the epochs its history.csv already holds."""
    try:
        with open(run_dir / HISTORY, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        accuracies = [float(r["val_accuracy"]) for r in rows]
    except (OSError, KeyError, ValueError, TypeError):
        return {}
    finite = [a for a in accuracies if math.isfinite(a)]
    return {"epochs_run": len(rows), **({"best_val_accuracy": max(finite)} if finite else {})}


def missing_jobs(paths: list[Path], run_dirs: list[Path]) -> list[Path]:
    """Numbered job folders of a sweep that are empty, or absent although later jobs exist (deleted or never written)."""
    present = set(run_dirs)
    missing = []
    for sweep in {p for p in paths if (p / SWEEP_FILE).is_file()} | {d.parent for d in run_dirs if (d.parent / SWEEP_FILE).is_file()}:
        numbers = {int(d.name) for d in present if d.parent == sweep and d.name.isdigit()}
        empty = {int(d.name) for d in sweep.iterdir() if d.name.isdigit() and d not in present}
        missing += [sweep / str(n) for n in range(max(numbers | empty, default=-1) + 1) if n not in numbers]
    return sorted(missing, key=_natural_key)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError):
        return None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _parse_overrides(overrides: Any) -> dict[str, str]:
    """Hydra override strings -> {key: value}, without Hydra's prefixes (+, ++, ~) and its own hydra.* keys."""
    parsed = {}
    for text in overrides if isinstance(overrides, list) else []:
        key, _, value = str(text).partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith("hydra"):
            parsed[key] = value
    return parsed


def sweep_command(overrides: dict[str, list[str]]) -> str:
    """The command that started a sweep, from Hydra's ``hydra.overrides`` (task and hydra ones)."""
    hydra = [o for o in overrides.get("hydra") or [] if not str(o).startswith("hydra.mode=")]
    return " ".join(["dnnexp", "-m", *map(str, hydra), *map(str, overrides.get("task") or [])])


def read_sweep_command(sweep_dir: Path) -> str | None:
    """The command that started the sweep in ``sweep_dir`` (from its multirun.yaml), None if it is not a sweep folder."""
    overrides = _get(_read_yaml(Path(sweep_dir) / SWEEP_FILE), "hydra", "overrides")
    return sweep_command(overrides) if isinstance(overrides, dict) else None
