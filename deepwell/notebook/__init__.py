"""deepwell in notebooks: objects that show themselves, a live training display, and the Python face of the CLI.

- :mod:`deepwell.notebook.html`: ``_repr_html_`` / ``__repr__`` views of runs, findings, studies and sweeps
  (self-contained HTML, readable in Jupyter's light and dark themes).
- :mod:`deepwell.notebook.live`: :class:`NotebookProgress`, the one display ``deepwell.train`` updates in
  place each epoch when it runs in a Jupyter kernel.
- :mod:`deepwell.notebook.results`: ``deepwell.study``, ``deepwell.sweep`` and ``deepwell.tour``, returning
  result objects (verdicts, tables as pandas DataFrames when pandas is installed, figures, folder).

Example (in a notebook)::

    import deepwell
    run = deepwell.train(overrides=["train.epochs=5"])   # live display while training
    run                                                  # status, metrics, curves, findings
"""

from deepwell.notebook.live import NotebookProgress, in_notebook

__all__ = ["NotebookProgress", "in_notebook"]
