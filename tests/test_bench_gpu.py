"""bench/gpu.py: without a GPU it says so and exits 0; ``--smoke`` runs every section's code on the CPU."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"

pytestmark = pytest.mark.usefixtures("single_thread")


def run_bench(monkeypatch, capsys, *args: str) -> str:
    """bench/gpu.py's main() in this process (saves a fresh interpreter's imports), with ``args``; its stdout."""
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(BENCH.parent))
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["gpu.py", *args])
    module.main()
    return capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a CUDA GPU")
def test_without_a_gpu_there_is_nothing_to_measure(monkeypatch, capsys):
    assert run_bench(monkeypatch, capsys).strip() == "no CUDA GPU: nothing to measure"


def test_smoke_runs_every_section_on_the_cpu(monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "--smoke")  # a failed section would exit 1 (SystemExit)
    assert "FAILED" not in out, out
    for label in ("default CNN", "paper MLP"):
        block = out.split(f"{label} (cpu:")[1]
        for row in ("cuda eager", "cuda graphed", "cpu"):
            assert re.search(rf"\n  {row} +[\d.]+ ms/epoch", block), (row, out)
    assert re.search(r"default CNN >= 8x faster per epoch than CPU: (PASS|FAIL) \([\d.]+x\)", out)
    assert re.search(r"double-descent sweep \(2 widths x 1 epochs, batched, cpu\): [\d.]+ s", out)
    # a CPU run resumes bitwise, with or without deterministic=true
    assert out.count("final weights identical: True") == 2, out
    assert re.search(r"DDP \(gloo, world size 1, sync_batchnorm=False\) on cpu: .*\(difference 0\.0e\+00\)", out), out
    assert re.search(r"probes and report on cpu: [1-9]\d* probe rows, report.html written", out), out
