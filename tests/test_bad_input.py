"""Bad input, tried wholesale through the `dnnexp` command.

Every case must end in a message naming what is wrong, a non-zero exit, no Python
traceback and no metrics.json that claims success. All cases run in one subprocess
(tests/cli_driver.py calls dnnexp.cli.main once per case), so TensorFlow loads once.
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, compose_config
from formats import plant_code_pickle, write_cifar10, write_fashion_mnist, write_idx
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from dnnexp.config import ConfigError, validate
from dnnexp.data import FASHION_MNIST_FILES

TRAIN_IMAGES = FASHION_MNIST_FILES["train_images"]
TRANSFER = ["dataset.classes=[8,9]", "transfer=finetune", "trainer.epochs=3", "transfer.finetune_epochs=1"]

# (name, arguments, what the message must say, exit code). {d} is the folder of broken datasets.
# These never get as far as TensorFlow.
CONFIG_CASES = [
    # wrong types
    ("epochs text", ["trainer.epochs=abc"], "trainer.epochs must be an integer, got 'abc'", 2),
    ("epochs empty", ["trainer.epochs="], "trainer.epochs must be an integer, got ''", 2),
    ("batch float", ["trainer.batch_size=1.5"], "trainer.batch_size must be an integer, got 1.5", 2),
    ("seed huge float", ["trainer.seed=1e40"], "trainer.seed must be an integer, got 1e+40", 2),
    ("lr text", ["optimizer.lr=fast"], "optimizer.lr must be a number, got 'fast'", 2),
    ("lr list", ["optimizer.lr=[0.1]"], "optimizer.lr must be a number, got [0.1]", 2),
    ("lr dict", ["optimizer.lr={a:1}"], "optimizer.lr must be a number, got {'a': 1}", 2),
    ("standardize text", ["dataset.standardize=maybe"], "dataset.standardize must be true or false, got 'maybe'", 2),
    ("layers text", ["model.hidden_layers=abc"], "model.hidden_layers must be an integer, got 'abc'", 2),
    ("units with text", ["model.units=[16,abc]"], "model.units must be a positive integer or a list of them, got [16, 'abc']", 2),
    ("data_dir list", ["dataset.data_dir=[1,2]"], "dataset.data_dir must be a string, got [1, 2]", 2),
    # out of range
    ("epochs zero", ["trainer.epochs=0"], "trainer.epochs must be in [1, inf], got 0", 2),
    ("epochs negative", ["trainer.epochs=-3"], "trainer.epochs must be in [1, inf], got -3", 2),
    ("batch zero", ["trainer.batch_size=0"], "trainer.batch_size must be in [1, inf], got 0", 2),
    ("seed negative", ["trainer.seed=-1"], "trainer.seed must be in [0, 4294967295], got -1", 2),
    ("lr zero", ["optimizer.lr=0"], "optimizer.lr must be in (0, inf), got 0.0", 2),
    ("lr negative", ["optimizer.lr=-0.1"], "optimizer.lr must be in (0, inf), got -0.1", 2),
    ("lr nan", ["optimizer.lr=nan"], "optimizer.lr must be in (0, inf), got nan", 2),
    ("momentum one", ["optimizer.momentum=1.0"], "optimizer.momentum must be in [0, 1), got 1.0", 2),
    ("beta_1 one", ["optimizer=adam", "optimizer.beta_1=1"], "optimizer.beta_1 must be in [0, 1), got 1.0", 2),
    ("beta_2 negative", ["optimizer=adam", "optimizer.beta_2=-0.5"], "optimizer.beta_2 must be in [0, 1), got -0.5", 2),
    ("rho too big", ["optimizer=rmsprop", "optimizer.rho=1.5"], "optimizer.rho must be in [0, 1), got 1.5", 2),
    ("dropout rate over one", ["regularization=dropout", "regularization.rate=1.5"], "regularization.rate must be in [0, 1), got 1.5", 2),
    ("dropout rate negative", ["regularization=dropout", "regularization.rate=-0.1"], "regularization.rate must be in [0, 1), got -0.1", 2),
    ("last_k zero", ["regularization.last_k=0"], "regularization.last_k must be in [1, inf], got 0", 2),
    ("patience negative", ["regularization=early_stopping", "regularization.patience=-1"], "regularization.patience must be in [0, inf], got -1", 2),
    ("power s zero", ["scheduler=power", "scheduler.s=0"], "scheduler.s must be in (0, inf), got 0.0", 2),
    ("power c zero", ["scheduler=power", "scheduler.c=0"], "scheduler.c must be in (0, inf), got 0.0", 2),
    ("factor one", ["scheduler=performance", "scheduler.factor=1"], "scheduler.factor must be in (0, 1), got 1.0", 2),
    ("scheduler patience negative", ["scheduler=performance", "scheduler.patience=-2"], "scheduler.patience must be in [0, inf], got -2", 2),
    ("clip threshold zero", ["clipping=norm", "clipping.threshold=0"], "clipping.threshold must be in (0, inf), got 0.0", 2),
    ("bn momentum", ["normalization=batchnorm_before", "normalization.momentum=1.5"], "normalization.momentum must be in [0, 1], got 1.5", 2),
    ("bn epsilon", ["normalization=batchnorm_before", "normalization.epsilon=0"], "normalization.epsilon must be in (0, inf), got 0.0", 2),
    ("alpha", ["activation=leaky_relu", "activation.alpha=2"], "activation.alpha must be in [0, 1], got 2.0", 2),
    ("limit zero", ["dataset.limit=0"], "dataset.limit must be in [1, inf], got 0", 2),
    ("val size negative", ["dataset.val_size=-5"], "dataset.val_size must be in [1, inf], got -5", 2),
    ("units negative", ["model.units=-3"], "model.units must be a positive integer or a list of them, got -3", 2),
    ("units zero in list", ["model.units=[10,0]"], "model.units must be a positive integer or a list of them, got [10, 0]", 2),
    ("hidden layers negative", ["model.hidden_layers=-1"], "model.hidden_layers must be in [0, 1000], got -1", 2),
    ("claims margin negative", ["claims_margin=-1"], "claims_margin must be in [0, inf), got -1.0", 2),
    ("claims margin text", ["claims_margin=abc"], "claims_margin must be a number, got 'abc'", 2),
    # read by the claims sweeper before any job checks its config: refused at the door of the whole sweep
    ("claims margin negative in a claims sweep", ["-m", "hydra/sweeper=claims", "optimizer.lr=0.1,0.01", "claims_margin=-1"],
     "claims_margin must be in [0, inf), got -1.0", 2),
    # unknown keys and choices: one line naming it, the closest valid name and the valid names
    ("unknown key added", ["+trainer.epoch=3"], "trainer.epoch is not a key of trainer; did you mean trainer.epochs? (keys: ", 2),
    ("unknown key", ["trainer.epoch=3"], "trainer.epoch is not a key of trainer; did you mean trainer.epochs? (keys: ", 2),
    ("unknown key in a group", ["dataset.standardise=true"],
     "dataset.standardise is not a key of dataset; did you mean dataset.standardize? (keys: classes, data_dir, ", 2),
    ("key of another choice", ["optimizer.beta_1=0.9"], "optimizer.beta_1 is not a key of optimizer (keys: lr, momentum, name, nesterov)", 2),
    ("unknown hydra key", ["hydra.run.dirr=x"], "hydra.run.dirr is not a key of hydra.run; did you mean hydra.run.dir? (keys: dir)", 2),
    ("unknown top-level key", ["traner.epochs=3"], "traner is not a top-level key or group; did you mean trainer? (keys: activation, ", 2),
    ("unknown group", ["schedular=power"], "schedular is not a top-level key or group; did you mean scheduler? (keys: activation, ", 2),
    ("unknown group added", ["+schedular=power"], "schedular is not a top-level key or group; did you mean scheduler? (keys: activation, ", 2),
    ("unknown activation", ["activation=relux"],
     "activation=relux is not a choice; did you mean relu? (choices: elu, gelu, leaky_relu, mish, prelu, relu, selu, sigmoid, swish, tanh)", 2),
    ("unknown optimizer", ["optimizer=sgdd"], "optimizer=sgdd is not a choice; did you mean sgd? (choices: adadelta, adafactor, adagrad, adam, adamax, adamw, ftrl, lion, nadam, rmsprop, sgd)", 2),
    ("unknown dataset", ["dataset=imagenet"], "dataset=imagenet is not a choice (choices: cifar10, fashion_mnist, mnist_5k)", 2),
    ("unknown initializer", ["initializer=he_unifrm"], "initializer=he_unifrm is not a choice; did you mean he_uniform? (choices: auto, ", 2),
    ("unknown launcher", ["hydra/launcher=nonexistent"], "hydra/launcher=nonexistent is not a choice (choices: basic, ", 2),
    ("unknown choice in a sweep", ["-m", "activation=relu,relux"], "activation=relux is not a choice; did you mean relu? (choices: elu, ", 2),
    ("unknown preset", ["+experiment=activatons"], "experiment=activatons is not a choice; did you mean activations? (choices: activations, ", 2),
    ("unknown choice of a config dir", ["--config-dir={d}/my_conf", "activation=my_activaton"],
     "activation=my_activaton is not a choice; did you mean my_activation? (choices: elu, gelu, leaky_relu, mish, my_activation, prelu, relu, ", 2),
    ("unknown preset of a config dir", ["--config-dir={d}/my_conf", "+experiment=typo_kye"],
     "experiment=typo_kye is not a choice; did you mean typo_key? (choices: ", 2),
    ("unknown key in a preset", ["--config-dir={d}/my_conf", "+experiment=typo_key"],
     "trainer.epoch is not a key of trainer; did you mean trainer.epochs? (keys: ", 2),
    ("unknown group in a preset", ["--config-dir={d}/my_conf", "+experiment=typo_group"],
     "traner is not a top-level key or group; did you mean trainer? (keys: ", 2),
    ("unknown choice in a preset", ["--config-dir={d}/my_conf", "+experiment=typo_choice"],
     "activation=relux is not a choice; did you mean relu? (choices: ", 2),
    ("unknown choice in a preset's sweep", ["--config-dir={d}/my_conf", "+experiment=typo_sweep"],
     "activation=relux is not a choice; did you mean relu? (choices: ", 2),
    ("unknown dropout placement", ["regularization.layers=middle"], "regularization.layers must be one of all, hidden, input, last; got 'middle'", 2),
    ("unknown monitor", ["regularization=early_stopping", "regularization.monitor=loss"], "regularization.monitor must be one of val_loss, val_accuracy; got 'loss'", 2),
    ("unknown metric", ["optimized_metric=accuracy"], "optimized_metric must be one of val_accuracy, val_loss", 2),
    ("unknown dataset name", ["dataset.name=imagenet"], "dataset.name must be one of mnist_5k, fashion_mnist, cifar10; got 'imagenet'", 2),
    ("unknown backend", ["trainer.backend=torch"], "trainer.backend must be one of tensorflow, jax; got 'torch'", 2),
    ("jit_compile text", ["trainer.jit_compile=fast"], "trainer.jit_compile must be auto, true or false, got 'fast'", 2),
    # settings that have no meaning on the JAX backend
    ("mirrored on jax", ["trainer.backend=jax", "trainer.strategy=mirrored"],
     "trainer.strategy=mirrored needs trainer.backend=tensorflow (it is a tf.distribute strategy)", 2),
    ("no xla on jax", ["trainer.backend=jax", "trainer.jit_compile=false"],
     "trainer.jit_compile=false is not available with trainer.backend=jax", 2),
    # malformed override and sweep syntax
    ("empty sweep item", ["-m", "activation=relu,,elu"], "Error parsing override 'activation=relu,,elu'", 1),
    ("double equals", ["-m", "activation==relu"], "Error parsing override 'activation==relu'", 1),
    ("open bracket", ["activation=[relu"], "'[relu'", 1),
    ("open range", ["-m", "optimizer.lr=range(1,"], "'range(1,'", 1),
    ("open choice", ["-m", "activation=choice(relu"], "choice(relu", 1),
    ("no key", ["=relu"], "Could not override ''", 1),
    ("append existing", ["+trainer.epochs=3"], "Could not append to config. An item is already at 'trainer.epochs'", 1),
    ("sweep of bad values", ["-m", "trainer.epochs=0,abc"], "2 of 2 jobs failed", 1),
    # transfer sources that cannot be one
    ("missing source", [*TRANSFER, "transfer.source={d}/nothere.keras"],
     "transfer.source={d}/nothere.keras does not exist (expected a .keras file or a dnnexp run folder)", 2),
    ("source folder without model", [*TRANSFER, "transfer.source={d}/fashion_ok"],
     "transfer.source={d}/fashion_ok is a folder without model.keras (not a finished dnnexp run)", 2),
    # folders a run cannot have: named by the path and the reason, nothing written anywhere
    ("run folder is a file", ["hydra.run.dir={d}/a_file"], "cannot use {d}/a_file as a run folder: {d}/a_file is a file", 2),
    ("run folder name too long", [f"hydra.run.dir={{d}}/{'y' * 300}"], f"cannot write into {{d}}/{'y' * 300}: File name too long", 2),
    ("task name that climbs out", ["task_name=../../../escaped"],
     "task_name must be one folder name (no '/', not '.' or '..'), got '../../../escaped'", 2),
    ("task name too long", [f"task_name={'t' * 300}"], "task_name must be one folder name of at most 255 bytes, got 300 bytes", 2),
    ("task name of a sweep that climbs out", ["-m", "activation=relu,elu", "task_name=a/b"],
     "task_name must be one folder name (no '/', not '.' or '..'), got 'a/b'", 2),
    ("claim a sweep cannot read", ["-m", "activation=relu,elu", 'claims=["garbage"]'], "claim 'garbage' is neither an ordering", 2),
]

# Cases that read data files: missing, unreadable or malformed dataset files, and split sizes
# larger than the data. They are answered before TensorFlow loads (data.check_files).
DATA_FILE_CASES = [
    ("splits larger than data", ["dataset.val_size=9000"], "dataset.test_size=200 + dataset.val_size=9000 must be less than the 5000 samples", 2),
    ("val size larger than files", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_ok", "dataset.val_size=500"],
     "dataset.val_size=500 must be less than the 200 samples of fashion_mnist", 2),
    ("no such folder", ["dataset=fashion_mnist", "dataset.data_dir={d}/nowhere"], "dataset.data_dir={d}/nowhere is not a folder", 2),
    ("folder is a file", ["dataset=cifar10", "dataset.data_dir={d}/a_file"], "dataset.data_dir={d}/a_file is not a folder", 2),
    ("file missing", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_missing"],
     "Fashion-MNIST files missing in dataset.data_dir={d}/fashion_missing: t10k-labels-idx1-ubyte.gz", 2),
    ("truncated idx", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_truncated"],
     "{d}/fashion_truncated/" + f"{TRAIN_IMAGES} is truncated or padded", 2),
    ("wrong magic", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_magic"],
     "{d}/fashion_magic/" + f"{TRAIN_IMAGES} is not an IDX file of unsigned bytes (magic number 0x08030000)", 2),
    ("empty idx", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_empty"],
     "{d}/fashion_empty/" + f"{TRAIN_IMAGES} is not an IDX file", 2),
    ("not gzip", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_not_gzip"], "cannot read {d}/fashion_not_gzip/" + TRAIN_IMAGES, 2),
    ("labels as images", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_ndim"], "holds 1-dimensional data, expected 3", 2),
    ("image label counts", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_counts"],
     f"{TRAIN_IMAGES} has 200 images but train-labels-idx1-ubyte.gz has 199 labels", 2),
    ("cifar wrong shape", ["dataset=cifar10", "dataset.data_dir={d}/cifar_shape"],
     "{d}/cifar_shape/cifar-10-batches-py/test_batch: data has shape (10, 784), expected (N, 3072)", 2),
    ("cifar not a pickle", ["dataset=cifar10", "dataset.data_dir={d}/cifar_garbage"],
     "cannot read CIFAR-10 batch {d}/cifar_garbage/cifar-10-batches-py/data_batch_1", 2),
    ("cifar missing keys", ["dataset=cifar10", "dataset.data_dir={d}/cifar_keys"], "is not a CIFAR-10 batch (expected a dict with b'data' and b'labels')", 2),
    ("cifar pickle that runs code", ["dataset=cifar10", "dataset.data_dir={d}/cifar_code"],
     "{d}/cifar_code/cifar-10-batches-py/data_batch_1 is refused: its pickle would call posix.system", 2),
    ("cifar label count", ["dataset=cifar10", "dataset.data_dir={d}/cifar_labels"], "data_batch_2: 10 images but 9 labels", 2),
    ("idx labels out of range", ["dataset=fashion_mnist", "dataset.data_dir={d}/fashion_labels"],
     "{d}/fashion_labels/train-labels-idx1-ubyte.gz holds label 10, but Fashion-MNIST's 10 classes are labelled 0 to 9 (", 2),
    ("cifar labels out of range", ["dataset=cifar10", "dataset.data_dir={d}/cifar_label_99"],
     "{d}/cifar_label_99/cifar-10-batches-py/data_batch_1 holds label 99, but CIFAR-10's 10 classes are labelled 0 to 9 (", 2),
    ("cifar object data", ["dataset=cifar10", "dataset.data_dir={d}/cifar_objects"],
     "{d}/cifar_objects/cifar-10-batches-py/data_batch_5: data is an array of object, expected pixels as integers from 0 to 255", 2),
    ("sweep of broken data", ["-m", "dataset=fashion_mnist,cifar10", "dataset.data_dir={d}/nowhere"], "2 of 2 jobs failed", 1),
    # refused after Hydra wrote into a folder that held something already: it is left as it was
    ("late refusal in a folder in use before", ["dataset.val_size=9000", "hydra.run.dir={d}/earlier_folder"],
     "dataset.test_size=200 + dataset.val_size=9000 must be less than the 5000 samples", 2),
]
# Cases that load TensorFlow to read a model: corrupted .keras transfer sources.
SOURCE_CASES = [
    ("truncated .keras", [*TRANSFER, "transfer.source={d}/truncated.keras"], "transfer.source: cannot read {d}/truncated.keras as a Keras model", 2),
    ("random bytes .keras", [*TRANSFER, "transfer.source={d}/random.keras"], "transfer.source: cannot read {d}/random.keras as a Keras model", 2),
    ("broken .keras config", [*TRANSFER, "transfer.source={d}/broken_config.keras"],
     "transfer.source: cannot read {d}/broken_config.keras as a Keras model (JSONDecodeError", 2),
    ("source of another shape", ["transfer=frozen", "transfer.source={d}/mnist.keras", "dataset=cifar10", "dataset.data_dir={d}/cifar_ok"],
     "the source model takes inputs of shape (28, 28) but cifar10 has shape (32, 32, 3); set transfer.resize=true", 2),
]
DATA_CASES = DATA_FILE_CASES + SOURCE_CASES  # in this order: the driver runs them in one process
CASES = CONFIG_CASES + DATA_CASES


def broken_sources(d: Path, model_file: Path) -> None:
    """.keras files that are not models: a real one cut in half, random bytes, a zip with a broken config."""
    d.mkdir(parents=True, exist_ok=True)
    blob = model_file.read_bytes()
    (d / "mnist.keras").write_bytes(blob)  # a good model, for 28x28 inputs
    (d / "truncated.keras").write_bytes(blob[: len(blob) // 2])
    (d / "random.keras").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with zipfile.ZipFile(d / "broken_config.keras", "w") as z:
        z.writestr("config.json", '{"class_name": "Sequential", "config": {')


def typo_configs(d: Path) -> None:
    """A --config-dir with a choice of its own and presets that mistype a key, a group, a choice, a swept choice."""
    presets = {
        "typo_key": "trainer:\n  epoch: 3\n",
        "typo_group": "traner:\n  epochs: 3\n",
        "typo_choice": "defaults:\n  - override /activation: relux\n",
        "typo_sweep": "hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n      activation: relu,relux\n",
    }
    (d / "experiment").mkdir(parents=True)
    for name, body in presets.items():
        (d / "experiment" / f"{name}.yaml").write_text(f"# @package _global_\n{body}")
    (d / "activation").mkdir()
    (d / "activation" / "my_activation.yaml").write_text("name: elu\n")


def broken_datasets(d: Path) -> None:
    """One folder per way a dataset can be broken, each otherwise complete."""
    write_fashion_mnist(d / "fashion_ok", n_train=200, n_test=50)
    write_cifar10(d / "cifar_ok", n_per_batch=100)
    (d / "earlier_folder").mkdir()
    (d / "earlier_folder" / "notes.txt").write_text("kept\n")
    (d / "a_file").write_text("not a folder")
    fashion = {name: write_fashion_mnist(d / f"fashion_{name}", n_train=200, n_test=50)
               for name in ("missing", "truncated", "magic", "empty", "not_gzip", "ndim", "counts")}
    (fashion["missing"] / FASHION_MNIST_FILES["test_labels"]).unlink()
    images = fashion["truncated"] / TRAIN_IMAGES
    blob = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(blob[: len(blob) // 2]))
    (fashion["magic"] / TRAIN_IMAGES).write_bytes(gzip.compress(b"\x08\x03\x00\x00" + blob[4:]))
    (fashion["empty"] / TRAIN_IMAGES).write_bytes(gzip.compress(b""))
    (fashion["not_gzip"] / TRAIN_IMAGES).write_bytes(blob)
    write_idx(fashion["ndim"] / TRAIN_IMAGES, np.zeros(200, np.uint8))
    write_idx(fashion["counts"] / FASHION_MNIST_FILES["train_labels"], np.zeros(199, np.uint8))
    labels = write_fashion_mnist(d / "fashion_labels", n_train=200, n_test=50)
    write_idx(labels / FASHION_MNIST_FILES["train_labels"], np.arange(200))  # labels 0 to 199

    cifar = {name: write_cifar10(d / f"cifar_{name}", n_per_batch=10)
             for name in ("shape", "garbage", "keys", "labels", "code", "label_99", "objects")}
    with open(cifar["label_99"] / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": [99] * 10}, f)
    with open(cifar["objects"] / "data_batch_5", "wb") as f:
        pickle.dump({b"data": np.array([[None] * 3072] * 10, dtype=object), b"labels": [0] * 10}, f)
    plant_code_pickle(cifar["code"] / "data_batch_1", f"touch {d / 'cifar_code_ran'}")
    with open(cifar["shape"] / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 784), np.uint8), b"labels": [0] * 10}, f)
    (cifar["garbage"] / "data_batch_1").write_bytes(b"\x80\x04 this is no pickle")
    with open(cifar["keys"] / "data_batch_3", "wb") as f:
        pickle.dump({b"images": np.zeros((10, 3072), np.uint8)}, f)
    with open(cifar["labels"] / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 9}, f)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, trained_run) -> tuple[Path, dict]:
    """Run every case through the command once: (folder of broken files, results by case name).

    Two drivers side by side: one for the cases that never load TensorFlow, one for the rest.
    """
    root = tmp_path_factory.mktemp("bad_input")
    data = root / "data"
    broken_datasets(data)
    typo_configs(data / "my_conf")
    broken_sources(data, trained_run[0] / "model.keras")
    drivers = []
    for group, cases in (("config_cases", CONFIG_CASES), ("data_cases", DATA_CASES)):
        # Hydra's options (-m, --config-dir=...) must come before the overrides.
        argv = {name: sorted([*TINY, *(a.replace("{d}", str(data)) for a in args)], key=lambda a: not a.startswith("-"))
                for name, args, _, _ in cases}
        (root / group).mkdir()
        (root / group / "cases.json").write_text(json.dumps(argv))
        command = [sys.executable, str(Path(__file__).parent / "cli_driver.py"), "cases.json", "results.json"]
        drivers.append(subprocess.Popen(command, cwd=root / group, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert [d.wait(timeout=600) for d in drivers] == [0, 0]
    results = {}
    for group in ("config_cases", "data_cases"):
        results.update(json.loads((root / group / "results.json").read_text()))
    return data, results


# A refused command exits 2; a sweep whose jobs fail, 1, and keeps their records.
REFUSED = [name for name, _, _, code in CASES if code == 2]


@pytest.mark.parametrize("name", REFUSED)
def test_a_refused_command_leaves_no_folder(outcomes, name):
    data, results = outcomes
    assert results[name]["left"] == []  # nothing in the folder it ran in: no outputs/, no .hydra/, no log
    assert sorted(p.name for p in (data / "earlier_folder").rglob("*")) == ["notes.txt"]
    assert (data / "earlier_folder" / "notes.txt").read_text() == "kept\n"


def test_a_task_name_never_writes_outside_its_outputs_folder(outcomes):
    data, results = outcomes
    assert results["task name that climbs out"]["code"] == 2
    assert not list(data.parent.rglob("escaped"))


@pytest.mark.parametrize("name", [name for name, *_ in DATA_FILE_CASES])
def test_a_broken_data_file_is_answered_before_tensorflow_loads(outcomes, name):
    """TensorFlow takes about 10 s to load: files that cannot train are refused before it. (The cases
    run in one process, in order, so this holds for each only if it held for those before.)"""
    assert outcomes[1][name]["tensorflow_imported"] is False


def test_a_crafted_cifar_pickle_never_ran_its_command(outcomes):
    data, results = outcomes
    assert results["cifar pickle that runs code"]["code"] == 2
    assert not (data / "cifar_code_ran").exists()


def test_at_least_fifty_distinct_bad_inputs():
    assert len({name for name, *_ in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("name, args, message, code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_a_clear_message_and_nonzero_exit(outcomes, name, args, message, code):
    data, results = outcomes
    result = results[name]
    printed = result["stdout"] + result["stderr"]
    assert result["code"] == code, printed
    assert message.replace("{d}", str(data)) in " ".join(result["stderr"].split()), printed
    assert "Traceback" not in printed
    assert all(status == "failed" for status in result["statuses"])


ONE_LINERS = [(name, args) for name, args, _, code in CONFIG_CASES + DATA_FILE_CASES if code == 2]


@pytest.mark.parametrize("name, args", ONE_LINERS, ids=[c[0] for c in ONE_LINERS])
def test_a_refused_config_is_answered_in_one_line(outcomes, name, args):
    data, results = outcomes
    assert results[name]["stderr"].strip().startswith("dnnexp: error: ")
    assert len(results[name]["stderr"].strip().splitlines()) == 1, results[name]["stderr"]


BASE = compose_config("normalization=batchnorm_after", "regularization=dropout", "scheduler=performance", "clipping=norm")
# Numeric keys and the values they allow (low, high, low end open, high end open), as dnnexp.config checks them.
RANGES = {
    "optimizer.lr": (0, math.inf, True, True),
    "optimizer.momentum": (0, 1, False, True),
    "regularization.rate": (0, 1, False, True),
    "normalization.momentum": (0, 1, False, False),
    "scheduler.factor": (0, 1, True, True),
    "clipping.threshold": (0, math.inf, True, True),
    "claims_margin": (0, math.inf, False, True),
}


def outside(low: float, high: float, low_open: bool, high_open: bool):
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False)
    above = st.floats(min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False)
    return below | above if math.isfinite(high) else below


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_value_out_of_range_is_refused_naming_the_key(data):
    key = data.draw(st.sampled_from(sorted(RANGES)))
    value = data.draw(outside(*RANGES[key]))
    cfg = BASE.copy()
    OmegaConf.update(cfg, key, value)
    with pytest.raises(ConfigError, match=f"^{key} must be in "):
        validate(cfg)

