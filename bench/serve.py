"""Benchmark: the playground (deepwell serve) against plain ``fit`` on the same spec, in the same process.

Starts the playground server in this process, opens the page in Debian's chromium (Playwright) and
presses play; then measures

1. steps per second inside the playground vs ``fit`` on the same spec with the same probes (what
   ``deepwell train`` runs), timed alternately in this process (median of rounds). Target: ratio >= 0.8;
2. the delay from the end of a step (the frame is built right after it, in the worker) to the
   message reaching the page (the page records Date.now() - frame time; one machine, one clock).
   Target: median <= 50 ms;
3. the resident memory of the server process while the session keeps playing for ``--minutes`` after
   those measurements (default 10; --quick: 1): after 1 minute (a 1-minute run: after 10 s) and at
   the end. Target: within 10%.

    python bench/serve.py [--quick] [--minutes N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from deepwell.diagnostics.probes import Probes
from deepwell.run import build_run
from deepwell.runtime import configure_cpu
from deepwell.serve.app import Playground, create_app
from deepwell.serve.scenes import playground_spec
from deepwell.training.loop import fit, loss_function

EPOCHS = "train.epochs=1000000"  # plays until stopped


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_rss(samples: list[tuple[float, float]], started: float, until: float) -> None:
    while time.monotonic() - started < until:
        samples.append((time.monotonic() - started, rss_mb()))
        time.sleep(1.0)


def rss_at(samples: list[tuple[float, float]], when: float) -> float:
    return min(samples, key=lambda sample: abs(sample[0] - when))[1]


def fit_steps_per_s(seconds: float) -> float:
    """Plain fit of the playground's spec with its probes, for about ``seconds``."""
    spec = playground_spec(None, (EPOCHS,))
    parts = build_run(spec, torch.device("cpu"))
    steps_per_epoch = -(-len(parts.data.x_train) // spec.train.batch_size)
    # time one epoch to size the run, then time enough epochs to fill ``seconds``
    with tempfile.TemporaryDirectory() as folder:
        def run(epochs: int) -> float:
            probes = Probes(Path(folder) / "probes.jsonl", parts.data.x_train[:256], parts.data.y_train[:256],
                            loss_function("classification", spec.train), every=spec.diagnostics.every)
            started = time.perf_counter()
            fit(parts.model, parts.data, spec.train.model_copy(update={"epochs": epochs}), callbacks=[probes])
            return time.perf_counter() - started
        epochs = max(3, int(seconds / max(run(2) / 2, 1e-3)))
        return epochs * steps_per_epoch / run(epochs)


def start_server(playground: Playground) -> tuple[str, object, threading.Thread]:
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(playground), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/", server, thread


def page_rate(page, seconds: float) -> float:
    """Steps per second the page saw over ``seconds`` (server-side step counts and frame times)."""
    first = page.evaluate("() => [window.__dw.frame.step, window.__dw.frame.t]")
    time.sleep(seconds)
    last = page.evaluate("() => [window.__dw.frame.step, window.__dw.frame.t]")
    return (last[0] - first[0]) / (last[1] - first[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="memory after 10 s and 60 s instead of 1 and 10 minutes")
    parser.add_argument("--rounds", type=int, default=5, help="alternating playground / fit rounds (median of ratios)")
    parser.add_argument("--minutes", type=float, default=None, help="memory: play this long (default 10; --quick: 1)")
    args = parser.parse_args()
    minutes = args.minutes if args.minutes is not None else 1.0 if args.quick else 10.0
    from playwright.sync_api import sync_playwright

    # what `deepwell serve` sets: one torch thread per session. The variable, not torch.set_num_threads: the
    # first fit's configure_cpu() would otherwise give this process one thread per core (the last runs did).
    os.environ.setdefault("DEEPWELL_THREADS", "1")
    configure_cpu()
    window = 5.0 if args.quick else 15.0
    late = 60.0 * minutes
    early = min(60.0, late / 6)
    folder = Path(tempfile.mkdtemp())
    playground = Playground(playground_spec(None, (EPOCHS,)), folder, folder / "runs", max_sessions=2)
    url, server, thread = start_server(playground)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)
        page.wait_for_function("window.__dw && window.__dw.frames > 0", timeout=120_000)
        page.click("#play")
        page.wait_for_function("window.__dw.frame.epoch > 3", timeout=120_000)
        rates, references = [], []
        for _ in range(args.rounds):  # alternate, so a shared machine's load changes affect both alike
            rates.append(page_rate(page, window))
            page.click("#play")  # pause while the reference runs
            page.wait_for_function("window.__dw.held === true", timeout=120_000)
            references.append(fit_steps_per_s(window))
            page.click("#play")
            page.wait_for_function("document.getElementById('play').textContent.includes('❚')", timeout=120_000)
        ratio = statistics.median(r / f for r, f in zip(rates, references))
        page.evaluate("() => { window.__dw.latencies = []; }")
        time.sleep(window)
        latencies = page.evaluate("() => window.__dw.latencies")
        delay = statistics.median(latencies)
        updates = len(latencies) / window
        print(f"steps/s  playground {statistics.median(rates):.0f}  fit {statistics.median(references):.0f}  "
              f"ratio {ratio:.2f} (target >= 0.8: {'PASS' if ratio >= 0.8 else 'FAIL'}); rounds: "
              + ", ".join(f"{r:.0f}/{f:.0f}" for r, f in zip(rates, references)), flush=True)
        print(f"page updates {updates:.1f}/s; delay end of step -> page: median {delay:.1f} ms "
              f"(target <= 50 ms: {'PASS' if delay <= 50 else 'FAIL'})", flush=True)
        # memory: the session keeps playing (the reference fits above ran in this process: they are over)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []  # (seconds since the memory clock started, RSS MB), once a second
        sampler = threading.Thread(target=sample_rss, args=(samples, started, late + 5), daemon=True)
        sampler.start()
        time.sleep(late + 1.5)  # the sampler's last sample is at (or just after) ``late``
        rss_early, rss_late = rss_at(samples, early), rss_at(samples, late)
        epochs = page.evaluate("() => window.__dw.frame.epoch")
        browser.close()
    server.should_exit = True
    thread.join(30)
    playground.shutdown()  # stops and joins the session's training: a worker still in fit at exit aborts the process
    growth = rss_late / rss_early - 1
    print(f"machine: {torch.get_num_threads()} torch thread(s); the browser runs on the same cores; {epochs} epochs played")
    print(f"RSS of a session playing {minutes:g} min: after {early:.0f} s {rss_early:.0f} MB, at the end ({late:.0f} s) "
          f"{rss_late:.0f} MB: {100 * growth:+.1f}% "
          f"(target within 10%: {'PASS' if abs(growth) <= 0.10 else 'FAIL'})")


if __name__ == "__main__":
    main()
