"""Speed settings change how fast a run goes, never what it computes: steps per call,
threads per sweep job, distribution strategy, mixed precision."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, compose_config, run_cli, tiny_config

from dnnexp import config as schema
from dnnexp import backend_setup, speed
from dnnexp.engines import tensorflow as tf_engine
from dnnexp.keras_import import keras
from dnnexp.config import ConfigError, TrainerConfig, validate
from dnnexp.train import train


@pytest.mark.parametrize(
    "batch_size, n_train, setting, expected",
    [
        (32, 55_000, "auto", 50),  # Fashion-MNIST's 1,719 steps per epoch: the measured best at batch 32
        (128, 55_000, "auto", 20),  # 430 steps: and at batch 128
        (512, 64_000, "auto", 5),
        (8192, 64_000, "auto", 1),
        (32, 3_500, "auto", 50),  # mnist_5k's 110 steps: calls of 50, 50 and 10
        (32, 300, "auto", 10),  # never more than the 10 steps of an epoch
        (32, 55_000, 7, 7),
        (32, 300, 100, 10),
    ],
)
def test_steps_per_execution_follows_batch_size_up_to_an_epoch(batch_size, n_train, setting, expected):
    trainer = TrainerConfig(batch_size=batch_size, steps_per_execution=setting)
    assert speed.steps_per_execution(trainer, n_train) == expected


@pytest.mark.parametrize("setting, job_cores, expected", [("auto", 1, 1), ("auto", 2, 1), ("auto", 8, 7), ("auto", 3, 2), (3, 8, 3)])
def test_threads_are_the_jobs_cores_less_one_to_feed_data(setting, job_cores, expected):
    assert backend_setup.thread_count(setting, job_cores) == expected


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], 8),  # a single run, or the basic launcher's jobs one after another: every core
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"], 2),  # 8 cores shared by 3 jobs at once
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"], 1),  # -1: as many jobs as cores
        (["hydra/launcher=ray"], 1),  # Ray reserves 1 CPU per task unless told
        (["hydra/launcher=ray", "+hydra.launcher.ray.remote.num_cpus=4"], 4),
        (["hydra/launcher=ray", "+hydra.launcher.ray.remote.num_cpus=16"], 8),  # never more than the machine's
        (["hydra/launcher=submitit_local"], 1),  # cpus_per_task unset: SLURM's default of 1
        (["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=4"], 4),
    ],
)
def test_job_cores_are_what_the_launcher_gives_each_job(overrides, expected, monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(backend_setup, "cores", lambda: 8)
    HydraConfig.instance().set_config(compose_config(*overrides, return_hydra_config=True))
    try:
        assert backend_setup.job_cores() == expected
    finally:
        HydraConfig.instance().cfg = None


def test_registry_of_strategies_matches_the_config_names():
    assert tuple(tf_engine.STRATEGIES) == schema.STRATEGIES


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.steps_per_execution=0", "trainer.steps_per_execution must be auto or a positive integer, got 0"),
        ("trainer.threads=many", "trainer.threads must be auto or a positive integer, got 'many'"),
        ("trainer.strategy=tpu", "trainer.strategy must be one of default, mirrored, multi_worker; got 'tpu'"),
    ],
)
def test_bad_speed_setting_is_refused_by_name(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(override))


def test_multi_worker_refuses_a_tf_config_without_cluster(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker", "index": 0}}')
    with pytest.raises(ConfigError, match="TF_CONFIG must be JSON with 'cluster' and 'task'"):
        validate(compose_config("trainer.strategy=multi_worker"))


def test_several_steps_per_call_keep_schedule_exact_and_results_unchanged(trained_run, tmp_path):
    # 300 samples / batch 32 = 10 steps per epoch, run as calls of 4, 4 and the 2 left.
    cfg = tiny_config("scheduler=exponential", "scheduler.s=25", "optimizer.lr=0.1", "trainer.epochs=3",
                      "trainer.steps_per_execution=4")
    metrics = train(cfg, tmp_path / "four")
    assert metrics["steps_per_execution"] == 4
    history = pd.read_csv(tmp_path / "four" / "history.csv")
    np.testing.assert_allclose(history["learning_rate"], [0.1 * 0.1 ** (10 * e / 25) for e in (1, 2, 3)], rtol=1e-5)

    one = train(tiny_config("trainer.steps_per_execution=1"), tmp_path / "one")
    _, auto = trained_run  # the same run with the default: all 10 steps of an epoch in one call
    assert auto["steps_per_execution"] == 10 and one["steps_per_execution"] == 1
    for key in ("val_loss", "test_loss", "val_accuracy"):
        assert one[key] == pytest.approx(auto[key], rel=1e-5)


def test_model_is_built_and_compiled_in_the_strategys_scope_with_the_speed_settings():
    from dnnexp.keras_import import tf
    from dnnexp.data import load
    from dnnexp.model import build_model
    from dnnexp.train import compile_phase
    from dnnexp.transfer import Phase

    cfg = tiny_config("trainer.jit_compile=true", "trainer.steps_per_execution=5")
    data = load(cfg.dataset)
    strategy = tf.distribute.MirroredStrategy()  # on a machine without GPUs: one replica, the CPU
    with strategy.scope():
        model = build_model(cfg, data.input_shape, data.n_classes)
    tf_engine.set_determinism(jit_compile=False)  # as after any earlier run in this process
    tf_engine.set_determinism(jit_compile=True)  # else Keras silently drops XLA
    try:
        compile_phase(cfg, model, Phase("train", cfg.trainer.epochs), data)
    finally:
        tf_engine.set_determinism(jit_compile=False)
    with model.distribute_strategy.scope():  # where Keras' fit builds the optimizer
        model.optimizer.build(model.trainable_variables)
    assert model.distribute_strategy is strategy and strategy.num_replicas_in_sync == 1
    assert model.steps_per_execution == 5 and model.jit_compile is True
    assert all(strategy.extended.variable_created_in_scope(v.value) for v in [*model.weights, *model.optimizer.variables])


def test_one_device_mirrored_run_trains_and_saves_a_model_that_reproduces_its_metrics(tmp_path):
    metrics = train(tiny_config("trainer.strategy=mirrored", "optimizer.lr=0.1"), tmp_path)
    assert metrics["replicas"] == 1 and metrics["status"] == "completed"
    assert metrics["val_accuracy"] > 0.2  # ten classes: twice chance, so it learned
    model = keras.models.load_model(tmp_path / "model.keras")
    from dnnexp.data import load

    data = load(tiny_config().dataset)
    predicted = model.predict(data.x_test, verbose=0).argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_mixed_precision_computes_in_float16_with_a_float32_output(tmp_path):
    try:
        metrics = train(tiny_config("trainer.mixed_precision=true", "trainer.epochs=1", "dataset.standardize=true"), tmp_path)
        model = keras.models.load_model(tmp_path / "model.keras")
    finally:
        speed.set_precision(False)
    dense, output = model.get_layer("dense_1"), model.get_layer("output")
    assert (dense.compute_dtype, dense.kernel.dtype) == ("float16", "float32")
    assert output.compute_dtype == "float32"
    assert model.get_layer("standardize").compute_dtype == "float32"  # 1 / std can exceed float16's 65504
    assert metrics["status"] == "completed" and np.isfinite(metrics["val_loss"])


def test_joblib_sweep_gives_each_job_its_share_of_the_cores(tmp_path):
    result = run_cli(
        "-m", *TINY, "trainer.epochs=1", "trainer.seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    threads = [json.loads((tmp_path / job / "metrics.json").read_text())["threads"] for job in ("0", "1")]
    assert threads == [max(1, backend_setup.cores() // 2 - 1)] * 2


def test_pipeline_gives_every_sample_once_per_epoch_in_a_new_seeded_order():
    from dnnexp.engines.tensorflow import pipeline

    x, y = np.arange(10, dtype="float32").reshape(10, 1), np.arange(10)

    def epochs(seed):
        ds = pipeline(x, y, batch_size=4, shuffle_seed=seed)
        return [[batch_y.numpy().tolist() for _, batch_y in ds] for _ in range(3)]

    first = epochs(seed=7)
    for epoch in first:
        assert [len(b) for b in epoch] == [4, 4, 2]
        assert sorted(sum(epoch, [])) == list(range(10))
    assert first[0] != first[1] != first[2]
    assert epochs(seed=7) == first  # the same seed, the same orders
    assert sum(epochs(seed=None)[0], []) == list(range(10))  # validation and test data keep their order


def test_training_arrays_enter_tensorflow_without_a_copy_and_unaligned_ones_are_copied():
    from dnnexp.data import aligned_empty, load, scale
    from dnnexp.engines.tensorflow import as_tensor

    loaded = load(tiny_config().dataset).x_train
    assert loaded.ctypes.data % 64 == 0 and loaded.flags.c_contiguous  # what sharing needs

    (images,) = scale(np.arange(12, dtype=np.uint8).reshape(3, 4))
    shared = as_tensor(images)
    images[0, 0] = 42.0
    assert shared[0, 0] == 42.0  # the same memory, not a copy

    buffer = aligned_empty((68,), np.uint8)
    buffer[:] = np.arange(68)
    unaligned = buffer[4:].view(np.float32)  # 4 bytes past a 64-byte boundary
    np.testing.assert_array_equal(as_tensor(unaligned).numpy(), unaligned)  # a copy, where sharing would abort


def test_tensorflow_import_leaves_the_garbage_collector_on_with_its_objects_frozen():
    import gc
    import importlib

    importlib.import_module("dnnexp.keras_import")  # imported by now in any case
    assert gc.isenabled()  # paused only during the import
    assert gc.get_freeze_count() > 100_000  # TensorFlow's and Keras' objects, out of every later collection's way


def test_input_pipelines_run_on_one_thread_of_their_own_without_the_autotuner():
    # Measured: parallel sweep jobs trained 1.2x slower each with tf.data's defaults (a pool of every core, autotuning).
    from dnnexp.engines.tensorflow import EpochShuffle, pipeline

    x, y = np.zeros((10, 2), dtype=np.float32), np.zeros(10, dtype=np.int64)
    for dataset in (EpochShuffle(x, y, 4, 0).dataset, pipeline(x, y, 4)):
        options = dataset.options()
        assert options.threading.private_threadpool_size == 1 and options.threading.max_intra_op_parallelism == 1
        assert options.autotune.enabled is False


def test_jax_gets_its_backend_and_xla_threads_before_keras_loads(monkeypatch):
    monkeypatch.setattr(backend_setup, "loaded", lambda: None)  # as in a process that has not imported Keras yet
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/dump")
    monkeypatch.setenv(backend_setup.JOB_CORES_VARIABLE, "4")  # a job given 4 cores, as a parent process says
    monkeypatch.setattr(backend_setup, "cores", lambda: 8)
    backend_setup.choose(TrainerConfig(backend="jax"))
    assert os.environ["KERAS_BACKEND"] == "jax"
    # auto with 4 cores for the job: 3 threads, one core left for the input and the loop; the user's
    # own flags stay, after dnnexp's, so they win.
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=3 --xla_dump_to=/tmp/dump"
    backend_setup.choose(TrainerConfig(backend="tensorflow", threads=1))
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
