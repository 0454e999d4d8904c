"""The learning-rate tools: the finder (mode=lr_find) and the schedule plot (mode=plot_schedule).

The lecture calls the learning rate the most important hyperparameter. The finder (HML ch. 11)
trains for one epoch while the rate grows exponentially from lr_find.min_lr to lr_find.max_lr,
one step per batch, and records each batch's loss: the loss falls while the rate is useful and
shoots up once it is too large. The suggested rate is a tenth of the rate at the minimum of the
smoothed loss (HML: "about 10 times lower than the turning point"), a rule that stays on the
safe side of the minimum even when the curve is noisy. The model's weights are put back afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dnnexp import data as datasets
from dnnexp.keras_import import keras
from dnnexp.config import Config, SchedulerConfig
from dnnexp.engines import engine
from dnnexp.files import save_figure, write_csv, write_metrics
from dnnexp.keras_checks import check_keras_arguments
from dnnexp.model import build_model, loss_for
from dnnexp.optim import build_optimizer, build_schedule, planned_steps, steps_per_epoch

LR_FIND = "lr_find.csv"
LR_FIND_PLOT = "lr_find.png"
LR_FIND_COLUMNS = ["step", "learning_rate", "loss", "smoothed_loss"]
SCHEDULE = "schedule.csv"
SCHEDULE_PLOT = "schedule.png"
SCHEDULE_COLUMNS = ["step", "epoch", "learning_rate"]
SMOOTHING = 0.98  # weight of the past in the loss's exponential moving average (bias-corrected)


def find_lr(model: keras.Model, batches, cfg: Config, loss: str) -> list[dict[str, float]]:
    """One epoch with the rate growing geometrically per batch; rows of (step, rate, loss, smoothed loss).

    The model is compiled with its own optimizer at a constant rate (the configured schedule
    would fight the sweep) and its weights, batch-norm statistics included, are restored at the end.
    """
    saved = model.get_weights()
    optimizer = build_optimizer(dataclasses.replace(cfg, scheduler=SchedulerConfig(name="constant")))
    model.compile(optimizer=optimizer, loss=loss)
    steps = len(batches)
    rates = np.geomspace(cfg.lr_find.min_lr, cfg.lr_find.max_lr, steps)
    rows, average, best = [], 0.0, math.inf
    for step, ((x, y), rate) in enumerate(zip(batches, rates), start=1):
        optimizer.learning_rate = rate
        value = float(model.train_on_batch(x, y))  # the batch's loss before this step's update
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smoothed = average / (1 - SMOOTHING**step)
        rows.append({"step": step, "learning_rate": float(rate), "loss": value, "smoothed_loss": smoothed})
        if not math.isfinite(value) or smoothed > cfg.lr_find.stop_factor * best:
            break
        best = min(best, smoothed)
    model.set_weights(saved)
    return rows


def suggest(rows: list[dict[str, float]]) -> dict[str, float]:
    """min_loss_lr: the rate at the lowest smoothed loss; suggested_lr: a tenth of it."""
    lowest = min(rows, key=lambda r: r["smoothed_loss"] if math.isfinite(r["smoothed_loss"]) else math.inf)
    return {"min_loss_lr": lowest["learning_rate"], "suggested_lr": lowest["learning_rate"] / 10}


def lr_find(cfg: Config, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """mode=lr_find: writes lr_find.csv, lr_find.png and metrics.json (suggested_lr, min_loss_lr)."""
    run_dir = Path(run_dir)
    console = console or Console(quiet=not cfg.trainer.verbose)
    check_keras_arguments(cfg)
    keras.utils.set_random_seed(cfg.trainer.seed)
    data = datasets.load(cfg.dataset)
    model = build_model(cfg, data.input_shape, data.n_classes, data.standardization)
    batches = engine.pipeline(data.x_train, data.y_train, cfg.trainer.batch_size, shuffle_seed=cfg.trainer.seed)
    rows = find_lr(model, batches, cfg, loss_for(data.n_classes))
    write_csv(run_dir / LR_FIND, rows, LR_FIND_COLUMNS)
    result = {"status": "completed", "mode": "lr_find", **suggest(rows), "lr_find_steps": len(rows)}
    _plot_lr_find(rows, result, run_dir / LR_FIND_PLOT)
    write_metrics(run_dir, result)
    console.print(
        f"lr_find: lowest loss at lr={result['min_loss_lr']:.3g}; suggested lr={result['suggested_lr']:.3g} "
        f"({len(rows)} steps) -> {run_dir / LR_FIND}, {run_dir / LR_FIND_PLOT}", highlight=False, soft_wrap=True,
    )  # soft_wrap: one line, whatever the width of a pipe or terminal, so no path is cut mid-word
    return result


def _plot_lr_find(rows: list[dict[str, float]], result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    rates = [r["learning_rate"] for r in rows]
    ax.plot(rates, [r["loss"] for r in rows], alpha=0.3, label="batch loss")
    ax.plot(rates, [r["smoothed_loss"] for r in rows], label="smoothed loss")
    ax.axvline(result["suggested_lr"], color="green", ls="--", label=f"suggested {result['suggested_lr']:.3g}")
    ax.axvline(result["min_loss_lr"], color="red", ls=":", label=f"lowest loss {result['min_loss_lr']:.3g}")
    finite = [r["smoothed_loss"] for r in rows if math.isfinite(r["smoothed_loss"])]
    if finite:  # show the useful range, not the blow-up at the end
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.05)
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss", title="learning-rate finder")
    ax.legend()
    save_figure(fig, path)


def schedule_rows(cfg: Config, n_train: int) -> list[dict[str, float]]:
    """The rate the optimizer uses at every step t = 0 .. T-1 of the planned run, T = epochs x batches."""
    total, per_epoch = planned_steps(cfg, n_train), steps_per_epoch(cfg, n_train)
    schedule = build_schedule(cfg.optimizer.lr, cfg.scheduler, total, per_epoch)
    rate = engine.step_function(schedule) if callable(schedule) else (lambda t: schedule)
    return [{"step": t, "epoch": t / per_epoch, "learning_rate": float(rate(t))} for t in range(total)]


def plot_schedule(cfg: Config, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """mode=plot_schedule: schedule.csv and schedule.png for the configured run, without training."""
    run_dir = Path(run_dir)
    console = console or Console(quiet=not cfg.trainer.verbose)
    n_train = len(datasets.load(cfg.dataset).x_train)
    rows = schedule_rows(cfg, n_train)
    write_csv(run_dir / SCHEDULE, rows, SCHEDULE_COLUMNS)
    _plot_schedule(cfg, rows, run_dir / SCHEDULE_PLOT)
    rates = [r["learning_rate"] for r in rows]
    result = {"status": "completed", "mode": "plot_schedule", "total_steps": len(rows),
              "initial_lr": rates[0], "max_lr": max(rates), "final_lr": rates[-1]}
    write_metrics(run_dir, result)
    console.print(
        f"{cfg.scheduler.name} schedule over {len(rows)} steps: lr {rates[0]:.3g} -> max {max(rates):.3g} -> "
        f"{rates[-1]:.3g} -> {run_dir / SCHEDULE}, {run_dir / SCHEDULE_PLOT}", highlight=False, soft_wrap=True,
    )
    return result


def _plot_schedule(cfg: Config, rows: list[dict[str, float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot([r["step"] for r in rows], [r["learning_rate"] for r in rows])
    ax.set(xlabel="optimizer step t", ylabel="learning rate", title=f"{cfg.scheduler.name} schedule, {cfg.optimizer.name}")
    top = ax.secondary_xaxis("top", functions=(lambda t: t * cfg.trainer.epochs / len(rows), lambda e: e * len(rows) / cfg.trainer.epochs))
    top.set_xlabel("epoch")
    save_figure(fig, path)
