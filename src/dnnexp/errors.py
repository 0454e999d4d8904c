"""What a user must fix, said in one line: ``dnnexp: error: <message>`` in a shell, ``DnnexpError`` in Python.

No imports beyond the standard library at import time, so ``import dnnexp`` stays fast.
"""

from __future__ import annotations

from typing import NoReturn


class DnnexpError(Exception):
    """Bad input or a refused command; ``str(err)`` is the line the ``dnnexp`` command prints after ``dnnexp: error:``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # what the command exits with


class Refusal(SystemExit):
    """A refusal on its way out through Hydra, from the task or a callback, to cli.execute.

    Hydra prints every Exception raised in a task in several lines and exits 1, and turns
    one raised in a callback into a warning; SystemExit passes through both untouched.
    cli.execute turns it back into a DnnexpError: the command prints it, the Python API raises it.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(exit_code)
        self.message = message


class RunFolderError(RuntimeError):
    """A run folder is in use by another run, or holds a file this run cannot read; the message says which."""


class FolderTaken(RunFolderError):
    """The folder belongs to another run (live, or of another config): a command must write nothing into it."""


def print_error(message: str) -> None:
    """``dnnexp: error: <message>`` in red on stderr, the way dnnexp reports everything a user must fix."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]dnnexp: error:[/] {message}", highlight=False, soft_wrap=True)


def refuse(message: str, exit_code: int = 2) -> NoReturn:
    """Stop the command: ``dnnexp: error: <message>``, exit ``exit_code`` (DnnexpError in Python)."""
    raise Refusal(message, exit_code)
