"""What the benchmarks share: the checkout's dnnexp, timed subprocesses with their peak memory.

Benchmarks measure the code of the checkout they sit in, not whatever dnnexp is
installed, so they put its src/ first on the path (theirs and their subprocesses').
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def dnnexp(*args: str) -> list[str]:
    """The command line of `dnnexp ARGS`, run from this checkout."""
    return [sys.executable, "-m", "dnnexp", *args]  # as the dnnexp command (dnnexp.cli:main)


@dataclass
class Timed:
    seconds: float
    peak_rss_mb: float  # the largest resident set of the process or of any process it started
    returncode: int
    stdout: str
    stderr: str
    peak_pss_mb: float = float("nan")  # the peak of the whole process tree's memory (with tree=True)
    pid: int = 0
    cpu_seconds: dict = field(default_factory=dict)  # {(pid, parent pid): CPU seconds} of the tree (with tree=True)


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, tree: bool = False) -> Timed:
    """Run ``cmd`` (with ``env`` added to the environment), with its wall time and peak resident memory.

    The peak is os.wait4's ru_maxrss (KiB on Linux), which covers the process and the children
    it waited for. A process it did not wait for, such as a worker of joblib's reusable pool,
    is not in it; ``tree=True`` also samples the process tree (see TreeUsage).
    """
    out, err = cwd / ".stdout", cwd / ".stderr"
    with open(out, "w") as fo, open(err, "w") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env={**ENV, **(env or {})}, stdout=fo, stderr=fe)
        sampler = TreeUsage(proc.pid) if tree else None
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    peak_rss, peak_pss, cpu = usage.ru_maxrss / 1024, float("nan"), {}
    if sampler is not None:
        sampler.stop()
        peak_rss, peak_pss, cpu = max(peak_rss, sampler.peak_rss_mb), sampler.peak_pss_mb, sampler.cpu_seconds
    returncode = os.waitstatus_to_exitcode(status)
    return Timed(seconds, peak_rss, returncode, out.read_text(), err.read_text(), peak_pss, proc.pid, cpu)


class TreeUsage:
    """Samples, every ``interval`` seconds, the memory and CPU time of a process and all its descendants, from /proc.

    Written by hand: psutil is not one of dnnexp's dependencies, and what is needed is two
    files of /proc per process. ``peak_pss_mb`` is the largest sum of the processes'
    proportional set sizes (a page shared by n processes counts 1/n in each, so the
    pages processes share are not counted n times); ``peak_rss_mb`` the
    largest resident set of one process. Sampling misses peaks shorter than the interval.
    ``cpu_seconds`` is each process's CPU time (user + system) at its last sample, keyed by
    (pid, parent pid), so a process's last interval before it ends is missed.
    """

    def __init__(self, pid: int, interval: float = 0.25):
        self.root, self.interval = pid, interval
        self.peak_pss_mb = self.peak_rss_mb = 0.0
        self.cpu_seconds: dict[tuple[int, int], float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            pss = rss = 0.0
            for pid in self._tree():
                try:
                    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
                    stat = proc_stat(Path(f"/proc/{pid}/stat"))
                except OSError:  # the process ended between the listing and the read
                    continue
                self.cpu_seconds[pid, int(stat[1])] = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
                pss += int(fields["Pss"].split()[0]) / 1024
                rss = max(rss, int(fields["Rss"].split()[0]) / 1024)
            self.peak_pss_mb, self.peak_rss_mb = max(self.peak_pss_mb, pss), max(self.peak_rss_mb, rss)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(proc_stat(stat)[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times


def proc_stat(path: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat file after the name: state, ppid, ..., utime (11), stime (12).

    The name, in parentheses, may hold spaces, so the fields start after its last parenthesis."""
    text = Path(path).read_text()
    return text[text.rindex(")") + 2:].split()


def machine() -> str:
    """One line saying where the numbers come from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {cores} cores, load average {load}, Python {platform.python_version()}"
