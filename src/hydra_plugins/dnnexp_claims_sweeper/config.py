"""The claims sweeper's settings, registered as ``hydra/sweeper=claims``."""

from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ClaimsSweeperConf:
    _target_: str = "hydra_plugins.dnnexp_claims_sweeper.claims_sweeper.ClaimsSweeper"
    seeds_per_round: int = 3  # new seeds (trainer.seed) per undecided variant each round
    max_seeds: int = 30  # seeds per variant at most: the design's last round
    params: Optional[Dict[str, str]] = None  # the grid, as the basic sweeper's (a preset's hydra.sweeper.params)


ConfigStore.instance().store(group="hydra/sweeper", name="claims", node=ClaimsSweeperConf, provider="dnnexp")
