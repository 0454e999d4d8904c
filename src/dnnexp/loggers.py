"""Experiment trackers: logger=mlflow, wandb, tensorboard (conf/logger/), one or several at once.

The run folder stays the record; a tracker gets a copy of it. Each dnnexp run is one tracked
run: the config as flattened params, each history.csv row as ``history/<column>`` metrics at
step = epoch, metrics.json's numbers as final metrics, the status (completed and diverged runs
end FINISHED, failed ones FAILED, interrupted ones KILLED, with a ``dnnexp.status`` tag), and
history.csv, metrics.json and the config as artifacts. A sweep's runs carry its folder (the
``dnnexp.sweep`` tag, W&B's group). The trackers' run ids are kept in the run folder, so a
resumed run continues its tracked run.

A tracker that fails (server down, disk full) never costs the run: one line on stderr says
what it could not do, and the run goes on without that tracker.

``tracking`` wraps a run (cli.py); ``callbacks`` gives train.py the Keras callbacks that log
each epoch while it trains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from rich.console import Console

from dnnexp.keras_import import keras
from dnnexp.config import Config
from dnnexp.files import HISTORY, METRICS, MODEL, TENSORBOARD, read_metrics, read_rows, write_atomic
from dnnexp.flat_config import flatten, shown

IDS = "loggers.json"  # each tracker's run id, so a resumed run continues its tracked run
CONFIG_FILES = (".hydra/config.yaml", ".hydra/overrides.yaml")
# dnnexp's status -> MLflow's run status (a diverged run is a result: FINISHED, tagged)
MLFLOW_STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
WANDB_EXIT_CODE = {"completed": 0, "diverged": 0, "failed": 1, "killed": 130}  # 130: the shell's code for Ctrl-C

# A tracking server that is down must cost seconds, not MLflow's default of 7 retries with
# exponential backoff (minutes); a user's own settings of these win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
# urllib3 logs each retry as a warning; the one line of ``warn`` says what failed instead.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

_session: Session | None = None  # the trackers of the run in progress (set by ``tracking``)


def warn(message: str) -> None:
    Console(stderr=True).print(f"[bold yellow]dnnexp: logger:[/] {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def tracking(cfg: Config, run_dir: Path) -> Iterator[Session]:
    """Start the chosen trackers around a run, and end their runs with its status and results."""
    global _session
    session = _session = Session(cfg, Path(run_dir))
    try:
        yield session
    except KeyboardInterrupt:
        session.finish("killed", {})
        raise
    except BaseException as err:
        session.finish("failed", {"status": "failed", "error": f"{type(err).__name__}: {err}"})
        raise
    else:
        try:
            metrics = read_metrics(run_dir)
        except (OSError, ValueError):  # a mode that writes no metrics.json
            metrics = {}
        session.finish(metrics.get("status", "completed"), metrics)
    finally:
        _session = None


def callbacks(cfg: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    """The Keras callbacks that log while the run trains; put them after the one that writes history.csv."""
    found: list[keras.callbacks.Callback] = []
    if cfg.logger.tensorboard is not None:
        found.append(keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / TENSORBOARD),
                                                 histogram_freq=cfg.logger.tensorboard.histogram_freq))
    if _session is not None and _session.trackers and _session.run_dir == Path(run_dir):  # not a pretraining run
        found.append(EpochLogger(_session, Path(run_dir)))
    return found


class EpochLogger(keras.callbacks.Callback):
    """Sends the row history.csv got for the epoch (its numeric columns) to every tracker, step = epoch."""

    def __init__(self, session: Session, run_dir: Path):
        super().__init__()
        self.session, self.run_dir = session, run_dir

    def on_epoch_end(self, epoch, logs=None):
        row = read_rows(self.run_dir / HISTORY)[-1]
        values = {f"history/{k}": float(v) for k, v in row.items() if k != "epoch" and _is_number(v)}
        self.session.each("log the epoch's metrics", lambda t: t.log_epoch(values, int(row["epoch"])))


class Session:
    """The trackers of one run. Each call goes through ``each``, which drops a tracker that fails."""

    def __init__(self, cfg: Config, run_dir: Path):
        self.run_dir = run_dir
        self.trackers: list[Any] = []
        ids = _read_ids(run_dir)
        params = flat_params(cfg)
        tags = {"dnnexp.run_dir": str(run_dir.resolve())}
        sweep = sweep_folder()
        if sweep is not None:
            tags["dnnexp.sweep"] = str(sweep.resolve())
        name = f"{sweep.name}/{run_dir.name}" if sweep is not None else run_dir.name
        starters: dict[str, Callable[[], Any]] = {}
        if cfg.logger.mlflow is not None:
            starters["mlflow"] = lambda: MlflowTracker(cfg, name, params, tags, ids.get("mlflow"))
        if cfg.logger.wandb is not None:
            starters["wandb"] = lambda: WandbTracker(cfg, name, params, tags, ids.get("wandb"))
        for key, start in starters.items():
            try:
                self.trackers.append(start())
            except Exception as err:
                warn(f"{key} could not start a run ({_describe(err)}); the run goes on without it")
        if self.trackers:
            _write_ids(run_dir, {t.name: t.run_id for t in self.trackers})

    def each(self, what: str, call: Callable[[Any], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as err:
                warn(f"{tracker.name} could not {what} ({_describe(err)}); the run goes on without it")
                self.trackers.remove(tracker)

    def finish(self, status: str, metrics: dict[str, Any]) -> None:
        files = [Path(f) for f in (HISTORY, METRICS, *CONFIG_FILES) if (self.run_dir / f).is_file()]
        if any(t.log_model for t in self.trackers) and (self.run_dir / MODEL).is_file():
            files.append(Path(MODEL))
        self.each("record the run's results", lambda t: t.finish(status, metrics, self.run_dir, files))


class MlflowTracker:
    """One MLflow run per dnnexp run, in the experiment named task_name, through MlflowClient."""

    name = "mlflow"

    def __init__(self, cfg: Config, run_name: str, params: dict[str, str], tags: dict[str, str], run_id: str | None):
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag

        settings = cfg.logger.mlflow
        self.log_model = settings.log_model
        with _store_lock(settings.tracking_uri):  # parallel jobs must not create one SQLite store twice
            self.client = MlflowClient(tracking_uri=settings.tracking_uri)
            if run_id is not None:  # a resumed run: the same MLflow run, RUNNING again
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return
            experiment = _experiment_id(self.client, cfg.task_name, settings.tracking_uri)
            self.run_id = self.client.create_run(experiment, run_name=run_name, tags=tags).info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(self.run_id, params=items[start : start + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("dnnexp.status", "running")])

    def log_epoch(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, status: str, metrics: dict[str, Any], run_dir: Path, files: list[Path]) -> None:
        """Final metrics and tags, the files (paths in ``run_dir``) as artifacts at the same paths, the status."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        final = [Metric(k, float(v), now, 0) for k, v in metrics.items() if _is_number(v)]
        text = {f"dnnexp.{k}": str(v) for k, v in metrics.items() if isinstance(v, str) and k != "traceback"}
        tags = [RunTag(k, v[:5000]) for k, v in {**text, "dnnexp.status": status}.items()]
        self.client.log_batch(self.run_id, metrics=final, tags=tags)
        for path in files:
            if path.name != MODEL or self.log_model:
                self.client.log_artifact(self.run_id, str(run_dir / path), artifact_path=_folder(path))
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS[status])


class WandbTracker:
    """One W&B run per dnnexp run, in the project named task_name; a sweep's runs form a group."""

    name = "wandb"

    def __init__(self, cfg: Config, run_name: str, params: dict[str, str], tags: dict[str, str], run_id: str | None):
        import wandb

        settings = cfg.logger.wandb
        self.log_model = settings.log_model
        Path(settings.dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=settings.project or cfg.task_name, entity=settings.entity, mode=settings.mode, dir=settings.dir,
            id=run_id, resume="allow" if run_id else None, name=run_name, group=tags.get("dnnexp.sweep"),
            config=params, reinit="create_new", settings=wandb.Settings(console="off", silent=True),
        )
        self.run.summary["dnnexp.run_dir"] = tags["dnnexp.run_dir"]
        self.run_id = self.run.id

    def log_epoch(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, status: str, metrics: dict[str, Any], run_dir: Path, files: list[Path]) -> None:
        import wandb

        self.run.summary.update({k: v for k, v in metrics.items() if k != "traceback"})
        self.run.summary["dnnexp.status"] = status
        artifact = wandb.Artifact(f"run-{self.run.id}", type="dnnexp-run")
        for path in files:
            if path.name != MODEL or self.log_model:
                artifact.add_file(str(run_dir / path), name=str(path))
        self.run.log_artifact(artifact)
        self.run.finish(exit_code=WANDB_EXIT_CODE[status])


def flat_params(cfg: Config) -> dict[str, str]:
    """The config as dotted keys (``optimizer.lr``), values as on the command line (``null``, ``[300,100]``);
    not the logger group: where the results go, not what was trained."""
    return {key: shown(value) for key, value in flatten(dataclasses.asdict(cfg), skip={"logger"}).items()}


def sweep_folder() -> Path | None:
    """The folder of the sweep this run is a job of, None outside a multirun."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir)


def _experiment_id(client: Any, name: str, tracking_uri: str) -> str:
    """The experiment named ``name``, created if new; in a local SQLite store its artifacts go beside the store."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    store = _sqlite_path(tracking_uri)
    location = (store.parent.resolve() / "mlartifacts").as_uri() if store else None  # not ./mlruns in the cwd
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another job of the sweep created it first
        return client.get_experiment_by_name(name).experiment_id


def _folder(path: Path) -> str | None:
    """The artifact folder of a file at ``path`` in the run folder (None: the top)."""
    return None if path.parent == Path(".") else str(path.parent)


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix):]) if tracking_uri.startswith(prefix) else None


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """An flock beside a SQLite store while a job creates it, its experiment and its run; nothing for a server."""
    store = _sqlite_path(tracking_uri)
    if store is None:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(store.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_ids(run_dir: Path) -> dict[str, str]:
    try:
        return json.loads((run_dir / IDS).read_text())
    except (OSError, ValueError):
        return {}


def _write_ids(run_dir: Path, ids: dict[str, str]) -> None:
    write_atomic(run_dir / IDS, json.dumps({**_read_ids(run_dir), **ids}, indent=2) + "\n")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
