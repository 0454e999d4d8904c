"""What a shared trainer.seed shares between two variants of a sweep (docs/claims.md, "What a shared seed shares").

The claims' paired test rests on it: runs of two variants at one seed see the same training split,
the same batches in the same order and, where the layers' shapes and initializer agree, the same
initial weights. Each run here trains for real through dnnexp.train.train, with the engine's
EpochShuffle wrapped to record what the run's first epoch starts from.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from dnnexp.keras_import import keras
from dnnexp.engines import engine
from dnnexp.train import train


@pytest.fixture(scope="module")
def starts(tmp_path_factory) -> dict[str, dict]:
    """Per variant: the training split, the first batch of epoch 1 and the initial weights by layer, as its run saw them."""
    seen: dict[str, dict] = {}
    shuffle = engine.EpochShuffle

    class Recording(shuffle):
        def __init__(self, x, y, *args, **kwargs):
            super().__init__(x, y, *args, **kwargs)
            self.split = (np.array(x), np.array(y))

        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            if epoch == 0:  # nothing trained yet: the weights are the initial draws
                images, labels = next(iter(self.dataset))
                seen[self.variant] = {"split": self.split, "batch": (keras.ops.convert_to_numpy(images), keras.ops.convert_to_numpy(labels)),
                                      "weights": {w.path: keras.ops.convert_to_numpy(w) for w in self.model.weights}}

    variants = {"relu": ["activation=relu"], "elu": ["activation=elu"], "tanh": ["activation=tanh"],
                "relu_adam": ["activation=relu", "optimizer=adam"], "relu_seed_4": ["activation=relu", "trainer.seed=4"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "EpochShuffle", Recording)
        for name, overrides in variants.items():
            Recording.variant = name
            train(tiny_config("trainer.seed=3", *overrides, "trainer.epochs=1"), tmp_path_factory.mktemp(name))
    return seen


def same(a: tuple | np.ndarray, b: tuple | np.ndarray) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else np.array_equal(a, b)


def kernels(start: dict, which: str) -> list[np.ndarray]:
    """The kernels of the hidden layers (dense_1, ...) or of the output layer, input side first (never none)."""
    found = [v for path, v in start["weights"].items() if path.endswith("/kernel") and path.split("/")[-2].startswith(which)]
    assert found, f"no {which} kernel in {list(start['weights'])}"
    return found


def test_one_seed_gives_every_variant_the_same_split_and_first_batch(starts):
    for name in ("elu", "tanh", "relu_adam"):
        assert same(starts[name]["split"], starts["relu"]["split"]), name
        assert same(starts[name]["batch"], starts["relu"]["batch"]), name
    assert len(starts["relu"]["batch"][0]) == tiny_config().trainer.batch_size


def test_another_seed_keeps_the_split_but_draws_another_order_and_other_weights(starts):
    other, relu = starts["relu_seed_4"], starts["relu"]
    assert same(other["split"], relu["split"])  # the split is dataset.split_seed's, the same for every trainer.seed
    assert not same(other["batch"], relu["batch"])
    assert not any(same(a, b) for a, b in zip(kernels(other, "dense"), kernels(relu, "dense")))


def test_one_seed_draws_the_same_initial_weights_where_shapes_and_initializer_agree(starts):
    relu = starts["relu"]
    for name in ("elu", "relu_adam"):  # He-normal for relu and elu (initializer=auto); the optimizer draws nothing
        assert starts[name]["weights"].keys() == relu["weights"].keys()
        assert all(same(starts[name]["weights"][k], v) for k, v in relu["weights"].items()), name
    tanh = starts["tanh"]  # Glorot-uniform hidden layers: other draws there, the same output layer (Glorot for all)
    assert not any(same(a, b) for a, b in zip(kernels(tanh, "dense"), kernels(relu, "dense")))
    assert all(same(a, b) for a, b in zip(kernels(tanh, "output"), kernels(relu, "output")))
