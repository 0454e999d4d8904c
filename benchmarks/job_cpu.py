"""Where one run's CPU time goes, thread by thread: how many cores a job keeps busy on its own.

    python benchmarks/job_cpu.py [--epochs 60] [--set trainer.backend=jax ...]

Runs the default experiment once to fill the caches, then again with ``--epochs`` epochs and
another seed, in this process (dnnexp.run), and prints the CPU seconds each of the process's
threads spent in the second run (from /proc/self/task), grouped by the thread's name: Python's
main thread (Keras' loop, the batches, the callbacks, the run's files), the backend's compute
threads (XLA's Eigen pool on JAX, TensorFlow's pools), and the rest. A job whose threads
together keep more than one core busy runs slower beside another job on a 2-core machine, where
each of two jobs at once has one core.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

from common import CLOCK_TICKS, proc_stat  # also puts this checkout's dnnexp first on the path


def thread_cpu() -> dict[str, tuple[str, float]]:
    """{thread id: (name, CPU seconds so far)} of this process's threads."""
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name, fields = (task / "comm").read_text().strip(), proc_stat(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        threads[task.name] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)  # utime + stime
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for the run")
    args = parser.parse_args()
    import dnnexp  # its first run settles the backend from trainer.backend, before Keras loads

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tmp) / "jax_cache"))
        dnnexp.run(*args.set, "trainer.epochs=2", "trainer.verbose=false", output_dir=Path(tmp) / "warm")
        before, start = thread_cpu(), time.perf_counter()
        metrics = dnnexp.run(*args.set, f"trainer.epochs={args.epochs}", "trainer.seed=1", "trainer.verbose=false",
                             output_dir=Path(tmp) / "run")
        wall, after = time.perf_counter() - start, thread_cpu()
    main_id = str(os.getpid())
    groups: collections.Counter[str] = collections.Counter()
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        group = "Python's main thread" if tid == main_id else ("compute (" + name + ")" if name.startswith("tf_") else "other threads")
        groups[group] += spent
    print(f"{args.epochs} epochs of the default experiment {' '.join(args.set)}: {wall:.2f} s wall, "
          f"{metrics['train_seconds']:.2f} s training")
    for group, seconds in groups.most_common():
        if seconds >= 0.01:
            print(f"  {group:<34} {seconds:6.2f} CPU s")
    print(f"  {'all threads':<34} {sum(groups.values()):6.2f} CPU s = {sum(groups.values()) / wall:.2f} cores busy on average")


if __name__ == "__main__":
    main()
