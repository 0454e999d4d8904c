"""Transfer learning on the embedded digits: task splits, reuse, freezing, fine-tuning, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, compose_config, run_cli, run_in_process, tiny_config

from dnnexp.config import ConfigError, DatasetConfig, validate
from dnnexp.data import load

TASK_A = "dataset.classes=[0,1,2,3,4,5,6,7]"
TASK_B = ["dataset.classes=[8,9]", "dataset.limit=120"]
LR, LR_FACTOR = 0.05, 0.2


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dense_weights(model, name: str) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_layer(name).get_weights()]


@pytest.fixture(scope="session")
def source_run(tmp_path_factory):
    """Task A (digits 0-7), three hidden blocks with batch norm, trained once: (run folder, source model file hash)."""
    from dnnexp.train import train

    run_dir = tmp_path_factory.mktemp("task_a")
    train(tiny_config(TASK_A, "model.units=[16,16,16]", "normalization=batchnorm_before"), run_dir)
    return run_dir, sha256(run_dir / "model.keras")


@pytest.fixture(scope="session")
def finetune_run(source_run, tmp_path_factory):
    """Task B (8 against 9) on A: 2 epochs frozen, then the top reused block unfrozen for 2 epochs."""
    from dnnexp.train import train

    run_dir = tmp_path_factory.mktemp("task_b")
    cfg = tiny_config(*TASK_B, "transfer=finetune", f"transfer.source={source_run[0]}", "trainer.epochs=4",
                      "transfer.finetune_epochs=2", f"optimizer.lr={LR}", f"transfer.lr_factor={LR_FACTOR}")
    return run_dir, train(cfg, run_dir)


# ----------------------------------------------------------------------------- task splits


def test_task_split_keeps_classes_relabels_and_never_shares_a_sample():
    b = load(DatasetConfig(classes=[8, 9]))
    a = load(DatasetConfig(classes=list(range(8))))
    full = load(DatasetConfig())
    assert b.class_names == ["8", "9"] and b.n_classes == 2
    assert sorted(np.unique(b.y_train)) == [0, 1]
    # The full test split's 8s and 9s, relabelled: the split happens before the class filter.
    keep = np.isin(full.y_test, [8, 9])
    np.testing.assert_array_equal(b.x_test, full.x_test[keep])
    np.testing.assert_array_equal(b.y_test, full.y_test[keep] - 8)
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    assert not rows(a.x_train) & rows(b.x_test) and not rows(a.x_train) & rows(b.x_val)


# ----------------------------------------------------------------------------- the two phases


def test_frozen_layers_unchanged_unfrozen_layer_changed_new_head(source_run, finetune_run):
    from dnnexp.keras_import import keras

    source = keras.models.load_model(source_run[0] / "model.keras")
    model = keras.models.load_model(finetune_run[0] / "model.keras")
    # Blocks 1 and 2 were frozen in both phases; block 3, the top one, only in phase 1.
    # Batch norm stays frozen (its moving statistics from task A too) when its Dense layer is unfrozen.
    for name in ("dense_1", "dense_2", "batchnorm_1", "batchnorm_2", "batchnorm_3"):
        for got, want in zip(dense_weights(model, name), dense_weights(source, name)):
            np.testing.assert_array_equal(got, want)
    changed = [np.abs(g - w).max() for g, w in zip(dense_weights(model, "dense_3"), dense_weights(source, "dense_3"))]
    assert min(changed) > 0
    assert model.get_layer("output").units == 1  # a new binary head, not A's 8-way softmax
    metrics = finetune_run[1]
    assert metrics["reused_layers"] == 3
    assert metrics["params_trainable"] == 16 * 16 + 16 + 1  # dense_3 (no bias before batch norm) and the head


def test_phase_one_leaves_every_reused_weight_as_the_source(source_run, tmp_path):
    from dnnexp.keras_import import keras
    from dnnexp.train import train

    cfg = tiny_config(*TASK_B, "transfer=frozen", f"transfer.source={source_run[0]}", "transfer.new_units=[8]")
    metrics = train(cfg, tmp_path)
    source = keras.models.load_model(source_run[0] / "model.keras")
    model = keras.models.load_model(tmp_path / "model.keras")
    for name in ("dense_1", "dense_2", "dense_3"):
        for got, want in zip(dense_weights(model, name), dense_weights(source, name)):
            np.testing.assert_array_equal(got, want)
    assert model.get_layer("dense_4").units == 8  # the new hidden layer, numbered after the reused ones
    assert metrics["params_trainable"] == 16 * 8 + 8 + 8 + 1
    assert pd.read_csv(tmp_path / "history.csv")["phase"].tolist() == ["frozen", "frozen"]


def test_phase_by_phase_only_the_unfrozen_block_moves_in_phase_two(source_run, tmp_path):
    from dnnexp.resume import TrainingBackup
    from dnnexp.engines.tensorflow import pipeline
    from dnnexp.train import HistoryRecorder, fit_phase
    from dnnexp.transfer import build

    cfg = tiny_config(*TASK_B, "transfer=finetune", f"transfer.source={source_run[0]}", "trainer.epochs=2",
                      "transfer.finetune_epochs=1", "optimizer.lr=0.05")
    data = load(cfg.dataset)
    network = build(cfg, data, source_run[0] / "model.keras")
    model, recorder = network.model, HistoryRecorder(tmp_path)
    val_ds, backup = pipeline(data.x_val, data.y_val, 32), TrainingBackup(tmp_path / "backup.npz", cfg)
    reused = ("dense_1", "dense_2", "dense_3")
    start = {name: dense_weights(model, name) for name in (*reused, "output")}
    fit_phase(cfg, model, network.phases[0], data, val_ds, recorder, [], backup, final=False)
    after_1 = {name: dense_weights(model, name) for name in start}
    fit_phase(cfg, model, network.phases[1], data, val_ds, recorder, [], backup, final=True)
    after_2 = {name: dense_weights(model, name) for name in start}
    moved = lambda a, b: any(np.abs(x - y).max() > 0 for x, y in zip(a, b))  # noqa: E731
    assert [moved(start[n], after_1[n]) for n in (*reused, "output")] == [False, False, False, True]
    assert [moved(after_1[n], after_2[n]) for n in (*reused, "output")] == [False, False, True, True]


def test_history_marks_phases_and_phase_two_rate_is_the_fraction(finetune_run):
    history = pd.read_csv(finetune_run[0] / "history.csv")
    assert history["phase"].tolist() == ["frozen", "frozen", "finetune", "finetune"]
    # The kept weights are the fine-tuning phase's best: the model with the final trainable layout.
    assert finetune_run[1]["best_epoch"] == 3 + int(history["val_loss"][2:].reset_index(drop=True).idxmin())
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(history["learning_rate"], [LR, LR, LR * LR_FACTOR, LR * LR_FACTOR], rtol=1e-6)


def test_all_reused_layers_fine_tuned_at_the_same_rate_as_hml(source_run, tmp_path):
    # HML ch. 11: frozen first, then every reused layer unfrozen and training goes on at the same rate.
    from dnnexp.keras_import import keras
    from dnnexp.train import train

    cfg = tiny_config(*TASK_B, "transfer=finetune", f"transfer.source={source_run[0]}", "trainer.epochs=3",
                      "transfer.finetune_epochs=1", "transfer.unfreeze_top=3", f"optimizer.lr={LR}", "transfer.lr_factor=1.0")
    metrics = train(cfg, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["phase"].tolist() == ["frozen", "frozen", "finetune"]
    np.testing.assert_allclose(history["learning_rate"], [LR, LR, LR], rtol=1e-6)
    source = keras.models.load_model(source_run[0] / "model.keras")
    model = keras.models.load_model(tmp_path / "model.keras")
    for name in ("dense_1", "dense_2", "dense_3"):
        assert np.abs(dense_weights(model, name)[0] - dense_weights(source, name)[0]).max() > 0
    assert metrics["params_trainable"] == 784 * 16 + 2 * 16 * 16 + 16 + 1  # the three reused Dense kernels (no bias before BN) and the head


def test_source_model_file_is_untouched(source_run, finetune_run):
    run_dir, digest = source_run
    assert sha256(run_dir / "model.keras") == digest
    assert finetune_run[1]["transfer_source"] == str(run_dir / "model.keras")


def test_reuse_fewer_layers_keeps_only_the_lower_blocks(source_run):
    from dnnexp.transfer import build

    cfg = tiny_config(*TASK_B, "transfer=finetune", f"transfer.source={source_run[0]}", "transfer.reuse_layers=1",
                      "trainer.epochs=3", "transfer.finetune_epochs=1")
    network = build(cfg, load(cfg.dataset), source_run[0] / "model.keras")
    names = [layer.name for layer in network.model.layers]
    assert "dense_1" in names and "dense_2" not in names and names[-1] == "output"
    frozen, finetune = network.phases
    assert (frozen.name, frozen.epochs, finetune.name, finetune.epochs) == ("frozen", 2, "finetune", 1)
    assert "dense_1" in frozen.frozen and "dense_1" not in finetune.frozen


def test_cnn_source_cut_inside_its_conv_blocks_gets_a_flatten(tmp_path):
    from dnnexp.model import build_model
    from dnnexp.transfer import build

    cnn = build_model(tiny_config("model=cnn", "model.filters=[4,4]", "model.units=8"), (28, 28), 8)
    cnn.save(tmp_path / "cnn.keras")
    cfg = tiny_config(*TASK_B, "transfer=finetune", f"transfer.source={tmp_path / 'cnn.keras'}", "transfer.reuse_layers=1",
                      "trainer.epochs=3", "transfer.finetune_epochs=1")
    data = load(cfg.dataset)
    network = build(cfg, data, tmp_path / "cnn.keras")
    names = [layer.name for layer in network.model.layers]
    assert names[:4] == ["channels", "conv_1", "activation_conv_1", "pool_1"] and "conv_2" not in names
    assert names[-2:] == ["flatten_new", "output"]
    assert "conv_1" not in network.phases[1].frozen  # the top reused block, a conv block here, is fine-tuned
    assert network.model.predict(data.x_test[:2], verbose=0).shape == (2, 1)


def test_diagnostics_and_mc_dropout_run_on_a_transfer_model(source_run, tmp_path):
    from dnnexp.train import train

    cfg = tiny_config(*TASK_B, "transfer=finetune", f"transfer.source={source_run[0]}", "trainer.epochs=2",
                      "transfer.finetune_epochs=1", "transfer.new_units=[8]", "diagnostics=on",
                      "regularization=dropout", "evaluation.mc_samples=3")
    metrics = train(cfg, tmp_path)
    assert metrics["gradient_verdict"] in ("healthy", "vanishing", "exploding") and 0 <= metrics["mc_accuracy"] <= 1
    measured = pd.read_csv(tmp_path / "diagnostics.csv")
    assert sorted(measured["epoch"].unique()) == [0, 1, 2]  # before training once, then after each epoch of both phases


# ----------------------------------------------------------------------------- the task-A cache


def test_pretraining_runs_once_per_config_and_is_reused(tmp_path):
    from rich.console import Console

    from dnnexp.transfer import prepare_source

    calls = []

    def pretrain(cfg, folder):
        calls.append(cfg)
        (folder / "metrics.json").write_text(json.dumps({"status": "completed"}))

    cfg = tiny_config(*TASK_B, "transfer=frozen", "transfer.pretrain_classes=[0,1,2,3,4,5,6,7]",
                      f"transfer.cache_dir={tmp_path}", "transfer.pretrain_epochs=3")
    first = prepare_source(cfg, pretrain, Console(quiet=True))
    again = prepare_source(tiny_config(*TASK_B, "transfer=finetune", "transfer.pretrain_classes=[0,1,2,3,4,5,6,7]",
                                       f"transfer.cache_dir={tmp_path}", "transfer.pretrain_epochs=3",
                                       "trainer.seed=7", "trainer.epochs=6"), pretrain, Console(quiet=True))
    assert len(calls) == 1 and first == again  # B's seed and phases do not change task A
    task_a = calls[0]
    assert task_a.dataset.classes == list(range(8)) and task_a.dataset.limit is None
    assert (task_a.trainer.epochs, task_a.transfer.name) == (3, "none")
    assert first.parent.parent == tmp_path and (first.parent / "config.yaml").is_file()


# ----------------------------------------------------------------------------- input shapes


def test_mismatched_input_is_a_clear_error_or_resized(source_run, tmp_path):
    from formats import write_cifar10

    from dnnexp.transfer import build

    folder = write_cifar10(tmp_path)
    overrides = ["dataset=cifar10", f"dataset.data_dir={folder}", "dataset.val_size=20", "dataset.classes=[0,1]",
                 "transfer=frozen", f"transfer.source={source_run[0]}"]
    cfg = tiny_config(*overrides)
    data = load(cfg.dataset)
    with pytest.raises(ConfigError, match=r"inputs of shape \(28, 28\) but cifar10 has shape \(32, 32, 3\); set transfer.resize=true"):
        build(cfg, data, source_run[0] / "model.keras")
    model = build(tiny_config(*overrides, "transfer.resize=true"), data, source_run[0] / "model.keras").model
    assert model.input_shape == (None, 32, 32, 3)
    grey = model.get_layer("resize_channels")
    np.testing.assert_allclose(np.array(grey.get_weights()[0]).ravel(), [0.299, 0.587, 0.114], rtol=1e-6)
    assert model.predict(data.x_test[:3], verbose=0).shape == (3, 1)


def test_reused_source_keeps_its_own_standardization_after_the_adapters(tmp_path):
    # Task A standardized on its digits; task B (CIFAR-10 images, standardize=true too) is resized to
    # the digits' shape, then standardized with A's statistics, the inputs the reused layers know.
    from formats import write_cifar10

    from dnnexp.keras_import import keras
    from dnnexp.model import build_model
    from dnnexp.transfer import build

    a = load(DatasetConfig(classes=list(range(8)), standardize=True))
    build_model(tiny_config(TASK_A), a.input_shape, a.n_classes, a.standardization).save(tmp_path / "a.keras")
    folder = write_cifar10(tmp_path)
    cfg = tiny_config("dataset=cifar10", f"dataset.data_dir={folder}", "dataset.val_size=20", "dataset.classes=[0,1]",
                      "dataset.standardize=true", "transfer=frozen", f"transfer.source={tmp_path / 'a.keras'}",
                      "transfer.resize=true")
    model = build(cfg, load(cfg.dataset), tmp_path / "a.keras").model
    names = [layer.name for layer in model.layers]
    assert names.count("standardize") == 1
    assert names.index("standardize") > max(i for i, name in enumerate(names) if name.startswith("resize_"))
    source = keras.models.load_model(tmp_path / "a.keras").get_layer("standardize")
    np.testing.assert_array_equal(model.get_layer("standardize").scale, source.scale)
    np.testing.assert_allclose(source.scale, 1 / a.standardization[1], rtol=1e-6)


def test_mobilenet_v2_base_is_frozen_then_its_top_unfrozen():
    from dnnexp.transfer import apply_phase, build

    cfg = tiny_config("transfer=mobilenet_v2", "transfer.weights=null", "transfer.input_size=32",
                      "transfer.finetune_epochs=1", "transfer.unfreeze_top=2")
    data = load(cfg.dataset)
    network = build(cfg, data, None)
    model = network.model
    assert model.input_shape == (None, 28, 28)
    assert model.predict(data.x_test[:2], verbose=0).shape == (2, 10)
    base = next(layer for layer in model.layers if layer.name.startswith("mobilenetv2"))
    frozen, finetune = network.phases
    apply_phase(model, frozen)
    assert [layer.name for layer in model.layers if layer.trainable_weights] == ["output"]
    apply_phase(model, finetune)
    unfrozen = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert [layer.name for layer in unfrozen] == ["block_16_project", "Conv_1"]
    assert not any(layer.trainable for layer in base.layers if type(layer).__name__ == "BatchNormalization")


# ----------------------------------------------------------------------------- bad input


def test_every_transfer_choice_has_a_yaml_and_a_builder():
    from dnnexp.cli import config_dir
    from dnnexp.config import TRANSFERS
    from dnnexp.transfer import BASES

    files = sorted(p.stem for p in (Path(config_dir()) / "transfer").glob("*.yaml"))
    assert files == sorted(TRANSFERS) and sorted(BASES) == sorted(set(TRANSFERS) - {"none"})
    needs = {"frozen": "transfer.pretrain_classes=[0,1]", "finetune": "transfer.pretrain_classes=[0,1]"}
    for name in TRANSFERS:
        cfg = validate(compose_config(f"transfer={name}", *[needs[name]] if name in needs else []))
        assert cfg.transfer.name == name


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["transfer=frozen"], "transfer=frozen needs transfer.source (a .keras file or a dnnexp run folder)"),
        (["transfer=frozen", "transfer.source=/no/such/model.keras"], "transfer.source=/no/such/model.keras does not exist"),
        (["transfer=frozen", "transfer.pretrain_classes=[1]"], "transfer.pretrain_classes must list at least 2 different"),
        (["transfer=finetune", "transfer.pretrain_classes=[1,2]", "transfer.lr_factor=1.5"],
         "transfer.lr_factor must be in (0, 1], got 1.5"),
        (["transfer=finetune", "transfer.pretrain_classes=[1,2]", "trainer.epochs=5"],
         "transfer.finetune_epochs=5 must be less than trainer.epochs=5"),
        (["transfer=mobilenet_v2", "transfer.input_size=64"], "transfer.input_size must be one of 96, 128, 160, 192, 224"),
        (["dataset.classes=[8,8]"], "dataset.classes must list at least 2 different class numbers in [0, 9], got [8, 8]"),
        (["dataset.classes=[3,12]"], "dataset.classes must list at least 2 different class numbers in [0, 9], got [3, 12]"),
    ],
)
def test_bad_transfer_config_is_refused_by_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(*overrides))
    assert message in str(err.value)


def test_reusing_more_blocks_than_the_source_has_is_refused(source_run):
    from dnnexp.transfer import build

    cfg = tiny_config(*TASK_B, "transfer=frozen", f"transfer.source={source_run[0]}", "transfer.reuse_layers=4")
    with pytest.raises(ConfigError, match="transfer.reuse_layers=4 but .* has 3 hidden blocks"):
        build(cfg, load(cfg.dataset), source_run[0] / "model.keras")


def test_corrupt_source_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 this is not a keras archive")
    result = run_cli(*TINY, *TASK_B, "transfer=frozen", f"transfer.source={bad}", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert f"transfer.source: cannot read {bad} as a Keras model" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_source_holding_python_code_is_refused_not_run(tmp_path):
    """Keras' safe mode: a Lambda layer's function is Python bytecode, which load_source never deserializes."""
    import keras

    from dnnexp.transfer import SourceModelError, load_source

    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)])
    model.save(tmp_path / "code.keras")
    with pytest.raises(SourceModelError, match="cannot read .*code.keras as a Keras model .*Lambda"):
        load_source(tmp_path / "code.keras")


# ----------------------------------------------------------------------------- the chained preset


def test_transfer_preset_pretrains_once_then_tables_every_arm(tmp_path):
    from dnnexp.results.runs import load_runs
    from dnnexp.results.stats import build_report

    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    result = run_in_process("+experiment=transfer", "trainer.epochs=3", "transfer.finetune_epochs=1", "transfer.pretrain_epochs=1",
                     "model.units=[16,16]", "trainer.seed=0,1", f"transfer.cache_dir={cache}", f"hydra.sweep.dir={sweep}",
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list(cache.iterdir())) == 1  # task A trained once, reused by the four transfer jobs
    jobs = [(json.loads((job / "metrics.json").read_text()), (job / ".hydra" / "overrides.yaml").read_text())
            for job in sorted(sweep.iterdir()) if job.is_dir()]
    accuracy = {arm: [m["test_accuracy"] for m, o in jobs if f"transfer={arm}" in o] for arm in ("none", "frozen", "finetune")}
    assert all(len(values) == 2 for values in accuracy.values())

    table = build_report(load_runs([sweep])).table.set_index("transfer")
    error = {arm: 1 - np.mean(values) for arm, values in accuracy.items()}
    for arm in accuracy:
        assert table.loc[arm, "n"] == 2
        assert table.loc[arm, "test_accuracy"] == pytest.approx(1 - error[arm], rel=1e-9)
        assert table.loc[arm, "error_rate_reduction"] == pytest.approx((error["none"] - error[arm]) / error["none"], rel=1e-9)
    printed = result.stdout
    assert "error-rate reduction vs none" in printed and "+0%" in printed
    assert f"{table.loc['frozen', 'error_rate_reduction']:+.0%}" in printed
    assert "error-rate reduction vs none" in (sweep / "report.md").read_text()


def test_error_rate_reduction_column_only_for_a_transfer_table():
    from dnnexp.results.stats import with_error_rate_reduction

    arms = pd.DataFrame({"transfer": ["finetune", "none", "frozen"], "test_accuracy": [0.99, 0.96, 0.95]})
    table, metrics = with_error_rate_reduction(arms, ["transfer"], ["test_accuracy"])
    assert metrics == ["test_accuracy", "error_rate_reduction"]
    np.testing.assert_allclose(table["error_rate_reduction"], [(0.04 - 0.01) / 0.04, 0.0, (0.04 - 0.05) / 0.04])
    other = arms.rename(columns={"transfer": "activation"})
    assert with_error_rate_reduction(other, ["activation"], ["test_accuracy"])[1] == ["test_accuracy"]
