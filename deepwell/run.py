"""Runs: ``train(spec)`` makes a run folder; ``Run.load(path)`` (deepwell.run_folder) reads one back.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepwell.config import RunSpec, apply_overrides, load_spec
from deepwell.data import Preprocessor, Splits, prepare_data
from deepwell.data.preprocess import target_scale, target_scaler
from deepwell.data.augment import build_augmentation
from deepwell.errors import CheckpointError, ConfigError, Interrupted, storage_error
from deepwell.folders import FolderLock, check_name_free, claim_run_folder, release_if_empty
from deepwell.models.network import resolve_arch
from deepwell.models.transfer import build_network, parse_unfreeze
from deepwell.presets import apply_data_defaults
from deepwell.runtime import configure_cpu, resolve_device, set_deterministic
from deepwell.training.callbacks import Callback, GradualUnfreezing, MetricsWriter
from deepwell.training.checkpoint import (atomic_write_text, json_safe, load_state, remove_temporaries, save_tensors)
from deepwell.diagnostics.doctor import diagnose
from deepwell.diagnostics.probes import Probes, probe_blocks
from deepwell.reporting import write_report
from deepwell.tracking import TRACKERS, Tracker
from deepwell.training.distributed import DataParallel, process_rank
from deepwell.training.loop import CheckpointSaver, FitResult, TensorData, evaluate, fit, loss_function
from deepwell.training.progress import make_progress

__all__ = ["Run", "RunParts", "build_run", "train", "write_run_end", "write_run_start"]

from deepwell.run_folder import CHECKPOINT as _CHECKPOINT, WEIGHTS as _WEIGHTS, Run  # the reader of what train writes


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
        progress: ``auto`` (a live display in a notebook, a bar on a terminal, lines otherwise), ``notebook``,
            ``bar``, ``lines`` or ``none``.
        callbacks: extra callbacks for the training loop.

    Returns:
        the finished :class:`Run`.

    Raises:
        ConfigError / DataError / CheckpointError: bad spec, data, or resume folder.
        StorageError: the run folder could not be written (full disk, read-only, ...); says how to resume.
        Interrupted: SIGINT / SIGTERM stopped training at a step boundary; says how to resume.

    Example::

        run = deepwell.train("examples/mnist1d_deep_mlp.yaml", overrides=["train.epochs=10"])
        run = deepwell.train(overrides=["model.arch=mlp", "model.depth=4"], progress="none")
        run = deepwell.train(resume="runs/mnist1d-cnn1d-20261127-101500")   # a killed run, continued
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


@dataclass
class RunParts:
    """What a run trains: the resolved spec, its data splits, the built model and the tensors fit takes.

    Made by :func:`build_run`; :func:`train` and the playground (deepwell.serve) both start from it.
    ``target`` standardises a regression target (identity otherwise): ``data`` holds the scaled targets.
    """

    spec: RunSpec
    splits: Splits
    model: torch.nn.Module
    data: TensorData
    target: Preprocessor
    augment: Any = None


def build_run(spec: RunSpec, device: torch.device, *, rank: int = 0, splits: Splits | None = None) -> RunParts:
    """Prepare the data, resolve the architecture and build the model (with the spec's seed) for one run.

    Args:
        spec: the run's spec (not modified; the returned spec names the resolved architecture and the data defaults).
        device: where the model and the tensors go.
        rank: this process's rank in a data-parallel job (seeds its augmentation).
        splits: prepared data to reuse (the data section must be the one they were prepared from).

    Example::

        parts = build_run(RunSpec.from_dict({"data": {"source": "moons"}}), torch.device("cpu"))
        fit(parts.model, parts.data, parts.spec.train, task=parts.splits.task, batch_transform=parts.augment)
    """
    if device.type == "cpu":
        configure_cpu()  # flush-to-zero (a converged model otherwise crawls through denormals) and threads, once
    set_deterministic(spec.deterministic)
    splits = splits if splits is not None else prepare_data(spec.data, seed=spec.seed)
    spec = spec.model_copy(deep=True)
    inputs = splits.encoding.describe() if splits.encoding is not None else None  # token ids / audio: the model's front-end
    arch_was_auto = spec.model.arch == "auto"
    spec.model.arch = resolve_arch(spec.model.arch, splits.input_shape, inputs)  # the saved spec names the real architecture
    spec = apply_data_defaults(spec, splits.task, splits.raw_input_shape, len(splits.x_train), arch_was_auto)
    target = target_scaler(splits.y_train, splits.task == "regression" and spec.data.standardize_target)
    model = build_network(spec.model, splits.input_shape, splits.output_size, generator=torch.Generator().manual_seed(spec.seed),
                          inputs=inputs)
    model.to(device)
    data = TensorData(*(t.to(device) if t is not None else None
                        for t in (splits.x_train, target(splits.y_train), splits.x_val,
                                  None if splits.y_val is None else target(splits.y_val))))
    # Augmentation: training batches only, after preprocessing; its own seeded generator, one per process.
    augment = build_augmentation(spec.data.augment, splits.input_shape, spec.seed + rank, inputs=splits.encoding) \
        if spec.data.augment else None
    return RunParts(spec, splits, model, data, target, augment)


def write_run_start(run_dir: Path, parts: RunParts, device: torch.device) -> None:
    """The files a run folder has from its start: config.yaml (the resolved spec) and meta.json."""
    run_dir.mkdir(parents=True, exist_ok=True)  # train claims it first (deepwell.folders); the playground's save makes it
    atomic_write_text(run_dir / "config.yaml", parts.spec.to_yaml())
    _write_json(run_dir / "meta.json", _meta(parts.spec, parts.splits, parts.model, device))


def write_run_end(run_dir: Path, parts: RunParts, result: FitResult, seconds: float, device: torch.device,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The files of a finished fit: model.safetensors (weights + fitted preprocessing) and summary.json (plus ``extra``)."""
    model, splits, target = parts.model, parts.splits, parts.target
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state |= {f"preprocess.{k}": v for k, v in splits.preprocessor.state_tensors().items()}
    state |= {f"impute.{k}": v for k, v in splits.imputer.state_tensors().items()}
    state |= {f"target.{k}": v for k, v in target.state_tensors().items()}
    metadata = {"format": "deepwell-model", "version": "1"}
    if splits.encoding is not None:  # the fitted vocabulary / audio settings, for predict on raw text or audio
        metadata["inputs"] = json.dumps(splits.encoding.to_json())
    save_tensors(run_dir / _WEIGHTS, state, metadata=metadata)
    test = evaluate(model, splits.x_test.to(device), target(splits.y_test).to(device), splits.task,
                    target_scale=target_scale(target), precision=parts.spec.train.precision)
    summary = _summary(result, test, seconds) | (extra or {})
    _write_json(run_dir / "summary.json", summary)
    return summary


def _train(spec: RunSpec, run_dir: Path | None, checkpoint: Path | None, device: torch.device, parallel: DataParallel | None,
           progress: str, callbacks: Sequence[Callback], folder: dict[str, Any]) -> Run:
    main = parallel is None or parallel.is_main  # only rank 0 writes the run folder
    if checkpoint is not None:
        _check_checkpoint(checkpoint)  # before config.yaml and meta.json are rewritten
    parts = build_run(spec, device, rank=parallel.rank if parallel is not None else 0)
    spec, splits, model, data, augment = parts.spec, parts.splits, parts.model, parts.data, parts.augment
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

    all_callbacks: list[Callback] = []
    if main:
        write_run_start(run_dir, parts, device)
        saver = CheckpointSaver(run_dir / _CHECKPOINT, every=spec.train.checkpoint_every)
        # Trackers first: their writers are open when the probes' first measurement arrives.
        reporter = make_progress(progress)  # the notebook display when in a Jupyter kernel (auto)
        all_callbacks = [*trackers, MetricsWriter(run_dir / "metrics.jsonl"), saver, *callbacks, reporter]
        if spec.diagnostics.probes and probe_blocks(model):  # deepwell blocks: a Network, or a deepwell backbone's trainable ones
            count = spec.diagnostics.probe_examples
            probes = Probes(run_dir / "probes.jsonl", data.x_train[:count], data.y_train[:count],
                            loss_function(splits.task, spec.train), every=spec.diagnostics.every)
            probes.listeners += [tracker.listen_to_probes for tracker in trackers]
            if hasattr(reporter, "listen_to_probes"):  # the notebook display shows the latest health
                probes.listeners.append(reporter.listen_to_probes)
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
    if augment is not None:
        all_callbacks.append(augment)  # its generator's state goes into the checkpoints: a resumed run draws the same
    started = time.perf_counter()
    try:
        result = fit(model, data, spec.train, task=splits.task, seed=spec.seed, callbacks=all_callbacks,
                     resume_from=checkpoint, batch_transform=augment, distributed=parallel,
                     target_scale=target_scale(parts.target))
    except BaseException as error:
        for tracker in trackers:
            tracker.abort(error)
        raise
    seconds = time.perf_counter() - started

    if main:
        extra = None if unfreezing is None else {  # trainable/frozen counts at the end
            "unfreezing": [{"epoch": epoch, "block": block} for epoch, block in unfreezing.events],
            "transfer": model.parameter_summary()}
        summary = write_run_end(run_dir, parts, result, seconds, device, extra)
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


def _check_checkpoint(checkpoint: Path) -> None:
    """Read the checkpoint a resume starts from, so that a corrupt one fails before the run folder is touched."""
    try:
        load_state(checkpoint)
    except CheckpointError:
        run_dir = checkpoint.parent.parent
        raise CheckpointError(f"Cannot resume '{run_dir}': its checkpoint '{checkpoint}' is corrupt or not a deepwell "
                              f"checkpoint, so its epochs are lost. Train again from the start with "
                              f"`deepwell train {run_dir / 'config.yaml'}` (a new run folder).") from None


def _summary(result: FitResult, test: dict[str, float], seconds: float) -> dict[str, Any]:
    final = {k: v for k, v in result.history[-1].items()} if result.history else {}
    return {
        "status": result.stop_reason.value, "message": result.stop_message, "epochs_run": result.epochs_run,
        "steps": result.steps, "train_seconds": round(seconds, 3), "final": final,
        "test": {f"test/{k}": v for k, v in test.items()}, "early_stopping": result.early_stopping,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
