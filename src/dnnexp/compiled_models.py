"""The compiled model of this process's last job, kept for the next job that differs from it only by its seed.

Keras traces (TensorFlow) or compiles (JAX) a model's training and evaluation steps at its
first fit and evaluation, which is most of a short job's time. The jobs of a sweep over seeds
build the same network with other initial weights, so a job's compiled model is kept and the
next job of the same config but its seed trains it instead of compiling its own:

- the job builds its network as a job run alone does (the same seed draws the same initial
  weights and dropout seeds, in the same order),
- every variable of that network (``model.variables``: weights, batch norm's statistics,
  dropout's seed states) is copied into the kept model,
- the kept optimizer's variables (step count, learning rate, slots) go back to the values
  they had before the first job's first step, and the metrics are reset.

Its steps then run the programs the first job traced, from exactly the values a job run alone
starts from, and give the same history and metrics (tests/test_compiled_models.py). Keras' public API
does all of it: ``model.variables``, ``optimizer.build`` / ``optimizer.variables``,
``Variable.assign``, ``model.reset_metrics``.

Only the last config is kept: Hydra's sweepers vary the last override fastest, so a sweep over
seeds runs them one after the other, and a large model is not held twice. Only runs of one
phase from scratch on the default strategy take part: a transfer run recompiles per phase.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from dnnexp.keras_import import keras
from dnnexp.config import Config
from dnnexp.flat_config import flatten


@dataclasses.dataclass
class Kept:
    key: str
    model: keras.Model
    optimizer_start: list[np.ndarray]  # the optimizer's variables before its first step


KEPT: list[Kept] = []  # at most one: the last compiled model that may be reused


def key(cfg: Config) -> str:
    """What the traced steps depend on: the whole config but the seed. Not config_hash, which leaves out keys
    that change how a run is compiled but not what it computes (trainer.steps_per_execution)."""
    return json.dumps(flatten(dataclasses.asdict(cfg), {"trainer.seed"}), sort_keys=True, default=str)


def takes_part(cfg: Config) -> bool:
    return cfg.transfer.name == "none" and cfg.trainer.strategy == "default"


def reuse(cfg: Config, built: keras.Model) -> keras.Model:
    """The model this job trains: the kept one, holding ``built``'s state, if it was compiled for this config
    but its seed; else ``built`` itself."""
    kept = KEPT[0] if KEPT and takes_part(cfg) and KEPT[0].key == key(cfg) else None
    if kept is None or not same_layout(kept.model.variables, built.variables):
        return built
    for variable, source in zip(kept.model.variables, built.variables):
        variable.assign(source.value)
    for variable, value in zip(kept.model.optimizer.variables, kept.optimizer_start):
        variable.assign(value)
    kept.model.reset_metrics()
    return kept.model


def is_compiled_for(cfg: Config, model: keras.Model) -> bool:
    """Whether ``model`` is the kept model of ``cfg``'s config, compiled already (``reuse`` returned it)."""
    return bool(KEPT) and KEPT[0].model is model and KEPT[0].key == key(cfg)


def keep(cfg: Config, model: keras.Model) -> None:
    """Keep ``model``, just compiled, for the next job: its optimizer's variables are made now, with their first values."""
    KEPT.clear()
    if takes_part(cfg):
        model.optimizer.build(model.trainable_variables)
        KEPT.append(Kept(key(cfg), model, [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]))


def same_layout(kept: list, built: list) -> bool:
    return len(kept) == len(built) and all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(kept, built))
