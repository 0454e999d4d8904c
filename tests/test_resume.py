"""A killed run, started again with the same command and folder, ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_driver import IN_PROCESS, run_case
from conftest import TINY, run_in_process, tiny_config

from dnnexp import train as train_module
from dnnexp.keras_import import keras, tf
from dnnexp.config import UNHASHED_KEYS, config_hash
from dnnexp.errors import RunFolderError
from dnnexp.files import BACKUP
from dnnexp.engines.tensorflow import EpochShuffle
from dnnexp.train import train
from dnnexp.transfer import source_config

COMPARED = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_val_accuracy", "best_epoch", "epochs_run",
            "stopped_early")
# Enough batches per epoch (100) that a kill after epoch 2 lands mid-run; dropout, Adam and a
# per-step schedule make the end result depend on every piece of state a resume must restore.
RESUMABLE = [
    *TINY, "dataset.limit=1000", "trainer.batch_size=10", "trainer.epochs=4",
    "optimizer=adam", "optimizer.lr=0.002", "scheduler=exponential", "scheduler.s=200",
    "regularization=dropout", "regularization.rate=0.2",
]


def saved_epoch(run_dir: Path) -> int:
    with np.load(run_dir / BACKUP) as backup:
        return json.loads(str(backup["meta"]))["epoch"]


def start_and_kill_mid_run(args: list[str], cwd: Path, history: Path) -> None:
    """Start `dnnexp ARGS`, SIGKILL it as soon as history.csv shows two finished epochs.

    Epoch k's row is written just before its backup, so two rows guarantee a backup of
    at least epoch 1 to resume from.
    """
    proc = subprocess.Popen([sys.executable, "-m", "dnnexp.cli", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(proc, history, 2)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()
    proc.stderr.close()


def wait_for_epochs(proc: subprocess.Popen, history: Path, epochs: int) -> None:
    deadline = time.monotonic() + 180
    while not (history.exists() and len(history.read_text().splitlines()) > epochs):
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{epochs} epochs did not finish within 180 s"
        time.sleep(0.01)


def folder_bytes(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[dict, pd.DataFrame]:
    """The RESUMABLE run trained without a break: (metrics, history)."""
    run_dir = tmp_path_factory.mktemp("straight")
    metrics = train(tiny_config(*RESUMABLE), run_dir)
    return metrics, pd.read_csv(run_dir / "history.csv")


HISTORY_COMPARED = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, straight):
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, f"hydra.run.dir={run_dir}"]
    start_and_kill_mid_run(args, tmp_path, run_dir / "history.csv")
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"
    done = saved_epoch(run_dir)
    assert 1 <= done < 4
    before = pd.read_csv(run_dir / "history.csv")

    killed = folder_bytes(run_dir)
    # The same command again, and others, in this process: what they answer and write is the command's.
    other = run_in_process(*args, "activation=tanh", "optimizer.lr=0.05", cwd=tmp_path)  # another config, the same folder
    assert other.returncode == 2
    assert other.stderr.strip() == (f"dnnexp: error: {run_dir} holds a run of another config (activation.name: relu here, "
                                    f"tanh in this command); give this run its own folder, or delete {run_dir} to start over")
    assert folder_bytes(run_dir) == killed

    result = run_in_process(*args, cwd=tmp_path)  # the same command again
    assert result.returncode == 0, result.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["status"] == "completed"
    assert resumed["resumed"] is True and resumed["resumed_from_epoch"] == done
    assert not (run_dir / BACKUP).exists()
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    # The finished epochs' rows are the killed process's own (their timings included), not retrained.
    pd.testing.assert_frame_equal(history.iloc[:done], before.iloc[:done])

    again = run_in_process(*args, cwd=tmp_path)  # once more: the folder holds this run, finished
    assert again.returncode == 0 and "already holds this run, finished: not training it again" in again.stderr
    assert json.loads((run_dir / "metrics.json").read_text()) == resumed
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "history.csv"), history)
    finished = folder_bytes(run_dir)
    other = run_in_process(*args, "trainer.epochs=3", cwd=tmp_path)  # a finished run is not overwritten by another config either
    assert other.returncode == 2 and f"{run_dir} holds a run of another config (trainer.epochs: 4 here, 3 in this command)" in other.stderr
    assert folder_bytes(run_dir) == finished

    assert {k: resumed[k] for k in COMPARED} == {k: straight[0][k] for k in COMPARED}
    pd.testing.assert_frame_equal(history[HISTORY_COMPARED], straight[1][HISTORY_COMPARED])


def test_ctrl_c_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    # As a terminal starts it: with Ctrl-C's default action. pytest-xdist's workers run with SIGINT ignored, which a
    # child inherits (Python then installs no KeyboardInterrupt handler), so the run would train to its end.
    proc = subprocess.Popen([sys.executable, "-m", "dnnexp.cli", *RESUMABLE, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_epochs(proc, run_dir / "history.csv", 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"interrupted; to continue after the last finished epoch, run the same command with hydra.run.dir={run_dir}" in stderr
    assert "Traceback" not in stderr
    assert (run_dir / BACKUP).exists() and not (run_dir / "metrics.json").exists()


def test_sigterm_stops_as_ctrl_c_and_the_run_resumes_to_the_uninterrupted_result(tmp_path, straight):
    """SLURM sends SIGTERM at a time limit or on preemption, Ray on cancel: the run keeps its last
    finished epoch, says how to resume, and the same command then ends where a run without a break ends."""
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "dnnexp.cli", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(proc, run_dir / "history.csv", 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == (f"dnnexp: error: terminated (SIGTERM); to continue after the last finished "
                                               f"epoch, run the same command with hydra.run.dir={run_dir}")
    assert "Traceback" not in stderr
    assert not (run_dir / "metrics.json").exists()
    done = saved_epoch(run_dir)
    assert 1 <= done < 4

    result = run_in_process(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] == done
    assert {k: resumed[k] for k in COMPARED} == {k: straight[0][k] for k in COMPARED}
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "history.csv")[HISTORY_COMPARED], straight[1][HISTORY_COMPARED])


def test_sigterm_outside_a_run_keeps_its_own_handler(tmp_path):
    """Training sets its SIGTERM handler only while it runs: a notebook's or a launcher's stays theirs."""
    before = signal.getsignal(signal.SIGTERM)
    train(tiny_config("trainer.epochs=1", "dataset.limit=100"), tmp_path)
    assert signal.getsignal(signal.SIGTERM) is before


def epoch_order(shuffle: EpochShuffle, epoch: int) -> np.ndarray:
    shuffle.on_epoch_begin(epoch)
    return np.concatenate([labels for _, labels in shuffle.dataset])


def test_each_epochs_order_depends_on_seed_and_epoch_only():
    x, y = np.arange(50, dtype=np.float32).reshape(50, 1), np.arange(50)
    from_start, resumed = EpochShuffle(x, y, 8, 7), EpochShuffle(x, y, 8, 7)
    orders = [epoch_order(from_start, e) for e in range(3)]
    np.testing.assert_array_equal(orders[2], epoch_order(resumed, 2))  # epoch 3 alike, however the run got there
    assert all(sorted(order) == list(range(50)) for order in orders)  # every sample once per epoch
    assert len({tuple(order) for order in orders}) == 3  # a new order each epoch
    assert [len(labels) for _, labels in from_start.dataset] == [8] * 6 + [2]  # the 2 left over end the epoch


class SeenSamples(keras.layers.Layer):
    """Passes its input through, noting which samples each training step saw."""

    def __init__(self, seen: list, **kwargs):
        super().__init__(**kwargs)
        self.note = seen.append  # not the list itself, which Keras would track as a copy

    def call(self, x, training=False):
        if training:
            tf.py_function(lambda batch: self.note(batch.numpy()[:, 0].astype(int)), [x], [])
        return x


def test_fit_sees_each_epochs_own_order_with_calls_that_cross_no_epoch_end():
    # 50 samples / batch 8 = 7 steps per epoch, run 3 steps per call: 3 + 3 + 1.
    seen = []
    x, y = np.arange(50, dtype=np.float32).reshape(50, 1), np.zeros(50, dtype=np.int64)
    model = keras.Sequential([keras.Input((1,)), SeenSamples(seen), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=3)
    shuffle = EpochShuffle(x, y, 8, 7)
    model.fit(shuffle.dataset, initial_epoch=1, epochs=4, callbacks=[shuffle], shuffle=False, verbose=0)
    expected = [epoch_order(EpochShuffle(x, x[:, 0].astype(int), 8, 7), e) for e in (1, 2, 3)]
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate(expected))


class Interrupt(keras.callbacks.Callback):
    """Stands in for a kill at the start of epoch ``at`` (0-based), after the backup of the one before."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def interrupt_at(epoch: int, cfg, run_dir: Path, monkeypatch) -> None:
    """Train ``cfg`` into ``run_dir`` and stop it as a kill would at the start of ``epoch`` (0-based)."""
    original = train_module.regularization_callbacks
    monkeypatch.setattr(train_module, "regularization_callbacks", lambda c: [*original(c), Interrupt(at=epoch)])
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir)
    monkeypatch.undo()
    assert saved_epoch(run_dir) == epoch


def test_transfer_run_resumes_in_the_phase_it_was_cut(trained_run, tmp_path, monkeypatch):
    # Two frozen epochs, then two fine-tuning epochs with a new optimizer at a fifth of the rate.
    cfg = tiny_config("dataset.classes=[8,9]", "dataset.limit=120", "transfer=finetune", f"transfer.source={trained_run[0]}",
                      "trainer.epochs=4", "transfer.finetune_epochs=2", "optimizer=adam", "optimizer.lr=0.01")
    straight = train(cfg, tmp_path / "straight")
    columns = ["epoch", "loss", "val_loss", "learning_rate", "phase"]
    expected = pd.read_csv(tmp_path / "straight" / "history.csv")[columns]
    for cut in (2, 3):  # between the phases, and inside fine-tuning
        run_dir = tmp_path / f"cut_at_{cut}"
        interrupt_at(cut, cfg, run_dir, monkeypatch)
        resumed = train(cfg, run_dir)
        assert resumed["resumed_from_epoch"] == cut
        assert {k: resumed[k] for k in COMPARED} == {k: straight[k] for k in COMPARED}
        pd.testing.assert_frame_equal(pd.read_csv(run_dir / "history.csv")[columns], expected)


def test_resume_keeps_callback_counters_and_gradient_diagnostics(tmp_path, monkeypatch):
    # At lr 1e-12 nothing improves: uninterrupted, ReduceLROnPlateau (patience 2) halves the
    # rate after epoch 3 and EarlyStopping (patience 3) stops after epoch 4. A resume that
    # forgot their counters, saved after epoch 2, would do neither. The gradient diagnostics
    # must keep their measurement from before training.
    cfg = tiny_config("trainer.epochs=6", "optimizer.lr=1e-12", "scheduler=performance", "scheduler.patience=2",
                      "regularization=dropout_early_stopping", "regularization.rate=0.3",
                      "regularization.monitor=val_accuracy", "regularization.patience=3", "diagnostics=on")
    straight = train(cfg, tmp_path / "straight")
    assert straight["stopped_early"] and straight["epochs_run"] == 4

    run_dir = tmp_path / "run"
    interrupt_at(2, cfg, run_dir, monkeypatch)

    resumed = train(cfg, run_dir)
    assert resumed["resumed_from_epoch"] == 2
    compared = (*COMPARED, "grad_ratio", "gradient_verdict")
    assert {k: resumed[k] for k in compared} == {k: straight[k] for k in compared}
    lr = pd.read_csv(run_dir / "history.csv")["learning_rate"].tolist()
    np.testing.assert_allclose(lr, [1e-12, 1e-12, 1e-12, 5e-13], rtol=1e-5)
    diagnostics = [pd.read_csv(d / "diagnostics.csv") for d in (run_dir, tmp_path / "straight")]
    pd.testing.assert_frame_equal(*diagnostics)


def test_resumed_run_keeps_the_best_epoch_it_had_before_the_kill(tmp_path, monkeypatch):
    # SGD at 0.5: the validation loss is lowest after epoch 2 of 4. Cut after epoch 3, the resumed
    # run must still know epoch 2's weights to end with the uninterrupted run's model and numbers.
    cfg = tiny_config("optimizer.lr=0.5", "trainer.epochs=4")
    straight = train(cfg, tmp_path / "straight")
    assert straight["best_epoch"] == 2
    interrupt_at(3, cfg, tmp_path / "run", monkeypatch)
    resumed = train(cfg, tmp_path / "run")
    assert resumed["resumed_from_epoch"] == 3
    assert {k: resumed[k] for k in COMPARED} == {k: straight[k] for k in COMPARED}
    saved = [keras.models.load_model(d / "model.keras").get_weights() for d in (tmp_path / "run", tmp_path / "straight")]
    for a, b in zip(*saved):
        np.testing.assert_array_equal(a, b)


def test_a_backup_holding_pickled_objects_is_refused_not_run(tmp_path):
    """backup.npz is read with allow_pickle=False: an object array in it is an unreadable backup, its code never runs."""
    from formats import RunsCode

    from dnnexp.resume import TrainingBackup

    marker = tmp_path / "ran"
    np.savez(tmp_path / BACKUP, meta=np.array([RunsCode(f"touch {marker}")], dtype=object))
    with pytest.raises(RunFolderError, match="cannot read the backup .*allow_pickle=False"):
        TrainingBackup(tmp_path / BACKUP, tiny_config())
    assert not marker.exists()


def test_unusable_backup_is_refused_with_what_to_do(tmp_path, monkeypatch):
    interrupt_at(1, tiny_config(), tmp_path, monkeypatch)

    with pytest.raises(RunFolderError, match=r"holds a run of another config \(model.units: 16 here, 8 in this command\)"):
        train(tiny_config("model.units=8"), tmp_path)
    backup = tmp_path / BACKUP
    backup.write_bytes(backup.read_bytes()[:100])  # a truncated backup
    with pytest.raises(RunFolderError, match=f"cannot read the backup {backup}.*delete it to start the run over"):
        train(tiny_config(), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_sweep_started_again_with_another_grid_is_refused_before_any_job_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    grid = ["-m", *TINY, *IN_PROCESS, "trainer.epochs=1", f"hydra.sweep.dir={sweep}"]
    first = run_case([*grid, "activation=relu,elu"], tmp_path / "first")
    assert first["code"] == 0 and first["statuses"] == [], first["stderr"]
    before = folder_bytes(sweep)

    shifted = run_case([*grid, "activation=elu,relu"], tmp_path / "shifted")  # job 0 is now elu
    assert shifted["code"] == 2
    assert shifted["stderr"].strip() == (
        f"dnnexp: error: {sweep / '0'} holds a run of another config (activation.name: relu here, elu in this command); "
        f"give this run its own folder, or delete {sweep / '0'} to start over")
    assert folder_bytes(sweep) == before

    # Keys that change no result: the finished jobs are reported, not trained again.
    faster = run_case([*grid, "activation=relu,elu", "trainer.steps_per_execution=3", "trainer.threads=1"], tmp_path / "faster")
    assert faster["code"] == 0, faster["stderr"]
    assert " ".join(faster["stderr"].split()).count("already holds this run, finished: not training it again") == 2
    assert [(sweep / job / "metrics.json").read_bytes() for job in "01"] == [before[f"{job}/metrics.json"] for job in "01"]


# Each key config_hash leaves out, set to another value than the default run has; threads
# take effect only in a new process, so they go to the command with the two keys it alone reads.
IN_THIS_PROCESS = ["trainer.verbose=true", "logger=tensorboard", "trainer.steps_per_execution=1", "trainer.strategy=mirrored"]
BY_THE_COMMAND = ["task_name=elsewhere", "optimized_metric=val_loss",  # plus trainer.threads
                  'claims=["activation=elu > activation=relu"]', "claims_margin=0.01"]
RESULTS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_val_accuracy", "epochs_run")


def test_keys_left_out_of_the_config_hash_change_no_result(trained_run, tmp_path):
    assert {o.split("=")[0] for o in [*IN_THIS_PROCESS, *BY_THE_COMMAND, "trainer.threads"]} == UNHASHED_KEYS
    run_dir, default = trained_run
    threads = default["threads"] % 2 + 1  # 1 or 2, not what the default run had
    command = subprocess.Popen([sys.executable, "-m", "dnnexp.cli", *TINY, *BY_THE_COMMAND, f"trainer.threads={threads}",
                                f"hydra.run.dir={tmp_path / 'command'}"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    train(tiny_config(*IN_THIS_PROCESS), tmp_path / "here")
    assert command.wait(timeout=300) == 0, command.stderr.read()
    command.stderr.close()
    assert json.loads((tmp_path / "command" / "metrics.json").read_text())["threads"] == threads
    losses = pd.read_csv(run_dir / "history.csv")[["loss", "val_loss", "val_accuracy"]]
    for folder in (tmp_path / "here", tmp_path / "command"):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["config_hash"] == default["config_hash"]
        assert {k: metrics[k] for k in RESULTS} == {k: default[k] for k in RESULTS}
        pd.testing.assert_frame_equal(pd.read_csv(folder / "history.csv")[losses.columns], losses)


def test_keys_left_out_of_the_config_hash_reuse_the_pretrained_task_a():
    transfer = ["transfer=frozen", "transfer.pretrain_classes=[0,1,2,3,4,5,6,7]", "dataset.classes=[8,9]"]
    cache = config_hash(source_config(tiny_config(*transfer)))  # the task-A folder's name
    toggled = tiny_config(*transfer, *IN_THIS_PROCESS, *BY_THE_COMMAND, "trainer.threads=1")
    assert config_hash(source_config(toggled)) == cache
