"""The sweep's figures: learning curves of every variant, and the optimized metric as bars. No TensorFlow.

matplotlib is imported here only, with the Agg backend (no display needed), so the
table of ``dnnexp-report`` does not pay for it.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dnnexp.files import HISTORY, write_atomic  # noqa: E402
from dnnexp.report import METRIC_COLUMNS, Report, Runs, describe_row  # noqa: E402

CURVES = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}


def write_plots(runs: Runs, report: Report, folder: Path) -> list[str]:
    """Write val_accuracy_curves.png, val_loss_curves.png and <metric>_bars.png into ``folder``; return their names."""
    written = []
    histories = [[_history(run) for run in row_runs] for row_runs in report.table["runs"]]
    for column, label in CURVES.items():
        if any(h is not None and column in h for hs in histories for h in hs):
            written.append(_save(curves_figure(report, histories, column, label), Path(folder) / f"{column}_curves.png"))
    if report.table[report.metric].notna().any():
        written.append(_save(bars_figure(report), Path(folder) / f"{report.metric}_bars.png"))
    return written


def _history(run: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(Path(run) / HISTORY)
    except (OSError, ValueError):
        return None


def curves_figure(report: Report, histories: list[list[pd.DataFrame | None]], column: str, label: str) -> plt.Figure:
    """One line per run, one colour per variant (its seeds share it), labelled once per variant.

    Runs that share a seed follow the same curve until they differ (early stopping
    ends one of them), so the better variant is drawn on top.
    """
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row_histories in enumerate(histories):
        name = describe_row(report.table.iloc[i], report.keys)
        for j, history in enumerate(h for h in row_histories if h is not None and column in h):
            ax.plot(history["epoch"], history[column], color=colors[i % len(colors)], alpha=0.8,
                    label=name if j == 0 else None, zorder=len(histories) - i)  # the best on top
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(f"{label} per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def bars_figure(report: Report) -> plt.Figure:
    """The optimized metric per variant, best first; error bars are the seeds' standard deviation."""
    table = report.table
    label = METRIC_COLUMNS.get(report.metric, (report.metric, ""))[0]
    names = [describe_row(row, report.keys) for _, row in table.iterrows()]
    errors = table[f"{report.metric}_std"].fillna(0) if f"{report.metric}_std" in table else None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 5))
    ax.bar(range(len(names)), table[report.metric].fillna(0), yerr=errors, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel(label)
    ax.set_title(f"{label} per variant" + (" (mean ± std over seeds)" if report.grouped else ""))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _save(fig: plt.Figure, path: Path) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path.name
