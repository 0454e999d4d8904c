"""What diagnostics=on costs per epoch (a benchmark, not a test).

Trains a deep MLP on mnist_5k for a few epochs with diagnostics off and on, same seed, a few
times each (alternating, keeping the fastest, since other processes share the cores), and
prints the median seconds per epoch (from history.csv) and the whole fit (train_seconds).
Diagnostics add one forward and backward pass on 256 samples per epoch, a CSV write, and
the PNG at the end of training.

    PYTHONPATH=src python benchmarks/diagnostics_overhead.py [--hidden-layers 20] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

from dnnexp.cli import config_dir
from dnnexp.config import validate
from dnnexp.train import train


def timings(overrides: list[str]) -> tuple[float, float]:
    """(median seconds per epoch after the first, which includes tracing; seconds of the whole fit)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=overrides))
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = train(cfg, Path(run_dir))
        history = pd.read_csv(Path(run_dir) / "history.csv")
    return float(history["seconds"].iloc[1:].median()), metrics["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-layers", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = [f"model.hidden_layers={args.hidden_layers}", f"trainer.epochs={args.epochs}", "trainer.verbose=false"]
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for choice in results:
            results[choice].append(timings([*base, f"diagnostics={choice}"]))
    print(f"{args.hidden_layers} hidden layers of 100 units, mnist_5k (3,500 training samples), batch 32, "
          f"{args.epochs} epochs, fastest of {args.repeats}")
    for choice, runs in results.items():
        epoch, fit = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"diagnostics={choice:<3}  {epoch:.3f} s/epoch   {fit:.2f} s for the whole fit")


if __name__ == "__main__":
    main()
