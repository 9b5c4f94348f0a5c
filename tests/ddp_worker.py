"""Run by tests/test_distributed.py under torchrun: ``fit`` data-parallel on tiny problems, each rank saving its weights.

The problems live here so that the test trains exactly the same ones in a single process.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from deepwell.config import TrainSpec
from deepwell.training.distributed import DataParallel
from deepwell.training.loop import TensorData, fit

# name -> (training examples, global batch size, extra spec keys). With 2 processes:
# even: 4 batches of 16, shards of 8; uneven: batches of 9 (shards 5 and 4) and a last one of 4 (2 and 2),
# with an L2 penalty and gradient clipping, which act on the averaged gradient.
CASES = {
    "even": (64, 16, {}),
    "uneven": (49, 9, {"penalty": "l2:1e-3", "clip_grad_norm": 1.0}),
}


def problem(n: int) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n + 20, 6, generator=generator)
    y = (x @ torch.randn(6, 3, generator=generator)).argmax(1)
    return TensorData(x[:n], y[:n], x[n:], y[n:])


def model() -> nn.Module:
    """Deterministic (no dropout, no BatchNorm): data-parallel and single-process runs then agree exactly."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def spec(batch_size: int, **extra) -> TrainSpec:
    return TrainSpec(epochs=3, batch_size=batch_size, optimizer="sgd:0.9", lr=0.1, schedule="cosine", **extra)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    parallel = DataParallel.from_env(torch.device("cpu"))
    assert parallel is not None and parallel.world_size == 2
    for name, (n, batch_size, extra) in CASES.items():
        network = model()
        result = fit(network, problem(n), spec(batch_size, **extra), seed=0, distributed=parallel)
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(out / f"{name}-rank{parallel.rank}.safetensors"))
        (out / f"{name}-rank{parallel.rank}.json").write_text(json.dumps(result.history))
    parallel.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
