"""The files of a run folder, written atomically so a kill never leaves half a file.

Shared by train.py (which writes them) and report.py (which reads them); no TensorFlow.
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from dnnexp.layout import (  # noqa: F401  (the names, for the modules that write and read the files)
    BACKUP, DIAGNOSTICS, DIAGNOSTICS_COLUMNS, HISTORY, HISTORY_COLUMNS, LOCK, MC_DROPOUT, MC_DROPOUT_COLUMNS, METRICS,
    MODEL, SOURCE_CONFIG, TENSORBOARD,
)


class RunFolderError(RuntimeError):
    """A run folder is in use by another run, or holds a file this run cannot read; the message says which."""


class FolderTaken(RunFolderError):
    """The folder belongs to another run (live, or of another config): a command must write nothing into it."""


def another_config(folder: Path, difference: str) -> FolderTaken:
    """The refusal of a folder that holds a run of another config; ``difference`` names the first key that differs."""
    return FolderTaken(f"{folder} holds a run of another config ({difference}); give this run its own folder, or delete {folder} to start over")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path`` (atomic on POSIX).

    ``text`` is written as UTF-8; bytes (a PNG, a backup) as they are.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or infinity: a diverged loss is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    clean = {k: _json_safe(v) for k, v in metrics.items()}
    write_atomic(Path(run_dir) / METRICS, json.dumps(clean, indent=2) + "\n")


def read_metrics(run_dir: Path) -> dict[str, Any]:
    with open(Path(run_dir) / METRICS, encoding="utf-8") as f:
        return json.load(f)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows of a table -> CSV with exactly ``columns``, written atomically."""
    import pandas as pd

    write_atomic(Path(path), pd.DataFrame(rows, columns=columns).to_csv(index=False))


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    write_csv(Path(run_dir) / HISTORY, rows, HISTORY_COLUMNS)


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib ``Figure`` as PNG, atomically.

    Callers build a ``matplotlib.figure.Figure`` directly rather than through pyplot, so no
    GUI backend is chosen or needed and nothing stays open.
    """
    write_atomic(path, figure_png(fig))


def figure_png(fig: Any) -> bytes:
    """A matplotlib ``Figure`` as PNG bytes, drawn by matplotlib's Agg renderer whatever the session's backend."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV the run wrote (none if it does not exist yet), as plain Python values.

    A resumed run starts from them, so one it cannot read is a RunFolderError.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        return []
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise RunFolderError(f"cannot read {path} to resume the run: {err}") from None
    return table.to_dict("records")


def read_backup_meta(path: Path) -> dict[str, Any]:
    """The JSON header of a run's backup.npz (epoch, phase, config hash, ...), without loading its arrays."""
    import numpy as np

    with np.load(path, allow_pickle=False) as saved:
        return json.loads(str(saved["meta"]))


class FolderSnapshot:
    """What a folder held before a command started writing into it, so a refused command can leave it as it was.

    Before a run's task starts, Hydra creates its folder, writes ``.hydra/`` and opens its
    log; a refusal found after that (a split larger than the data, a transfer source of
    another shape) removes the folder if it is new, else deletes what was added and puts
    back the bytes of the files named in ``rewritten``, the ones Hydra writes over.
    """

    def __init__(self, folder: Path, rewritten: list[str]):
        self.folder = Path(folder).absolute()
        self.existed = self.folder.exists()
        self.new_root = self.folder  # the outermost folder that a restore deletes (outputs/, if it is new too)
        while not self.new_root.parent.exists():
            self.new_root = self.new_root.parent
        self.paths = set(self.folder.rglob("*")) if self.existed else set()
        self.saved = {path: path.read_bytes() for path in (self.folder / name for name in rewritten) if path.is_file()}

    def restore(self) -> None:
        if not self.existed:
            shutil.rmtree(self.new_root, ignore_errors=True)
            return
        for path in sorted(set(self.folder.rglob("*")) - self.paths, reverse=True):  # files before their folders
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        for path, data in self.saved.items():
            if not path.is_file() or path.read_bytes() != data:
                write_atomic(path, data)


def lock_run_folder(run_dir: Path) -> IO:
    """Claim ``run_dir`` for this process; raise RunFolderError if another process holds it.

    An flock, not a marker file: the kernel releases it when the process dies, even by
    SIGKILL, so a killed run can be resumed in its folder at once. Keep the returned file
    open for as long as the run writes.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise FolderTaken(f"{run_dir} is in use by another dnnexp run; give this one its own folder") from None
    return handle


def lock_held(folder: Path) -> bool | None:
    """Whether a live process holds ``folder``'s lock: None if the folder never had one."""
    try:
        handle = open(Path(folder) / LOCK)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
