"""Run one validated job in a fresh Python process: for a job on another Keras backend than this process's.

Keras takes its backend when it is first imported and keeps it, so a sweep over
``trainer.backend=tensorflow,jax`` cannot run its second job in the process that ran the
first (Hydra's basic launcher runs every job in its own process; a joblib worker runs
several). Such a job goes to a child process that loads the other backend, trains the
config it is given into the job's folder and exits; the parent reads its metrics.json.

    python -m dnnexp.child_process CONFIG_JSON RUN_DIR
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dnnexp.backend_setup import JOB_CORES_VARIABLE, job_cores
from dnnexp.config import Config, validate
from dnnexp.files import read_metrics
from dnnexp.modes import runner


def run_in_child(config: Config, run_dir: Path) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` in a child process (which inherits the terminal); its metrics."""
    env = {**os.environ, JOB_CORES_VARIABLE: str(job_cores())}  # the child sees no launcher, so it is told
    env.pop("KERAS_BACKEND", None)
    command = [sys.executable, "-m", "dnnexp.child_process", json.dumps(dataclasses.asdict(config)), str(run_dir)]
    finished = subprocess.run(command, env=env)
    if finished.returncode != 0:
        raise RuntimeError(f"the job's {config.trainer.backend} process exited with code {finished.returncode}")
    return read_metrics(run_dir)


def main() -> None:
    text, run_dir = sys.argv[1:]
    config = validate(OmegaConf.create(json.loads(text)))
    runner(config)(config, Path(run_dir))


if __name__ == "__main__":
    main()
