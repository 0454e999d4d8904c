"""Gradient-flow diagnostics: the lecture's backward pass, eq. (8), measured layer by layer.

The sensitivity of hidden layer k is s^k = s^{k+1} (W^{k+1})^T F'^k(n^k): a product over the
layers above it, so it shrinks (vanishing) or grows (exploding) geometrically with depth, and
by eq. (9) the kernel's gradient, a^{k-1}^T s^k, does the same. ``measure`` takes one forward
and backward pass on a fixed batch and reports, per hidden layer (conv_i, then dense_i):

- ``grad_norm``: the l2 norm of the gradient of the loss with respect to the layer's kernel;
- ``activation_mean``, ``activation_std``: of the block's activation output over the batch;

and ``GradientDiagnostics`` (a Keras callback) adds, after each epoch,
- ``update_ratio``: ||W_end - W_start|| / ||W_start|| over that epoch.

Batch normalization runs in training mode (batch statistics, as during fit) and its moving
averages are put back afterwards; dropout is off, so every measurement sees the same net.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dnnexp.keras_import import keras
from dnnexp.config import DiagnosticsConfig
from dnnexp.engines import engine
from dnnexp.files import DIAGNOSTICS, DIAGNOSTICS_COLUMNS, save_figure, write_csv
from dnnexp.model import forward, hidden_blocks

PLOT = "diagnostics.png"


def measure(model: keras.Model, x: np.ndarray, y: np.ndarray, loss: str) -> dict[str, dict[str, float]]:
    """{weight layer name: {grad_norm, activation_mean, activation_std}} on one batch; the model is left as it was."""
    blocks = hidden_blocks(model)
    kernels = [model.get_layer(weights).kernel for weights, _ in blocks]
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    loss_fn = keras.losses.get(loss)

    def loss_of():
        out, activations = forward(
            model, x, training_for=(keras.layers.BatchNormalization,), record=tuple(a for _, a in blocks)
        )
        target = y.reshape(out.shape) if out.shape[-1] == 1 else y  # one sigmoid unit: labels as a column
        return keras.ops.mean(loss_fn(target, out)) + sum(model.losses), activations

    grads, activations = engine.gradients(loss_of, kernels)
    for variable, before in zip(model.non_trainable_variables, saved):
        variable.assign(before)
    return {
        weights: {
            "grad_norm": float(np.linalg.norm(keras.ops.convert_to_numpy(grad))),
            "activation_mean": float(keras.ops.mean(activations[act])),
            "activation_std": float(keras.ops.std(activations[act])),
        }
        for (weights, act), grad in zip(blocks, grads)
    }


def verdict(ratio: float, cfg: DiagnosticsConfig) -> str:
    """vanishing / exploding / healthy for grad_ratio = first hidden layer's gradient norm / last's."""
    if not math.isfinite(ratio):
        return "undefined"  # a zero (dead) last layer or a non-finite gradient
    if ratio < cfg.vanishing_below:
        return "vanishing"
    if ratio > cfg.exploding_above:
        return "exploding"
    return "healthy"


def gradient_summary(first_measurement: dict[str, dict[str, float]], cfg: DiagnosticsConfig) -> dict[str, Any]:
    """metrics.json keys: grad_ratio (first / last hidden layer's kernel gradient norm) and its verdict."""
    norms = [m["grad_norm"] for m in first_measurement.values()]
    ratio = norms[0] / norms[-1] if norms[-1] > 0 else math.inf
    return {"grad_ratio": ratio, "gradient_verdict": verdict(ratio, cfg)}


class GradientDiagnostics(keras.callbacks.Callback):
    """Measures before training and after every epoch; writes diagnostics.csv as it goes and the PNG at the end."""

    def __init__(self, run_dir: Path, cfg: DiagnosticsConfig, x: np.ndarray, y: np.ndarray, loss: str,
                 rows: list[dict[str, Any]] | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.x, self.y = x[: cfg.batch_size], y[: cfg.batch_size]  # the same batch every time
        self.loss = loss
        self.rows = rows or []  # a resumed run's measurements so far, from diagnostics.csv
        self.first: dict[str, dict[str, float]] = {}
        self._kernels_at_start: dict[str, np.ndarray] = {}

    def _kernels(self) -> dict[str, np.ndarray]:
        return {w: keras.ops.convert_to_numpy(self.model.get_layer(w).kernel) for w, _ in hidden_blocks(self.model)}

    def _record(self, epoch: int, values: dict[str, dict[str, float]]) -> None:
        for layer, metrics in values.items():
            self.rows += [{"epoch": epoch, "layer": layer, "metric": k, "value": v} for k, v in metrics.items()]
        write_csv(self.run_dir / DIAGNOSTICS, self.rows, DIAGNOSTICS_COLUMNS)

    def on_train_begin(self, logs=None):
        if self.rows:  # a later phase of a transfer run, or a resumed run: "before training" was measured once
            if not self.first:  # resumed: take it from diagnostics.csv, not from the restored weights
                for row in (r for r in self.rows if r["epoch"] == 0):
                    self.first.setdefault(row["layer"], {})[row["metric"]] = row["value"]
            return
        self.first = measure(self.model, self.x, self.y, self.loss)
        self._record(0, self.first)

    def on_epoch_begin(self, epoch, logs=None):
        self._kernels_at_start = self._kernels()

    def on_epoch_end(self, epoch, logs=None):
        values = measure(self.model, self.x, self.y, self.loss)
        for layer, kernel in self._kernels().items():
            before = self._kernels_at_start[layer]
            values[layer]["update_ratio"] = float(np.linalg.norm(kernel - before) / np.linalg.norm(before))
        self._record(epoch + 1, values)

    def on_train_end(self, logs=None):
        plot(self.rows, self.run_dir / PLOT)

    def summary(self) -> dict[str, Any]:
        return gradient_summary(self.first, self.cfg)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Gradient norm by layer (log scale, one line per measured epoch) and activation std by layer."""
    import pandas as pd
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    table = pd.DataFrame(rows, columns=DIAGNOSTICS_COLUMNS)
    layers = list(dict.fromkeys(table["layer"]))
    epochs = sorted(table["epoch"].unique())
    colors = colormaps["viridis"](np.linspace(0, 1, max(len(epochs), 2)))
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    for ax, metric, title in ((axes[0], "grad_norm", "kernel gradient norm"), (axes[1], "activation_std", "activation std")):
        wide = table[table["metric"] == metric].pivot(index="layer", columns="epoch", values="value").reindex(layers)
        for color, epoch in zip(colors, epochs):
            ax.plot(range(1, len(layers) + 1), wide[epoch], marker="o", ms=3, color=color, label=f"epoch {epoch}")
        ax.set(title=f"{title} by layer", xlabel="hidden layer (input side first)", ylabel=title)
        ax.set_xticks(range(1, len(layers) + 1), layers, rotation=90 if len(layers) > 6 else 0, fontsize="small")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize="small")
    save_figure(fig, path)
