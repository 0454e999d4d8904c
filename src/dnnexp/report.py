"""Run folders -> pandas table -> terminal and files. No TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

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
