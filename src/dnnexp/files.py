"""The files of a run folder, written atomically so a kill never leaves half a file.

Shared by train.py (which writes them) and report.py (which reads them); no TensorFlow.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

from dnnexp.errors import RunFolderError
from dnnexp.layout import (  # noqa: F401  (the names, for the modules that write and read the files)
    BACKUP, DIAGNOSTICS, DIAGNOSTICS_COLUMNS, HISTORY, HISTORY_COLUMNS, LOCK, MC_DROPOUT, MC_DROPOUT_COLUMNS, METRICS,
    MODEL, SOURCE_CONFIG, TENSORBOARD,
)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path`` (atomic on POSIX).

    ``text`` is written as UTF-8; bytes (a PNG, a backup) as they are.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created as open() creates a file, mode 0666 less the umask (mkstemp's 0600 would hide
    # the results from the colleagues who share the cluster's file system); O_EXCL, a new name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # a write or fsync failed (a full disk): name the file
            raise OSError(err.errno, err.strerror, str(path)) from err
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
