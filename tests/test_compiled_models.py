"""A job that runs after other jobs in the same process trains the model they compiled, and gives the metrics and
history the same job gives run alone (same seed), on both backends.

The sweeps run `trainer.seed=1,2`: job 2 differs from job 1 by its seed only, so it trains job 1's compiled
model; the lone run of seed 2 is a process of its own that compiles its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, run_cli, run_in_process

# Differ from run to run however the run goes: wall-clock figures, and the thread pools TensorFlow took in
# this test process, sized by whichever earlier test started TensorFlow here (engines.tensorflow.configure).
TIMINGS = {"train_seconds", "seconds_per_epoch", "threads"}
# Dropout (its seed states), a schedule read from the step count, momentum's slots: what a reset must get right.
ARGS = [*TINY, "trainer.epochs=3", "regularization=dropout", "regularization.rate=0.2", "scheduler=exponential",
        "scheduler.s=25", "optimizer.momentum=0.9"]


def metrics_of(run_dir: Path) -> dict:
    found = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in found.items() if k not in TIMINGS}


def history_of(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def assert_same_run(after_others: Path, alone: Path) -> None:
    assert metrics_of(after_others) == metrics_of(alone)
    pd.testing.assert_frame_equal(history_of(after_others), history_of(alone), check_exact=True)


def test_a_tensorflow_job_after_others_trains_their_compiled_model_and_gives_the_lone_runs_results(tmp_path):
    from dnnexp import compiled_models

    sweep = tmp_path / "sweep"
    result = run_in_process("-m", *ARGS, "trainer.seed=1", f"hydra.sweep.dir={sweep / 'first'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    kept = compiled_models.KEPT[0].model
    result = run_in_process("-m", *ARGS, "trainer.seed=3,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert compiled_models.KEPT[0].model is kept  # seeds 3 and 2 trained seed 1's model, compiled once

    alone = run_cli(*ARGS, "trainer.seed=2", f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert_same_run(sweep / "1", tmp_path / "alone")


def test_a_jax_job_after_others_runs_their_programs_and_gives_the_lone_runs_results(tmp_path):
    """The sweep compiles each program once, for its first job; its later jobs compile nothing."""
    pytest.importorskip("jax")
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"), "KERAS_BACKEND": "jax"}
    driver = str(Path(__file__).parent / "jax_compiles.py")
    args = [*ARGS, "trainer.backend=jax", "trainer.steps_per_execution=4"]
    runs = {"sweep": ["-m", *args, "trainer.seed=1,3,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            "alone": [*args, "trainer.seed=2", f"hydra.run.dir={tmp_path / 'alone'}"]}
    for name, argv in runs.items():
        subprocess.run([sys.executable, driver, str(tmp_path / f"{name}.json"), *argv], cwd=tmp_path, env=env,
                       check=True, timeout=600, stdout=subprocess.DEVNULL)
    steps = ("jit(fused)", "jit(train_step)", "jit(test_step)")
    compiled = {name: sorted(c["function"] for c in json.loads((tmp_path / f"{name}.json").read_text()) if c["function"] in steps)
                for name in runs}
    assert compiled["sweep"] == compiled["alone"] and compiled["alone"]  # three jobs, the programs of one
    assert_same_run(tmp_path / "sweep" / "2", tmp_path / "alone")


def test_a_job_that_differs_by_more_than_its_seed_compiles_its_own_model(tmp_path):
    """trainer.steps_per_execution changes no result (the config hash leaves it out) but does change the compiled
    steps: a sweep over it must train each job at its own value."""
    sweep = tmp_path / "sweep"
    result = run_in_process("-m", *ARGS, "trainer.steps_per_execution=1,4", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads((sweep / str(job) / "metrics.json").read_text())["steps_per_execution"] for job in (0, 1)] == [1, 4]
