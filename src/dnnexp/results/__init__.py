"""The results side: run folders -> comparison table -> terminal, files and figures. No TensorFlow.

Modules import one way, each owning one thing:

- ``columns``: the metrics a table can show, their labels and formats, and how a cell reads;
- ``runs``: finding run folders under the given paths and reading each into a row with its status;
- ``stats``: filtering, grouping seeds, means and standard deviations, the noise verdicts;
- ``inference``: the tests behind the claims (paired or Welch t, intervals, P(A > B), margins, the sequential design);
- ``claims``: the claims as data, judged relation by relation;
- ``render``: the table as a rich table, Markdown, HTML, CSV or JSON, and one run's summary panel;
- ``figures``: learning curves and bars as ``matplotlib.figure.Figure`` objects (no pyplot);
- ``sweep``: what the end of a multirun writes into its folder;
- ``cli``: the ``dnnexp-report`` command.

Nothing is imported here, so ``dnnexp-report`` loads matplotlib only when it draws.
"""
