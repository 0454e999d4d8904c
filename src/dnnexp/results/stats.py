"""Runs -> the comparison table: filter, group the seeds, mean and standard deviation, noise verdicts.

:func:`build_report` keeps the parameters that vary, groups runs that differ only in
``trainer.seed`` (or by ``--group-by``), takes mean and standard deviation per group,
sorts by the optimized metric and says which groups trail the best one by more than
the noise (Welch's t-test, Holm-adjusted for the number of comparisons, at 5%).

A row of a grouped table describes its completed runs: failed, diverged, running or
missing runs are counted in its status and listed under the table, never averaged in.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from dnnexp.results.columns import DEFAULT_METRICS, OPTIONAL_METRICS, describe_row, format_cell, higher_is_better
from dnnexp.results.inference import welch_t
from dnnexp.results.runs import Runs

NOISE_LEVEL = 0.05  # family-wise: a lead with Holm-adjusted p >= 5% is "within the noise"
SEED_KEY = "trainer.seed"
COUNTED = "completed"  # the status of the runs a grouped row's means, std and n describe


class ReportError(ValueError):
    """A report option names something the runs do not have; the message lists what exists."""


@dataclass
class Report:
    """The comparison table: one row per variant (a run, or a group of seeds), best first.

    ``table`` holds, per metric ``m``, the mean in column ``m`` and the standard
    deviation in ``m_std`` (over the row's completed runs when grouped); ``n`` counts
    the row's completed runs; ``status`` counts its runs by status. When some variant
    has two or more runs, ``vs_best`` is the noise verdict, ``p_value`` Welch's p against
    the best row and ``p_adjusted`` that p after Holm's correction.
    """

    table: pd.DataFrame
    keys: list[str]
    metrics: list[str]
    metric: str
    grouped: bool
    notes: list[str]
    runs: pd.DataFrame | None = None  # the runs the table was built from (after --where)
    claims: pd.DataFrame | None = None  # claims.judge's verdicts, when claims were stated

    @property
    def best(self) -> pd.Series | None:
        valid = self.table[self.table[self.metric].notna() & (self.table["n"] > 0)] if self.metric in self.table else self.table.iloc[:0]
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
    keys, grouped = choose_groups(frame, runs.params, group_by)
    metrics = metrics or default_metrics(frame[frame["status"] == COUNTED] if grouped else frame)
    _require(frame, [metric, *metrics], "metric", known=[m for m in runs.metrics if m in frame])
    if metric not in metrics:
        metrics = [metric, *metrics]
    table = aggregate(frame, keys, metrics, grouped)
    table = sort_table(table, metric).reset_index(drop=True)
    table, metrics = with_error_rate_reduction(table, keys, metrics)
    notes = []
    if grouped:
        columns, verdict = noise_verdicts(table, frame, keys, metric)
        table = table.assign(**columns)
        notes.append(verdict)
    notes += failure_notes(frame, grouped)
    return Report(table, keys, metrics, metric, grouped, notes, runs=frame)


def filter_runs(frame: pd.DataFrame, where: Iterable[str]) -> pd.DataFrame:
    """Keep the runs matching every ``key=value`` (numbers compare as numbers: 0.1 matches 1e-1)."""
    for condition in where:
        key, sep, wanted = condition.partition("=")
        if not sep:
            raise ReportError(f"--where must be key=value, got {condition!r}")
        _require(frame, [key], "--where key")
        frame = frame[frame[key].map(lambda value: matches(value, wanted))]
    return frame


def matches(value: Any, wanted: str) -> bool:
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
    """One row per group of equal ``keys`` (or per run): mean, std, n, status and its run folders.

    A group's numbers are its completed runs'; a row of one run (``grouped`` false) shows
    that run's numbers whatever its status, which the status column then names.
    """
    if not grouped:
        parts = [frame.iloc[[i]] for i in range(len(frame))]
    elif keys:
        # dropna=False: a run without a key (a missing job, a task-A cache) is a row of its own, never dropped
        parts = [part for _, part in frame.groupby([frame[k].astype(str) for k in keys], sort=False, dropna=False)]
    else:
        parts = [frame]
    return pd.DataFrame([_aggregate_group(part, keys, metrics, grouped) for part in parts])


def _aggregate_group(runs: pd.DataFrame, keys: list[str], metrics: list[str], grouped: bool) -> dict[str, Any]:
    row: dict[str, Any] = {k: runs[k].iloc[0] for k in keys}
    counted = runs[runs["status"] == COUNTED]
    described = counted if grouped else runs
    for m in metrics:
        if _is_text(runs[m]):  # a verdict: the distinct words, in run order
            row[m], row[f"{m}_std"] = ", ".join(dict.fromkeys(described[m].dropna().astype(str))) or None, math.nan
            continue
        values = pd.to_numeric(described[m], errors="coerce") if runs[m].dtype != bool else described[m].astype(float)
        row[m] = values.iloc[0] if len(values) == 1 else values.mean()
        row[f"{m}_std"] = values.std() if values.count() > 1 else math.nan
    row["n"] = len(counted)
    counts = Counter(runs["status"].fillna("unknown"))
    plain = len(runs) == 1 or set(counts) == {COUNTED}  # else a count per status: "2 completed, 1 failed"
    row["status"] = next(iter(counts)) if plain else ", ".join(f"{c} {s}" for s, c in counts.items())
    row["runs"] = list(runs["run"])
    return row


def _is_text(column: pd.Series) -> bool:
    present = column.dropna()
    return not present.empty and present.map(lambda v: isinstance(v, str)).all()


def sort_table(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Best first by ``metric`` (accuracy up, loss down), rows without a value last; rows without a completed run after all others."""
    order = table.assign(_counted=table["n"] > 0)
    order = order.sort_values(["_counted", metric], ascending=[False, not higher_is_better(metric)], na_position="last", kind="stable")
    return order.drop(columns="_counted")


def noise_verdicts(table: pd.DataFrame, frame: pd.DataFrame, keys: list[str], metric: str) -> tuple[dict[str, list], str]:
    """Per row: is its gap to the best row larger than the seeds' noise? Welch's t-test, Holm-adjusted, at 5%.

    Welch's test does not assume equal variances across variants (a diverging
    variant is much noisier than a good one); it needs two or more completed runs on
    each side. Every variant is tested against a best picked after the fact, so the
    p-values are Holm-adjusted for the number of tests: of simulated tables of six equal
    variants with 3 seeds each, about 22% call at least one of them worse uncorrected, under 5%
    adjusted (tests/test_report.py).
    Returns the columns vs_best, p_value and p_adjusted, and the note under the table.
    """
    completed = frame[frame["status"] == COUNTED]
    values = [pd.to_numeric(completed.loc[completed["run"].isin(runs), metric], errors="coerce").dropna() for runs in table["runs"]]
    best = next((i for i, v in enumerate(values) if len(v)), None)
    if best is None:
        return {"vs_best": [""] * len(values), "p_value": [None] * len(values), "p_adjusted": [None] * len(values)}, \
            f"No completed run has a value of {metric}."
    raw = {i: welch_p_value(values[best], v) for i, v in enumerate(values) if i != best}
    tested = {i: p for i, p in raw.items() if p is not None}
    adjusted = dict(zip(tested, holm_adjust(list(tested.values()))))
    cells, within, behind = [], [], 0
    for i, v in enumerate(values):
        p = adjusted.get(i)
        if i == best:
            cells.append("best")
        elif p is None:
            cells.append("n < 2" if len(v) else "")
        elif p >= NOISE_LEVEL:
            cells.append(f"within noise (adj. p={p:.2f})")
            within.append(describe_row(table.iloc[i], keys))
        else:
            cells.append(f"worse (adj. p={p:.3f})" if p >= 0.001 else "worse (adj. p<0.001)")
            behind += 1
    head = f"Best: {describe_row(table.iloc[best], keys)}, {metric} {format_cell(table.iloc[best], metric)} ({_n_of(values[best], table.iloc[best], metric)})."
    test = f"Welch's t-test against the best, p Holm-adjusted for {len(tested)} comparison{'s' if len(tested) > 1 else ''}"
    if within:
        tail = f" Within the noise of the best ({test}: adj. p >= {NOISE_LEVEL:.0%}), so no clear winner over: {'; '.join(within)}."
    elif behind:
        tail = f" Every other variant with 2+ runs is behind by more than the noise ({test}: adj. p < {NOISE_LEVEL:.0%})."
    elif sum(len(v) > 0 for v in values) == 1:
        tail = f" No other variant has a completed run with a value of {metric}: nothing to compare it with."
    else:
        tail = " No two variants have 2+ completed runs each, so the noise is unknown: add seeds (trainer.seed=0,1,2)."
    columns = {"vs_best": cells, "p_value": [raw.get(i) for i in range(len(values))], "p_adjusted": [adjusted.get(i) for i in range(len(values))]}
    return columns, head + tail


def _n_of(values: pd.Series, row: pd.Series, metric: str) -> str:
    """``n=3``; ``n=2 of 3 completed, 1 without a value`` when a completed run has no value of ``metric``."""
    lacking = row["n"] - len(values)
    return f"n={len(values)}" + (f" of {row['n']} completed, {lacking} without a value of {metric}" if lacking else "")


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given; reject where the result is below the level.

    Sorted ascending, the i-th smallest of m p-values becomes max over j <= i of
    min(1, (m - j + 1) p_(j)) (Holm 1979): the family-wise error stays at the level
    without assuming the tests independent. Written here because the only library with
    it, statsmodels (``multipletests(method="holm")``), is not otherwise needed; the
    tests check it against a case computed by hand.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def welch_p_value(a: pd.Series, b: pd.Series) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances), or None with fewer than two values on a side.

    The claims' own test (inference.welch_t); with no spread at all (deterministic runs) equal
    means tie (p = 1) and any gap is certain (p = 0).
    """
    test = welch_t(a, b)
    return None if test is None else test.p


def failure_notes(frame: pd.DataFrame, grouped: bool) -> list[str]:
    """One line per run that did not complete, so no failure hides in a mean; when grouped, what n left out."""
    bad = frame[frame["status"] != COUNTED]
    lines = []
    if grouped and not bad.empty:
        counts = ", ".join(f"{c} {s}" for s, c in Counter(bad["status"].fillna("unknown")).items())
        lines.append(f"Means, std and n count completed runs only; left out: {counts}.")
    for _, row in bad.iterrows():
        epoch = pd.to_numeric(row.get("diverged_epoch"), errors="coerce")
        line = f"{row['status']}: {row['run']}" + (f" (at epoch {epoch:.0f})" if pd.notna(epoch) else "")
        lines.append(line + (f": {row['error']}" if isinstance(row.get("error"), str) else ""))
    return lines


# Transfer learning: the error-rate reduction against the arm trained from scratch.
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
