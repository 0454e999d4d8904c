"""dnnexp from Python: run, sweep and compare as the commands do, one error class, nothing left behind."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys

import pytest
from conftest import TINY
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

import dnnexp
from dnnexp.api import _in_process
from dnnexp.results.render import display_frame
from dnnexp.results.report import report_for

VERBOSE_TINY = [*[o for o in TINY if not o.startswith(("trainer.epochs", "trainer.verbose"))], "trainer.epochs=1", "trainer.verbose=true"]


@pytest.fixture(scope="module")
def api_sweep(tmp_path_factory):
    """``dnnexp.sweep("activation=relu,elu", "trainer.seed=0,1", ...)``: 4 one-epoch runs, with what it printed
    and the process state before and after."""
    folder = tmp_path_factory.mktemp("api") / "sweep"
    before = (list(logging.getLogger().handlers), logging.getLogger().level, list(sys.argv), dict(os.environ))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        table = dnnexp.sweep(*VERBOSE_TINY, "activation=relu,elu", "trainer.seed=0,1", sweep_dir=folder)
    after = (list(logging.getLogger().handlers), logging.getLogger().level, list(sys.argv), dict(os.environ))
    return folder, table, out.getvalue(), before, after


def test_sweep_returns_the_table_the_terminal_shows_and_writes_the_sweep_folder(api_sweep):
    folder, table, printed, _, _ = api_sweep
    assert list(table["activation"])[0] in ("relu", "elu") and sorted(table["activation"]) == ["elu", "relu"]
    assert list(table["n"]) == [2, 2] and table["vs_best"].iloc[0] == "best"
    assert table["vs_best"].iloc[1].startswith(("within noise", "worse"))
    for _, row in table.iterrows():  # the numbers are the runs' own, averaged over the seeds
        runs = [json.loads((job / "metrics.json").read_text()) for job in folder.iterdir()
                if job.is_dir() and f"activation={row['activation']}" in (job / ".hydra" / "overrides.yaml").read_text()]
        assert row["val_accuracy"] == pytest.approx(sum(r["val_accuracy"] for r in runs) / 2)
    assert {"summary.csv", "report.md", "report.html", "multirun.yaml", "accuracy_curves.png", "loss_curves.png",
            "val_accuracy_bars.png"} <= {p.name for p in folder.iterdir()}
    # The table the terminal printed has the same rows, in the same order.
    shown = printed[printed.index("dnnexp sweep:"):]
    assert shown.index(table["activation"].iloc[0]) < shown.index(table["activation"].iloc[1])


def test_a_sweep_prints_one_line_per_job_then_the_table(api_sweep):
    _, _, printed, _, _ = api_sweep
    lines = [line for line in printed.splitlines() if line.startswith("#")]
    assert len(lines) == 4
    for num, line in enumerate(lines):
        assert line.startswith(f"#{num} ") and "activation=" in line and "trainer.seed=" in line
        assert " val_accuracy 0." in line and " completed " in line and line.endswith(" s")
    assert "dnnexp run:" not in printed and "best val accuracy" not in printed  # no single-run panel
    assert printed.index(lines[-1]) < printed.index("dnnexp sweep:")


def test_calls_leave_the_session_as_they_found_it(api_sweep):
    folder, _, _, before, after = api_sweep
    assert after == before  # the root logger's handlers and level, sys.argv, the environment (HYDRA_FULL_ERROR)
    assert not GlobalHydra.instance().is_initialized() and not HydraConfig.initialized()
    logging.getLogger("notebook").warning("a line of the notebook's own")
    assert not any("notebook's own" in log.read_text() for log in folder.rglob("*.log"))


def test_run_returns_the_metrics_and_prints_its_folder_unwrapped(tmp_path, capsys):
    run_dir = tmp_path / "a-run-folder-with-a-name-long-enough-to-wrap-at-thirty-three-columns"
    metrics = dnnexp.run(*VERBOSE_TINY, "activation=elu", output_dir=run_dir)
    assert metrics == json.loads((run_dir / "metrics.json").read_text()) and metrics["status"] == "completed"
    assert "activation=elu" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert f"dnnexp run: {run_dir}\n" in capsys.readouterr().out  # the panel's folder on one line, even piped


def test_compare_is_what_dnnexp_report_shows(api_sweep, capsys):
    from dnnexp.results.cli import main

    folder = api_sweep[0]
    table = dnnexp.compare(folder, where={"trainer.epochs": 1}, group_by="activation", metrics=["val_accuracy", "test_accuracy"])
    main([str(folder), "--where", "trainer.epochs=1", "--group-by", "activation", "--metrics", "val_accuracy,test_accuracy", "--format", "json"])
    assert json.loads(table.to_json(orient="records")) == json.loads(capsys.readouterr().out)


TYPOS = [
    (["activation=relux"], "activation=relux is not a choice; did you mean relu?"),
    (["dataset.standardise=true"], "dataset.standardise is not a key of dataset; did you mean dataset.standardize?"),
]
# In a sweep a bad value is one failed job, as on the command line; a typo refuses the whole command.
BAD_INPUT = [("run", ["trainer.epochs=abc"], "trainer.epochs must be an integer, got 'abc'"),
             *[("run", *typo) for typo in TYPOS], *[("sweep", *typo) for typo in TYPOS]]


@pytest.mark.parametrize("call, args, message", BAD_INPUT)
def test_bad_input_raises_dnnexp_error_with_the_commands_message_and_writes_nothing(tmp_path, monkeypatch, capsys, call, args, message):
    from dnnexp.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(dnnexp.DnnexpError) as raised:
        getattr(dnnexp, call)(*args)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["dnnexp", *(["-m"] if call == "sweep" else []), *args])
    with pytest.raises(SystemExit) as exited, _in_process():  # this process's logging, as after an API call
        main()
    assert exited.value.code == raised.value.exit_code == 2
    assert f"dnnexp: error: {raised.value}" in capsys.readouterr().err  # the command's line, word for word
    assert not list(tmp_path.iterdir())


def test_compare_errors_are_dnnexp_errors_with_the_reports_message(api_sweep, tmp_path, capsys):
    from dnnexp.results.cli import main

    with pytest.raises(dnnexp.DnnexpError, match="^--where key 'activaton' is not in these runs; they have: activation,"):
        dnnexp.compare(api_sweep[0], where=["activaton=relu"])
    with pytest.raises(dnnexp.DnnexpError, match="^no such folder: "):
        dnnexp.compare(tmp_path / "nothing")
    with pytest.raises(SystemExit):
        main([str(api_sweep[0]), "--where", "activaton=relu"])
    assert "--where key 'activaton' is not in these runs" in capsys.readouterr().err


def test_plots_of_a_table_are_figures_that_show_inline(api_sweep):
    from matplotlib.figure import Figure

    figures = dnnexp.plots(api_sweep[1])
    assert list(figures) == ["accuracy_curves", "loss_curves", "val_accuracy_bars"]
    assert all(isinstance(f, Figure) for f in figures.values())
    html = figures._repr_html_()  # what Jupyter shows
    assert html.count('<img alt="') == 3 and html.count("data:image/png;base64,") == 3
    # Per variant (relu, elu; two seeds each): the validation mean, labelled with its seeds, and the dashed training mean.
    lines = figures["loss_curves"].axes[0].get_lines()
    assert sorted(line.get_label() for line in lines if not line.get_label().startswith("_")) == [
        "activation=elu (n=2)", "activation=relu (n=2)"]
    assert sum(line.get_linestyle() == "--" for line in lines) == 2


def test_the_html_report_holds_the_command_table_and_plots(api_sweep):
    folder = api_sweep[0]
    page = (folder / "report.html").read_text()
    report = report_for([folder])
    for cell in display_frame(report).iloc[0]:
        assert f"<td>{cell}</td>" in page
    assert "dnnexp -m" in page and "activation=relu,elu trainer.seed=0,1" in page
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page and "http" not in page


def test_import_dnnexp_loads_neither_tensorflow_nor_hydra():
    import subprocess

    probe = "import sys, dnnexp; print(sorted(m for m in ('tensorflow', 'hydra', 'pandas', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_tensorflows_retracing_warning_is_dropped_and_other_warnings_kept():
    """Every new Keras model traces functions made from the same code, which TensorFlow counts as retracing."""
    from dnnexp.keras_import import tf

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        def step(x):
            return x * 2

        for _ in range(6):  # a new tf.function from the same code each time, as a sweep's models make them
            tf.function(step)(tf.constant(1.0))
        tf.get_logger().warning("a warning a user can act on")
    finally:
        tf.get_logger().removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert messages == ["a warning a user can act on"]


def chromium() -> str:
    """The headless browser the HTML report is checked in; CI installs it (.ci/run), elsewhere its absence skips."""
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed, and CI must render the HTML report (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium): the HTML report is not rendered")
    return found


def rendered_in_chromium(page: str, tmp_path) -> tuple[str, dict[str, tuple[int, int]]]:
    """Render an HTML page in headless Chromium: (the DOM after load, {each image's alt text: its decoded width, height}).

    A copy of the page gets a probe script that writes the images' sizes into it; the page itself needs none.
    """
    import re
    import subprocess

    probe = ("<script>window.addEventListener('load', () => { const out = document.createElement('pre'); out.id = 'sizes';"
             " out.textContent = [...document.images].map((i, k) => (i.alt || k) + ':' + i.naturalWidth + 'x' + i.naturalHeight).join(' ');"
             " document.body.append(out); });</script>")
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="sizes">([^<]*)</pre>', result.stdout)
    assert found, result.stderr[-2000:]
    sizes = {}
    for item in found.group(1).split():
        alt, _, size = item.rpartition(":")
        width, height = map(int, size.split("x"))
        sizes[alt] = (width, height)
    return result.stdout, sizes


def test_the_html_report_renders_offline_in_chromium_with_its_table_and_images(api_sweep, tmp_path):
    """Headless Chromium loads report.html from disk with no network, decodes every image and shows the table."""
    folder = api_sweep[0]
    dom, sizes = rendered_in_chromium((folder / "report.html").read_text(), tmp_path)
    assert "<table" in dom
    for cell in display_frame(report_for([folder])).to_numpy().ravel():
        assert f"<td>{cell}</td>" in dom
    assert len(sizes) == 3 and all(w > 0 and h > 0 for w, h in sizes.values())
