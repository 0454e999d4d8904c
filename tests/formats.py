"""Writers for small files in the real dataset formats (IDX gz, CIFAR-10 python batches)."""

from __future__ import annotations

import gzip
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


def write_cifar10(parent: Path, n_per_batch: int = 40) -> Path:
    folder = parent / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH]):
        write_cifar_batch(folder / name, n_per_batch, seed=i)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f)
    return folder
