"""deepwell: build and train deep networks with every technique of an introductory lecture, and
see why they train or fail.

Public API::

    import deepwell
    run = deepwell.train("examples/mnist1d_cnn.yaml", overrides=["train.epochs=5"])
    run.summary["test"], run.predict(x)
"""

__version__ = "0.1.0"

from deepwell.config import DataSpec, EarlyStoppingSpec, ModelSpec, OutputSpec, RunSpec, TrainSpec, load_spec
from deepwell.errors import CheckpointError, ConfigError, DataError, DeepwellError, TrainingError
from deepwell.run import Run, train

__all__ = [
    "__version__",
    "RunSpec", "DataSpec", "ModelSpec", "TrainSpec", "EarlyStoppingSpec", "OutputSpec", "load_spec",
    "Run", "train",
    "DeepwellError", "ConfigError", "DataError", "CheckpointError", "TrainingError",
]
