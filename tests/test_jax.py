"""trainer.backend=jax keeps what holds on TensorFlow: the same seed gives the same metrics, schedules give
the formula's rate at every step, a run killed with SIGKILL resumes to the uninterrupted result, and the
gradient diagnostics measure the same quantities.

Keras takes its backend when it is first imported, and this test process runs on TensorFlow, so the JAX
runs go through the command in JAX processes of their own: one driver process (tests/cli_driver.py) for
the runs compared here, and the killed and resumed processes of the resume test.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, run_cli, run_in_process, tiny_config
from test_optim import one_cycle_formula
from test_resume import COMPARED, RESUMABLE, saved_epoch, start_and_kill_mid_run

from dnnexp import backend_setup

pytest.importorskip("jax")

JAX = ["trainer.backend=jax"]
# 300 samples / batch 32 = 10 steps per epoch: calls of 4, 4 and the 2 left.
SCHEDULED = [*TINY, *JAX, "scheduler=exponential", "scheduler.s=25", "optimizer.lr=0.1", "trainer.epochs=3",
             "regularization=dropout", "regularization.rate=0.2"]


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """One JAX compilation cache for this module's processes, as a sweep's jobs share one."""
    folder = tmp_path_factory.mktemp("jax_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory, compilation_cache):
    """The JAX runs this module compares, all in one JAX process: {case: (run folder, driver result)}."""
    root = tmp_path_factory.mktemp("jax_runs")
    cases = {
        "four": [*SCHEDULED, "trainer.steps_per_execution=4"],
        "four_again": [*SCHEDULED, "trainer.steps_per_execution=4"],
        "one": [*SCHEDULED, "trainer.steps_per_execution=1"],
        "schedule": [*TINY, *JAX, "mode=plot_schedule", "scheduler=one_cycle", "optimizer.lr=0.2"],
        "diagnostics": [*TINY, *JAX, "diagnostics=on", "normalization=batchnorm_before"],
        "straight": [*RESUMABLE, *JAX],
        # 10 steps per epoch: epoch 1 at 0.01, then a rate that makes the loss NaN in epoch 2 (at 1e4 the
        # softmax saturates on JAX's initial weights, and Keras' clipped cross-entropy stays finite).
        "diverging": [*TINY, *JAX, "activation=elu", "scheduler=piecewise", "scheduler.boundaries=[10]",
                      "scheduler.values=[0.01,1e30]", "trainer.epochs=3"],
    }
    argv = {name: [*args, f"hydra.run.dir={root / name}"] for name, args in cases.items()}
    (root / "cases.json").write_text(json.dumps(argv))
    command = [sys.executable, str(Path(__file__).parent / "cli_driver.py"), "cases.json", "results.json"]
    subprocess.run(command, cwd=root, check=True, timeout=600, stdout=subprocess.DEVNULL)
    results = json.loads((root / "results.json").read_text())
    for name, result in results.items():
        assert result["code"] == 0, f"{name}: {result['stderr']}"
    return {name: (root / name, result) for name, result in results.items()}


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_jax_run_records_its_backend_and_never_imports_tensorflow(jax_runs):
    for name, (run_dir, result) in jax_runs.items():
        assert result["tensorflow_imported"] is False, name
    metrics = metrics_of(jax_runs["four"][0])
    assert metrics["backend"] == "jax" and metrics["status"] == "completed" and metrics["steps_per_execution"] == 4
    assert metrics["threads"] == backend_setup.thread_count("auto", backend_setup.cores())  # XLA's, set before JAX started


def test_same_seed_gives_identical_metrics_on_jax(jax_runs):
    first, again = metrics_of(jax_runs["four"][0]), metrics_of(jax_runs["four_again"][0])
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_val_accuracy"):
        assert again[key] == first[key]
    columns = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    pd.testing.assert_frame_equal(pd.read_csv(jax_runs["four"][0] / "history.csv")[columns],
                                  pd.read_csv(jax_runs["four_again"][0] / "history.csv")[columns])


def test_steps_run_in_one_call_keep_the_schedule_exact_at_every_step(jax_runs):
    four = pd.read_csv(jax_runs["four"][0] / "history.csv")
    np.testing.assert_allclose(four["learning_rate"], [0.1 * 0.1 ** (10 * e / 25) for e in (1, 2, 3)], rtol=1e-5)
    # Calls of 4 steps compiled as one loop train as 1 step per call does: each step its own rate and dropout mask.
    one = pd.read_csv(jax_runs["one"][0] / "history.csv")
    np.testing.assert_allclose(four[["loss", "val_loss", "learning_rate"]], one[["loss", "val_loss", "learning_rate"]], rtol=1e-5)


def test_schedule_plot_on_jax_gives_the_formulas_rate_at_every_step(jax_runs):
    rows = pd.read_csv(jax_runs["schedule"][0] / "schedule.csv")
    total = 20  # 2 epochs of 10 steps
    cfg = tiny_config("scheduler=one_cycle").scheduler
    expected = [one_cycle_formula(t, 0.2, total, cfg.start_factor, cfg.end_factor, cfg.final_fraction) for t in range(total)]
    assert rows["step"].tolist() == list(range(total))
    np.testing.assert_allclose(rows["learning_rate"], expected, rtol=1e-5, atol=1e-8)


def test_jax_diagnostics_measure_what_tensorflow_measures_on_the_same_weights(jax_runs):
    from dnnexp.keras_import import keras
    from dnnexp.data import load
    from dnnexp.diagnostics import measure

    run_dir, _ = jax_runs["diagnostics"]
    cfg = tiny_config("diagnostics=on", "normalization=batchnorm_before")
    data = load(cfg.dataset)
    model = keras.models.load_model(run_dir / "model.keras")  # the JAX run's final weights, here on TensorFlow
    here = measure(model, data.x_train[: cfg.diagnostics.batch_size], data.y_train[: cfg.diagnostics.batch_size],
                   "sparse_categorical_crossentropy")
    rows = pd.read_csv(run_dir / "diagnostics.csv")
    last = rows[rows["epoch"] == rows["epoch"].max()]
    for layer, values in here.items():
        for metric, value in values.items():
            jax_value = last[(last["layer"] == layer) & (last["metric"] == metric)]["value"].item()
            assert jax_value == pytest.approx(value, rel=1e-4, abs=1e-6), (layer, metric)
    assert set(last["metric"]) == {"grad_norm", "activation_mean", "activation_std", "update_ratio"}


def test_killed_jax_run_resumes_to_the_uninterrupted_result_compiling_nothing_again(jax_runs, tmp_path, compilation_cache):
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, *JAX, f"hydra.run.dir={run_dir}"]
    start_and_kill_mid_run(args, tmp_path, run_dir / "history.csv")
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"
    done = saved_epoch(run_dir)
    assert 1 <= done < 4

    compiled = set(compilation_cache.iterdir())  # the straight run's programs, in the driver
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Same architecture and batch size as the straight run: every program comes from the cache, none is compiled again.
    assert set(compilation_cache.iterdir()) == compiled
    resumed = metrics_of(run_dir)
    assert resumed["resumed_from_epoch"] == done and resumed["backend"] == "jax"
    straight_dir, _ = jax_runs["straight"]
    straight = metrics_of(straight_dir)
    assert {k: resumed[k] for k in COMPARED} == {k: straight[k] for k in COMPARED}
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "history.csv")[columns], pd.read_csv(straight_dir / "history.csv")[columns])


def test_sweep_over_both_backends_trains_each_on_its_own_and_reports_the_backend(tmp_path, compilation_cache):
    # The TensorFlow job runs in the sweep's process (this one); the JAX job needs a process of its own.
    result = run_in_process("-m", *TINY, "trainer.epochs=1", "trainer.backend=tensorflow,jax", f"hydra.sweep.dir={tmp_path}",
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [metrics_of(tmp_path / job)["backend"] for job in ("0", "1")] == ["tensorflow", "jax"]
    report = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(report["trainer.backend"]) == ["jax", "tensorflow"]


def test_programs_after_the_first_compile_once_each_on_their_own_thread(tmp_path):
    """The first epoch waits for one compilation: the programs after the first call's compile beside it."""
    from dnnexp.engines.jax_fused import planned_programs

    run_dir, out = tmp_path / "run", tmp_path / "compiles.json"
    args = [*TINY, *JAX, "trainer.steps_per_execution=4", f"hydra.run.dir={run_dir}"]
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "empty_cache"), "KERAS_BACKEND": "jax"}
    command = [sys.executable, str(Path(__file__).parent / "jax_compiles.py"), str(out), *args]
    subprocess.run(command, cwd=tmp_path, check=True, timeout=300, env={**os.environ, **env},
                   stdout=subprocess.DEVNULL)
    steps = [c for c in json.loads(out.read_text()) if c["function"] in ("jit(fused)", "jit(train_step)", "jit(test_step)")]
    # 300 training samples at batch 32: calls of 4 full batches, and the partial batch of 12; validation 100
    # (32 and 4), test 200 (32 and 8), the training set scored in one batch of 300.
    plan = planned_programs(4, (300, 32), [(100, 32), (100, 32), (200, 32), (300, 1024)])
    assert list(plan) == [("fused", 32), ("train", 12), ("test", 32), ("test", 4), ("test", 8), ("test", 300)]
    functions = [c["function"] for c in steps]
    # Each program once, none compiled twice; the first call's in the main thread, the others beside it.
    assert (functions.count("jit(fused)"), functions.count("jit(train_step)"), functions.count("jit(test_step)")) == (1, 1, 4)
    assert all(c["thread"] == "MainThread" if c["function"] == "jit(fused)" else c["thread"].startswith("dnnexp-compile")
               for c in steps)
    assert metrics_of(run_dir)["status"] == "completed"



def test_two_processes_starting_together_compile_each_program_once_between_them(tmp_path):
    """A parallel sweep's first jobs: one compiles each program, the other loads it from the shared cache."""
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"), "KERAS_BACKEND": "jax"}
    driver = str(Path(__file__).parent / "jax_compiles.py")
    jobs = [subprocess.Popen([sys.executable, driver, str(tmp_path / f"{seed}.json"), *TINY, *JAX, "trainer.steps_per_execution=4",
                              f"trainer.seed={seed}", f"hydra.run.dir={tmp_path / str(seed)}"],
                             cwd=tmp_path, env=env, stdout=subprocess.DEVNULL) for seed in (1, 2)]
    assert [job.wait(timeout=300) for job in jobs] == [0, 0]
    compiled = collections.Counter(
        (c["function"], c["cache"]) for seed in (1, 2) for c in json.loads((tmp_path / f"{seed}.json").read_text())
        if c["function"] in ("jit(fused)", "jit(train_step)", "jit(test_step)"))
    # The run's 6 programs (the fused call, the partial batch, 4 evaluation sizes): each compiled once, loaded once.
    assert compiled == {("jit(fused)", "miss"): 1, ("jit(fused)", "hit"): 1, ("jit(train_step)", "miss"): 1,
                        ("jit(train_step)", "hit"): 1, ("jit(test_step)", "miss"): 4, ("jit(test_step)", "hit"): 4}
    assert [metrics_of(tmp_path / str(seed))["status"] for seed in (1, 2)] == ["completed", "completed"]

def test_a_diverging_jax_run_stops_in_that_epoch_and_keeps_its_last_finite_one(jax_runs):
    run_dir = jax_runs["diverging"][0]
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "diverged" and metrics["diverged_epoch"] == 2 and metrics["epochs_run"] == 2
    assert metrics["best_epoch"] == 1 and np.isfinite(metrics["val_loss"]) and np.isfinite(metrics["test_loss"])
    assert len(pd.read_csv(run_dir / "history.csv")) == 2


NON_FINITE = """
import json
import keras
import numpy as np
from dnnexp.engines.jax import StopOnNonFiniteLoss, prepare_fit

def steps_run(nan_batch, steps_per_execution):
    # 10 batches of 8 per epoch; the inputs of batch ``nan_batch`` (0-based) are NaN, so its loss is.
    x = np.ones((80, 3), np.float32)
    x[nan_batch * 8 : (nan_batch + 1) * 8] = np.nan
    y = np.zeros(80, np.int32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=steps_per_execution)
    prepare_fit(model)
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[StopOnNonFiniteLoss()])
    return {"steps": int(model.optimizer.iterations.numpy()), "epochs": len(history.history["loss"])}

print(json.dumps({"mid_epoch": steps_run(5, 1), "last_call": steps_run(9, 1), "calls_of_two": steps_run(2, 2)}))
"""


def test_a_diverging_jax_run_stops_one_call_after_the_loss_stopped_being_finite(tmp_path):
    """The loss of a call is read while the next call is queued; the epoch's end reads the last call's."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", NON_FINITE], capture_output=True, text=True, timeout=120, env=env, check=True)
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["mid_epoch"] == {"steps": 7, "epochs": 1}  # the 6th step's loss is NaN: the 7th runs, then it stops
    assert found["last_call"] == {"steps": 10, "epochs": 1}  # the epoch's last call: stopped at the epoch's end
    assert found["calls_of_two"] == {"steps": 6, "epochs": 1}  # NaN in the 2nd call (steps 3-4): the 3rd runs
