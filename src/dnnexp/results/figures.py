"""The sweep's figures: learning curves of every variant, the optimized metric as bars, the claims' forest plot. No TensorFlow.

Each figure is a ``matplotlib.figure.Figure`` built directly, not through pyplot: no
backend is chosen, no global state changes, so a notebook that imports this keeps its
inline figures, and the caller decides whether to save or show one.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib as mpl
import numpy as np
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
    if report.claims is not None and report.claims["ci_low"].notna().any():
        drawn["claims_forest"] = forest_figure(report.claims)
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
    """Per variant, the mean over its seeds of the training (dashed) and validation (solid) curves, the validation
    curve with a band of ± one standard deviation over the seeds; one colour per variant, the legend beside the axes.

    Side by side, a training curve that keeps improving while the validation curve turns
    is overfitting (HML ch. 11, regularization). An epoch's mean and band count the seeds
    that reached it (early stopping ends some sooner). A curve of one epoch is drawn as a point.
    """
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.subplots()
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row_histories in enumerate(histories):
        runs = [h for h in row_histories if h is not None and val in h]
        if not runs:
            continue
        variant = describe_row(report.table.iloc[i], report.keys)
        color, zorder = colors[i % len(colors)], len(histories) - i  # the best on top
        stacked = pd.concat([h.set_index("epoch") for h in runs], keys=range(len(runs)), names=["run", "epoch"])
        by_epoch = stacked.groupby(level="epoch")
        mean, std = by_epoch[val].mean(), by_epoch[val].std().fillna(0)
        marker = "o" if len(mean) == 1 else None
        ax.plot(mean.index, mean, color=color, marker=marker, label=f"{variant} (n={len(runs)})", zorder=zorder)
        if len(mean) == 1:  # a band needs two epochs: one epoch gets an error bar
            ax.errorbar(mean.index, mean, yerr=std, color=color, capsize=4, zorder=zorder)
        else:
            ax.fill_between(mean.index, mean - std, mean + std, color=color, alpha=0.15, linewidth=0, zorder=zorder)
        if train in stacked:
            ax.plot(mean.index, by_epoch[train].mean(), color=color, marker=marker, alpha=0.7, linestyle="--", zorder=zorder)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.get_xlim()
    ax.set_xlim(min(low, 0.5), max(high, 1.5))  # one epoch: an axis around it, not fractions of an epoch
    ax.set(xlabel="epoch", ylabel=quantity, title=f"{quantity} per epoch, mean over seeds: training (dashed), validation (solid, ± 1 sd)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # the variants, then what the two line styles mean
    styles = [Line2D([], [], color="gray", linestyle="--"), Line2D([], [], color="gray")]
    ax.legend([*handles, *styles], [*labels, "training", "validation"], fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def bars_figure(report: Report) -> Figure:
    """The optimized metric per variant, best on top, as horizontal bars so long variant names read in full;
    error bars are the seeds' standard deviation."""
    table = report.table
    name = label(report.metric)
    variants = [describe_row(row, report.keys) for _, row in table.iterrows()]
    errors = table[f"{report.metric}_std"].fillna(0) if f"{report.metric}_std" in table else None
    fig = Figure(figsize=(8, max(2.5, 0.45 * len(variants) + 1.2)), layout="constrained")
    ax = fig.subplots()
    ax.barh(range(len(variants)), table[report.metric].fillna(0), xerr=errors, capsize=4, color="tab:blue")
    ax.set_yticks(range(len(variants)), variants, fontsize="small")
    ax.invert_yaxis()  # best first, on top
    ax.set(xlabel=name, title=f"{name} per variant" + (" (mean ± std over seeds)" if report.grouped else ""))
    ax.grid(axis="x", alpha=0.3)
    return fig


VERDICT_COLORS = {"supported": "tab:green", "contradicted": "tab:red", "equivalent": "tab:blue", "not resolved": "tab:orange"}


def forest_figure(claims: pd.DataFrame) -> Figure:
    """Each tested relation's effect (> 0: the claimed way) with its 95% interval (thick) and the wider interval its verdict
    rests on (thin), the zero line, the relation's margin as a grey band, coloured and labelled by verdict."""
    rows = claims[claims["ci_low"].notna()].reset_index(drop=True)
    fig = Figure(figsize=(10, max(2.5, 0.8 * len(rows) + 1.5)), layout="constrained")
    ax = fig.subplots()
    for y, r in rows.iterrows():
        color = VERDICT_COLORS.get(r["verdict"], "gray")
        margin = r["margin"] if pd.notna(r["margin"]) else 0.0
        if margin > 0:
            ax.fill_betweenx([y - 0.4, y + 0.4], -margin, margin, color="0.85", linewidth=0, zorder=0)
        ax.plot([r["decision_low"], r["decision_high"]], [y, y], color=color, linewidth=1, zorder=2)
        ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, linewidth=4, solid_capstyle="butt", zorder=3)
        ax.plot([r["effect"]], [y], marker="o", color="white", markeredgecolor=color, markersize=7, zorder=4)
    ax.axvline(0, color="black", linewidth=0.8)
    widths = (rows["decision_high"] - rows["decision_low"]).abs()
    reach = rows[["decision_low", "decision_high"]].abs().max().max()
    if len(rows) > 1 and reach > 10 * widths.median() > 0:
        # One large effect (tanh > sigmoid: 0.77) would squeeze the others' intervals and margins into a point at 0:
        # linear around 0, out to twice the typical interval or margin, logarithmic beyond, so both read.
        ax.set_xscale("symlog", linthresh=2 * max(widths.median(), rows["margin"].fillna(0).max()), linscale=2)
    ax.set_yticks(range(len(rows)), [f"{r['relation']} ({r['metric']})".replace(" > ", "\n> ") for _, r in rows.iterrows()], fontsize="small")
    ax.invert_yaxis()
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(len(rows)), list(rows["verdict"]), fontsize="small")
    for tick, verdict in zip(right.get_yticklabels(), rows["verdict"]):
        tick.set_color(VERDICT_COLORS.get(verdict, "gray"))
    scale = "; linear near 0, logarithmic beyond" if ax.get_xscale() == "symlog" else ""
    ax.set(xlabel=f"effect: claimed better minus the other (> 0 the claimed way{scale})",
           title="Claims: effect, 95% interval (thick), the verdict's interval (thin), margin (grey band)")
    ax.grid(axis="x", alpha=0.3)
    return fig
