"""Sweeps: 8 runs of the default experiment, in parallel with the joblib launcher against one after another.

    python benchmarks/sweep.py [--runs 8] [--jobs 2] [--repeats 3] [--set trainer.backend=jax ...]

Both are one ``dnnexp -m trainer.seed=1,...,8`` command (the default experiment with
8 seeds); the parallel one adds ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, so
each job's TensorFlow gets cores / n_jobs threads (``trainer.threads=auto``), while the
sequential one runs its jobs in one process with all cores. Target on 2 cores: the
parallel sweep takes at most 0.75 of the sequential wall time. Also prints the median
training time of a run (``train_seconds``), which shows what parallel jobs cost each
other, and the median first epoch of the jobs after the first.

Memory and CPU are measured in an untimed sweep of each kind, run first (so they also bring
the files every sweep reads into the page cache, which the first timed sweep would pay for
alone otherwise): the peak resident memory of the largest process and the peak of all its processes together (proportional set sizes,
sampled from /proc every 0.25 s, so the pages that processes share count once), and the CPU
seconds of the main process and of all the others (the workers, joblib's resource tracker)
as last sampled. Reading a process's /proc/<pid>/smaps_rollup walks its
page tables: 9 ms for each of a sweep's processes on this project's 2-core machine, which
would take a tenth of a core from the parallel sweep's four processes (and hold up their
memory mappings) while it is timed.

The checkout's modules are compiled to bytecode first, as pip compiles an installed
package: otherwise, with PYTHONDONTWRITEBYTECODE set, every process of a sweep would
compile dnnexp's sources again as it imports them. ``--set`` adds overrides to every job: with
``trainer.backend=jax`` each sweep starts on an empty JAX compilation cache of its own,
which its first job fills and the others load from.

``--timeline`` also prints, for each sweep, when its jobs started and ended (from the times
of each job's .hydra/config.yaml, written as the job starts, and its metrics.json) and how
long the report took after the last job.

Wall times on a shared 2-core machine move by 10-20% from one sweep to the next, so
the pair is measured ``--repeats`` times, sequential and parallel in turn (each first in every
other pair), and the verdict uses the median of the ratios.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import importlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import SRC, dnnexp, machine, run_timed

TARGET = 0.75


def sweep(scratch: Path, name: str, runs: int, launcher: list[str], extra: list[str], memory: bool = False):
    folder = scratch / name
    seeds = ",".join(str(s) for s in range(1, runs + 1))
    cache = {"JAX_COMPILATION_CACHE_DIR": str(scratch / "jax_cache")}  # empty: the sweep's first job compiles
    started = time.time()
    result = run_timed(dnnexp("-m", f"trainer.seed={seeds}", f"hydra.sweep.dir={folder}", *launcher, *extra), scratch, cache, tree=memory)
    if result.returncode != 0:
        raise SystemExit(f"the {name} sweep failed:\n{result.stderr[-3000:]}")
    jobs = sorted(folder.glob("*/metrics.json"), key=lambda p: int(p.parent.name))
    metrics = [json.loads(p.read_text()) for p in jobs]
    assert len(metrics) == runs, f"{name}: {len(metrics)} of {runs} runs wrote metrics.json"
    first_epochs = [float(next(csv.DictReader(p.with_name("history.csv").open()))["seconds"]) for p in jobs]
    return result, metrics, first_epochs, timeline(folder, jobs, started, result.seconds)


def timeline(folder: Path, jobs: list[Path], started: float, wall: float) -> str:
    """When the jobs ran, in seconds from the command's start, how long the report took after them, and the exit after it."""
    spans = [(p.with_name(".hydra").joinpath("config.yaml").stat().st_mtime - started, p.stat().st_mtime - started) for p in jobs]
    spans.sort()
    written = (folder / "report.html").stat().st_mtime - started
    report = written - max(end for _, end in spans)
    first, later = spans[:2], spans[2:]
    return (f"first jobs start at {', '.join(f'{a:.2f}' for a, _ in first)} s and take {', '.join(f'{b - a:.2f}' for a, b in first)} s;"
            f" later jobs take {statistics.median(b - a for a, b in later):.2f} s (median);"
            f" the report is written {report:.2f} s after the last job, and the command ends {wall - written:.2f} s after that")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2, help="hydra.launcher.n_jobs of the parallel sweep")
    parser.add_argument("--repeats", type=int, default=3, help="times to measure the pair; the median ratio decides")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every job")
    parser.add_argument("--timeline", action="store_true", help="print when each sweep's jobs ran")
    args = parser.parse_args()
    try:
        importlib.import_module("hydra_plugins.hydra_joblib_launcher")
    except ModuleNotFoundError:
        raise SystemExit("benchmarks/sweep.py needs Hydra's joblib launcher: python -m pip install -e '.[sweep]'") from None
    compileall.compile_dir(SRC, quiet=1)
    print(f"machine: {machine()}")
    sequential, parallel = "basic (sequential)", f"joblib, n_jobs={args.jobs}"
    launchers = {sequential: [], parallel: ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]}
    print(f"memory and CPU, an untimed sweep each, first: {'launcher':<26} {'largest process MB':>18} {'all procs MB':>12}  CPU s (main + others = all)")
    for label, launcher in launchers.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = sweep(Path(tmp), "sweep", args.runs, launcher, args.set, memory=True)[0]
        main_cpu = sum(s for (pid, _), s in result.cpu_seconds.items() if pid == result.pid)
        total = sum(result.cpu_seconds.values())
        print(f"{'':>45}{label:<26} {result.peak_rss_mb:>18.0f} {result.peak_pss_mb:>12.0f}  {main_cpu:.1f} + {total - main_cpu:.1f} = {total:.1f}")
    print(f"{args.runs} runs of the default experiment (trainer.seed=1..{args.runs}) {' '.join(args.set)}, {args.repeats} time(s) each")
    print(f"{'repeat':>6}  {'launcher':<26} {'wall s':>7} {'threads/job':>11} {'train s/run':>11} {'epoch 1 s (job 1 / later)':>25}")
    ratios = []
    for repeat in range(1, args.repeats + 1):
        walls = {}
        # Each kind goes first in every other pair, so neither always runs right after the other kind.
        for label, launcher in list(launchers.items())[:: 1 if repeat % 2 else -1]:
            with tempfile.TemporaryDirectory() as tmp:
                result, metrics, first, when = sweep(Path(tmp), "sweep", args.runs, launcher, args.set)
            walls[label] = result.seconds
            train_s = statistics.median(m["train_seconds"] for m in metrics)
            epoch_1 = f"{first[0]:.2f} / {statistics.median(first[1:]):.2f}"
            print(f"{repeat:>6}  {label:<26} {result.seconds:>7.1f} {metrics[0]['threads']:>11} {train_s:>11.1f} {epoch_1:>25}")
            if args.timeline:
                print(f"{'':>8}{when}")
        ratios.append(walls[parallel] / walls[sequential])
    ratio = statistics.median(ratios)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"parallel / sequential: {', '.join(f'{r:.2f}' for r in ratios)}; median {ratio:.2f}"
          f" ({'meets' if ratio <= TARGET else 'MISSES'} the target <= {TARGET})")


if __name__ == "__main__":
    main()
