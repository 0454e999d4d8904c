"""Start-up: the commands that train nothing answer in under a second or two.

    python benchmarks/startup.py [--repeats 5]

Times, as fresh processes, ``dnnexp --help`` (under 1.5 s), ``dnnexp --cfg job`` and a config
error (``dnnexp trainer.epochs=abc``, each under 1 s) and ``dnnexp-report`` on a folder of 100
run folders (written by ``report_speed.py``: 5 activations x 4 learning rates x 5 seeds, under
1.5 s), and says whether TensorFlow was imported. For comparison it also times Hydra's own
rendering of the same help (the app's ``--help`` through Hydra, ``dnnexp.cli.execute``), which
first lists every config group of every installed plugin: what ``dnnexp --help`` cost before
the command printed dnnexp's written list itself (dnnexp.usage). Then, for what a run pays before it trains, the import of Keras on
each backend as a run imports it (``dnnexp.keras_import``), with NumPy's and ml_dtypes' share of it. The commands run as ``python -m dnnexp.cli`` and
``python -m dnnexp.results.cli`` from this checkout, which is what the ``dnnexp`` and
``dnnexp-report`` scripts call.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

from common import machine, run_timed

HELP_LIMIT = REPORT_LIMIT = 1.5  # seconds
COMPOSE_LIMIT = 1.0  # --cfg job and a config error: Hydra composes the config, nothing more
N_RUNS = 100
# Prints whether TensorFlow got imported: the command runs in this process through runpy.
PROBE = "import runpy, sys; sys.argv = [{module!r}, *{args!r}]\ntry:\n    runpy.run_module({module!r}, run_name='__main__')\nexcept SystemExit:\n    pass\nprint('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'NO_TENSORFLOW', file=sys.stderr)\n"


def hundred_runs(scratch: Path) -> Path:
    """A sweep folder of 100 runs shaped like real ones (the report benchmark's, reused)."""
    from report_speed import write_runs

    sweep = scratch / "sweep"
    assert write_runs(sweep) == N_RUNS
    return sweep


def measure(module: str, args: list[str], scratch: Path, repeats: int) -> tuple[list[float], bool]:
    """Wall seconds of ``repeats`` fresh runs, and whether TensorFlow got imported."""
    cmd = [sys.executable, "-c", PROBE.format(module=module, args=args)]
    runs = [run_timed(cmd, scratch) for _ in range(repeats)]
    return [r.seconds for r in runs], "TENSORFLOW_IMPORTED" in runs[-1].stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        commands = [
            ("dnnexp --help", "dnnexp.cli", ["--help"], HELP_LIMIT),
            ("dnnexp --cfg job", "dnnexp.cli", ["--cfg", "job"], COMPOSE_LIMIT),
            ("dnnexp trainer.epochs=abc (config error)", "dnnexp.cli", ["trainer.epochs=abc"], COMPOSE_LIMIT),
        ]
        if importlib.util.find_spec("dnnexp.results.cli") is not None:
            commands.append((f"dnnexp-report on {N_RUNS} run folders", "dnnexp.results.cli", [str(hundred_runs(scratch))], REPORT_LIMIT))
        else:
            print("dnnexp-report: not in this checkout (dnnexp.results.cli is missing), not measured")
        print(f"{'command':<42} {'median s':>8} {'max s':>6}  {'limit s':>7} {'under':>5}  TensorFlow  (of {args.repeats} runs)")
        for label, module, cmd_args, limit in commands:
            seconds, tf_loaded = measure(module, cmd_args, scratch, args.repeats)
            verdict = "yes" if max(seconds) < limit else "NO"
            print(f"{label:<42} {statistics.median(seconds):>8.2f} {max(seconds):>6.2f}  {limit:>7.1f} {verdict:>5}  {'imported' if tf_loaded else 'not imported'}")
        seconds = [run_timed([sys.executable, "-c", HYDRA_HELP], scratch).seconds for _ in range(args.repeats)]
        print(f"{'Hydra rendering the same help (for scale)':<42} {statistics.median(seconds):>8.2f} {max(seconds):>6.2f}"
              f"  (it lists {hydra_group_count()} config groups first)")
        print(f"{'a run imports Keras on':<42} {'median s':>8} {'NumPy + ml_dtypes s':>19}  (of {args.repeats} runs)")
        for backend in ("tensorflow", "jax"):
            runs = [keras_import(backend, scratch) for _ in range(args.repeats)]
            if runs[0] is None:
                print(f"{backend:<42} not installed")
                continue
            version = runs[0][2]
            print(f"{backend:<42} {statistics.median(r[0] for r in runs):>8.2f} {statistics.median(r[1] for r in runs):>19.3f}  (ml_dtypes {version})")


# The app's --help through Hydra: its help template's variables, the config groups included, are all filled in.
HYDRA_HELP = "from dnnexp.cli import execute\nexecute(['--help'])"


def hydra_group_count() -> int:
    """How many config groups Hydra's help lists (hydra/launcher, hydra/sweeper, ... included).

    Hydra looks up each group's options (and subgroups) with a fresh deep copy of its config
    repository, which holds every installed plugin's configs.
    """
    from hydra import initialize_config_dir
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    from dnnexp.cli import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra = Hydra(task_name="dnnexp", config_loader=GlobalHydra.instance().config_loader())
        return len(hydra.list_all_config_groups())


KERAS_IMPORT = (
    "import time\nstart = time.perf_counter()\nimport numpy, ml_dtypes\nmid = time.perf_counter()\n"
    "import dnnexp.keras_import\nprint(time.perf_counter() - start, mid - start, ml_dtypes.__version__)"
)


def keras_import(backend: str, scratch: Path) -> tuple[float, float, str] | None:
    """Seconds to import Keras on ``backend`` in a fresh process, of which NumPy's and ml_dtypes', and its version."""
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        return None
    result = run_timed([sys.executable, "-c", KERAS_IMPORT], scratch, {"KERAS_BACKEND": backend})
    total, ml_dtypes, version = result.stdout.split()
    return float(total), float(ml_dtypes), version


if __name__ == "__main__":
    main()
