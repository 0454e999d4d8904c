"""One run: load the data, build the model and optimizer, fit, evaluate, write the run's files."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dnnexp import data as datasets
from dnnexp.backend import keras, tf
from dnnexp.config import Config, config_hash
from dnnexp.diagnostics import GradientDiagnostics
from dnnexp.files import BACKUP, DIAGNOSTICS, HISTORY, MODEL, TENSORBOARD, read_rows, write_history, write_metrics
from dnnexp.model import DROPOUTS, build_model, forward, loss_for
from dnnexp.optim import build_optimizer, planned_steps, schedule_callbacks
from dnnexp.resume import TrainingBackup


def train(cfg: Config, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Train one configuration and write history.csv, metrics.json and model.keras into ``run_dir``.

    If ``run_dir`` holds the backup of a run that was killed, training continues from its
    last completed epoch and ends with the metrics the uninterrupted run would have.
    """
    run_dir = Path(run_dir)
    console = console or Console(quiet=not cfg.trainer.verbose)
    keras.utils.set_random_seed(cfg.trainer.seed)
    tf.config.experimental.enable_op_determinism()  # same seed, same metrics

    data = datasets.load(cfg.dataset)
    model = build_model(cfg, data.input_shape, data.n_classes)
    optimizer = build_optimizer(cfg, planned_steps(cfg, len(data.x_train)))
    model.compile(optimizer=optimizer, loss=loss_for(data.n_classes), metrics=["accuracy"])

    stateful = [*schedule_callbacks(cfg), *regularization_callbacks(cfg)]
    backup = TrainingBackup(run_dir / BACKUP, stateful)
    first_epoch = backup.restore(model)
    if first_epoch:
        console.print(f"resuming {run_dir} after epoch {first_epoch} of {cfg.trainer.epochs}")
    recorder = HistoryRecorder(run_dir, read_rows(run_dir / HISTORY)[:first_epoch])
    # The recorder goes first (it logs the rate before a performance cut), the backup last (it saves the others' state).
    callbacks = [recorder, *stateful, keras.callbacks.TerminateOnNaN()]
    diagnostics = None
    if cfg.diagnostics.enabled:
        done = [r for r in read_rows(run_dir / DIAGNOSTICS) if r["epoch"] <= first_epoch] if first_epoch else []
        diagnostics = GradientDiagnostics(run_dir, cfg.diagnostics, data.x_train, data.y_train, loss_for(data.n_classes), done)
        callbacks.append(diagnostics)
    if cfg.trainer.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD)))
    callbacks.append(backup)
    epochs = range(first_epoch, cfg.trainer.epochs)
    train_ds = training_pipeline(data.x_train, data.y_train, cfg.trainer.batch_size, cfg.trainer.seed, epochs)
    val_ds = pipeline(data.x_val, data.y_val, cfg.trainer.batch_size)

    start = time.perf_counter()
    with RichProgress(cfg.trainer.epochs, first_epoch, console) as progress:
        model.fit(
            train_ds, validation_data=val_ds, initial_epoch=first_epoch, epochs=cfg.trainer.epochs,
            steps_per_epoch=math.ceil(len(data.x_train) / cfg.trainer.batch_size),
            callbacks=[*callbacks, progress], shuffle=False, verbose=0,
        )
    train_seconds = time.perf_counter() - start + sum(r["seconds"] for r in recorder.rows[:first_epoch])

    val_loss, val_accuracy = model.evaluate(val_ds, verbose=0)
    test_loss, test_accuracy = model.evaluate(pipeline(data.x_test, data.y_test, cfg.trainer.batch_size), verbose=0)
    save_model(model, run_dir / MODEL)

    rows = recorder.rows
    early = next((cb for cb in callbacks if isinstance(cb, keras.callbacks.EarlyStopping)), None)
    diverged_at = next((r["epoch"] for r in rows if not math.isfinite(r["loss"])), None)
    metrics = {
        "status": "completed" if diverged_at is None else "diverged",
        "best_val_accuracy": float(np.nanmax([r["val_accuracy"] for r in rows])),
        "val_accuracy": float(val_accuracy),
        "val_loss": float(val_loss),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "epochs_run": len(rows),
        "stopped_early": bool(early is not None and early.stopped_epoch > 0),
        "diverged_epoch": diverged_at,
        "resumed": first_epoch > 0,
        "resumed_from_epoch": first_epoch or None,
        "config_hash": config_hash(cfg),
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])),
        **parameter_counts(model),
    }
    if diagnostics:
        metrics.update(diagnostics.summary())
    if cfg.evaluation.mc_samples:
        metrics.update(mc_dropout(model, data.x_test, data.y_test, cfg.evaluation.mc_samples, cfg.trainer.batch_size))
    write_metrics(run_dir, metrics)
    return metrics


def save_model(model: keras.Model, path: Path) -> None:
    """Keras writes the .keras zip in place; save it beside ``path`` and rename, so a kill never leaves half a model."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # Keras wants the .keras suffix
    model.save(partial)
    os.replace(partial, path)


def training_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epochs: range) -> tf.data.Dataset:
    """The training batches of ``epochs`` back to back, each epoch in an order set by (seed, epoch) alone.

    tf.data's ``shuffle(reshuffle_each_iteration=True)`` draws each epoch's order from a
    generator that starts over in every process, so a run resumed at epoch k would see
    epoch 1's order again; a stateless shuffle keyed by the epoch number does not.
    """
    images, labels = tf.constant(x), tf.constant(y)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    batches = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    return batches.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx))).prefetch(tf.data.AUTOTUNE)


def mc_dropout(model: keras.Model, x: np.ndarray, y: np.ndarray, samples: int, batch_size: int) -> dict[str, float]:
    """MC Dropout (HML ch. 11): average ``samples`` predictions made with dropout on (batch norm stays in
    inference mode), then score the mean: its accuracy, and its mean entropy -sum p log p (in nats),
    which is high where the passes disagree or are unsure.
    """
    chunks, size = [], max(batch_size, 1024)  # bounded memory for CNN activations on a large test set
    for start in range(0, len(x), size):
        batch = x[start : start + size]
        passes = [keras.ops.convert_to_numpy(forward(model, batch, training_for=tuple(DROPOUTS.values()))[0])
                  for _ in range(samples)]
        chunks.append(np.mean(passes, axis=0))
    probs = np.concatenate(chunks)
    if probs.shape[-1] == 1:  # one sigmoid unit: P(class 1)
        probs = np.concatenate([1 - probs, probs], axis=-1)
    entropy = -np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=-1)
    return {"mc_samples": samples, "mc_accuracy": float(np.mean(probs.argmax(axis=-1) == y)), "mc_entropy": float(entropy.mean())}


def pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """In-memory arrays -> cached, (re)shuffled each epoch, batched, prefetched tf.data pipeline."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]]):
        super().__init__()
        self.run_dir = run_dir
        self.rows = rows  # the earlier epochs' rows when the run is resumed
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

    def __init__(self, epochs: int, done: int, console: Console):
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
        self.task = self.progress.add_task("train", total=epochs, completed=done, metrics="")

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
