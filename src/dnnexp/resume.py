"""Resume a killed run from its last completed epoch, ending exactly where an uninterrupted run ends.

This is the equivalent of Keras' ``BackupAndRestore``, written here because that callback
cannot give the same end metrics after a SIGKILL:

- it writes the weights and the epoch number as two files, in place, so a kill during or
  between the two leaves a truncated file, or one epoch's weights labelled with another;
- it saves neither the dropout layers' random-generator state nor the state of the other
  callbacks (EarlyStopping's patience counter and best weights, ReduceLROnPlateau's), so a
  resumed run would draw other dropout masks and stop or cut the rate at other epochs;
- the epoch it resumes from is known only inside ``fit``, after the input pipeline, whose
  shuffle order depends on the epoch (see ``train.EpochShuffle``), has been built.

Here the whole state (model variables including the random-generator states, optimizer
variables including its step count and learning rate, the callbacks' counters and best
weights, the epoch and the training phase) goes into one ``.npz`` that is replaced
atomically after every epoch.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dnnexp.keras_import import keras
from dnnexp.config import Config, config_hash, first_difference, hashed_config
from dnnexp.errors import RunFolderError
from dnnexp.files import write_atomic
from dnnexp.run_folder import another_config

# What each stateful Keras callback carries from one epoch to the next: the attributes
# its on_train_begin resets (best_weights is saved separately, as arrays). dnnexp's own
# callbacks name theirs in a ``resume_state`` class attribute.
CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


def state_names(callback: keras.callbacks.Callback) -> tuple[str, ...]:
    """The attributes of ``callback`` a resumed run must get back; () for a stateless one."""
    return CALLBACK_STATE.get(type(callback), getattr(callback, "resume_state", ()))


class TrainingBackup(keras.callbacks.Callback):
    """Saves the training state to ``path`` after every epoch and restores it when a run starts again.

    A run fits one phase after the other (transfer learning: frozen, then fine-tuning),
    each with its own optimizer and callbacks: :meth:`begin_phase` says which phase the
    next ``fit`` is, and the backup records it, so a resumed run skips the phases that had
    finished and continues the one that was cut. Put the callback after the phase's
    ``stateful`` callbacks, so it saves their state once they have seen the epoch and
    re-applies it after their ``on_train_begin`` has reset them.

    The backup carries the hash of ``config`` and the config itself, so a run of another
    config is refused (naming the first key that differs) instead of continuing this one.
    """

    def __init__(self, path: Path, config: Config):
        super().__init__()
        self.path = Path(path)
        self.config, self.config_hash = hashed_config(config), config_hash(config)
        self.saved = self._read() if self.path.exists() else None
        if self.saved and self.saved["meta"]["config_hash"] != self.config_hash:
            raise another_config(self.path.parent, first_difference(self.saved["meta"]["config"], self.config))
        self.stateful: list[keras.callbacks.Callback] = []
        self.phase, self.phase_start, self.final = "", 0, True

    @property
    def epochs_done(self) -> int:
        """The epochs the killed run had finished, 0 if there is no backup."""
        return self.saved["meta"]["epoch"] if self.saved else 0

    def resumes(self, phase: str) -> bool:
        """Whether the backup was written during ``phase``."""
        return self.saved is not None and self.saved["meta"]["phase"] == phase

    def finished_before(self, phase: str, order: list[str]) -> bool:
        """Whether ``phase`` (one of ``order``) had finished before the phase the backup was written in."""
        return self.saved is not None and order.index(phase) < order.index(self.saved["meta"]["phase"])

    @property
    def saved_phase_start(self) -> int:
        return self.saved["meta"]["phase_start"]

    def begin_phase(self, phase: str, start: int, stateful: list[keras.callbacks.Callback], final: bool) -> None:
        """The next fit is ``phase``, from epoch ``start``; ``final``: the last phase (delete the backup after it)."""
        self.phase, self.phase_start, self.final = phase, start, final
        self.stateful = [cb for cb in stateful if state_names(cb)]

    def restore(self, model: keras.Model) -> None:
        """Load the saved variables into ``model``, compiled for the phase the backup was written in."""
        model.optimizer.build(model.trainable_variables)  # its variables must exist to be assigned
        variables, saved = _training_variables(model), self.saved["variables"]
        if [v.shape for v in variables] != [tuple(a.shape) for a in saved]:
            raise RunFolderError(
                f"{self.path} was written by a run with another model or optimizer; "
                "resume with the same command, or delete it to start over"
            )
        for variable, value in zip(variables, saved):
            variable.assign(value)

    def on_train_begin(self, logs=None):
        if not self.resumes(self.phase):
            return
        meta, arrays = self.saved["meta"], self.saved["arrays"]
        for i, (callback, state) in enumerate(zip(self.stateful, meta["callbacks"])):
            for name, value in state.items():
                setattr(callback, name, value)
            best = sorted((k for k in arrays if k.startswith(f"best_{i}_")), key=lambda k: int(k.rsplit("_", 1)[1]))
            if best:
                callback.best_weights = [arrays[k] for k in best]

    def on_epoch_end(self, epoch, logs=None):
        variables = _training_variables(self.model)
        arrays = {f"var_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
        states = []
        for i, callback in enumerate(self.stateful):
            states.append({name: _plain(getattr(callback, name)) for name in state_names(callback)})
            for j, weights in enumerate(getattr(callback, "best_weights", None) or []):
                arrays[f"best_{i}_{j}"] = weights
        meta = {"epoch": epoch + 1, "phase": self.phase, "phase_start": self.phase_start,
                "n_variables": len(variables), "callbacks": states, "config_hash": self.config_hash, "config": self.config}
        arrays["meta"] = np.array(json.dumps(meta))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(self.path, buffer.getvalue())

    def on_train_end(self, logs=None):
        # Training is over; a kill from here on trains the run again from the start, to the same result.
        if self.final:
            self.path.unlink(missing_ok=True)

    def _read(self) -> dict[str, Any]:
        """{"meta", "arrays", "variables" (their values in order)}, or RunFolderError if the file is damaged."""
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                arrays = dict(saved)
            meta = json.loads(str(arrays.pop("meta")))
            variables = [arrays[f"var_{i}"] for i in range(meta["n_variables"])]
            missing = {"epoch", "phase", "phase_start", "callbacks", "config_hash", "config"} - meta.keys()
            if missing:  # refuse a backup of another version here, not in the middle of the run
                raise KeyError(", ".join(sorted(missing)))
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise RunFolderError(f"cannot read the backup {self.path} ({type(err).__name__}: {err}); delete it to start the run over") from None
        return {"meta": meta, "arrays": arrays, "variables": variables}


def _training_variables(model: keras.Model) -> list:
    # model.variables holds the weights and the dropout layers' seed-generator states.
    return [*model.variables, *model.optimizer.variables]


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python number, for JSON."""
    return value.item() if hasattr(value, "item") else value
