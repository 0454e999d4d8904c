"""Where a sweep's time goes, per job, and how far the sweep is from the cost of its training steps.

    python benchmarks/sweep_overhead.py [--backends tensorflow jax] [--seeds 16] [--default-seeds 6] [--no-joblib]

For each backend it runs, each as one `dnnexp -m ...` command in a process of its own:

- ``activations``: ``+experiment=activations activation=relu trainer.seed=0,...,15`` (the basic
  launcher: one process, jobs one after the other; 3 epochs of a 10-layer net on 3,500 digits);
- ``default``: the default config with ``trainer.epochs=3``, 6 seeds;
- ``joblib``: the ``activations`` sweep with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``.

and prints, for each job of the sequential sweeps, where its time went: Hydra's job set-up
(the gap between one job's training function and the next's, where Hydra composes the
job's config and writes its .hydra folder, and dnnexp prints the last job's line; for the
first job, the start-up: Python, Hydra and the backend's import), dnnexp's validation of
the job's config, data, model build, compile (``model.compile`` and
the engine's preparation), trace/compile in the first epoch (the first epoch less the
sweep's median steady epoch), the epochs (their steady part), the final evaluations, the
files written (model.keras, metrics.json) and the rest. Then the ratio

    sweep wall / (jobs x epochs x median steady epoch)

where a steady epoch is any epoch but a job's first (history.csv's ``seconds``, which include
the epoch's validation), and its start-up floor: the ratio had every job cost only its steady
epochs, over the first job's set-up (Python, Hydra, its check of the batch's configs, the
backend's import), the first epoch's trace and the exit. Targets: at most 2.0 (goal 1.5) on both backends, and the joblib
sweep at most 0.6 of the sequential one's wall time.

The breakdown is measured by timing dnnexp's own functions (config.validate, train.train,
data.load, transfer.build, train.compile_phase, train.fit_phase, train.keep_weights,
train.save_model, train.write_metrics) in the sweep's process: a ``sys.meta_path`` finder wraps them as
dnnexp.train is imported, so nothing of Hydra, Keras or the launcher is touched. The joblib
sweep's jobs run in worker processes, which the wrappers do not reach: it is only timed.
Each backend runs on a JAX compilation cache of its own, filled first by one untimed job of
each sweep (a user's cache holds a config's programs after its first run, and the untimed
job also brings the files every sweep reads into the page cache); ``--cold`` leaves it
empty, so the first job compiles everything (the initial weights' random draws too).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ENV, REPO

PROBE = "--probe"  # the sweep's own process: this file with the wrappers, then dnnexp's command

SWEEPS = {
    "activations": lambda seeds: ["+experiment=activations", "activation=relu", f"trainer.seed={seeds}"],
    "default": lambda seeds: ["trainer.epochs=3", "trainer.verbose=false", f"trainer.seed={seeds}"],
}
EPOCHS = 3
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]

# dnnexp.train's functions timed in the probe: (module attribute path, event name).
TIMED = [("train", "job"), ("datasets.load", "data"), ("transfer.build", "build"), ("compile_phase", "compile"),
         ("fit_phase", "fit"), ("keep_weights", "kept"), ("save_model", "save_model"), ("write_metrics", "write_metrics")]


# ----------------------------------------------------------------------------- the probe (the sweep's process)


def probe(events_file: str, argv: list[str]) -> None:
    """Run `dnnexp ARGV` here, with dnnexp.train's functions timed into ``events_file`` (JSON lines)."""
    events = open(events_file, "a")  # noqa: SIM115 - open until the process ends

    def timed(function, name):
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return function(*args, **kwargs)
            finally:
                events.write(json.dumps({"event": name, "start": start, "end": time.time()}) + "\n")
                events.flush()

        return wrapper

    class TimeTrain(importlib.abc.MetaPathFinder):
        """Finds dnnexp.train as the other finders do, and wraps its functions once it has run."""

        def find_spec(self, fullname, path, target=None):
            if fullname != "dnnexp.train":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                for path_, name in TIMED:
                    owner, _, attribute = path_.rpartition(".")
                    target_ = getattr(module, owner) if owner else module
                    setattr(target_, attribute, timed(getattr(target_, attribute), name))
                import dnnexp.config  # the entry point imports validate from it as each job starts

                dnnexp.config.validate = timed(dnnexp.config.validate, "validate")

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, TimeTrain())
    sys.argv = ["dnnexp", *argv]
    from dnnexp.cli import main

    main()


# ----------------------------------------------------------------------------- the benchmark


def run_sweep(args: list[str], folder: Path, env: dict, probed: bool) -> dict:
    """Run one sweep command; its wall time, events, and each job's history and metrics."""
    events = folder / "events.jsonl"
    command = [sys.executable, __file__, PROBE, str(events), *args] if probed else [sys.executable, "-m", "dnnexp", *args]
    start = time.time()
    done = subprocess.run([*command, f"hydra.sweep.dir={folder / 'sweep'}"], cwd=folder, env=env, capture_output=True, text=True)
    end = time.time()
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    jobs = sorted((p for p in (folder / "sweep").iterdir() if (p / "metrics.json").exists()), key=lambda p: int(p.name))
    histories = [[float(line.split(",")[header.index("seconds")]) for line in lines]
                 for header, lines in (_csv(job / "history.csv") for job in jobs)]
    found = [json.loads(line) for line in events.read_text().splitlines()] if probed and events.exists() else []
    return {"start": start, "end": end, "wall": end - start, "events": found, "epochs": histories}


def _csv(path: Path) -> tuple[list[str], list[str]]:
    header, *lines = path.read_text().splitlines()
    return header.split(","), lines


def breakdown(sweep: dict) -> tuple[list[dict], float]:
    """Per job: seconds in each part (see the module's docstring); and the sweep's median steady epoch."""
    steady = statistics.median(s for epochs in sweep["epochs"] for s in epochs[1:])
    by_name: dict[str, list[dict]] = {}
    for event in sweep["events"]:
        by_name.setdefault(event["event"], []).append(event)
    jobs = by_name.get("job", [])
    rows, previous_end = [], sweep["start"]
    for i, job in enumerate(jobs):
        inside = {name: sum(e["end"] - e["start"] for e in events if job["start"] <= e["start"] <= job["end"])
                  for name, events in by_name.items() if name not in ("job", "validate")}
        kept_end = max(e["end"] for e in by_name["kept"] if job["start"] <= e["start"] <= job["end"])
        save_start = min(e["start"] for e in by_name["save_model"] if job["start"] <= e["start"] <= job["end"])
        epochs = sweep["epochs"][i]
        first_extra = max(epochs[0] - steady, 0.0)
        validated = sum(e["end"] - e["start"] for e in by_name.get("validate", []) if previous_end <= e["start"] <= job["start"])
        row = {
            "hydra_setup": job["start"] - previous_end - validated,
            "validate": validated,
            "data": inside["data"],
            "build": inside["build"],
            "compile": inside["compile"],
            "first_epoch_trace": first_extra,
            "epochs": sum(epochs) - first_extra,
            "fit_other": inside["fit"] - inside["compile"] - sum(epochs),
            "evaluations": save_start - kept_end,
            "files": inside["save_model"] + inside["write_metrics"],
        }
        row["other"] = (job["end"] - job["start"]) - sum(v for k, v in row.items() if k not in ("hydra_setup", "validate"))
        row["total"] = job["end"] - previous_end
        rows.append(row)
        previous_end = job["end"]
    if rows:
        rows.append({"sweep_end": sweep["end"] - previous_end})
    return rows, steady


def print_breakdown(name: str, backend: str, sweep: dict, command: list[str]) -> dict:
    rows, steady = breakdown(sweep)
    n_jobs = len(sweep["epochs"])
    training = n_jobs * EPOCHS * steady
    ratio = sweep["wall"] / training
    print(f"\n## {backend}: {name} ({n_jobs} jobs)\n`dnnexp {' '.join(command)}`\n")
    jobs = [r for r in rows if "total" in r]
    if jobs:
        columns = list(jobs[0])
        print("| job | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for i, row in enumerate(jobs):
            print(f"| {i} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
        later = jobs[1:] or jobs
        print("| median of jobs 1- | " + " | ".join(f"{statistics.median(r[c] for r in later):.2f}" for c in columns) + " |")
        print(f"\nafter the last job (the sweep's report, exit): {rows[-1]['sweep_end']:.2f} s")
    # The ratio if every job cost only its steady epochs, over the process's start-up (Python, Hydra, the
    # check of the batch's configs, the backend's import: the first job's set-up), the first epoch's
    # trace and the exit: what no saving inside a job can go below.
    floor = (jobs[0]["hydra_setup"] + jobs[0]["first_epoch_trace"] + rows[-1]["sweep_end"] + training) / training if jobs else math.nan
    print(f"sweep wall {sweep['wall']:.1f} s; median steady epoch {steady:.3f} s; "
          f"ratio wall / ({n_jobs} x {EPOCHS} x steady) = {ratio:.2f}; start-up floor {floor:.2f}")
    return {"wall": sweep["wall"], "steady": steady, "ratio": ratio, "jobs": n_jobs, "floor": floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--default-seeds", type=int, default=6)
    parser.add_argument("--no-joblib", action="store_true")
    parser.add_argument("--cache", help="the JAX compilation cache folder (default: a new one per backend)")
    parser.add_argument("--cold", action="store_true", help="no untimed job first: the JAX cache starts empty")
    options = parser.parse_args()
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in options.backends:
            env = {**ENV, "JAX_COMPILATION_CACHE_DIR": options.cache or str(Path(tmp) / f"cache_{backend}")}
            runs = [("activations", SWEEPS["activations"](",".join(map(str, range(options.seeds)))), True),
                    ("default", SWEEPS["default"](",".join(map(str, range(options.default_seeds)))), True)]
            if not options.no_joblib:
                runs.append(("joblib", [*SWEEPS["activations"](",".join(map(str, range(options.seeds)))), *JOBLIB], False))
            if not options.cold:
                for name, make in SWEEPS.items():
                    folder = Path(tmp) / backend / f"warm_{name}"
                    folder.mkdir(parents=True)
                    subprocess.run([sys.executable, "-m", "dnnexp", "-m", *make("0"), f"trainer.backend={backend}",
                                    f"hydra.sweep.dir={folder / 'sweep'}"], cwd=folder, env=env, capture_output=True, check=True)
            results = {}
            for name, args, probed in runs:
                folder = Path(tmp) / backend / name
                folder.mkdir(parents=True)
                command = ["-m", *args, f"trainer.backend={backend}"]
                results[name] = print_breakdown(name, backend, run_sweep(command, folder, env, probed), command)
            if "joblib" in results:
                share = results["joblib"]["wall"] / results["activations"]["wall"]
                print(f"\njoblib n_jobs=2 / sequential wall: {share:.2f} (target <= 0.6)")
                results["joblib"]["of_sequential"] = share
            summary += [(backend, name, r) for name, r in results.items()]
    print("\n| backend | sweep | jobs | wall (s) | steady epoch (s) | ratio | start-up floor | joblib / sequential |\n|---|---|---|---|---|---|---|---|")
    for backend, name, r in summary:
        share = f"{r['of_sequential']:.2f}" if "of_sequential" in r else ""
        print(f"| {backend} | {name} | {r['jobs']} | {r['wall']:.1f} | {r['steady']:.3f} | {r['ratio']:.2f} | {r.get('floor', math.nan):.2f} | {share} |")
    print(f"\n(python {' '.join(sys.argv)}, at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == PROBE:
        sys.path.insert(0, str(REPO / "src"))
        probe(sys.argv[2], sys.argv[3:])
    else:
        main()
