"""Writers for small files in the real dataset formats (IDX gz, CIFAR-10 python batches)."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from dnnexp.data import CIFAR10_CLASSES, CIFAR10_FOLDER, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, FASHION_MNIST_FILES


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(array))


def fake_images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return images, labels.astype(np.uint8)


def write_fashion_mnist(folder: Path, n_train: int = 200, n_test: int = 50) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("test", n_test)):
        images, labels = fake_images(n, (28, 28), seed=n)
        write_idx(folder / FASHION_MNIST_FILES[f"{part}_images"], images)
        write_idx(folder / FASHION_MNIST_FILES[f"{part}_labels"], labels)
    return folder


def write_cifar_batch(path: Path, n: int, seed: int) -> np.ndarray:
    images, labels = fake_images(n, (32, 32, 3), seed)
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel-first rows, as the real files
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels.tolist(), b"batch_label": b"fake"}, f)
    return images


def python2_cifar_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as the real files are: Python 2's cPickle, protocol 2, arrays by NumPy 1.

    Python 3 cannot write this (it pickles bytes through _codecs.encode, NumPy 2 names
    numpy._core), so the opcodes are spelled out: NumPy 1's ``ndarray.__reduce__`` gives
    ``_reconstruct(ndarray, (0,), 'b')`` with the state ``(1, shape, dtype, fortran, raw bytes)``,
    and ``dtype.__reduce__`` gives ``dtype('u1', 0, 1)`` with the state
    ``(3, '|', None, None, None, -1, -1, 0)``; Python 2's str is SHORT_BINSTRING / BINSTRING.
    """
    def string(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + len(b).to_bytes(4, "little")) + b

    def integer(i: int) -> bytes:
        return b"K" + bytes([i]) if 0 <= i < 256 else b"M" + i.to_bytes(2, "little") if 0 <= i < 65536 else b"J" + i.to_bytes(4, "little", signed=True)

    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"
             + b"(" + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b") + b"\x87R"
             + b"(" + integer(1) + integer(data.shape[0]) + integer(data.shape[1]) + b"\x86" + dtype + b"\x89"
             + string(data.astype(np.uint8).tobytes()) + b"tb")
    items = string(b"data") + array + string(b"labels") + b"](" + b"".join(integer(int(y)) for y in labels) + b"e"
    items += string(b"batch_label") + string(b"training batch 1 of 5")
    return b"\x80\x02}(" + items + b"u."


class RunsCode:
    """An object whose unpickling runs ``command`` through os.system: what a crafted file holds."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def plant_code_pickle(path: Path, command: str) -> None:
    """A crafted CIFAR-10 file: a batch-shaped dict whose unpickling runs ``command`` through os.system."""
    with open(path, "wb") as f:
        pickle.dump({b"data": RunsCode(command), b"labels": [0] * 10, b"label_names": []}, f)


def write_cifar10(parent: Path, n_per_batch: int = 40) -> Path:
    folder = parent / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH]):
        write_cifar_batch(folder / name, n_per_batch, seed=i)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f)
    return folder
