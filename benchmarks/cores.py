"""How much two busy processes slow each other on this machine: the ceiling of what n_jobs=2 can gain.

    python benchmarks/cores.py [--seconds 2] [--repeats 3]

Each process multiplies 512x512 float32 matrices with NumPy on one thread, first alone, then
two at once. On dedicated cores the two at once take as long as one alone; on cores that
share their execution units or caches (hyperthreads, or a VM's virtual cores), longer. A
parallel sweep of runs that keep a core busy cannot take less than this slowdown over the
number of jobs of the sequential time (before any start-up it pays once).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from common import ENV, machine

# One thread for BLAS: each process is one job's worth of work on one core.
THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
LOOP = """
import time, numpy as np
a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
a @ a
start, n = time.perf_counter(), 0
while time.perf_counter() - start < {seconds}:
    a @ a
    n += 1
print(n / (time.perf_counter() - start))
"""


def rates(copies: int, seconds: float) -> list[float]:
    """Matrix products per second of each of ``copies`` processes running at once."""
    procs = [subprocess.Popen([sys.executable, "-c", LOOP.format(seconds=seconds)], env={**ENV, **THREADS},
                              stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    slowdowns = []
    for repeat in range(1, args.repeats + 1):
        alone = rates(1, args.seconds)[0]
        together = rates(2, args.seconds)
        slowdowns.append(alone / statistics.mean(together))
        print(f"{repeat:>3}  alone {alone:7.1f} products/s   two at once {together[0]:7.1f}, {together[1]:7.1f}   slowdown {slowdowns[-1]:.2f}x")
    slowdown = statistics.median(slowdowns)
    print(f"median slowdown of a process beside another: {slowdown:.2f}x; so 2 jobs at once take at least"
          f" {slowdown / 2:.2f} of the time of one after another")


if __name__ == "__main__":
    main()
