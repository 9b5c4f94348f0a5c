"""The run folder read back: :class:`Run` opens one, shows its spec, metrics and summary, and predicts.

``deepwell.run.train`` writes the folder (its layout is described there); this module only reads it,
so a notebook, the CLI's ``evaluate`` / ``predict`` and the playground's saved runs share one reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepwell.config import DataSpec, load_spec
from deepwell.data import PREPROCESSORS, Preprocessor, build_imputer, encoding_from_json, prepare_data
from deepwell.data.preprocess import target_scale
from deepwell.errors import CheckpointError, ConfigError, DataError
from deepwell.models.transfer import build_network
from deepwell.training.checkpoint import load_tensors, read_jsonl
from deepwell.training.loop import evaluate

__all__ = ["Run", "WEIGHTS", "CHECKPOINT"]

WEIGHTS, CHECKPOINT = "model.safetensors", "checkpoints/last.safetensors"
_WEIGHTS, _CHECKPOINT = WEIGHTS, CHECKPOINT


class Run:
    """A run folder: its spec, metrics, summary, and the trained model for prediction.

    ``deepwell.train`` returns one; ``Run.load(path)`` (or ``Run(path)``) opens a finished or killed
    run's folder. Nothing is read until it is asked for: ``spec`` and ``meta`` at once, the model on
    first use. ``run.meta["class_names"]`` names the classes that ``predict``'s indices stand for.

    Attributes:
        path: the run folder.
        spec: the resolved :class:`RunSpec` it was trained with (config.yaml).
        meta: data shapes, classes, parameter counts, init gains, versions (meta.json).

    Example::

        run = Run.load("runs/mnist1d-cnn1d-20261127-101500")
        run.summary["test"]              # {'test/loss': 0.04, 'test/acc': 0.988}
        labels = run.predict(x)          # class indices (classification) or values (regression)
        names = [run.meta["class_names"][i] for i in labels]
        run.predict(x[0])                # one example, without the batch dimension
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise CheckpointError(f"Run folder '{self.path}' does not exist. Give the path of a run folder; "
                                  "`deepwell runs` lists them (--dir FOLDER for another parent folder).")
        if not (self.path / "config.yaml").is_file():
            raise CheckpointError(f"'{self.path}' is not a run folder (no config.yaml). List runs with `deepwell runs`.")
        self.spec = load_spec(self.path / "config.yaml")
        self.meta: dict[str, Any] = self._json("meta.json")
        self._model: torch.nn.Module | None = None
        self._preprocessor = None
        self._imputer: Preprocessor | None = None  # data.impute's fill values
        self._target: Preprocessor | None = None  # the regression target's standardisation (identity without)
        self._encoding = None  # the fitted vocabulary / audio settings of a text or audio run

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Open a run folder made by ``deepwell train`` (the same as ``Run(path)``).

        Raises:
            CheckpointError: ``path`` has no config.yaml (not a run folder).

        Example::

            run = Run.load("runs/mnist1d-cnn1d-20261127-101500")
            print(run.spec.model.arch, run.summary["status"])
        """
        return cls(path)

    # Notebook and terminal views, the learning curves, the doctor and the report (deepwell.notebook.html).
    def _repr_html_(self) -> str:
        from deepwell.notebook.html import run_html

        return run_html(self)

    def __repr__(self) -> str:
        from deepwell.notebook.html import run_text

        return run_text(self)

    def plot(self) -> Any:
        """The learning curves as a matplotlib Figure (shown inline when it ends a notebook cell); None before an epoch."""
        from deepwell.notebook.live import show_figures_inline
        from deepwell.reporting.figures import learning_curves_figure

        show_figures_inline()
        return learning_curves_figure(self.history, self.summary["test"] if (self.path / "summary.json").is_file() else None)

    def diagnose(self) -> Any:
        """The doctor's findings (as ``deepwell diagnose``); also writes findings.json. They display themselves."""
        from deepwell.diagnostics.doctor import diagnose  # the doctor reads run folders: imported when asked

        return diagnose(self.path)

    def report(self) -> Path:
        """Write report.html (as ``deepwell report``) and return its path."""
        from deepwell.reporting import write_report  # matplotlib loads only when a report is drawn

        return write_report(self.path)

    def _json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        if not path.is_file():
            raise CheckpointError(f"Run folder '{self.path}' has no {name}; the run did not finish writing. Resume it with "
                                  f"`deepwell train --resume {self.path}`.")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointError(f"'{path}' is corrupt ({error}).") from None

    @property
    def summary(self) -> dict[str, Any]:
        """How training ended and the test metrics (summary.json).

        Example::

            run.summary["status"], run.summary["test"]["test/acc"]   # ('completed', 0.988)
        """
        return self._json("summary.json")

    @property
    def history(self) -> list[dict[str, float]]:
        """One dict of metrics per epoch (metrics.jsonl); [] before the first epoch ends.

        Example::

            [row["val/acc"] for row in run.history]
        """
        return read_jsonl(self.path / "metrics.jsonl")  # a non-finite value (a diverged epoch) reads as None

    @property
    def model(self) -> torch.nn.Module:
        """The trained network (CPU, eval mode), loaded from model.safetensors."""
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        tensors, metadata = self._weights()
        if "inputs" in metadata:
            self._encoding = encoding_from_json(json.loads(metadata["inputs"]))
        inputs = self._encoding.describe() if self._encoding is not None else None
        model = build_network(self.spec.model, self.meta["input_shape"], self.meta["output_size"], pretrained=False, inputs=inputs)
        weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        missing, unexpected = set(model.state_dict()) - set(weights), set(weights) - set(model.state_dict())
        if missing or unexpected:
            raise CheckpointError(f"'{self.path / _WEIGHTS}' does not match the run's model: missing {sorted(missing)[:5]}, "
                                  f"unexpected {sorted(unexpected)[:5]}. The file belongs to another run or was edited.")
        try:
            model.load_state_dict(weights)
        except RuntimeError as error:
            raise CheckpointError(f"'{self.path / _WEIGHTS}' does not match the run's model: {error}") from None

        def saved(prefix: str) -> dict[str, torch.Tensor]:
            return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}

        preprocess = PREPROCESSORS.build(self.spec.data.preprocess).load_state_tensors(saved("preprocess."))
        self._imputer = build_imputer(self.spec.data.impute).load_state_tensors(saved("impute."))
        # Runs from before target standardisation have no target.* tensors: identity.
        scaled = "target.mean" in tensors
        self._target = PREPROCESSORS.build("standardize" if scaled else "none").load_state_tensors(saved("target."))
        self._model, self._preprocessor = model.eval(), preprocess

    def _weights(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """model.safetensors' tensors and metadata, with advice that fits the trained model (not a checkpoint)."""
        path = self.path / _WEIGHTS
        again = f"`deepwell train --resume {self.path}` writes it again from the run's last checkpoint"
        if not path.is_file():
            raise CheckpointError(f"Run folder '{self.path}' has no {_WEIGHTS}: training did not finish; {again}.")
        try:
            return load_tensors(path)
        except CheckpointError:
            raise CheckpointError(
                f"The trained model '{path}' is corrupt or not a safetensors file: {again}, "
                f"or train anew with `deepwell train {self.path / 'config.yaml'}`."
            ) from None

    @property
    def encoding(self) -> Any:
        """The fitted text vocabulary (``TextEncoding``) or audio settings (``AudioEncoding``); None for numeric data."""
        self.model  # loads it
        return self._encoding

    def _inputs(self, x: Any) -> torch.Tensor:
        """Raw inputs -> the tensor the model takes: texts are tokenised, WAV paths read, numbers checked."""
        if self.encoding is not None and (isinstance(x, (str, Path)) or (isinstance(x, (list, tuple)) and x
                                                                           and isinstance(x[0], (str, Path)))):
            x = self.encoding.encode(x)
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        expected = tuple(self.meta["raw_input_shape"])
        size = int(np.prod(expected))
        if tuple(x.shape) == expected:
            x = x.unsqueeze(0)  # one example, without the batch dimension
        if x.ndim >= 1 and tuple(x.shape[1:]) != expected:
            if x.ndim >= 2 and int(np.prod(x.shape[1:])) == size:
                x = x.reshape(len(x), *expected)
            else:
                got = tuple(x.shape[1:]) if x.ndim >= 2 else tuple(x.shape)
                raise DataError(
                    f"This run's model takes examples of shape {expected} ({size} values each); got examples of shape {got} "
                    f"({int(np.prod(got))} values). Give inputs with the same features as the training data."
                )
        if torch.isinf(x).any():
            raise DataError("The inputs contain infinite values; replace them with finite numbers before predicting.")
        return x

    @torch.no_grad()
    def outputs(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw model outputs (logits, or regression values in the target's units) for raw inputs ``x``.

        Missing inputs (NaN) are filled as in training (``data.impute``); a run trained without it refuses them.
        """
        model = self.model
        out = model(self._preprocessor(self._imputer(self._inputs(x))))
        return self._target.inverse(out) if self.meta["task"] == "regression" else out

    def predict(self, x: Any) -> torch.Tensor:
        """Class indices (classification) or predicted values (regression) for raw inputs ``x``.

        ``x``: numbers shaped like the training inputs; for a text run, texts (``["a new review"]``);
        for an audio run, WAV paths or waveforms at the run's sample rate.
        """
        out = self.outputs(x)
        return out.argmax(1) if self.meta["task"] == "classification" else out

    def predict_proba(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Class probabilities (softmax of the logits)."""
        if self.meta["task"] != "classification":
            raise ConfigError("predict_proba needs a classification run; this run is regression. Use predict.")
        return self.outputs(x).softmax(1)

    def evaluate(self, data: DataSpec | str | None = None) -> dict[str, float]:
        """Loss and accuracy on the test split of the run's data, or of ``data`` (a DataSpec or dataset option)."""
        if data is None:
            spec = self.spec.data
        elif isinstance(data, DataSpec):
            spec = data
        else:
            spec = self.spec.data.model_copy(update={"source": DataSpec(source=data).source})
        model = self.model  # loads the preprocessor (and the vocabulary) too
        splits = prepare_data(spec.model_copy(update={"preprocess": "none", "label_noise": 0.0}), seed=self.spec.seed,
                              encoding=self._encoding, imputer=self._imputer)
        x = self._preprocessor(self._inputs(splits.x_test))
        task = self.meta["task"]
        y = self._target(splits.y_test) if task == "regression" else splits.y_test
        return {f"test/{k}": v for k, v in evaluate(model, x, y, task, target_scale=target_scale(self._target),
                                                                precision=self.spec.train.precision).items()}
