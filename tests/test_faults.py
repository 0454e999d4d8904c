"""Faults in a sweep stay in their job; files survive kills; runs never share a folder."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from cli_driver import IN_PROCESS, run_case
from conftest import TINY, compose_config, run_cli

from dnnexp import lr_tools, run_folder
from dnnexp.results import sweep as sweep_files
from dnnexp.files import write_history, write_metrics
from dnnexp.folder_lock import FolderLock as lock_run_folder
from dnnexp.results.runs import load_runs


def test_sweep_records_each_failure_goes_on_and_exits_nonzero(tmp_path):
    sweep = tmp_path / "sweep"
    # Job 1 (mnist_5k, lr 0.02) meets a fault nothing checks for: its model file cannot be written.
    (sweep / "1" / "model.keras").mkdir(parents=True)
    result = run_cli("-m", *TINY, "activation=elu", "trainer.epochs=3", "dataset=mnist_5k,fashion_mnist",
                     "optimizer.lr=0.01,0.02,1e3", f"dataset.data_dir={tmp_path / 'nowhere'}",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout

    jobs = {int(d.name): d for d in sweep.iterdir() if d.is_dir()}
    assert sorted(jobs) == [0, 1, 2, 3, 4, 5]
    metrics = {n: json.loads((d / "metrics.json").read_text()) for n, d in jobs.items()}
    overrides = {n: (d / ".hydra" / "overrides.yaml").read_text() for n, d in jobs.items()}
    assert "dataset=mnist_5k" in overrides[1] and "optimizer.lr=0.02" in overrides[1]

    assert metrics[0]["status"] == "completed" and metrics[0]["epochs_run"] == 3
    assert metrics[1]["status"] == "failed" and metrics[1]["error"].startswith("IsADirectoryError")
    assert "Traceback" in metrics[1]["traceback"]
    # lr 1e3 with ELU: the loss is NaN in epoch 1; the run stops there and keeps that row.
    assert metrics[2]["status"] == "diverged" and metrics[2]["diverged_epoch"] == 1
    assert pd.read_csv(jobs[2] / "history.csv")["epoch"].tolist() == [1]
    for n in (3, 4, 5):
        assert metrics[n]["status"] == "failed"
        assert f"dataset.data_dir={tmp_path / 'nowhere'} is not a folder" in metrics[n]["error"]

    # The table's notes say which jobs did not complete and why; the last line sums up.
    notes = " ".join(result.stdout.split())
    assert f"failed: {jobs[1]}: IsADirectoryError" in notes and f"diverged: {jobs[2]}" in notes
    assert all(f"failed: {jobs[n]}: dataset.data_dir=" in notes for n in (3, 4, 5))
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"dnnexp: error: 4 of 6 jobs failed: {', '.join(str(jobs[n]) for n in (1, 3, 4, 5))}"


WRITER = """
import sys
from dnnexp.files import write_metrics
i = 0
while True:
    i += 1
    write_metrics(sys.argv[1], {"writes": i, "padding": "x" * 200_000})
"""


def test_kill_during_writes_never_leaves_half_a_file(tmp_path):
    seen = set()
    for attempt in range(15):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(0.3 + 0.013 * attempt)  # land at a different point of a write each time
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (tmp_path / "metrics.json").exists():
            saved = json.loads((tmp_path / "metrics.json").read_text())  # raises on a half-written file
            assert len(saved["padding"]) == 200_000
            seen.add(saved["writes"])
    assert len(seen) > 1  # the kills really landed during a stream of writes


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask 022", "umask 002"])
def test_results_are_written_with_the_umasks_mode_as_other_files(tmp_path, umask):
    """On a cluster's shared file system a colleague reads the table: the result files get 0666 less the
    umask, as a file open() creates does (and as Keras' model.keras and Hydra's .hydra/ get)."""
    from test_report import write_sweep

    saved = os.umask(umask)
    try:
        sweep = write_sweep(tmp_path / "sweep", [({"activation": act}, {"best_val_accuracy": 0.9}) for act in ("relu", "elu")])
        assert sweep_files.write_sweep_report(sweep, Console(quiet=True)) is not None
        run_dir = tmp_path / "run"
        write_metrics(run_dir, {"status": "completed"})
        write_history(run_dir, [{"epoch": 1, "loss": 0.5}])
        (tmp_path / "plain.txt").write_text("made by open()")
    finally:
        os.umask(saved)
    written = [run_dir / "metrics.json", run_dir / "history.csv", *(sweep / name for name in ("summary.csv", "report.md", "report.html"))]
    written += sorted(sweep.glob("*.png"))
    assert len(written) > 5
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in written}
    assert modes == {p.name: oct(0o666 & ~umask) for p in written}
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_two_sweeps_started_together_write_into_different_folders(tmp_path):
    # trainer.epochs=0 fails validation: jobs that write their folders without TensorFlow.
    command = [sys.executable, "-m", "dnnexp.cli", "-m", "trainer.epochs=0,-1"]
    for _ in range(3):  # until the two start within the same second
        procs = [subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.DEVNULL) for _ in range(2)]
        assert [p.wait(timeout=120) for p in procs] == [1, 1]
        sweeps = sorted((tmp_path / "outputs" / "train" / "multiruns").iterdir())[-2:]
        if sweeps[0].name[:19] == sweeps[1].name[:19]:
            break
    assert sweeps[0].name[:19] == sweeps[1].name[:19], "never started in the same second"
    assert sweeps[0] != sweeps[1]
    for sweep in sweeps:
        assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == ["0", "1"]
        for job in ("0", "1"):
            assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "failed"


def test_folder_names_differ_within_one_second():
    import copy

    # Each copy resolves ${now:...} anew, as each command does its own composed config; composing
    # five times took over two seconds on a loaded machine.
    composed = compose_config(return_hydra_config=True)
    names = [copy.deepcopy(composed).hydra.run.dir for _ in range(5)]
    assert len(set(names)) == 5  # microseconds in the name
    assert len({name[:-7] for name in names}) <= 2  # within one second (or two, across a tick)


@pytest.mark.parametrize("mode, key", [([], "hydra.run.dir"), (["-m", "trainer.epochs=0"], "hydra.sweep.dir")])
def test_run_into_a_folder_in_use_is_refused(tmp_path, mode, key):
    busy = tmp_path / "busy"
    with lock_run_folder(busy):  # what a live run holds while it writes
        result = run_cli(*mode, f"{key}={busy}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert f"{busy} is in use by another dnnexp run" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (busy / ".hydra").exists() and not list(busy.rglob("metrics.json"))


def test_report_flags_killed_live_and_broken_run_folders(tmp_path, capsys):
    from test_report import write_run, write_sweep

    from dnnexp.results.cli import main as report_main

    root = tmp_path / "outputs"

    def killed(name: str, *, backup: bool) -> Path:
        run = write_run(root / name, {"activation": "elu"}, None, history=[0.5, 0.6])
        lock_run_folder(run).close()  # the process that held it is gone
        if backup:
            (run / "backup.npz").write_bytes(b"state after epoch 2")
        return run

    killed("resumable", backup=True)
    killed("before_a_backup", backup=False)
    live = write_run(root / "live", {"activation": "selu"}, None, history=[0.7])
    (write_run(root / "binary", {"activation": "tanh"}, None) / "metrics.json").write_bytes(b"\xff\xfe\x00garbage")
    write_run(root / "a_list", {"activation": "relu"}, "[1, 2]")
    write_run(root / "zero_bytes", {"activation": "gelu"}, "")
    garbled = write_run(root / "garbled", {"activation": "swish"}, {"best_val_accuracy": 0.8})
    (garbled / ".hydra" / "config.yaml").write_text("{{{: [")
    (garbled / "history.csv").write_bytes(bytes(range(256)))
    (root / "empty").mkdir()  # not a run: no row
    sweep = write_sweep(root / "sweep", [({"activation": "relu"}, {"best_val_accuracy": 0.9})] * 3)
    shutil.rmtree(sweep / "1")
    (sweep / "1").mkdir()  # a job folder holding nothing
    (sweep / "3").mkdir()  # the last job's folder, just created when the sweep was killed

    with lock_run_folder(live):
        runs = load_runs([root])
        status = dict(zip(runs.frame["run"].map(lambda r: Path(r).name), runs.frame["status"]))
        assert status == {"resumable": "interrupted", "before_a_backup": "incomplete", "live": "running",
                          "binary": "corrupt", "a_list": "corrupt", "zero_bytes": "corrupt", "garbled": "completed",
                          "0": "completed", "1": "missing", "2": "completed", "3": "missing"}
        assert runs.frame.set_index("status").loc["interrupted", "epochs_run"] == 2

        report_main([str(root)])  # the dnnexp-report command: a table, no crash
    printed = " ".join(capsys.readouterr().out.split())
    for word in ("interrupted", "incomplete", "running", "corrupt", "completed", "missing"):
        assert word in printed


def boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("module, name, what", [(sweep_files, "write_sweep_report", "the sweep report"),
                                                (run_folder, "job_failed", "the failed-jobs check")])
def test_a_failing_end_of_sweep_callback_fails_the_command(tmp_path, monkeypatch, module, name, what):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, name, boom)
    # One job that plots its schedule: it completes in a moment.
    result = run_case(["-m", *IN_PROCESS, "mode=plot_schedule", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path / "cwd")
    assert result["code"] == 1
    assert f"dnnexp: error: {what} failed: RuntimeError: boom" in result["stderr"].splitlines()
    assert "Traceback" not in result["stdout"] + result["stderr"]


def test_a_live_sweep_jobs_folder_is_refused_to_another_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    second = {}
    plot_schedule = lr_tools.plot_schedule

    def job_meets_a_second_command(config, run_dir):
        before = (run_dir / ".hydra" / "overrides.yaml").read_text()
        second["result"] = run_cli(*TINY, "trainer.epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120)
        second["untouched"] = (run_dir / ".hydra" / "overrides.yaml").read_text() == before
        return plot_schedule(config, run_dir)

    monkeypatch.setattr(lr_tools, "plot_schedule", job_meets_a_second_command)
    job = tmp_path / "sweep" / "0"
    result = run_case(["-m", *IN_PROCESS, "mode=plot_schedule", f"hydra.sweep.dir={job.parent}"], tmp_path / "cwd")
    assert result["code"] == 0, result["stderr"]
    assert second["result"].returncode == 2
    assert f"dnnexp: error: {job} is in use by another dnnexp run; give this one its own folder" in second["result"].stderr
    assert second["untouched"] and not (job / "history.csv").exists()
    with lock_run_folder(job):  # released when the job ended
        pass


def test_a_joblib_workers_job_folder_is_locked_by_the_worker(tmp_path):
    from test_resume import RESUMABLE, wait_for_epochs

    sweep = tmp_path / "sweep"
    # One job, sent to a worker process all the same (n_jobs is not 1).
    proc = subprocess.Popen([sys.executable, "-m", "dnnexp.cli", "-m", *RESUMABLE, "trainer.epochs=30",
                             "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_epochs(proc, sweep / "0" / "history.csv", 1)
        second = run_cli(*TINY, f"hydra.run.dir={sweep / '0'}", cwd=tmp_path, timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers
        proc.wait()
        proc.stderr.close()
    assert second.returncode == 2
    assert f"dnnexp: error: {sweep / '0'} is in use by another dnnexp run" in second.stderr


def test_a_new_sweep_composes_none_of_its_jobs_before_they_start(tmp_path, monkeypatch):
    """Checking a sweep's folder for jobs of another grid composes each job's config (0.1-0.3 s each):
    a new sweep has no job folder to check, so its jobs start at once; one started again is checked."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from dnnexp.cli import config_dir
    from dnnexp.run_folder import check_grid

    composed = []
    load_sweep_config = ConfigLoaderImpl.load_sweep_config
    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config",
                        lambda self, *args, **kwargs: composed.append(args) or load_sweep_config(self, *args, **kwargs))
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "multirun.yaml").write_text("")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        config = compose("config", overrides=[f"hydra.sweep.dir={sweep_dir}", "+experiment=activations"], return_hydra_config=True)
        check_grid(config)
        assert composed == []
        (sweep_dir / "0").mkdir()  # the folder of a job an earlier start of the sweep ran
        check_grid(config)
    grid = [str(values).split(",") for values in config.hydra.sweeper.params.values()]
    assert len(composed) == math.prod(len(values) for values in grid)  # 6 activations x 3 seeds


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written into: a read-only mount for root (whom permissions do not stop), else mode 0555."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("mode, key", [([], "hydra.run.dir"), (["-m", "trainer.epochs=1,2"], "hydra.sweep.dir")])
def test_a_run_folder_on_a_read_only_file_system_is_refused_in_one_line(tmp_path, read_only_folder, mode, key):
    run = read_only_folder / "run"
    result = run_case([*mode, *IN_PROCESS, *TINY, f"{key}={run}"], tmp_path / "cwd")
    assert result["code"] == 2
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert result["stderr"].strip() == f"dnnexp: error: cannot write into {run}: {reason}"
    assert result["left"] == []


def no_space_for(name: str, after: int):
    """An os.fsync that fails as a full disk does (ENOSPC) for the file ``name`` once ``after`` of its writes went through."""
    real, done = os.fsync, []

    def fsync(fd: int) -> None:
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):  # write_atomic's temporary file for it
            if len(done) == after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done.append(fd)
        real(fd)

    return fsync


def test_a_full_disk_mid_run_names_the_file_keeps_the_backup_and_says_how_to_resume(tmp_path, monkeypatch):
    from dnnexp.files import read_backup_meta

    run = tmp_path / "run"
    args = [*IN_PROCESS, *TINY, "trainer.epochs=3", f"hydra.run.dir={run}"]
    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", no_space_for("backup.npz", after=1))  # epoch 1's backup is written, epoch 2's is not
        result = run_case(args, tmp_path / "first")
    assert result["code"] == 1
    assert result["stderr"].strip().splitlines() == [
        f"dnnexp: error: cannot write {run / 'backup.npz'}: No space left on device; {run / 'backup.npz'} keeps the "
        f"finished epochs: free some space, then run the same command with hydra.run.dir={run} to continue"]
    assert "Traceback" not in result["stdout"]
    assert read_backup_meta(run / "backup.npz")["epoch"] == 1
    again = run_case(args, tmp_path / "again")
    assert again["code"] == 0, again["stderr"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["resumed_from_epoch"] == 1 and metrics["epochs_run"] == 3


def test_a_finished_run_keeps_no_empty_lock_or_log_and_its_damaged_record_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    result = run_cli(*TINY, "trainer.epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)  # Hydra's logging as a user gets it
    assert result.returncode == 0, result.stderr
    names = {p.name for p in run.iterdir()}
    assert ".dnnexp.lock" not in names and "dnnexp.log" not in names  # the log said nothing
    sweep = tmp_path / "sweep"
    result = run_case(["-m", *IN_PROCESS, *TINY, "trainer.epochs=1", f"hydra.sweep.dir={sweep}"], tmp_path / "cwd")
    assert result["code"] == 0, result["stderr"]
    assert not list(sweep.rglob(".dnnexp.lock"))

    kept = {name: (run / name).read_bytes() for name in ("model.keras", "history.csv", "metrics.json")}
    (run / "metrics.json").write_bytes(kept["metrics.json"][:40])  # truncated
    other = run_case([*IN_PROCESS, *TINY, "trainer.epochs=1", "activation=elu", f"hydra.run.dir={run}"], tmp_path / "other")
    assert other["code"] == 2
    assert f"dnnexp: error: {run} holds a run of another config (activation.name: " in other["stderr"]
    (run / ".hydra" / "config.yaml").write_text("{{{")  # no readable record of the run's config left
    other = run_case([*IN_PROCESS, *TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], tmp_path / "again")
    assert other["code"] == 2
    assert other["stderr"].strip() == (
        f"dnnexp: error: {run} holds .hydra, history.csv, metrics.json, model.keras but no readable record of its config "
        f"(metrics.json and .hydra/config.yaml cannot be read); give this run its own folder, or delete {run} to start over")
    assert all((run / name).read_bytes() == data for name, data in kept.items() if name != "metrics.json")
