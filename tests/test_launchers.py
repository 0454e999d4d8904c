"""Sweeps on the Ray and submitit launchers, run for real: they end in the usual table and exit status,
and the Ray jobs' MLflow runs are tracked as one group (read back with MLflow's MlflowClient)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
from conftest import TINY, run_cli
from mlflow import MlflowClient
from test_loggers import sqlite_uri

# Two jobs that train and one whose config is refused (a negative rate).
SWEEP = [*TINY, "trainer.epochs=1", "optimizer.lr=0.01,0.02,-1"]


def run_sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    sweep = tmp_path / "sweep"
    return run_cli("-m", *SWEEP, *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path), sweep


def assert_usual_sweep_end(result: subprocess.CompletedProcess, sweep: Path) -> None:
    """The table, summary.csv, and exit status 1 naming the failed job."""
    assert result.returncode == 1, result.stderr
    table = result.stdout[result.stdout.index("dnnexp sweep:"):]
    assert "optimizer.lr" in table and "failed" in table
    summary = pd.read_csv(sweep / "summary.csv").sort_values("optimizer.lr")
    assert list(summary["status"]) == ["failed", "completed", "completed"]
    assert f"1 of 3 jobs failed: {sweep / '2'}" in result.stderr.replace("\n", "")


def test_ray_sweep_ends_in_the_usual_table_with_its_runs_tracked_as_one_group(tmp_path):
    result, sweep = run_sweep(tmp_path, "hydra/launcher=ray", "+hydra.launcher.ray.init.include_dashboard=false",
                              "logger=mlflow", f"logger.mlflow.tracking_uri={sqlite_uri(tmp_path)}")
    assert_usual_sweep_end(result, sweep)
    assert "dnnexp: logger:" not in result.stderr  # two jobs at once created and wrote one SQLite store
    client = MlflowClient(sqlite_uri(tmp_path))
    experiment = client.get_experiment_by_name("train").experiment_id
    grouped = client.search_runs([experiment], filter_string=f"tags.`dnnexp.sweep` = '{sweep.resolve()}'")  # docs/tracking.md's search
    assert sorted(r.info.run_name for r in grouped) == ["sweep/0", "sweep/1"]
    assert {r.data.params["optimizer.lr"] for r in grouped} == {"0.01", "0.02"}
    threads = [json.loads((sweep / job / "metrics.json").read_text())["threads"] for job in ("0", "1")]
    assert threads == [1, 1]  # Ray's default 1 CPU per job, less one, at least 1


def test_submitit_sweep_ends_in_the_usual_table_and_resumes_in_its_folder(tmp_path):
    result, sweep = run_sweep(tmp_path, "hydra/launcher=submitit_local")
    assert_usual_sweep_end(result, sweep)
    again, _ = run_sweep(tmp_path, "hydra/launcher=submitit_local")  # the same command in the same folder
    assert again.returncode == 1 and "1 of 3 jobs failed" in again.stderr
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.err"))
    assert logs.count("already holds this run, finished: not training it again") == 2
