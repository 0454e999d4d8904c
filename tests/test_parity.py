"""dnnexp's training loop computes what Keras' own ``model.fit`` computes (issue 34).

The reference is a plain ``fit`` built from Keras' public API alone: the model dnnexp builds
(``dnnexp.model.build_model``) on dnnexp's split (``dnnexp.data.load``), seeded with
``keras.utils.set_random_seed``, compiled with the optimizer, loss and metric dnnexp's config
names, and fitted at the same batch size. Seen in the same order (trainer.shuffle=none and
``fit(shuffle=False)``), the two give the same loss at every epoch, with batch normalization
and without, although dnnexp runs several steps per call, and on JAX runs them as one program.

Shuffled, they see different orders, so only their accuracies over several seeds compare. Keras'
fit orders the samples differently on each backend (the first test): on JAX a new order every
epoch, which is dnnexp's default; on TensorFlow, once keras.utils.set_random_seed has run, the
same order every epoch, which trainer.shuffle=once reproduces. That difference, not the loop,
was the issue's gap.

Keras takes its backend when it is first imported and this process runs on TensorFlow, so the
JAX half runs this file as a script in a JAX process of its own (``python test_parity.py OUT``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config

from dnnexp.config import Config, validate

# 400 training samples in batches of 32: twelve full batches and a partial one, so steps_per_execution=auto
# runs each epoch as a call of twelve steps and the partial step.
DATA = ["dataset=mnist_5k", "dataset.limit=400", "dataset.val_size=100", "dataset.test_size=500"]
EPOCHS = 4
RUN = [f"trainer.epochs={EPOCHS}", "trainer.batch_size=32", "trainer.verbose=false", "trainer.keep=last",
       "optimizer=sgd", "optimizer.lr=0.2", "model.units=[32,32]"]
MODELS = {
    "plain": ["normalization=none"],
    # Moving averages that settle within the run's 52 steps (Keras' default momentum, 0.99, takes hundreds).
    "batchnorm": ["normalization=batchnorm_after", "normalization.input=true", "normalization.momentum=0.9"],
}
SEEDS = range(4)
# The trainer.shuffle that orders the samples as Keras' seeded fit does on each backend (the first test).
KERAS_ORDER = {"tensorflow": "once", "jax": "epoch"}


def config(backend: str, model: str, seed: int, shuffle: str) -> Config:
    return validate(compose_config(*DATA, *RUN, *MODELS[model], f"trainer.backend={backend}", f"trainer.seed={seed}",
                                   f"trainer.shuffle={shuffle}"))


def dnnexp_run(cfg: Config) -> dict:
    """dnnexp's own run of ``cfg``: the loss of each epoch and the kept (last) weights' test accuracy."""
    from dnnexp.files import HISTORY, read_rows
    from dnnexp.train import train

    with tempfile.TemporaryDirectory() as run_dir:
        metrics = train(cfg, Path(run_dir))
        losses = [row["loss"] for row in read_rows(Path(run_dir) / HISTORY)]
    return {"losses": losses, "test_accuracy": metrics["test_accuracy"]}


def keras_fit(cfg: Config, shuffle: bool) -> dict:
    """The reference: dnnexp's model and split, trained by Keras' own fit and scored by its evaluate."""
    from dnnexp.keras_import import keras  # Keras itself, loaded on this process's backend

    from dnnexp.data import load
    from dnnexp.model import build_model

    data = load(cfg.dataset)
    keras.utils.set_random_seed(cfg.trainer.seed)
    model = build_model(cfg, data.input_shape, data.n_classes, data.standardization)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=cfg.optimizer.lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(data.x_train, data.y_train, batch_size=cfg.trainer.batch_size, epochs=cfg.trainer.epochs,
                        shuffle=shuffle, verbose=0)
    _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=cfg.trainer.batch_size, verbose=0)
    return {"losses": history.history["loss"], "test_accuracy": accuracy}


def fit_orders(epochs: int = 3) -> list[list[int]]:
    """The order in which Keras' seeded fit feeds 64 samples (batch 16), epoch by epoch."""
    from dnnexp.keras_import import keras

    seen: list[np.ndarray] = []

    class Seen(keras.layers.Layer):
        """Passes its input through, noting the samples (their index is their value) each training step sees."""

        def call(self, x, training=False):
            if training and keras.backend.backend() == "jax":
                import jax

                jax.debug.callback(lambda batch: seen.append(np.asarray(batch)[:, 0].astype(int)), x)
            elif training:
                import tensorflow as tf

                tf.py_function(lambda batch: seen.append(batch.numpy()[:, 0].astype(int)), [x], [])
            return x

    x = np.arange(64, dtype=np.float32).reshape(64, 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), Seen(), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x, batch_size=16, epochs=epochs, verbose=0)
    if keras.backend.backend() == "jax":
        import jax

        jax.effects_barrier()  # every step's note taken
    return [np.concatenate(seen[4 * e : 4 * e + 4]).tolist() for e in range(epochs)]


def dnnexp_orders(shuffle: str, epochs: int = 3) -> list[list[int]]:
    """The order in which dnnexp's training batches come with trainer.shuffle=``shuffle``, epoch by epoch."""
    from dnnexp.engines import engine

    x = np.arange(64, dtype=np.float32).reshape(64, 1)
    batches = engine.EpochShuffle(x, np.arange(64), 16, 0, shuffle)
    orders = []
    for epoch in range(epochs):
        batches.on_epoch_begin(epoch)
        orders.append(np.concatenate([np.asarray(labels) for _, labels in batches.dataset]).tolist())
    return orders


def compare(backend: str) -> dict:
    """Everything the tests compare, computed on ``backend`` (the process's Keras backend)."""
    same_order = {model: {"dnnexp": dnnexp_run(config(backend, model, 0, "none")),
                          "fit": keras_fit(config(backend, model, 0, "none"), shuffle=False)}
                  for model in MODELS}
    shuffled = {"dnnexp": [dnnexp_run(config(backend, "batchnorm", seed, KERAS_ORDER[backend]))["test_accuracy"]
                           for seed in SEEDS],
                "fit": [keras_fit(config(backend, "batchnorm", seed, KERAS_ORDER[backend]), shuffle=True)["test_accuracy"]
                        for seed in SEEDS]}
    orders = {"fit": fit_orders(), **{shuffle: dnnexp_orders(shuffle) for shuffle in ("epoch", "once", "none")}}
    return {"same_order": same_order, "shuffled": shuffled, "orders": orders}


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def results(request, tmp_path_factory):
    """{same_order, shuffled, orders} on each backend: TensorFlow in this process, JAX in a process of its own."""
    if request.param == "tensorflow":
        return "tensorflow", compare("tensorflow")
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("parity_jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_COMPILATION_CACHE_DIR": str(folder / "cache")}
    subprocess.run([sys.executable, __file__, str(folder / "results.json")], cwd=Path(__file__).parent, env=env,
                   check=True, timeout=600, stdout=subprocess.DEVNULL)
    return "jax", json.loads((folder / "results.json").read_text())


def test_keras_fit_orders_samples_as_the_trainer_shuffle_named_for_the_backend(results):
    backend, found = results
    orders = found["orders"]
    assert all(sorted(order) == list(range(64)) for orders_ in orders.values() for order in orders_)
    assert orders["none"] == [list(range(64))] * 3  # fit(shuffle=False): the arrays' order
    assert orders["once"][0] == orders["once"][1] == orders["once"][2] != list(range(64))
    assert len({tuple(order) for order in orders["epoch"]}) == 3
    fit_reorders = len({tuple(order) for order in found["orders"]["fit"]}) == 3
    fit_keeps_one = len({tuple(order) for order in found["orders"]["fit"]}) == 1
    assert {"epoch": fit_reorders, "once": fit_keeps_one}[KERAS_ORDER[backend]], (backend, found["orders"]["fit"])


@pytest.mark.parametrize("model", list(MODELS))
def test_same_order_gives_the_same_loss_every_epoch_as_keras_fit(results, model):
    backend, found = results
    ours, fit = found["same_order"][model]["dnnexp"], found["same_order"][model]["fit"]
    assert len(ours["losses"]) == len(fit["losses"]) == EPOCHS
    np.testing.assert_allclose(ours["losses"], fit["losses"], rtol=1e-5, err_msg=f"{backend}, {model}")
    assert abs(ours["test_accuracy"] - fit["test_accuracy"]) <= 1 / 500  # one test image at most: a tie's rounding


def test_shuffled_runs_score_keras_fits_test_accuracy_within_seed_noise(results):
    backend, found = results
    ours, fit = np.array(found["shuffled"]["dnnexp"]), np.array(found["shuffled"]["fit"])
    noise = np.sqrt((ours.var(ddof=1) + fit.var(ddof=1)) / len(SEEDS))  # the standard error of the difference
    assert abs(ours.mean() - fit.mean()) <= 3 * noise + 1 / 500, (backend, ours, fit)
    assert ours.mean() > 0.7 and fit.mean() > 0.7  # both learned (10 classes)


if __name__ == "__main__":  # the JAX half, in a JAX process (the results fixture)
    Path(sys.argv[1]).write_text(json.dumps(compare("jax")))
