"""The columns a comparison table can show: each metric's label and format, and how a cell reads."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

# key in metrics.json -> (column label, format).
METRIC_COLUMNS: dict[str, tuple[str, str]] = {
    "best_val_accuracy": ("best val acc", "{:.4f}"),
    "val_accuracy": ("val acc", "{:.4f}"),
    "val_loss": ("val loss", "{:.4f}"),
    "test_accuracy": ("test acc", "{:.4f}"),
    "test_loss": ("test loss", "{:.4f}"),
    "epochs_run": ("epochs", "{:.3g}"),
    "best_epoch": ("kept epoch", "{:.3g}"),
    "stopped_early": ("stopped early", "{}"),
    "diverged_epoch": ("diverged at", "{:.3g}"),
    "train_seconds": ("train s", "{:.1f}"),
    "seconds_per_epoch": ("s/epoch", "{:.2f}"),
    "params_total": ("params", "{:,.0f}"),
    "params_trainable": ("trainable params", "{:,.0f}"),  # transfer learning: what a frozen base leaves to train
    "error_rate_reduction": ("error-rate reduction vs none", "{:+.0%}"),  # transfer learning, see stats
    "grad_ratio": ("grad ratio", "{:.2g}"),
    "gradient_verdict": ("gradient", "{}"),
    "train_accuracy": ("train acc", "{:.4f}"),  # the kept model's, dropout off
    "mc_accuracy": ("MC acc", "{:.4f}"),
    "mc_entropy": ("MC entropy", "{:.3f}"),
    "mc_val_accuracy": ("MC val acc", "{:.4f}"),
    "suggested_lr": ("suggested lr", "{:.3g}"),
}
DEFAULT_METRICS = ["val_accuracy", "test_accuracy", "val_loss", "epochs_run", "seconds_per_epoch", "params_total"]
# Shown by default only when some run has a value (a diverged run has an epoch here;
# diagnostics=on, evaluation.mc_samples and mode=lr_find add theirs).
OPTIONAL_METRICS = ["diverged_epoch", "grad_ratio", "gradient_verdict", "mc_accuracy", "mc_val_accuracy", "mc_entropy", "suggested_lr"]


def label(metric: str) -> str:
    """The column header of ``metric``: ``best val acc`` for best_val_accuracy."""
    return METRIC_COLUMNS.get(metric, (metric, ""))[0]


def higher_is_better(metric: str) -> bool:
    return "loss" not in metric and "seconds" not in metric


def format_cell(row: pd.Series, metric: str) -> str:
    """``mean ± std`` for a group of runs, the plain value for one run, ``-`` when there is none."""
    value = row.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    fmt = METRIC_COLUMNS.get(metric, (metric, "{:.4g}"))[1]
    text = fmt.format(value)
    std = row.get(f"{metric}_std")
    if isinstance(std, float) and std > 0:  # NaN (one run) and 0 (same in every seed) show the value only
        text += " ± " + fmt.format(std)
    return text


def format_value(value: Any) -> str:
    """A parameter as a person reads it: Optuna's 0.0026994114136168193 as 0.002699; ``-`` for a key
    a run's config leaves empty or does not have (dataset.limit: null, momentum under Adam, a missing job)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_row(row: pd.Series, keys: list[str]) -> str:
    """A row's parameters as ``activation=elu, optimizer.lr=0.01``: how notes and legends name a variant."""
    return ", ".join(f"{k}={format_value(row[k])}" for k in keys) or "all runs"
