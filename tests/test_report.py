"""The comparison report: a real sweep ends in its table, and run folders with known numbers give known rows."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY, run_in_process
from rich.console import Console
from scipy.stats import ttest_ind

from dnnexp.results.render import render
from dnnexp.results.runs import load_runs
from dnnexp.results.stats import ReportError, build_report, holm_adjust, welch_p_value
from dnnexp.results.sweep import write_sweep_report

# ---------------------------------------------------------------- run folders with known numbers


def write_run(run_dir: Path, overrides: dict, metrics: dict | str | None, history: list[float] | None = None) -> Path:
    """A run folder as train.py and Hydra leave it; ``metrics`` as text writes a broken metrics.json."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    config = {"activation": {"name": "relu"}, "optimizer": {"name": "sgd", "lr": 0.01}, "trainer": {"seed": 42},
              "optimized_metric": "best_val_accuracy"}
    choices = {"activation": "relu", "optimizer": "sgd", "hydra/launcher": "basic"}
    for key, value in overrides.items():
        if "." in key:
            group, leaf = key.split(".")
            config[group][leaf] = value
        else:
            config[key]["name"] = choices[key] = value
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if isinstance(metrics, dict):
        (run_dir / "metrics.json").write_text(json.dumps({"status": "completed", **metrics}))
    elif isinstance(metrics, str):
        (run_dir / "metrics.json").write_text(metrics)
    if history is not None:
        rows = [{"epoch": i + 1, "val_accuracy": v, "val_loss": 1 - v} for i, v in enumerate(history)]
        pd.DataFrame(rows).to_csv(run_dir / "history.csv", index=False)
    return run_dir


def write_sweep(sweep_dir: Path, jobs: list[tuple[dict, dict | str | None]]) -> Path:
    """A sweep folder: multirun.yaml and one numbered job folder per (overrides, metrics)."""
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": ["activation=relu,elu"]}}}))
    for num, (overrides, metrics) in enumerate(jobs):
        if overrides is not None:
            write_run(sweep_dir / str(num), overrides, metrics, history=[0.5, 0.6])
    return sweep_dir


SEED_ACCURACIES = {"elu": [0.90, 0.91, 0.93], "relu": [0.80, 0.81, 0.82], "selu": [0.92, 0.88, 0.90]}
SECONDS = {"elu": 3.0, "relu": 1.0, "selu": 2.0}


@pytest.fixture
def seed_sweep(tmp_path):
    jobs = [({"activation": act, "trainer.seed": seed}, {"best_val_accuracy": acc, "test_accuracy": acc - 0.01, "epochs_run": 3, "seconds_per_epoch": SECONDS[act]})
            for act, accs in SEED_ACCURACIES.items() for seed, acc in enumerate(accs)]
    return write_sweep(tmp_path / "sweep", jobs)


def test_seeds_are_grouped_into_mean_std_and_n(seed_sweep):
    report = build_report(load_runs([seed_sweep]))
    table = report.table.set_index("activation")
    assert report.grouped and report.keys == ["activation"]  # the seed is not a column, it is the n
    assert list(table.index) == ["elu", "selu", "relu"]  # best mean first
    for act, accs in SEED_ACCURACIES.items():
        assert table.loc[act, "best_val_accuracy"] == pytest.approx(statistics.mean(accs))
        assert table.loc[act, "best_val_accuracy_std"] == pytest.approx(statistics.stdev(accs))
        assert table.loc[act, "n"] == 3
    assert "0.9133 ± 0.0153" in render(report, "markdown")


def test_noise_verdict_is_welchs_test_holm_adjusted_at_five_percent(seed_sweep):
    report = build_report(load_runs([seed_sweep]))
    verdicts = dict(zip(report.table["activation"], report.table["vs_best"]))
    p_selu = ttest_ind(SEED_ACCURACIES["elu"], SEED_ACCURACIES["selu"], equal_var=False).pvalue
    p_relu = ttest_ind(SEED_ACCURACIES["elu"], SEED_ACCURACIES["relu"], equal_var=False).pvalue
    assert p_selu >= 0.05 > 2 * p_relu  # the data is built so: selu's gap is noise, relu's is not
    # Holm over two comparisons: the smaller p doubles, the larger stays (but not below the first)
    assert verdicts == {"elu": "best", "selu": f"within noise (adj. p={max(p_selu, 2 * p_relu):.2f})", "relu": f"worse (adj. p={2 * p_relu:.3f})"}
    assert "p Holm-adjusted for 2 comparisons" in report.notes[0]
    assert "no clear winner over: activation=selu." in report.notes[0]


def test_holm_adjust_matches_a_hand_computed_case():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> not below 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, and never below a smaller p's
    assert holm_adjust([0.2]) == [0.2] and holm_adjust([]) == []


def test_holm_turns_gaps_that_three_tests_make_likely_into_noise(tmp_path):
    accuracies = {"elu": [0.90, 0.91, 0.92], "selu": [0.88, 0.89, 0.89], "tanh": [0.86, 0.88, 0.89], "sigmoid": [0.70, 0.71, 0.72]}
    sweep = write_sweep(tmp_path / "sweep", [({"activation": act, "trainer.seed": seed}, {"best_val_accuracy": acc})
                                             for act, accs in accuracies.items() for seed, acc in enumerate(accs)])
    table = build_report(load_runs([sweep])).table.set_index("activation")
    p = {act: ttest_ind(accuracies["elu"], accs, equal_var=False).pvalue for act, accs in accuracies.items() if act != "elu"}
    assert p["sigmoid"] < p["selu"] < p["tanh"] < 0.05  # each alone would be "worse"
    holm = {"sigmoid": 3 * p["sigmoid"], "selu": 2 * p["selu"], "tanh": max(2 * p["selu"], p["tanh"])}  # by hand
    for act in p:
        assert table.loc[act, "p_value"] == pytest.approx(p[act], rel=1e-9)
        assert table.loc[act, "p_adjusted"] == pytest.approx(holm[act], rel=1e-9)
    assert table.loc["selu", "vs_best"] == f"within noise (adj. p={holm['selu']:.2f})" == table.loc["tanh", "vs_best"]
    assert table.loc["sigmoid", "vs_best"] == "worse (adj. p<0.001)"


def test_holm_keeps_false_worse_verdicts_near_five_percent():
    """Six variants that differ in nothing, 3 seeds each: how often does some variant look worse than the best?"""
    rng = np.random.default_rng(0)
    raw = adjusted = 0
    trials = 1000
    for _ in range(trials):
        variants = sorted(rng.normal(0.9, 0.01, size=(6, 3)), key=lambda v: -v.mean())  # the best picked after the fact
        p = [welch_p_value(pd.Series(variants[0]), pd.Series(v)) for v in variants[1:]]
        raw += min(p) < 0.05
        adjusted += min(holm_adjust(p)) < 0.05
    assert raw / trials > 0.15  # uncorrected: about one table in five calls a variant worse by chance
    assert adjusted / trials < 0.06


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy's, for the constant sample
@pytest.mark.parametrize("a, b", [
    ([0.90, 0.91, 0.93], [0.92, 0.88, 0.90]),
    ([0.5, 0.6], [0.1, 0.2, 0.3, 0.35]),
    ([0.75, 0.75, 0.75], [0.6, 0.65, 0.61]),  # one side without spread
])
def test_welch_p_value_matches_scipy(a, b):
    expected = ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(pd.Series(a), pd.Series(b)) == pytest.approx(expected, rel=1e-9)


def test_welch_p_value_needs_two_values_and_handles_no_spread():
    assert welch_p_value(pd.Series([0.9]), pd.Series([0.8, 0.7])) is None
    assert welch_p_value(pd.Series([0.9, 0.9]), pd.Series([0.9, 0.9])) == 1.0
    assert welch_p_value(pd.Series([0.9, 0.9]), pd.Series([0.8, 0.8])) == 0.0


def test_runs_of_different_commands_show_the_option_they_ran_with(tmp_path):
    write_run(tmp_path / "a", {"activation": "elu"}, {"best_val_accuracy": 0.9})
    write_run(tmp_path / "b", {"optimizer.lr": 0.1}, {"best_val_accuracy": 0.8})  # default activation, from hydra.yaml
    table = build_report(load_runs([tmp_path])).table
    assert table[["activation", "optimizer.lr"]].values.tolist() == [["elu", 0.01], ["relu", 0.1]]


def test_group_by_where_and_sort_options(seed_sweep):
    runs = load_runs([seed_sweep])
    by_seed = build_report(runs, group_by=["trainer.seed"], where=["activation=elu"])
    assert list(by_seed.table["trainer.seed"]) == [2, 1, 0] and list(by_seed.table["n"]) == [1, 1, 1]
    assert "the noise is unknown" in by_seed.notes[0]  # one run per row: no verdict
    fastest_first = build_report(runs, sort="seconds_per_epoch", metrics=["test_accuracy"]).table
    assert list(fastest_first["activation"]) == ["relu", "selu", "elu"]  # time sorts low to high
    assert list(fastest_first.columns[:3]) == ["activation", "seconds_per_epoch", "seconds_per_epoch_std"]
    assert build_report(runs, where=["trainer.seed=1.0"]).table["best_val_accuracy"].tolist() == [0.91, 0.88, 0.81]


# ---------------------------------------------------------------- status: failed, missing, half-written


def test_failed_missing_corrupt_and_running_runs_are_reported(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [
        ({"activation": "relu"}, {"best_val_accuracy": 0.9}),
        ({"activation": "elu"}, {"status": "failed", "error": "dataset.data_dir does not exist"}),
        (None, None),  # job 2: its folder is gone
        ({"activation": "selu"}, '{"status": "compl'),  # half-written metrics.json
        ({"activation": "tanh"}, None),  # no metrics yet: history.csv holds two epochs
    ])
    runs = load_runs([sweep])
    status = dict(zip(runs.frame["run"].map(lambda r: Path(r).name), runs.frame["status"]))
    assert status == {"0": "completed", "1": "failed", "2": "missing", "3": "corrupt", "4": "running"}
    running = runs.frame.set_index("status").loc["running"]
    assert running["epochs_run"] == 2 and running["best_val_accuracy"] == 0.6

    console = Console(record=True, width=200)
    report = write_sweep_report(sweep, console, finished=False)
    assert report.table["status"].iloc[0] == "completed"  # the only finished run is the best
    printed = " ".join(console.export_text().split())  # the notes wrap at the table's width
    for word in ("failed", "missing", "corrupt", "running", "dataset.data_dir does not exist"):
        assert word in printed
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 5 and set(summary["status"]) == {"completed", "failed", "missing", "corrupt", "running"}


def test_a_groups_mean_and_n_count_its_completed_runs_and_list_the_others(tmp_path):
    diverged = {"status": "diverged", "best_val_accuracy": 0.95, "diverged_epoch": 2}  # its best before the NaN
    sweep = write_sweep(tmp_path / "sweep", [
        ({"activation": "relu", "trainer.seed": 0}, {"best_val_accuracy": 0.80}),
        ({"activation": "relu", "trainer.seed": 1}, {"best_val_accuracy": 0.82}),
        ({"activation": "relu", "trainer.seed": 2}, diverged),
        ({"activation": "relu", "trainer.seed": 3}, {"status": "failed", "error": "ValueError: boom"}),
        (None, None),  # job 4: its folder is gone
        ({"activation": "elu", "trainer.seed": 0}, {"best_val_accuracy": 0.70}),
        ({"activation": "elu", "trainer.seed": 1}, {"best_val_accuracy": 0.72}),
        ({"activation": "tanh", "trainer.seed": 0}, diverged),  # nothing completed: no numbers, never the best
        ({"activation": "tanh", "trainer.seed": 1}, diverged),
    ])
    report = build_report(load_runs([sweep]))
    table = report.table.set_index("activation")
    assert list(table.index.fillna("?")) == ["relu", "elu", "tanh", "?"]
    assert table.loc["relu", "best_val_accuracy"] == pytest.approx(0.81)  # not (0.80 + 0.82 + 0.95) / 3
    assert table.loc["relu", "best_val_accuracy_std"] == pytest.approx(statistics.stdev([0.80, 0.82]))
    assert table["n"].tolist() == [2, 2, 0, 0] and table["status"].iloc[-1] == "missing"
    assert table.loc["relu", "status"] == "2 completed, 1 diverged, 1 failed"
    assert table.loc["elu", "p_value"] == pytest.approx(ttest_ind([0.80, 0.82], [0.70, 0.72], equal_var=False).pvalue, rel=1e-9)
    assert pd.isna(table.loc["tanh", "best_val_accuracy"]) and table.loc["tanh", "status"] == "2 diverged"
    assert report.best["activation"] == "relu"
    assert "Means, std and n count completed runs only; left out: 3 diverged, 1 failed, 1 missing." in report.notes
    assert f"diverged: {sweep / '2'} (at epoch 2)" in report.notes and f"failed: {sweep / '3'}: ValueError: boom" in report.notes
    assert f"missing: {sweep / '4'}" in report.notes
    shown = render(report, "markdown")
    assert "| **relu** | **0.8100 ± 0.0141** |" in shown and "| tanh | - |" in shown


def test_the_text_under_the_table_counts_the_values_it_used_and_does_not_compare_a_lone_variant(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [({"activation": "relu", "trainer.seed": seed}, {"best_val_accuracy": value})
                                             for seed, value in enumerate([0.90, 0.91, None])])  # the third has none
    report = build_report(load_runs([sweep]))
    assert report.table["n"].tolist() == [3]  # completed runs
    assert report.notes[0] == ("Best: all runs, best_val_accuracy 0.9050 ± 0.0071 (n=2 of 3 completed, 1 without a value of "
                               "best_val_accuracy). No other variant has a completed run with a value of best_val_accuracy: "
                               "nothing to compare it with.")


def test_a_key_a_run_did_not_set_reads_as_a_dash_in_cells_and_plot_labels(tmp_path):
    from dnnexp.results.columns import describe_row

    write_run(tmp_path / "runs" / "0", {"activation": "relu"}, {"best_val_accuracy": 0.9})
    limited = write_run(tmp_path / "runs" / "1", {"activation": "relu", "trainer.limit": 500}, {"best_val_accuracy": 0.8})
    assert "limit: 500" in (limited / ".hydra" / "config.yaml").read_text()
    report = build_report(load_runs([tmp_path / "runs"]))
    assert report.keys == ["trainer.limit"]
    assert [describe_row(row, report.keys) for _, row in report.table.iterrows()] == ["trainer.limit=-", "trainer.limit=500"]
    shown = render(report, "markdown")
    assert "| **-** | **0.9000** |" in shown and "nan" not in shown


def test_the_report_title_counts_runs_not_missing_jobs(tmp_path, capsys):
    from dnnexp.results.cli import main

    sweep = write_sweep(tmp_path / "sweep", [(None, None), (None, None), ({"activation": "relu"}, {"best_val_accuracy": 0.9})])
    main([str(sweep)])
    assert capsys.readouterr().out.splitlines()[0].strip() == f"dnnexp: 1 run in {sweep} (2 jobs missing)"


def test_a_run_without_metrics_is_incomplete_once_the_sweep_has_ended(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [({"activation": "relu"}, {"best_val_accuracy": 0.9}), ({"activation": "elu"}, None)])
    assert list(load_runs([sweep], finished=True).frame["status"]) == ["completed", "incomplete"]


# ---------------------------------------------------------------- the dnnexp-report command


def test_report_command_filters_exports_and_imports_no_tensorflow(seed_sweep, tmp_path):
    out = tmp_path / "table.csv"
    probe = (
        "import sys\n"
        "from dnnexp.results.cli import main\n"
        f"main([{str(seed_sweep.parent)!r}, '--where', 'activation=selu', '--group-by', 'activation', '--output', {str(out)!r}])\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')\n"
        "print(sorted(m for m in ('hydra', 'omegaconf') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["TF_NOT_LOADED", "[]"], result.stderr  # nor Hydra: the report reads files
    table = pd.read_csv(out)  # the format follows the file's suffix
    assert list(table["activation"]) == ["selu"] and table["n"].tolist() == [3]
    assert table["best_val_accuracy"].iloc[0] == pytest.approx(0.90)


def test_report_command_names_an_unknown_key(seed_sweep):
    result = subprocess.run([sys.executable, "-m", "dnnexp.results.cli", str(seed_sweep), "--where", "activaton=elu"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--where key 'activaton' is not in these runs; they have: activation," in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ReportError, match="metric 'best_val_acc' is not in these runs; they have: best_val_accuracy, epochs_run,"):
        build_report(load_runs([seed_sweep]), metrics=["best_val_acc"])


def test_report_command_json_html_and_plots(seed_sweep, tmp_path, capsys):
    from dnnexp.results.cli import main

    main([str(seed_sweep), "--format", "json", "--plots", str(tmp_path / "figures")])
    records = json.loads(capsys.readouterr().out)
    assert [r["activation"] for r in records] == ["elu", "selu", "relu"]
    assert records[0]["best_val_accuracy_std"] == pytest.approx(statistics.stdev(SEED_ACCURACIES["elu"]))
    assert records[0]["vs_best"] == "best" and records[0]["n"] == 3
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"accuracy_curves.png", "loss_curves.png", "best_val_accuracy_bars.png"}
    main([str(seed_sweep), "--format", "html", "--output", str(tmp_path / "report.html")])
    html = (tmp_path / "report.html").read_text()  # one page: the sweep's command, the table, its note, the plots
    assert html.startswith("<!DOCTYPE html>") and "<td>0.9133 ± 0.0153</td>" in html
    assert "<pre>dnnexp -m activation=relu,elu</pre>" in html and "Holm-adjusted" in html
    assert html.count("data:image/png;base64,") == 3


def test_transfer_task_a_caches_are_left_out_unless_asked_for(seed_sweep, capsys):
    from dnnexp.results.cli import main

    outputs = seed_sweep.parent
    cache = outputs / "pretrained" / "3f2a9c0d1e4b5a67"  # what transfer.pretrained_task_a writes: no .hydra/
    cache.mkdir(parents=True)
    (cache / "config.yaml").write_text(yaml.safe_dump({"activation": {"name": "relu"}, "dataset": {"classes": [0, 1, 2, 3, 4, 5, 6, 7]}}))
    (cache / "metrics.json").write_text(json.dumps({"status": "completed", "best_val_accuracy": 0.99}))  # would rank first

    def ranked(*args: str) -> list[float]:
        main([*args, "--metrics", "best_val_accuracy", "--format", "json"])
        return [record["best_val_accuracy"] for record in json.loads(capsys.readouterr().out)]

    assert ranked(str(outputs)) == pytest.approx([statistics.mean(SEED_ACCURACIES[a]) for a in ("elu", "selu", "relu")])
    assert ranked(str(outputs), "--include-pretrained")[0] == 0.99
    assert ranked(str(outputs / "pretrained")) == [0.99]  # the cache folder itself: its runs are what was asked for
    assert ranked(str(cache)) == [0.99]
    assert str(cache) not in set(load_runs([outputs]).frame["run"])


def test_drawing_a_sweeps_figures_leaves_matplotlib_as_the_notebook_set_it(seed_sweep):
    """A notebook's inline backend survives: figures are Figure objects, no pyplot, no backend switch."""
    probe = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"  # stands for a notebook's inline backend
        "from rich.console import Console\n"
        "from dnnexp.results.sweep import write_sweep_report\n"
        f"write_sweep_report({str(seed_sweep)!r}, Console(quiet=True))\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["svg", "False", "False"], result.stderr
    assert (seed_sweep / "best_val_accuracy_bars.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- a real sweep through the CLI


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory):
    """`dnnexp -m activation=relu,elu trainer.epochs=1,0`: two tiny runs and two that fail validation."""
    tmp = tmp_path_factory.mktemp("sweep")
    tiny = [o for o in TINY if not o.startswith("trainer.epochs")]
    result = run_in_process("-m", *tiny, "activation=relu,elu", "trainer.epochs=1,0", f"hydra.sweep.dir={tmp / 'sweep'}", cwd=tmp)
    return tmp / "sweep", result


def test_a_real_sweep_ends_in_its_table_and_files(real_sweep):
    sweep, result = real_sweep
    assert result.returncode == 1, result.stderr  # two jobs failed: the sweep still ends in its table
    assert "Traceback" not in result.stderr
    table_text = result.stdout[result.stdout.index("dnnexp sweep:"):]
    for header in ("activation", "trainer.epochs", "val acc", "test acc", "val loss", "epochs", "s/epoch", "params", "status"):
        assert header in table_text
    assert "dataset.limit" not in table_text  # the same in every run: no column
    assert table_text.count("completed") == 2 and table_text.count("failed") >= 2

    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4
    assert list(summary.columns[:7]) == ["dataset.limit", "dataset.val_size", "dataset.test_size", "model.units", "trainer.verbose", "activation", "trainer.epochs"]
    assert {"status", "best_val_accuracy", "test_accuracy", "params_total", "run"} <= set(summary.columns)
    by_run = summary.set_index(summary["run"].map(lambda r: Path(r).name))
    for job in range(4):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert by_run.loc[str(job), "status"] == metrics["status"]
        assert by_run.loc[str(job), "best_val_accuracy"] == pytest.approx(metrics.get("best_val_accuracy", float("nan")), nan_ok=True)
    assert set(summary.loc[summary["trainer.epochs"] == 0, "status"]) == {"failed"}

    report_md = (sweep / "report.md").read_text()
    assert "dnnexp -m" in report_md and "activation=relu,elu trainer.epochs=1,0" in report_md
    assert "| activation | trainer.epochs | val acc |" in report_md  # the optimized metric, of the kept model
    for png in ("accuracy_curves.png", "loss_curves.png", "val_accuracy_bars.png"):
        assert (sweep / png).read_bytes()[:4] == b"\x89PNG"


def test_report_command_rebuilds_the_sweeps_table(real_sweep, capsys):
    from dnnexp.results.cli import main

    sweep, _ = real_sweep
    main([str(sweep), "--format", "markdown"])
    rebuilt = capsys.readouterr().out
    table_in_report_md = (sweep / "report.md").read_text().split("best first.")[1].split("![")[0]
    assert rebuilt.strip() == table_in_report_md.strip()


def test_an_optuna_search_ends_in_the_same_table(tmp_path):
    tiny = [o for o in TINY if not o.startswith("trainer.epochs")]
    sweep = tmp_path / "optuna"
    result = run_in_process("+hparams_search=lr_optuna", *tiny, "trainer.epochs=1", "hydra.sweeper.n_trials=2",
                            f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"completed"}
    assert summary["optimizer.lr"].nunique() == 2  # Optuna's trials: the lr column varies
    assert "optimizer.lr" in result.stdout[result.stdout.index("dnnexp sweep:"):]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(summary["val_accuracy"].max())


# ---------------------------------------------------------------- presets


def test_a_preset_runs_its_sweep_without_dash_m(tmp_path):
    """`dnnexp +experiment=learning_rate`, one rate kept: the preset's own seed list makes two tiny jobs and a table."""
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("trainer.epochs")]
    result = run_in_process("+experiment=learning_rate", *tiny, "trainer.epochs=1", "optimizer.lr=0.1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dnnexp sweep:" in result.stdout
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["trainer.seed"]) == [0, 1] and set(summary["status"]) == {"completed"}


def test_curves_show_each_variants_mean_over_seeds_with_a_band_and_the_legend_beside(seed_sweep):
    from dnnexp.results.figures import CURVES, curves_figure, read_histories

    report = build_report(load_runs([seed_sweep]))
    histories = read_histories(report)
    ax = curves_figure(report, histories, *CURVES["accuracy_curves"]).axes[0]
    assert len(ax.get_lines()) == 3  # one mean line per variant, not one per run (9)
    assert len(ax.collections) == 3  # one band per variant
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([0.5, 0.6])
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 > ax.bbox.x1 - 1  # beside the axes, not over the lines


def test_one_epoch_curves_are_drawn_as_points(seed_sweep):
    from dnnexp.results.figures import CURVES, curves_figure

    report = build_report(load_runs([seed_sweep]))
    one_epoch = [[pd.DataFrame({"epoch": [1], "val_accuracy": [v]}) for v in (0.5, 0.6)] for _ in report.table["runs"]]
    ax = curves_figure(report, one_epoch, *CURVES["accuracy_curves"]).axes[0]
    assert all(line.get_marker() == "o" for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_"))
    assert ax.get_xlim()[0] <= 0.5 and ax.get_xlim()[1] >= 1.5
