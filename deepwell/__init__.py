"""deepwell: build and train deep networks with every technique of an introductory lecture, and
see why they train or fail.

Public API::

    import deepwell
    run = deepwell.train("examples/mnist1d_paper_cnn.yaml", overrides=["train.epochs=5"])
    run.summary["test"], run.predict(x)
    spec = deepwell.RunSpec(model={"arch": "mlp", "depth": 4})   # the Python API takes the same keys
    deepwell.compare(run.path, "runs/another", output="compare.html")
    run                                      # in a notebook: status, metrics, curves, findings
    result = deepwell.study("polynomial")    # = deepwell study polynomial
    grid = deepwell.sweep(overrides=["model.arch=mlp"], over={"model.width": [8, 32]}, seeds=2)
"""

__version__ = "0.1.0"

from deepwell.config import DataSpec, EarlyStoppingSpec, ModelSpec, OutputSpec, RunSpec, TrainSpec, load_spec
from deepwell.errors import CheckpointError, ConfigError, DataError, DeepwellError, TrainingError
from deepwell.run import Run, train
from deepwell.notebook.results import StudyResults, SweepResults, study, tour
import deepwell.sweep  # noqa: E402,F401  (a callable package: deepwell.sweep(spec, over=...) runs a grid sweep)


def compare(*runs, output=None):
    """Put runs side by side as one self-contained HTML page (see :func:`deepwell.reporting.compare.compare`).

    Example::

        page = deepwell.compare("runs/sigmoid", "runs/relu", output="compare.html")
        page.differences, page.metrics["test accuracy"]
    """
    from deepwell.reporting.compare import compare as _compare  # matplotlib loads only when a page is drawn

    return _compare(*runs, output=output)

__all__ = [
    "__version__",
    "RunSpec", "DataSpec", "ModelSpec", "TrainSpec", "EarlyStoppingSpec", "OutputSpec", "load_spec",
    "Run", "train", "compare", "study", "tour", "sweep", "StudyResults", "SweepResults",
    "DeepwellError", "ConfigError", "DataError", "CheckpointError", "TrainingError",
]
