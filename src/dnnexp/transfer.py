"""Transfer learning: reuse a pretrained network, freeze it, then fine-tune its top.

The lecture ("Transfer Learning", "Building / Training DNN with Pretrained Model"):
reuse the lower layers of a network pretrained on similar data as the base, add new
layers on top, resize the data to the base's input, train with every reused layer
frozen, then unfreeze the top one or two reused layers and continue with a lower
learning rate. Here a run is a list of :class:`Phase` objects that train.py fits in
turn; this module builds the model and its phases from ``cfg.transfer``.

The source is a ``.keras`` file, the folder of an earlier dnnexp run, or (with
``transfer.source=null``) task A of the same dataset, pretrained on first use and
cached by the hash of its config, so any launcher (sequential or parallel) can chain
a pretraining and the runs that reuse it in one command.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from rich.console import Console

from dnnexp.keras_import import keras
from dnnexp.config import Config, ConfigError, TransferConfig, config_hash, phase_epochs
from dnnexp.data import Data, DataError
from dnnexp.files import METRICS, MODEL, SOURCE_CONFIG, read_metrics, write_atomic
from dnnexp.model import build_model, dropout_flags, hidden_block, hidden_blocks, output_layer, output_penalty

# Layers that adapt the target's images to the source's input; never trained.
ADAPTER_PREFIX = "resize"
CHANNEL_MAP = f"{ADAPTER_PREFIX}_channels"
# RGB -> grey with the ITU-R BT.601 luma weights (what tf.image.rgb_to_grayscale uses).
LUMA = [0.299, 0.587, 0.114]


class SourceModelError(DataError):
    """The pretrained model is missing, unreadable, or does not fit; the message says which and what to do."""


@dataclass(frozen=True)
class Phase:
    """Epochs trained with the layers named in ``frozen`` fixed, at optimizer.lr * lr_factor."""

    name: str  # history.csv's phase column: train (from scratch), frozen, finetune
    epochs: int
    lr_factor: float = 1.0
    frozen: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Network:
    model: keras.Model
    phases: list[Phase]
    info: dict[str, Any]  # what metrics.json records about the reuse


# ----------------------------------------------------------------------------- the source


def prepare_source(cfg: Config, pretrain: Callable[[Config, Path], dict], console: Console) -> Path | None:
    """The source model's file: transfer.source, or task A trained now (once per config hash)."""
    t = cfg.transfer
    if t.name in ("none", "mobilenet_v2"):
        return None
    if t.source is not None:
        path = Path(t.source)
        return path / MODEL if path.is_dir() else path
    return pretrained_task_a(cfg, pretrain, console)


def source_config(cfg: Config) -> Config:
    """Task A: this run's network and training choices on transfer.pretrain_classes of the same dataset and split."""
    t = cfg.transfer
    return dataclasses.replace(
        cfg,
        dataset=dataclasses.replace(cfg.dataset, classes=t.pretrain_classes, limit=None),
        trainer=dataclasses.replace(cfg.trainer, epochs=t.pretrain_epochs, seed=t.pretrain_seed),
        transfer=TransferConfig(),
    )


def pretrained_task_a(cfg: Config, pretrain: Callable[[Config, Path], dict], console: Console) -> Path:
    task_a = source_config(cfg)
    folder = Path(cfg.transfer.cache_dir) / config_hash(task_a)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / ".lock"):  # parallel jobs wait for one pretraining instead of repeating it
        if not (folder / METRICS).is_file():
            console.print(f"task A (classes {task_a.dataset.classes}): pretraining into {folder}")
            write_atomic(folder / SOURCE_CONFIG, OmegaConf.to_yaml(OmegaConf.structured(task_a)))
            pretrain(task_a, folder)
        status = read_metrics(folder).get("status")
    if status != "completed":
        raise SourceModelError(f"pretraining task A in {folder} ended with status {status!r}; change transfer.pretrain_* or delete the folder")
    return folder / MODEL


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive POSIX file lock; without fcntl (Windows) none, so run transfer sweeps there one job at a time."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_source(path: Path) -> keras.Model:
    """Read the source model without compiling it; any failure is one clear error."""
    if not path.is_file():
        raise SourceModelError(f"transfer.source: {path} does not exist")
    try:
        # safe_mode: a source that holds Python code (a Lambda layer's bytecode) is refused, never run.
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # a damaged zip, a foreign format, a missing custom object...
        raise SourceModelError(f"transfer.source: cannot read {path} as a Keras model ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    """Keras' loading errors run to many lines; the first says what went wrong."""
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


# ----------------------------------------------------------------------------- building


def build(cfg: Config, data: Data, source: Path | None) -> Network:
    """The model to train and its phases: from scratch, reusing a source, or on a Keras Applications base.

    Every model takes pixels in [0, 1]. A model from scratch standardizes them itself with
    dataset.standardize; a reused network keeps the input scaling it was trained with (a dnnexp
    source's own standardization layer, MobileNetV2's [-1, 1]), whatever this run's
    dataset.standardize says: its layers were fitted to those inputs, and statistics of this
    run's data would shift them.
    """
    if cfg.transfer.name == "none":
        model = build_model(cfg, data.input_shape, data.n_classes, data.standardization)
        return Network(model, [Phase("train", cfg.trainer.epochs)], {})
    return BASES[cfg.transfer.name](cfg, data, source)


def reuse_source(cfg: Config, data: Data, source_path: Path) -> Network:
    """Clone the source (its weights are copied, never shared), keep its lower blocks, add new layers on top."""
    t = cfg.transfer
    source = load_source(source_path)
    clone = keras.models.clone_model(source)
    clone.set_weights(source.get_weights())
    blocks = [weights for weights, _ in hidden_blocks(clone)]  # conv_i, then dense_i: input side first
    if not blocks:
        raise SourceModelError(f"{source_path} has no hidden blocks named conv_1, ... or dense_1, ... (not a dnnexp model)")
    k = len(blocks) if t.reuse_layers is None else t.reuse_layers
    if k > len(blocks):
        raise ConfigError(f"transfer.reuse_layers={k} but {source_path} has {len(blocks)} hidden blocks")
    if t.finetune_epochs and t.unfreeze_top > k:
        raise ConfigError(f"transfer.unfreeze_top={t.unfreeze_top} is more than the {k} reused hidden blocks")
    reused = _lower_layers(clone, set(blocks[k:]))
    flat = any(isinstance(layer, keras.layers.Flatten) for layer in reused)  # a CNN cut inside its conv blocks is not
    adapters = adapter_layers(data.input_shape, tuple(source.inputs[0].shape[1:]), t.resize, cfg.dataset.name)
    n_dense = sum(name.startswith("dense_") for name in blocks[:k])
    head = _new_head(cfg, n_dense, data.n_classes, flatten=not flat)
    model = _sequential(data.input_shape, [*adapters, *reused, *head])

    frozen = {layer.name for layer in (*adapters, *reused)}
    unfrozen = set(blocks[k - t.unfreeze_top : k])  # their weight layers; batch norm stays frozen
    info = {"transfer_source": str(source_path), "reused_layers": k}
    return Network(model, _phases(cfg, frozen, frozen - unfrozen), info)


def mobilenet_v2(cfg: Config, data: Data, source: Path | None) -> Network:
    """MobileNetV2 without its top (Keras Applications), frozen, under a new head; images resized to its input."""
    t = cfg.transfer
    shape = (t.input_size, t.input_size, 3)
    try:
        base = keras.applications.MobileNetV2(input_shape=shape, alpha=t.alpha, include_top=False, weights=t.weights)
    except Exception as err:  # no network, a partial download, a wrong weights file
        raise SourceModelError(
            f"cannot load MobileNetV2 weights={t.weights} ({_first_line(err)}); "
            "without network, put the weights file into ~/.keras/models or run with transfer.weights=null"
        ) from None
    adapters = adapter_layers(data.input_shape, shape, True, cfg.dataset.name)
    preprocess = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")  # pixels in [0, 1] -> MobileNetV2's [-1, 1]
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    model = _sequential(data.input_shape, [*adapters, preprocess, base, pool, *_new_head(cfg, 0, data.n_classes)])

    # Frozen batch norm runs in inference mode in Keras 3, so the base's statistics from ImageNet are
    # kept in both phases (what Keras' fine-tuning guide does with training=False).
    batchnorms = {layer.name for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)}
    with_weights = [layer.name for layer in base.layers if layer.weights and layer.name not in batchnorms]
    if t.finetune_epochs and t.unfreeze_top > len(with_weights):
        raise ConfigError(f"transfer.unfreeze_top={t.unfreeze_top} is more than the {len(with_weights)} layers with weights in MobileNetV2")
    fixed = {layer.name for layer in adapters}
    fixed_in_phase_2 = fixed | batchnorms | set(with_weights[: len(with_weights) - t.unfreeze_top])
    info = {"transfer_source": f"MobileNetV2(alpha={t.alpha}, weights={t.weights})", "reused_layers": len(with_weights)}
    return Network(model, _phases(cfg, fixed | {base.name}, fixed_in_phase_2), info)


BASES: dict[str, Callable[[Config, Data, Path | None], Network]] = {
    "frozen": reuse_source,
    "finetune": reuse_source,
    "mobilenet_v2": mobilenet_v2,
}


def _sequential(input_shape: tuple[int, ...], layers: list[keras.layers.Layer]) -> keras.Sequential:
    """A Sequential model, like build_model's, so MC Dropout and the diagnostics can run it layer by layer."""
    model = keras.Sequential([keras.Input(shape=input_shape, name="input"), *layers], name="transfer")
    for layer in model.layers:
        if layer.name == CHANNEL_MAP:
            layer.set_weights([_channel_kernel(*layer.kernel.shape)])
    return model


def _phases(cfg: Config, frozen: set[str], fixed_in_phase_2: set[str]) -> list[Phase]:
    n_frozen, n_finetune = phase_epochs(cfg.transfer, cfg.trainer.epochs)
    phases = [Phase("frozen", n_frozen, 1.0, frozenset(frozen))]
    if n_finetune:
        phases.append(Phase("finetune", n_finetune, cfg.transfer.lr_factor, frozenset(fixed_in_phase_2)))
    return phases


def _lower_layers(model: keras.Model, unused_blocks: set[str]) -> list[keras.layers.Layer]:
    """The source's layers in order up to the first block not reused (its standardization, Flatten, input
    dropout, adapters included)."""
    kept = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name == "output" or layer.name in unused_blocks:
            break
        kept.append(layer)
    return kept


def _new_head(cfg: Config, n_dense_reused: int, n_classes: int, flatten: bool = False) -> list[keras.layers.Layer]:
    """New dense blocks (transfer.new_units), numbered after the reused ones, then a new output layer."""
    new_units = cfg.transfer.new_units
    _, dropouts = dropout_flags(cfg, n_dense_reused + len(new_units))
    layers = [keras.layers.Flatten(name="flatten_new")] if flatten else []
    for i, width in enumerate(new_units, start=n_dense_reused + 1):
        layers += hidden_block(cfg, i, width, dropouts[i - 1])
    return [*layers, output_layer(n_classes, output_penalty(cfg))]


# ----------------------------------------------------------------------------- input shapes


def adapter_layers(have: tuple[int, ...], want: tuple[int, ...], resize: bool, dataset: str) -> list[keras.layers.Layer]:
    """Resize (bilinear) and map channels so the target's images fit the source's input layer (lecture: resize the data)."""
    if have == want:
        return []
    if not resize:
        raise ConfigError(
            f"the source model takes inputs of shape {want} but {dataset} has shape {have}; "
            "set transfer.resize=true to resize the images"
        )
    if len(have) not in (2, 3) or len(want) not in (2, 3):
        raise ConfigError(f"transfer.resize can only resize images ((height, width) or (height, width, channels)), not {have} to {want}")
    c_have = have[2] if len(have) == 3 else 1
    c_want = want[2] if len(want) == 3 else 1
    layers = []
    if len(have) == 2:
        layers.append(keras.layers.Reshape((*have, 1), name=f"{ADAPTER_PREFIX}_add_channel"))
    if have[:2] != want[:2]:
        layers.append(keras.layers.Resizing(want[0], want[1], name=f"{ADAPTER_PREFIX}_image"))
    if c_have != c_want:
        _channel_kernel(c_have, c_want)  # refuses what it cannot map, before anything is built
        layers.append(keras.layers.Dense(c_want, use_bias=False, trainable=False, name=CHANNEL_MAP))
    if len(want) == 2:
        layers.append(keras.layers.Reshape(want, name=f"{ADAPTER_PREFIX}_drop_channel"))
    return layers


def _channel_kernel(c_have: int, c_want: int) -> np.ndarray:
    """Grey -> colour copies the channel; colour -> grey takes the luma. A fixed 1x1 map, so it saves with the model."""
    if c_have == 1:
        return np.ones((1, c_want), dtype=np.float32)
    if c_have == 3 and c_want == 1:
        return np.array(LUMA, dtype=np.float32).reshape(3, 1)
    raise ConfigError(f"transfer.resize cannot map {c_have} channels to {c_want}")


# ----------------------------------------------------------------------------- phases


def apply_phase(model: keras.Model, phase: Phase) -> None:
    """Make every layer trainable except those the phase names, also inside a nested base model.

    Setting ``trainable`` on a layer sets it on all its sublayers, so a frozen nested model is
    not descended into and an unfrozen one is walked to freeze the sublayers the phase names.
    """
    for layer in model.layers:
        layer.trainable = layer.name not in phase.frozen
        if layer.trainable and isinstance(layer, keras.Model):
            apply_phase(layer, phase)
