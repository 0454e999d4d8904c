"""How sure a comparison of two variants is: functions over arrays of per-seed results that return numbers.

One relation "A is better than B" on a metric is judged from the completed runs of A and B:

- :func:`compare` tests the difference: paired t when both sides have runs at the same
  ``trainer.seed`` values (the test on the seed-wise differences), Welch's t otherwise;
  the effect, its interval, the correlation of the pairs and P(A > B), the probability of improvement;
- :func:`verdict` turns an interval and a margin into supported, contradicted, equivalent or not resolved;
- :func:`look_levels` is the sequential design the claims sweeper decides with: the level each
  round's test runs at so that optional stopping over at most K rounds, across all relations,
  keeps the chance of any wrong verdict at or under the family's level.

Every formula is written out with ``scipy.special`` (Student's t) rather than ``scipy.stats``,
whose import alone takes longer than the rest of ``dnnexp-report``; the tests check each number
against scipy.stats and statsmodels. No wording here: the rendering modules name the results.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # the family's level: the chance of any wrong verdict across all relations of a sweep
BOOTSTRAP_RESAMPLES = 2000  # for the interval of P(A > B); seeded, so a report always shows the same numbers

SUPPORTED, CONTRADICTED, EQUIVALENT, NOT_RESOLVED = "supported", "contradicted", "equivalent", "not resolved"

# The default practical margin per kind of metric: a difference smaller than this is "no practical
# difference". Accuracy: half a percentage point (1/4 to 2/3 of the seed spread of the lecture's
# presets on mnist_5k, 0.008-0.02), below which no lecture claim is about; loss: 0.01 in
# cross-entropy (about 2-5% of the presets' validation losses). Other metrics have none (0):
# they are never "equivalent" unless a claim, the sweep or the report gives a margin.
DEFAULT_MARGINS = {"accuracy": 0.005, "loss": 0.01}


def default_margin(metric: str) -> float:
    """The documented margin of ``metric``'s kind (``val_accuracy`` -> accuracy's), 0 for any other metric."""
    return next((margin for kind, margin in DEFAULT_MARGINS.items() if kind in metric), 0.0)


@dataclass(frozen=True)
class TTest:
    """A t statistic's parts: effect (mean difference), its standard error and degrees of freedom."""

    test: str  # "paired t" or "Welch t"
    effect: float
    se: float
    df: float
    n: int  # pairs (paired) or the smaller side's runs (Welch)

    @property
    def p(self) -> float:
        """Two-sided p of effect = 0: 2 P(T_df > |effect / se|)."""
        return _two_sided_p(self.effect, self.se, self.df)

    def interval(self, level: float) -> tuple[float, float]:
        """The two-sided 1 - ``level`` confidence interval of the effect: effect ± t_(1-level/2, df) se."""
        if self.se == 0:
            return self.effect, self.effect
        from scipy.special import stdtrit

        half = float(stdtrit(self.df, 1 - level / 2)) * self.se
        return self.effect - half, self.effect + half


def _two_sided_p(effect: float, se: float, df: float) -> float:
    if se == 0:
        return 1.0 if effect == 0 else 0.0
    from scipy.special import stdtr

    return float(2 * stdtr(df, -abs(effect / se)))


def paired_t(a: np.ndarray, b: np.ndarray) -> TTest | None:
    """Student's paired t on d = a - b (same seeds, in the same order): effect mean(d), se sd(d)/sqrt(n), df n - 1.

    The same as ``scipy.stats.ttest_rel(a, b)``. None with fewer than two pairs.
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return None
    return TTest("paired t", float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1.0, len(d))


def welch_t(a: np.ndarray, b: np.ndarray) -> TTest | None:
    """Welch's t (unequal variances): effect mean(a) - mean(b), se sqrt(va/na + vb/nb), Welch-Satterthwaite df.

    The same as ``scipy.stats.ttest_ind(a, b, equal_var=False)``. None with fewer than two runs on a side.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = math.inf if se == 0 else (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return TTest("Welch t", float(a.mean() - b.mean()), se, df, min(len(a), len(b)))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of the pairs (a_i, b_i); NaN with fewer than three pairs or no spread on a side.

    The variance of a paired difference is var(a) + var(b) - 2 r sd(a) sd(b): the larger r, the
    more of the seed noise the pairing removes (r = 0 gains nothing over Welch).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def probability_of_improvement(a: np.ndarray, b: np.ndarray, paired: bool) -> float:
    """P(A > B), ties counting 1/2 (Bouthillier et al. 2021; rliable's probability of improvement).

    Paired: the fraction of seed pairs where A beats B. Unpaired: the Mann-Whitney estimate
    U / (na nb), the fraction of all (a_i, b_j) with a_i > b_j. 0.5: no tendency either way.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        return float(np.mean((a > b) + 0.5 * (a == b)))
    diff = a[:, None] - b[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def improvement_interval(a: np.ndarray, b: np.ndarray, paired: bool, level: float = ALPHA, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap 1 - ``level`` interval of P(A > B) (Efron 1979; rliable's intervals).

    Paired: resample the seed pairs; unpaired: resample each side on its own (stratified, as
    rliable does per task). Seeded, so the same runs always give the same interval.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(a), size=(BOOTSTRAP_RESAMPLES, len(a)))
        stats = np.mean((a[idx] > b[idx]) + 0.5 * (a[idx] == b[idx]), axis=1)
    else:
        ra = a[rng.integers(0, len(a), size=(BOOTSTRAP_RESAMPLES, len(a)))]
        rb = b[rng.integers(0, len(b), size=(BOOTSTRAP_RESAMPLES, len(b)))]
        diff = ra[:, :, None] - rb[:, None, :]
        stats = np.mean((diff > 0) + 0.5 * (diff == 0), axis=(1, 2))
    low, high = np.quantile(stats, [level / 2, 1 - level / 2])
    return float(low), float(high)


def verdict(low: float, high: float, margin: float) -> str:
    """The verdict of a relation whose effect (> 0: the claimed way) lies in [low, high] at the family's level.

    - equivalent: the interval lies inside (-margin, margin): whatever the difference, it is smaller
      than the margin (two one-sided tests at the interval's level). Checked first, so a significant
      but negligible effect reads as equivalent, never as a win;
    - supported: otherwise, the interval lies above 0;
    - contradicted: otherwise, it lies below 0;
    - not resolved: the interval holds 0 and reaches beyond the margin.
    """
    if -margin < low and high < margin:
        return EQUIVALENT
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return NOT_RESOLVED


@dataclass(frozen=True)
class Comparison:
    """Every number of one relation at one look: the test, the effect's interval, P(A > B) and the verdict."""

    test: TTest
    level: float  # the interval's two-sided level (1 - confidence): the family's share for this relation and look
    low: float
    high: float
    margin: float
    verdict: str
    correlation: float  # of the pairs, NaN for Welch
    prob: float  # P(A > B)
    prob_low: float
    prob_high: float


def compare(a: np.ndarray, b: np.ndarray, level: float, margin: float, paired: bool) -> Comparison | None:
    """Test a (claimed better) against b at two-sided ``level``; None with fewer than two runs (pairs) on a side.

    ``a`` and ``b`` are signed so that larger is better (negate losses). ``paired``: a[i] and b[i]
    come from runs with the same seed.
    """
    test = paired_t(a, b) if paired else welch_t(a, b)
    if test is None:
        return None
    low, high = test.interval(level)
    prob_low, prob_high = improvement_interval(a, b, paired)
    return Comparison(test, level, low, high, margin, verdict(low, high, margin), correlation(a, b) if paired else math.nan,
                      probability_of_improvement(a, b, paired), prob_low, prob_high)


# ---------------------------------------------------------------- the sequential design


CALIBRATION_DRAWS = 200_000  # simulated null sweeps a sequential design is calibrated on
CALIBRATION_SEED = 33  # fixed, so a design's levels (and so every verdict) are the same on every machine
CALIBRATION_CONFIDENCE_Z = 2.326  # the levels keep the error at or under its share with 99% confidence over the simulation


def look_seeds(seeds_per_round: int, max_seeds: int) -> list[int]:
    """The seeds per variant at each look: seeds_per_round, 2 seeds_per_round, ..., max_seeds."""
    return [min(k * seeds_per_round, max_seeds) for k in range(1, -(-max_seeds // seeds_per_round) + 1)]


def look_levels(seeds_per_round: int, max_seeds: int, relations: int, alpha: float = ALPHA) -> list[float]:
    """The two-sided level of each look's interval for one of ``relations`` relations: a group-sequential design.

    Pocock's design (1977) for paired t statistics: every look tests at the same nominal level,
    the largest at which the intervals of all K looks of a relation hold its true effect together
    with probability at least 1 - alpha / relations. Across relations the shares add up to alpha
    (Bonferroni), so the chance that any look of any relation gives a wrong verdict (supported or
    contradicted when the effect is the other way or zero, equivalent when it reaches the margin)
    is at most alpha, whichever rounds the sweeper stops at: valid under optional stopping with
    at most K looks.

    The level is calibrated by simulation rather than taken from tables: under normal seed noise
    the paired t statistics of the looks (T_1, ..., T_K), each centred on the true effect, have a
    joint distribution free of the effect and the noise's scale, so it is simulated once, with
    standard normal differences (``CALIBRATION_DRAWS`` sweeps, seeded). Tables of Pocock's
    boundary assume a known variance, which t statistics on 3 to 9 seeds are far from (the tabled
    level for 10 looks, 0.0106, used for each look's t-test gives 5.5% false verdicts in 50,000
    simulated A/A sweeps of 3 to 30 seeds). The level is the order
    statistic of the simulated smallest p-values that keeps the error at or under its share with
    99% confidence over the simulation, and never below the union bound alpha / (relations K),
    which holds whatever the simulation says. With one look (max_seeds <= seeds_per_round) it is
    the fixed-sample Bonferroni level alpha / relations.

    Why a constant level: of the level shapes tried on the tests' simulations (constant, rising
    as O'Brien-Fleming's, falling), the constant one decided a one-standard-deviation effect with
    the fewest seeds on average; a rising one waits for many rounds.
    """
    return list(_calibrated_levels(seeds_per_round, max_seeds, max(relations, 1), alpha))


@functools.lru_cache(maxsize=64)
def _calibrated_levels(seeds_per_round: int, max_seeds: int, relations: int, alpha: float) -> tuple[float, ...]:
    from scipy.special import stdtr, stdtrit

    looks = look_seeds(seeds_per_round, max_seeds)
    share = alpha / relations
    if len(looks) == 1:
        return (share,)
    t = _null_t(tuple(looks), CALIBRATION_DRAWS, CALIBRATION_SEED)
    df = np.array(looks, float) - 1
    # A sweep's smallest p-value over the looks is at most ``share`` only where some |T_k| passes
    # that look's critical value at ``share``; p-values are computed for those sweeps alone.
    candidates = t[(t > stdtrit(df, 1 - share / 2)).any(axis=1)]
    smallest = np.sort((2 * stdtr(df, -candidates)).min(axis=1))
    expected = CALIBRATION_DRAWS * share
    rank = math.floor(expected - CALIBRATION_CONFIDENCE_Z * math.sqrt(expected * (1 - share)))
    # Strictly below the rank-th smallest p-value: at most rank - 1 simulated sweeps err.
    calibrated = float(np.nextafter(smallest[rank - 1], 0.0)) if 1 <= rank <= len(smallest) else 0.0
    return (max(calibrated, share / len(looks)),) * len(looks)


@functools.lru_cache(maxsize=8)
def _null_t(looks: tuple[int, ...], draws: int, seed: int) -> np.ndarray:
    """|paired t| at each of ``looks`` (columns) for ``draws`` simulated sweeps of standard normal differences."""
    rng = np.random.default_rng(seed)
    edges = np.array((0,) + looks[:-1])
    n = np.array(looks, float)
    out = np.empty((draws, len(looks)))
    chunk = max(1, min(draws, 4_000_000 // looks[-1]))  # rows per block: about 32 MB of draws at a time
    for start in range(0, draws, chunk):
        x = rng.standard_normal((min(chunk, draws - start), looks[-1]))
        sums = np.cumsum(np.add.reduceat(x, edges, axis=1), axis=1)
        squares = np.cumsum(np.add.reduceat(x * x, edges, axis=1), axis=1)
        mean = sums / n
        var = np.maximum(squares - n * mean * mean, 0.0) / (n - 1)
        out[start:start + len(x)] = np.abs(mean) / np.sqrt(var / n)
    return out


def sequential_paired(diffs: np.ndarray, seeds_per_round: int, max_seeds: int, relations: int, margin: float,
                      alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The claims sweeper's rule on many relations at once: seed-wise differences -> (verdict, round).

    ``diffs`` has the seeds on its last axis (max_seeds of them, seed 0 first); every other axis
    is a relation of its own. At look k the first n_k differences are tested (paired t) at
    ``look_levels``; the first look whose interval gives supported, contradicted or equivalent
    decides, and later looks are not taken. Returns the verdicts (strings) and the deciding
    round (0 where none did). The same rule, one relation at a time, judges a sweep's runs
    (claims.judge with a Design); a test checks both agree. Vectorized for the simulations.
    """
    from scipy.special import stdtrit

    diffs = np.asarray(diffs, float)
    verdicts = np.full(diffs.shape[:-1], NOT_RESOLVED, dtype=object)
    rounds = np.zeros(diffs.shape[:-1], dtype=int)
    for k, (n, level) in enumerate(zip(look_seeds(seeds_per_round, max_seeds), look_levels(seeds_per_round, max_seeds, relations, alpha))):
        x = diffs[..., :n]
        mean, se = x.mean(axis=-1), x.std(axis=-1, ddof=1) / math.sqrt(n)
        half = float(stdtrit(n - 1, 1 - level / 2)) * se
        low, high = mean - half, mean + half
        open_ = rounds == 0
        for name, hit in ((EQUIVALENT, (-margin < low) & (high < margin)), (SUPPORTED, low > 0), (CONTRADICTED, high < 0)):
            now = open_ & hit
            verdicts[now], rounds[now] = name, k + 1
            open_ &= ~hit
    return verdicts, rounds
