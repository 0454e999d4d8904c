"""The text of ``dnnexp --help``, printed without starting Hydra.

Hydra's ``--help`` fills in every variable of its help template before it reads the
template, so it lists every config group, copying its config repository (which holds every
installed launcher's and sweeper's configs) for each lookup: seconds, whatever the template
shows (benchmarks/startup.py times both). dnnexp's help is the written list of its own choices in
``conf/hydra/help/dnnexp.yaml``, whose ``template`` prints its header and footer, so the
command prints those two itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

HELP_FLAGS = ("--help", "-h")  # Hydra's flags for the application's help (--hydra-help is Hydra's own)


def asked(args: Sequence[str]) -> bool:
    """Whether the command line asks for ``dnnexp --help``."""
    return any(arg in HELP_FLAGS for arg in args)


def text(config_dir: str | Path) -> str:
    """The help's header and footer, as Hydra's rendering of ``conf/hydra/help/dnnexp.yaml`` prints them."""
    help_cfg = yaml.safe_load((Path(config_dir) / "hydra" / "help" / "dnnexp.yaml").read_text())
    return f"{help_cfg['header']}\n{help_cfg['footer']}".rstrip("\n")
