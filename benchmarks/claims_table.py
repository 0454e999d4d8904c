"""The README's claims table, measured under the claims sweeper: each comparison preset until its claims are decided.

    python benchmarks/claims_table.py [--presets batchnorm one_cycle] [--launcher basic|joblib]
                                      [--out outputs/claims] [--max-seeds 30] [--set KEY=VALUE ...]

Each preset runs as ``dnnexp +experiment=NAME hydra/sweeper=claims hydra.sweep.dir=OUT/NAME``
(with ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` for ``--launcher joblib``), one fresh
process, timed. Its verdicts are read back through ``dnnexp.verdicts(OUT/NAME)``, the public
results API, and written as one markdown table (``OUT/claims_table.md``, also printed): per claim,
each relation's verdict, effect with its 95% interval and test, the seeds it rests on and the round
that decided it; then the wall time of each preset and the total.

Started again with the same ``--out``, a preset whose sweep finished (its folder holds
``claims_rounds.json``) is not run again, and an unfinished one goes on from the runs it has
(the claims sweeper trains none twice). The wall times of every invocation are kept in
``OUT/wall_seconds.json`` and added up, so a resumed table still shows what it cost in all.
``--max-seeds`` (``hydra.sweeper.max_seeds``) shortens the sweeps for a trial; the README's
table uses the default, 30.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common import REPO, dnnexp, machine, run_timed

# The comparison presets of the README's claims table, in its order.
PRESETS = ["activations", "batchnorm", "vanishing_gradients", "learning_rate", "clipping", "regularization",
           "lr_schedules", "optimizers", "one_cycle", "transfer"]
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
FINISHED = "claims_rounds.json"  # the claims sweeper writes it when its last round is judged
TIMES = "wall_seconds.json"
TABLE = "claims_table.md"


def command(preset: str, sweep_dir: Path, launcher: str, max_seeds: int | None, extra: list[str]) -> list[str]:
    """The dnnexp command line that decides ``preset``'s claims into ``sweep_dir``."""
    seeds = [f"hydra.sweeper.max_seeds={max_seeds}"] if max_seeds is not None else []
    return dnnexp(f"+experiment={preset}", "hydra/sweeper=claims", f"hydra.sweep.dir={sweep_dir}",
                  *LAUNCHERS[launcher], *seeds, *extra)


def decide(preset: str, out: Path, launcher: str, max_seeds: int | None, extra: list[str]) -> str | None:
    """Run ``preset``'s claims sweep unless it finished before; its time goes into OUT/wall_seconds.json.

    Returns None when the sweep ended well, else what went wrong (its exit code and last line)."""
    sweep_dir = out / preset
    if (sweep_dir / FINISHED).exists():
        print(f"{preset}: finished before, in {sweep_dir}", flush=True)
        return None
    cmd = command(preset, sweep_dir.resolve(), launcher, max_seeds, extra)
    print(f"{preset}: {' '.join(cmd[2:])}", flush=True)
    timed = run_timed(cmd, cwd=out)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "claims_table.log").write_text(timed.stdout + timed.stderr, encoding="utf-8")
    times = read_times(out)
    times.setdefault(preset, []).append(round(timed.seconds, 1))
    (out / TIMES).write_text(json.dumps(times, indent=1) + "\n", encoding="utf-8")
    print(f"{preset}: {timed.seconds:.0f} s, exit {timed.returncode}", flush=True)
    if timed.returncode != 0:
        last = (timed.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"exit {timed.returncode}: {last}"
    return None


def read_times(out: Path) -> dict[str, list[float]]:
    try:
        return json.loads((out / TIMES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def interval(row) -> str:
    """``+0.725 [+0.70, +0.75]``: the effect (claimed better minus other) and its 95% interval; blank for a property."""
    if not math.isfinite(row["effect"]):
        return ""
    if not (math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"])):
        return f"{row['effect']:+.3f}"
    return f"{row['effect']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def integer(value) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else str(int(value))


def claim_rows(preset: str, sweep_dir: Path) -> list[str]:
    """The preset's relations as markdown rows, from ``dnnexp.verdicts`` (one row per relation and per whole ordering)."""
    import dnnexp

    frame = dnnexp.verdicts(sweep_dir)
    rows = []
    for _, r in frame.iterrows():
        test = r["test"] if isinstance(r["test"], str) else ""
        metric = r["metric"] if isinstance(r["metric"], str) else ""
        seeds = integer(r["seeds"]) or (r["n"] if r["relation"] != "the whole claim" else "")  # a property: "2 of 2"
        verdict = f"**{r['verdict']}**" + (f" ({r['note']})" if r["note"] else "")
        cells = [preset, r["claim"], r["relation"], metric, verdict, interval(r), test, seeds, integer(r["round"])]
        rows.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return rows


def markdown(presets: list[str], out: Path, failures: dict[str, str], launcher: str, max_seeds: int | None) -> str:
    times = read_times(out)
    lines = [f"Measured on {machine()}; launcher {launcher}, max_seeds {max_seeds or 'default (30)'}.", "",
             "| preset | claim | relation | metric | verdict | effect [95% CI] | test | seeds | round |",
             "|---|---|---|---|---|---|---|---|---|"]
    for preset in presets:
        if preset in failures:
            lines.append(f"| {preset} | | | | **failed** ({failures[preset]}) | | | | |")
        elif (out / preset).exists():
            lines += claim_rows(preset, out / preset)
    lines += ["", "| preset | wall time | invocations |", "|---|---|---|"]
    total = 0.0
    for preset in presets:
        spent = times.get(preset, [])
        total += sum(spent)
        lines.append(f"| {preset} | {minutes(sum(spent))} | {len(spent)} |")
    lines.append(f"| **total** | **{minutes(total)}** | |")
    return "\n".join(lines) + "\n"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=PRESETS, metavar="NAME",
                        help=f"the presets to decide (default: all of {', '.join(PRESETS)})")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="basic",
                        help="basic: one job after another; joblib: two at once (n_jobs=2)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "claims", help="one sweep folder per preset under it")
    parser.add_argument("--max-seeds", type=int, default=None, help="hydra.sweeper.max_seeds (default: the sweeper's, 30)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for every preset")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    failures = {}
    for preset in args.presets:
        failed = decide(preset, out, args.launcher, args.max_seeds, args.set)
        if failed:
            failures[preset] = failed
    text = markdown(args.presets, out, failures, args.launcher, args.max_seeds)
    (out / TABLE).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
