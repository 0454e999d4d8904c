"""One run: load the data, build the model and optimizer, fit, evaluate, write the run's files."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dnnexp import data as datasets
from dnnexp import runtime
from dnnexp.backend import keras, tf
from dnnexp.config import Config
from dnnexp.files import MODEL, TENSORBOARD, write_history, write_metrics
from dnnexp.model import build_model, loss_for
from dnnexp.optim import build_optimizer, schedule_callbacks


def train(cfg: Config, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Train one configuration and write history.csv, metrics.json and model.keras into ``run_dir``."""
    run_dir = Path(run_dir)
    console = console or Console(quiet=not cfg.trainer.verbose)
    threads = runtime.configure_threads(cfg.trainer.threads)  # before TensorFlow's runtime starts
    strategy = runtime.build_strategy(cfg.trainer.strategy)
    runtime.set_precision(cfg.trainer.mixed_precision)
    runtime.set_determinism(cfg.trainer.jit_compile)
    keras.utils.set_random_seed(cfg.trainer.seed)

    data = datasets.load(cfg.dataset)
    steps_per_call = runtime.steps_per_execution(cfg.trainer, len(data.x_train))
    model = compiled_model(cfg, data, strategy, steps_per_call)

    recorder = HistoryRecorder(run_dir)
    callbacks = [recorder, *schedule_callbacks(cfg), *regularization_callbacks(cfg), keras.callbacks.TerminateOnNaN()]
    if cfg.trainer.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD)))
    train_ds = pipeline(data.x_train, data.y_train, cfg.trainer.batch_size, shuffle_seed=cfg.trainer.seed)
    val_ds = pipeline(data.x_val, data.y_val, cfg.trainer.batch_size)

    start = time.perf_counter()
    with RichProgress(cfg.trainer.epochs, console) as progress:
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.trainer.epochs, callbacks=[*callbacks, progress], shuffle=False, verbose=0)
    train_seconds = time.perf_counter() - start

    val_loss, val_accuracy = model.evaluate(val_ds, verbose=0)
    test_loss, test_accuracy = model.evaluate(pipeline(data.x_test, data.y_test, cfg.trainer.batch_size), verbose=0)
    model.save(run_dir / MODEL)

    rows = recorder.rows
    early = next((cb for cb in callbacks if isinstance(cb, keras.callbacks.EarlyStopping)), None)
    diverged_at = next((r["epoch"] for r in rows if not math.isfinite(r["loss"])), None)
    metrics = {
        "status": "diverged" if diverged_at else "completed",
        "best_val_accuracy": max(r["val_accuracy"] for r in rows),
        "val_accuracy": float(val_accuracy),
        "val_loss": float(val_loss),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "epochs_run": len(rows),
        "stopped_early": bool(early is not None and early.stopped_epoch > 0),
        "diverged_epoch": diverged_at,
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])),
        **parameter_counts(model),
        "steps_per_execution": steps_per_call,
        "threads": threads,
        "replicas": strategy.num_replicas_in_sync,
    }
    write_metrics(run_dir, metrics)
    return metrics


def compiled_model(cfg: Config, data: datasets.Data, strategy: tf.distribute.Strategy, steps_per_call: int) -> keras.Model:
    """Build and compile in the strategy's scope, so the model's and optimizer's variables live on its devices."""
    with strategy.scope():
        model = build_model(cfg, data.input_shape, data.n_classes)
        model.compile(
            optimizer=build_optimizer(cfg), loss=loss_for(data.n_classes), metrics=["accuracy"],
            steps_per_execution=steps_per_call, jit_compile=cfg.trainer.jit_compile,
        )
    return model


def pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """In-memory arrays -> batches, in a new seeded order every epoch, prefetched while the model trains.

    The arrays enter TensorFlow once; each epoch shuffles only the indices and each batch
    gathers its rows, which costs a fraction of shuffling and batching sample by sample.
    Under a multi-worker strategy every worker keeps its share of each batch (DATA sharding).
    """
    indices = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    arrays = tf.data.Dataset.from_tensors((x, y)).repeat()
    batches = tf.data.Dataset.zip(indices.batch(batch_size), arrays).map(_gather, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


@tf.autograph.experimental.do_not_convert
def _gather(index, arrays):
    x, y = arrays
    return tf.gather(x, index), tf.gather(y, index)


def regularization_callbacks(cfg: Config) -> list[keras.callbacks.Callback]:
    reg = cfg.regularization
    if not reg.early_stopping:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=reg.monitor, patience=reg.patience, restore_best_weights=reg.restore_best_weights, verbose=0
        )
    ]


def parameter_counts(model: keras.Model) -> dict[str, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {"params_total": total, "params_trainable": trainable, "params_non_trainable": total - trainable}


class HistoryRecorder(keras.callbacks.Callback):
    """Appends one row per epoch to history.csv as soon as the epoch ends.

    ``learning_rate`` is what the optimizer gives at the step count reached at the end
    of the epoch (for performance scheduling: the rate in force before any cut that
    this epoch's validation loss triggers, since this callback runs first).
    """

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = run_dir
        self.rows: list[dict[str, Any]] = []
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {key: float(logs.get(key, math.nan)) for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
        row["epoch"] = epoch + 1
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = time.perf_counter() - self._epoch_start
        self.rows.append(row)
        write_history(self.run_dir, self.rows)


class RichProgress(keras.callbacks.Callback):
    """A rich progress bar over epochs showing the latest metrics (replaces Keras' verbose output)."""

    def __init__(self, epochs: int, console: Console):
        super().__init__()
        self.progress = Progress(
            TextColumn("[bold]epoch"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=epochs, metrics="")

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = ("loss", "accuracy", "val_loss", "val_accuracy")
        text = "  ".join(f"{k} {logs[k]:.4f}" for k in shown if k in logs)
        self.progress.update(self.task, completed=epoch + 1, metrics=text)
