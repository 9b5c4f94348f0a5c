"""Grid sweeps (``deepwell sweep``): the grid is the cross product x seeds, runs resume, ignored keys are named."""

from __future__ import annotations

import csv
import json

import pytest

from deepwell.config import load_spec
from deepwell.errors import ConfigError
from deepwell.sweep import BatchedExecutor, InProcessExecutor
from deepwell.sweep.grid import grid_tasks, make_executor, parse_over, run_grid

SMALL = ["data.source=moons:n=200", "model.arch=mlp", "model.norm=none", "train.epochs=2", "train.batch_size=50"]


def test_parse_over_splits_commas_and_reads_yaml_lists() -> None:
    over = parse_over(["model.width=4,16", "train.optimizer=['sgd:momentum=0.9,nesterov=true', adam]", "lr=0.1"])
    assert over == {"model.width": [4, 16], "train.optimizer": ["sgd:momentum=0.9,nesterov=true", "adam"], "lr": [0.1]}
    for bad, message in ((["model.width"], "key=value"), (["a=1", "a=2"], "twice"), ([], "at least one")):
        with pytest.raises(ConfigError, match=message):
            parse_over(bad)


def test_grid_is_the_cross_product_times_seeds_with_each_value_applied() -> None:
    spec = load_spec(overrides=SMALL)
    tasks = grid_tasks(spec, {"model.width": [4, 8, 16], "train.lr": [0.01, 0.1]}, seeds=2)
    assert len(tasks) == 3 * 2 * 2
    assert {(t.model.width, t.train.lr, t.seed) for t in tasks} == {(w, lr, s) for w in (4, 8, 16) for lr in (0.01, 0.1)
                                                                    for s in (0, 1)}
    assert all(t.params == {"model.width": t.model.width, "train.lr": t.train.lr} for t in tasks)
    assert len({t.run_id for t in tasks}) == len(tasks)


def test_a_bad_key_or_value_names_the_combination() -> None:
    spec = load_spec(overrides=SMALL)
    with pytest.raises(ConfigError, match="Unknown key 'model.widht'"):
        grid_tasks(spec, {"model.widht": [4]})
    with pytest.raises(ConfigError, match="train.lr=-1"):
        grid_tasks(spec, {"train.lr": [0.1, -1]})
    with pytest.raises(ConfigError, match="Unknown executor 'batchd'. Did you mean 'batched'"):
        make_executor("batchd")
    with pytest.raises(ConfigError, match="takes no address"):
        make_executor("batched", address="auto")


class _Counting(InProcessExecutor):
    def __init__(self) -> None:
        self.ran = 0

    def run(self, tasks):
        self.ran += len(tasks)
        yield from super().run(tasks)


def test_run_grid_writes_summary_and_figure_and_resumes(tmp_path) -> None:
    spec = load_spec(overrides=SMALL)
    over = {"model.width": [4, 32]}
    first = _Counting()
    result = run_grid(spec, over, seeds=2, executor=first, output=tmp_path, name="w")
    assert first.ran == 4 and (tmp_path / "w" / "sweep.png").stat().st_size > 10_000
    rows = list(csv.DictReader((tmp_path / "w" / "summary.csv").read_text().splitlines()))
    assert [int(r["model.width"]) for r in rows] == [4, 32] and all(r["n"] == "2" for r in rows)
    errors = [r["test_error"] for r in result.records if r["model.width"] == 4]
    assert float(rows[0]["test_error_mean"]) == pytest.approx(sum(errors) / 2, abs=1e-5)
    assert json.loads((tmp_path / "w" / "sweep.json").read_text())["runs"] == 4
    again = _Counting()
    resumed = run_grid(spec, over, seeds=2, executor=again, output=tmp_path, name="w")
    assert again.ran == 0 and [r["run_id"] for r in resumed.records] == [r["run_id"] for r in result.records]
    assert result.notes == []


def test_list_values_sweep_and_label_their_records(tmp_path) -> None:
    spec = load_spec(overrides=SMALL)
    result = run_grid(spec, {"model.hidden": [[4], [8, 8]]}, executor=InProcessExecutor(), output=tmp_path)
    assert [row["model.hidden"] for row in result.rows] == ["[4]", "[8, 8]"]
    assert [r["num_params"] for r in result.records] == [2 * 4 + 4 + 4 * 2 + 2, 2 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2]


def test_a_key_the_spec_ignores_is_named(tmp_path) -> None:
    # model.width shapes MLP dense layers; a CNN without hidden layers ignores it.
    spec = load_spec(overrides=["data.source=mnist1d:num_samples=300", "model.arch=cnn1d", "model.channels=[4]",
                                "train.epochs=1"])
    result = run_grid(spec, {"model.width": [4, 64]}, executor=BatchedExecutor(workers=1), output=tmp_path)
    assert len(result.notes) == 1 and "model.width changes nothing" in result.notes[0]  # named before training


def test_sweep_command_end_to_end_and_bad_input(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    args = [arg for item in SMALL for arg in ("--set", item)]
    code, out, _ = cli("sweep", "--over", "model.width=4,8", *args, "--executor", "in_process")
    assert code == 0 and "Sweep folder" in out and (tmp_path / "sweeps" / "width" / "records.jsonl").is_file()
    code, _, err = cli("sweep", "--over", "model.width", *args)
    assert code == 2 and "key=value" in err


class _Recorder:
    """A progress listener that records what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def start(self, total: int, done: int) -> None:
        self.events.append(("start", total, done))

    def training(self, label: str) -> None:
        self.events.append(("training", label))

    def epoch(self, epoch: int, epochs: int) -> None:
        self.events.append(("epoch", epoch, epochs))

    def run_done(self, record, params) -> None:
        self.events.append(("done", dict(params), record["seed"]))

    def close(self) -> None:
        self.events.append(("close",))


@pytest.mark.parametrize("executor", [InProcessExecutor, lambda: BatchedExecutor(workers=1)])
def test_a_key_model_hidden_overrides_is_named_before_training_and_progress_is_reported(tmp_path, executor) -> None:
    """The paper-MLP case: model.hidden sets the sizes, so every model.width built the same 15,210-parameter network."""
    spec = load_spec(overrides=[*SMALL, "model.hidden=[8, 8]"])
    progress = _Recorder()
    result = run_grid(spec, {"model.width": [4, 64]}, seeds=2, executor=executor(), output=tmp_path, progress=progress)
    kinds = [event[0] for event in progress.events]
    assert kinds[0] == "note" and kinds.index("note") < kinds.index("training")  # named before any training
    note = progress.events[0][1]
    assert note.startswith("model.width changes nothing") and "model.hidden=[8, 8]" in note and "114 parameters" in note
    assert result.notes == [note]  # not named twice
    assert ("start", 4, 0) in progress.events and kinds.count("done") == 4 and kinds[-1] == "close"
    assert ("epoch", 2, 2) in progress.events


def test_a_key_that_changes_the_network_is_not_named(tmp_path) -> None:
    from deepwell.sweep.grid import ignored_model_keys

    spec = load_spec(overrides=SMALL)
    assert ignored_model_keys(grid_tasks(spec, {"model.width": [4, 8], "model.init": ["he", "xavier"]}),
                              {"model.width": [4, 8], "model.init": ["he", "xavier"]}) == []


def test_sweep_command_shows_progress_lines(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    args = [arg for item in SMALL for arg in ("--set", item)]
    code, _, err = cli("sweep", "--over", "model.width=4,8", *args, "--executor", "in_process", "--progress", "lines")
    assert code == 0 and "sweep: 2 runs" in err and "run 1/2 done (model.width=4, seed 0)" in err
    assert "run 2/2 done (model.width=8, seed 0)" in err and "training model.width=8, seed 0: epoch 1/2" in err
