"""dnnexp: config-driven experiments on training deep neural networks.

From Python and Jupyter, the command line's ways in (docs/python-api.md):

- ``dnnexp.run("activation=selu")``: one run, as ``dnnexp activation=selu``; returns its metrics;
- ``dnnexp.sweep("activation=relu,elu")``: a sweep, as ``dnnexp -m ...``; returns its comparison table;
- ``dnnexp.compare("outputs/")``: the table of any run folders, as ``dnnexp-report``;
- ``dnnexp.verdicts("outputs/x", claims=["activation=selu > activation=relu"])``: the claims checked;
- ``dnnexp.plots(table)``: its learning curves and bars, shown inline in a notebook.

Bad input raises :class:`DnnexpError` with the message the command prints. Importing
dnnexp loads none of Hydra, pandas, matplotlib or TensorFlow: each call imports what it needs.
"""

from dnnexp.api import compare, plots, run, sweep, verdicts
from dnnexp.errors import DnnexpError

__version__ = "0.1.0"
__all__ = ["DnnexpError", "compare", "plots", "run", "sweep", "verdicts"]
