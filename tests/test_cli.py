"""The `dnnexp` command as a user types it: exit codes, messages, files, start-up without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import TINY, run_cli


def test_help_and_cfg_import_neither_backend(tmp_path):
    probe = (
        "import sys\n"
        "from dnnexp.cli import main\n"
        "for argv in (['dnnexp', '--help'], ['dnnexp', '--cfg', 'job', 'activation=selu']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('BACKEND_LOADED' if {'tensorflow', 'jax', 'keras'} & set(sys.modules) else 'NO_BACKEND_LOADED')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "activation: elu, gelu, leaky_relu, mish, prelu, relu, selu" in out.stdout  # --help lists the groups
    assert "dnnexp +experiment=activations" in out.stdout  # ... after the usual commands
    assert "name: selu" in out.stdout  # --cfg job shows the composed config
    assert out.stdout.strip().endswith("NO_BACKEND_LOADED")


@pytest.mark.parametrize(
    "args, message",
    [
        (["trainer.epochs=abc"], "trainer.epochs must be an integer, got 'abc'"),
        (["regularization=dropout", "regularization.rate=1.5"], "regularization.rate must be in [0, 1), got 1.5"),
        (["trainer.batch_size=0"], "trainer.batch_size must be in [1, inf], got 0"),
        (["activation=relux"], "dnnexp: error: activation=relux is not a choice; did you mean relu?"),
        (["dataset.val_size=9000"], "dataset.test_size=1000 + dataset.val_size=9000 must be less than the 5000"),
    ],
)
def test_bad_input_is_one_clear_message_and_nonzero_exit(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.rglob("metrics.json"))


def test_cli_run_writes_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, "trainer.verbose=true", "activation=elu", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"history.csv", "metrics.json", "model.keras"} <= {p.name for p in run_dir.iterdir()}
    assert "activation=elu" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert "test accuracy" in result.stdout and f"{metrics['test_accuracy']:.4f}" in result.stdout
    assert "Traceback" not in result.stderr


def test_user_config_dir_adds_choices(tmp_path):
    (tmp_path / "mine" / "activation").mkdir(parents=True)
    (tmp_path / "mine" / "activation" / "gentle_leaky.yaml").write_text("name: leaky_relu\nalpha: 0.01\n")
    result = run_cli("--config-dir", str(tmp_path / "mine"), "activation=gentle_leaky", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "alpha: 0.01" in result.stdout


def write_choices(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_user_config_dir_adds_any_keras_activation_optimizer_and_initializer(tmp_path):
    mine = write_choices(tmp_path / "mine", {
        "activation/hard_silu.yaml": "name: hard_silu\n",
        # Hydra reads dnnexp's conf/ first, so a file named like a built-in choice (lion.yaml) would be shadowed.
        "optimizer/slow_lion.yaml": "name: lion\nlr: 0.0003\nbeta_2: 0.95\n",
        "initializer/orthogonal.yaml": "name: orthogonal\ngain: 0.5\n",  # a key dnnexp does not know: Keras' argument
    })
    run_dir = tmp_path / "run"
    result = run_cli("--config-dir", str(mine), *TINY, "trainer.epochs=1", "activation=hard_silu", "optimizer=slow_lion",
                     "initializer=orthogonal", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"

    from dnnexp.keras_import import keras

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.get_layer("activation_1").get_config()["activation"] == "hard_silu"
    assert type(model.optimizer).__name__ == "Lion" and model.optimizer.beta_2 == 0.95
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0003)
    init = model.get_layer("dense_1").kernel_initializer
    assert type(init).__name__ == "Orthogonal" and init.gain == 0.5


def test_user_choice_keras_does_not_know_is_refused_at_the_door_without_tensorflow(tmp_path):
    write_choices(tmp_path / "mine", {
        "activation/typo.yaml": "name: hard_sliu\n",
        "optimizer/lion_momentum.yaml": "name: lion\nmomentum: 0.9\n",  # Lion takes no momentum
    })
    probe = (
        "import sys\n"
        "from dnnexp.cli import main\n"
        "def run(*args):\n"
        "    sys.argv = ['dnnexp', '--config-dir', 'mine', 'hydra.run.dir=run', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exit_:\n"
        "        print('EXIT', exit_.code)\n"
        "run('activation=typo')\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')\n"
        f"run({', '.join(repr(a) for a in TINY)}, 'optimizer=lion_momentum')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["EXIT", "2", "TF_NOT_LOADED", "EXIT", "2"], out.stderr
    assert ("activation.name must be one of relu, leaky_relu, prelu, elu, selu, tanh, sigmoid, gelu, swish, mish, "
            "or any other identifier keras.activations.get resolves (e.g. celu, exponential, glu); got 'hard_sliu'") in out.stderr
    assert "optimizer.momentum is not an argument of optimizer lion" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("metrics.json"))
