"""The names of the files in a run folder, and the columns of its tables: what every layer may refer to.

Plain names, no imports: the config refers to them (a transfer source must hold MODEL)
as much as the modules that write and read the files (files.py, train.py, results/).
"""

METRICS = "metrics.json"
HISTORY = "history.csv"
MODEL = "model.keras"
BACKUP = "backup.npz"  # the training state after the last completed epoch; gone once training ends
LOCK = ".dnnexp.lock"
SWEEP_RECORD = "multirun.yaml"  # what Hydra's sweeper writes into a sweep's folder as it starts
DIAGNOSTICS = "diagnostics.csv"
MC_DROPOUT = "mc_dropout.csv"  # evaluation.mc_samples: each class's spread over the passes
TENSORBOARD = "tensorboard"  # the folder of TensorBoard logs (logger=tensorboard)
SOURCE_CONFIG = "config.yaml"  # a pretrained task-A folder's config; Hydra's runs keep theirs in .hydra/
# `phase` is train for a run from scratch, frozen / finetune for the two phases of transfer learning.
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "phase"]
DIAGNOSTICS_COLUMNS = ["epoch", "layer", "metric", "value"]
MC_DROPOUT_COLUMNS = ["class", "val_std", "test_std"]
