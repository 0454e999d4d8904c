"""A process's hold on a run or sweep folder (an flock), and whether a live process holds one.

Plain Python and the layout's names, so the report, which shows a run cut off or still
running, reads locks without loading Hydra; :mod:`dnnexp.run_folder` takes them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from dnnexp.errors import FolderTaken
from dnnexp.layout import LOCK, METRICS, SWEEP_RECORD


class FolderLock:
    """This process's hold on a folder: an flock on its .dnnexp.lock.

    An flock, not a marker file: the kernel releases it when the process dies, even by
    SIGKILL, so a killed run can be resumed in its folder at once; the file it leaves tells
    the report the run was cut off. A run that ends holding a record of its own (metrics.json,
    or a sweep's multirun.yaml) removes the file as it lets go (:meth:`release`).
    """

    def __init__(self, folder: Path):
        """Lock ``folder`` (created if new); raise FolderTaken if another process holds it."""
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(self.path, "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise FolderTaken(f"{self.folder} is in use by another dnnexp run; give this one its own folder") from None
            if _same_file(handle, self.path):
                break
            handle.close()  # its holder removed the file as it let go: lock the one there now
        self.handle = handle

    def close(self) -> None:
        """Let go and leave the file, as a process that dies does."""
        self.handle.close()

    def release(self) -> None:
        """Let go: the file is removed if the folder holds a record of what ran there, else left for the report."""
        if not self.handle.closed and any((self.folder / name).is_file() for name in (METRICS, SWEEP_RECORD)):
            self.path.unlink(missing_ok=True)  # while still held, so no other process locks the old file meanwhile
        self.handle.close()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(handle: IO, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


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
