"""The learning-rate finder and the schedule plot: what they write, and that the finder leaves the model alone."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, run_in_process, tiny_config
from rich.console import Console

from dnnexp.data import load
from dnnexp.lr_tools import find_lr, lr_find, schedule_rows, suggest
from dnnexp.model import build_model, loss_for
from dnnexp.engines.tensorflow import pipeline


def test_lr_find_does_not_change_the_models_weights():
    cfg = tiny_config("normalization=batchnorm_before", "optimizer.momentum=0.9")
    data = load(cfg.dataset)
    model = build_model(cfg, data.input_shape, data.n_classes)
    before = [w.copy() for w in model.get_weights()]  # kernels, biases and batch-norm statistics
    rows = find_lr(model, pipeline(data.x_train, data.y_train, 32), cfg, loss_for(data.n_classes))
    assert len(rows) > 3  # it did train: the rates moved the weights before they were put back
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_lr_find_trains_the_standardizing_model_a_run_trains(tmp_path):
    # The data stay pixels / 255; with dataset.standardize the finder's model standardizes them, as a run's does.
    from dnnexp.keras_import import keras

    cfg = tiny_config("mode=lr_find", "dataset.standardize=true", "activation=selu")
    lr_find(cfg, tmp_path)
    first_loss = pd.read_csv(tmp_path / "lr_find.csv")["loss"][0]  # step 1: the loss before any update
    data = load(cfg.dataset)
    losses = {}
    for name, standardize in (("standardized", data.standardization), ("raw", None)):
        keras.utils.set_random_seed(cfg.trainer.seed)  # as lr_find seeds its model's weights
        model = build_model(cfg, data.input_shape, data.n_classes, standardize)
        x, y = next(iter(pipeline(data.x_train, data.y_train, cfg.trainer.batch_size, shuffle_seed=cfg.trainer.seed)))
        losses[name] = float(keras.ops.mean(keras.losses.get(loss_for(data.n_classes))(y, model(x))))
    assert first_loss == pytest.approx(losses["standardized"], rel=1e-4)
    assert losses["raw"] != pytest.approx(losses["standardized"], rel=1e-2)


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """(folder, result, what it printed on a 40-column console that is no terminal, as in a pipe)."""
    run_dir = tmp_path_factory.mktemp("lr_find")
    cfg = tiny_config("mode=lr_find", "lr_find.min_lr=1e-4", "lr_find.max_lr=1e4", "trainer.batch_size=8")
    console = Console(file=io.StringIO(), width=40)
    return run_dir, lr_find(cfg, run_dir, console), console.file.getvalue()


def test_lr_find_prints_its_result_on_one_line_with_whole_paths(found):
    run_dir, result, printed = found
    assert printed.endswith(f"({result['lr_find_steps']} steps) -> {run_dir / 'lr_find.csv'}, {run_dir / 'lr_find.png'}\n")
    assert len(printed.splitlines()) == 1


def test_lr_find_grows_the_rate_exponentially_per_step(found):
    run_dir, _, _ = found
    table = pd.read_csv(run_dir / "lr_find.csv")
    assert list(table.columns) == ["step", "learning_rate", "loss", "smoothed_loss"]
    steps = 300 // 8 + 1  # one epoch of 300 samples in batches of 8
    expected = np.geomspace(1e-4, 1e4, steps)[: len(table)]
    np.testing.assert_allclose(table["learning_rate"], expected, rtol=1e-9)
    assert table["step"].tolist() == list(range(1, len(table) + 1))


def test_lr_find_stops_once_the_loss_blows_up(found):
    run_dir, _, _ = found
    table = pd.read_csv(run_dir / "lr_find.csv")
    # SGD at rates up to 1e4 diverges: the finder stops before the end of the epoch, at a loss
    # above 4 times the lowest smoothed loss (or a non-finite one).
    assert len(table) < 300 // 8 + 1
    last = table["smoothed_loss"].iloc[-1]
    assert not np.isfinite(table["loss"].iloc[-1]) or last > 4 * table["smoothed_loss"].iloc[:-1].min()


def test_lr_find_suggests_a_tenth_of_the_rate_at_the_lowest_loss(found):
    run_dir, result, _ = found
    table = pd.read_csv(run_dir / "lr_find.csv")
    lowest = table.loc[table["smoothed_loss"].idxmin(), "learning_rate"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["mode"] == "lr_find" and saved["min_loss_lr"] == pytest.approx(lowest)
    assert saved["suggested_lr"] == pytest.approx(lowest / 10) == pytest.approx(result["suggested_lr"])
    assert (run_dir / "lr_find.png").read_bytes()[:4] == b"\x89PNG"


def test_suggestion_skips_non_finite_losses():
    rows = [{"learning_rate": 0.1, "smoothed_loss": 2.0}, {"learning_rate": 1.0, "smoothed_loss": float("nan")},
            {"learning_rate": 0.5, "smoothed_loss": 1.0}]
    assert suggest(rows) == {"min_loss_lr": 0.5, "suggested_lr": 0.05}


def test_schedule_rows_cover_the_planned_steps():
    # 300 samples / batch 32 = 10 steps per epoch, 2 epochs; exponential: 0.1 * 0.1^(t/5).
    cfg = tiny_config("scheduler=exponential", "scheduler.s=5", "optimizer.lr=0.1")
    rows = schedule_rows(cfg, n_train=300)
    assert [r["step"] for r in rows] == list(range(20))
    assert rows[10]["epoch"] == 1.0
    np.testing.assert_allclose([r["learning_rate"] for r in rows], 0.1 * 0.1 ** (np.arange(20) / 5), rtol=1e-5)


def test_schedule_plot_of_a_per_epoch_schedule_steps_between_epochs():
    # 10 steps per epoch, 2 epochs: epoch 0 at lr0, epoch 1 at lr0 * 0.1^(1/2).
    cfg = tiny_config("scheduler=exponential", "scheduler.unit=epoch", "scheduler.s=2", "optimizer.lr=0.1")
    rates = [r["learning_rate"] for r in schedule_rows(cfg, n_train=300)]
    np.testing.assert_allclose(rates, [0.1] * 10 + [0.1 * 0.1 ** 0.5] * 10, rtol=1e-5)


def test_cli_plot_schedule_writes_csv_and_png_without_training(tmp_path):
    run_dir = tmp_path / "run"
    result = run_in_process(*TINY, "trainer.verbose=true", "mode=plot_schedule", "scheduler=one_cycle", "optimizer.lr=0.2",
                            f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(run_dir / "schedule.csv")
    assert len(table) == 20 and table["learning_rate"].max() == pytest.approx(0.2, rel=1e-3)
    assert (run_dir / "schedule.png").exists() and not (run_dir / "model.keras").exists()
    # One line, whatever the width of the pipe: no path cut mid-word.
    assert result.stdout.startswith("one_cycle schedule over 20 steps")
    assert result.stdout.endswith(f" -> {run_dir / 'schedule.csv'}, {run_dir / 'schedule.png'}\n")
    assert len(result.stdout.splitlines()) == 1
