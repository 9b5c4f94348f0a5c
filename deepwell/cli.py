"""The ``deepwell`` command: parse, call the library, print. No logic of its own.

Errors deepwell raises on purpose (bad spec, data, checkpoint) print one line on stderr and
exit with code 2; a run whose loss diverged exits with code 1.
"""

from __future__ import annotations

import csv
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from deepwell.errors import DeepwellError, Interrupted, storage_error

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build, train and diagnose deep networks; see each lecture idea happen.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a spec key: section.key=value (repeatable)")]


@app.command("train")
def train_command(
    spec: Annotated[Optional[Path], typer.Argument(help="YAML spec file (default: built-in defaults)")] = None,
    set_: SetOption = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue a killed run from its last checkpoint")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    progress: Annotated[str, typer.Option(help="auto, bar, lines or none")] = "auto",
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="data-parallel training in N processes on this machine (torchrun, DDP)")] = 1,
) -> None:
    """Train a network and write its run folder."""
    if nproc > 1:
        _launch_train(nproc, spec, set_ or [], resume, quiet, progress)
    from deepwell.run import train
    from deepwell.training.distributed import process_rank

    run = train(spec, overrides=set_ or [], resume=resume, progress="none" if quiet else progress)
    if process_rank() != 0:
        return  # in a data-parallel job rank 0 speaks for all
    summary = run.summary
    test = summary["test"]
    if summary["status"] == "non_finite":
        err.print(f"[red]Training diverged:[/red] {summary['message']}")
        out.print(f"Run folder (last good weights): {run.path}")
        raise typer.Exit(1)
    accuracy = (f"test accuracy {test['test/acc']:.2%}" if "test/acc" in test
                else f"test R^2 {test['test/r2']:.4f}, MAE {test['test/mae']:.4g}" if "test/r2" in test else f"test loss {test['test/loss']:.4g}")
    out.print(f"{summary['message']} {accuracy} ({summary['epochs_run']} epochs, {summary['train_seconds']:.1f} s).")
    findings = run.path / "findings.json"
    if findings.is_file():
        from deepwell.diagnostics.doctor import health_line, load_findings

        out.print(health_line(load_findings(findings)))
    if (run.path / "report.html").is_file():
        out.print(f"Report: {run.path / 'report.html'}")
    out.print(f"Run folder: {run.path}")


def _launch_train(nproc: int, spec: Optional[Path], overrides: list[str], resume: Optional[Path], quiet: bool,
                  progress: str) -> None:
    """`deepwell train` again in ``nproc`` processes of one torchrun job; exits with its exit code."""
    from deepwell.config import load_spec
    from deepwell.training.distributed import launch

    if resume is None:
        load_spec(spec, overrides)  # a bad spec fails here, once, not in every process
    args = ["-m", "deepwell.cli", "train", *([str(spec)] if spec is not None else [])]
    args += [part for override in overrides for part in ("--set", override)]
    args += (["--resume", str(resume)] if resume is not None else []) + (["--quiet"] if quiet else []) + ["--progress", progress]
    raise typer.Exit(launch(nproc, args))


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="run folder")],
    data: Annotated[Optional[str], typer.Option(help="dataset option to evaluate on instead, e.g. 'csv:path=new.csv,target=y'")] = None,
) -> None:
    """Evaluate a trained run on its test split (or on other data)."""
    from deepwell.run import Run

    for key, value in Run.load(run).evaluate(data).items():
        out.print(f"{key}\t{value:.6g}")


@app.command("predict")
def predict_command(
    run: Annotated[Path, typer.Argument(help="run folder")],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV (numeric columns; a text run: its text column) or NPZ (key x) of inputs")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="CSV to write (default: stdout)")] = None,
) -> None:
    """Predict with a trained run: one row per input, the class name (and probabilities) or values."""
    from deepwell.data import load_array_file
    from deepwell.data.files import read_text_table
    from deepwell.run import Run

    loaded = Run.load(run)
    if loaded.meta.get("inputs", {}).get("kind") == "tokens":  # a text run reads the texts, tokenised as in training
        x, _ = read_text_table(input, text=loaded.spec.data.source.params.get("text", "text"), target=None)
    else:
        x = load_array_file(input)
    if loaded.meta["task"] == "classification":
        probabilities = loaded.predict_proba(x)
        names = loaded.meta.get("class_names") or [str(i) for i in range(probabilities.shape[1])]
        header = ["prediction"] + [f"p_{name}" for name in names]
        rows = [[names[int(p.argmax())]] + [f"{v:.6g}" for v in p.tolist()] for p in probabilities]
    else:
        values = loaded.predict(x)
        header = [f"prediction_{i}" for i in range(values.shape[1])]
        rows = [[f"{v:.6g}" for v in row] for row in values.tolist()]
    if output is None:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    else:
        from deepwell.training.checkpoint import atomic_write_text

        atomic_write_text(output, "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
        out.print(f"Wrote {len(rows)} predictions to {output}")


@app.command("runs")
def runs_command(directory: Annotated[Path, typer.Option("--dir", help="folder holding run folders")] = Path("runs")) -> None:
    """List the runs in a folder: status, epochs, test metrics."""
    import json

    from deepwell.errors import ConfigError

    if not directory.is_dir():
        raise ConfigError(f"Folder '{directory}' does not exist{' (it is a file)' if directory.exists() else ''}. "
                          "Give --dir the folder that holds the run folders (output.dir; default: runs).")
    table = Table("run", "status", "epochs", "test acc / R^2", "test loss", "seconds")
    table.columns[0].overflow = "fold"  # a narrow terminal folds long run names onto more lines; never cuts them
    for path in sorted(p for p in directory.glob("*") if (p / "config.yaml").is_file()):
        summary_path = path / "summary.json"
        if not summary_path.is_file():
            table.add_row(path.name, "unfinished", "", "", "", "")
            continue
        summary = json.loads(summary_path.read_text())
        test = summary.get("test", {})
        acc = f"{test['test/acc']:.2%}" if "test/acc" in test else f"R^2 {test['test/r2']:.4f}" if "test/r2" in test else ""
        table.add_row(path.name, summary["status"], str(summary["epochs_run"]), acc, f"{test.get('test/loss', float('nan')):.4g}",
                      f"{summary['train_seconds']:.1f}")
    out.print(table)


@app.command("options")
def options_command(kind: Annotated[Optional[str], typer.Argument(
        help="activation, initializer, optimizer, ... or the spec key that takes them: source, init, data.source, ...")] = None) -> None:
    """List the named options of each kind, with their parameters."""
    from deepwell.config import _REGISTRIES, registry, resolve_kind

    kinds = list(_REGISTRIES) if kind is None else [resolve_kind(kind)]
    for name in kinds:
        out.print(f"[bold]{name}[/bold]")
        entries = registry(name)
        for entry in entries.names():
            out.print(f"  {entries.describe(entry)}", highlight=False, markup=False)  # '[scale_min, 1]' is text, not a tag


@app.command("spec")
def spec_command(spec: Annotated[Optional[Path], typer.Argument(help="YAML spec file")] = None, set_: SetOption = None) -> None:
    """Print the resolved spec (defaults, file and overrides applied) as YAML."""
    from deepwell.config import load_spec

    out.print(load_spec(spec, set_ or []).to_yaml(), highlight=False, markup=False)


@app.command("diagnose")
def diagnose_command(run: Annotated[Path, typer.Argument(help="run folder")]) -> None:
    """Say what is wrong with a trained network, with the evidence and what to try."""
    from deepwell.diagnostics.doctor import diagnose, print_findings

    print_findings(diagnose(run), out)


@app.command("report")
def report_command(
    path: Annotated[Path, typer.Argument(help="run folder or study folder")],
) -> None:
    """Write one self-contained report.html from a run (or study) folder alone."""
    from deepwell.reporting import write_report

    out.print(f"Report: {write_report(path)}")


@app.command("compare")
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="two or more run folders trained on the same data")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML page to write")] = Path("compare.html"),
) -> None:
    """Put runs side by side: spec differences, final metrics, curves, layer health and findings, as one HTML page."""
    from deepwell.reporting.compare import compare

    comparison = compare(*runs, output=output)
    for key, values in comparison.differences.items():
        out.print(f"{key}: {' | '.join(values)}", markup=False, highlight=False)
    accuracy = comparison.metrics.get("test accuracy", [])
    if any(value is not None for value in accuracy):
        shown = " | ".join("-" if value is None else f"{value:.2%}" for value in accuracy)
        out.print(f"test accuracy: {shown}", markup=False, highlight=False)
    out.print(f"Comparison: {output}")


@app.command("study")
def study_command(
    name: Annotated[str, typer.Argument(help="init, activations, dead-relu, ...")],
    full: Annotated[bool, typer.Option("--full", help="the reference settings (slow) instead of quick mode")] = False,
    output: Annotated[Path, typer.Option("--out", help="folder for the study's results")] = Path("studies"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Run one of the lecture's experiments: figures, a tidy table and a verdict per claim."""
    from deepwell.studies import run_study

    result = run_study(name, quick=not full, output=output, seed=seed)
    for verdict in result.verdicts:
        out.print(f"[bold]{verdict.claim}[/bold]: {verdict.status} - {verdict.evidence}")
    out.print(f"Study folder: {result.path}")


@app.command("sweep")
def sweep_command(
    spec: Annotated[Optional[Path], typer.Argument(help="YAML spec file the runs start from (default: built-in defaults)")] = None,
    over: Annotated[Optional[list[str]], typer.Option("--over", "-o", help="swept key and values: model.width=4,16,64 (repeatable: a grid)")] = None,
    seeds: Annotated[int, typer.Option(help="runs per combination (seed, seed+1, ...)")] = 1,
    set_: SetOption = None,
    executor: Annotated[str, typer.Option(help="batched (small models as one ensemble), in_process, process_pool, ray")] = "batched",
    workers: Annotated[Optional[int], typer.Option(help="worker processes (batched on a CPU, process_pool)")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (ray executor; default: a local Ray)")] = None,
    output: Annotated[Path, typer.Option("--out", help="parent folder of the sweep's folder")] = Path("sweeps"),
    name: Annotated[Optional[str], typer.Option(help="the sweep's folder name (default: the swept keys)")] = None,
    progress: Annotated[str, typer.Option(help="auto, bar, lines or none")] = "auto",
) -> None:
    """Train a grid of runs (every combination of --over values x seeds); resumes where it stopped."""
    from deepwell.config import load_spec
    from deepwell.sweep.grid import make_executor, parse_over, run_grid
    from deepwell.sweep.progress import SweepProgress

    base = load_spec(spec, set_ or [])
    grid = parse_over(over or [])
    shown = SweepProgress(progress, console=err)
    result = run_grid(base, grid, seeds=seeds, executor=make_executor(executor, workers=workers, address=address),
                      output=output, name=name, progress=shown)
    train = result.metric.replace("test", "train")
    table = Table(*result.keys, "n", result.metric, train)
    for row in result.rows:
        cells = [str(row[key]) for key in result.keys] + [str(row["n"])]
        cells.append(f"{row[f'{result.metric}_mean']:.4f} +- {row[f'{result.metric}_std']:.4f}")
        cells.append(f"{row[f'{train}_mean']:.4f}" if f"{train}_mean" in row else "-")
        table.add_row(*cells)
    out.print(table)
    if shown.mode == "none":  # otherwise shown as soon as known, before training
        for note in result.notes:
            err.print(f"note: {note}", markup=False, highlight=False)
    out.print(f"Sweep folder: {result.path}")


@app.command("tour")
def tour_command(
    full: Annotated[bool, typer.Option("--full", help="the reference settings (slow) instead of quick mode")] = False,
    output: Annotated[Path, typer.Option("--out", help="folder for the tour (one sub-folder per study)")] = Path("tour"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="re-run studies already finished in this folder")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="studies run at once, each in its own process "
                                                   "with one torch thread (default: one per usable core)")] = None,
) -> None:
    """Every claim of the lecture with the measurement that checks it, as one report."""
    from deepwell.reporting import write_report
    from deepwell.studies.tour import run_tour

    result = run_tour(quick=not full, output=output, seed=seed, fresh=fresh, progress=lambda line: err.print(line),
                      workers=workers)
    table = Table("claim", "verdict", "evidence")
    colour = {"holds": "green", "does_not_hold": "red", "inconclusive": "yellow"}
    for verdict in result.verdicts:
        table.add_row(verdict.id, f"[{colour[verdict.status]}]{verdict.status}[/]", verdict.evidence)
    out.print(table)
    out.print(f"Report: {write_report(result.path)}")


@app.command("augment")
def augment_command(
    augment: Annotated[Optional[list[str]], typer.Option("--augment", "-a", help="an augmentation, e.g. rotate:15 (repeatable, applied in order)")] = None,
    spec: Annotated[Optional[Path], typer.Option(help="take the augmentations from this YAML spec's data.augment")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="write a PNG grid of augmented samples")] = False,
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="image file, .npy signal, mnist1d, or .wav file (default: scikit-image's cat)")] = None,
    text: Annotated[Optional[str], typer.Option(help="a sentence to augment with text augmentations")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the PNG to write (default: augment-preview.png; with --text: print only)")] = None,
    count: Annotated[int, typer.Option(help="augmented samples")] = 8,
    columns: Annotated[int, typer.Option(help="tiles per row")] = 4,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """See what augmentations do: a PNG grid of augmented samples (with --preview)."""
    from deepwell.config import load_spec
    from deepwell.errors import ConfigError
    from deepwell.reporting.preview import write_preview

    if not preview:
        raise ConfigError("deepwell augment writes previews: add --preview (e.g. deepwell augment --preview -a rotate:15 -a crop:0.9).")
    options = list(augment or []) + ([str(option) for option in load_spec(spec).data.augment] if spec is not None else [])
    if text is not None:  # sentences read best as text: printed; a PNG of them only when -o asks for one
        from deepwell.reporting.preview import augmented_sentences

        for index, line in enumerate(augmented_sentences(options, text, count, seed)):
            out.print(f"{'original' if index == 0 else f'#{index}':>9}  {line}", markup=False, highlight=False)
        if output is None:
            return
    written = write_preview(options, output or Path("augment-preview.png"), input=input, text=text, count=count,
                            columns=columns, seed=seed)
    out.print(f"Preview: {written[0]}")
    if len(written) > 1:
        out.print(f"Augmented sounds: {', '.join(str(path) for path in written[1:])}")


@app.command("serve")
def serve_command(
    spec: Annotated[Optional[Path], typer.Argument(help="YAML spec the pages start from (default: a small net on moons)")] = None,
    set_: SetOption = None,
    host: Annotated[str, typer.Option(help="address to bind; other than 127.0.0.1 exposes the server (warns)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="the only folder CSV/NPZ files are read from (uploads aside)")] = Path("."),
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="where 'Save run' writes run folders")] = Path("runs"),
    max_sessions: Annotated[int, typer.Option("--max-sessions", min=1, help="concurrent training sessions; more pages get 'busy'")] = 2,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="largest upload accepted")] = 10.0,
    open_browser: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
) -> None:
    """The playground: train in the browser, watch the network's health, click the doctor's remedies."""
    from deepwell.serve import serve

    serve(spec, tuple(set_ or ()), host=host, port=port, data_dir=data_dir, runs_dir=runs_dir, max_sessions=max_sessions,
          max_upload_mb=max_upload_mb, open_browser=open_browser)


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _one_line_warnings() -> None:
    """Print deepwell's own warnings (odd class labels, ...) as one 'warning:' line, others as Python does."""
    import warnings

    from deepwell.errors import DataWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 (warnings' signature)
        if issubclass(category, DataWarning):
            err.print(f"warning: {message}", markup=False, highlight=False)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main() -> None:
    """Entry point: run the app, turning deepwell's own errors into one line and exit code 2.

    Ctrl-C and SIGTERM raise :class:`Interrupted` (training turns them into a stop at the next step
    boundary, with the checkpoint saved): one line saying how to resume, exit code 130 / 143.
    An OSError (a full disk, a read-only folder) is one line and exit code 2 too.
    """
    _one_line_warnings()
    # Not KeyboardInterrupt: click turns that into a silent exit. Put back after (main runs in-process in tests).
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        app()
    except DeepwellError as error:
        err.print(f"error: {error}", markup=False, highlight=False)
        sys.exit(2)
    except OSError as error:
        err.print(f"error: {storage_error(error, verb='write or read')}", markup=False, highlight=False)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as stop:
        from deepwell.training.distributed import process_rank

        stop = stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGINT)
        if process_rank() == 0:  # in a torchrun job rank 0 alone knows the run folder and says how to resume
            err.print(stop.resume_hint(), markup=False, highlight=False)
        sys.exit(stop.exit_code)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)  # None: a handler set from C


if __name__ == "__main__":
    main()
