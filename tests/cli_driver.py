"""Runs many `dnnexp ARGS` commands in one process, so TensorFlow loads once for all of them.

Usage: python cli_driver.py CASES.json RESULTS.json, where CASES.json maps a case name to
its argument list. Each case runs in its own empty folder; its result is the exit code,
what it printed, the status of every metrics.json it left behind, every path it left, and
whether TensorFlow had been imported into the process by the end of the case.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from pathlib import Path

from dnnexp.cli import main

# Overrides for run_case called from a test's own process: Hydra then logs nowhere, since its
# log handlers would outlive the captured streams they were given.
IN_PROCESS = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


def run_command(args: list[str], cwd: Path) -> tuple[int | str, str, str]:
    """`dnnexp ARGS` run in this process in ``cwd``: (exit code, what it printed to stdout, to stderr).

    The working folder and sys.argv are put back afterwards."""
    out, err = io.StringIO(), io.StringIO()
    saved_cwd, saved_argv = os.getcwd(), sys.argv
    code: int | str = 0
    try:
        os.chdir(cwd)
        sys.argv = ["dnnexp", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            except BaseException:  # escaped dnnexp and Hydra: what a user would see as a traceback
                traceback.print_exc()
                code = "uncaught exception"
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
    return code, out.getvalue(), err.getvalue()


def run_case(args: list[str], cwd: Path) -> dict:
    cwd.mkdir(parents=True)
    code, out, err = run_command(args, cwd)
    statuses = [json.loads(p.read_text()).get("status") for p in cwd.rglob("metrics.json")]
    left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    return {"code": code, "stdout": out, "stderr": err, "statuses": statuses, "left": left,
            "tensorflow_imported": "tensorflow" in sys.modules}


if __name__ == "__main__":
    cases_file, results_file = (Path(a).resolve() for a in sys.argv[1:3])
    cases = json.loads(cases_file.read_text())
    results = {name: run_case(args, cases_file.parent / "cases" / str(i)) for i, (name, args) in enumerate(cases.items())}
    results_file.write_text(json.dumps(results))
