"""The lecture's claims as data, checked against a sweep: supported, contradicted, equivalent or not resolved.

A claim is one line of text, in a preset's ``claims:`` list or after ``dnnexp-report --claim``:

- an ordering, best first: ``activation=selu > activation=elu > activation=relu``;
- a pair: ``normalization=batchnorm_before > normalization=none``;
- each of several against one: ``clipping=norm | clipping=value > clipping=none``;
- any of these on another metric than the sweep's: ``... > ... on test_accuracy``
  (``>`` means better: higher accuracy, lower loss);
- any of these with its own practical margin: ``... > ... within 0.01`` (on the metric's scale);
- a run-level property: ``activation=sigmoid, normalization=none: gradient_verdict = vanishing``
  (every run of that variant has that value; ``status = diverged`` works too).

A variant is one or more ``key=value`` conditions joined by commas, matched as ``--where`` matches.
Every pair a claim states (adjacent pairs of an ordering, each member of a ``|`` side against
the other side) is one relation, tested on the completed runs of its two variants by
:func:`dnnexp.results.inference.compare` (paired t on the seeds both sides ran, else Welch).
All relations of all claims are one family: each relation's interval is at the family's level
split among them (Bonferroni), and in a claims sweeper's sweep at the level that keeps each share
over all its rounds (Pocock's, :func:`~dnnexp.results.inference.look_levels`). The verdict is read off that interval and the
relation's margin (:func:`~dnnexp.results.inference.verdict`). An ordering is supported only
when every adjacent pair is, contradicted when any is, equivalent when every pair is. No TensorFlow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from dnnexp.results.columns import higher_is_better
from dnnexp.results.inference import (ALPHA, CONTRADICTED, EQUIVALENT, NOT_RESOLVED, SUPPORTED, Comparison, compare, default_margin,
                                      look_levels, look_seeds)
from dnnexp.results.stats import SEED_KEY, ReportError, matches

POWER = 0.8  # the power a "seeds needed" figure is computed for
MAX_SEEDS = 1000  # beyond this, an effect counts as unresolvable by seeds
DECIDED = (SUPPORTED, CONTRADICTED, EQUIVALENT)
NOT_CHECKED = "not checked"  # a preset's claim about a variant this sweep did not run (its grid was changed)


class ClaimError(ReportError):
    """A claim cannot be read, or names a variant the runs do not have; the message says which."""


Variant = tuple[tuple[str, str], ...]  # ((key, value), ...): runs matching every condition


@dataclass
class Claim:
    """One parsed claim: an ordering of sides (each a list of variants), or a property of one variant."""

    text: str
    sides: list[list[Variant]] = field(default_factory=list)
    metric: str | None = None  # None: the report's optimized metric
    margin: float | None = None  # ``within D``; None: the sweep's, the report's or the metric's default
    variant: Variant = ()  # a property claim's variant
    prop: tuple[str, str] | None = None  # (key, value) every run of ``variant`` must have

    def variants(self) -> list[Variant]:
        """Every variant the claim names."""
        return [self.variant] if self.prop else [v for side in self.sides for v in side]

    def pairs(self) -> list[tuple[Variant, Variant]]:
        """The (better, worse) pairs the claim states, in order."""
        return [(a, b) for upper, lower in zip(self.sides, self.sides[1:]) for a in upper for b in lower]


def parse_claim(text: str) -> Claim:
    """Read one claim (grammar in the module docstring), or raise ClaimError saying what is wrong."""
    body = text.strip()
    if ">" not in body:
        head, sep, prop = body.partition(":")
        key, eq, value = prop.partition("=")
        if not sep or not eq or not key.strip() or not value.strip():
            raise ClaimError(
                f"claim {text!r} is neither an ordering ('a=x > a=y', optionally ' on METRIC') "
                "nor a property ('a=x: key = value')"
            )
        return Claim(text, variant=_variant(head, text), prop=(key.strip(), value.strip().lstrip("=").strip()))
    metric = margin = None
    for _ in range(2):  # "on METRIC" and "within D", in either order
        match = re.search(r"\s+on\s+([\w.]+)\s*$", body)
        if match and metric is None:
            metric, body = match.group(1), body[: match.start()]
        match = re.search(r"\s+within\s+(\S+)\s*$", body)
        if match and margin is None:
            margin, body = _margin(match.group(1), f"claim {text!r}: within"), body[: match.start()]
    sides = [[_variant(v, text) for v in side.split("|")] for side in body.split(">")]
    return Claim(text, sides=sides, metric=metric, margin=margin)


def _margin(text: str, what: str) -> float:
    try:
        margin = float(text)
    except ValueError:
        margin = math.nan
    if not math.isfinite(margin) or margin < 0:
        raise ClaimError(f"{what} must be a number >= 0 (a difference on the metric's scale), got {text!r}")
    return margin


def check_margin(value: object, what: str) -> float | None:
    """A margin given on the command line or in a config (None: none given), or ClaimError naming ``what``."""
    return None if value is None else _margin(str(value), what)


def _variant(text: str, claim: str) -> Variant:
    conditions = []
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ClaimError(f"claim {claim!r}: {part.strip()!r} is not key=value")
        conditions.append((key.strip(), value.strip()))
    return tuple(conditions)


def describe(variant: Variant) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant)


def select(frame: pd.DataFrame, variant: Variant) -> pd.DataFrame:
    """The runs of ``frame`` matching every condition of ``variant``."""
    mask = pd.Series(True, index=frame.index)
    for key, wanted in variant:
        mask &= frame[key].map(lambda value: matches(value, wanted)) if key in frame else False
    return frame[mask]


def check_variants(claims: Iterable[Claim], frame: pd.DataFrame, params: list[str]) -> None:
    """Raise ClaimError naming the first variant no run has, and the variants that exist."""
    for claim in claims:
        absent = _absent(claim, frame)
        if absent:
            raise ClaimError(f"claim {claim.text!r} names {describe(absent)}, which no run has; the runs have: {_existing(frame, absent, params)}")


def _absent(claim: Claim, frame: pd.DataFrame) -> Variant | None:
    """The first variant of ``claim`` that no run of ``frame`` matches, else None."""
    return next((v for v in claim.variants() if select(frame, v).empty), None)


def check_grid(texts: Iterable[str], grid: dict[str, list[str]]) -> None:
    """Before a sweep trains: every variant the claims name is in ``grid`` (key -> the values its jobs take).

    Raises ClaimError naming the first condition the sweep will not run and the values it will.
    A key appended with + (``+reference``) is named without it, as the report's columns are.
    """
    grid = {key.lstrip("+~"): values for key, values in grid.items()}
    for claim in map(parse_claim, texts):
        for key, wanted in (condition for variant in claim.variants() for condition in variant):
            values = grid.get(key)
            if values is None or not any(matches(value, wanted) for value in values):
                runs = ", ".join(f"{k}={v}" for k, vs in grid.items() for v in vs) if values is None else ", ".join(f"{key}={v}" for v in values)
                raise ClaimError(f"claim {claim.text!r} names {key}={wanted}, which this sweep does not run; it runs: {runs}")


@dataclass(frozen=True)
class Design:
    """The claims sweeper's rounds: ``seeds_per_round`` seeds 0, 1, ... per variant each round, at most ``max_seeds``."""

    seeds_per_round: int
    max_seeds: int

    @property
    def rounds(self) -> int:
        return len(look_seeds(self.seeds_per_round, self.max_seeds))


def judge(report, stated: Iterable[str] = (), typed: Iterable[str] = (), margin: float | None = None,
          design: Design | None = None) -> pd.DataFrame | None:
    """The claims section of ``report`` (a stats.Report): ``stated`` by the runs' configs, ``typed`` by the user.

    A typed claim naming a variant the runs lack is an error (ClaimError, listing what exists); a
    stated one is reported as not checked, since a preset's grid may have been changed on purpose.
    ``margin`` applies to every relation whose claim has no ``within``; ``design``: the runs
    are a claims sweeper's, judged round by round as it judged them. Returns None when there is no claim.
    """
    rows = judged_relations(report, stated, typed, margin, design)
    return None if rows is None else claims_frame(rows)


def judged_relations(report, stated: Iterable[str] = (), typed: Iterable[str] = (), margin: float | None = None,
                     design: Design | None = None) -> list[Relation] | None:
    """The rows of :func:`judge`'s table as Relations (the claims sweeper reads their ``variants``)."""
    frame, params = report.runs, report.keys
    typed = [parse_claim(t) for t in typed]
    check_variants(typed, frame, params)
    claims = [parse_claim(t) for t in dict.fromkeys(stated) if t not in {c.text for c in typed}] + typed
    if not claims:
        return None
    absent = {c.text: _absent(c, frame) for c in claims}
    found: dict[str, list[Relation]] = {}  # claim text -> its relations (texts are unique here)
    for relation in check_claims([c for c in claims if absent[c.text] is None], frame, report.metric, margin, design):
        found.setdefault(relation.claim, []).append(relation)
    rows = []
    for claim in claims:
        rows += found.get(claim.text) or [Relation(claim.text, "the whole claim", claim.metric, "", verdict=NOT_CHECKED,
                                                   note=f"this sweep has no runs of {describe(absent[claim.text])}")]
    return rows


def _existing(frame: pd.DataFrame, variant: Variant, params: list[str]) -> str:
    keys = [k for k, _ in variant if k in frame] or [p for p in params if p in frame]
    values = []
    for key in keys:
        values += [f"{key}={v}" for v in dict.fromkeys(frame[key].dropna().astype(str))]
    return ", ".join(values) or "no values for " + ", ".join(k for k, _ in variant)


# ---------------------------------------------------------------- statistics


def t_power(nc: float, df: float, alpha: float) -> float:
    """Power of a two-sided t-test at ``alpha`` whose statistic follows a noncentral t with noncentrality ``nc``
    on ``df`` degrees of freedom: its mass beyond ±t_(1-alpha/2, df)."""
    from scipy.special import nctdtr, stdtrit

    critical = float(stdtrit(df, 1 - alpha / 2))
    power = float(1 - nctdtr(df, nc, critical) + nctdtr(df, nc, -critical))
    if math.isnan(power):  # scipy's nctdtr gives up at large df and nc, where the normal limit is exact enough
        from scipy.special import ndtr

        power = float(ndtr(nc - critical) + ndtr(-nc - critical))
    return power


def welch_power(effect: float, sd_a: float, sd_b: float, n: int, alpha: float) -> float:
    """Power of the two-sided Welch test with ``n`` runs per variant to detect a true difference ``effect``.

    The statistic follows a noncentral t with noncentrality effect / sqrt(sd_a²/n + sd_b²/n)
    on the Welch-Satterthwaite degrees of freedom.
    """
    va, vb = sd_a**2 / n, sd_b**2 / n
    if va + vb == 0:
        return 1.0 if effect else 0.0
    df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    return t_power(abs(effect) / math.sqrt(va + vb), df, alpha)


def paired_power(effect: float, sd_diff: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test on ``n`` pairs: noncentral t, nc = effect / (sd_diff / sqrt(n)), df n - 1."""
    if sd_diff == 0:
        return 1.0 if effect else 0.0
    return t_power(abs(effect) / (sd_diff / math.sqrt(n)), n - 1, alpha)


def seeds_needed(effect: float, sd_a: float, sd_b: float, alpha: float, power: float = POWER, sd_diff: float | None = None) -> int | None:
    """The smallest runs per variant (>= 2) at which the test reaches ``power``; None if over MAX_SEEDS.

    Welch's test from the two standard deviations, or the paired test when ``sd_diff`` (the
    standard deviation of the seed-wise differences) is given.
    """
    if not effect or not math.isfinite(effect):
        return None

    def reaches(n: int) -> bool:
        found = paired_power(effect, sd_diff, n, alpha) if sd_diff is not None else welch_power(effect, sd_a, sd_b, n, alpha)
        return found >= power

    if not reaches(MAX_SEEDS):
        return None
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches it
    while low < high:
        mid = (low + high) // 2
        if reaches(mid):
            high = mid
        else:
            low = mid + 1
    return low


# ---------------------------------------------------------------- verdicts


@dataclass
class Relation:
    """One tested relation: a pair of variants on a metric, or a property of a variant."""

    claim: str
    relation: str
    metric: str | None
    n: str
    effect: float = math.nan  # mean(better) - mean(worse) (mean of the differences when paired), > 0: the claimed way
    verdict: str = NOT_RESOLVED
    note: str = ""
    result: Comparison | None = None  # the test at the look that decided (or the last look)
    margin: float = math.nan
    round: int | None = None  # the claims sweeper's round that decided it
    sds: tuple[float, float] | None = None  # the two variants' standard deviations, when each has 2+ runs
    variants: tuple[Variant, Variant] | tuple[()] = ()  # (better, worse) of a pair: the claims sweeper adds seeds to an undecided pair's

    @property
    def std(self) -> float:
        """The two variants' pooled standard deviation."""
        return math.sqrt((self.sds[0] ** 2 + self.sds[1] ** 2) / 2) if self.sds else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        """The effect's own 95% interval (the verdict rests on the wider one at the relation's level)."""
        return self.result.test.interval(ALPHA) if self.result else (math.nan, math.nan)

    @property
    def seeds(self) -> int | None:
        """The pairs (paired) or the smaller side's runs (Welch) the verdict rests on."""
        return self.result.test.n if self.result else None


def check_claims(claims: list[Claim], frame: pd.DataFrame, default_metric: str, margin: float | None = None,
                 design: Design | None = None) -> list[Relation]:
    """Every claim's relations, each ordering followed by its overall verdict, in claim order.

    The pairs of all claims are one family: each is tested at ALPHA divided among them (and
    among the design's rounds, for a claims sweeper's runs).
    """
    completed = frame[frame["status"] == "completed"] if "status" in frame else frame
    pairs = [(claim, better, worse) for claim in claims if not claim.prop for better, worse in claim.pairs()]
    decided = {}
    for claim, better, worse in pairs:
        metric = claim.metric or default_metric
        chosen = claim.margin if claim.margin is not None else margin if margin is not None else default_margin(metric)
        decided[id(claim), better, worse] = _pair(claim, better, worse, metric, chosen, frame, completed, len(pairs), design)
    out: list[Relation] = []
    for claim in claims:
        rows = [_property(claim, frame)] if claim.prop else [decided[id(claim), b, w] for b, w in claim.pairs()]
        out += rows + ([_overall(rows)] if len(rows) > 1 else [])
    return out


def _values(runs: pd.DataFrame, metric: str, sign: int) -> pd.Series:
    """The metric of ``runs`` signed so that larger is better, indexed by seed when each seed appears once."""
    values = sign * pd.to_numeric(runs.get(metric, pd.Series(dtype=float)), errors="coerce")
    keep = values.notna()
    if SEED_KEY in runs and runs[SEED_KEY].notna().all() and not runs[SEED_KEY].duplicated().any():
        seeds = pd.Index(runs.loc[keep, SEED_KEY].astype(int).to_numpy(), name=SEED_KEY)
        return pd.Series(values[keep].to_numpy(), index=seeds)
    return pd.Series(values[keep].to_numpy(), dtype=float)


def _pair(claim: Claim, better: Variant, worse: Variant, metric: str, margin: float, frame: pd.DataFrame, completed: pd.DataFrame,
          family: int, design: Design | None) -> Relation:
    sign = 1 if higher_is_better(metric) else -1  # effect > 0: the claimed way
    a, b = (_values(select(completed, v), metric, sign) for v in (better, worse))
    relation = Relation(claim.text, f"{describe(better)} > {describe(worse)}", metric, f"{len(a)} vs {len(b)}",
                        margin=margin, variants=(better, worse))
    if len(a) and len(b):
        relation.effect = a.mean() - b.mean()
    if len(a) > 1 and len(b) > 1:
        relation.sds = (a.std(ddof=1), b.std(ddof=1))
    if design is None:
        looks = [(None, ALPHA / family, a, b)]
    else:
        ran = [set(select(frame, v).get(SEED_KEY, pd.Series(dtype=float)).dropna().astype(int)) for v in (better, worse)]
        looks = [(k + 1, level, a[a.index < n], b[b.index < n])
                 for k, (n, level) in enumerate(zip(look_seeds(design.seeds_per_round, design.max_seeds),
                                                    look_levels(design.seeds_per_round, design.max_seeds, family)))
                 if all(set(range(n)) <= seeds for seeds in ran)]  # a look is reached once both sides ran its seeds
    for look, level, x, y in looks:
        result = _compare(x, y, level, margin)
        if result is None:
            continue
        relation.result, relation.round = result, look
        if result.verdict in DECIDED:
            break
    result = relation.result
    if result is None:
        relation.note = "needs 2+ completed runs per variant (add trainer.seed=0,1,2)"
        relation.round = None
        return relation
    relation.verdict, relation.effect = result.verdict, result.test.effect
    if relation.verdict not in DECIDED:
        relation.round = None
        relation.note = _undecided_note(relation, result, family, design, looks)
    return relation


def _compare(a: pd.Series, b: pd.Series, level: float, margin: float) -> Comparison | None:
    """Paired on the seeds both sides ran when each side is indexed by seed and 2+ seeds are shared, else Welch."""
    shared = a.index.intersection(b.index) if a.index.name == b.index.name == SEED_KEY else []
    if len(shared) >= 2:
        return compare(a[shared].to_numpy(), b[shared].to_numpy(), level, margin, paired=True)
    return compare(a.to_numpy(), b.to_numpy(), level, margin, paired=False)


def _undecided_note(relation: Relation, result: Comparison, family: int, design: Design | None, looks: list) -> str:
    if design is not None:
        spent = result.test.n >= design.max_seeds or len(looks) == design.rounds
        return (f"undecided after {design.max_seeds} seeds per variant (max_seeds)" if spent
                else f"undecided at round {len(looks)} of {design.rounds}")
    sd_diff = result.test.se * math.sqrt(result.test.n) if result.test.test == "paired t" else None
    sds = relation.sds or (0.0, 0.0)
    needed = seeds_needed(relation.effect, *sds, ALPHA / family, sd_diff=sd_diff)
    return (f"{needed} seeds per variant would resolve an effect this size at {POWER:.0%} power" if needed
            else f"an effect this size needs more than {MAX_SEEDS} seeds per variant")


def _property(claim: Claim, frame: pd.DataFrame) -> Relation:
    key, wanted = claim.prop
    runs = select(frame, claim.variant)
    values = runs[key] if key in runs else pd.Series([None] * len(runs), dtype=object)
    holds = int(values.map(lambda value: matches(value, wanted)).sum())
    relation = Relation(claim.text, f"{describe(claim.variant)}: {key} = {wanted}", None, f"{holds} of {len(runs)}")
    if len(runs) and holds == len(runs):
        relation.verdict = SUPPORTED
    elif len(runs) and holds == 0:
        relation.verdict = CONTRADICTED
        found = ", ".join(dict.fromkeys(values.dropna().astype(str)))
        relation.note = f"found: {found}" if found else f"no run has {key}"
    return relation


def _overall(rows: list[Relation]) -> Relation:
    verdicts = [r.verdict for r in rows]
    verdict = (CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if set(verdicts) == {SUPPORTED}
               else EQUIVALENT if set(verdicts) == {EQUIVALENT} else NOT_RESOLVED)
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in (SUPPORTED, CONTRADICTED, EQUIVALENT, NOT_RESOLVED) if v in verdicts)
    return Relation(rows[0].claim, "the whole claim", rows[0].metric, "", verdict=verdict, note=f"of {len(rows)} relations: {counts}")


COLUMNS = ["claim", "relation", "metric", "n", "test", "effect", "ci_low", "ci_high", "std", "p", "level", "decision_low", "decision_high",
           "margin", "correlation", "prob_improvement", "prob_low", "prob_high", "seeds", "round", "verdict", "note"]


def claims_frame(relations: list[Relation]) -> pd.DataFrame:
    """The claims section as a table: one row per relation (and per whole ordering).

    ``effect`` with its own 95% interval (``ci_low``, ``ci_high``); ``p`` the test's two-sided
    p; the verdict rests on the wider interval (``decision_low``, ``decision_high``) at the
    relation's share ``level`` of the family's 5%; ``prob_improvement`` is P(A > B) with its
    bootstrap 95% interval; ``seeds`` the pairs (or the smaller side's runs) and ``round`` the
    claims sweeper's round that decided it.
    """
    rows = []
    for r in relations:
        c = r.result
        rows.append({"claim": r.claim, "relation": r.relation, "metric": r.metric, "n": r.n, "test": c.test.test if c else None,
                     "effect": r.effect, "ci_low": r.ci95[0], "ci_high": r.ci95[1], "std": r.std, "p": c.test.p if c else math.nan,
                     "level": c.level if c else math.nan, "decision_low": c.low if c else math.nan,
                     "decision_high": c.high if c else math.nan, "margin": r.margin,
                     "correlation": c.correlation if c else math.nan, "prob_improvement": c.prob if c else math.nan,
                     "prob_low": c.prob_low if c else math.nan, "prob_high": c.prob_high if c else math.nan,
                     "seeds": r.seeds, "round": r.round, "verdict": r.verdict, "note": r.note})
    return pd.DataFrame(rows, columns=COLUMNS)
