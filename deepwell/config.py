"""Validated run specifications: RunSpec = data + model + train + output.

A spec comes from a YAML file, ``--set key=value`` overrides, or Python, and is validated once
here. Option strings (``leaky_relu:0.1``, ``he:mode=fan_out``) become typed
:class:`~deepwell.registry.Option` objects; ``spec.to_dict()`` writes them back canonically, so a
resolved spec saved in a run folder loads back to an equal spec.

Example::

    spec = load_spec("examples/mnist1d_cnn.yaml", overrides=["train.epochs=5", "model.activation=gelu"])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from deepwell.errors import ConfigError, did_you_mean
from deepwell.options import (  # noqa: F401 (registry, option_kinds, resolve_kind, _REGISTRIES: re-exported)
    _REGISTRIES,
    _option,
    option_kinds,
    registry,
    rejoin_options,
    resolve_kind,
)

__all__ = [
    "DataSpec",
    "DiagnosticsSpec",
    "EarlyStoppingSpec",
    "ModelSpec",
    "OutputSpec",
    "RunSpec",
    "TrainSpec",
    "load_spec",
    "apply_overrides",
    "check_folder_name",
    "option_kinds",
    "resolve_kind",
]

class _Spec(BaseModel):
    # coerce_numbers_to_str: '--set output.name=2024' reads 2024 as a YAML int; a text field takes it as text.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True, coerce_numbers_to_str=True)


class DataSpec(_Spec):
    """Where the data comes from and how it is split, corrupted, preprocessed and augmented (training batches only).

    Example::

        DataSpec(source="digits", n_train=500, preprocess="standardize", augment=["rotate:10"])
        DataSpec(source="csv:path=houses.csv,target=price", val_fraction=0.2)
    """

    source: _option("dataset") = Field("mnist1d", description="dataset option, e.g. mnist1d, digits, csv:path=f.csv,target=y")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of the training split held out for validation")
    n_train: int | None = Field(None, ge=1, description="keep only this many training examples (after the validation split)")
    label_noise: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training labels replaced")
    label_noise_mode: Literal["incorrect", "uniform"] = Field(
        "incorrect", description="incorrect: a random wrong label (Nakkiran et al.); uniform: any label (MNIST-1D notebook)"
    )
    preprocess: _option("preprocessing") = Field("none", description="fitted on the training split only")
    impute: Literal["none", "mean", "median", "drop"] = Field(
        "none", description="missing inputs (blank CSV cells, NaN): none = error; mean / median per feature, fitted on the "
        "training split and saved with the model; drop = remove rows with a blank")
    strict_labels: bool = Field(False, description="odd integer class labels (not 0..K-1) and classes too small for the "
                                "splits are an error instead of a warning")
    standardize_target: bool = Field(True, description="regression: train on (y - mean) / std of the training split; "
                                     "predictions are mapped back (saved with the model)")
    augment: list[_option("augmentation")] = Field(
        default_factory=list,
        description="augmentations applied in order to training batches only, after preprocessing, e.g. [rotate:15, crop:0.7]",
    )


class ModelSpec(_Spec):
    """The network: architecture, activation, initialisation, normalisation, dropout.

    Example::

        ModelSpec(arch="mlp", depth=6, width=128, activation="leaky_relu:0.1", init="he", dropout="dropout:0.3")
        ModelSpec(arch="cnn1d", channels=[32, "pool", 64], norm="batchnorm")
    """

    arch: Literal["auto", "mlp", "cnn1d", "cnn2d", "embedding_bag"] = Field(
        "auto", description="auto: cnn1d for signals (C, L) and audio, cnn2d for images (C, H, W), mlp for feature vectors, "
        "embedding_bag (mean of word embeddings, then dense layers) for text"
    )
    depth: int = Field(2, ge=0, le=1000, description="number of hidden layers (MLP), when 'hidden' is not given")
    width: int = Field(128, ge=1, description="units per hidden layer (MLP), when 'hidden' is not given")
    hidden: list[Annotated[int, Field(ge=1)]] | None = Field(None, description="explicit hidden widths; overrides depth/width")
    channels: list[int | Literal["pool"]] = Field(
        [32, 32, "pool", 64, 64, "pool", 64], description="CNN conv blocks: an int is a conv block's channels, 'pool' halves the length"
    )
    kernel_size: int = Field(5, ge=1, description="CNN kernel size (odd keeps the length)")
    embedding_dim: int = Field(64, ge=1, description="text: size of the word embeddings (embedding_bag, cnn1d)")
    global_pool: bool = Field(True, description="CNN: average over positions before the head (else flatten)")
    activation: _option("activation") = "relu"
    init: _option("initializer") = Field("he", description="weight initialiser; its gain follows the activation")
    bias_init: _option("initializer") = "zeros"
    norm: _option("normalization") = Field("batchnorm", description="none, batchnorm[:momentum=0.1], layernorm")
    norm_position: Literal["before", "after"] = Field("before", description="normalisation before or after the activation")
    dropout: _option("dropout") = Field("none", description="dropout:0.5[,mode=classic] or dropconnect:0.3[,sample=batch]")
    residual: bool = Field(False, description="skip connections around equal-width hidden layers / conv blocks")
    backbone: str | None = Field(
        None, description="transfer: run:PATH, a run's model.safetensors, torchvision:NAME[,weights=FILE]; never downloads"
    )
    freeze: str = Field("none", description="with a backbone: none, head_only, first:N (blocks), pattern:REGEX (parameter names)")
    bn_policy: Literal["frozen", "train"] = Field("frozen", description="BatchNorm in frozen parts: frozen = eval mode")
    lr_mult_backbone: float = Field(1.0, ge=0.0, description="backbone learning rate = train.lr * this (discriminative rates)")
    unfreeze: str = Field("none", description="with a backbone: none, or every:E = unfreeze one more frozen block, "
                          "nearest the head first, every E epochs (gradual unfreezing)")


class EarlyStoppingSpec(_Spec):
    """Stop when the monitored metric stops improving (and optionally restore the best weights).

    Example::

        TrainSpec(epochs=100, early_stopping=EarlyStoppingSpec(monitor="val/loss", patience=5, restore_best=True))
    """

    monitor: str = "val/loss"
    mode: Literal["min", "max", "auto"] = "auto"
    patience: int = Field(10, ge=0)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class TrainSpec(_Spec):
    """The optimisation: epochs, batches, optimiser, schedule, penalty, early stopping.

    Example::

        TrainSpec(epochs=40, optimizer="sgd:momentum=0.9,nesterov=true", lr=0.05, schedule="cosine", penalty="l2:1e-4")
    """

    epochs: int = Field(25, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: _option("optimizer") = Field("adamw", description="sgd[:momentum,nesterov], adam, adamw[:weight_decay], rmsprop")
    lr: float = Field(3e-3, gt=0.0, description="peak learning rate")
    schedule: _option("schedule") = Field("onecycle", description="constant, step:every,gamma, cosine, onecycle[:pct_start]")
    warmup_epochs: float = Field(0.0, ge=0.0, description="linear warm-up from 0 over this many epochs")
    clip_grad_norm: float | None = Field(None, gt=0.0)
    sync_batchnorm: bool = Field(
        False, description="data-parallel runs (--nproc, torchrun) on GPUs: BatchNorm statistics over the global batch, "
        "not each process's shard")
    penalty: _option("penalty") = "none"
    early_stopping: EarlyStoppingSpec | None = None
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints (resume points)")
    eval_every: int = Field(1, ge=1, description="epochs between validation / clean-train evaluations")
    clean_train_examples: int | None = Field(
        1024, ge=1, description="training examples (a fixed sample) for the eval-mode train/loss_clean; null = all"
    )
    compile: Literal["off", "on", "auto"] = Field(
        "off", description="torch.compile the training forward: on, off, or auto (after epoch 1, when the rest of "
                           "the run repays the compile time; rule in deepwell.training.compile)")
    precision: Literal["fp32", "bf16", "tf32"] = Field(
        "fp32", description="number format of the products: fp32; bf16 = forward passes under torch.autocast in "
                            "bfloat16 (weights, gradients, optimiser stay float32; no loss scaling needed); tf32 = "
                            "TensorFloat-32 tensor cores for CUDA matmuls/convolutions (no effect on a CPU). "
                            "See deepwell.training.precision")
    cuda_graphs: bool = Field(
        True, description="on CUDA: run the training step's forward and backward as CUDA graphs (torch.compile "
                          "mode=reduce-overhead); probe samples and a last smaller batch run eagerly. Accepted and "
                          "ignored on a CPU and in data-parallel runs. See deepwell.training.graphs")


class DiagnosticsSpec(_Spec):
    """Probes that watch each layer while training (see deepwell.diagnostics.probes)."""

    probes: bool = Field(True, description="record per-layer health to probes.jsonl")
    every: int = Field(10, ge=1, description="steps between probe samples")
    probe_examples: int = Field(256, ge=1, description="size of the fixed probe batch (from the training split)")


def check_folder_name(name: str, what: str = "output.name") -> str:
    """``name`` when it is one folder name inside its parent folder; else a ConfigError saying why.

    Refused: empty, ``.``, ``..``, an absolute path, and any path separator: each would write
    outside (or straight into) the parent folder.

    Example::

        check_folder_name("lr-sweep")        # 'lr-sweep'
        check_folder_name("../x")            # ConfigError: ... a single folder name ...
    """
    separators = {"/", "\\"} | ({os.sep, os.altsep} - {None})
    if name in ("", ".", "..") or any(sep in name for sep in separators) or "\0" in name:
        raise ConfigError(f"{what} must be a single folder name (created inside the output folder); got {name!r}. "
                          "Use a name without '/', '\\', '.' or '..', e.g. 'my-run'; choose the parent folder with "
                          f"{'output.dir' if what == 'output.name' else '--out'}.")
    return name


class OutputSpec(_Spec):
    """Where the run folder goes, whether it gets a report, and which trackers copy it.

    Example::

        OutputSpec(dir="runs", name="baseline", tracking=["tensorboard"])
    """

    dir: Path = Path("runs")
    name: str | None = Field(None, description="run folder name (one folder name, no '/'); default: "
                             "<dataset>-<arch>-<timestamp>")
    overwrite: bool = Field(False, description="replace the files of a finished or unfinished run already in the named "
                            "folder (otherwise that is refused: resume it with --resume, or pick another name)")
    report: bool = Field(True, description="diagnose the run and write report.html when training ends")
    tracking: list[_option("tracker")] = Field(
        default_factory=list,
        description="also log to trackers, e.g. [tensorboard, mlflow] or mlflow:uri=http://host:5000,experiment=x; "
        "the run folder stays the record (needs pip install 'deepwell[tracking]')",
    )

    @pydantic.field_validator("name")
    @classmethod
    def _one_folder(cls, name: str | None) -> str | None:
        return None if name is None else check_folder_name(name)


class RunSpec(_Spec):
    """Everything that defines a run. Validated once; ``to_dict()`` is canonical and round-trips.

    Five sections (data, model, train, diagnostics, output) plus seed, device and deterministic;
    each section is a dict or its spec class, option strings are parsed into typed options.

    Example::

        spec = RunSpec(model={"arch": "mlp", "depth": 4, "activation": "tanh", "init": "xavier"}, train={"epochs": 10})
        print(spec.to_yaml())                      # every key, defaults included
        run = deepwell.train(spec)
    """

    seed: int = 0
    device: str = Field("auto", description="auto (GPU when present), cpu, cuda, cuda:1, ...")
    deterministic: bool = Field(False, description="bitwise-reproducible GPU kernels (slower); CPU runs always are")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSpec:
        """Validate a plain mapping (from YAML or JSON) into a RunSpec, raising ConfigError."""
        try:
            return cls.model_validate(dict(values))
        except pydantic.ValidationError as error:
            raise config_error(error, cls) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain, canonical mapping (option strings, no Python objects)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def config_error(error: pydantic.ValidationError, model: type[BaseModel]) -> ConfigError:
    """Turn pydantic's report into one ConfigError naming each bad key, with did-you-mean."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            section = _model_at(model, item["loc"][:-1])
            known = list(section.model_fields) if section else []
            key = str(item["loc"][-1])
            lines.append(f"Unknown key '{location}'.{did_you_mean(key, known)} Known keys here: {', '.join(known)}.")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{location}: {message} (got {item.get('input')!r})")
    return ConfigError("Invalid spec: " + " | ".join(lines) if len(lines) > 1 else "Invalid spec: " + lines[0])


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys, YAML values) to a nested mapping, in place.

    A key without a section (``lr=0.01``) is resolved when exactly one section has that field. In a
    bracketed list an option keeps its commas: ``[mlflow:uri=http://host:5000,experiment=x, tensorboard]``
    is two options (see :func:`rejoin_options`).

    Example::

        apply_overrides({}, ["train.lr=0.01", "output.tracking=[mlflow:uri=http://localhost:5000,experiment=mnist1d]"])
        # {'train': {'lr': 0.01}, 'output': {'tracking': ['mlflow:uri=http://localhost:5000,experiment=mnist1d']}}
    """
    for text in overrides:
        key, eq, raw = text.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"Override '{text}' is not key=value; write e.g. --set train.lr=0.01.")
        path = _resolve_key(key.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"Override '{text}': value is not valid YAML ({error}).") from None
        value = rejoin_options(value)
        target = values
        for part in path[:-1]:
            node = target.get(part)
            if node is None:
                node = target[part] = {}
            if not isinstance(node, dict):
                raise ConfigError(f"Override '{text}': '{part}' is not a section.")
            target = node
        target[path[-1]] = value
    return values


def _resolve_key(key: str) -> list[str]:
    path = key.split(".")
    if len(path) > 1 or key in RunSpec.model_fields:
        return path
    sections = [name for name, f in RunSpec.model_fields.items() if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]
    owners = [s for s in sections if key in RunSpec.model_fields[s].annotation.model_fields]
    if len(owners) == 1:
        return [owners[0], key]
    if len(owners) > 1:
        raise ConfigError(f"Key '{key}' is ambiguous: write one of {', '.join(f'{o}.{key}' for o in owners)}.")
    every = [f"{s}.{k}" for s in sections for k in RunSpec.model_fields[s].annotation.model_fields]
    every += [k for k in RunSpec.model_fields if k not in sections]
    leaves = [k.split(".")[-1] for k in every]
    hint = did_you_mean(key, leaves)
    raise ConfigError(f"Unknown key '{key}'.{hint} Known keys: {', '.join(every)}.")


def _yaml_error(path: Path, error: yaml.YAMLError) -> str:
    """One line naming the file, line and column of a YAML syntax error (not PyYAML's multi-line report)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    because = f" ({context})" if context else ""
    return (f"Spec file '{path}' is not valid YAML{where}: {problem}{because}. "
            "Fix the syntax there: 'key: value' pairs indented with spaces, lists as [a, b] or '- item' lines.")


def load_spec(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunSpec:
    """Read a YAML spec (or start from defaults), apply overrides, validate.

    Example::

        spec = load_spec("examples/mnist1d_deep_mlp.yaml", ["train.epochs=5", "lr=0.01"])

    Raises:
        ConfigError: missing or unparsable file, unknown key, invalid value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Spec file '{path}' not found. Give the path of a YAML file (see examples/).")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(_yaml_error(path, error)) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"Spec file '{path}' must hold a mapping (data:, model:, train:), not {type(loaded).__name__}.")
        values = loaded or {}
    apply_overrides(values, overrides)
    return RunSpec.from_dict(values)
