"""``dnnexp-report PATH...``: the comparison table from any run folders, sweep folders or a parent like outputs/.

Imports no TensorFlow (and no matplotlib unless ``--plots``), so it answers in about a second.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import sys
from pathlib import Path

from rich.console import Console

from dnnexp.files import write_atomic
from dnnexp.results.render import FORMATS, print_report, render, wide_console
from dnnexp.results.report import report_for
from dnnexp.results.stats import Report, ReportError

SUFFIX_FORMATS = {".csv": "csv", ".md": "markdown", ".json": "json", ".html": "html", ".htm": "html", ".txt": "table"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dnnexp-report",
        description="Compare dnnexp runs: one row per variant, runs that differ only in trainer.seed as mean ± std.",
        epilog="example: dnnexp-report outputs/ --where activation=selu --group-by optimizer.lr --format markdown",
    )
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("outputs")], metavar="PATH",
                        help="run folders, sweep folders or a parent such as outputs/ (default: outputs)")
    parser.add_argument("--metrics", type=_comma_list, help="metric columns, comma-separated (default: "
                        "val_accuracy,test_accuracy,val_loss,epochs_run,seconds_per_epoch,params_total)")
    parser.add_argument("--sort", metavar="METRIC", help="sort by this metric (default: the runs' optimized_metric)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs whose config key (or status) has this value; repeat to combine")
    parser.add_argument("--group-by", type=_comma_list, metavar="KEYS",
                        help="one row per value of these keys, comma-separated, with mean ± std and n")
    parser.add_argument("--claim", action="append", default=[], metavar="CLAIM",
                        help="check a claim, e.g. 'activation=selu > activation=relu' (see docs/claims.md); repeat for more")
    parser.add_argument("--margin", type=_margin, metavar="D",
                        help="practical margin of the claims without their own 'within D': a smaller difference is "
                             "'equivalent' (default: the runs' claims_margin, else 0.005 for accuracies, 0.01 for losses)")
    parser.add_argument("--format", choices=(*FORMATS, "html"),
                        help="table (default on a terminal), csv, markdown, json, html (one page with the plots)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here (format from its suffix unless --format)")
    parser.add_argument("--include-pretrained", action="store_true",
                        help="also list transfer learning's task-A caches (outputs/pretrained/<hash>), left out by default")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="also write the learning-curve and bar PNGs into DIR")
    return parser.parse_args(argv)


def _margin(text: str) -> float:
    from dnnexp.results.claims import ClaimError, check_margin

    try:
        return check_margin(text, "--margin")
    except ClaimError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> None:
    atexit.register(gc.freeze)  # no full garbage collections at exit, as in dnnexp (cli.main)
    args = parse_args(argv)
    try:
        run(args, argv)
    except ReportError as err:
        Console(stderr=True).print(f"[bold red]dnnexp-report: error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    report = report_for(args.paths, metrics=args.metrics, sort=args.sort, where=args.where, group_by=args.group_by,
                        include_pretrained=args.include_pretrained, claims=args.claim,
                        margin=args.margin)
    fmt = args.format or (SUFFIX_FORMATS.get(args.output.suffix.lower(), "table") if args.output else "table")
    if fmt == "html":  # matplotlib only for the page that embeds the plots
        from dnnexp.results.page import html_page, report_command

        text = html_page(report, report_command(args.paths, ["dnnexp-report", *(sys.argv[1:] if argv is None else argv)]))
    elif fmt != "table" or args.output:
        text = render(report, fmt)
    else:
        print_report(report, wide_console(), title=title(report, args.paths))
        text = None
    if text is not None and args.output:
        write_atomic(args.output, text)
    elif text is not None:
        sys.stdout.write(text)
    if args.plots:
        from dnnexp.results.figures import write_figures  # matplotlib only when asked to draw

        write_figures(report, args.plots)


def title(report: Report, paths: list[Path]) -> str:
    """``dnnexp: 3 runs in DIR``, or ``dnnexp: 1 run in DIR (2 jobs missing)``: a sweep's missing jobs are rows, not runs."""
    missing = int((report.runs["status"] == "missing").sum())
    found = len(report.runs) - missing
    text = f"dnnexp: {found} run{'s' if found != 1 else ''} in {', '.join(map(str, paths))}"
    return text + (f" ({missing} job{'s' if missing != 1 else ''} missing)" if missing else "")


if __name__ == "__main__":
    main()
