"""dnnexp against the loops a user would write instead: seconds per epoch, side by side, in one invocation.

    python benchmarks/peers.py [--batch-sizes 32 128] [--epochs 3] [--repeats 1] [--data-dir FOLDER] [--loops NAME ...] [--set KEY=VALUE ...]

The workload: the lecture's Fashion-MNIST MLP (784-300-100-10, ReLU, softmax), SGD at 0.01,
55,000 training and 5,000 validation images, every epoch a pass over the training set and
one over the validation set. Each loop runs in a fresh process (so each pays its own start,
tracing and compiling, as a user's would) with the same arrays, the ones dnnexp's loader
gives (the real Fashion-MNIST files with ``--data-dir`` or in the Keras cache, else random
images of their shape: speed does not depend on pixel values):

- keras-tf, keras-jax: plain ``model.fit(x, y, validation_data=...)`` on NumPy arrays, Keras' defaults;
- keras-jax-spe50: the same on JAX with ``steps_per_execution=50``;
- torch, lightning: a plain PyTorch loop over a shuffling DataLoader, and a PyTorch Lightning
  Trainer, when torch (and lightning) are installed;
- dnnexp-tf, dnnexp-jax: ``dnnexp dataset=fashion_mnist model.units=[300,100]
  trainer.backend=...`` as the command runs it. dnnexp-jax runs twice on one fresh JAX
  compilation cache: the first run compiles (a user's first run of this architecture),
  the second loads what it compiled (every later run, and a sweep's other jobs).

Printed per loop and batch size: the first epoch's seconds, the steady epoch's (the median of
the epochs after the first), samples per second and GFLOP/s in steady state (validation's
forward passes counted), and the share of this machine's float32 matrix-multiply peak, measured
with NumPy in the same run. Then the ratios the targets name. Rates on a shared machine move by
10-40%, so ``--repeats`` runs every loop that many times and the table shows medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ENV, machine
from throughput import N_TRAIN, N_VAL, UNITS, fashion_mnist_dir, matmul_peak_gflops

LR = 0.01
LAYERS = [784, *UNITS, 10]
TARGETS = {  # (numerator, denominator, at least, goal)
    "fastest dnnexp / keras-jax-spe50, steady": ("dnnexp", "keras-jax-spe50", 1.0, 1.2),
    "fastest dnnexp / dnnexp-tf, steady": ("dnnexp", "dnnexp-tf", 1.4, None),
}


def epoch_flops() -> float:
    """Floating-point operations of one epoch: 2 per multiply-add; the training samples' forward pass,
    weight gradients and (above the first layer) input gradients, and the validation samples' forward pass."""
    pairs = list(zip(LAYERS, LAYERS[1:]))
    train = sum((2 if i == 0 else 3) * 2 * a * b for i, (a, b) in enumerate(pairs))
    forward = sum(2 * a * b for a, b in pairs)
    return N_TRAIN * train + N_VAL * forward


# ---------------------------------------------------------------- the loops, each run in its own process


def load_arrays(data_dir: str):
    from dnnexp.config import DatasetConfig
    from dnnexp.data import load

    data = load(DatasetConfig(name="fashion_mnist", data_dir=data_dir, val_size=N_VAL))
    assert len(data.x_train) == N_TRAIN, len(data.x_train)
    return data


def keras_loop(data_dir: str, batch_size: int, epochs: int, steps_per_execution: int) -> list[float]:
    import keras  # on the backend of KERAS_BACKEND, set by the parent

    data = load_arrays(data_dir)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                              *(keras.layers.Dense(u, activation="relu") for u in UNITS),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.SGD(LR), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)
    timer = keras_timer(keras)
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, validation_data=(data.x_val, data.y_val),
              callbacks=[timer], verbose=0)
    return timer.seconds


def keras_timer(keras):
    """A Keras callback that keeps the seconds of each epoch, its validation pass included."""

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return Timer()


def torch_modules(torch):
    from torch import nn

    layers = [nn.Flatten()]
    for a, b in zip(LAYERS, LAYERS[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # logits; the loss applies the softmax


def torch_loop(data_dir: str, batch_size: int, epochs: int) -> list[float]:
    import torch
    from torch.nn import functional
    from torch.utils.data import DataLoader, TensorDataset

    data = load_arrays(data_dir)
    torch.manual_seed(0)
    model = torch_modules(torch)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    train = DataLoader(TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)), batch_size=batch_size)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in val)
        seconds.append(time.perf_counter() - start)
    assert 0 <= correct <= N_VAL
    return seconds


def lightning_loop(data_dir: str, batch_size: int, epochs: int) -> list[float]:
    import lightning
    import torch
    from torch.nn import functional
    from torch.utils.data import DataLoader, TensorDataset

    data = load_arrays(data_dir)
    torch.manual_seed(0)

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_modules(torch)

        def training_step(self, batch, index):
            x, y = batch
            return functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, index):
            x, y = batch
            self.log("val_loss", functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    class Timer(lightning.Callback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):
            if not trainer.sanity_checking:
                self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    trainer = lightning.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    train = DataLoader(TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)), batch_size=batch_size)
    trainer.fit(Module(), train, val)
    return timer.seconds


def dnnexp_loop(data_dir: str, batch_size: int, epochs: int, backend: str, extra: list[str]) -> list[float]:
    import pandas as pd
    from hydra import compose, initialize_config_dir

    from dnnexp.backend_setup import choose
    from dnnexp.cli import config_dir
    from dnnexp.config import validate

    overrides = ["dataset=fashion_mnist", f"dataset.data_dir={data_dir}", f"dataset.val_size={N_VAL}",
                 f"model.units=[{UNITS[0]},{UNITS[1]}]", f"optimizer.lr={LR}", f"trainer.epochs={epochs}",
                 f"trainer.batch_size={batch_size}", f"trainer.backend={backend}", "trainer.verbose=false", *extra]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=overrides))
    choose(cfg.trainer)  # as the command does, before Keras loads
    from dnnexp.train import train

    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, Path(run_dir))
        return pd.read_csv(Path(run_dir) / "history.csv")["seconds"].tolist()


# name -> (what it needs installed, environment, function(data_dir, batch, epochs, dnnexp overrides))
LOOPS = {
    "keras-tf": ("tensorflow", {"KERAS_BACKEND": "tensorflow"}, lambda d, b, e, x: keras_loop(d, b, e, 1)),
    "keras-jax": ("jax", {"KERAS_BACKEND": "jax"}, lambda d, b, e, x: keras_loop(d, b, e, 1)),
    "keras-jax-spe50": ("jax", {"KERAS_BACKEND": "jax"}, lambda d, b, e, x: keras_loop(d, b, e, 50)),
    "torch": ("torch", {}, lambda d, b, e, x: torch_loop(d, b, e)),
    "lightning": ("lightning", {}, lambda d, b, e, x: lightning_loop(d, b, e)),
    "dnnexp-tf": ("tensorflow", {}, lambda d, b, e, x: dnnexp_loop(d, b, e, "tensorflow", x)),
    "dnnexp-jax": ("jax", {}, lambda d, b, e, x: dnnexp_loop(d, b, e, "jax", x)),
    "dnnexp-jax-cached": ("jax", {}, lambda d, b, e, x: dnnexp_loop(d, b, e, "jax", x)),
}


def run_loop(name: str, data_dir: str, batch_size: int, epochs: int, cache: Path, extra: list[str]) -> list[float]:
    """One loop in a fresh process: its seconds per epoch."""
    env = {**ENV, **LOOPS[name][1], "JAX_COMPILATION_CACHE_DIR": str(cache)}
    command = [sys.executable, __file__, "--run-one", name, "--data-dir", data_dir,
               "--batch-sizes", str(batch_size), "--epochs", str(epochs), *(["--set", *extra] if extra else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} at batch {batch_size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="runs of every loop; the table shows medians")
    parser.add_argument("--data-dir", help="a folder with the four Fashion-MNIST .gz files")
    parser.add_argument("--loops", nargs="+", choices=list(LOOPS), help="only these loops")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for dnnexp's runs")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)  # the child process's side
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(LOOPS[args.run_one][2](args.data_dir, args.batch_sizes[0], args.epochs, args.set)))
        return

    loops = [n for n in (args.loops or LOOPS) if importlib.util.find_spec(LOOPS[n][0]) is not None]
    skipped = [n for n in (args.loops or LOOPS) if n not in loops]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data_dir, source = fashion_mnist_dir(args.data_dir, scratch)
        print(f"machine: {machine()}")
        peak = matmul_peak_gflops()
        print(f"data: {source}; float32 matmul peak (NumPy, 4096^2, all threads): {peak:.1f} GFLOP/s")
        print(f"model 784-{UNITS[0]}-{UNITS[1]}-10, SGD lr={LR}, {N_TRAIN:,} training + {N_VAL:,} validation samples, "
              f"{args.epochs} epochs per run, median of {args.repeats} run(s)" + (f"; dnnexp with {' '.join(args.set)}" if args.set else "") + (f"; not installed: {', '.join(skipped)}" if skipped else ""))
        runs: dict[tuple[str, int], list[list[float]]] = {}
        for repeat in range(args.repeats):
            for batch in args.batch_sizes:
                cache = scratch / f"jax_cache_{repeat}_{batch}"  # fresh for each pair of dnnexp-jax runs
                for name in loops:
                    runs.setdefault((name, batch), []).append(run_loop(name, data_dir, batch, args.epochs, cache, args.set))
        print(f"measured under load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} (at the end)")
    results = {key: summarize(epochs) for key, epochs in runs.items()}
    print_table(results, loops, args.batch_sizes, peak)
    print_ratios(results, loops, args.batch_sizes)


def summarize(repeats: list[list[float]]) -> dict[str, float]:
    """first: median first epoch; steady: median over runs of each run's median later epoch."""
    return {"first": statistics.median(r[0] for r in repeats),
            "steady": statistics.median(statistics.median(r[1:] or r) for r in repeats)}


def print_table(results, loops, batch_sizes, peak) -> None:
    flops = epoch_flops()
    print(f"\n{'loop':<18} {'batch':>5} {'first s':>8} {'steady s':>9} {'samples/s':>10} {'GFLOP/s':>8} {'of peak':>8}")
    for batch in batch_sizes:
        for name in loops:
            r = results[(name, batch)]
            gflops = flops / r["steady"] / 1e9
            print(f"{name:<18} {batch:>5} {r['first']:>8.2f} {r['steady']:>9.2f} {N_TRAIN / r['steady']:>10,.0f} {gflops:>8.1f} {gflops / peak:>7.0%}")


def print_ratios(results, loops, batch_sizes) -> None:
    ours = [n for n in loops if n.startswith("dnnexp")]
    print()
    for batch in batch_sizes:
        if not ours:
            break
        fastest = min(ours, key=lambda n: results[(n, batch)]["steady"])
        steady = {n: results[(n, batch)]["steady"] for n in loops}
        steady["dnnexp"] = steady[fastest]
        for label, (num, den, least, goal) in TARGETS.items():
            if num in steady and den in steady:
                ratio = steady[den] / steady[num]  # speed ratio: their seconds over ours
                verdict = "meets" if ratio >= least else "MISSES"
                print(f"batch {batch}: {label} ({fastest}) = {ratio:.2f}x: {verdict} >= {least}x" + (f" (goal {goal}x)" if goal else ""))
        if "dnnexp-tf" in loops:
            tf_first = results[("dnnexp-tf", batch)]["first"]
            for name in (n for n in ours if n != "dnnexp-tf"):
                first = results[(name, batch)]["first"]
                print(f"batch {batch}: first epoch {name} {first:.2f} s against dnnexp-tf {tf_first:.2f} s: "
                      f"{'meets' if first <= tf_first else 'MISSES'} no slower")
        peers = [n for n in loops if not n.startswith("dnnexp")]
        if peers:
            best_peer = min(peers, key=lambda n: steady[n])
            print(f"batch {batch}: fastest peer {best_peer} {steady[best_peer]:.2f} s/epoch; fastest dnnexp {fastest} {steady[fastest]:.2f} s/epoch")


if __name__ == "__main__":
    main()
