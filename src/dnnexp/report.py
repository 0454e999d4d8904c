"""Run folders -> pandas table -> terminal and files. No TensorFlow.

Three steps, each its own function so the Hydra callback and ``dnnexp-report`` share them:

1. :func:`load_runs` reads every run folder under the given paths into one row per
   run (what was swept, the full config flattened to dotted keys, the metrics, a
   status), never failing on a folder that is empty, half-written or corrupt.
2. :func:`build_report` keeps the parameters that vary, groups runs that differ only
   in ``trainer.seed`` (or by ``--group-by``), takes mean and standard deviation per
   group, sorts by the optimized metric and says which groups trail the best one by
   more than the noise (Welch's t-test at 5%).
3. ``render_*`` turn that table into a rich table, Markdown, HTML, CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from dnnexp.files import BACKUP, HISTORY, METRICS, lock_held, write_atomic

# The metric columns a report can show: key in metrics.json -> (column label, format).
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
    "error_rate_reduction": ("error-rate reduction vs none", "{:+.0%}"),  # transfer learning, see below
    "grad_ratio": ("grad ratio", "{:.2g}"),
    "gradient_verdict": ("gradient", "{}"),
    "mc_accuracy": ("MC acc", "{:.4f}"),
    "mc_entropy": ("MC entropy", "{:.3f}"),
    "suggested_lr": ("suggested lr", "{:.3g}"),
}
DEFAULT_METRICS = ["val_accuracy", "test_accuracy", "val_loss", "epochs_run", "seconds_per_epoch", "params_total"]
# Shown by default only when some run has a value (a diverged run has an epoch here;
# diagnostics=on, evaluation.mc_samples and mode=lr_find add theirs).
OPTIONAL_METRICS = ["diverged_epoch", "grad_ratio", "gradient_verdict", "mc_accuracy", "mc_entropy", "suggested_lr"]
NOISE_LEVEL = 0.05  # Welch's t-test: a lead with p >= 5% is "within the noise"
SEED_KEY = "trainer.seed"
SWEEP_FILE = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser: 100 runs in well under a second


class ReportError(ValueError):
    """A report option names something the runs do not have; the message lists what exists."""


@dataclass
class Runs:
    """One row per run folder, and which of its columns are the overrides a user typed."""

    frame: pd.DataFrame
    params: list[str] = field(default_factory=list)  # override keys, in the order first typed
    metrics: list[str] = field(default_factory=list)  # keys found in the runs' metrics.json

    def summary(self) -> pd.DataFrame:
        """summary.csv: one row per run, every override, then status and all metrics, then the folder."""
        return self.frame[[*self.params, "status", *self.metrics, "error", "run"]]


# ---------------------------------------------------------------- reading run folders


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every run folder at or under ``paths``: a folder with ``.hydra/`` or a ``metrics.json``."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if _is_run_dir(path):
            found[path] = None
            continue
        for marker in sorted(path.rglob(".hydra")):
            found[marker.parent] = None
        for metrics in sorted(path.rglob(METRICS)):
            found[metrics.parent] = None
    return sorted(found, key=_natural_key)


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / METRICS).is_file()


def _natural_key(path: Path) -> list[Any]:
    # Job folders are numbered: 2 before 10.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def load_runs(paths: Iterable[Path], finished: bool = False) -> Runs:
    """Read every run under ``paths``; missing jobs of a sweep become rows with status ``missing``.

    ``finished`` says the sweep is over (the multirun-end callback): a run without
    metrics then is ``incomplete`` or ``interrupted`` (it crashed or was killed) instead of ``running``.
    """
    paths = [Path(p) for p in paths]
    run_dirs = find_run_dirs(paths)
    rows, params, metrics = [], {}, {}
    for run_dir in run_dirs:
        row, overrides, result = read_run(run_dir, finished)
        rows.append(row)
        params.update(dict.fromkeys(overrides))
        metrics.update(dict.fromkeys(k for k in result if k not in ("status", "error")))
    fill_choices(rows, list(params))
    rows += [{"status": "missing", "run": str(d)} for d in missing_jobs(paths, run_dirs)]
    frame = pd.DataFrame(rows)
    for column in ("status", "run", "error", *DEFAULT_METRICS):
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    metrics.update(dict.fromkeys(DEFAULT_METRICS))
    return Runs(frame, [p for p in params if p in frame], list(metrics))


def read_run(run_dir: Path, finished: bool = False) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """One run folder -> (row, the override keys it was started with, its result). Never raises on bad files."""
    hydra_dir = run_dir / ".hydra"
    config = _read_yaml(hydra_dir / "config.yaml")
    overrides = _parse_overrides(_read_yaml(hydra_dir / "overrides.yaml"))
    row = flatten(config if isinstance(config, dict) else {})
    for key, value in overrides.items():  # a group choice (activation=elu) or a key no config shows (+experiment)
        row.setdefault(key, value)
    result = _read_result(run_dir, finished)
    row.update(result)
    row["run"] = str(run_dir)
    return row, list(overrides), result


def fill_choices(rows: list[dict[str, Any]], params: list[str]) -> None:
    """Give runs that did not override a group (``activation``) the option they ran with.

    Only Hydra's hydra.yaml knows it (``hydra.runtime.choices``); it is read for just
    those runs, because parsing it for every run would take most of a report's second.
    """
    for row in rows:
        absent = [p for p in params if p not in row]
        if absent:
            hydra = _read_yaml(Path(row["run"]) / ".hydra" / "hydra.yaml")
            choices = _get(hydra, "hydra", "runtime", "choices") or {}
            row.update({p: choices[p] for p in absent if p in choices})


def _read_result(run_dir: Path, finished: bool) -> dict[str, Any]:
    try:
        metrics = json.loads((run_dir / METRICS).read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
        metrics.setdefault("status", "completed")
        return metrics
    except FileNotFoundError:
        return {"status": _unfinished_status(run_dir, finished), **_progress(run_dir)}
    except (OSError, ValueError) as err:
        return {"status": "corrupt", "error": f"{METRICS}: {err}", **_progress(run_dir)}


def _unfinished_status(run_dir: Path, finished: bool) -> str:
    """A run without metrics.json: running, or, once no live process holds its folder (a
    run's own, a job's sweep folder), interrupted (its backup lets the same command resume
    it) or incomplete. Folders written before dnnexp locked them count as running.
    """
    held = [lock_held(folder) for folder in (run_dir, run_dir.parent)]
    if not finished and (True in held or held == [None, None]):
        return "running"
    return "interrupted" if (run_dir / BACKUP).exists() else "incomplete"


def _progress(run_dir: Path) -> dict[str, Any]:
    """How far a run without metrics.json got, from the epochs its history.csv already holds."""
    try:
        with open(run_dir / HISTORY, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        accuracies = [float(r["val_accuracy"]) for r in rows]
    except (OSError, KeyError, ValueError, TypeError):
        return {}
    finite = [a for a in accuracies if math.isfinite(a)]
    return {"epochs_run": len(rows), **({"best_val_accuracy": max(finite)} if finite else {})}


def missing_jobs(paths: list[Path], run_dirs: list[Path]) -> list[Path]:
    """Numbered job folders of a sweep that are empty, or absent although later jobs exist (deleted or never written)."""
    present = set(run_dirs)
    missing = []
    for sweep in {p for p in paths if (p / SWEEP_FILE).is_file()} | {d.parent for d in run_dirs if (d.parent / SWEEP_FILE).is_file()}:
        numbers = {int(d.name) for d in present if d.parent == sweep and d.name.isdigit()}
        empty = {int(d.name) for d in sweep.iterdir() if d.name.isdigit() and d not in present}
        missing += [sweep / str(n) for n in range(max(numbers | empty, default=-1) + 1) if n not in numbers]
    return sorted(missing, key=_natural_key)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError):
        return None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _parse_overrides(overrides: Any) -> dict[str, str]:
    """Hydra override strings -> {key: value}, without Hydra's prefixes (+, ++, ~) and its own hydra.* keys."""
    parsed = {}
    for text in overrides if isinstance(overrides, list) else []:
        key, _, value = str(text).partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith("hydra"):
            parsed[key] = value
    return parsed


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optimizer.lr": 0.01, ...}; lists become their text so they can be compared."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, list) else value
    return flat


# ---------------------------------------------------------------- the comparison table


@dataclass
class Report:
    """The comparison table: one row per variant (a run, or a group of seeds), best first.

    ``table`` holds, per metric ``m``, the mean in column ``m`` and the standard
    deviation in ``m_std``; ``n`` counts the runs of the row; ``vs_best`` is the
    noise verdict when some variant has two or more runs.
    """

    table: pd.DataFrame
    keys: list[str]
    metrics: list[str]
    metric: str
    grouped: bool
    notes: list[str]

    @property
    def best(self) -> pd.Series | None:
        valid = self.table[self.table[self.metric].notna()] if self.metric in self.table else self.table.iloc[:0]
        return None if valid.empty else valid.iloc[0]


def build_report(
    runs: Runs,
    metrics: list[str] | None = None,
    sort: str | None = None,
    where: Iterable[str] = (),
    group_by: list[str] | None = None,
) -> Report:
    """Filter, group, aggregate and sort the runs into the table a person reads."""
    frame = filter_runs(runs.frame, where)
    if frame.empty:
        raise ReportError("no runs to report" + (" match " + " and ".join(where) if where else ""))
    metric = sort or optimized_metric(frame)
    metrics = metrics or default_metrics(frame)
    _require(frame, [metric, *metrics], "metric", known=[m for m in runs.metrics if m in frame])
    if metric not in metrics:
        metrics = [metric, *metrics]
    keys, grouped = choose_groups(frame, runs.params, group_by)
    table = aggregate(frame, keys, metrics, grouped)
    table = sort_table(table, metric).reset_index(drop=True)
    table, metrics = with_error_rate_reduction(table, keys, metrics)
    notes = []
    if grouped:
        table["vs_best"], verdict = noise_verdicts(table, frame, keys, metric)
        notes.append(verdict)
    notes += failure_notes(frame)
    return Report(table, keys, metrics, metric, grouped, notes)


def filter_runs(frame: pd.DataFrame, where: Iterable[str]) -> pd.DataFrame:
    """Keep the runs matching every ``key=value`` (numbers compare as numbers: 0.1 matches 1e-1)."""
    for condition in where:
        key, sep, wanted = condition.partition("=")
        if not sep:
            raise ReportError(f"--where must be key=value, got {condition!r}")
        _require(frame, [key], "--where key")
        frame = frame[frame[key].map(lambda value: _matches(value, wanted))]
    return frame


def _matches(value: Any, wanted: str) -> bool:
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value).lower() == wanted.lower()  # Hydra writes booleans as false, YAML reads False


def _require(frame: pd.DataFrame, keys: Iterable[str], what: str, known: Iterable[str] | None = None) -> None:
    """Raise ReportError naming the first key the runs lack, and listing the ``known`` ones (default: every column)."""
    for key in keys:
        if key not in frame:
            names = known if known is not None else (c for c in frame.columns if c not in ("run", "error"))
            raise ReportError(f"{what} {key!r} is not in these runs; they have: {', '.join(sorted(names))}")


def optimized_metric(frame: pd.DataFrame) -> str:
    """The metric the runs were optimized for (their config's optimized_metric), else val_accuracy."""
    named = frame["optimized_metric"].dropna() if "optimized_metric" in frame else pd.Series(dtype=object)
    return str(named.mode().iloc[0]) if not named.empty else "val_accuracy"


def default_metrics(frame: pd.DataFrame) -> list[str]:
    optional = [m for m in OPTIONAL_METRICS if m in frame and frame[m].notna().any()]
    return [m for m in DEFAULT_METRICS + optional if m in frame]


def higher_is_better(metric: str) -> bool:
    return "loss" not in metric and "seconds" not in metric


def varying(frame: pd.DataFrame, params: list[str]) -> list[str]:
    """The overrides whose value differs between the runs: the columns worth reading."""
    return [p for p in params if p in frame and frame[p].astype(str).nunique(dropna=False) > 1]


def choose_groups(frame: pd.DataFrame, params: list[str], group_by: list[str] | None) -> tuple[list[str], bool]:
    """The key columns of the table, and whether its rows are groups of runs.

    With ``group_by`` the rows are its groups. Otherwise the columns are the overrides
    that vary; runs that differ only in ``trainer.seed`` are grouped into one row.
    """
    if group_by is not None:
        _require(frame, group_by, "--group-by key")
        return group_by, True
    shown = varying(frame, params)
    without_seed = [k for k in shown if k != SEED_KEY]
    repeated = frame[without_seed].astype(str).duplicated(keep=False).any() if without_seed else len(frame) > 1
    return (without_seed, True) if repeated else (shown, False)


def aggregate(frame: pd.DataFrame, keys: list[str], metrics: list[str], grouped: bool) -> pd.DataFrame:
    """One row per group of equal ``keys`` (or per run): mean, std, n, status and its run folders."""
    if not grouped:
        parts = [frame.iloc[[i]] for i in range(len(frame))]
    elif keys:
        parts = [part for _, part in frame.groupby([frame[k].astype(str) for k in keys], sort=False)]
    else:
        parts = [frame]
    return pd.DataFrame([_aggregate_group(part, keys, metrics) for part in parts])


def _aggregate_group(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {k: runs[k].iloc[0] for k in keys}
    for m in metrics:
        if _is_text(runs[m]):  # a verdict: the distinct words, in run order
            row[m], row[f"{m}_std"] = ", ".join(dict.fromkeys(runs[m].dropna().astype(str))) or None, math.nan
            continue
        values = pd.to_numeric(runs[m], errors="coerce") if runs[m].dtype != bool else runs[m].astype(float)
        row[m] = values.iloc[0] if len(values) == 1 else values.mean()
        row[f"{m}_std"] = values.std() if values.count() > 1 else math.nan
    row["n"] = len(runs)
    counts = Counter(runs["status"].fillna("unknown"))
    row["status"] = next(iter(counts)) if len(counts) == 1 else ", ".join(f"{c} {s}" for s, c in counts.items())
    row["runs"] = list(runs["run"])
    return row


def _is_text(column: pd.Series) -> bool:
    present = column.dropna()
    return not present.empty and present.map(lambda v: isinstance(v, str)).all()


def sort_table(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Best first by ``metric`` (accuracy up, loss down); rows without a value last."""
    return table.sort_values(metric, ascending=not higher_is_better(metric), na_position="last", kind="stable")


def noise_verdicts(table: pd.DataFrame, frame: pd.DataFrame, keys: list[str], metric: str) -> tuple[list[str], str]:
    """Per row: is its gap to the best row larger than the seeds' noise? Welch's t-test at 5%.

    Welch's test does not assume equal variances across variants (a diverging
    variant is much noisier than a good one). Needs two or more values on each side.
    """
    values = [pd.to_numeric(frame.loc[frame["run"].isin(runs), metric], errors="coerce").dropna() for runs in table["runs"]]
    best = next((i for i, v in enumerate(values) if len(v)), None)
    if best is None:
        return ["" for _ in values], "No run has a value of " + metric + "."
    cells, within, behind = [], [], 0
    for i, v in enumerate(values):
        p = None if i == best else welch_p_value(values[best], v)
        if i == best:
            cells.append("best")
        elif p is None:
            cells.append("n < 2" if len(v) else "")
        elif p >= NOISE_LEVEL:
            cells.append(f"within noise (p={p:.2f})")
            within.append(describe_row(table.iloc[i], keys))
        else:
            cells.append(f"worse (p={p:.3f})" if p >= 0.001 else "worse (p<0.001)")
            behind += 1
    head = f"Best: {describe_row(table.iloc[best], keys)}, {metric} {format_cell(table.iloc[best], metric)} (n={len(values[best])})."
    if within:
        tail = f" Within the noise of the best (Welch's t-test, p >= {NOISE_LEVEL:.0%}), so no clear winner over: {'; '.join(within)}."
    elif behind:
        tail = f" Every other variant with 2+ runs is behind by more than the noise (Welch's t-test at {NOISE_LEVEL:.0%})."
    else:
        tail = " No two variants have 2+ runs each, so the noise is unknown: add seeds (trainer.seed=0,1,2)."
    return cells, head + tail


def welch_p_value(a: pd.Series, b: pd.Series) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances), or None with fewer than two values on a side.

    Written out from the test's formula with scipy's Student t distribution
    (``scipy.special.stdtr``) instead of calling ``scipy.stats.ttest_ind``: importing
    scipy.stats alone takes longer than the rest of ``dnnexp-report``. The tests
    check it against ``ttest_ind(a, b, equal_var=False)``.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:  # no spread at all (deterministic runs): equal means tie, else the gap is certain
        return 1.0 if a.mean() == b.mean() else 0.0
    from scipy.special import stdtr

    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return float(2 * stdtr(df, -abs(t)))


def describe_row(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}={format_value(row[k])}" for k in keys) or "all runs"


def failure_notes(frame: pd.DataFrame) -> list[str]:
    """One line per run that did not complete, so no failure hides in a mean."""
    bad = frame[~frame["status"].isin(["completed"])]
    return [f"{row['status']}: {row['run']}" + (f": {row['error']}" if isinstance(row.get("error"), str) else "") for _, row in bad.iterrows()]


# ---------------------------------------------------------------- transfer learning: error-rate reduction

TRANSFER_KEY, SCRATCH = "transfer", "none"  # the override that names the arm, and the arm trained from scratch
REDUCED_METRIC = "test_accuracy"


def error_rate_reduction(accuracy: float, baseline_accuracy: float) -> float:
    """(error_scratch - error) / error_scratch: the share of the scratch model's errors that reuse removes.

    HML ch. 11 reports transfer learning this way (an error rate from 2.8% down to 0.7%).
    Negative when reuse is worse; NaN when the scratch model makes no error.
    """
    baseline_error = 1.0 - baseline_accuracy
    if not baseline_error > 0:
        return math.nan
    return (baseline_error - (1.0 - accuracy)) / baseline_error


def with_error_rate_reduction(table: pd.DataFrame, keys: list[str], metrics: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Add the error-rate reduction of test accuracy against the one row trained from scratch (``transfer=none``).

    Only when ``transfer`` is the table's key, so each row is one transfer arm (mean over its seeds)
    and the scratch row is unambiguous; any other table comes back unchanged.
    """
    if keys != [TRANSFER_KEY] or REDUCED_METRIC not in metrics:
        return table, metrics
    scratch = table.loc[table[TRANSFER_KEY].astype(str) == SCRATCH, REDUCED_METRIC]
    if len(scratch) != 1:
        return table, metrics
    reduction = [error_rate_reduction(float(a), float(scratch.iloc[0])) for a in table[REDUCED_METRIC]]
    return table.assign(error_rate_reduction=reduction, error_rate_reduction_std=math.nan), [*metrics, "error_rate_reduction"]


# ---------------------------------------------------------------- rendering


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
    """A parameter as a person reads it: Optuna's 0.0026994114136168193 as 0.002699."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def display_frame(report: Report) -> pd.DataFrame:
    """The table as text cells with readable headers: what the terminal, Markdown and HTML show."""
    columns: dict[str, list[str]] = {k: [format_value(v) for v in report.table[k]] for k in report.keys}
    for m in report.metrics:
        columns[METRIC_COLUMNS.get(m, (m, ""))[0]] = [format_cell(row, m) for _, row in report.table.iterrows()]
    if report.grouped:
        columns["n"] = [str(n) for n in report.table["n"]]
        columns["vs best"] = list(report.table["vs_best"])
    columns["status"] = list(report.table["status"])
    return pd.DataFrame(columns)


def data_frame(report: Report) -> pd.DataFrame:
    """The table as numbers (means, and ``_std`` columns for groups): what CSV and JSON export."""
    columns = list(report.keys)
    for m in report.metrics:
        columns += [m, f"{m}_std"] if report.grouped else [m]
    columns += ["n", "vs_best", "status"] if report.grouped else ["status", "runs"]
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


def render_markdown(report: Report) -> str:
    shown = display_frame(report)
    best = report.best
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "|".join("---" for _ in shown.columns) + "|"]
    for i, cells in enumerate(shown.itertuples(index=False)):
        cells = [c.replace("|", "\\|") for c in cells]
        if best is not None and i == best.name:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"{note}  " for note in report.notes]) + "\n"


def render(report: Report, fmt: str) -> str:
    """The report as text in ``fmt``: table (the terminal's, as plain text), csv, markdown, json or html."""
    if fmt == "table":
        console = Console(file=io.StringIO(), width=200)
        console.print(render_rich(report))
        return console.file.getvalue()
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "html":
        return display_frame(report).to_html(index=False, na_rep="-") + "".join(f"<p>{note}</p>\n" for note in report.notes)
    if fmt == "csv":
        return data_frame(report).to_csv(index=False)
    if fmt == "json":
        # Through json again: pandas writes NaN as null but escapes every "/" of the run folders.
        return json.dumps(json.loads(data_frame(report).to_json(orient="records")), indent=2) + "\n"
    raise ReportError(f"--format must be one of table, csv, markdown, json, html; got {fmt!r}")


def wide_console(**kwargs: Any) -> Console:
    """A console for tables: the terminal's width, or 200 columns when writing to a pipe or log."""
    console = Console(**kwargs)
    if not console.is_terminal:
        console.width = 200
    return console


# ---------------------------------------------------------------- a sweep folder

SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"


def write_sweep_report(sweep_dir: Path, console: Console, command: str | None = None, finished: bool = True) -> Report | None:
    """Print the sweep's table and write summary.csv, report.md (with ``command``) and the plots into its folder."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs([sweep_dir], finished=finished)
    if runs.frame.empty:
        console.print(f"dnnexp: no runs in {sweep_dir}")
        return None
    report = build_report(runs)
    console.print(render_rich(report, title=f"dnnexp sweep: {sweep_dir}"))
    write_atomic(sweep_dir / SUMMARY_CSV, runs.summary().to_csv(index=False))
    from dnnexp.plots import write_plots  # matplotlib only when there is something to draw

    figures = write_plots(runs, report, sweep_dir)
    write_atomic(sweep_dir / REPORT_MD, markdown_report(report, command, figures))
    console.print(f"Wrote {SUMMARY_CSV}, {REPORT_MD} and {len(figures)} plots into {sweep_dir}", highlight=False)
    return report


def sweep_command(overrides: dict[str, list[str]]) -> str:
    """The command that started a sweep, from Hydra's ``hydra.overrides`` (task and hydra ones)."""
    hydra = [o for o in overrides.get("hydra") or [] if not str(o).startswith("hydra.mode=")]
    return " ".join(["dnnexp", "-m", *map(str, hydra), *map(str, overrides.get("task") or [])])


def markdown_report(report: Report, command: str | None, figures: list[str]) -> str:
    lines = ["# dnnexp sweep", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [f"Sorted by `{report.metric}`, best first.", "", render_markdown(report)]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- one run


# The single-run summary: metrics.json key -> its row label there (formats as in METRIC_COLUMNS).
SUMMARY_ROWS = {
    "best_val_accuracy": "best val accuracy",
    "best_epoch": "kept epoch",
    "val_accuracy": "val accuracy",
    "val_loss": "val loss",
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
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
    "mc_entropy": "MC Dropout entropy",
}


def print_run_summary(metrics: dict[str, Any], run_dir: Path, console: Console) -> None:
    table = Table(title=f"dnnexp run: {run_dir}", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("status", str(metrics.get("status", "-")))
    present = {k: label for k, label in OPTIONAL_SUMMARY_ROWS.items() if metrics.get(k) is not None}
    for key, label in {**SUMMARY_ROWS, **present}.items():
        value = metrics.get(key)
        table.add_row(label, "-" if value is None else METRIC_COLUMNS[key][1].format(value))
    console.print(table)
