"""Training throughput: dnnexp's own training path against a plain ``model.fit`` on NumPy arrays.

    python benchmarks/throughput.py [--batch-sizes 32 128] [--epochs 1] [--repeats 3] [--data-dir FOLDER] [--set KEY=VALUE ...]

The lecture's Fashion-MNIST MLP (784-300-100-10, ReLU, SGD), 55,000 training samples,
one epoch (``--epochs``), same data and batch size for both, in this one process:

- plain: ``model.fit(X, y, batch_size=B)`` on float32 NumPy arrays with Keras' defaults;
  TensorFlow sizes its thread pools once per process, so both run with the ones
  dnnexp's ``trainer.threads`` gives;
- dnnexp: ``dnnexp.train.train`` as ``dnnexp dataset=fashion_mnist ...`` runs it (its
  pipeline, steps per call, callbacks, and its validation pass over 5,000 samples,
  which the plain loop does not do: the ratio is conservative).

Both include building the model and tracing its step. It prints samples per second,
their ratio against the targets (at least 4x at batch 32, 2x at batch 128), and the
achieved GFLOP/s with its share of this machine's float32 matrix-multiply peak,
measured here with NumPy. Without the real Fashion-MNIST files (``--data-dir``, or
the Keras cache) it writes random images of the same shape: speed does not depend on
the pixel values. ``--set`` adds overrides to dnnexp's runs, to measure a setting
(``--set trainer.jit_compile=true``, ``--set trainer.threads=2``); ``--epochs`` trains
both longer, which spreads the one-time costs (tracing, the first validation) thinner,
and adds dnnexp's rate over the epochs after the first (its validation included)
against the plain loop's overall rate. Rates on this shared machine move by 10-40%
from one fit to the next, so each loop runs ``--repeats`` times (every plain fit
first, since dnnexp's runs switch on op determinism for the rest of the process) and
the table shows the medians.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine

from dnnexp.data import FASHION_MNIST_FILES

TARGETS = {32: 4.0, 128: 2.0}
N_TRAIN, N_VAL = 55_000, 5_000
UNITS = [300, 100]


def matmul_peak_gflops(threads: int | None = None, n: int = 4096, repeats: int = 3) -> float:
    """The float32 matrix-multiply rate through NumPy's BLAS (all its threads, or ``threads``): best of a few n x n products."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency: caps the BLAS threads

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b  # warm up the BLAS threads
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_flops_per_sample(model) -> int:
    """Multiply-adds x 2 of the Dense layers: forward, weight gradients, and input gradients below the top."""
    dense = [layer for layer in model.layers if hasattr(layer, "kernel")]
    flops = 0
    for i, layer in enumerate(dense):
        fan_in, fan_out = layer.kernel.shape
        passes = 2 if i == 0 else 3  # the first layer needs no gradient for its input
        flops += passes * 2 * fan_in * fan_out
    return flops


def write_random_fashion_mnist(folder: Path) -> None:
    """IDX files of Fashion-MNIST's shape (60,000 + 10,000 images of 28 x 28, labels 0-9)."""
    rng = np.random.default_rng(0)
    for key, name in FASHION_MNIST_FILES.items():
        n = 60_000 if key.startswith("train") else 10_000
        shape = (n, 28, 28) if key.endswith("images") else (n,)
        values = rng.integers(0, 256 if key.endswith("images") else 10, size=shape, dtype=np.uint8)
        header = bytes([0, 0, 0x08, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
        with gzip.open(folder / name, "wb", compresslevel=1) as f:
            f.write(header + values.tobytes())


def fashion_mnist_dir(given: str | None, scratch: Path) -> tuple[str, str]:
    """A folder with the four Fashion-MNIST files, and where they come from."""
    cached = Path.home() / ".keras" / "datasets" / "fashion-mnist"
    for folder in (Path(given) if given else None, cached):
        if folder and all((folder / n).is_file() for n in FASHION_MNIST_FILES.values()):
            return str(folder), f"Fashion-MNIST from {folder}"
    write_random_fashion_mnist(scratch)
    return str(scratch), "random images of Fashion-MNIST's shape (the real files are not here)"


def dnnexp_config(data_dir: str, batch_size: int, epochs: int, extra: list[str]):
    from hydra import compose, initialize_config_dir

    from dnnexp.cli import config_dir
    from dnnexp.config import validate

    overrides = [
        "dataset=fashion_mnist", f"dataset.data_dir={data_dir}", f"dataset.val_size={N_VAL}",
        f"model.units=[{UNITS[0]},{UNITS[1]}]", f"trainer.epochs={epochs}", f"trainer.batch_size={batch_size}",
        "trainer.verbose=false", *extra,
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def plain_fit(cfg, data, n_samples: int | None = None) -> float:
    """Seconds for model.fit(X, y, batch_size=B): Keras' defaults, a fresh model of the same shape."""
    from dnnexp.keras_import import keras
    from dnnexp.model import build_model

    model = build_model(cfg, data.input_shape, data.n_classes)
    model.compile(optimizer=keras.optimizers.SGD(cfg.optimizer.lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # Keras' default progress bar, unseen
        return _seconds(lambda: model.fit(data.x_train[:n_samples], data.y_train[:n_samples], batch_size=cfg.trainer.batch_size, epochs=cfg.trainer.epochs))


def dnnexp_fit(cfg, scratch: Path) -> tuple[float, dict, float | None]:
    """Seconds of dnnexp's whole training, its metrics, and the seconds of its epochs after the first (None for one epoch)."""
    import pandas as pd

    from dnnexp.train import train

    run_dir = scratch / f"run_{cfg.trainer.batch_size}"
    metrics = train(cfg, run_dir)
    later = pd.read_csv(run_dir / "history.csv")["seconds"].iloc[1:]
    return metrics["train_seconds"], metrics, (later.sum() if len(later) else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="fits of each loop per batch size; the table shows medians")
    parser.add_argument("--data-dir", help="a folder with the four Fashion-MNIST .gz files")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for dnnexp's runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data_dir, source = fashion_mnist_dir(args.data_dir, scratch)
        peak = matmul_peak_gflops()
        print(f"machine: {machine()}")
        print(f"data: {source}; float32 matmul peak (NumPy, 4096^2): {peak:.1f} GFLOP/s")

        from dnnexp.data import load
        from dnnexp.model import build_model
        from dnnexp.engines import engine

        configs = {b: dnnexp_config(data_dir, b, args.epochs, args.set) for b in args.batch_sizes}
        # TensorFlow's thread pools are fixed once it starts, so both loops run with the ones dnnexp asks for.
        threads = engine.configure(configs[args.batch_sizes[0]].trainer)
        peak_threads = matmul_peak_gflops(threads)
        data = load(configs[args.batch_sizes[0]].dataset)
        assert len(data.x_train) == N_TRAIN, len(data.x_train)
        flops = training_flops_per_sample(build_model(configs[args.batch_sizes[0]], data.input_shape, data.n_classes))
        # Not timed: TensorFlow's first training in a process builds its kernels; neither loop should pay for that.
        plain_fit(configs[args.batch_sizes[0]], data, n_samples=1280)
        # Every plain run first: dnnexp switches on TensorFlow's op determinism for the rest of the process.
        plain_runs = {b: [plain_fit(configs[b], data) for _ in range(args.repeats)] for b in args.batch_sizes}
        our_runs = {b: [dnnexp_fit(configs[b], scratch) for _ in range(args.repeats)] for b in args.batch_sizes}
    plain = {b: statistics.median(runs) for b, runs in plain_runs.items()}
    ours = {b: sorted(runs, key=lambda run: run[0])[len(runs) // 2] for b, runs in our_runs.items()}  # the median run

    print(f"model 784-{UNITS[0]}-{UNITS[1]}-10, {flops / 1e6:.2f} MFLOP per training sample, {N_TRAIN:,} samples, {args.epochs} epoch(s), median of {args.repeats}"
          + (f"; dnnexp with {' '.join(args.set)}" if args.set else "") + f"; {threads} TensorFlow threads for both")
    header = f"{'batch':>5}  {'plain samples/s':>15}  {'dnnexp samples/s':>16}  {'ratio':>6}  {'target':>6}  {'GFLOP/s':>7}  {'of peak':>7}  steps/call"
    print(header + ("  after epoch 1: dnnexp samples/s, ratio" if args.epochs > 1 else ""))
    for b in args.batch_sizes:
        plain_rate = args.epochs * N_TRAIN / plain[b]
        seconds, metrics, later = ours[b]
        rate = args.epochs * N_TRAIN / seconds
        ratio = rate / plain_rate
        target = TARGETS.get(b)
        verdict = "" if target is None else f"{'>=' if ratio >= target else '< '}{target:g}x"
        gflops = rate * flops / 1e9
        print(f"{b:>5}  {plain_rate:>15,.0f}  {rate:>16,.0f}  {ratio:>5.2f}x  {verdict:>6}  {gflops:>7.1f}  {gflops / peak:>6.0%}  {metrics['steps_per_execution']:>10}"
              + (f"  {(args.epochs - 1) * N_TRAIN / later:>12,.0f}  {(args.epochs - 1) * N_TRAIN / later / plain_rate:.2f}x" if later else ""))
    for b in args.batch_sizes:
        rates = lambda seconds: ", ".join(f"{args.epochs * N_TRAIN / t:,.0f}" for t in seconds)  # noqa: E731
        print(f"batch {b} samples/s of each fit: plain {rates(plain_runs[b])}; dnnexp {rates([run[0] for run in our_runs[b]])}")
    # What a target asks of the machine: its rate in GFLOP/s against the matmul peak of the
    # threads the runs use (large square products, which no 32 x 784 layer reaches).
    print(f"float32 matmul peak with the {threads} thread(s) the runs use: {peak_threads:.1f} GFLOP/s")
    for b in args.batch_sizes:
        if b in TARGETS:
            needed = TARGETS[b] * args.epochs * N_TRAIN / plain[b]
            print(f"batch {b}: {TARGETS[b]:g}x the plain loop = {needed:,.0f} samples/s = {needed * flops / 1e9:.1f} GFLOP/s,"
                  f" {needed * flops / 1e9 / peak_threads:.0%} of that peak, tracing and validation included")


if __name__ == "__main__":
    main()
