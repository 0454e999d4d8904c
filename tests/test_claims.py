"""Claims as data: parsing, the family-wise control, the power calculation, and every verdict kind."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

from dnnexp.results.claims import (
    CONTRADICTED, EQUIVALENT, NOT_RESOLVED, SUPPORTED, ClaimError, check_claims, check_grid, check_variants, parse_claim, seeds_needed,
    welch_power,
)
from dnnexp.results.runs import load_runs
from dnnexp.results.inference import welch_t
from dnnexp.results.stats import build_report, holm_adjust, welch_p_value


def runs(groups: dict[str, list[float]], key: str = "activation", metric: str = "val_accuracy", status: str = "completed") -> pd.DataFrame:
    return pd.DataFrame([{key: name, metric: v, "status": status} for name, values in groups.items() for v in values])


def test_the_noise_verdicts_welch_p_is_the_claims_welch_t_and_matches_scipy():
    a, b = pd.Series([0.91, 0.90, 0.93, 0.92]), pd.Series([0.88, 0.85, 0.90])
    test, expected = welch_t(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert test.effect / test.se == pytest.approx(expected.statistic)
    assert welch_p_value(a, b) == test.p == pytest.approx(expected.pvalue)


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
    [relation] = check_claims([parse_claim("activation=selu > activation=relu")], frame, "val_accuracy")
    assert relation.verdict == SUPPORTED
    assert relation.effect == pytest.approx(0.153)
    assert relation.result.test.test == "Welch t" and relation.result.test.p < 0.05  # no seeds: unpaired


def test_a_clear_gap_the_other_way_is_contradicted():
    frame = runs({"selu": [0.95, 0.96, 0.955], "relu": [0.80, 0.81, 0.805]})
    [relation] = check_claims([parse_claim("activation=relu > activation=selu")], frame, "val_accuracy")
    assert relation.verdict == CONTRADICTED
    assert relation.effect < 0


def test_losses_count_lower_as_better():
    frame = runs({"dropout": [0.30, 0.31, 0.29], "none": [0.50, 0.52, 0.51]}, key="regularization", metric="val_loss")
    [relation] = check_claims([parse_claim("regularization=dropout > regularization=none on val_loss")], frame, "val_accuracy")
    assert relation.metric == "val_loss"
    assert relation.verdict == SUPPORTED
    assert relation.effect == pytest.approx(0.21)


def test_noise_is_not_resolved_and_says_how_many_seeds_would_resolve_it():
    a, b = [0.90, 0.92, 0.88], [0.89, 0.91, 0.87]  # effect 0.01, both standard deviations 0.02: d = 0.5
    [relation] = check_claims([parse_claim("activation=selu > activation=relu")], runs({"selu": a, "relu": b}), "val_accuracy")
    assert relation.verdict == NOT_RESOLVED
    assert relation.effect == pytest.approx(0.01)
    assert relation.std == pytest.approx(0.02)
    assert "64 seeds per variant" in relation.note  # one relation: the family's level is 5%, d = 0.5 needs 64


def test_the_family_level_is_split_among_the_relations():
    # Each pair alone is significant at 5%; three in one family are each tested at 5%/3.
    frame = runs({"a": [1.0, 1.2, 1.4, 1.1], "b": [0.8, 1.0, 0.9, 0.7], "c": [0.55, 0.75, 0.65, 0.45], "d": [0.3, 0.5, 0.4, 0.2]})
    lone = [check_claims([parse_claim(f"activation={x} > activation={y}")], frame, "val_accuracy")[0] for x, y in "ab bc cd".split()]
    family = check_claims([parse_claim("activation=a > activation=b > activation=c > activation=d")], frame, "val_accuracy")
    assert all(r.verdict == SUPPORTED for r in lone)
    assert [r.result.level for r in family[:3]] == pytest.approx([0.05 / 3] * 3)
    for r in family[:3]:
        expected = stats.ttest_ind(*(frame.loc[frame["activation"] == v, "val_accuracy"] for v in r.relation.replace("activation=", "").split(" > ")),
                                   equal_var=False).confidence_interval(1 - 0.05 / 3)
        assert (r.result.low, r.result.high) == pytest.approx(tuple(expected))
    assert any(r.verdict == NOT_RESOLVED for r in family[:3])
    assert family[3].relation == "the whole claim" and family[3].verdict == NOT_RESOLVED


def test_runs_at_the_same_seeds_are_compared_pairwise():
    a, b = [0.912, 0.905, 0.921, 0.899], [0.903, 0.901, 0.910, 0.897]
    frame = pd.DataFrame([{"activation": act, "trainer.seed": s, "val_accuracy": v, "status": "completed"}
                          for act, values in (("elu", a), ("relu", b)) for s, v in enumerate(values)])
    [relation] = check_claims([parse_claim("activation=elu > activation=relu")], frame, "val_accuracy")
    assert relation.result.test.test == "paired t"
    assert relation.result.test.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert relation.ci95 == pytest.approx(tuple(stats.ttest_rel(a, b).confidence_interval(0.95)))
    assert relation.result.correlation == pytest.approx(stats.pearsonr(a, b).statistic)
    assert relation.result.prob == 1.0 and relation.seeds == 4
    # the same numbers at seeds no run of the other side has: Welch
    frame.loc[frame["activation"] == "relu", "trainer.seed"] += 10
    [relation] = check_claims([parse_claim("activation=elu > activation=relu")], frame, "val_accuracy")
    assert relation.result.test.test == "Welch t"
    assert relation.result.test.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_a_margin_three_ways_and_the_equivalent_verdict():
    """A tiny, consistent gain: significant, yet inside the margin, so equivalent (never a win)."""
    a, b = [0.9012, 0.9031, 0.8992, 0.9020], [0.9002, 0.9020, 0.8983, 0.9011]  # +0.001 at every seed
    frame = pd.DataFrame([{"activation": act, "trainer.seed": s, "val_accuracy": v, "status": "completed"}
                          for act, values in (("elu", a), ("relu", b)) for s, v in enumerate(values)])
    claim = "activation=elu > activation=relu"
    [default] = check_claims([parse_claim(claim)], frame, "val_accuracy")
    assert default.verdict == EQUIVALENT and default.margin == 0.005 and default.result.low > 0
    [within] = check_claims([parse_claim(claim + " within 0")], frame, "val_accuracy")
    assert within.verdict == SUPPORTED and within.margin == 0
    [swept] = check_claims([parse_claim(claim)], frame, "val_accuracy", margin=0.0)  # claims_margin / --margin
    assert swept.verdict == SUPPORTED
    [own] = check_claims([parse_claim(claim + " within 0.005")], frame, "val_accuracy", margin=0.0)  # the claim's own wins
    assert own.verdict == EQUIVALENT
    assert parse_claim("activation=elu > activation=relu on val_loss within 0.02").margin == 0.02
    assert parse_claim("activation=elu > activation=relu within 0.02 on val_loss").metric == "val_loss"
    with pytest.raises(ClaimError, match="within must be a number >= 0"):
        parse_claim(claim + " within much")


def test_an_ordering_is_supported_only_when_every_adjacent_pair_is():
    frame = runs({"selu": [0.95, 0.951, 0.949], "elu": [0.90, 0.901, 0.899], "relu": [0.85, 0.851, 0.849]})
    rows = check_claims([parse_claim("activation=selu > activation=elu > activation=relu")], frame, "val_accuracy")
    assert [r.verdict for r in rows] == [SUPPORTED, SUPPORTED, SUPPORTED]
    rows = check_claims([parse_claim("activation=selu > activation=relu > activation=elu")], frame, "val_accuracy")
    assert [r.verdict for r in rows] == [SUPPORTED, CONTRADICTED, CONTRADICTED]


def test_each_of_several_against_one():
    frame = runs({"none": [0.1, 0.11, 0.1], "before": [0.9, 0.91, 0.92], "after": [0.85, 0.86, 0.87]}, key="normalization")
    claim = parse_claim("normalization=before | normalization=after > normalization=none")
    rows = check_claims([claim], frame, "val_accuracy")
    assert [r.relation for r in rows] == ["normalization=before > normalization=none", "normalization=after > normalization=none", "the whole claim"]
    assert {r.verdict for r in rows} == {SUPPORTED}


def test_only_completed_runs_are_compared():
    frame = pd.concat([runs({"selu": [0.95, 0.96], "relu": [0.80, 0.81]}), runs({"relu": [0.99, 0.99, 0.99]}, status="diverged")])
    [relation] = check_claims([parse_claim("activation=selu > activation=relu")], frame, "val_accuracy")
    assert relation.n == "2 vs 2"
    assert relation.verdict == SUPPORTED


def test_a_run_level_property():
    frame = pd.DataFrame([
        {"clipping": "none", "status": "diverged"}, {"clipping": "none", "status": "diverged"},
        {"clipping": "norm", "status": "completed"}, {"clipping": "norm", "status": "diverged"},
        {"clipping": "value", "status": "completed"},
    ])
    verdicts = [check_claims([parse_claim(f"clipping={c}: status = diverged")], frame, "val_accuracy")[0] for c in ("none", "norm", "value")]
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


# ---------------------------------------------------------------- claims in the report, on run folders with known numbers

CLAIMED = {"selu": [0.95, 0.96, 0.955], "elu": [0.90, 0.91, 0.89], "relu": [0.89, 0.90, 0.88], "sigmoid": [0.10, 0.11, 0.10]}


@pytest.fixture
def claimed_sweep(tmp_path):
    from test_report import write_sweep

    jobs = [({"activation": act, "trainer.seed": seed}, {"best_val_accuracy": acc, "epochs_run": 3})
            for act, accs in CLAIMED.items() for seed, acc in enumerate(accs)]
    sweep = write_sweep(tmp_path / "sweep", jobs)
    for config in sweep.glob("*/.hydra/config.yaml"):  # as a preset with claims leaves its jobs' configs
        tree = yaml.safe_load(config.read_text())
        tree["claims"] = ["activation=selu > activation=elu > activation=sigmoid", "activation=gelu > activation=relu"]
        config.write_text(yaml.safe_dump(tree))
    return sweep


def test_the_report_checks_the_presets_claims_and_the_users(claimed_sweep, capsys):
    from dnnexp.results.cli import main

    main([str(claimed_sweep), "--claim", "activation=relu > activation=elu", "--claim", "activation=selu > activation=relu",
          "--format", "markdown", "--margin", "0"])
    out = capsys.readouterr().out
    claims = out[out.index("## Claims"):]
    lines = {line.split(" | ")[0].lstrip("| ").strip(): line for line in claims.splitlines() if line.startswith("| ") and " > " in line}
    assert "supported" in lines["activation=selu > activation=elu"]
    assert "supported" in lines["activation=elu > activation=sigmoid"]
    # relu - elu = -0.01 at every seed: the pairs see through the seeds' spread of 0.01
    assert "paired t" in lines["activation=relu > activation=elu"] and "contradicted" in lines["activation=relu > activation=elu"]
    # selu - relu: +0.065 +0.06 +0.075; 4 relations in the family
    selu, relu = CLAIMED["selu"], CLAIMED["relu"]
    low, high = stats.ttest_rel(selu, relu).confidence_interval(0.95)
    assert f"+{sum(selu) / 3 - sum(relu) / 3:.4f} [{low:+.4f}, {high:+.4f}]" in lines["activation=selu > activation=relu"]
    assert "not checked" in claims and "this sweep has no runs of activation=gelu" in claims


def test_a_typed_claim_naming_a_variant_no_run_has_is_refused(claimed_sweep, capsys):
    from dnnexp.results.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([str(claimed_sweep), "--claim", "activation=gelu > activation=relu"])
    assert exit_.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "names activation=gelu, which no run has; the runs have: activation=selu, activation=elu, activation=relu, activation=sigmoid" in err


def test_a_typed_claim_is_checked_against_the_grid_before_any_job_trains(tmp_path):
    from conftest import TINY, run_cli

    result = run_cli("-m", "activation=relu,elu", 'claims=["activation=selu > activation=relu"]', *TINY, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "names activation=selu, which this sweep does not run; it runs: activation=relu, activation=elu" in result.stderr
    assert not list(tmp_path.glob("sweep/*/metrics.json"))


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml")))
def test_every_comparison_preset_states_a_claim_its_grid_can_check(name):
    from conftest import compose_config

    cfg = compose_config(f"+experiment={name}", return_hydra_config=True)
    grid = {key: str(values).split(",") for key, values in cfg.hydra.sweeper.params.items()}
    assert cfg.claims, f"{name} states no claim"
    check_grid(cfg.claims, grid)


def test_a_sweep_with_pair_and_property_claims_renders_every_format(claimed_sweep):
    from dnnexp.results.claims import judge
    from dnnexp.results.page import html_page
    from dnnexp.results.render import render

    runs = load_runs([claimed_sweep])
    report = build_report(runs)
    report.claims = judge(report, ["activation=selu > activation=elu", "activation=sigmoid: status = completed"])
    for text in (render(report, "table"), render(report, "markdown"), html_page(report, pngs={})):
        assert "activation=sigmoid: status = completed" in text and "nan" not in text.lower()


def test_the_python_api_gives_the_same_verdicts(claimed_sweep):
    import dnnexp

    table = dnnexp.compare(claimed_sweep, claims="activation=sigmoid > activation=relu")
    rows = dnnexp.verdicts(table).set_index("relation")
    assert rows.loc["activation=selu > activation=elu", "verdict"] == SUPPORTED
    assert rows.loc["activation=sigmoid > activation=relu", "verdict"] == CONTRADICTED
    assert rows.loc["activation=sigmoid > activation=relu", "effect"] == pytest.approx(0.10333 - 0.89, abs=1e-4)
    assert rows.loc["activation=sigmoid > activation=relu", "test"] == "paired t"
    for column in ("ci_low", "ci_high", "prob_improvement", "prob_low", "prob_high", "correlation", "seeds", "margin"):
        assert column in rows.columns
    direct = dnnexp.verdicts(claimed_sweep, claims=["activation=sigmoid > activation=relu"])
    pd.testing.assert_frame_equal(direct, dnnexp.verdicts(table))
    with pytest.raises(dnnexp.DnnexpError, match="names activation=gelu, which no run has"):
        dnnexp.compare(claimed_sweep, claims=["activation=gelu > activation=relu"])


def test_the_forest_plot_renders_in_chromium_with_each_relation(claimed_sweep, tmp_path):
    """report.html carries the claims' forest plot; headless Chromium decodes it offline, and it has a row per tested relation."""
    from test_api import rendered_in_chromium

    from dnnexp.results.figures import figures
    from dnnexp.results.page import html_page
    from dnnexp.results.report import report_for

    report = report_for([claimed_sweep], claims=["activation=relu > activation=elu within 0.02"])
    drawn = figures(report)
    forest = drawn["claims_forest"]
    labels = [t.get_text() for t in forest.axes[0].get_yticklabels()]
    tested = report.claims[report.claims["ci_low"].notna()]
    assert len(labels) == len(tested) == 3  # selu > elu, elu > sigmoid, relu > elu (gelu's claim is not checked)
    assert forest.axes[0].patches or forest.axes[0].collections  # the margin bands
    page = html_page(report, pngs=drawn.pngs())
    assert 'alt="claims_forest"' in page
    dom, sizes = rendered_in_chromium(page, tmp_path)
    width, height = sizes["claims_forest"]
    assert width > 500 and height > 200
    assert "equivalent" in dom or "supported" in dom  # the claims table beside it


def test_the_forest_plot_reads_small_effects_beside_a_large_one():
    """One effect 30 times the others' intervals (tanh > sigmoid beside selu > elu) gets a symlog axis, linear around 0
    out past the margins, so the small intervals and the margin bands do not shrink to a point; alike effects keep a linear axis."""
    import pandas as pd

    from dnnexp.results.figures import forest_figure

    def claims(*intervals):
        return pd.DataFrame([{"relation": f"a{i} > b{i}", "metric": "val_accuracy", "verdict": "supported", "margin": 0.005,
                              "effect": (low + high) / 2, "ci_low": low, "ci_high": high,
                              "decision_low": low - 0.005, "decision_high": high + 0.005} for i, (low, high) in enumerate(intervals)])

    spread = forest_figure(claims((0.01, 0.03), (0.02, 0.04), (0.72, 0.82))).axes[0]
    assert spread.get_xscale() == "symlog" and "logarithmic beyond" in spread.get_xlabel()
    assert spread.xaxis.get_transform().linthresh >= 2 * 0.005  # the margin band lies in the linear part
    alike = forest_figure(claims((0.01, 0.03), (0.02, 0.04), (-0.01, 0.02))).axes[0]
    assert alike.get_xscale() == "linear"
