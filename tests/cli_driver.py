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


def run_case(args: list[str], cwd: Path) -> dict:
    cwd.mkdir(parents=True)
    os.chdir(cwd)
    sys.argv = ["dnnexp", *args]
    out, err = io.StringIO(), io.StringIO()
    code: int | str = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # escaped dnnexp and Hydra: what a user would see as a traceback
            traceback.print_exc()
            code = "uncaught exception"
    statuses = [json.loads(p.read_text()).get("status") for p in cwd.rglob("metrics.json")]
    left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "statuses": statuses, "left": left,
            "tensorflow_imported": "tensorflow" in sys.modules}


if __name__ == "__main__":
    cases_file, results_file = (Path(a).resolve() for a in sys.argv[1:3])
    cases = json.loads(cases_file.read_text())
    results = {name: run_case(args, cases_file.parent / "cases" / str(i)) for i, (name, args) in enumerate(cases.items())}
    results_file.write_text(json.dumps(results))
