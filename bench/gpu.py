"""GPU path check: the default training on CUDA next to the CPU, and a resumed run on CUDA.

Runs only where a CUDA GPU is present (prints why and exits 0 elsewhere). For each device it
prints seconds per epoch (median) and test accuracy of the default spec; then it kills a CUDA run
after two epochs and resumes it, and checks the resumed run's history matches the uninterrupted
one: bitwise with ``deterministic=true``; without it cuDNN's non-deterministic kernels let the
two drift apart, and the printed difference says by how much.

    python bench/gpu.py [--epochs 6]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile

import torch

import deepwell
from deepwell.training.callbacks import Callback


class _Kill(Callback):
    def on_epoch_end(self, state):
        if state.epoch == 1:
            raise KeyboardInterrupt


def _train(directory: str, name: str, device: str, epochs: int, *extra: str, callbacks=()) -> deepwell.Run:
    return deepwell.train(overrides=[f"device={device}", f"train.epochs={epochs}", f"output.dir={directory}",
                                     f"output.name={name}", *extra], progress="none", callbacks=callbacks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here; nothing to check")
        return
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as directory:
        auto = _train(directory, "auto", "auto", 1)
        assert auto.meta["device"].startswith("cuda"), auto.meta["device"]
        print(f"device=auto chose {auto.meta['device']}")
        for device in ("cuda", "cpu"):
            run = _train(directory, device, device, args.epochs)
            per_epoch = statistics.median(row["time/epoch_s"] for row in run.history[1:])
            print(f"{device:5s} {per_epoch * 1e3:8.1f} ms/epoch  test acc {run.summary['test']['test/acc']:.4f}")
        for deterministic in (False, True):
            flag = f"deterministic={str(deterministic).lower()}"
            whole = _train(directory, f"whole-{deterministic}", "cuda", 4, flag, "model.dropout=dropout:0.1")
            try:
                _train(directory, f"killed-{deterministic}", "cuda", 4, flag, "model.dropout=dropout:0.1", callbacks=[_Kill()])
            except KeyboardInterrupt:
                pass
            resumed = deepwell.train(resume=f"{directory}/killed-{deterministic}", progress="none")
            assert len(whole.history) == len(resumed.history) == 4
            worst = max(abs(a["val/loss"] - b["val/loss"]) for a, b in zip(whole.history, resumed.history))
            same = all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()))
            print(f"resume on cuda, {flag}: largest val/loss difference {worst:.2e}, final weights identical: {same}")
            assert math.isfinite(worst) and (same or not deterministic)


if __name__ == "__main__":
    main()
