"""One run, trained for real on tiny data: its files, its determinism, and its callbacks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from dnnexp.files import HISTORY_COLUMNS
from dnnexp.train import train

METRIC_KEYS = {
    "status", "best_val_accuracy", "best_epoch", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "epochs_run",
    "stopped_early", "train_seconds", "params_total", "params_trainable", "params_non_trainable",
}


def test_run_writes_history_metrics_and_model(trained_run):
    run_dir, metrics = trained_run
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= saved.keys()
    assert saved["status"] == "completed" and saved["epochs_run"] == 2 and not saved["stopped_early"]
    assert saved["best_val_accuracy"] == pytest.approx(history["val_accuracy"].max())
    # 784 -> 16 -> 16 -> 10 with biases
    assert saved["params_total"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 == saved["params_trainable"]
    assert 0.1 < saved["test_accuracy"] <= 1.0


def test_saved_model_reproduces_test_accuracy(trained_run):
    from dnnexp.keras_import import keras
    from dnnexp.data import load

    run_dir, metrics = trained_run
    model = keras.models.load_model(run_dir / "model.keras")
    data = load(tiny_config().dataset)
    predicted = model.predict(data.x_test, verbose=0).argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_saved_model_of_a_standardized_run_takes_pixels_in_0_1(tmp_path):
    import dataclasses

    from dnnexp.keras_import import keras
    from dnnexp.data import load

    cfg = tiny_config("dataset.standardize=true")
    metrics = train(cfg, tmp_path)
    model = keras.models.load_model(tmp_path / "model.keras")  # alone: no dnnexp, no statistics beside it
    pixels = load(dataclasses.replace(cfg.dataset, standardize=False))  # pixels / 255, as a user has them
    predicted = model.predict(pixels.x_test, verbose=0).argmax(axis=1)
    assert np.mean(predicted == pixels.y_test) == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert metrics["params_total"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10  # the network's, nothing added


def test_same_seed_gives_identical_metrics(trained_run, tmp_path):
    _, first = trained_run
    again = train(tiny_config(), tmp_path)
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_val_accuracy"):
        assert again[key] == first[key]


def test_history_learning_rate_follows_schedule_at_epoch_end_step(tmp_path):
    # 300 samples / batch 32 = 10 steps per epoch
    cfg = tiny_config("scheduler=exponential", "scheduler.s=25", "optimizer.lr=0.1", "trainer.epochs=3")
    train(cfg, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    expected = [0.1 * 0.1 ** (10 * e / 25) for e in (1, 2, 3)]
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5)


def test_performance_scheduling_cuts_rate_when_val_loss_stalls(tmp_path):
    # A rate so small the validation loss cannot improve by ReduceLROnPlateau's min_delta (1e-4).
    cfg = tiny_config("scheduler=performance", "scheduler.patience=1", "scheduler.factor=0.5",
                      "optimizer.lr=1e-9", "trainer.epochs=4")
    train(cfg, tmp_path)
    lr = pd.read_csv(tmp_path / "history.csv")["learning_rate"].tolist()
    np.testing.assert_allclose(lr, [1e-9, 1e-9, 5e-10, 2.5e-10], rtol=1e-5)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_early_stopping_stops_and_says_so(tmp_path, keep):
    cfg = tiny_config("regularization=early_stopping", "regularization.monitor=val_accuracy",
                      "regularization.patience=1", "optimizer.lr=1e-12", "trainer.epochs=10", f"trainer.keep={keep}")
    metrics = train(cfg, tmp_path)
    assert metrics["stopped_early"] is True
    assert metrics["epochs_run"] == 2
    # Nothing improves after epoch 1: it is the best by val_accuracy, and the epoch early stopping restores.
    assert metrics["best_epoch"] == 1
    assert len(pd.read_csv(tmp_path / "history.csv")) == 2


# SGD at 0.5 on the tiny split: the validation loss is lowest after epoch 2 of 4 (then it bounces).
BOUNCING = ("optimizer.lr=0.5", "trainer.epochs=4")


def evaluated(run_dir, cfg) -> dict[str, float]:
    """Accuracy and loss of the saved model.keras, loaded alone, on the run's validation and test splits."""
    from dnnexp.keras_import import keras
    from dnnexp.data import load

    model = keras.models.load_model(run_dir / "model.keras")
    data = load(cfg.dataset)
    scores = {}
    for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
        loss, accuracy = model.evaluate(x, y, verbose=0)
        scores |= {f"{split}_loss": loss, f"{split}_accuracy": accuracy}
    return scores


@pytest.mark.parametrize("keep", ["best", "last"])
def test_saved_model_and_its_numbers_are_the_kept_epochs(tmp_path, keep):
    cfg = tiny_config(*BOUNCING, f"trainer.keep={keep}")
    metrics = train(cfg, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 4  # history.csv keeps every epoch
    kept = int(history["val_loss"].idxmin()) + 1 if keep == "best" else 4
    assert kept < 4 or keep == "last"  # the case shows something: the best epoch is not the last
    assert metrics["best_epoch"] == kept
    assert metrics["val_loss"] == pytest.approx(history["val_loss"][kept - 1], rel=1e-5)
    assert metrics["best_val_accuracy"] == pytest.approx(history["val_accuracy"].max())
    for key, value in evaluated(tmp_path, cfg).items():
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_kept_epoch_follows_the_monitor_and_skips_non_finite_values():
    from dnnexp.keras_import import keras
    from dnnexp.train import BestEpoch

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for monitor, values, best in (("val_loss", [1.0, np.nan, 0.8, 0.9, np.inf], 2), ("val_accuracy", [np.nan, 0.7, 0.6, 0.7], 1)):
        keeper = BestEpoch(monitor)
        keeper.set_model(model)
        for epoch, value in enumerate(values):
            model.layers[0].bias.assign([float(epoch)])
            keeper.on_epoch_end(epoch, {monitor: value})
        assert keeper.restore() == best + 1  # 1-based, as in history.csv
        assert float(model.layers[0].bias.numpy()[0]) == best  # those weights, put back


def test_diverged_run_keeps_its_last_finite_epoch(tmp_path):
    # 10 steps per epoch: epoch 1 at 0.01, then a rate that makes the loss infinite in epoch 2.
    cfg = tiny_config("activation=elu", "scheduler=piecewise", "scheduler.boundaries=[10]", "scheduler.values=[0.01,1e4]",
                      "trainer.epochs=3")
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "diverged" and metrics["diverged_epoch"] == 2
    assert metrics["best_epoch"] == 1 and np.isfinite(metrics["val_loss"])
    for key, value in evaluated(tmp_path, cfg).items():
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("keep", [[], ["trainer.monitor=val_accuracy"], ["trainer.keep=last"]], ids=["best", "best by val acc", "last"])
def test_a_run_that_diverges_in_its_first_epoch_keeps_no_model_and_shows_no_score(tmp_path, keep):
    """lr 1e3 with ELU: the loss is NaN in epoch 1. A NaN net predicts one class for every image, which
    "scores" chance (0.1): there is no epoch to keep, so no model.keras and no score, and the panel says why."""
    import io

    from rich.console import Console

    from dnnexp.results.render import print_job_line, print_run_summary

    metrics = train(tiny_config("optimizer.lr=1e3", "activation=elu", "trainer.epochs=3", *keep), tmp_path)
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1]
    assert not (tmp_path / "model.keras").exists() and not (tmp_path / "backup.npz").exists()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "diverged" and saved["diverged_epoch"] == 1 and saved["best_epoch"] is None
    scores = ["best_val_accuracy", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_accuracy", "train_loss"]
    assert {k: saved[k] for k in scores} == dict.fromkeys(scores)
    for shown in (metrics, saved):  # the panel the run ends with (NaN scores), and one drawn from metrics.json (null)
        console = Console(file=io.StringIO(), width=100)
        print_run_summary(shown, tmp_path, console)
        rows = dict(tuple(cell.strip() for cell in line.split("│")[1:3]) for line in console.file.getvalue().splitlines()
                    if line.count("│") == 3)
        assert rows["status"] == "diverged in epoch 1: no model kept"
        assert rows["val accuracy"] == rows["test accuracy"] == rows["best val accuracy"] == rows["kept epoch"] == "-"
    console = Console(file=io.StringIO(), width=40)
    print_job_line(2, ["optimizer.lr=1e3"], metrics, "val_accuracy", 1.5, console)  # a sweep job's line
    assert console.file.getvalue() == "#2 optimizer.lr=1e3  val_accuracy -  diverged in epoch 1: no model kept  1.5 s\n"


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mc")
    cfg = tiny_config("regularization=dropout", "regularization.rate=0.3", "evaluation.mc_samples=10", "optimizer.lr=0.1")
    return run_dir, train(cfg, run_dir)


def test_mc_dropout_reports_accuracy_and_entropy_next_to_test_accuracy(mc_run):
    run_dir, metrics = mc_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["mc_samples"] == 10
    assert 0.1 < saved["mc_accuracy"] <= 1.0
    assert abs(saved["mc_accuracy"] - saved["test_accuracy"]) < 0.15  # the same model, averaged
    assert 0.0 < saved["mc_entropy"] < np.log(10)


def test_mc_dropout_averages_passes_with_dropout_on_and_batchnorm_off(mc_run):
    from dnnexp.keras_import import keras
    from dnnexp.data import load
    from dnnexp.train import mc_dropout

    run_dir, _ = mc_run
    model = keras.models.load_model(run_dir / "model.keras")
    data = load(tiny_config().dataset)
    keras.utils.set_random_seed(1)
    one = mc_dropout(model, data.x_test, data.y_test, samples=1, batch_size=32)
    keras.utils.set_random_seed(2)
    other = mc_dropout(model, data.x_test, data.y_test, samples=1, batch_size=32)
    assert one["entropy"] != other["entropy"]  # dropout is on: two single passes differ
    # With the dropout layers off, the same code gives the plain prediction's accuracy and entropy.
    plain = model.predict(data.x_test, verbose=0)
    for layer in model.layers:
        if "dropout" in layer.name:
            layer.rate = 0.0
    again = mc_dropout(model, data.x_test, data.y_test, samples=3, batch_size=32)
    assert again["accuracy"] == pytest.approx(np.mean(plain.argmax(axis=1) == data.y_test))
    entropy = -np.sum(plain * np.log(np.clip(plain, 1e-12, 1)), axis=1).mean()
    assert again["entropy"] == pytest.approx(entropy, rel=1e-5)
    np.testing.assert_allclose(again["class_std"], 0, atol=1e-6)  # identical passes do not spread


def test_mc_dropout_class_std_is_hmls_std_over_the_passes(monkeypatch):
    from dnnexp.train import mc_dropout

    rng = np.random.default_rng(0)
    passes = rng.dirichlet(np.ones(3), size=(4, 5)).astype("float32")  # 4 passes over 5 images, 3 classes
    calls = iter(passes)
    monkeypatch.setattr("dnnexp.train.forward", lambda model, x, training_for: (next(calls), {}))
    y = np.array([0, 1, 2, 0, 1])
    got = mc_dropout(None, np.zeros((5, 2)), y, samples=4, batch_size=32)
    y_proba = passes.mean(axis=0)
    assert got["accuracy"] == pytest.approx(np.mean(y_proba.argmax(axis=1) == y))
    np.testing.assert_allclose(got["class_std"], passes.std(axis=0).mean(axis=0), rtol=1e-5)  # HML: y_probas.std(axis=0)


def test_mc_dropout_on_both_splits_and_training_accuracy_with_dropout_off(mc_run):
    from dnnexp.keras_import import keras
    from dnnexp.data import load

    run_dir, metrics = mc_run
    for split in ("", "val_"):
        assert 0.1 < metrics[f"mc_{split}accuracy"] <= 1.0 and 0.0 < metrics[f"mc_{split}entropy"] < np.log(10)
    per_class = pd.read_csv(run_dir / "mc_dropout.csv", dtype={"class": str})
    assert per_class["class"].tolist() == [str(d) for d in range(10)]
    assert per_class["val_std"].mean() == pytest.approx(metrics["mc_val_std"], rel=1e-5)
    assert per_class["test_std"].mean() == pytest.approx(metrics["mc_std"], rel=1e-5) and metrics["mc_std"] > 0
    # The kept model's training accuracy, dropout off, as HML's model.evaluate(X_train, y_train).
    model = keras.models.load_model(run_dir / "model.keras")
    data = load(tiny_config().dataset)
    predicted = model.predict(data.x_train, verbose=0).argmax(axis=1)
    assert metrics["train_accuracy"] == pytest.approx(np.mean(predicted == data.y_train), abs=1e-6)
    history = pd.read_csv(run_dir / "history.csv")
    assert metrics["train_accuracy"] != history["accuracy"].iloc[-1]  # history's is with dropout on, during the epoch


def test_cnn_trains_end_to_end(tmp_path):
    cfg = tiny_config("model=cnn", "model.filters=[8]", "model.units=16", "optimizer=adam", "optimizer.lr=0.003", "diagnostics=on",
                      "dataset.standardize=true")
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "completed" and metrics["test_accuracy"] > 0.3  # learns: chance is 0.1
    for key, value in evaluated(tmp_path, cfg).items():  # standardized inside, before the channel axis is added
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6)
    layers = pd.read_csv(tmp_path / "diagnostics.csv")["layer"].unique().tolist()
    assert layers == ["conv_1", "dense_1"]


def test_one_cycle_run_follows_its_schedule_over_the_whole_run(tmp_path):
    # 300 samples / batch 32 = 10 steps per epoch, 2 epochs: T = 20, cycle 18, peak at step 9.
    cfg = tiny_config("scheduler=one_cycle", "optimizer.lr=0.1")
    train(cfg, tmp_path)
    lr = pd.read_csv(tmp_path / "history.csv")["learning_rate"].tolist()
    np.testing.assert_allclose(lr, [0.1 - 0.09 * 1 / 9, 1e-4], rtol=1e-4)


def test_input_batchnorm_run_from_the_command_line_trains_and_counts_its_parameters(tmp_path):
    from conftest import TINY, run_in_process

    run_dir = tmp_path / "run"
    result = run_in_process(*TINY, "trainer.epochs=1", "normalization.input=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 784 -> 16 -> 16 -> 10 with biases, plus the input's 4 x 784 batch-norm weights (half of them moving statistics)
    assert metrics["params_total"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 + 4 * 784
    assert metrics["params_non_trainable"] == 2 * 784


def test_prelu_he_avg_init_and_adamax_train_together(tmp_path):
    cfg = tiny_config("activation=prelu", "initializer=variance_scaling", "initializer.scale=2", "initializer.mode=fan_avg",
                      "initializer.distribution=uniform", "optimizer=adamax", "trainer.epochs=1")
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["params_total"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 + 2 * 16  # a slope per hidden unit


def test_per_epoch_schedule_changes_the_rate_only_between_epochs(tmp_path, monkeypatch):
    from dnnexp.keras_import import keras

    class RateAtEveryCall(keras.callbacks.Callback):
        """The optimizer's step count and rate after each call into TensorFlow (3 steps, or what is left of the epoch)."""

        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_batch_end(self, batch, logs=None):
            opt = self.model.optimizer
            self.seen.append((int(opt.iterations), float(opt.learning_rate)))

    # 300 samples / batch 32 = 10 steps per epoch, 3 steps per call: calls never line up with epochs.
    cfg = tiny_config("scheduler=exponential", "scheduler.unit=epoch", "scheduler.s=2", "optimizer.lr=0.1",
                      "trainer.epochs=4", "trainer.steps_per_execution=3")
    recorder = RateAtEveryCall()
    monkeypatch.setattr("dnnexp.loggers.callbacks", lambda cfg, run_dir: [recorder])  # a watcher of the whole run
    train(cfg, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    # The rate after epoch e's last step, the one epoch e + 1 trains at: 0.1 * 0.1^(e / 2).
    np.testing.assert_allclose(history["learning_rate"], [0.1 * 0.1 ** (e / 2) for e in (1, 2, 3, 4)], rtol=1e-5)
    steps = [s for s, _ in recorder.seen]
    assert any(s % 10 not in (0, 9) for s in steps)  # calls end inside epochs
    for step, rate in recorder.seen:  # after `step` steps, `step // 10` epochs are finished
        assert rate == pytest.approx(0.1 * 0.1 ** ((step // 10) / 2), rel=1e-5)
    saved = keras.models.load_model(tmp_path / "model.keras").optimizer  # the schedule saves with the model
    assert float(saved.learning_rate) == pytest.approx(0.1 * 0.1 ** (4 / 2), rel=1e-5)


def test_ordered_split_run_validates_on_the_last_images_of_the_file(tmp_path):
    from formats import write_fashion_mnist

    from dnnexp.keras_import import keras
    from dnnexp.data import load

    folder = write_fashion_mnist(tmp_path / "fm", n_train=150, n_test=30)
    cfg = tiny_config("dataset=fashion_mnist", f"dataset.data_dir={folder}", "dataset.val_size=50", "dataset.limit=null",
                      "dataset.split=ordered", "trainer.epochs=1")
    metrics = train(cfg, tmp_path / "run")
    data = load(cfg.dataset)
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    probs = model.predict(data.x_val, verbose=0)
    assert len(data.x_val) == 50
    # the run's val_loss is the cross-entropy on exactly these 50 images
    assert -np.mean(np.log(probs[np.arange(50), data.y_val])) == pytest.approx(metrics["val_loss"], rel=1e-4)


def test_penalized_output_run_reports_the_penalty_in_its_loss(tmp_path):
    from dnnexp.keras_import import keras
    from dnnexp.data import load

    cfg = tiny_config("regularization=l2", "regularization.l2=0.05", "regularization.penalize_output=true", "trainer.epochs=1")
    metrics = train(cfg, tmp_path)
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.get_layer("output").kernel_regularizer.get_config() == {"l2": 0.05}
    data = load(cfg.dataset)
    probs = model.predict(data.x_val, verbose=0)
    cross_entropy = -np.mean(np.log(probs[np.arange(len(probs)), data.y_val]))
    penalty = sum(0.05 * np.square(model.get_layer(n).kernel.numpy()).sum() for n in ("dense_1", "dense_2", "output"))
    assert metrics["val_loss"] == pytest.approx(cross_entropy + penalty, rel=1e-4)


def test_raw_pixel_run_saves_a_model_that_takes_the_usual_input(tmp_path):
    from dnnexp.keras_import import keras
    from dnnexp.data import load

    cfg = tiny_config("dataset.raw_pixels=true", "optimizer.lr=1e-4", "trainer.epochs=1")
    metrics = train(cfg, tmp_path)
    model = keras.models.load_model(tmp_path / "model.keras")
    data = load(cfg.dataset)
    assert 0 <= data.x_test.min() and data.x_test.max() <= 1  # the data stays in [0, 1]; the model scales it
    predicted = model.predict(data.x_test, verbose=0).argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics["test_accuracy"], abs=1e-6)
