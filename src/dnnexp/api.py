"""dnnexp from Python and Jupyter: ``run``, ``sweep``, ``compare`` and ``plots``, re-exported by ``dnnexp``.

``run`` and ``sweep`` go through the same entry point as the ``dnnexp`` command
(cli.execute): Hydra itself parses the overrides, composes, calls the callbacks, creates
the folders and .hydra files, and launches the jobs with the configured launcher and
sweeper. Calling Hydra's own entry point, rather than its compose API, is what keeps
them the command's equal; the price is that Hydra treats the process as its own, so
``_in_process`` puts back what it changes (see there).

Nothing heavy is imported at the top: ``import dnnexp`` loads no Hydra, pandas or TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dnnexp.errors import DnnexpError

if TYPE_CHECKING:
    import pandas as pd

    from dnnexp.hydra_callbacks import CommandResult
    from dnnexp.results.figures import Figures
    from dnnexp.results.stats import Report

PathLike = str | os.PathLike


def run(*overrides: str, output_dir: PathLike | None = None) -> dict[str, Any]:
    """Train one run, as ``dnnexp OVERRIDES`` does, and return its metrics (what its metrics.json holds).

    ``overrides`` are what you would type: ``dnnexp.run("activation=selu", "dataset.standardize=true")``.
    The run writes its folder as the command does, into ``output_dir`` if given
    (``hydra.run.dir``). Bad input raises :class:`DnnexpError` with the command's message.
    """
    from dnnexp.files import read_metrics

    # hydra.mode=RUN: one run even of a preset that is a sweep (+experiment=...); dnnexp.sweep runs the sweep.
    args = [*overrides, "hydra.mode=RUN", *([f"hydra.run.dir={output_dir}"] if output_dir is not None else [])]
    with _in_process():
        result = _execute(args)
    try:
        return read_metrics(result.run_dir)
    except FileNotFoundError:  # mode=plot_schedule writes its plot and no metrics
        return {}


def sweep(*overrides: str, sweep_dir: PathLike | None = None) -> pd.DataFrame:
    """Run a sweep, as ``dnnexp -m OVERRIDES`` does, and return its comparison table.

    Comma lists sweep (``"activation=relu,elu"``) and presets work (``"+experiment=activations"``).
    The table is the terminal's as numbers: one row per variant, the parameters that vary,
    the metrics (``<metric>_std`` over seeds), and for seed groups ``n``, ``vs_best`` (the
    noise verdict) and its p-values. The sweep folder (``sweep_dir`` if given) gets the same
    files as from the command; ``dnnexp.plots(table)`` draws its figures. Failed jobs are rows
    whose ``status`` says so; bad input raises :class:`DnnexpError`.
    """
    args = ["-m", *overrides, *([f"hydra.sweep.dir={sweep_dir}"] if sweep_dir is not None else [])]
    with _in_process():
        result = _execute(args)
    if result.report is None:
        raise DnnexpError(f"the sweep left no runs to compare in {result.sweep_dir}")
    return _table(result.report, {"paths": [str(result.sweep_dir)]})


def compare(*paths: PathLike, where: Iterable[str] | Mapping[str, Any] = (), group_by: str | list[str] | None = None,
            metrics: str | list[str] | None = None, claims: str | Iterable[str] = ()) -> pd.DataFrame:
    """The comparison table of any run folders, sweep folders or a parent such as outputs/, as ``dnnexp-report`` shows it.

    ``where`` keeps runs whose config key (or status) has a value: ``["activation=selu"]`` or
    ``{"activation": "selu"}``; ``group_by`` makes one row per value of these keys; ``metrics``
    chooses the metric columns; ``claims`` are checked besides the ones the runs' presets state
    (``"activation=selu > activation=relu"``, as ``dnnexp-report --claim``), and the verdicts
    are ``table.attrs["claims"]`` (see :func:`verdicts`). Bad options raise :class:`DnnexpError`
    with the report's message.
    """
    query = {"paths": [str(p) for p in paths or ["outputs"]], "where": _conditions(where),
             "group_by": _names(group_by), "metrics": _names(metrics), "claims": _claims(claims)}
    return _table(_report(query), query)


def verdicts(*paths: PathLike, claims: str | Iterable[str] = (), where: Iterable[str] | Mapping[str, Any] = ()) -> pd.DataFrame:
    """The claims section as a table: one row per relation (and per whole ordering): its test, effect with 95% interval, P(A > B), margin, seeds, round and verdict.

    ``paths`` are folders (the claims their presets state are checked, and ``claims``), or
    a table that ``sweep`` or ``compare`` returned. Empty when no claim is stated.
    """
    if len(paths) == 1 and hasattr(paths[0], "attrs"):
        stored = paths[0].attrs.get("claims")
        if stored is None:
            raise DnnexpError("this table was not made by dnnexp.sweep or dnnexp.compare; pass its folder instead")
        return stored
    return compare(*paths, where=where, claims=claims).attrs["claims"]


def plots(source: PathLike | pd.DataFrame, where: Iterable[str] | Mapping[str, Any] = (), group_by: str | list[str] | None = None,
          metrics: str | list[str] | None = None) -> Figures:
    """The learning curves (training dashed, validation solid) and the bars of a table, as matplotlib Figures.

    ``source`` is a table that ``sweep`` or ``compare`` returned (its runs, rows and
    options), or a folder (with ``compare``'s options). In Jupyter the result shows every
    figure inline; it is a dict of ``matplotlib.figure.Figure`` by name
    (``accuracy_curves``, ``loss_curves``, ``<metric>_bars``), each of which shows alone or
    saves with ``.savefig``. No pyplot: the notebook's backend and state stay as they were.
    """
    from dnnexp.results.figures import figures

    if hasattr(source, "attrs"):
        stored = dict(source.attrs.get("dnnexp") or {})
        if not stored:
            raise DnnexpError("this table was not made by dnnexp.sweep or dnnexp.compare; pass its folder instead")
        return figures(_report(stored))
    return figures(_report({"paths": [str(source)], "where": _conditions(where), "group_by": _names(group_by),
                            "metrics": _names(metrics)}))


def _execute(args: list[str]) -> CommandResult:
    from dnnexp.cli import execute

    return execute(args, prog="dnnexp")


def _report(query: dict[str, Any]) -> Report:
    from dnnexp.results.report import report_for
    from dnnexp.results.stats import ReportError

    try:
        return report_for([Path(p) for p in query["paths"]], where=query.get("where") or (),
                          group_by=query.get("group_by"), metrics=query.get("metrics"), claims=query.get("claims") or ())
    except ReportError as err:
        raise DnnexpError(str(err)) from None


def _table(report: Report, query: dict[str, Any]) -> pd.DataFrame:
    """The report's table as numbers, remembering how it was made so ``plots`` can draw the same rows."""
    from dnnexp.results.render import data_frame

    from dnnexp.results.claims import claims_frame

    table = data_frame(report)
    table.attrs["dnnexp"] = {"where": [], "group_by": None, "metrics": None, **query}
    table.attrs["claims"] = claims_frame([]) if report.claims is None else report.claims
    return table


def _claims(claims: str | Iterable[str]) -> list[str]:
    return [claims] if isinstance(claims, str) else list(claims)


def _conditions(where: Iterable[str] | Mapping[str, Any]) -> list[str]:
    if isinstance(where, Mapping):
        return [f"{key}={value}" for key, value in where.items()]
    return [where] if isinstance(where, str) else list(where)


def _names(names: str | list[str] | None) -> list[str] | None:
    if isinstance(names, str):
        return [n.strip() for n in names.split(",") if n.strip()]
    return None if names is None else list(names)


@contextlib.contextmanager
def _in_process() -> Iterator[None]:
    """Run Hydra's entry point inside a Python session and leave the session as it was.

    - HYDRA_FULL_ERROR=1 (Hydra's own switch) while it runs: a Hydra error then raises
      instead of being printed and turned into ``sys.exit(1)``, so it becomes a
      DnnexpError with the text the command prints, and a crash in training raises the
      original exception with its traceback.
    - Hydra configures logging for every run (its handlers on the root logger, one
      writing the run's dnnexp.log): the root logger's handlers and level are put back,
      so a second call neither repeats log lines nor writes into the first run's log.
      Hydra does it with ``logging.config.dictConfig``, which first flushes and closes every
      handler in the process (``logging._handlerList``): the session's own, and absl's,
      which closes the stream it was made with when that is no longer sys.stderr. Those are
      hidden from it for the call; logging has no public way to do so.
    - Hydra's global state (GlobalHydra, HydraConfig) is cleared, the joblib launcher's
      worker processes are stopped, and sys.argv (cli.execute) is restored.
    """
    import logging  # here, not at the top: it is a third of the time ``import dnnexp`` would take

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    existing = logging._handlerList[:]  # weak references to every handler made so far
    del logging._handlerList[:]
    from unittest import mock

    from hydra.errors import CompactHydraException

    try:
        with mock.patch.dict(os.environ, {"HYDRA_FULL_ERROR": "1"}):  # put back as it was, or unset, afterwards
            yield
    except CompactHydraException as err:  # what Hydra would print in place of a traceback
        raise DnnexpError(_hydra_message(err), exit_code=1) from None  # the command exits 1 after it
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        logging._handlerList[:] = existing + [ref for ref in logging._handlerList if ref() is not None]
        root.setLevel(level)
        _clear_hydra()
        _stop_joblib_workers()


def _hydra_message(err: Exception) -> str:
    """The text hydra._internal.utils.run_and_report prints for a CompactHydraException: it, and an OmegaConf cause."""
    from omegaconf.errors import OmegaConfBaseException

    cause = err.__cause__
    return str(err) + (f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else "")


def _clear_hydra() -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


def _stop_joblib_workers() -> None:
    """Stop the worker processes joblib keeps for reuse (each with TensorFlow loaded) after a joblib sweep."""
    if "joblib.externals.loky.reusable_executor" not in sys.modules:
        return
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
