"""Run folders -> pandas table -> terminal and files. No TensorFlow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from dnnexp.files import METRICS, read_metrics, write_atomic

SUMMARY_KEYS = [
    ("status", "status", "{}"),
    ("best_val_accuracy", "best val accuracy", "{:.4f}"),
    ("val_accuracy", "val accuracy", "{:.4f}"),
    ("val_loss", "val loss", "{:.4f}"),
    ("test_accuracy", "test accuracy", "{:.4f}"),
    ("test_loss", "test loss", "{:.4f}"),
    ("epochs_run", "epochs run", "{}"),
    ("stopped_early", "stopped early", "{}"),
    ("seconds_per_epoch", "seconds / epoch", "{:.2f}"),
    ("params_total", "parameters", "{:,}"),
]


def print_run_summary(metrics: dict[str, Any], run_dir: Path, console: Console) -> None:
    table = Table(title=f"dnnexp run: {run_dir}", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, label, fmt in SUMMARY_KEYS:
        value = metrics.get(key)
        table.add_row(label, "-" if value is None else fmt.format(value))
    console.print(table)


# ---------------------------------------------------------------- transfer learning: error-rate reduction


BASELINE_TRANSFER = "none"  # the scratch arm every reuse arm is measured against


def error_rate_reduction(accuracy: float, baseline_accuracy: float) -> float:
    """(error_scratch - error) / error_scratch: the share of the scratch model's errors that reuse removes.

    HML ch. 11 reports transfer learning this way ("the error rate dropped from 2.8% to 0.7%,
    a factor of 4"). Negative when reuse is worse; NaN when the scratch model makes no error.
    """
    baseline_error = 1.0 - baseline_accuracy
    if baseline_error <= 0:
        return math.nan
    return (baseline_error - (1.0 - accuracy)) / baseline_error


def add_error_rate_reduction(table: pd.DataFrame, metric: str = "test_accuracy", key: str = "transfer") -> pd.DataFrame:
    """Add ``error_rate_reduction`` to a table with one row per ``key`` value: each row's (mean) ``metric`` against the scratch row's."""
    scratch = table.loc[table[key].astype(str) == BASELINE_TRANSFER, metric]
    baseline = float(scratch.iloc[0]) if len(scratch) else math.nan
    return table.assign(error_rate_reduction=[error_rate_reduction(float(a), baseline) for a in table[metric]])


TRANSFER_TABLE = "transfer_table.csv"


def transfer_table(sweep_dir: Path) -> pd.DataFrame:
    """The jobs of a transfer sweep, one row per arm: test accuracy mean, std and n over the seeds, and the reduction."""
    rows = []
    for job in sorted(p for p in Path(sweep_dir).iterdir() if (p / METRICS).is_file()):
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        rows.append({"transfer": cfg.transfer.name, "seed": cfg.trainer.seed, **read_metrics(job)})
    runs = pd.DataFrame(rows, columns=["transfer", "seed", "test_accuracy"])  # a failed job has no test_accuracy
    table = runs.groupby("transfer", sort=False)["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
    table.columns = ["transfer", "test_accuracy", "test_accuracy_std", "n"]
    return add_error_rate_reduction(table)


def render_transfer_table(table: pd.DataFrame, title: str) -> Table:
    shown = Table(title=title, title_justify="left")
    for column in ("transfer", "test accuracy", "n", "error-rate reduction vs none"):
        shown.add_column(column, justify="left" if column == "transfer" else "right")
    for row in table.itertuples(index=False):
        reduction = "-" if math.isnan(row.error_rate_reduction) else f"{row.error_rate_reduction:+.0%}"
        spread = "" if math.isnan(row.test_accuracy_std) else f" ± {row.test_accuracy_std:.4f}"
        shown.add_row(row.transfer, f"{row.test_accuracy:.4f}{spread}", str(row.n), reduction)
    return shown


class TransferTable(Callback):
    """When the transfer preset's sweep ends: print its table and write transfer_table.csv into the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = transfer_table(sweep_dir)
        Console(width=120).print(render_transfer_table(table, f"dnnexp transfer: {sweep_dir}"))
        write_atomic(sweep_dir / TRANSFER_TABLE, table.to_csv(index=False))
