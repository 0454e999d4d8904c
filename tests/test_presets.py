"""The presets that reproduce the lecture's notebooks and HML ch. 11: their models, and a run of each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_driver import IN_PROCESS, run_case
from conftest import compose_config, sweep_params
from formats import write_cifar10, write_fashion_mnist

from dnnexp.config import validate

# (the overrides of a reference's model, input shape, classes, parameters, non-trainable), as the
# reference prints them or as worked out by hand.
MODELS = [
    ("+experiment=lecture_notebook +reference=lecture_power", (28, 28), 10, 42_310, 0),
    ("+experiment=lecture_notebook +reference=lecture_batchnorm", (28, 28), 10, 45_846, 1_768),
    ("+experiment=lecture_notebook +reference=lecture_case_study", (28, 28), 10, 45_846, 1_768),
    ("+experiment=lecture_notebook +reference=lecture_dropout", (28, 28), 10, 42_310, 0),
    ("+experiment=hml_selu_100 activation=selu", (28, 28), 10, 1_079_410, 0),
    ("+experiment=hml_transfer transfer=none", (28, 28), 2, 98_801, 0),
    ("+experiment=hml_cifar10 +reference=cifar_swish", (32, 32, 3), 10, 500_210, 0),
    ("+experiment=hml_cifar10 +reference=cifar_batchnorm", (32, 32, 3), 10, 506_210, 4_000),  # HML3 keeps 2,000 redundant biases
    ("model.units=[300,100] normalization=batchnorm_after normalization.input=true", (28, 28), 10, 271_346, 2_368),
    ("model.units=[300,100] normalization=batchnorm_before", (28, 28), 10, 267_810, 800),
    ("model.units=[100,100] regularization=dropout regularization.rate=0.2", (28, 28), 10, 89_610, 0),
]


@pytest.mark.parametrize("overrides, shape, classes, params, non_trainable", MODELS)
def test_reference_model_has_the_references_parameter_count(overrides, shape, classes, params, non_trainable):
    from dnnexp.model import build_model

    model = build_model(validate(compose_config(*overrides.split())), shape, classes)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), model.count_params() - trainable) == (params, non_trainable)


def test_lecture_notebook_has_the_notebooks_settings_in_every_model():
    grid = sweep_params("lecture_notebook")
    assert len(grid["+reference"]) == 7
    for reference in grid["+reference"]:
        cfg = validate(compose_config("+experiment=lecture_notebook", f"+reference={reference}"))
        assert (cfg.dataset.name, cfg.dataset.val_size, cfg.dataset.split) == ("fashion_mnist", 18000, "ordered")
        assert (cfg.initializer.name, cfg.optimizer.name, cfg.optimizer.lr) == ("glorot_uniform", "sgd", 0.01)
        assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (16, 10)
        assert cfg.regularization.early_stopping and cfg.regularization.patience == 5
    power = validate(compose_config("+experiment=lecture_notebook", "+reference=lecture_power")).scheduler
    assert (power.name, power.s, power.c) == ("power", 10000, 1.0)  # SGD(decay=1e-4)
    exponential = validate(compose_config("+experiment=lecture_notebook", "+reference=lecture_exponential")).scheduler
    assert exponential.s == 20 * 42_000 / 16  # a tenth every 20 epochs of 2,625 steps


def test_hml_transfer_fine_tunes_every_reused_layer_at_the_same_rate():
    cfg = validate(compose_config("+experiment=hml_transfer", "transfer=finetune"))
    t = cfg.transfer
    assert (t.frozen_epochs, t.finetune_epochs, t.unfreeze_top, t.lr_factor) == (4, 16, 3, 1.0)
    assert t.pretrain_classes == [1, 3, 4, 5, 6, 7, 8, 9] and cfg.dataset.classes == [0, 2]
    assert cfg.trainer.keep == "last"  # HML evaluates model_B_on_A as its 16 epochs leave it


# Small files in the real formats, one epoch: (preset, its overrides, jobs it runs). The deep nets
# run with fewer layers (their full size is test_preset_builds_the_references_model's), since
# building and tracing 100 or 20 layers costs more than the training here.
RUNS = [
    ("lecture_notebook", ["dataset.data_dir={fm}", "dataset.val_size=100"], 7),
    ("hml_selu_100", ["dataset.data_dir={fm}", "dataset.val_size=100", "model.hidden_layers=3"], 2),
    ("hml_transfer", ["dataset.data_dir={fm}", "dataset.val_size=100", "transfer.pretrain_epochs=1", "transfer.frozen_epochs=1",
                      "transfer.finetune_epochs=1", "trainer.epochs=2", "transfer.cache_dir={root}/pretrained"], 2),
    ("hml_cifar10", ["dataset.data_dir={c10}", "dataset.val_size=40", "model.hidden_layers=2"], 5),
]


@pytest.fixture(scope="module")
def preset_runs(tmp_path_factory) -> tuple[Path, dict]:
    """Every preset run once through the command, in this process (tests/cli_driver.py's run_case): (root, results)."""
    root = tmp_path_factory.mktemp("presets")
    folders = {"fm": write_fashion_mnist(root / "fm", n_train=300, n_test=60), "c10": write_cifar10(root / "c10", n_per_batch=40),
               "root": root}
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # run_case moves into each case's folder
        patch.setattr(sys, "argv", sys.argv)  # and sets sys.argv
        for i, (name, args, _) in enumerate(RUNS):
            argv = [f"+experiment={name}", *IN_PROCESS, "trainer.epochs=1", *(a.format(**folders) for a in args),
                    f"hydra.sweep.dir={root / 'sweeps' / name}"]
            results[name] = run_case(argv, root / "cases" / str(i))
    return root, results


@pytest.mark.parametrize("preset, jobs", [(name, jobs) for name, _, jobs in RUNS])
def test_preset_runs_end_to_end_on_real_format_files(preset_runs, preset, jobs):
    root, results = preset_runs
    result = results[preset]
    assert result["code"] == 0, result["stderr"]
    sweep = root / "sweeps" / preset
    assert (sweep / "summary.csv").is_file()  # the sweep's comparison table
    metrics = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [m["status"] for m in metrics] == ["completed"] * jobs


def reproduction_commands() -> list[str]:
    """Every `dnnexp ...` command of the "Reproducing the lecture and the book" table (docs/experiments.md)."""
    import re

    page = (Path(__file__).parents[1] / "docs" / "experiments.md").read_text()
    section = page.split("## Reproducing the lecture and the book")[1].split("\n## ")[0]
    return re.findall(r"`(dnnexp [^`]+)`", section)


def test_docs_reproduce_every_experiment_with_a_valid_command():
    import shlex

    commands = reproduction_commands()
    assert len(commands) >= 30
    for command in commands:
        args = shlex.split(command)[1:]
        validate(compose_config(*args))
