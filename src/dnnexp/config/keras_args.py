"""The arguments an activation, initializer or optimizer YAML passes to its Keras object, checked at the door.

Every key such a YAML sets, other than ``name`` (and the optimizer's ``lr``), is an argument
of the Keras object the name resolves to: ``+optimizer.epsilon=1e-4``, ``+optimizer.amsgrad=true``.
A key Keras' object does not take, or a value of the wrong type (``+optimizer.amsgrad=maybe``),
is refused before anything is written, not after TensorFlow has loaded. The tables below are
the objects' signatures (Keras 3.15), each argument with the type of its default (``object``:
Keras' default is None or an object, any value goes); tests/test_optim.py holds them equal to
``inspect.signature`` of the installed Keras. A table, not ``inspect`` at run time, because
resolving a name to its class imports Keras, and with it TensorFlow or JAX, which a refused
command must not wait for (and which would fix the backend before trainer.backend chooses it).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dnnexp.config.constraints import ConfigError
from dnnexp.typos import TYPE_NAMES, did_you_mean

_SEEDED = {"seed": int, "input_axes": object, "output_axes": object}
_NORMAL = {"mean": float, "stddev": float, "seed": int}
_UNIFORM = {"minval": float, "maxval": float, "seed": int}
_ORTHOGONAL = {"gain": float, "seed": int}
_IDENTITY = {"gain": float}
_CONSTANT = {"value": float}
_STFT = {"side": str, "window": object, "scaling": str, "periodic": bool}
_VARIANCE_SCALING = {"scale": float, "mode": str, "distribution": str, **_SEEDED}
INITIALIZER_ARGUMENTS: dict[str, dict[str, type]] = {
    "auto": {},  # dnnexp's own: the activation picks the initializer, with Keras' defaults
    **dict.fromkeys(("glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
                     "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform"), _SEEDED),
    **dict.fromkeys(("normal", "random_normal", "truncated_normal", "RandomNormal", "TruncatedNormal"), _NORMAL),
    **dict.fromkeys(("uniform", "random_uniform", "RandomUniform"), _UNIFORM),
    **dict.fromkeys(("orthogonal", "Orthogonal", "OrthogonalInitializer"), _ORTHOGONAL),
    **dict.fromkeys(("identity", "Identity", "IdentityInitializer"), _IDENTITY),
    **dict.fromkeys(("constant", "Constant"), _CONSTANT),
    **dict.fromkeys(("one", "ones", "zero", "zeros", "Ones", "Zeros"), {}),
    **dict.fromkeys(("stft", "STFT", "STFTInitializer"), _STFT),
    **dict.fromkeys(("variance_scaling", "VarianceScaling"), _VARIANCE_SCALING),
}

_AXIS = {"axis": int}
ACTIVATION_ARGUMENTS: dict[str, dict[str, type]] = {
    **dict.fromkeys(("exponential", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "linear", "log_sigmoid",
                     "mish", "relu6", "selu", "sigmoid", "silu", "softplus", "softsign", "sparse_plus",
                     "sparse_sigmoid", "swish", "tanh", "tanh_shrink"), {}),
    **dict.fromkeys(("celu", "elu"), {"alpha": float}),
    **dict.fromkeys(("glu", "log_softmax", "softmax", "sparsemax"), _AXIS),
    **dict.fromkeys(("hard_shrink", "soft_shrink"), {"threshold": float}),
    "gelu": {"approximate": bool},
    "relu": {"negative_slope": float, "max_value": float, "threshold": float},
    "squareplus": {"b": float},
    "threshold": {"threshold": float, "default_value": float},
    # Layers (model.ACTIVATION_LAYERS): activation.alpha is LeakyReLU's negative_slope; PReLU learns its slopes.
    "leaky_relu": {"alpha": float},
    "prelu": {"alpha_initializer": object, "alpha_regularizer": object, "alpha_constraint": object, "shared_axes": object},
}

# Every Keras optimizer's own arguments, besides learning_rate, the clipping ones and name (set by dnnexp's keys).
_OPTIMIZER = {"weight_decay": float, "use_ema": bool, "ema_momentum": float, "ema_overwrite_frequency": int,
              "loss_scale_factor": float, "gradient_accumulation_steps": int}
_ADAM = {"beta_1": float, "beta_2": float, "epsilon": float}
OPTIMIZER_ARGUMENTS: dict[str, dict[str, type]] = {name: {**_OPTIMIZER, **own} for name, own in {
    "adadelta": {"rho": float, "epsilon": float},
    "adafactor": {"beta_2_decay": float, "epsilon_1": float, "epsilon_2": float, "clip_threshold": float, "relative_step": bool},
    "adagrad": {"initial_accumulator_value": float, "epsilon": float},
    "adam": {**_ADAM, "amsgrad": bool},
    "adamax": _ADAM,
    "adamw": {**_ADAM, "amsgrad": bool},
    "ftrl": {"learning_rate_power": float, "initial_accumulator_value": float, "l1_regularization_strength": float,
             "l2_regularization_strength": float, "l2_shrinkage_regularization_strength": float, "beta": float},
    "lion": {"beta_1": float, "beta_2": float},
    "muon": {"adam_beta_1": float, "adam_beta_2": float, "adam_weight_decay": float, "epsilon": float, "exclude_layers": object,
             "exclude_embeddings": bool, "muon_a": float, "muon_b": float, "muon_c": float, "adam_lr_ratio": float,
             "momentum": float, "ns_steps": int, "nesterov": bool, "rms_rate": float},
    "nadam": _ADAM,
    "rmsprop": {"rho": float, "momentum": float, "epsilon": float, "centered": bool},
    "schedulefreeadamw": {**_ADAM, "warmup_steps": int},
    "sgd": {"momentum": float, "nesterov": bool},
}.items()}
# Optimizer arguments that other keys set.
SET_ELSEWHERE = {"learning_rate": "optimizer.lr", "clipvalue": "clipping=value", "clipnorm": "clipping=norm",
                 "global_clipnorm": "clipping=global_norm"}

ARGUMENTS = {"activation": ACTIVATION_ARGUMENTS, "initializer": INITIALIZER_ARGUMENTS, "optimizer": OPTIMIZER_ARGUMENTS}


def keras_arguments(group: Any) -> dict[str, Any]:
    """The keyword arguments of the group's Keras object: every key the YAML set but `name` and `lr`."""
    typed = {f.name: getattr(group, f.name) for f in dataclasses.fields(group) if f.name not in ("name", "lr", "args")}
    return {**{key: value for key, value in typed.items() if value is not None}, **group.args}


def collect_arguments(user: DictConfig, schemas: dict[str, type]) -> DictConfig:
    """Move the keys of an activation, initializer or optimizer YAML that ``schemas`` do not type into its `args`."""
    user = copy.deepcopy(user)
    for name, schema in schemas.items():
        node = user.get(name)
        if not isinstance(node, DictConfig):
            continue
        typed = {f.name for f in dataclasses.fields(schema)}
        extra = {key: node[key] for key in node if key not in typed}
        if extra:
            OmegaConf.set_struct(user, False)
            user[name] = {**{k: node[k] for k in node if k in typed}, "args": {**node.get("args", {}), **extra}}
    return user


def check_arguments(group_name: str, group: Any) -> None:
    """Refuse an argument the group's Keras object does not take, or a value not of its type."""
    table = ARGUMENTS[group_name].get(group.name)
    if table is None:
        return  # a name the schema refuses already
    for arg, value in keras_arguments(group).items():
        key = f"{group_name}.{arg}"
        if arg in SET_ELSEWHERE and group_name == "optimizer":
            raise ConfigError(f"{key} is set by {SET_ELSEWHERE[arg]}, not as an argument of the optimizer")
        if arg not in table:
            names = sorted(table)
            raise ConfigError(f"{key} is not an argument of {group_name} {group.name}{did_you_mean(arg, names, f'{group_name}.')} "
                              f"(arguments: {', '.join(names) or 'none'})")
        expected = table[arg]
        if not accepts(value, expected):
            shown = repr(value) if isinstance(value, str) else str(value)
            raise ConfigError(f"{key} must be {TYPE_NAMES[expected]}, got {shown}")


def accepts(value: Any, expected: type) -> bool:
    if expected is object or value is None:
        return True
    if expected is bool or isinstance(value, bool):
        return isinstance(value, bool) and expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)
