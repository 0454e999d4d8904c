"""One run: load the data, build the model, fit it phase by phase, evaluate, write the run's files.

A run from scratch has one phase; transfer learning (transfer.py) has a frozen phase and
optionally a fine-tuning phase, each compiled with its own optimizer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dnnexp import data as datasets
from dnnexp import compiled_models, loggers, speed, transfer
from dnnexp.keras_import import BACKEND, keras
from dnnexp.config import Config, config_hash, keep_monitor
from dnnexp.diagnostics import GradientDiagnostics
from dnnexp.engines import engine
from dnnexp.files import (
    BACKUP, DIAGNOSTICS, HISTORY, MC_DROPOUT, MC_DROPOUT_COLUMNS, MODEL, read_rows, write_csv, write_history,
    write_metrics,
)
from dnnexp.keras_checks import check_keras_arguments
from dnnexp.model import DROPOUTS, forward, loss_for
from dnnexp.optim import build_optimizer, planned_steps, schedule_callbacks, steps_per_epoch
from dnnexp.resume import TrainingBackup


def train(cfg: Config, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Train one configuration and write history.csv, metrics.json and model.keras into ``run_dir``.

    If ``run_dir`` holds the backup of a run that was killed, training continues from its
    last completed epoch and ends with the metrics the uninterrupted run would have.
    SIGTERM stops it as Ctrl-C does (Terminated).
    """
    with sigterm_as_interrupt():
        return _train(cfg, run_dir, console)


class Terminated(KeyboardInterrupt):
    """SIGTERM, which SLURM sends at a time limit or on preemption and Ray on cancel, raised where the run
    is, as Ctrl-C raises KeyboardInterrupt: the last finished epoch stays in backup.npz, the trackers
    mark the run killed, and the command says how to resume it."""

    what = "terminated (SIGTERM)"
    exit_code = 128 + signal.SIGTERM  # what the shell reports for a process SIGTERM ended


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated (only the main thread can take a signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(cfg: Config, run_dir: Path, console: Console | None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    console = console or Console(quiet=not cfg.trainer.verbose)
    if cfg.trainer.backend != BACKEND:
        raise RuntimeError(f"trainer.backend={cfg.trainer.backend} in a process whose Keras runs on {BACKEND} "
                           "(the backend is chosen before Keras loads: dnnexp.backend_setup.choose)")
    threads = engine.configure(cfg.trainer)  # before the backend's runtime starts
    strategy = engine.build_strategy(cfg.trainer.strategy)
    check_keras_arguments(cfg)
    data = datasets.load(cfg.dataset)
    # Task A is pretrained (or found in its cache) before seeding, so this run's seed alone fixes its weights.
    source = transfer.prepare_source(cfg, functools.partial(train, console=console), console)
    speed.set_precision(cfg.trainer.mixed_precision)
    engine.set_determinism(engine.jit_compile(cfg.trainer))  # same seed, same metrics
    engine.set_seed(cfg.trainer.seed)

    with strategy.scope():  # the model's variables live on the strategy's devices
        network = transfer.build(cfg, data, source)
    model = compiled_models.reuse(cfg, network.model)  # the last job's compiled model if only the seed differs
    backup = TrainingBackup(run_dir / BACKUP, cfg)
    done = backup.epochs_done
    if done:
        console.print(f"resuming {run_dir} after epoch {done}")
    recorder = HistoryRecorder(run_dir, read_rows(run_dir / HISTORY)[:done])
    diagnostics = None
    if cfg.diagnostics.enabled:
        earlier = [r for r in read_rows(run_dir / DIAGNOSTICS) if r["epoch"] <= done] if done else []
        diagnostics = GradientDiagnostics(run_dir, cfg.diagnostics, data.x_train, data.y_train, loss_for(data.n_classes), earlier)
    val_ds = engine.pipeline(*final_evaluations(cfg, data)[0])  # the fit's validation, as scored at the end

    start = time.perf_counter()
    callbacks: list[keras.callbacks.Callback] = []
    phases = [p.name for p in network.phases]
    with RichProgress(sum(p.epochs for p in network.phases), done, console) as progress:
        # One of each for the whole run, across its phases.
        watchers = [*([diagnostics] if diagnostics else []), *loggers.callbacks(cfg, run_dir), progress]
        for phase in network.phases:
            if backup.finished_before(phase.name, phases):
                continue  # the killed run had finished this phase
            final = phase is network.phases[-1]
            callbacks += fit_phase(cfg, model, phase, data, val_ds, recorder, watchers, backup, final)
            if diverged_epoch(recorder.rows):
                break
    train_seconds = time.perf_counter() - start + sum(r["seconds"] for r in recorder.rows[:done])
    best_epoch = keep_weights(model, callbacks, recorder.rows)  # every number below is of these weights
    # A run that diverged before any epoch could be kept (its first, or any with trainer.keep=last) ends with
    # weights that are not finite: no model to save and no score to give (a NaN net "scores" chance).
    kept = all(np.isfinite(w).all() for w in model.get_weights())

    # history.csv's training accuracy is the epoch's running mean with dropout on; this is the kept model's, dropout off.
    (val_loss, val_accuracy), (test_loss, test_accuracy), (train_loss, train_accuracy) = (
        model.evaluate(engine.pipeline(x, y, batch_size), verbose=0) if kept else (math.nan, math.nan)
        for x, y, batch_size in final_evaluations(cfg, data))
    if kept:
        save_model(model, run_dir / MODEL)

    rows = recorder.rows
    diverged_at = diverged_epoch(rows)
    finite_epochs = [r["val_accuracy"] for r in rows if math.isfinite(r["loss"])]
    metrics = {
        "status": "completed" if diverged_at is None else "diverged",
        # history's, of any epoch whose loss was finite (a diverged epoch's NaN weights "score" chance)
        "best_val_accuracy": float(np.nanmax(finite_epochs)) if np.isfinite(finite_epochs).any() else math.nan,
        "best_epoch": best_epoch if kept else None,
        "val_accuracy": float(val_accuracy),
        "val_loss": float(val_loss),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "train_accuracy": float(train_accuracy),
        "train_loss": float(train_loss),
        "epochs_run": len(rows),
        "stopped_early": any(isinstance(cb, keras.callbacks.EarlyStopping) and cb.stopped_epoch > 0 for cb in callbacks),
        "diverged_epoch": diverged_at,
        "resumed": done > 0,
        "resumed_from_epoch": done or None,
        "config_hash": config_hash(cfg),
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])),
        **parameter_counts(model),
        **network.info,
        "steps_per_execution": model.steps_per_execution,
        "backend": BACKEND,
        "threads": threads,
        "replicas": strategy.num_replicas_in_sync,
    }
    if diagnostics:
        metrics.update(diagnostics.summary())
    if cfg.evaluation.mc_samples and kept:
        metrics.update(mc_dropout_report(model, data, cfg.evaluation.mc_samples, cfg.trainer.batch_size, run_dir))
    write_metrics(run_dir, metrics)
    backup.path.unlink(missing_ok=True)  # a run that diverged in an early phase leaves one
    return metrics


def final_evaluations(cfg: Config, data: datasets.Data) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(x, y, batch size) of the validation, test and training sets, on which the kept weights are scored.

    The training set goes in batches of at least 1,024: it is the largest, and needs no gradients."""
    return [(data.x_val, data.y_val, cfg.trainer.batch_size), (data.x_test, data.y_test, cfg.trainer.batch_size),
            (data.x_train, data.y_train, max(cfg.trainer.batch_size, 1024))]


def evaluations(cfg: Config, data: datasets.Data, final: bool) -> list[tuple[int, int]]:
    """(samples, batch size) of each evaluation a phase's fit runs (validation, the first of the final ones),
    and after the final phase the run's."""
    sets = final_evaluations(cfg, data)
    return [(len(x), batch_size) for x, _, batch_size in (sets if final else sets[:1])]


def fit_phase(cfg: Config, model: keras.Model, phase: transfer.Phase, data: datasets.Data, val_ds,
              recorder: HistoryRecorder, watchers: list[keras.callbacks.Callback], backup: TrainingBackup,
              final: bool) -> list[keras.callbacks.Callback]:
    """Fit one phase: set which layers train, (re)compile at lr * phase.lr_factor, continue the epoch count.

    Keras fixes the trainable weights when the model is compiled, so every phase compiles
    anew, with a fresh optimizer (its schedule restarts at the phase's rate). The phase a
    killed run was cut in continues from ``backup``; ``final``: no phase follows.
    """
    transfer.apply_phase(model, phase)
    compile_phase(cfg, model, phase, data, evaluations(cfg, data, final))
    recorder.phase = phase.name
    start = first = len(recorder.rows)
    if backup.resumes(phase.name):
        backup.restore(model)
        start, first = backup.saved_phase_start, backup.epochs_done
    callbacks = [*schedule_callbacks(cfg), *regularization_callbacks(cfg), *keep_callbacks(cfg)]
    backup.begin_phase(phase.name, start, callbacks, final)
    batches = engine.EpochShuffle(data.x_train, data.y_train, cfg.trainer.batch_size, cfg.trainer.seed, cfg.trainer.shuffle)
    # The shuffle goes first (it sets the epoch's order), then the recorder (it logs the rate before
    # a performance cut); the backup goes last (it saves the others' state). The non-finite-loss stop
    # sees the loss once per call into the backend (steps_per_execution steps): on TensorFlow it stops
    # at the end of the call in which the loss stopped being finite, on JAX one call later.
    model.fit(batches.dataset, validation_data=val_ds, initial_epoch=first, epochs=start + phase.epochs,
              callbacks=[batches, recorder, *callbacks, engine.StopOnNonFiniteLoss(), *watchers, backup],
              shuffle=False, verbose=0)
    return callbacks


def compile_phase(cfg: Config, model: keras.Model, phase: transfer.Phase, data: datasets.Data,
                  evaluations: list[tuple[int, int]] = ()) -> None:
    """Compile with a fresh optimizer, in the scope of the strategy the model was built in,
    running several training steps per call into the backend (speed.steps_per_execution).

    ``evaluations``: (samples, batch size) of each evaluation the fit and the run make, which
    the JAX engine compiles ahead while the first epoch trains. The kept model of a job that differs only
    by its seed (compiled_models) is compiled already, with its optimizer reset."""
    if not compiled_models.is_compiled_for(cfg, model):
        compile_model(cfg, model, phase, data)
    engine.prepare_fit(model, (len(data.x_train), cfg.trainer.batch_size), evaluations)


def compile_model(cfg: Config, model: keras.Model, phase: transfer.Phase, data: datasets.Data) -> None:
    with engine.strategy_scope(model):
        n_train = len(data.x_train)
        optimizer = build_optimizer(cfg, planned_steps(cfg, n_train, phase.epochs), phase.lr_factor, steps_per_epoch(cfg, n_train))
        model.compile(
            optimizer=optimizer, loss=loss_for(data.n_classes), metrics=["accuracy"],
            steps_per_execution=speed.steps_per_execution(cfg.trainer, len(data.x_train)),
            jit_compile=engine.jit_compile(cfg.trainer),
        )
    compiled_models.keep(cfg, model)


def diverged_epoch(rows: list[dict[str, Any]]) -> int | None:
    return next((r["epoch"] for r in rows if not math.isfinite(r["loss"])), None)


def save_model(model: keras.Model, path: Path) -> None:
    """Keras writes the .keras zip in place; save it beside ``path`` and rename, so a kill never leaves half a model."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # Keras wants the .keras suffix
    model.save(partial)
    os.replace(partial, path)


def mc_dropout(model: keras.Model, x: np.ndarray, y: np.ndarray, samples: int, batch_size: int) -> dict[str, Any]:
    """MC Dropout (HML ch. 11): ``samples`` predictions made with dropout on (batch norm stays in
    inference mode). The mean prediction is scored: its accuracy, and its mean entropy -sum p log p
    (in nats), which is high where the passes disagree or are unsure. ``class_std`` is HML's
    ``y_probas.std(axis=0)``, each class's probability's standard deviation over the passes,
    averaged over the images.
    """
    means, stds, size = [], [], max(batch_size, 1024)  # bounded memory for CNN activations on a large split
    for start in range(0, len(x), size):
        batch = x[start : start + size]
        passes = np.stack([keras.ops.convert_to_numpy(forward(model, batch, training_for=tuple(DROPOUTS.values()))[0])
                           for _ in range(samples)])
        if passes.shape[-1] == 1:  # one sigmoid unit: P(class 1)
            passes = np.concatenate([1 - passes, passes], axis=-1)
        means.append(passes.mean(axis=0))
        stds.append(passes.std(axis=0))
    probs, std = np.concatenate(means), np.concatenate(stds)
    entropy = -np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=-1)
    return {"accuracy": float(np.mean(probs.argmax(axis=-1) == y)), "entropy": float(entropy.mean()),
            "class_std": std.mean(axis=0)}


def mc_dropout_report(model: keras.Model, data: datasets.Data, samples: int, batch_size: int, run_dir: Path) -> dict[str, Any]:
    """MC Dropout on the test and the validation split (HML's CIFAR-10 exercise scores it on the latter):
    metrics.json's mc_* and mc_val_* values, and mc_dropout.csv, each class's standard deviation."""
    test = mc_dropout(model, data.x_test, data.y_test, samples, batch_size)
    val = mc_dropout(model, data.x_val, data.y_val, samples, batch_size)
    rows = [{"class": name, "val_std": float(v), "test_std": float(t)}
            for name, v, t in zip(data.class_names, val["class_std"], test["class_std"])]
    write_csv(run_dir / MC_DROPOUT, rows, MC_DROPOUT_COLUMNS)
    return {
        "mc_samples": samples,
        "mc_accuracy": test["accuracy"], "mc_entropy": test["entropy"], "mc_std": float(test["class_std"].mean()),
        "mc_val_accuracy": val["accuracy"], "mc_val_entropy": val["entropy"], "mc_val_std": float(val["class_std"].mean()),
    }


def regularization_callbacks(cfg: Config) -> list[keras.callbacks.Callback]:
    reg = cfg.regularization
    if not reg.early_stopping:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=reg.monitor, patience=reg.patience, restore_best_weights=reg.restore_best_weights, verbose=0
        )
    ]


def keep_callbacks(cfg: Config) -> list[keras.callbacks.Callback]:
    return [BestEpoch(keep_monitor(cfg))] if cfg.trainer.keep == "best" else []


def keep_weights(model: keras.Model, callbacks: list[keras.callbacks.Callback], rows: list[dict[str, Any]]) -> int | None:
    """Put the kept epoch's weights into ``model`` and return that epoch (1-based, as in history.csv).

    trainer.keep=best: the best epoch of the last phase that trained, so the kept model has the
    final trainable layout (a transfer run's fine-tuning phase); None, and the last weights, if no
    epoch of it had a finite monitored value. trainer.keep=last: the weights the fit ended with,
    the last epoch's or, with early stopping's restore_best_weights, its best epoch's.
    """
    keepers = [cb for cb in callbacks if isinstance(cb, BestEpoch)]
    if keepers:
        return keepers[-1].restore()
    stoppers = [cb for cb in callbacks if isinstance(cb, keras.callbacks.EarlyStopping)]
    if stoppers and stoppers[-1].restore_best_weights and stoppers[-1].best_weights is not None:
        return stoppers[-1].best_epoch + 1
    return rows[-1]["epoch"]


class BestEpoch(keras.callbacks.Callback):
    """Keeps a copy of the weights of the epoch with the best ``monitor`` (trainer.keep=best).

    The lecture's ModelCheckpoint(save_best_only=True) followed by load_weights, in memory as
    EarlyStopping keeps its best weights: Keras' checkpoint writes its file in place at each
    improvement, which a kill can leave half-written and which no resume restores, while these
    weights go into backup.npz with the rest of the training state (``resume_state``). An epoch
    whose value or training loss is not finite (a diverging run) is never the best.
    """

    resume_state = ("best", "best_epoch")  # and best_weights, which the backup saves as arrays

    def __init__(self, monitor: str):
        super().__init__()
        self.monitor = monitor
        self.sign = -1.0 if "accuracy" in monitor else 1.0  # lower is better for a loss
        self.best: float | None = None
        self.best_epoch: int | None = None  # 0-based, as Keras counts
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get(self.monitor, math.nan))
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # the epoch diverged: its weights are not finite, whatever their val accuracy (chance)
        if math.isfinite(value) and (self.best is None or self.sign * value < self.sign * self.best):
            self.best, self.best_epoch, self.best_weights = value, epoch, self.model.get_weights()

    def restore(self) -> int | None:
        """Load the best weights into the model; the best epoch, 1-based, or None if there was none."""
        if self.best_weights is None:
            return None
        self.model.set_weights(self.best_weights)
        return self.best_epoch + 1


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

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]] | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.rows = rows or []  # a resumed run's earlier epochs, from history.csv
        self.phase = "train"  # set by fit_phase: train (from scratch), frozen, finetune
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {key: float(logs.get(key, math.nan)) for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
        row["epoch"] = epoch + 1
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = time.perf_counter() - self._epoch_start
        row["phase"] = self.phase
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
            # Live on a terminal and in Jupyter; not in a pipe or a log, where a bar is one truncated
            # line and the run's summary (or a sweep job's line) follows with the same numbers.
            disable=not (console.is_terminal or console.is_jupyter),
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
