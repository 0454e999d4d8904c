"""Folders -> the report a person reads: their runs, the comparison table, the claims judged.

What ``dnnexp-report`` and the Python API (``dnnexp.compare``, ``dnnexp.plots``) build. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dnnexp.results.claims import judge
from dnnexp.results.runs import load_runs
from dnnexp.results.stats import Report, ReportError, build_report


def report_for(paths: list[Path], metrics: list[str] | None = None, sort: str | None = None, where: Iterable[str] = (),
               group_by: list[str] | None = None, include_pretrained: bool = False, claims: Iterable[str] = ()) -> Report:
    """The report of the runs at or under ``paths``, with the claims their configs state and ``claims``; ReportError if it cannot be made."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise ReportError(f"no such folder: {', '.join(missing)}")
    runs = load_runs(paths, include_pretrained=include_pretrained)
    report = build_report(runs, metrics=metrics, sort=sort, where=where, group_by=group_by)
    report.claims = judge(report, runs.claims, list(claims))
    return report
