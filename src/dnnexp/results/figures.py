"""The sweep's figures: learning curves of every variant, and the optimized metric as bars. No TensorFlow.

Each figure is a ``matplotlib.figure.Figure`` built directly, not through pyplot: no
backend is chosen, no global state changes, so a notebook that imports this keeps its
inline figures, and the caller decides whether to save or show one.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dnnexp.files import HISTORY, save_figure
from dnnexp.results.columns import describe_row, label
from dnnexp.results.stats import Report

CURVES = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}


def write_figures(report: Report, folder: Path) -> list[str]:
    """Write val_accuracy_curves.png, val_loss_curves.png and <metric>_bars.png into ``folder``; return their names."""
    written = []
    histories = read_histories(report)
    for column, name in CURVES.items():
        if any(h is not None and column in h for hs in histories for h in hs):
            written.append(_save(curves_figure(report, histories, column, name), Path(folder) / f"{column}_curves.png"))
    if report.table[report.metric].notna().any():
        written.append(_save(bars_figure(report), Path(folder) / f"{report.metric}_bars.png"))
    return written


def read_histories(report: Report) -> list[list[pd.DataFrame | None]]:
    """Per table row, the history.csv of each of its runs (None where it cannot be read)."""
    return [[_history(run) for run in row_runs] for row_runs in report.table["runs"]]


def _history(run: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(Path(run) / HISTORY)
    except (OSError, ValueError):
        return None


def curves_figure(report: Report, histories: list[list[pd.DataFrame | None]], column: str, name: str) -> Figure:
    """One line per run, one colour per variant (its seeds share it), labelled once per variant.

    Runs that share a seed follow the same curve until they differ (early stopping
    ends one of them), so the better variant is drawn on top.
    """
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row_histories in enumerate(histories):
        variant = describe_row(report.table.iloc[i], report.keys)
        for j, history in enumerate(h for h in row_histories if h is not None and column in h):
            ax.plot(history["epoch"], history[column], color=colors[i % len(colors)], alpha=0.8,
                    label=variant if j == 0 else None, zorder=len(histories) - i)  # the best on top
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=name, title=f"{name} per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def bars_figure(report: Report) -> Figure:
    """The optimized metric per variant, best first; error bars are the seeds' standard deviation."""
    table = report.table
    name = label(report.metric)
    variants = [describe_row(row, report.keys) for _, row in table.iterrows()]
    errors = table[f"{report.metric}_std"].fillna(0) if f"{report.metric}_std" in table else None
    fig = Figure(figsize=(max(6, 0.9 * len(variants) + 2), 5), layout="tight")
    ax = fig.subplots()
    ax.bar(range(len(variants)), table[report.metric].fillna(0), yerr=errors, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize="small")
    ax.set(ylabel=name, title=f"{name} per variant" + (" (mean ± std over seeds)" if report.grouped else ""))
    ax.grid(axis="y", alpha=0.3)
    return fig


def _save(fig: Figure, path: Path) -> str:
    save_figure(fig, path)
    return path.name
