"""Runs: ``train(spec)`` makes a run folder; ``Run.load(path)`` reads one back.

A run folder holds everything needed to inspect, resume and use a trained model, and nothing
that needs pickle::

    runs/<name>/
      config.yaml        the resolved, canonical spec (loads back to an equal RunSpec)
      meta.json          data shapes, classes, parameter counts, init gains, versions, device
      metrics.jsonl      one line of metrics per epoch
      checkpoints/last.safetensors   full training state (weights, optimiser, RNG, callbacks)
      model.safetensors  final weights and the fitted preprocessing
      summary.json       how training ended, final and test metrics
      tensorboard/, mlruns/, tracking.json   with output.tracking (deepwell.tracking)
      .lock              held (flock) while a process writes the folder (deepwell.folders)

The JSON files hold ``null`` where a value was NaN or infinite (a diverged epoch's loss).

In a data-parallel job (torchrun, ``deepwell train --nproc N``) every process trains and only
rank 0 writes the folder (deepwell.training.distributed).
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepwell.config import DataSpec, RunSpec, apply_overrides, load_spec
from deepwell.data import PREPROCESSORS, Splits, encoding_from_json, prepare_data
from deepwell.data.augment import build_augmentation
from deepwell.errors import CheckpointError, ConfigError, DataError, Interrupted, storage_error
from deepwell.folders import FolderLock, check_name_free, claim_run_folder, release_if_empty
from deepwell.models.network import resolve_arch
from deepwell.models.transfer import build_network, parse_unfreeze
from deepwell.runtime import configure_cpu, resolve_device, set_deterministic
from deepwell.training.callbacks import Callback, GradualUnfreezing, MetricsWriter
from deepwell.training.checkpoint import (atomic_write_text, json_safe, load_tensors, read_jsonl, remove_temporaries,
                                         save_tensors)
from deepwell.diagnostics.doctor import diagnose
from deepwell.diagnostics.probes import Probes, probe_blocks
from deepwell.reporting import write_report
from deepwell.tracking import TRACKERS, Tracker
from deepwell.training.distributed import DataParallel, process_rank
from deepwell.training.loop import CheckpointSaver, FitResult, TensorData, evaluate, fit, loss_function
from deepwell.training.progress import ProgressReporter

__all__ = ["Run", "train"]

_WEIGHTS, _CHECKPOINT = "model.safetensors", "checkpoints/last.safetensors"


def _write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")  # NaN -> null: JSON


def _run_dir(spec: RunSpec) -> Path:
    """Claim the run's folder (deepwell.folders): created here, atomically; never shared with another run."""
    name = spec.output.name or f"{spec.data.source.name}-{spec.model.arch}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    return claim_run_folder(spec.output.dir, name, named=spec.output.name is not None, overwrite=spec.output.overwrite)


def _meta(spec: RunSpec, splits: Splits, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    import deepwell

    return {
        "task": splits.task, "dataset": splits.name, "num_classes": splits.num_classes, "output_size": splits.output_size,
        "input_shape": list(splits.input_shape), "raw_input_shape": list(splits.raw_input_shape),
        "class_names": splits.class_names, "feature_names": splits.feature_names,
        "n_train": len(splits.x_train), "n_val": 0 if splits.x_val is None else len(splits.x_val), "n_test": len(splits.x_test),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "init_gains": model.init_gains, "device": str(device),
        **({"inputs": splits.encoding.describe()} if splits.encoding is not None else {}),
        **({"transfer": model.parameter_summary()} if hasattr(model, "parameter_summary") else {}),
        "versions": {"deepwell": deepwell.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def train(
    spec: RunSpec | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
    progress: str = "auto",
    callbacks: Sequence[Callback] = (),
) -> Run:
    """Train the network a spec describes and write its run folder.

    Args:
        spec: a RunSpec, a YAML path, or None for the defaults.
        overrides: ``key=value`` strings applied on top (as ``--set`` does).
        resume: a run folder to continue from its last checkpoint (its saved spec is used).
        progress: ``auto`` (bar on a terminal, lines otherwise), ``bar``, ``lines`` or ``none``.
        callbacks: extra callbacks for the training loop.

    Returns:
        the finished :class:`Run`.

    Raises:
        ConfigError / DataError / CheckpointError: bad spec, data, or resume folder.
        StorageError: the run folder could not be written (full disk, read-only, ...); says how to resume.
        Interrupted: SIGINT / SIGTERM stopped training at a step boundary; says how to resume.
    """
    spec, run_dir, checkpoint = _resolve(spec, overrides, resume)
    if run_dir is None and spec.output.name is not None and process_rank() == 0:  # rank 0 claims the folder
        check_name_free(spec.output.dir / spec.output.name, spec.output.overwrite)  # taken: say so now, before the data
    device = resolve_device(spec.device)
    parallel = DataParallel.from_env(device)  # None unless torchrun started several processes
    folder: dict[str, Any] = {"path": run_dir}  # the claimed folder and its lock, filled in by _train
    try:
        return _train(spec, run_dir, checkpoint, device if parallel is None else parallel.device, parallel, progress,
                      callbacks, folder)
    except BaseException as error:
        folder["failed"] = True
        path = folder["path"]
        if folder.get("claimed") and release_if_empty(path):  # a run that failed before writing leaves no stray folder
            path = None
        resumable = path is not None and (path / _CHECKPOINT).is_file()
        if isinstance(error, Interrupted):
            error.run_dir, error.resumable = path, resumable  # for its "Resume with ..." line
        elif isinstance(error, OSError) and _under(error.filename, path or spec.output.dir):  # not a data file's error
            raise storage_error(error, path if resumable else None) from None
        raise
    finally:
        if "lock" in folder:
            folder["lock"].release()
        if parallel is not None:
            parallel.close(failed=folder.get("failed", False))


def _under(filename: Any, folder: Path) -> bool:
    """Whether an OSError's file is ``folder`` or inside it (or above it: its parents are created too)."""
    if not isinstance(filename, (str, Path)):
        return False
    path, folder = Path(filename).absolute(), Path(folder).absolute()
    return path == folder or folder in path.parents or path in folder.parents


def _train(spec: RunSpec, run_dir: Path | None, checkpoint: Path | None, device: torch.device, parallel: DataParallel | None,
           progress: str, callbacks: Sequence[Callback], folder: dict[str, Any]) -> Run:
    main = parallel is None or parallel.is_main  # only rank 0 writes the run folder
    if device.type == "cpu":
        configure_cpu()  # flush-to-zero (a converged model otherwise crawls through denormals) and threads, once
    set_deterministic(spec.deterministic)
    splits = prepare_data(spec.data, seed=spec.seed)
    spec = spec.model_copy(deep=True)
    inputs = splits.encoding.describe() if splits.encoding is not None else None  # token ids / audio: the model's front-end
    spec.model.arch = resolve_arch(spec.model.arch, splits.input_shape, inputs)  # the saved spec names the real architecture
    if main:
        if run_dir is None:
            run_dir = folder["path"] = _run_dir(spec)
            folder["claimed"] = True
        folder["lock"] = FolderLock(run_dir)  # a second --resume of this folder is refused while this run writes
        if checkpoint is not None:
            remove_temporaries(run_dir)  # what atomic writes killed mid-way left (only this process writes here)
    if parallel is not None:
        run_dir = Path(parallel.broadcast_object(str(run_dir)))  # a timestamped name: rank 0's
    trackers: list[Tracker] = [TRACKERS.build(option, run_dir=run_dir, spec=spec.to_dict())
                               for option in spec.output.tracking] if main else []
    model = build_network(spec.model, splits.input_shape, splits.output_size, generator=torch.Generator().manual_seed(spec.seed),
                          inputs=inputs)
    model.to(device)
    data = TensorData(*(t.to(device) if t is not None else None for t in (splits.x_train, splits.y_train, splits.x_val, splits.y_val)))

    all_callbacks: list[Callback] = []
    if main:
        atomic_write_text(run_dir / "config.yaml", spec.to_yaml())
        _write_json(run_dir / "meta.json", _meta(spec, splits, model, device))
        saver = CheckpointSaver(run_dir / _CHECKPOINT, every=spec.train.checkpoint_every)
        # Trackers first: their writers are open when the probes' first measurement arrives.
        all_callbacks = [*trackers, MetricsWriter(run_dir / "metrics.jsonl"), saver, *callbacks, ProgressReporter(progress)]
        if spec.diagnostics.probes and probe_blocks(model):  # deepwell blocks: a Network, or a deepwell backbone's trainable ones
            count = spec.diagnostics.probe_examples
            probes = Probes(run_dir / "probes.jsonl", data.x_train[:count], data.y_train[:count],
                            loss_function(splits.task, spec.train), every=spec.diagnostics.every)
            probes.listeners += [tracker.listen_to_probes for tracker in trackers]
            all_callbacks.insert(len(trackers), probes)
    every = parse_unfreeze(spec.model.unfreeze)
    unfreezing = None
    if every is not None:  # on every process: it changes the model
        if not hasattr(model, "unfreeze_next"):
            raise ConfigError("model.unfreeze needs a pretrained backbone (model.backbone=...) with frozen blocks "
                              "(model.freeze=head_only or first:N); this model has none.")
        if parallel is not None:
            raise ConfigError("model.unfreeze (gradual unfreezing) does not run under --nproc / torchrun yet: DDP only "
                              "synchronises parameters that were trainable when it started. Train in one process.")
        unfreezing = GradualUnfreezing(model, every)
        all_callbacks.insert(0, unfreezing)  # before the probes and the checkpoint see the epoch
    # Augmentation: training batches only, after preprocessing; its own seeded generator, one per process.
    augment_seed = spec.seed + (parallel.rank if parallel is not None else 0)
    augment = build_augmentation(spec.data.augment, splits.input_shape, augment_seed, inputs=splits.encoding) if spec.data.augment else None
    if augment is not None:
        all_callbacks.append(augment)  # its generator's state goes into the checkpoints: a resumed run draws the same
    started = time.perf_counter()
    try:
        result = fit(model, data, spec.train, task=splits.task, seed=spec.seed, callbacks=all_callbacks,
                     resume_from=checkpoint, batch_transform=augment, distributed=parallel)
    except BaseException as error:
        for tracker in trackers:
            tracker.abort(error)
        raise
    seconds = time.perf_counter() - started

    if main:
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        state |= {f"preprocess.{k}": v for k, v in splits.preprocessor.state_tensors().items()}
        metadata = {"format": "deepwell-model", "version": "1"}
        if splits.encoding is not None:  # the fitted vocabulary / audio settings, for predict on raw text or audio
            metadata["inputs"] = json.dumps(splits.encoding.to_json())
        save_tensors(run_dir / _WEIGHTS, state, metadata=metadata)
        test = evaluate(model, splits.x_test.to(device), splits.y_test.to(device), splits.task)
        summary = _summary(result, test, seconds)
        if unfreezing is not None:
            summary["unfreezing"] = [{"epoch": epoch, "block": block} for epoch, block in unfreezing.events]
            summary["transfer"] = model.parameter_summary()  # trainable/frozen counts at the end
        _write_json(run_dir / "summary.json", summary)
        if spec.output.report:
            diagnose(run_dir)  # findings.json, read by the report and by `deepwell train`'s health line
            write_report(run_dir)
        for tracker in trackers:
            tracker.finish(run_dir, summary)
    if parallel is not None:
        parallel.barrier()  # the other processes return once rank 0 has completed the folder
    return Run(run_dir)


def _resolve(spec: RunSpec | str | Path | None, overrides: Sequence[str],
             resume: str | Path | None) -> tuple[RunSpec, Path | None, Path | None]:
    """The spec to run, plus the run folder and checkpoint when resuming."""
    if resume is None:
        if isinstance(spec, RunSpec):
            return (RunSpec.from_dict(apply_overrides(spec.to_dict(), overrides)) if overrides else spec), None, None
        return load_spec(spec, overrides), None, None
    run_dir = Path(resume)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"Cannot resume '{run_dir}': it has no config.yaml. Give a run folder made by `deepwell train`.")
    checkpoint = run_dir / _CHECKPOINT
    if not checkpoint.is_file():
        summary = run_dir / "summary.json"
        if summary.is_file():  # it ended before any checkpoint: say how, not "killed"
            ended = json.loads(summary.read_text()).get("message") or "it ended before its first checkpoint"
            raise CheckpointError(f"Cannot resume '{run_dir}': it has no checkpoint to continue from. {ended} "
                                  "Train it again with the changes suggested (a new run, not --resume).")
        raise CheckpointError(f"Cannot resume '{run_dir}': no checkpoint at {checkpoint} (it was killed before its first one).")
    return load_spec(run_dir / "config.yaml", overrides), run_dir, checkpoint


def _summary(result: FitResult, test: dict[str, float], seconds: float) -> dict[str, Any]:
    final = {k: v for k, v in result.history[-1].items()} if result.history else {}
    return {
        "status": result.stop_reason.value, "message": result.stop_message, "epochs_run": result.epochs_run,
        "steps": result.steps, "train_seconds": round(seconds, 3), "final": final,
        "test": {f"test/{k}": v for k, v in test.items()}, "early_stopping": result.early_stopping,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }


class Run:
    """A run folder: its spec, metrics, summary, and the trained model for prediction.

    Example::

        run = Run.load("runs/mnist1d-cnn1d-20261127-101500")
        labels = run.predict(x)          # class indices (classification) or values (regression)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise CheckpointError(f"'{self.path}' is not a run folder (no config.yaml). List runs with `deepwell runs`.")
        self.spec = load_spec(self.path / "config.yaml")
        self.meta: dict[str, Any] = self._json("meta.json")
        self._model: torch.nn.Module | None = None
        self._preprocessor = None
        self._encoding = None  # the fitted vocabulary / audio settings of a text or audio run

    load = classmethod(lambda cls, path: cls(path))

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
        return self._json("summary.json")

    @property
    def history(self) -> list[dict[str, float]]:
        return read_jsonl(self.path / "metrics.jsonl")  # a non-finite value (a diverged epoch) reads as None

    @property
    def model(self) -> torch.nn.Module:
        """The trained network (CPU, eval mode), loaded from model.safetensors."""
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        tensors, metadata = load_tensors(self.path / _WEIGHTS)
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
        preprocess = PREPROCESSORS.build(self.spec.data.preprocess)
        preprocess.load_state_tensors({k.removeprefix("preprocess."): v for k, v in tensors.items() if k.startswith("preprocess.")})
        self._model, self._preprocessor = model.eval(), preprocess

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
        if x.ndim >= 1 and tuple(x.shape[1:]) != expected:
            if x.ndim >= 2 and int(np.prod(x.shape[1:])) == size:
                x = x.reshape(len(x), *expected)
            else:
                got = tuple(x.shape[1:]) if x.ndim >= 2 else tuple(x.shape)
                raise DataError(
                    f"This run's model takes examples of shape {expected} ({size} values each); got examples of shape {got} "
                    f"({int(np.prod(got))} values). Give inputs with the same features as the training data."
                )
        if not torch.isfinite(x).all():
            raise DataError("The inputs contain NaN or infinite values; clean or impute them before predicting.")
        return x

    @torch.no_grad()
    def outputs(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw model outputs (logits or regression values) for raw inputs ``x``."""
        model = self.model
        return model(self._preprocessor(self._inputs(x)))

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
                              encoding=self._encoding)
        x = self._preprocessor(self._inputs(splits.x_test))
        return {f"test/{k}": v for k, v in evaluate(model, x, splits.y_test, self.meta["task"]).items()}
