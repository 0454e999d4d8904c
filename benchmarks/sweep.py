"""Sweeps: 8 runs of the default experiment, in parallel with the joblib launcher against one after another.

    python benchmarks/sweep.py [--runs 8] [--jobs 2]

Both are one ``dnnexp -m trainer.seed=1,...,8`` command (the default experiment with
8 seeds); the parallel one adds ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, so
each job's TensorFlow gets cores / n_jobs threads (``trainer.threads=auto``), while the
sequential one runs its jobs in one process with all cores. Target on 2 cores: the
parallel sweep takes at most 0.75 of the sequential wall time. Also prints the peak
resident memory of the largest process of each, and the median training time of a run
(``train_seconds``), which shows what parallel jobs cost each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import dnnexp, machine, run_timed

TARGET = 0.75


def sweep(scratch: Path, name: str, runs: int, launcher: list[str]):
    folder = scratch / name
    seeds = ",".join(str(s) for s in range(1, runs + 1))
    result = run_timed(dnnexp("-m", f"trainer.seed={seeds}", f"hydra.sweep.dir={folder}", *launcher), scratch)
    if result.returncode != 0:
        raise SystemExit(f"the {name} sweep failed:\n{result.stderr[-3000:]}")
    metrics = [json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))]
    assert len(metrics) == runs, f"{name}: {len(metrics)} of {runs} runs wrote metrics.json"
    return result, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2, help="hydra.launcher.n_jobs of the parallel sweep")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        seq, seq_metrics = sweep(scratch, "sequential", args.runs, [])
        par, par_metrics = sweep(scratch, "joblib", args.runs, ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"])
    ratio = par.seconds / seq.seconds
    print(f"{args.runs} runs of the default experiment (trainer.seed=1..{args.runs})")
    print(f"{'launcher':<26} {'wall s':>7} {'threads/job':>11} {'train s/run':>11} {'peak RSS MB':>11}")
    for label, result, metrics in (("basic (sequential)", seq, seq_metrics), (f"joblib, n_jobs={args.jobs}", par, par_metrics)):
        train_s = statistics.median(m["train_seconds"] for m in metrics)
        print(f"{label:<26} {result.seconds:>7.1f} {metrics[0]['threads']:>11} {train_s:>11.1f} {result.peak_rss_mb:>11.0f}")
    print(f"parallel / sequential: {ratio:.2f} ({'meets' if ratio <= TARGET else 'MISSES'} the target <= {TARGET})")


if __name__ == "__main__":
    main()
