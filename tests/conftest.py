"""Shared fixtures: every test starts from the same global RNG state."""

from __future__ import annotations

import os

import pytest
import torch

# every figure a test renders (studies, reports) is checked for overlapping text: deepwell.reporting.style
os.environ.setdefault("DEEPWELL_STRICT_FIGURES", "1")


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator so dropout masks and default inits are reproducible."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models are overhead-bound: one torch thread is faster than two and spares a shared machine.

    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``. deepwell's own CPU set-up runs
    first: run later by the first ``fit`` of the process, it would set one thread per core, and runs
    in this process would then round differently from ``DEEPWELL_THREADS=1`` subprocesses (the kill -9
    trials' resumes were not bitwise when their module ran first).
    """
    from deepwell.runtime import configure_cpu

    configure_cpu()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the ``deepwell`` command in-process: ``cli("train", "--set", ...) -> (exit code, stdout, stderr)``."""
    import sys

    from deepwell.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["deepwell", *args])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def train_recording(cli, monkeypatch):
    """Run ``deepwell train`` in-process, recording what augmentation sees:
    ``train_recording(*args) -> (exit code, stderr, [x_val, each training batch given to the augmenter])``."""
    import deepwell.run as run_module

    def run(*args: str) -> tuple[int, str, list]:
        seen: list = []
        real_fit = run_module.fit

        def spy(model, data, *rest, **kwargs):
            augment = kwargs["batch_transform"]
            seen.append(data.x_val)

            def recording(x, y):
                seen.append(x.clone())
                return augment(x, y)
            return real_fit(model, data, *rest, **{**kwargs, "batch_transform": recording})

        monkeypatch.setattr(run_module, "fit", spy)
        code, _, err = cli("train", *args, "--progress", "none")
        return code, err, seen

    return run
