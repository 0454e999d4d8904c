"""How long `dnnexp-report` takes on a hundred run folders (a benchmark, not a test).

Writes 100 run folders shaped like real ones (the composed config and Hydra's own
files, metrics.json, a 10-epoch history.csv): 5 activations x 4 learning rates x
5 seeds, then times the command as a user runs it (a fresh process each time, so
imports count) and, in this process, reading the folders and building the table.

    PYTHONPATH=src python benchmarks/report_speed.py
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dnnexp.cli import config_dir
from dnnexp.results.runs import load_runs
from dnnexp.results.stats import build_report

ACTIVATIONS = ["relu", "elu", "selu", "tanh", "sigmoid"]
RATES = ["0.001", "0.01", "0.03", "0.1"]
SEEDS = range(5)


def write_runs(sweep: Path) -> int:
    rng = random.Random(0)
    for num, (act, lr, seed) in enumerate(itertools.product(ACTIVATIONS, RATES, SEEDS)):
        overrides = [f"activation={act}", f"optimizer.lr={lr}", f"trainer.seed={seed}"]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        run = sweep / str(num)
        (run / ".hydra").mkdir(parents=True)
        config = OmegaConf.to_container(cfg)
        hydra = config.pop("hydra")
        OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create({"hydra": hydra}), run / ".hydra" / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
        acc = [min(0.99, 0.5 + 0.04 * e + rng.gauss(0, 0.01)) for e in range(10)]
        pd.DataFrame({"epoch": range(1, 11), "loss": [1 - a for a in acc], "accuracy": acc, "val_loss": [1 - a for a in acc],
                      "val_accuracy": acc, "learning_rate": float(lr), "seconds": 1.0}).to_csv(run / "history.csv", index=False)
        metrics = {"status": "completed", "best_val_accuracy": max(acc), "val_accuracy": acc[-1], "val_loss": 1 - acc[-1],
                   "test_accuracy": acc[-1] - 0.01, "test_loss": 1 - acc[-1], "epochs_run": 10, "stopped_early": False,
                   "diverged_epoch": None, "train_seconds": 10.0, "seconds_per_epoch": 1.0, "params_total": 89610,
                   "params_trainable": 89610, "params_non_trainable": 0}
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return num + 1


def time_command(sweep: Path, repeats: int = 5) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dnnexp.results.cli", str(sweep), "--format", "csv"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        n = write_runs(sweep)
        start = time.perf_counter()
        report = build_report(load_runs([sweep]))
        in_process = time.perf_counter() - start
        times = time_command(sweep)
        python_alone = min(time_command_python() for _ in range(3))
    print(f"{n} run folders -> {len(report.table)} rows (seeds grouped, Welch's test against the best)")
    print(f"read + table in-process:          {in_process:.3f} s")
    print(f"dnnexp-report, fresh process:     median {statistics.median(times):.2f} s, best {min(times):.2f} s of {len(times)}")
    print(f"(python -c pass alone:            {python_alone:.2f} s)")


def time_command_python() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
