"""Hydra callbacks: what happens around the jobs of a sweep. No TensorFlow.

Configured in conf/hydra/default.yaml (``hydra.callbacks``), so every multirun ends
in its comparison table without a second command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class SweepReport(Callback):
    """When a multirun ends: print the comparison table, write summary.csv, report.md and plots."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolving ${now:...} here caches it, so this is the folder the sweeper then creates.
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.console import Console

        from dnnexp.report import ReportError, sweep_command, wide_console, write_sweep_report

        command = sweep_command(OmegaConf.to_container(config.hydra.overrides))
        try:
            write_sweep_report(self.sweep_dir or Path(config.hydra.sweep.dir), wide_console(), command)
        except ReportError as err:
            Console(stderr=True).print(f"[bold red]dnnexp: report:[/] {err}", highlight=False)
