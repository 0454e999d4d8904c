"""hydra/sweeper=claims end to end on tiny runs: rounds of seeds until every relation is decided, on two launchers, and a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import TINY, run_in_process

# lr=0.1 trains, lr=1e-5 barely moves from the shared initial weights: at every seed the loss gap is about 0.2
# against a spread of 0.03, decided in round 1. The second claim compares a variant with itself at no margin:
# its differences are all 0, so it is never supported, contradicted or equivalent, and takes every seed.
EASY = "optimizer.lr=0.1 > optimizer.lr=0.00001 on val_loss"
IMPOSSIBLE = "optimizer.lr=0.00001 > optimizer.lr=0.00001 within 0"
SWEEP = ["-m", "hydra/sweeper=claims", "optimizer.lr=0.1,0.00001", f'claims=["{EASY}","{IMPOSSIBLE}"]',
         *(o for o in TINY if not o.startswith("trainer.epochs")), "trainer.epochs=1", "hydra.sweeper.max_seeds=6"]


def seeds_per_variant(sweep: Path) -> dict[float, list[int]]:
    summary = pd.read_csv(sweep / "summary.csv")
    return {lr: sorted(group["trainer.seed"]) for lr, group in summary.groupby("optimizer.lr")}


def check_verdicts(sweep: Path, stdout: str) -> None:
    assert seeds_per_variant(sweep) == {0.00001: [0, 1, 2, 3, 4, 5], 0.1: [0, 1, 2]}  # the easy side stopped before max_seeds
    report = (sweep / "report.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| ").strip(): line for line in report.splitlines() if line.startswith("| ") and " > " in line}
    easy = rows["optimizer.lr=0.1 > optimizer.lr=0.00001"]
    assert "paired t" in easy and "supported" in easy and easy.rstrip(" |").endswith("| 3 | 1")  # 3 seeds, decided in round 1
    assert "not resolved" in rows["optimizer.lr=0.00001 > optimizer.lr=0.00001"]
    assert "undecided after 6 seeds per variant (max_seeds)" in rows["optimizer.lr=0.00001 > optimizer.lr=0.00001"]
    rounds = json.loads((sweep / "claims_rounds.json").read_text())
    assert [(r["round"], r["variants"], r["open"]) for r in rounds] == [(1, 2, 1), (2, 1, 1)]
    assert "Claims" in stdout


def test_the_claims_sweeper_stops_each_variant_when_its_relations_are_decided(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_in_process(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_verdicts(sweep, result.stdout)


def test_the_claims_sweeper_runs_its_rounds_on_the_joblib_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_in_process(*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_verdicts(sweep, result.stdout)


def test_a_killed_claims_sweep_started_again_trains_nothing_twice(tmp_path):
    sweep = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, "-m", "dnnexp", *SWEEP, f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(list(sweep.glob("*/metrics.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = {path: path.stat().st_mtime_ns for path in sweep.glob("*/metrics.json")}
    assert 2 <= len(before) < 9
    result = run_in_process(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {path: path.stat().st_mtime_ns for path in before} == before  # no finished run trained again
    check_verdicts(sweep, result.stdout)
    assert len(list(sweep.glob("*/metrics.json"))) == 9  # 6 jobs in round 1, 3 in round 2, each once


def test_a_sweep_of_property_claims_is_judged_after_its_first_round(tmp_path):
    """A property ("every run of the variant has status X") is no relation between two variants: more seeds
    can turn "all runs have it" into "some have it" but never settle "some" either way, so it asks for
    no further round. A sweep whose claims are all properties (the clipping preset's) stops after round 1."""
    sweep = tmp_path / "sweep"
    claims = '["optimizer.lr=0.1: status = completed","optimizer.lr=0.00001: status = diverged"]'
    result = run_in_process("-m", "hydra/sweeper=claims", "optimizer.lr=0.1,0.00001", f"claims={claims}",
                            *(o for o in TINY if not o.startswith("trainer.epochs")), "trainer.epochs=1",
                            "hydra.sweeper.max_seeds=6", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert seeds_per_variant(sweep) == {0.00001: [0, 1, 2], 0.1: [0, 1, 2]}
    rounds = json.loads((sweep / "claims_rounds.json").read_text())
    assert [(r["round"], r["variants"], r["open"]) for r in rounds] == [(1, 2, 0)]
    import dnnexp

    verdicts = dnnexp.verdicts(sweep).set_index("relation")
    assert verdicts.loc["optimizer.lr=0.1: status = completed", ["verdict", "n"]].tolist() == ["supported", "3 of 3"]
    assert verdicts.loc["optimizer.lr=0.00001: status = diverged", ["verdict", "n"]].tolist() == ["contradicted", "0 of 3"]


def test_a_claims_sweep_with_a_bad_variant_is_refused_before_any_job_runs(tmp_path):
    """Each variant's config is checked once, at the start: a bad value is one message, exit 2, and no folder,
    not a variant that fails in every round while its relations stay open until max_seeds."""
    sweep = tmp_path / "sweep"
    result = run_in_process("-m", "hydra/sweeper=claims", "optimizer.lr=0.1,abc", 'claims=["optimizer.lr=0.1 > optimizer.lr=abc"]',
                            *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "dnnexp: error: optimizer.lr must be a number, got 'abc'"
    assert not sweep.exists()
