"""Claims as data: parsing, the family-wise control, the power calculation, and every verdict kind."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from dnnexp.results.claims import (
    CONTRADICTED, NOT_RESOLVED, SUPPORTED, ClaimError, check_claims, check_variants, holm, parse_claim, seeds_needed,
    two_sided_p, welch, welch_power,
)


def higher_is_better(metric: str) -> bool:
    return "loss" not in metric


def runs(groups: dict[str, list[float]], key: str = "activation", metric: str = "val_accuracy", status: str = "completed") -> pd.DataFrame:
    return pd.DataFrame([{key: name, metric: v, "status": status} for name, values in groups.items() for v in values])


def test_holm_matches_a_hand_computed_case():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_welch_matches_scipy():
    a, b = pd.Series([0.91, 0.90, 0.93, 0.92]), pd.Series([0.88, 0.85, 0.90])
    t, df = welch(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(expected.statistic)
    assert two_sided_p(t, df) == pytest.approx(expected.pvalue)


def test_power_matches_the_textbook_sample_sizes():
    # Cohen (1988), two-sided two-sample t-test at alpha 0.05, power 0.8: d = 0.5 -> 64, 0.8 -> 26, 1.0 -> 17 per group
    assert welch_power(0.5, 1.0, 1.0, 64, 0.05) == pytest.approx(0.8015, abs=1e-4)
    assert [seeds_needed(d, 1.0, 1.0, 0.05) for d in (0.5, 0.8, 1.0)] == [64, 26, 17]
    assert seeds_needed(0.0, 1.0, 1.0, 0.05) is None


def test_power_keeps_growing_with_seeds_where_scipy_gives_up():
    powers = [welch_power(0.3, 1.0, 2.0, n, 0.05) for n in range(2, 1000)]
    assert all(not math.isnan(p) for p in powers)
    assert powers == sorted(powers)


def test_a_clear_gap_in_the_claimed_direction_is_supported():
    frame = runs({"selu": [0.95, 0.96, 0.955, 0.952], "relu": [0.80, 0.81, 0.805, 0.79]})
    [relation] = check_claims([parse_claim("activation=selu > activation=relu")], frame, "val_accuracy", higher_is_better)
    assert relation.verdict == SUPPORTED
    assert relation.effect == pytest.approx(0.153)
    assert relation.p < 0.05


def test_a_clear_gap_the_other_way_is_contradicted():
    frame = runs({"selu": [0.95, 0.96, 0.955], "relu": [0.80, 0.81, 0.805]})
    [relation] = check_claims([parse_claim("activation=relu > activation=selu")], frame, "val_accuracy", higher_is_better)
    assert relation.verdict == CONTRADICTED
    assert relation.effect < 0


def test_losses_count_lower_as_better():
    frame = runs({"dropout": [0.30, 0.31, 0.29], "none": [0.50, 0.52, 0.51]}, key="regularization", metric="val_loss")
    [relation] = check_claims([parse_claim("regularization=dropout > regularization=none on val_loss")], frame, "val_accuracy", higher_is_better)
    assert relation.metric == "val_loss"
    assert relation.verdict == SUPPORTED
    assert relation.effect == pytest.approx(0.21)


def test_noise_is_not_resolved_and_says_how_many_seeds_would_resolve_it():
    a, b = [0.90, 0.92, 0.88], [0.89, 0.91, 0.87]  # effect 0.01, both standard deviations 0.02: d = 0.5
    [relation] = check_claims([parse_claim("activation=selu > activation=relu")], runs({"selu": a, "relu": b}), "val_accuracy", higher_is_better)
    assert relation.verdict == NOT_RESOLVED
    assert relation.effect == pytest.approx(0.01)
    assert relation.std == pytest.approx(0.02)
    assert "64 seeds per variant" in relation.note  # one relation: the family's level is 5%, d = 0.5 needs 64


def test_holm_controls_the_family_a_lone_test_would_pass():
    # Each pair alone has p just under 5%; three in one family must clear 5%/3 for the smallest.
    frame = runs({"a": [1.0, 1.2, 1.4, 1.1], "b": [0.8, 1.0, 0.9, 0.7], "c": [0.55, 0.75, 0.65, 0.45], "d": [0.3, 0.5, 0.4, 0.2]})
    lone = [check_claims([parse_claim(f"activation={x} > activation={y}")], frame, "val_accuracy", higher_is_better)[0] for x, y in "ab bc cd".split()]
    family = check_claims([parse_claim("activation=a > activation=b > activation=c > activation=d")], frame, "val_accuracy", higher_is_better)
    raw = [r.p for r in lone]
    assert all(r.verdict == SUPPORTED for r in lone) and max(raw) < 0.05
    assert [r.p for r in family[:3]] == pytest.approx(holm(raw))
    assert any(r.verdict == NOT_RESOLVED for r in family[:3])
    assert family[3].relation == "the whole claim" and family[3].verdict == NOT_RESOLVED


def test_an_ordering_is_supported_only_when_every_adjacent_pair_is():
    frame = runs({"selu": [0.95, 0.951, 0.949], "elu": [0.90, 0.901, 0.899], "relu": [0.85, 0.851, 0.849]})
    rows = check_claims([parse_claim("activation=selu > activation=elu > activation=relu")], frame, "val_accuracy", higher_is_better)
    assert [r.verdict for r in rows] == [SUPPORTED, SUPPORTED, SUPPORTED]
    rows = check_claims([parse_claim("activation=selu > activation=relu > activation=elu")], frame, "val_accuracy", higher_is_better)
    assert [r.verdict for r in rows] == [SUPPORTED, CONTRADICTED, CONTRADICTED]


def test_each_of_several_against_one():
    frame = runs({"none": [0.1, 0.11, 0.1], "before": [0.9, 0.91, 0.92], "after": [0.85, 0.86, 0.87]}, key="normalization")
    claim = parse_claim("normalization=before | normalization=after > normalization=none")
    rows = check_claims([claim], frame, "val_accuracy", higher_is_better)
    assert [r.relation for r in rows] == ["normalization=before > normalization=none", "normalization=after > normalization=none", "the whole claim"]
    assert {r.verdict for r in rows} == {SUPPORTED}


def test_only_completed_runs_are_compared():
    frame = pd.concat([runs({"selu": [0.95, 0.96], "relu": [0.80, 0.81]}), runs({"relu": [0.99, 0.99, 0.99]}, status="diverged")])
    [relation] = check_claims([parse_claim("activation=selu > activation=relu")], frame, "val_accuracy", higher_is_better)
    assert relation.n == "2 vs 2"
    assert relation.verdict == SUPPORTED


def test_a_run_level_property():
    frame = pd.DataFrame([
        {"clipping": "none", "status": "diverged"}, {"clipping": "none", "status": "diverged"},
        {"clipping": "norm", "status": "completed"}, {"clipping": "norm", "status": "diverged"},
        {"clipping": "value", "status": "completed"},
    ])
    verdicts = [check_claims([parse_claim(f"clipping={c}: status = diverged")], frame, "val_accuracy", higher_is_better)[0] for c in ("none", "norm", "value")]
    assert [v.verdict for v in verdicts] == [SUPPORTED, NOT_RESOLVED, CONTRADICTED]
    assert [v.n for v in verdicts] == ["2 of 2", "1 of 2", "0 of 1"]


def test_a_variant_the_runs_do_not_have_is_named_with_the_ones_they_have():
    frame = runs({"selu": [0.9], "relu": [0.8]})
    with pytest.raises(ClaimError, match=r"names activation=gelu, which no run has; the runs have: activation=selu, activation=relu"):
        check_variants([parse_claim("activation=selu > activation=gelu")], frame, ["activation"])


@pytest.mark.parametrize("text", ["activation=selu", "selu > relu", "activation=selu: status", "activation=selu >"])
def test_unreadable_claims_say_what_the_forms_are(text):
    with pytest.raises(ClaimError):
        parse_claim(text)
