"""Folders -> the report a person reads: their runs, the comparison table, the claims judged.

What ``dnnexp-report`` and the Python API (``dnnexp.compare``, ``dnnexp.plots``) build. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dnnexp.results.claims import Design, judge
from dnnexp.results.runs import Runs, load_runs
from dnnexp.results.stats import Report, ReportError, build_report


def report_for(paths: list[Path], metrics: list[str] | None = None, sort: str | None = None, where: Iterable[str] = (),
               group_by: list[str] | None = None, include_pretrained: bool = False, claims: Iterable[str] = (),
               margin: float | None = None) -> Report:
    """The report of the runs at or under ``paths``, with the claims their configs state and ``claims``; ReportError if it cannot be made.

    ``margin`` (``--margin``) is the practical margin of every claim without its own ``within``,
    else the runs' ``claims_margin``, else each metric's default.
    """
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise ReportError(f"no such folder: {', '.join(missing)}")
    runs = load_runs(paths, include_pretrained=include_pretrained)
    report = build_report(runs, metrics=metrics, sort=sort, where=where, group_by=group_by)
    report.claims = judge_runs(report, runs, claims, margin)
    return report


def judge_runs(report: Report, runs: Runs, typed: Iterable[str] = (), margin: float | None = None):
    """The claims section: the runs' own claims and ``typed``, at ``margin`` or the runs' claims_margin,
    round by round when the runs are one claims sweeper's sweep."""
    design = Design(*runs.design) if runs.design else None
    return judge(report, runs.claims, list(typed), margin if margin is not None else runs.margin, design)
