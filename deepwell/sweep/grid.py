"""Grid sweeps of any run spec: ``deepwell sweep SPEC --over model.width=4,16,64 --seeds 3``.

A grid sweep is the cross product of the swept keys' values, times seeds, each combination one
run of ``fit`` (a :class:`SweepTask`) built from the base spec with that combination applied as
``--set`` overrides would be, so every key a spec has can be swept and is validated the same way.
The runs go to an executor (batched by default: small models train as one ensemble) and land in a
folder that resumes::

    sweeps/width/
        spec.yaml       the base spec
        sweep.json      the swept keys and values, seeds, executor
        records.jsonl   one record per finished run (a rerun skips these)
        summary.csv     mean and std over seeds per combination
        sweep.png       the metric against the first swept key, one line per other combination

Example::

    spec = load_spec("examples/mnist1d_paper_mlp.yaml")
    result = run_grid(spec, {"model.width": [8, 32, 128]}, seeds=2, output="sweeps")
    print(result.rows[0]["test_error_mean"])
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepwell.config import RunSpec, apply_overrides, check_folder_name, did_you_mean
from deepwell.errors import ConfigError, Interrupted
from deepwell.options import rejoin_options
from deepwell.sweep.executors import EXECUTORS, Executor
from deepwell.sweep.store import run_sweep, summarize, write_csv
from deepwell.sweep.tasks import Record, SweepTask
from deepwell.training.checkpoint import atomic_write_text

__all__ = ["parse_over", "grid_tasks", "make_executor", "run_grid", "GridResult", "METRICS"]

METRICS = ("test_error", "train_error", "test_loss", "train_loss")


@dataclass
class GridResult:
    """A finished grid sweep: its folder, one record per run, one summary row per combination."""

    path: Path
    records: list[Record]
    rows: list[dict[str, Any]]
    keys: list[str]
    metric: str
    notes: list[str]


def parse_over(texts: Sequence[str]) -> dict[str, list[Any]]:
    """``["model.width=4,16", "train.lr=[0.01, 0.1]"]`` -> ``{"model.width": [4, 16], "train.lr": [0.01, 0.1]}``.

    Values are comma-separated YAML scalars; a value that itself holds commas (an option string
    such as ``sgd:momentum=0.9,nesterov=true``) goes in a YAML list: ``"train.optimizer=['sgd:momentum=0.9,nesterov=true', adam]"``.

    Raises:
        ConfigError: not ``key=values``, an empty or repeated key.
    """
    over: dict[str, list[Any]] = {}
    for text in texts:
        key, eq, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key or not raw:
            raise ConfigError(f"--over '{text}' is not key=value1,value2,...; write e.g. --over model.width=4,16,64.")
        if key in over:
            raise ConfigError(f"--over names '{key}' twice; give all its values once: --over {key}=a,b,c.")
        try:
            values = rejoin_options(yaml.safe_load(raw)) if raw.startswith("[") else [yaml.safe_load(part) for part in raw.split(",")]
        except yaml.YAMLError as error:
            raise ConfigError(f"--over '{text}': values are not valid YAML ({error}).") from None
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--over '{text}': expected a list of values, e.g. {key}=4,16,64.")
        over[key] = values
    if not over:
        raise ConfigError("A sweep needs at least one --over key=values (e.g. --over model.width=4,16,64).")
    return over


def grid_tasks(spec: RunSpec, over: Mapping[str, Sequence[Any]], seeds: int = 1) -> list[SweepTask]:
    """Every combination of the swept values, times ``seeds`` (seed = spec.seed + 0 .. seeds-1).

    Raises:
        ConfigError: a swept key the spec does not have, or a value it rejects (named with its combination).
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds}).")
    keys = list(over)
    tasks = []
    for values in itertools.product(*(over[key] for key in keys)):
        overrides = [f"{key}={json.dumps(value)}" for key, value in zip(keys, values)]
        try:
            run = RunSpec.from_dict(apply_overrides(spec.to_dict(), overrides))
        except ConfigError as error:
            raise ConfigError(f"Sweep combination {', '.join(overrides)}: {error}") from None
        params = {key: _label(value) for key, value in zip(keys, values)}
        tasks += [SweepTask(run.data, run.model, run.train, seed=run.seed + s, params=params, device=run.device)
                  for s in range(seeds)]
    return tasks


def _label(value: Any) -> Any:
    """A swept value as a record label: scalars as they are, lists and mappings as compact YAML (hashable, readable)."""
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return value


def make_executor(name: str, **options: Any) -> Executor:
    """An executor of ``EXECUTORS`` by name, given the options it takes (``workers``, ``address``, ...); None = default.

    Raises:
        ConfigError: unknown executor, or an option it does not take.
    """
    if name not in EXECUTORS:
        raise ConfigError(f"Unknown executor '{name}'.{did_you_mean(name, list(EXECUTORS))} Known: {', '.join(EXECUTORS)}.")
    factory = EXECUTORS[name]
    accepted = inspect.signature(factory).parameters
    given = {key: value for key, value in options.items() if value is not None}
    refused = [key for key in given if key not in accepted]
    if refused:
        takers = [n for n, f in EXECUTORS.items() if all(k in inspect.signature(f).parameters for k in refused)]
        raise ConfigError(f"The {name} executor takes no {', '.join(refused)}"
                          + (f"; that is for: {', '.join(takers)}." if takers else "."))
    return factory(**given)


def run_grid(spec: RunSpec, over: Mapping[str, Sequence[Any]], *, seeds: int = 1, executor: Executor | None = None,
             output: str | Path = "sweeps", name: str | None = None, progress: Any = None) -> GridResult:
    """Run (or resume) a grid sweep into ``output/name``; write its summary and figure.

    Args:
        spec: the base spec every run starts from.
        over: swept keys (dotted, as ``--set`` takes them) and their values.
        seeds: runs per combination.
        executor: default: :class:`BatchedExecutor`.
        output: parent folder; name: the sweep's folder (default: the swept keys' last parts).
        progress: a :class:`~deepwell.sweep.progress.SweepProgress`: runs done / total, the current epoch,
            and the notes on swept keys the spec ignores as soon as they are known (before training).

    Returns:
        the folder, records and summary rows (mean/std of test/train error and loss over seeds).
    """
    from deepwell.sweep.executors import BatchedExecutor

    tasks = grid_tasks(spec, over, seeds)
    keys = list(over)
    if name is not None:
        check_folder_name(name, "the sweep name (--name)")  # ../x or /x would write outside --out
    path = Path(output) / (name or "-".join(key.split(".")[-1] for key in keys))
    path.mkdir(parents=True, exist_ok=True)
    executor = executor or BatchedExecutor()
    atomic_write_text(path / "spec.yaml", spec.to_yaml())
    atomic_write_text(path / "sweep.json", json.dumps({"over": {k: list(v) for k, v in over.items()}, "seeds": seeds,
                                                        "executor": executor.name, "runs": len(tasks)}, indent=2))
    notes = ignored_model_keys(tasks, over)  # before training: a wasted sweep is named before it runs
    for note in notes:
        if progress is not None:
            progress.note(note)
    try:
        records = run_sweep(tasks, executor, path / "records.jsonl", progress=progress)
    except Interrupted as stop:
        stop.hint = f"The runs finished so far are kept in {path}; run the same command again to do the rest."
        raise
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in records)]
    rows = summarize(records, by=keys, metrics=metrics)
    write_csv(path / "summary.csv", rows)
    metric = "test_error" if "test_error" in metrics else "test_loss"
    _plot(rows, keys, metric, path / "sweep.png")
    named = {note.split(" ", 1)[0] for note in notes}
    later = [note for note in _no_effect(records, keys, over) if note.split(" ", 1)[0] not in named]
    for note in later:
        if progress is not None:
            progress.note(note)
    return GridResult(path, records, rows, keys, metric, notes + later)


def ignored_model_keys(tasks: Sequence[SweepTask], over: Mapping[str, Sequence[Any]]) -> list[str]:
    """Swept ``model.*`` keys whose every value builds the same network (same layers, same initial weights).

    Checked before training by building one network per value (the first combination of the other
    keys, the first seed): e.g. ``model.width`` when ``model.hidden`` sets the layer sizes, or on a
    CNN without dense layers.

    Example::

        tasks = grid_tasks(load_spec("examples/mnist1d_paper_mlp.yaml"), {"model.width": [8, 512]})
        ignored_model_keys(tasks, {"model.width": [8, 512]})   # ['model.width changes nothing: ...']
    """
    from deepwell.sweep.tasks import build_member

    notes = []
    for key in (k for k in over if k.startswith("model.") and len(over[k]) > 1):
        first = tasks[0]
        same_others = [t for t in tasks if t.seed == first.seed
                       and all(t.params.get(k) == first.params.get(k) for k in over if k != key)]
        models = [build_member(task)[0] for task in same_others]
        if len(models) > 1 and all(_same_network(models[0], other) for other in models[1:]):
            count = sum(p.numel() for p in models[0].parameters())
            notes.append(f"{key} changes nothing: every value ({', '.join(str(v) for v in over[key])}) builds the same "
                         f"network ({count:,} parameters), so this spec ignores it{_why_ignored(key, first)}. "
                         f"Check with `deepwell spec --set {key}=...`.")
    return notes


def _same_network(a: Any, b: Any) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return repr(a) == repr(b) and state_a.keys() == state_b.keys() and all(
        state_a[k].shape == state_b[k].shape and bool((state_a[k] == state_b[k]).all()) for k in state_a)


def _why_ignored(key: str, task: SweepTask) -> str:
    if key in ("model.width", "model.depth") and task.model.hidden is not None:
        return (f" (model.hidden={list(task.model.hidden)} sets the layer sizes; sweep it instead, e.g. "
                "--over 'model.hidden=[[32, 32], [512, 512]]')")
    if key in ("model.width", "model.depth") and task.model.arch.startswith("cnn"):
        return " (model.width/depth shape only MLP-style dense layers; for a CNN sweep model.channels or model.hidden)"
    return ""


def _no_effect(records: list[Record], keys: list[str], over: Mapping[str, Sequence[Any]]) -> list[str]:
    """Swept keys whose every value gave identical runs (a key this spec ignores, e.g. model.width for a CNN)."""
    notes = []
    for key in keys:
        if len(over[key]) < 2:
            continue
        outcomes: dict[tuple, set] = {}
        for record in records:
            others = tuple(record.get(k) for k in keys if k != key) + (record["seed"],)
            outcomes.setdefault(others, set()).add((record["num_params"], record.get("train_loss"), record.get("test_loss")))
        if all(len(found) == 1 for found in outcomes.values()):
            notes.append(f"{key} changed nothing: every value gave the same model and results, so this spec ignores it "
                         f"(e.g. model.width/depth shape only MLP-style dense layers; for a CNN sweep model.channels or "
                         f"model.hidden). Check with `deepwell spec --set {key}=...`.")
    return notes


def _plot(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> None:
    from deepwell.studies.figures import COLORS, new_figure, save_figure

    x_key, rest = keys[0], keys[1:]
    numeric = all(isinstance(row[x_key], (int, float)) and not isinstance(row[x_key], bool) for row in rows)
    figure, axes = new_figure(6.0, 4.0)
    axis = axes[0][0]
    lines: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault(tuple(row[k] for k in rest), []).append(row)
    for colour, (label, members) in zip(itertools.cycle(COLORS), lines.items()):
        positions = [row[x_key] for row in members] if numeric else list(range(len(members)))
        mean = [row[f"{metric}_mean"] for row in members]
        std = [row[f"{metric}_std"] for row in members]
        text = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(rest, label)) or metric.replace("_", " ")
        axis.errorbar(positions, mean, yerr=std, marker="o", capsize=3, color=colour, label=text)
        train = metric.replace("test", "train")
        if f"{train}_mean" in members[0]:
            axis.plot(positions, [row[f"{train}_mean"] for row in members], linestyle="--", color=colour, alpha=0.6)
        if not numeric:
            axis.set_xticks(positions, [str(row[x_key]) for row in members], rotation=20)
    values = [row[x_key] for row in rows]
    if numeric and min(values) > 0 and max(values) / min(values) >= 20:
        axis.set_xscale("log")
    axis.set_xlabel(x_key)
    axis.set_ylabel(f"{metric.replace('_', ' ')} (dashed: train)")
    axis.set_title(f"{metric.replace('_', ' ')} against {x_key} (mean +- std over seeds)")
    axis.legend(fontsize=8)
    save_figure(figure, path)

