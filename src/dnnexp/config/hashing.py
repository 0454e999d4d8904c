"""A config's hash, which says whether a run folder holds this config's run, and the first key two configs differ in."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from dnnexp.flat_config import flatten, shown
from dnnexp.config.schema import Config

# Keys that change how a run goes or what it shows, never what it computes: how fast it runs
# (threads, steps per call, the tf.distribute strategy), what it logs (verbose, tensorboard),
# its folder's name, the metric a sweeper reads, the claims a sweep's report checks and the
# experiment trackers it reports to (the whole logger group).
# config_hash leaves them out, so setting one neither trains a finished run again nor misses
# the task-A cache, and a killed run resumes under it; every other key, including any added
# to the schema later, changes the hash.
UNHASHED_KEYS = frozenset({
    "trainer.verbose", "trainer.threads", "trainer.steps_per_execution", "trainer.strategy",
    "task_name", "optimized_metric", "claims", "claims_margin", "logger",
})


def hashed_config(cfg: Config) -> dict[str, Any]:
    """The config as {dotted key: value}, without UNHASHED_KEYS: what decides what a run computes."""
    return json.loads(json.dumps(flatten(dataclasses.asdict(cfg), UNHASHED_KEYS)))  # as a backup's JSON header gives it back


def config_hash(cfg: Config) -> str:
    """Twelve hex digits of the SHA-256 of :func:`hashed_config`.

    metrics.json and a run's backup keep it, so a command pointed at a folder knows whether
    the run there is its own (resume it, or report it finished) or another config's (refuse).
    """
    return hashlib.sha256(json.dumps(hashed_config(cfg), sort_keys=True).encode()).hexdigest()[:12]


def first_difference(here: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The first key whose value differs between two hashed configs, as `key: A here, B in this command`."""
    for key in [*here, *(k for k in wanted if k not in here)]:
        if key not in here or key not in wanted or here[key] != wanted[key]:
            old, new = (shown(c[key]) if key in c else "not set" for c in (here, wanted))
            return f"{key}: {old} here, {new} in this command"
    return "no key differs, yet the config hash does"
