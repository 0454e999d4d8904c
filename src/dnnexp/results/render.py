"""The comparison table as text: a rich table for the terminal, Markdown, HTML, CSV, JSON; one run's summary panel."""

from __future__ import annotations

import io
import math
import json
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dnnexp.results.columns import METRIC_COLUMNS, format_cell, format_value, label
from dnnexp.results.stats import Report, ReportError

FORMATS = ("table", "csv", "markdown", "json")  # and html, a page with the plots: results.page


def display_frame(report: Report) -> pd.DataFrame:
    """The table as text cells with readable headers: what the terminal, Markdown and HTML show."""
    columns: dict[str, list[str]] = {k: [format_value(v) for v in report.table[k]] for k in report.keys}
    for m in report.metrics:
        columns[label(m)] = [format_cell(row, m) for _, row in report.table.iterrows()]
    if report.grouped:
        columns["n"] = [str(n) for n in report.table["n"]]
        columns["vs best"] = list(report.table["vs_best"])
    columns["status"] = list(report.table["status"])
    return pd.DataFrame(columns)


def data_frame(report: Report) -> pd.DataFrame:
    """The table as numbers (means, ``_std`` columns and the p-values for groups): what CSV and JSON export."""
    columns = list(report.keys)
    for m in report.metrics:
        columns += [m, f"{m}_std"] if report.grouped else [m]
    columns += ["n", "vs_best", "p_value", "p_adjusted", "status"] if report.grouped else ["status", "runs"]
    table = report.table.copy()
    if not report.grouped:
        table["runs"] = table["runs"].str[0]
    return table[columns].rename(columns={"runs": "run"})


STATUS_STYLES = {"failed": "red", "corrupt": "red", "missing": "red", "diverged": "yellow", "running": "dim", "incomplete": "dim",
                 "interrupted": "yellow"}


def render_rich(report: Report, title: str | None = None) -> Table:
    shown = display_frame(report)
    table = Table(title=title, title_justify="left", caption="\n".join(report.notes) or None, caption_justify="left")
    for column in shown.columns:
        text = column in report.keys or column in ("status", "vs best")
        table.add_column(column, justify="left" if text else "right", no_wrap=column == "status")
    best = report.best
    for i, cells in enumerate(shown.itertuples(index=False)):
        status = report.table["status"].iloc[i]
        style = "bold green" if best is not None and i == best.name else STATUS_STYLES.get(status.split(" ")[-1], "")
        table.add_row(*cells, style=style)
    return table


VERDICT_STYLES = {"supported": "green", "contradicted": "red", "equivalent": "cyan", "not resolved": "yellow", "not checked": "dim"}
CLAIMS_TEXT_COLUMNS = ("relation", "metric", "test", "verdict", "note")  # aligned left; the numbers right


CLAIMS_COLUMNS = ["relation", "metric", "test", "n", "effect [95% CI]", "P(A>B)", "verdict", "seeds", "round", "note"]


def claims_display(report: Report) -> pd.DataFrame | None:
    """The claims section as text cells: each claim on a row of its own (unless its one relation reads the same), then its
    relations with their test, effect and 95% interval, P(A > B), verdict (with the margin when equivalent), the seeds it
    rests on and the claims sweeper's round that decided it. Columns empty in every row are left out."""
    if report.claims is None:
        return None
    rows, previous = [], None
    claims = report.claims.to_dict("records")
    for r in claims:
        alone = sum(c["claim"] == r["claim"] for c in claims) == 1 and r["relation"] in r["claim"]
        if r["claim"] != previous and not alone:
            rows.append({**dict.fromkeys(CLAIMS_COLUMNS, ""), "relation": r["claim"]})
        previous = r["claim"]
        tested = _present(r["ci_low"])
        effect = "" if not _present(r["effect"]) else f"{r['effect']:+.4f}" + (f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if tested else "")
        test = _text(r["test"]) + (f" (r={r['correlation']:+.2f})" if _present(r["correlation"]) else "")
        prob = f"{r['prob_improvement']:.2f} [{r['prob_low']:.2f}, {r['prob_high']:.2f}]" if _present(r["prob_improvement"]) else ""
        verdict = r["verdict"] + (f" (±{r['margin']:.3g})" if r["verdict"] == "equivalent" else "")
        rows.append({"relation": ("  " if not alone else "") + r["relation"], "metric": _text(r["metric"]), "test": test, "n": r["n"],
                     "effect [95% CI]": effect, "P(A>B)": prob, "verdict": verdict, "seeds": _whole(r["seeds"]),
                     "round": _whole(r["round"]), "note": _text(r["note"])})
    shown = pd.DataFrame(rows, columns=CLAIMS_COLUMNS)
    return shown[[c for c in shown.columns if c in ("relation", "verdict") or (shown[c] != "").any()]]  # no empty column


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _whole(value: Any) -> str:
    return str(int(value)) if _present(value) else ""


def _text(value: Any) -> str:
    """A cell of the claims table as text: a property claim has no metric (None, or NaN in a mixed column)."""
    return str(value) if _present(value) else ""


CLAIMS_CAPTION = ("effect: the claimed better side minus the other (mean of the seed-wise differences when paired; > 0 goes the "
                  "claimed way; losses count lower as better), with its 95% interval. test: paired t on the seeds both sides ran "
                  "(r: the correlation of the pairs), else Welch's t. P(A>B): the probability of improvement, with a bootstrap 95% "
                  "interval. verdict: from the effect's interval at the family's level (5% split among the relations; for the "
                  "claims sweeper, kept over all its rounds): inside ± the margin is equivalent, above 0 supported, below 0 contradicted. "
                  "seeds: pairs (or the smaller side's runs) the verdict rests on; round: the claims sweeper's round that decided it.")


def render_claims_rich(report: Report) -> Table | None:
    shown = claims_display(report)
    if shown is None:
        return None
    table = Table(title="Claims", title_justify="left", caption=CLAIMS_CAPTION, caption_justify="left")
    for column in shown.columns:
        table.add_column(column, justify="left" if column in CLAIMS_TEXT_COLUMNS else "right", no_wrap=column not in ("relation", "note"))
    for row in shown.to_dict("records"):
        row["verdict"] = Text(row["verdict"], style=VERDICT_STYLES.get(row["verdict"].split(" (")[0], ""))
        # a claim's own row is bold; "n" is left out when no row has one (every claim not checked)
        row["relation"] = Text(row["relation"], style="" if row["relation"].startswith("  ") or row.get("n") else "bold")
        table.add_row(*row.values())
    return table


def print_report(report: Report, console: Console, title: str | None = None) -> None:
    """The table, then its claims section if any, on ``console``."""
    console.print(render_rich(report, title=title))
    claims = render_claims_rich(report)
    if claims is not None:
        console.print(claims)


def _markdown_table(shown: pd.DataFrame, bold_row: int | None = None) -> list[str]:
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "|".join("---" for _ in shown.columns) + "|"]
    for i, cells in enumerate(shown.itertuples(index=False)):
        cells = [str(c).replace("|", "\\|") for c in cells]
        if i == bold_row:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: Report) -> str:
    best = report.best
    lines = _markdown_table(display_frame(report), None if best is None else best.name)
    lines += [""] + [f"{note}  " for note in report.notes]
    claims = claims_display(report)
    if claims is not None:
        lines += ["", "## Claims", "", *_markdown_table(claims), "", CLAIMS_CAPTION]
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str) -> str:
    """The report as text in ``fmt``: table (the terminal's, as plain text), csv, markdown or json."""
    if fmt == "table":
        console = Console(file=io.StringIO(), width=200)
        print_report(report, console)
        return console.file.getvalue()
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "csv":
        return data_frame(report).to_csv(index=False)
    if fmt == "json":
        # Through json again: pandas writes NaN as null but escapes every "/" of the run folders.
        return json.dumps(json.loads(data_frame(report).to_json(orient="records")), indent=2) + "\n"
    raise ReportError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")


def wide_console(**kwargs: Any) -> Console:
    """A console for tables: the terminal's width, or 200 columns when writing to a pipe or log."""
    console = Console(**kwargs)
    if not console.is_terminal:
        console.width = 200
    return console


# The single-run summary: metrics.json key -> its row label there (formats as in METRIC_COLUMNS).
SUMMARY_ROWS = {
    "best_val_accuracy": "best val accuracy",
    "best_epoch": "kept epoch",
    "val_accuracy": "val accuracy",
    "val_loss": "val loss",
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "train_accuracy": "train accuracy (dropout off)",
    "epochs_run": "epochs run",
    "stopped_early": "stopped early",
    "seconds_per_epoch": "seconds / epoch",
    "params_total": "parameters",
}
# Rows shown only when the run has them (diagnostics=on, evaluation.mc_samples).
OPTIONAL_SUMMARY_ROWS = {
    "grad_ratio": "grad ratio (first / last)",
    "gradient_verdict": "gradient flow",
    "mc_accuracy": "MC Dropout accuracy",
    "mc_val_accuracy": "MC Dropout val accuracy",
    "mc_entropy": "MC Dropout entropy",
}


def print_run_summary(metrics: dict[str, Any], run_dir: Path, console: Console) -> None:
    """The panel a single run ends with: its folder on a line of its own (never wrapped), its status and main metrics."""
    console.print(f"dnnexp run: {run_dir}", highlight=False, soft_wrap=True)
    table = Table(show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("status", run_status(metrics))
    present = {k: name for k, name in OPTIONAL_SUMMARY_ROWS.items() if not _absent(metrics.get(k))}
    for key, name in {**SUMMARY_ROWS, **present}.items():
        value = metrics.get(key)
        table.add_row(name, "-" if _absent(value) else METRIC_COLUMNS[key][1].format(value))
    console.print(table)


def run_status(metrics: dict[str, Any]) -> str:
    """``completed``; ``diverged in epoch 3``, and ``: no model kept`` when no epoch before it was finite."""
    status, epoch = str(metrics.get("status", "-")), metrics.get("diverged_epoch")
    if status != "diverged" or epoch is None:
        return status
    kept = not (_absent(metrics.get("best_epoch")) and _absent(metrics.get("val_accuracy")))
    return f"diverged in epoch {epoch}" + ("" if kept else ": no model kept")


def _absent(value: Any) -> bool:
    """No number: None in metrics.json, NaN in the metrics a run returns."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def print_job_line(num: int, overrides: list[str], metrics: dict[str, Any], metric: str, seconds: float, console: Console) -> None:
    """The line a sweep's job ends with: ``#3 activation=elu  val_accuracy 0.9120  completed  4.2 s``."""
    value = metrics.get(metric)
    shown = "-" if _absent(value) else METRIC_COLUMNS.get(metric, (metric, "{:.4g}"))[1].format(value)
    console.print(f"#{num} {' '.join(overrides)}  {metric} {shown}  {run_status(metrics)}  {seconds:.1f} s",
                  highlight=False, soft_wrap=True)
