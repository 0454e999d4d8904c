"""What the end of a multirun writes into the sweep folder: the table, summary.csv, report.md, report.html and the figures."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dnnexp.files import write_atomic
from dnnexp.results.figures import write_figures
from dnnexp.results.page import html_page
from dnnexp.results.render import print_report, render_markdown
from dnnexp.results.report import judge_runs
from dnnexp.results.runs import load_runs
from dnnexp.results.stats import Report, build_report

SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def write_sweep_report(sweep_dir: Path, console: Console, command: str | None = None, finished: bool = True) -> Report | None:
    """Print the sweep's table and write summary.csv, report.md and report.html (with ``command``) and the plots into its folder."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs([sweep_dir], finished=finished)
    if runs.frame.empty:
        console.print(f"dnnexp: no runs in {sweep_dir}")
        return None
    report = build_report(runs)
    report.claims = judge_runs(report, runs)
    print_report(report, console, title=f"dnnexp sweep: {sweep_dir}")
    write_atomic(sweep_dir / SUMMARY_CSV, runs.summary().to_csv(index=False))
    pngs = write_figures(report, sweep_dir)
    write_atomic(sweep_dir / REPORT_MD, markdown_report(report, command, list(pngs)))
    write_atomic(sweep_dir / REPORT_HTML, html_page(report, command, pngs))
    console.print(f"Wrote {SUMMARY_CSV}, {REPORT_MD}, {REPORT_HTML} and {len(pngs)} plots into {sweep_dir}",
                  highlight=False, soft_wrap=True)
    return report


def markdown_report(report: Report, command: str | None, figures: list[str]) -> str:
    lines = ["# dnnexp sweep", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [f"Sorted by `{report.metric}`, best first.", "", render_markdown(report)]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
