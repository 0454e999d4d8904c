"""The `dnnexp` command as a user types it: exit codes, messages, files, start-up without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import TINY, run_cli


def test_help_and_cfg_do_not_import_tensorflow(tmp_path):
    probe = (
        "import sys\n"
        "from dnnexp.cli import main\n"
        "for argv in (['dnnexp', '--help'], ['dnnexp', '--cfg', 'job', 'activation=selu']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "activation: elu, gelu, leaky_relu, relu, selu" in out.stdout  # --help lists the groups
    assert "dnnexp +experiment=activations" in out.stdout  # ... after the usual commands
    assert "name: selu" in out.stdout  # --cfg job shows the composed config
    assert out.stdout.strip().endswith("TF_NOT_LOADED")


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
