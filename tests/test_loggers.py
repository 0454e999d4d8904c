"""Experiment trackers (logger=mlflow, wandb, tensorboard), run for real (sweeps on Ray and submitit: test_launchers.py).

What a tracker got is read back with its own client: MLflow's MlflowClient, from a local
SQLite store and from an `mlflow server` started here on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import wandb
from conftest import tiny_config
from mlflow import MlflowClient
from test_resume import Interrupt

from dnnexp import loggers
from dnnexp import train as train_module
from dnnexp.config import ConfigError
from dnnexp.train import train


def tracked_train(cfg, run_dir: Path) -> dict:
    """A run as `dnnexp` makes it (cli.py): trained inside its trackers' runs."""
    with loggers.tracking(cfg, run_dir):
        return train(cfg, run_dir)


def mlflow_runs(tracking_uri: str, experiment: str = "train") -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


def curve(client: MlflowClient, run_id: str, column: str) -> dict[int, float]:
    """history/<column> as logged, {step: value}; each step once."""
    points = client.get_metric_history(run_id, f"history/{column}")
    assert len({m.step for m in points}) == len(points)
    return {m.step: m.value for m in points}


def column(run_dir: Path, name: str) -> dict[int, float]:
    history = pd.read_csv(run_dir / "history.csv")
    return dict(zip(history["epoch"], history[name]))


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the tests of this module (creating one takes seconds); each test has its own experiment."""
    return sqlite_uri(tmp_path_factory.mktemp("mlflow"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_run_in_the_local_store_holds_config_history_final_metrics_and_files(store, tmp_path):
    cfg = tiny_config("logger=[mlflow,tensorboard]", f"logger.mlflow.tracking_uri={store}",
                      "logger.mlflow.log_model=true", "task_name=local")
    run_dir = tmp_path / "run"
    metrics = tracked_train(cfg, run_dir)

    client, [run] = mlflow_runs(store, "local")
    assert (run.info.status, run.data.tags["dnnexp.status"]) == ("FINISHED", "completed")
    assert run.data.tags["dnnexp.run_dir"] == str(run_dir.resolve())
    params = run.data.params
    assert (params["optimizer.lr"], params["model.units"], params["dataset.classes"]) == ("0.01", "16", "null")
    assert params == loggers.flat_params(cfg) and len(params) > 90  # every key of the config
    for name in ("loss", "val_accuracy", "learning_rate", "seconds"):
        assert curve(client, run.info.run_id, name) == pytest.approx(column(run_dir, name))
    for key in ("best_val_accuracy", "test_accuracy", "test_loss", "epochs_run", "params_total", "train_seconds"):
        assert run.data.metrics[key] == pytest.approx(metrics[key])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"history.csv", "metrics.json", "model.keras"}
    copy = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == json.loads((run_dir / "metrics.json").read_text())
    assert list((Path(store.removeprefix("sqlite:///")).parent / "mlartifacts").rglob("model.keras"))  # beside the store
    assert {p.parent.name for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")} == {"train", "validation"}


def test_killed_run_ends_killed_and_its_resumption_continues_the_same_mlflow_run(store, tmp_path, monkeypatch):
    cfg = tiny_config("logger=mlflow", f"logger.mlflow.tracking_uri={store}", "trainer.epochs=3", "task_name=resumed")
    run_dir = tmp_path / "run"
    original = train_module.regularization_callbacks
    monkeypatch.setattr(train_module, "regularization_callbacks", lambda c: [*original(c), Interrupt(at=2)])
    with pytest.raises(KeyboardInterrupt):
        tracked_train(cfg, run_dir)
    monkeypatch.undo()
    client, [killed] = mlflow_runs(store, "resumed")
    assert (killed.info.status, killed.data.tags["dnnexp.status"]) == ("KILLED", "killed")

    metrics = tracked_train(cfg, run_dir)
    client, [run] = mlflow_runs(store, "resumed")
    assert metrics["resumed_from_epoch"] == 2
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert curve(client, run.info.run_id, "val_loss") == pytest.approx(column(run_dir, "val_loss"))
    assert list(column(run_dir, "val_loss")) == [1, 2, 3]
    assert run.data.metrics["resumed_from_epoch"] == 2


def fail_mid_run(monkeypatch, store) -> str:
    def disk_full(self, values, step):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loggers.MlflowTracker, "log_epoch", disk_full)
    return store


@pytest.mark.parametrize(
    "tracking_uri, said",
    [
        (lambda monkeypatch, store: f"http://127.0.0.1:{free_port()}", "mlflow could not start a run (MlflowException"),
        (fail_mid_run, "mlflow could not log the epoch's metrics (OSError: [Errno 28] No space left on device)"),
    ],
    ids=["server down", "disk full"],
)
def test_a_failing_logger_costs_the_run_nothing_but_one_line(tracking_uri, said, store, tmp_path, monkeypatch, capsys, caplog):
    cfg = tiny_config("logger=mlflow", f"logger.mlflow.tracking_uri={tracking_uri(monkeypatch, store)}", "task_name=failing")
    metrics = tracked_train(cfg, tmp_path / "run")
    assert metrics["status"] == "completed" and (tmp_path / "run" / "model.keras").is_file()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dnnexp: logger:")]
    assert len(lines) == 1 and said in lines[0] and lines[0].endswith("the run goes on without it")
    assert not [r for r in caplog.records if r.name.startswith("urllib3") and r.levelno >= logging.WARNING]  # no retry noise


def test_mlflow_server_receives_the_run_and_its_files(store, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", store, "--artifacts-destination", str(tmp_path / "artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job workers
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", server)
        cfg = tiny_config("logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "task_name=served")
        metrics = tracked_train(cfg, tmp_path / "run")
        client, [run] = mlflow_runs(uri, "served")
        assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
        assert curve(client, run.info.run_id, "accuracy") == pytest.approx(column(tmp_path / "run", "accuracy"))
        copy = client.download_artifacts(run.info.run_id, "history.csv", str(tmp_path))
        assert Path(copy).read_text() == (tmp_path / "run" / "history.csv").read_text()
        assert list((tmp_path / "artifacts").rglob("history.csv"))  # stored by the server, through its artifact proxy
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"mlflow server not up at {url} after {timeout} s")


def test_wandb_runs_offline_by_default_and_records_the_same_content(tmp_path):
    cfg = tiny_config("logger=wandb", f"logger.wandb.dir={tmp_path}")
    assert cfg.logger.wandb.mode == "offline"
    tracked_train(cfg, tmp_path / "run")
    wandb.teardown()  # wandb's service process writes the run's last records when it stops (else at exit)
    run_id = json.loads((tmp_path / "run" / "loggers.json").read_text())["wandb"]
    [record] = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    # wandb 0.31 has no public reader of offline runs (`wandb sync` uploads them); the
    # records are protobuf, so their keys and strings appear in the file as they are.
    data = record.read_bytes()
    for text in ("optimizer.lr", "history/val_accuracy", "test_accuracy", "dnnexp.status", "history.csv", "metrics.json"):
        assert text.encode() in data, text


def test_a_logger_without_its_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package: pip install 'dnnexp\[tensorboard\]'"):
        tiny_config("logger=tensorboard")


def test_bad_wandb_mode_is_refused_by_name():
    with pytest.raises(ConfigError, match="logger.wandb.mode must be one of offline, online, disabled; got 'cloud'"):
        tiny_config("logger=wandb", "logger.wandb.mode=cloud")
