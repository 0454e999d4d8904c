"""Gradient-flow diagnostics show the lecture's physics, eq. (8), and write what a user reads."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, sweep_params, tiny_config

from dnnexp.keras_import import keras
from dnnexp.config import validate
from dnnexp.data import load
from dnnexp.diagnostics import gradient_summary, measure
from dnnexp.model import build_model, loss_for
from dnnexp.train import train

DEEP = ("model.hidden_layers=20", "model.units=100")


def measure_untrained(*overrides: str) -> dict[str, dict[str, float]]:
    """One forward and backward pass of a freshly initialized net on 256 training samples."""
    cfg = tiny_config(*overrides)
    keras.utils.set_random_seed(0)
    data = load(cfg.dataset)
    model = build_model(cfg, data.input_shape, data.n_classes, data.standardization)
    return measure(model, data.x_train[:256], data.y_train[:256], loss_for(data.n_classes))


def norms(measured: dict) -> list[float]:
    return [m["grad_norm"] for m in measured.values()]


def test_deep_sigmoid_with_glorot_vanishes():
    measured = measure_untrained(*DEEP, "activation=sigmoid", "initializer=glorot_uniform")
    grads = norms(measured)
    assert len(grads) == 20
    # Sigmoid' <= 0.25: the sensitivities shrink geometrically down the net, by many orders of magnitude.
    assert grads[0] / grads[-1] < 1e-6
    assert grads[0] < grads[5] < grads[10] < grads[15] < grads[-1]
    assert gradient_summary(measured, tiny_config().diagnostics)["gradient_verdict"] == "vanishing"


def test_deep_relu_with_he_keeps_gradients_flowing():
    measured = measure_untrained(*DEEP, "activation=relu", "initializer=he_normal")
    grads = norms(measured)
    assert 0.1 < grads[0] / grads[-1] < 10
    assert max(grads) / min(grads) < 20  # no layer's gradient collapses
    assert gradient_summary(measured, tiny_config().diagnostics)["gradient_verdict"] == "healthy"


def test_selu_with_lecun_and_standardized_inputs_self_normalizes():
    measured = measure_untrained(*DEEP, "activation=selu", "initializer=lecun_normal", "dataset.standardize=true")
    means = [m["activation_mean"] for m in measured.values()]
    stds = [m["activation_std"] for m in measured.values()]
    assert max(abs(m) for m in means) < 0.15
    assert all(0.75 < s < 1.25 for s in stds)
    assert abs(stds[-1] - 1) < 0.15  # still N(0, 1)-like at layer 20


def test_same_selu_net_on_raw_pixels_does_not_self_normalize():
    # The contrast that shows the standardization matters: raw pixels in [0, 1] are not N(0, 1).
    measured = measure_untrained(*DEEP, "activation=selu", "initializer=lecun_normal")
    assert abs(measured["dense_1"]["activation_std"] - 1) > 0.3


def test_vanishing_preset_separates_the_nets_that_vanish():
    """Every cell of +experiment=vanishing_gradients, measured at initialization as its runs do."""
    preset = compose_config("+experiment=vanishing_gradients")
    sweep = {k: v for k, v in sweep_params("vanishing_gradients").items() if k != "trainer.seed"}  # seeds: same verdicts
    verdicts = {}
    for values in itertools.product(*sweep.values()):
        overrides = [f"{k}={v}" for k, v in zip(sweep, values)]
        cfg = validate(compose_config("+experiment=vanishing_gradients", "dataset.limit=300", *overrides))
        keras.utils.set_random_seed(0)
        data = load(cfg.dataset)
        model = build_model(cfg, data.input_shape, data.n_classes, data.standardization)
        measured = measure(model, data.x_train[:256], data.y_train[:256], loss_for(data.n_classes))
        verdicts[values] = gradient_summary(measured, cfg.diagnostics)["gradient_verdict"]
    assert preset.diagnostics.enabled and preset.model.hidden_layers == 20
    assert verdicts[("sigmoid", "none")] == "vanishing"
    assert {verdicts[("relu", "none")], verdicts[("selu", "none")], verdicts[("sigmoid", "batchnorm_before")]} == {"healthy"}


def test_measuring_leaves_batchnorm_statistics_alone():
    cfg = tiny_config("normalization=batchnorm_before")
    data = load(cfg.dataset)
    model = build_model(cfg, data.input_shape, data.n_classes)
    before = [w.copy() for w in model.get_weights()]
    measure(model, data.x_train[:64], data.y_train[:64], loss_for(data.n_classes))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def diagnosed_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("diagnosed")
    metrics = train(tiny_config("diagnostics=on", "model.hidden_layers=3", "optimizer.lr=0.05"), run_dir)
    return run_dir, metrics


def test_diagnostics_csv_has_every_layer_metric_and_epoch(diagnosed_run):
    run_dir, _ = diagnosed_run
    table = pd.read_csv(run_dir / "diagnostics.csv")
    assert list(table.columns) == ["epoch", "layer", "metric", "value"]
    assert sorted(table["epoch"].unique()) == [0, 1, 2]
    assert list(dict.fromkeys(table["layer"])) == ["dense_1", "dense_2", "dense_3"]
    per_epoch = table.groupby("epoch")["metric"].agg(set)
    assert per_epoch[0] == {"grad_norm", "activation_mean", "activation_std"}  # no update before training
    assert per_epoch[2] == {"grad_norm", "activation_mean", "activation_std", "update_ratio"}
    updates = table[table["metric"] == "update_ratio"]["value"]
    assert (updates > 0).all() and (updates < 1).all()


def test_update_ratio_is_the_kernels_relative_change(tmp_path):
    # One epoch: the ratio is ||W_after - W_before|| / ||W_before||, checked against the saved model.
    cfg = tiny_config("diagnostics=on", "trainer.epochs=1", "model.hidden_layers=1")
    keras.utils.set_random_seed(cfg.trainer.seed)
    data = load(cfg.dataset)
    initial = build_model(cfg, data.input_shape, data.n_classes).get_layer("dense_1").kernel.numpy()
    train(cfg, tmp_path)
    trained = keras.models.load_model(tmp_path / "model.keras").get_layer("dense_1").kernel.numpy()
    table = pd.read_csv(tmp_path / "diagnostics.csv")
    ratio = table.query("metric == 'update_ratio'")["value"].item()
    assert ratio == pytest.approx(np.linalg.norm(trained - initial) / np.linalg.norm(initial), rel=1e-4)


def test_metrics_json_has_grad_ratio_and_verdict_and_png_exists(diagnosed_run):
    run_dir, metrics = diagnosed_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    table = pd.read_csv(run_dir / "diagnostics.csv").query("epoch == 0 and metric == 'grad_norm'")
    assert saved["grad_ratio"] == pytest.approx(table["value"].iloc[0] / table["value"].iloc[-1])
    assert saved["gradient_verdict"] == "healthy"
    assert (run_dir / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("ratio, verdict", [(0.05, "vanishing"), (0.5, "healthy"), (9.9, "healthy"), (11.0, "exploding")])
def test_verdict_thresholds(ratio, verdict):
    measured = {"dense_1": {"grad_norm": ratio}, "dense_2": {"grad_norm": 1.0}}
    assert gradient_summary(measured, tiny_config("diagnostics=on").diagnostics)["gradient_verdict"] == verdict


def test_diagnostics_off_writes_nothing_extra(trained_run):
    run_dir, metrics = trained_run
    assert not (run_dir / "diagnostics.csv").exists()
    assert "grad_ratio" not in metrics


def test_comparison_table_shows_grad_ratio_and_verdict_per_variant(tmp_path):
    from test_report import write_sweep

    from dnnexp.results.render import render
    from dnnexp.results.runs import load_runs
    from dnnexp.results.stats import build_report

    jobs = [
        ({"activation": act, "trainer.seed": seed}, {"best_val_accuracy": acc, "grad_ratio": ratio, "gradient_verdict": verdict})
        for act, acc, ratio, verdict in (("sigmoid", 0.1, 3e-12, "vanishing"), ("relu", 0.86, 0.6, "healthy"))
        for seed in (0, 1)
    ]
    report = build_report(load_runs([write_sweep(tmp_path / "sweep", jobs)]))
    assert {"grad_ratio", "gradient_verdict"} <= set(report.metrics)
    rows = report.table.set_index("activation")
    assert rows.loc["sigmoid", "gradient_verdict"] == "vanishing" and rows.loc["relu", "gradient_verdict"] == "healthy"
    markdown = render(report, "markdown")
    assert "grad ratio" in markdown and "3e-12" in markdown and "vanishing" in markdown


def test_run_summary_shows_gradient_rows_only_when_measured(diagnosed_run, trained_run):
    from rich.console import Console

    from dnnexp.results.render import print_run_summary

    def summary(run) -> str:
        console = Console(record=True, width=100)
        print_run_summary(run[1], run[0], console)
        return console.export_text()

    measured = summary(diagnosed_run)
    assert "gradient flow" in measured and "healthy" in measured
    assert f"{diagnosed_run[1]['grad_ratio']:.3g}" in measured
    assert "gradient flow" not in summary(trained_run)
