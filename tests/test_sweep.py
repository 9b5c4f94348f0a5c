"""Sweeps: the batched ensemble equals separate ``fit`` trainings; resume skips finished runs; summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.errors import ConfigError
from deepwell.models import build_model
from deepwell.sweep import (
    BatchedExecutor,
    InProcessExecutor,
    ProcessPoolExecutor,
    RecordStore,
    SweepTask,
    plan_buckets,
    run_sweep,
    summarize,
    train_ensemble,
)
from deepwell.training.loop import TensorData, fit

ATOL = 1e-5
DATA = DataSpec(source="mnist1d:num_samples=400,train_split=0.5", val_fraction=0.0, label_noise=0.15)


@pytest.fixture(scope="module")
def data() -> TensorData:
    from deepwell.data import prepare_data

    splits = prepare_data(DATA, seed=0)
    return TensorData(splits.x_train, splits.y_train, splits.x_test, splits.y_test)


def _mlp(width: int, seed: int, activation: str = "relu") -> torch.nn.Module:
    spec = ModelSpec(arch="mlp", depth=2, width=width, norm="none", activation=activation)
    return build_model(spec, (1, 40), 10, generator=torch.Generator().manual_seed(seed))


def _assert_same_as_fit(widths, seeds, spec: TrainSpec, data: TensorData, activation: str = "relu", **kwargs) -> str:
    separate = [_mlp(w, s, activation) for w, s in zip(widths, seeds)]
    histories = [fit(m, data, spec, seed=s).history for m, s in zip(separate, seeds)]
    together = [_mlp(w, s, activation) for w, s in zip(widths, seeds)]
    before = [p.detach().clone() for p in together[0].parameters()]
    result = train_ensemble(together, [data] * len(widths), spec, seeds, **kwargs)
    assert any(not torch.equal(a, b) for a, b in zip(before, together[0].parameters())), "ensemble did not train"
    for alone, batched in zip(separate, together):
        for (name, a), b in zip(alone.named_parameters(), batched.parameters()):
            torch.testing.assert_close(b, a, atol=ATOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    for h_alone, h_batched in zip(histories, result.histories):
        for key in ("train/loss", "train/acc_clean", "val/loss", "val/acc"):
            assert h_batched[-1][key] == pytest.approx(h_alone[-1][key], abs=ATOL), key
    return result.layout


@pytest.mark.parametrize("optimizer", ["sgd:momentum=0.9", "adam"])
def test_equal_widths_use_vmap_and_match_fit(data: TensorData, optimizer: str) -> None:
    spec = TrainSpec(epochs=3, batch_size=32, optimizer=optimizer, lr=0.01, schedule="constant")
    assert _assert_same_as_fit([12, 12, 12], [0, 1, 2], spec, data) == "stacked"


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity", "gelu"])
def test_different_widths_padded_in_one_bucket_match_fit(data: TensorData, activation: str) -> None:
    # One bucket forces padding (narrow members padded to 33); sigmoid(0) != 0 exercises the masks.
    # relu ... identity take the hand-written backward (_Padded.train_step), gelu autograd's.
    spec = TrainSpec(epochs=3, batch_size=32, optimizer="sgd:momentum=0.9", lr=0.05, schedule="constant")
    layout = _assert_same_as_fit([2, 5, 17, 33], [0, 0, 1, 1], spec, data, activation, bucket_overhead=1e12)
    assert layout == "padded"


def test_padded_with_buckets_and_a_schedule_match_fit(data: TensorData) -> None:
    spec = TrainSpec(epochs=2, batch_size=50, optimizer="adam", lr=0.003, schedule="cosine", warmup_epochs=0.5)
    _assert_same_as_fit([3, 4, 40, 48], [5, 5, 5, 5], spec, data, bucket_overhead=100)


@pytest.mark.parametrize(("global_pool", "bucket_overhead"), [(True, 1e12), (False, 1e12), (True, 0)])
def test_cnns_of_different_widths_pad_into_the_widest_and_match_fit(data: TensorData, global_pool: bool,
                                                                    bucket_overhead: float) -> None:
    # Without global pooling the head reads channel-major flattened features: a narrow member's are a prefix.
    spec = TrainSpec(epochs=2, batch_size=50, optimizer="adam", lr=0.01, schedule="constant")

    def cnn(width: int, seed: int) -> torch.nn.Module:
        model = ModelSpec(arch="cnn1d", channels=[width, "pool", 2 * width], kernel_size=3, norm="none",
                          global_pool=global_pool, hidden=[8])
        return build_model(model, (1, 40), 10, generator=torch.Generator().manual_seed(seed))

    separate = [cnn(w, s) for w, s in ((2, 0), (5, 1), (3, 2))]
    for model, seed in zip(separate, (0, 1, 2)):
        fit(model, data, spec, seed=seed)
    together = [cnn(w, s) for w, s in ((2, 0), (5, 1), (3, 2))]
    result = train_ensemble(together, [data] * 3, spec, [0, 1, 2], bucket_overhead=bucket_overhead)
    assert result.layout == "padded_stacked" and len(result.buckets) == (1 if bucket_overhead else 3)
    for alone, batched in zip(separate, together):
        for (name, a), b in zip(alone.named_parameters(), batched.parameters()):
            torch.testing.assert_close(b, a, atol=ATOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_padded_units_stay_exactly_zero(data: TensorData) -> None:
    from deepwell.sweep.padded import _Padded

    models = [_mlp(3, 0), _mlp(9, 1)]
    net = _Padded(models, [[0, 1]])
    logits = net(data.x_train[:16].flatten(1), None)
    logits.sum().backward()
    grads = _Padded(models, [[0, 1]])  # the same layout, to read the flat gradient through its views
    grads.flat.data = net.flat.grad
    weights = grads.weights
    assert weights[1][0, 3:].abs().max() == 0 and weights[1][0, :, 3:].abs().max() == 0
    assert weights[0][0, 3:].abs().max() == 0 and weights[2][0, :, 3:].abs().max() == 0
    assert weights[1][1].abs().max() > 0  # the wide member does get a gradient


def test_plan_buckets_trades_padding_against_overhead() -> None:
    def mlp_shapes(width: int) -> list[tuple[int, ...]]:
        return [(width, 40), (width,), (width, width), (width,), (10, width), (10,)]

    shapes = [mlp_shapes(w) for w in (2, 3, 4, 150, 300)]
    assert plan_buckets(shapes, overhead=1e12) == [[0, 1, 2, 3, 4]]
    assert plan_buckets(shapes, overhead=0) == [[0], [1], [2], [3], [4]]
    buckets = plan_buckets(shapes, overhead=20_000)
    assert [0, 1, 2] in buckets and [4] in buckets


def test_ensemble_refuses_what_it_cannot_train_exactly(data: TensorData) -> None:
    spec = TrainSpec(epochs=1, optimizer="sgd", schedule="constant")
    with pytest.raises(ConfigError, match="batchnorm"):
        train_ensemble([build_model(ModelSpec(arch="mlp", width=4), (1, 40), 10)], [data], spec, [0])
    with pytest.raises(ConfigError, match="clip_grad_norm"):
        train_ensemble([_mlp(4, 0)], [data], spec.model_copy(update={"clip_grad_norm": 1.0}), [0])


def _tasks(widths=(3, 8), seeds=(0, 1), epochs=2) -> list[SweepTask]:
    train = TrainSpec(epochs=epochs, batch_size=50, optimizer="sgd:momentum=0.9", lr=0.01, schedule="constant")
    return [SweepTask(DATA, ModelSpec(arch="mlp", depth=2, width=w, norm="none"), train, seed=s, params={"width": w},
                      device="cpu")
            for w in widths for s in seeds]


class _Counting:
    """Wraps an executor and counts the tasks it was asked to run."""

    def __init__(self, inner) -> None:
        self.inner, self.ran, self.name = inner, 0, inner.name

    def run(self, tasks):
        self.ran += len(tasks)
        yield from self.inner.run(tasks)


def test_resume_skips_finished_runs(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    tasks = _tasks()
    first = _Counting(BatchedExecutor())
    run_sweep(tasks[:2], first, path)  # "interrupted" after two runs
    assert first.ran == 2
    with open(path, "a") as handle:
        handle.write('{"run_id": "torn')  # a write killed half-way
    second = _Counting(BatchedExecutor())
    records = run_sweep(tasks, second, path)
    assert second.ran == len(tasks) - 2
    assert [r["run_id"] for r in records] == [t.run_id for t in tasks]
    third = _Counting(BatchedExecutor())
    run_sweep(tasks, third, path)
    assert third.ran == 0
    lines = path.read_text().splitlines()
    assert len(lines) == len(tasks) and all(json.loads(line)["run_id"] for line in lines)


def test_run_id_depends_on_what_decides_the_result() -> None:
    a, b = _tasks(widths=(3,), seeds=(0,))[0], _tasks(widths=(3,), seeds=(1,))[0]
    assert a.run_id != b.run_id and a.run_id == _tasks(widths=(3,), seeds=(0,))[0].run_id


def test_executors_agree_and_records_summarize_over_seeds() -> None:
    tasks = _tasks()
    loop = run_sweep(tasks, InProcessExecutor())
    batched = run_sweep(tasks, BatchedExecutor())
    for a, b in zip(loop, batched):
        assert a["run_id"] == b["run_id"] and b["executor"].startswith("batched")
        assert b["test_error"] == pytest.approx(a["test_error"], abs=1e-3)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=ATOL)
    rows = summarize(batched, by=["width"], metrics=["test_error"])
    assert [row["width"] for row in rows] == [3, 8] and all(row["n"] == 2 for row in rows)
    values = [r["test_error"] for r in batched if r["width"] == 3]
    assert rows[0]["test_error_mean"] == pytest.approx(sum(values) / 2)
    assert rows[0]["test_error_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))


def test_process_pool_gives_the_same_records_as_the_loop() -> None:
    tasks = _tasks(widths=(3,), seeds=(0, 1), epochs=1)
    pooled = sorted(run_sweep(tasks, ProcessPoolExecutor(workers=1)), key=lambda r: r["seed"])
    loop = sorted(run_sweep(tasks, InProcessExecutor()), key=lambda r: r["seed"])
    for a, b in zip(loop, pooled):
        assert b["executor"] == "process_pool" and b["train_loss"] == pytest.approx(a["train_loss"], abs=ATOL)


def test_hand_written_backward_equals_autograd(data: TensorData) -> None:
    from deepwell.sweep.padded import _Padded

    models = [_mlp(3, 0, "tanh"), _mlp(9, 1, "tanh"), _mlp(20, 2, "tanh")]
    x, y = data.x_train[:16].flatten(1), data.y_train[:16]
    for source in (None, torch.tensor([0, 0, 0])):
        net = _Padded(models, [[0, 1], [2]])
        xs = x if source is None else x.unsqueeze(0)
        logits = net(xs, source)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(3)).mul(3).backward()
        expected = net.flat.grad.clone()
        net.flat.grad = None
        with torch.no_grad():
            net.train_step(xs, source, y.expand(3, -1))
        torch.testing.assert_close(net.flat.grad, expected, atol=1e-6, rtol=1e-5)


def _two_way_splits(n: int) -> list[tuple[list[int], list[int]]]:
    return [([i for i in range(n) if mask >> i & 1], [i for i in range(n) if not mask >> i & 1]) for mask in range(1, 2 ** n - 1)]


def test_balanced_shards_split_work_evenly() -> None:
    from deepwell.sweep.executors import balanced_shards

    assert balanced_shards([105, 60, 40, 30, 5], 2) == [[0, 4], [1, 2, 3]]
    assert balanced_shards([1, 1, 1], 5) == [[0], [1], [2]]
    assert balanced_shards([3, 2], 1) == [[0, 1]]
    # The first shard (this process's) starts 20 ahead: it takes 135 against the other's 20 + 105.
    assert balanced_shards([105, 60, 40, 30, 5], 2, head_start=20) == [[0, 3], [1, 2, 4]]
    # A shard costs more than its items' sum (here 10 a shard per item beyond the first, like a bucket's
    # padding): greedy by item cost gives [[0, 4], [1, 2, 3]], 110 + 10 against 130 + 20; the refinement
    # swaps items 3 and 4 to end at 135 + 10 and 105 + 20, the best of all two-way splits.
    def cost_of(shard: list[int]) -> float:
        return sum((105, 60, 40, 30, 5)[i] for i in shard) + 10 * (len(shard) - 1)

    shards = balanced_shards([105, 60, 40, 30, 5], 2, cost_of=cost_of)
    assert shards == [[0, 3], [1, 2, 4]]
    assert max(map(cost_of, shards)) == min(max(cost_of(a), cost_of(b)) for a, b in _two_way_splits(5))


@pytest.mark.parametrize("compiled", [True, False], ids=["threads", "processes"])
def test_batched_workers_give_the_records_of_one_process(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Sharded over two threads (the compiled step holds no GIL) or two spawned processes (the Python
    # step), each member trains exactly as it would in one ensemble.
    from deepwell import native
    from deepwell.sweep import executors

    monkeypatch.setenv("DEEPWELL_NATIVE", "auto" if compiled else "off")
    if compiled:
        if native.extension("padded_step") is None:
            pytest.skip(NATIVE_MISSING)
        monkeypatch.setattr(executors, "worker_pool", None)  # threads only: starting a process would fail
    tasks = _tasks(widths=(3, 8, 20), seeds=(0,), epochs=2)
    one = run_sweep(tasks, BatchedExecutor(workers=1))
    two = sorted(run_sweep(tasks, BatchedExecutor(workers=2)), key=lambda r: r["width"])
    for a, b in zip(one, two):
        assert b["width"] == a["width"] and b["train_loss"] == pytest.approx(a["train_loss"], abs=ATOL)
        assert b["test_error"] == pytest.approx(a["test_error"], abs=1e-6)


NATIVE_MISSING = "no C++ compiler or ninja to build the compiled sweep step (make test installs ninja-build)"


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
@pytest.mark.parametrize("shared", [True, False], ids=["one-batch", "own-batches"])
def test_compiled_step_gives_the_python_steps_numbers_bit_for_bit(activation: str, shared: bool) -> None:
    from deepwell import native
    from deepwell.sweep.padded import _Padded

    if native.extension("padded_step") is None:
        pytest.skip(NATIVE_MISSING)
    models = [_mlp(w, k, activation) for k, w in enumerate((3, 8, 30, 64))]
    source = None if shared else torch.tensor([0, 1, 1, 0])
    results = []
    for compiled in (False, True):
        net = _Padded(models, [[0, 1], [2, 3]])
        net.compiled = compiled
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        generator = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(10):
            x = torch.randn(50, 40, generator=generator) if shared else torch.randn(2, 50, 40, generator=generator)
            y = torch.randint(0, 10, (4, 50), generator=generator)
            with torch.no_grad():
                losses.append(net.train_step(x, source, y))
            optimizer.step()
        results.append((net.flat.detach().clone(), torch.stack(losses)))
    (python_weights, python_losses), (compiled_weights, compiled_losses) = results
    assert not torch.equal(python_weights, _Padded(models, [[0, 1], [2, 3]]).flat.detach()), "did not train"
    assert torch.equal(compiled_weights, python_weights) and torch.equal(compiled_losses, python_losses)


def test_a_stopped_shard_ends_at_its_next_epoch() -> None:
    import threading

    from deepwell.sweep.executors import ShardStopped, _train_group

    stop = threading.Event()
    stop.set()
    with pytest.raises(ShardStopped):
        _train_group(_tasks(widths=(3, 8), seeds=(0,), epochs=3), None, stop=stop)


@pytest.mark.parametrize("width", [3, 20])  # in this thread's shard, or in the other's
def test_an_error_in_a_thread_shard_stops_the_sweep_and_is_raised(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepwell import native
    from deepwell.sweep import executors

    if native.extension("padded_step") is None:
        pytest.skip(NATIVE_MISSING)
    real = executors.train_ensemble

    def failing(models, *args, **kwargs):
        if any(m.head.in_features == width for m in models):
            raise RuntimeError(f"boom in the shard with width {width}")
        return real(models, *args, **kwargs)

    monkeypatch.setattr(executors, "train_ensemble", failing)
    monkeypatch.setattr(executors, "worker_pool", None)  # threads only
    with pytest.raises(RuntimeError, match="boom in the shard"):
        list(run_sweep(_tasks(widths=(3, 8, 20), seeds=(0,), epochs=3), BatchedExecutor(workers=2)))


def test_without_the_compiled_step_the_python_step_runs(monkeypatch: pytest.MonkeyPatch, data: TensorData) -> None:
    from deepwell import native

    monkeypatch.setenv("DEEPWELL_NATIVE", "off")
    assert native.extension("padded_step") is None
    _assert_same_as_fit([3, 20], [0, 1], TrainSpec(epochs=2, batch_size=32, optimizer="sgd:momentum=0.9",
                                                   schedule="constant"), data)


def test_record_store_drops_a_torn_line(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "r.jsonl")
    store.append([{"run_id": "a"}, {"run_id": "b"}])
    with open(store.path, "a") as handle:
        handle.write('{"run_id": "c"')
    assert store.finished_ids() == {"a", "b"}
    assert store.path.read_text().count("\n") == 2


def _trained(members: list[tuple[int, int]], data: TensorData, spec: TrainSpec) -> list[list[torch.Tensor]]:
    models = [_mlp(width, seed) for width, seed in members]
    train_ensemble(models, [data] * len(models), spec, [seed for _, seed in members])
    return [[p.detach() for p in model.parameters()] for model in models]


def test_a_members_result_does_not_depend_on_what_else_is_in_the_ensemble(data: TensorData) -> None:
    """Bitwise: the fused optimiser's scalar tail once gave the last member of an ensemble other weights than its copies.

    On one thread, as the batched executor's shards run on a CPU: on two, torch splits a bucket of one
    member inside its GEMMs and a bucket of several across them, and the sums round differently.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _members_alone_and_together(data)
    finally:
        torch.set_num_threads(threads)


def _members_alone_and_together(data: TensorData) -> None:
    spec = TrainSpec(optimizer="adam", lr=0.01, schedule="constant", epochs=3, batch_size=20)
    alone = _trained([(20, 1)], data, spec)[0]                               # stacked, one member
    for members in ([(20, 1)] * 3, [(20, 0), (20, 1), (20, 2), (20, 1)]):
        trained = _trained(members, data, spec)
        for k in [k for k, (_, seed) in enumerate(members) if seed == 1]:
            assert all(torch.equal(a, b) for a, b in zip(alone, trained[k])), f"member {k} of {members}"
    padded = _trained([(7, 0), (20, 1)], data, spec)[1]                     # padded into one bucket of width 20
    for members in ([(20, 1), (13, 3), (7, 0), (20, 1)],):
        trained = _trained(members, data, spec)
        for k in [k for k, (_, seed) in enumerate(members) if seed == 1]:
            assert all(torch.equal(a, b) for a, b in zip(padded, trained[k])), f"member {k} of {members}"


@pytest.mark.parametrize("layout", ["row-major", "transposed", "shared (stride 0)", "float64", "strided rows"])
def test_the_compiled_steps_bmm_is_torchs(layout: str) -> None:
    # The compiled step multiplies through its own sgemm (OpenBLAS where linked); it must read every
    # layout the step hands it as torch.bmm does, and hand anything else to torch.bmm.
    from deepwell import native

    step = native.extension("padded_step")
    if step is None:
        pytest.skip(NATIVE_MISSING)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 10, 37, generator=generator), torch.randn(3, 37, 41, generator=generator)
    if layout == "transposed":
        a, b = torch.randn(3, 37, 10, generator=generator).transpose(1, 2), torch.randn(3, 41, 37, generator=generator).transpose(1, 2)
    elif layout == "shared (stride 0)":
        a = torch.randn(1, 10, 37, generator=generator).expand(3, 10, 37)
    elif layout == "float64":
        a, b = a.double(), b.double()
    elif layout == "strided rows":
        a = torch.randn(3, 10, 80, generator=generator)[:, :, 5:42]
    expected = torch.bmm(a, b)
    torch.testing.assert_close(step.bmm(a, b), expected, rtol=1e-5, atol=1e-5)
    out = torch.full_like(expected, float("nan"))
    assert step.bmm(a, b, out=out) is not None
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
