"""A Hydra sweeper that runs a comparison in rounds of seeds until every claim is decided.

Round 1 runs every variant of the grid (the preset's ``hydra.sweeper.params`` and the command's
sweeps, as the basic sweeper builds it, without ``trainer.seed``) at seeds 0 .. seeds_per_round - 1.
After each round the claims are judged as the report judges them (dnnexp.results.claims with
the sweep's Design: each relation's interval at its share of 5% for that round), and only the
variants of relations still not resolved get the next round's seeds, until every relation is
supported, contradicted or equivalent, or max_seeds seeds per variant are spent.

Each round is handed to whatever launcher is configured (basic, joblib, Ray, submitit) as one
batch. Job numbers follow from the rounds, which follow from the results: started again with
the same hydra.sweep.dir, the sweeper replays the rounds from the runs it finds there and
launches only the jobs whose folder holds no result, so no run trains twice (a killed run
resumes from its backup, as any dnnexp run does).
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SEED_KEY = "trainer.seed"


class ClaimsSweeper(Sweeper):
    def __init__(self, seeds_per_round: int, max_seeds: int, params: Optional[Dict[str, str]] = None) -> None:
        if seeds_per_round < 2 or max_seeds < seeds_per_round:
            raise ValueError(f"hydra.sweeper.seeds_per_round must be >= 2 and max_seeds >= seeds_per_round; "
                             f"got seeds_per_round={seeds_per_round}, max_seeds={max_seeds}")
        self.seeds_per_round, self.max_seeds = seeds_per_round, max_seeds
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None
        self.rounds: list[dict[str, Any]] = []  # per round: its seeds, the variants it ran, the relations still open after it

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from dnnexp.results.claims import Design
        from dnnexp.results.inference import look_seeds

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        fixed, variants = self._grid(arguments)
        self._check_variants([[*fixed, *variant, f"{SEED_KEY}=0"] for variant in variants])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        design = Design(self.seeds_per_round, self.max_seeds)
        margin = self.config.get("claims_margin")  # checked with the schema's rule before the sweep (hydra_callbacks)
        active, first_seed, job = list(range(len(variants))), 0, 0
        returns = []
        for number, last_seed in enumerate(look_seeds(self.seeds_per_round, self.max_seeds), start=1):
            # A variant's seeds one after another: a process's next job then differs from its last only by the
            # seed and trains the model that job compiled (dnnexp.compiled_models).
            batch = [[*fixed, *variants[v], f"{SEED_KEY}={seed}"] for v in active for seed in range(first_seed, last_seed)]
            log.info(f"Claims sweeper: round {number} of {design.rounds}, seeds {first_seed}-{last_seed - 1} "
                     f"of {len(active)} variant{'s' if len(active) != 1 else ''}")
            returns += self._launch(batch, job, sweep_dir)
            job += len(batch)
            first_seed = last_seed
            open_relations = self._undecided(sweep_dir, margin, design)
            self.rounds.append({"round": number, "seeds": last_seed, "variants": len(active), "open": len(open_relations)})
            active = [v for v in active if any(self._names(variants[v], relation) for relation in open_relations)]
            if not active:
                break
        from dnnexp.files import write_atomic

        write_atomic(sweep_dir / "claims_rounds.json", json.dumps(self.rounds, indent=1) + "\n")  # a kill leaves no half file
        return returns

    def _grid(self, arguments: List[str]) -> tuple[list[str], list[list[str]]]:
        """(the overrides every job gets, one list of overrides per variant): the basic sweeper's grid without the seed."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        fixed, swept = [], {}
        for override in overrides:
            key = override.get_key_element()
            if key.lstrip("+~") == SEED_KEY:
                continue  # the sweeper chooses the seeds: 0, 1, ... per round
            if override.is_sweep_override():
                swept[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
            else:
                swept.pop(key, None)
                fixed.append(f"{key}={override.get_value_element_as_str()}")
        return fixed, [list(combination) for combination in itertools.product(*swept.values())] or [[]]

    def _check_variants(self, jobs: list[list[str]]) -> None:
        """Refuse the sweep before any job runs if a variant's config is bad (dnnexp.config.validate's message).

        Each variant is composed once: its later jobs differ from it only by the seed, an integer
        the sweeper chooses. A bad variant is refused here, not run and failed round after round
        (its relations would stay open until max_seeds).
        """
        from dnnexp.config import ConfigError, validate
        from dnnexp.errors import refuse
        from dnnexp.hydra_callbacks import roll_back

        for overrides in jobs:
            try:
                validate(self.hydra_context.config_loader.load_sweep_config(self.config, overrides))
            except ConfigError as err:
                roll_back()  # the sweep's folder was claimed before the sweeper started: leave it as it was
                refuse(str(err))

    def _launch(self, batch: list[list[str]], first_job: int, sweep_dir: Path) -> list:
        """Launch the jobs of ``batch`` (numbered from ``first_job``) whose folder holds no result yet, in runs of consecutive numbers."""
        todo = [i for i in range(len(batch)) if not _has_result(sweep_dir / str(first_job + i))]
        if len(todo) < len(batch):
            log.info(f"Claims sweeper: {len(batch) - len(todo)} of these {len(batch)} jobs already have a result, not run again")
        returns = []
        for _, group in itertools.groupby(enumerate(todo), key=lambda pair: pair[1] - pair[0]):
            indices = [i for _, i in group]
            returns.append(self.launcher.launch([batch[i] for i in indices], initial_job_idx=first_job + indices[0]))
        return returns

    def _undecided(self, sweep_dir: Path, margin: Optional[float], design) -> list:
        """(better, worse) of every relation between two variants that no round has decided yet, judged from the
        runs in ``sweep_dir`` as the report judges them. A property claim asks for no further round."""
        from dnnexp.results.claims import DECIDED, judged_relations
        from dnnexp.results.runs import load_runs
        from dnnexp.results.stats import ReportError, build_report

        runs = load_runs([sweep_dir], finished=True)
        try:
            report = build_report(runs)
        except ReportError:
            return []  # no run completed: nothing to decide more seeds for
        relations = judged_relations(report, runs.claims, margin=margin if margin is not None else runs.margin, design=design)
        return [r.variants for r in relations or [] if r.variants and r.verdict not in DECIDED]

    @staticmethod
    def _names(variant: list[str], relation: tuple) -> bool:
        """Whether the grid variant (its overrides) is one of the relation's two sides."""
        from dnnexp.results.stats import matches

        given = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in variant}
        return any(all(key in given and matches(given[key], wanted) for key, wanted in side) for side in relation)


def _has_result(job_dir: Path) -> bool:
    """A job folder whose metrics.json is readable: the run finished (completed, diverged or failed) and is not run again."""
    from dnnexp.files import read_metrics

    try:
        return isinstance(read_metrics(job_dir), dict)
    except (OSError, ValueError):
        return False
