"""The lecture's claims as data, checked against a sweep: supported, contradicted or not resolved.

A claim is one line of text, in a preset's ``claims:`` list or after ``dnnexp-report --claim``:

- an ordering, best first: ``activation=selu > activation=elu > activation=relu``;
- a pair: ``normalization=batchnorm_before > normalization=none``;
- each of several against one: ``clipping=norm | clipping=value > clipping=none``;
- any of these on another metric than the sweep's: ``... > ... on test_accuracy``
  (``>`` means better: higher accuracy, lower loss);
- a run-level property: ``activation=sigmoid, normalization=none: gradient_verdict = vanishing``
  (every run of that variant has that value; ``status = diverged`` works too).

A variant is one or more ``key=value`` conditions joined by commas, matched as ``--where`` matches.
Every pair a claim states (adjacent pairs of an ordering, each member of a ``|`` side against
the other side) is one Welch t-test on the completed runs of the two variants; the p-values of
all pairs of all claims are one family, controlled with Holm's step-down at 5%. A pair is
supported when the difference lies in the stated direction and is significant, contradicted
when it is significant the other way, and otherwise not resolved, with the number of seeds per
variant that would resolve an effect of the observed size at 80% power. An ordering is
supported only when every adjacent pair is, and contradicted when any is. No TensorFlow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from dnnexp.results.columns import higher_is_better
from dnnexp.results.stats import NOISE_LEVEL, ReportError, holm_adjust, matches, welch_p_value, welch_t

POWER = 0.8  # the power a "seeds needed" figure is computed for
MAX_SEEDS = 1000  # beyond this, an effect counts as unresolvable by seeds

SUPPORTED, CONTRADICTED, NOT_RESOLVED = "supported", "contradicted", "not resolved"
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
    metric = None
    match = re.search(r"\s+on\s+([\w.]+)\s*$", body)
    if match:
        metric, body = match.group(1), body[: match.start()]
    sides = [[_variant(v, text) for v in side.split("|")] for side in body.split(">")]
    return Claim(text, sides=sides, metric=metric)


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


def judge(report, stated: Iterable[str] = (), typed: Iterable[str] = ()) -> pd.DataFrame | None:
    """The claims section of ``report`` (a stats.Report): ``stated`` by the runs' configs, ``typed`` by the user.

    A typed claim naming a variant the runs lack is an error (ClaimError, listing what exists); a
    stated one is reported as not checked, since a preset's grid may have been changed on purpose.
    Returns None when there is no claim.
    """
    frame, params = report.runs, report.keys
    typed = [parse_claim(t) for t in typed]
    check_variants(typed, frame, params)
    claims = [parse_claim(t) for t in dict.fromkeys(stated) if t not in {c.text for c in typed}] + typed
    if not claims:
        return None
    absent = {c.text: _absent(c, frame) for c in claims}
    found: dict[str, list[Relation]] = {}  # claim text -> its relations (texts are unique here)
    for relation in check_claims([c for c in claims if absent[c.text] is None], frame, report.metric):
        found.setdefault(relation.claim, []).append(relation)
    rows = []
    for claim in claims:
        rows += found.get(claim.text) or [Relation(claim.text, "the whole claim", claim.metric, "", verdict=NOT_CHECKED,
                                                   note=f"this sweep has no runs of {describe(absent[claim.text])}")]
    return claims_frame(rows)


def _existing(frame: pd.DataFrame, variant: Variant, params: list[str]) -> str:
    keys = [k for k, _ in variant if k in frame] or [p for p in params if p in frame]
    values = []
    for key in keys:
        values += [f"{key}={v}" for v in dict.fromkeys(frame[key].dropna().astype(str))]
    return ", ".join(values) or "no values for " + ", ".join(k for k, _ in variant)


# ---------------------------------------------------------------- statistics


def welch_power(effect: float, sd_a: float, sd_b: float, n: int, alpha: float) -> float:
    """Power of the two-sided Welch test with ``n`` runs per variant to detect a true difference ``effect``.

    The statistic follows a noncentral t with noncentrality effect / sqrt(sd_a²/n + sd_b²/n)
    on the Welch-Satterthwaite degrees of freedom; power is its mass beyond ±t_(1-alpha/2).
    """
    from scipy.special import nctdtr, stdtrit

    va, vb = sd_a**2 / n, sd_b**2 / n
    if va + vb == 0:
        return 1.0 if effect else 0.0
    df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    nc = abs(effect) / math.sqrt(va + vb)
    critical = float(stdtrit(df, 1 - alpha / 2))
    power = float(1 - nctdtr(df, nc, critical) + nctdtr(df, nc, -critical))
    if math.isnan(power):  # scipy's nctdtr gives up at large df and nc, where the normal limit is exact enough
        from scipy.special import ndtr

        power = float(ndtr(nc - critical) + ndtr(-nc - critical))
    return power


def seeds_needed(effect: float, sd_a: float, sd_b: float, alpha: float, power: float = POWER) -> int | None:
    """The smallest runs per variant (>= 2) at which Welch's test reaches ``power``; None if over MAX_SEEDS."""
    if not effect or not math.isfinite(effect):
        return None
    if welch_power(effect, sd_a, sd_b, MAX_SEEDS, alpha) < power:
        return None
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches it
    while low < high:
        mid = (low + high) // 2
        if welch_power(effect, sd_a, sd_b, mid, alpha) >= power:
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
    effect: float = math.nan  # mean(better) - mean(worse), signed so that > 0 goes the claimed way
    std: float = math.nan  # the two variants' pooled standard deviation
    p: float = math.nan  # Welch's two-sided p, Holm-adjusted over every pair of every claim
    verdict: str = NOT_RESOLVED
    note: str = ""
    sds: tuple[float, float] | None = None  # the two variants' standard deviations, when each has 2+ runs
    p_raw: float = math.nan


def check_claims(claims: list[Claim], frame: pd.DataFrame, default_metric: str) -> list[Relation]:
    """Every claim's relations, each ordering followed by its overall verdict, in claim order.

    The pairs of all claims are one family: their p-values are Holm-adjusted together.
    """
    completed = frame[frame["status"] == "completed"] if "status" in frame else frame
    per_claim = [[_property(claim, frame)] if claim.prop else
                 [_pair(claim, better, worse, claim.metric or default_metric, completed) for better, worse in claim.pairs()]
                 for claim in claims]
    tested = [r for rows in per_claim for r in rows if r.sds is not None]
    for relation, p in zip(tested, holm_adjust([r.p_raw for r in tested])):
        _decide(relation, p, len(tested))
    out: list[Relation] = []
    for rows in per_claim:
        out += rows + ([_overall(rows)] if len(rows) > 1 else [])
    return out


def _pair(claim: Claim, better: Variant, worse: Variant, metric: str, completed: pd.DataFrame) -> Relation:
    a, b = (pd.to_numeric(select(completed, v).get(metric, pd.Series(dtype=float)), errors="coerce").dropna() for v in (better, worse))
    relation = Relation(claim.text, f"{describe(better)} > {describe(worse)}", metric, f"{len(a)} vs {len(b)}")
    sign = 1 if higher_is_better(metric) else -1  # effect > 0: the claimed way
    if len(a) and len(b):
        relation.effect = sign * (a.mean() - b.mean())
    if welch_t(a, b) is None:
        relation.note = "needs 2+ completed runs per variant (add trainer.seed=0,1,2)"
        return relation
    relation.std = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    relation.sds = (a.std(ddof=1), b.std(ddof=1))
    relation.p_raw = welch_p_value(a, b)
    return relation


def _decide(relation: Relation, p: float, family: int) -> None:
    relation.p = p
    if p < NOISE_LEVEL:
        relation.verdict = SUPPORTED if relation.effect > 0 else CONTRADICTED
        return
    # Holm's first step compares the smallest p with level / m: seeds enough for that level resolve it.
    needed = seeds_needed(relation.effect, *relation.sds, NOISE_LEVEL / family)
    relation.note = (f"{needed} seeds per variant would resolve an effect this size at {POWER:.0%} power" if needed
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
    verdicts = {r.verdict for r in rows}
    verdict = CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if verdicts == {SUPPORTED} else NOT_RESOLVED
    supported = sum(r.verdict == SUPPORTED for r in rows)
    return Relation(rows[0].claim, "the whole claim", rows[0].metric, "", verdict=verdict, note=f"{supported} of {len(rows)} relations supported")


def claims_frame(relations: list[Relation]) -> pd.DataFrame:
    """The claims section as a table: one row per relation (and per whole ordering)."""
    return pd.DataFrame(
        [{"claim": r.claim, "relation": r.relation, "metric": r.metric, "n": r.n, "effect": r.effect, "std": r.std,
          "p_holm": r.p, "verdict": r.verdict, "note": r.note} for r in relations],
        columns=["claim", "relation", "metric", "n", "effect", "std", "p_holm", "verdict", "note"],
    )
