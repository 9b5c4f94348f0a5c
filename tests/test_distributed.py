"""Data-parallel training: torchrun with 2 CPU processes gives the single-process weights; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepwell.errors import ConfigError
from deepwell.training.distributed import plan_batches
from deepwell.training.loop import fit

import ddp_worker

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]


def without_times(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in history]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")}
    return env | {"DEEPWELL_THREADS": "1", "OMP_NUM_THREADS": "1"} | extra


# --- the batch plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(64, 16, 2), (49, 9, 2), (50, 9, 3), (47, 10, 4), (10, 4, 1)])
def test_shards_cover_each_global_batch_once(n, batch_size, world_size):
    plans = [plan_batches(n, batch_size, world_size, rank) for rank in range(world_size)]
    single = plan_batches(n, batch_size)
    for step, size in enumerate(plans[0].sizes):
        start = sum(plans[0].sizes[:step])
        shards = [plan.positions[plan.bounds[step]:plan.bounds[step + 1]] if plan.positions is not None
                  else torch.arange(plan.bounds[step], plan.bounds[step + 1]) for plan in plans]
        assert torch.equal(torch.cat(shards), torch.arange(start, start + size))  # rank order = the single-process batch
        assert all(len(shard) >= 2 for shard in shards)
        if world_size > 1:  # every example weighs 1/size in DDP's average of the scaled shard means
            assert [plan.scales[step] / (world_size * len(shard)) for plan, shard in zip(plans, shards)] == pytest.approx(
                [1 / size] * world_size)
    if plans[0].sizes == single.sizes:
        assert sum(plans[0].sizes) == single.examples


def test_a_last_batch_too_small_to_share_is_dropped_and_tiny_batches_are_refused():
    assert plan_batches(42, 10).sizes == [10, 10, 10, 10, 2]   # one process: a last batch of 2 is kept ...
    assert plan_batches(42, 10, 2, 0).sizes == [10, 10, 10, 10]  # ... two processes would get 1 each: dropped
    assert plan_batches(41, 10).sizes == [10] * 4               # a lone example is dropped, as always
    with pytest.raises(ConfigError, match=r"train.batch_size=3 is the global batch, split over 2 processes.*>= 4"):
        plan_batches(40, 3, 2, 0)


def test_weighted_shard_gradients_average_to_the_global_batch_gradient():
    """What DDP computes with the plan's loss scales equals the gradient of the mean loss over the global batch."""
    data, network = ddp_worker.problem(9), ddp_worker.model()
    loss = torch.nn.functional.cross_entropy
    expected = torch.autograd.grad(loss(network(data.x_train), data.y_train), list(network.parameters()))
    averaged = [torch.zeros_like(g) for g in expected]
    for rank in range(2):
        plan = plan_batches(9, 9, 2, rank)
        index = plan.positions[plan.bounds[0]:plan.bounds[1]]
        grads = torch.autograd.grad(loss(network(data.x_train[index]), data.y_train[index]) * plan.scales[0],
                                    list(network.parameters()))
        averaged = [a + g / 2 for a, g in zip(averaged, grads)]
    for a, e in zip(averaged, expected):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)


# --- torchrun -----------------------------------------------------------------------------------------


def torchrun_worker(out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "ddp_worker.py"), str(out)]
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)


def test_torchrun_two_processes_match_a_single_process(tmp_path):
    done = torchrun_worker(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, (n, batch_size, extra) in ddp_worker.CASES.items():
        single = ddp_worker.model()
        history = fit(single, ddp_worker.problem(n), ddp_worker.spec(batch_size, **extra), seed=0).history
        ranks = [load_file(str(tmp_path / f"{name}-rank{rank}.safetensors")) for rank in range(2)]
        for key, value in single.state_dict().items():
            assert torch.equal(ranks[0][key], ranks[1][key]), (name, key)  # the processes agree exactly
            torch.testing.assert_close(ranks[0][key], value, atol=1e-5, rtol=0, msg=f"{name} {key}")
        parallel_history = json.loads((tmp_path / f"{name}-rank0.json").read_text())
        for mine, theirs in zip(without_times(parallel_history), without_times(history), strict=True):
            assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-6), name


@pytest.mark.slow
def test_torchrun_twenty_times_in_a_row_under_a_cpu_hog(tmp_path):
    """The torchrun job must not be flaky under load: 20 in a row while two busy loops keep two cores busy."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for attempt in range(20):
            out = tmp_path / str(attempt)
            out.mkdir()
            done = torchrun_worker(out)
            assert done.returncode == 0, f"attempt {attempt + 1} of 20 failed: {done.stderr[-3000:]}"
            for name in ddp_worker.CASES:
                ranks = [load_file(str(out / f"{name}-rank{rank}.safetensors")) for rank in range(2)]
                assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0]), f"attempt {attempt + 1}: {name}"
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


SITE = '''
import atexit, json, os
if "RANK" in os.environ:  # record every write under the output folder, per process
    watched, writes = os.environ["DEEPWELL_WATCH"], []
    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
            writing = any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and os.path.abspath(path).startswith(watched):
                writes.append(path)
        elif event in ("os.mkdir", "os.rename", "os.remove") and os.fsdecode(args[0]).startswith(watched):
            writes.append(os.fsdecode(args[0]))
    import sys
    sys.addaudithook(hook)
    def report():  # a file per rank: two processes printing at once can interleave their lines
        with open(os.path.join(os.environ["DEEPWELL_WATCH_OUT"], f"writes-rank={os.environ['RANK']}.json"), "w") as f:
            json.dump(writes, f)
    atexit.register(report)
'''


def test_cli_nproc_trains_and_only_rank_0_writes(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    runs = tmp_path / "runs"
    env = environment(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
                      DEEPWELL_WATCH=str(runs), DEEPWELL_WATCH_OUT=str(tmp_path))
    args = ["--set", "data.source=moons:n=300", "--set", "model.hidden=[8,8]", "--set", "train.epochs=2", "--set",
            "train.batch_size=32", "--set", "output.report=false", "--set", f"output.dir={runs}", "--set", "output.name=ddp"]
    done = subprocess.run([sys.executable, "-m", "deepwell.cli", "train", "--nproc", "2", "--quiet", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("Run folder:") == 1  # rank 0 reports for both
    writes = {path.stem.removeprefix("writes-"): json.loads(path.read_text()) for path in tmp_path.glob("writes-rank=*.json")}
    assert writes["rank=1"] == [] and writes["rank=0"]  # the audit hook sees rank 0's writes, and none of rank 1
    run = runs / "ddp"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "meta.json", "metrics.jsonl", "model.safetensors",
                                                     "probes.jsonl", "summary.json"]
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_cli_nproc_keeps_the_exit_code_of_a_failing_process(tmp_path):
    """A ConfigError raised inside the processes (a global batch too small to share) exits 2, not torchrun's 1."""
    small = ["--set", "data.source=moons:n=300", "--set", "train.batch_size=3", "--set", f"output.dir={tmp_path}"]
    failed = subprocess.run([sys.executable, "-m", "deepwell.cli", "train", "--nproc", "2", "--quiet", *small], cwd=ROOT,
                            env=environment(), capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "split over 2 processes" in failed.stderr
