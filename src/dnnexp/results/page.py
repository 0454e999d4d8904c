"""The report as one HTML page that needs nothing beside it: the command, the table with its verdicts,
the runs that did not complete with their errors, the claims, and every plot embedded as a base64 PNG.

Written into every sweep folder (report.html) and by ``dnnexp-report --format html``; it
opens offline in any browser. Inline CSS, no script, no external resource.
"""

from __future__ import annotations

import html
from pathlib import Path

from dnnexp.results.figures import figures, img_tags
from dnnexp.results.render import CLAIMS_CAPTION, claims_display, display_frame
from dnnexp.results.runs import read_sweep_command
from dnnexp.results.stats import Report

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
pre { background: #f4f4f4; padding: .6em; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #eee; }
tr.best td { background: #e3f5e1; font-weight: bold; }
tr.failed td { color: #b00; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
"""


def html_page(report: Report, command: str | None = None, pngs: dict[str, bytes] | None = None) -> str:
    """The page; ``pngs`` (name -> PNG) are the plots already drawn, else they are drawn here."""
    pngs = figures(report).pngs() if pngs is None else pngs
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>dnnexp report</title>',
             f"<style>{STYLE}</style></head><body>", "<h1>dnnexp report</h1>"]
    if command:
        parts.append(f"<pre>{html.escape(command)}</pre>")
    parts += [f"<p>Sorted by <code>{html.escape(report.metric)}</code>, best first.</p>", _table(report)]
    parts += [f"<p class=\"note\">{html.escape(note)}</p>" for note in report.notes]
    claims = claims_display(report)
    if claims is not None:
        parts += ["<h2>Claims</h2>", claims.to_html(index=False, escape=True), f"<p>{html.escape(CLAIMS_CAPTION)}</p>"]
    parts += ["<h2>Plots</h2>", img_tags(pngs)] if pngs else []
    return "\n".join([*parts, "</body></html>"]) + "\n"


def report_command(paths: list[Path], argv: list[str]) -> str:
    """What made this report: the sweep's own command for one sweep folder, else the report command ``argv``."""
    command = read_sweep_command(paths[0]) if len(paths) == 1 else None
    return command or " ".join(argv)


def _table(report: Report) -> str:
    shown = display_frame(report)
    best = report.best
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    rows = []
    for i, cells in enumerate(shown.itertuples(index=False)):
        status = str(report.table["status"].iloc[i])
        css = "best" if best is not None and i == best.name else ("failed" if status != "completed" and report.table["n"].iloc[i] == 0 else "")
        rows.append(f'<tr class="{css}">' + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
