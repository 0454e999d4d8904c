"""The sweep's figures: learning curves of every variant, and the optimized metric as bars. No TensorFlow.

Each figure is a ``matplotlib.figure.Figure`` built directly, not through pyplot: no
backend is chosen, no global state changes, so a notebook that imports this keeps its
inline figures, and the caller decides whether to save or show one.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dnnexp.files import HISTORY, figure_png, write_atomic
from dnnexp.results.columns import describe_row, label
from dnnexp.results.stats import Report

# figure name -> (history.csv's training column, its validation column, the quantity's name)
CURVES = {"accuracy_curves": ("accuracy", "val_accuracy", "accuracy"), "loss_curves": ("loss", "val_loss", "loss")}


class Figures(dict):
    """The figures of a report by name (``accuracy_curves``, ``loss_curves``, ``<metric>_bars``).

    A plain dict of ``matplotlib.figure.Figure``; in Jupyter it shows all of them inline,
    as PNG images in one HTML output, since a notebook shows a dict as text.
    """

    def pngs(self) -> dict[str, bytes]:
        return {name: figure_png(fig) for name, fig in self.items()}

    def _repr_html_(self) -> str:
        return img_tags(self.pngs())


def figures(report: Report) -> Figures:
    """Every figure the report has data for: the learning curves (from each run's history.csv) and the bars."""
    drawn = Figures()
    histories = read_histories(report)
    for name, (train, val, quantity) in CURVES.items():
        if any(h is not None and val in h for hs in histories for h in hs):
            drawn[name] = curves_figure(report, histories, train, val, quantity)
    if report.table[report.metric].notna().any():
        drawn[f"{report.metric}_bars"] = bars_figure(report)
    return drawn


def write_figures(report: Report, folder: Path) -> dict[str, bytes]:
    """Write each figure as ``<name>.png`` into ``folder``; return the PNGs by file name."""
    pngs = {f"{name}.png": png for name, png in figures(report).pngs().items()}
    for name, png in pngs.items():
        write_atomic(Path(folder) / name, png)
    return pngs


def img_tags(pngs: dict[str, bytes]) -> str:
    """Each PNG as an ``<img>`` that carries its image (base64), so a page shows it with no file beside it."""
    return "\n".join(f'<figure><img alt="{html.escape(Path(name).stem)}" src="data:image/png;base64,'
                     f'{base64.b64encode(png).decode("ascii")}"></figure>' for name, png in pngs.items())


def read_histories(report: Report) -> list[list[pd.DataFrame | None]]:
    """Per table row, the history.csv of each of its runs (None where it cannot be read)."""
    return [[_history(run) for run in row_runs] for row_runs in report.table["runs"]]


def _history(run: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(Path(run) / HISTORY)
    except (OSError, ValueError):
        return None


def curves_figure(report: Report, histories: list[list[pd.DataFrame | None]], train: str, val: str, quantity: str) -> Figure:
    """Training (dashed) and validation (solid) curves of every run, one colour per variant (its seeds share it).

    Side by side, a training curve that keeps improving while the validation curve turns
    is overfitting (HML ch. 11, regularization). Runs that share a seed follow the same
    curve until they differ (early stopping ends one of them), so the better variant is drawn on top.
    """
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row_histories in enumerate(histories):
        variant = describe_row(report.table.iloc[i], report.keys)
        color, zorder = colors[i % len(colors)], len(histories) - i  # the best on top
        for j, history in enumerate(h for h in row_histories if h is not None and val in h):
            ax.plot(history["epoch"], history[val], color=color, alpha=0.8, label=variant if j == 0 else None, zorder=zorder)
            if train in history:
                ax.plot(history["epoch"], history[train], color=color, alpha=0.6, linestyle="--", zorder=zorder)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=quantity, title=f"{quantity} per epoch: training (dashed) and validation (solid)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # the variants, then what the two line styles mean
    styles = [Line2D([], [], color="gray", linestyle="--"), Line2D([], [], color="gray")]
    ax.legend([*handles, *styles], [*labels, "training", "validation"], fontsize="small")
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

