"""HTML of run and study reports, rendered from their folders alone with one jinja2 template.

:func:`render_run` reads a run folder (config.yaml, meta.json, metrics.jsonl, summary.json,
probes.jsonl, findings.json), :func:`render_study` a study folder (study.json, its PNG figures
and CSV tables). Both return one self-contained HTML page: figures are ``data:`` URIs, the CSS
is inline, there are no scripts, and every piece of text is escaped (jinja2 autoescape).
Missing files make a section say what is missing instead of failing: a report of a killed run
is still useful.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from deepwell.diagnostics.probe_log import ProbeLog, load_probes
from deepwell.errors import CheckpointError
from deepwell.reporting import figures
from deepwell.training.checkpoint import read_jsonl

__all__ = ["render_run", "render_study", "TABLE_ROWS"]

TABLE_ROWS = 50  # rows of a study's CSV table shown in the report

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("deepwell.reporting", "templates"),
    autoescape=True,  # the template is .j2, so name it explicitly: every value is escaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def format_number(value: Any, percent: bool = False) -> str:
    """Numbers for people: 12,345 / 0.6688 / 3.2e-05 / 93.1% (``percent``); None as a dash.

    Example::

        format_number(0.93125, percent=True)   # '93.1%'
    """
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.1%}" if percent else f"{value:.4g}"


_number = format_number


_ENVIRONMENT.filters["num"] = _number
_ENVIRONMENT.filters["percent"] = lambda value: "—" if value is None else f"{value:.1%}"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"'{path}' is corrupt ({error}); the report cannot be written from it.") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path)


def _generated() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


# --- runs -------------------------------------------------------------------------------------
_STATUS = {"completed": "good", "early_stopping": "good", "non_finite": "bad", "requested": "warn"}
_SEVERITY = {"error": "bad", "critical": "bad", "high": "bad", "warning": "warn", "warn": "warn", "medium": "warn"}

_EXPLAIN = {
    "curves": "Loss and accuracy after each epoch. 'As trained' is the average over the epoch's batches with dropout "
              "and other training-only noise on; 'clean' re-measures the training set in eval mode, so it is the fair "
              "comparison with validation. A widening gap between clean training and validation means overfitting.",
    "health": "Measured on a fixed batch of training examples every few steps, one line per hidden layer (dark = near the "
              "input, light = near the output). Healthy: gradient norms of similar size across layers (no layer orders of "
              "magnitude below the others), activation spread neither collapsing to 0 nor growing layer after layer, "
              "few dead or saturated units. Dotted grey lines mark epoch ends.",
    "hist": "Distribution of each layer's outputs on the probe batch (area = 1). Grey: before training; red: later in "
            "training. A spike at 0 for ReLU layers is units that are off; mass piled at ±1 (tanh) or 0/1 (sigmoid) is "
            "saturation, where gradients vanish.",
}


def _architecture(model: dict[str, Any], meta: dict[str, Any]) -> str:
    """'MLP: 2 → 16 → 16 → 2' or 'CNN1D: channels 32, 32, pool, ... → 10'."""
    arch = str(model.get("arch", "?"))
    inputs = "×".join(str(n) for n in meta.get("input_shape", [])) or "?"
    outputs = meta.get("output_size", "?")
    if arch == "mlp":
        hidden = model.get("hidden") or [model.get("width", "?")] * int(model.get("depth") or 0)
        return "MLP: " + " → ".join(str(n) for n in [inputs, *hidden, outputs])
    if "channels" in model and arch.startswith("cnn"):
        return f"{arch.upper()}: input {inputs}, channels {', '.join(str(c) for c in model['channels'])} → {outputs}"
    return f"{arch}: input {inputs} → {outputs}"


def _options(value: Any) -> str:
    """A spec sub-section as 'monitor val/loss, patience 10'; other values as written."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    return "" if value is None else str(value)


# spec key -> the registry kind of its option (written out with every parameter in the Spec table)
_OPTION_KINDS = {"source": "dataset", "preprocess": "preprocessing", "augment": "augmentation", "activation": "activation",
                 "init": "initializer", "bias_init": "initializer", "norm": "normalization", "dropout": "dropout",
                 "optimizer": "optimizer", "schedule": "schedule", "penalty": "penalty"}


def _spelled(key: str, value: Any) -> str:
    """An option value with every parameter, defaults included ('l2' -> 'l2:strength=0.0001,include_bias=false').

    A value the registry no longer reads (an older or edited config.yaml) is shown as written.
    """
    from deepwell.config import registry
    from deepwell.errors import ConfigError

    if isinstance(value, list):
        return ", ".join(_spelled(key, item) for item in value) or "none"
    if key not in _OPTION_KINDS or value is None:
        return _options(value)
    try:
        return registry(_OPTION_KINDS[key]).spelled_out(value)
    except (ConfigError, TypeError, ValueError):
        return _options(value)


def _spec_rows(spec: dict[str, Any], meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The Spec table: every option with all its parameters (defaults written out), augmentation included."""
    data, model, train = spec.get("data", {}), spec.get("model", {}), spec.get("train", {})

    def listed(section: dict[str, Any], keys: tuple[str, ...]) -> str:
        return ", ".join(f"{key} {_spelled(key, section[key])}" for key in keys if key in section)

    rows = [
        ("data", f"{_spelled('source', data.get('source'))} (validation fraction {data.get('val_fraction')}, label noise "
                 f"{data.get('label_noise')}, preprocess {_spelled('preprocess', data.get('preprocess'))})"),
        ("augmentation", _spelled("augment", data.get("augment") or []) + " (training batches only)"
         if data.get("augment") else "none"),
        ("network", _architecture(model, meta)),
        ("layers", listed(model, ("activation", "init", "bias_init", "norm", "norm_position", "dropout", "residual"))),
        ("training", listed(train, ("optimizer", "lr", "schedule", "warmup_epochs", "batch_size", "epochs", "penalty",
                                    "clip_grad_norm"))),
        ("early stopping", _options(train.get("early_stopping")) or "off"),
        ("seed", str(spec.get("seed"))),
    ]
    return [(name, value) for name, value in rows if value]


def _layer_rows(probes: ProbeLog, activation: str | None) -> list[dict[str, Any]]:
    """One row per layer: gradient norm and activation std at init and last sample, dead/saturated at the end.

    Dead and saturated are None (shown as a dash) where the activation cannot have them.
    """
    if not probes.samples:
        return []
    first, last = probes.initial() or probes.samples[0], probes.samples[-1]
    dead_epoch = probes.epochs[-1]["dead_epoch"] if probes.epochs else None
    dead_applies, saturated_applies = figures.applies("dead", activation), figures.applies("saturated", activation)
    return [{
        "label": figures.layer_label(i, name),
        "grad_first": first["grad_norm"][i], "grad_last": last["grad_norm"][i],
        "std_first": first["act_std"][i], "std_last": last["act_std"][i],
        "dead": (dead_epoch[i] if dead_epoch else last["dead"][i]) if dead_applies else None,
        "saturated": last["saturated"][i] if saturated_applies else None,
    } for i, name in enumerate(probes.layers)]


def _shown(figure: Any, alt: str, key: str, **extra: Any) -> dict[str, Any] | None:
    return None if figure is None else {"uri": figures.png_data_uri(figure), "alt": alt, "text": _EXPLAIN[key], **extra}


def _run_figures(history: list[dict[str, Any]], test: dict[str, float], probes: ProbeLog,
                 activation: str | None) -> dict[str, dict[str, Any] | None]:
    hist, epoch = figures.histograms_figure(probes)
    return {
        "curves": _shown(figures.learning_curves_figure(history, test), "learning curves", "curves"),
        "health": _shown(figures.layer_health_figure(probes, activation), "per-layer health over training", "health"),
        "hist": _shown(hist, "activation histograms", "hist", epoch=epoch),
    }


_TONE_ORDER = {"bad": 0, "warn": 1, "info": 2}


def _as_list(value: Any) -> list[str]:
    """A findings field as a list of strings (the doctor may write one string or a list)."""
    if value is None or value == "":
        return []
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]


def _findings(path: Path) -> dict[str, Any] | None:
    report = _read_json(path / "findings.json")
    if report is None:
        return None
    findings = []
    for finding in report.get("findings", []):
        severity = str(finding.get("severity", "info"))
        findings.append({**{key: finding.get(key) for key in ("rule", "title", "evidence")},
                         **{key: _as_list(finding.get(key)) for key in ("layers", "steps", "remedies", "withheld")},
                         "severity": severity, "tone": _SEVERITY.get(severity.lower(), "info"),
                         "numbers": finding.get("numbers") or {}})
    findings.sort(key=lambda finding: _TONE_ORDER[finding["tone"]])  # stable: the doctor's order within a severity
    return {"findings": findings, "healthy": bool(report.get("healthy")), "checked": _as_list(report.get("checked")),
            "not_checked": {str(k): str(v) for k, v in (report.get("not_checked") or {}).items()},
            "vitals": report.get("vitals") or {}}


def render_run(path: str | Path) -> str:
    """The HTML report of a run folder (see :mod:`deepwell.run` for its files)."""
    path = Path(path)
    config_text = (path / "config.yaml").read_text()
    spec = yaml.safe_load(config_text) or {}
    meta = _read_json(path / "meta.json") or {}
    summary = _read_json(path / "summary.json")
    history = _read_jsonl(path / "metrics.jsonl")
    probes = load_probes(path / "probes.jsonl")
    test = (summary or {}).get("test", {})
    activation = spec.get("model", {}).get("activation")
    context = {
        "kind": "run", "title": path.name, "generated": _generated(), "path": str(path.resolve()),
        "meta": meta, "summary": summary, "status_tone": _STATUS.get((summary or {}).get("status"), "warn"),
        "test": test, "final": (summary or {}).get("final", {}), "epochs_planned": spec.get("train", {}).get("epochs"),
        "spec_rows": _spec_rows(spec, meta), "config_text": config_text,
        "figures": _run_figures(history, test, probes, activation), "layers": _layer_rows(probes, activation),
        "probes_on": bool(spec.get("diagnostics", {}).get("probes", True)),
        "diagnosis": _findings(path), "run_path": str(path),
    }
    return _ENVIRONMENT.get_template("report.html.j2").render(**context)


# --- studies ----------------------------------------------------------------------------------
_VERDICT = {"holds": "good", "does_not_hold": "bad", "inconclusive": "warn"}


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` if it is a file inside ``folder`` (a study.json cannot pull in other files)."""
    candidate = (folder / relative).resolve()
    return candidate if candidate.is_relative_to(folder.resolve()) and candidate.is_file() else None


def _study_figure(folder: Path, entry: dict[str, Any]) -> dict[str, Any]:
    file = _inside(folder, str(entry.get("path", "")))
    uri = None if file is None else figures.image_file_uri(file)  # PNG figures and GIF animations
    return {"path": entry.get("path"), "caption": entry.get("caption", ""), "uri": uri}


def _study_table(folder: Path, entry: dict[str, Any]) -> dict[str, Any]:
    file = _inside(folder, str(entry.get("path", "")))
    table: dict[str, Any] = {"path": entry.get("path"), "caption": entry.get("caption", ""), "header": None, "rows": [],
                             "total": 0}
    if file is None:
        return table
    with file.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if rows:
        body = rows[1:TABLE_ROWS + 1]
        numeric = [all(_is_number(row[i]) for row in body if i < len(row)) for i in range(len(rows[0]))]
        table.update(header=list(zip(rows[0], numeric)), total=len(rows) - 1,
                     rows=[[(_cell(v), i < len(numeric) and numeric[i]) for i, v in enumerate(row)] for row in body])
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(text: str) -> str:
    """CSV cells as people read them: long floats shortened, everything else as written."""
    try:
        value = float(text)
    except ValueError:
        return text
    return text if text.lstrip("-").isdigit() or len(text) <= 8 else _number(value)


def _why(verdict: dict[str, Any]) -> str:
    """The verdict in one plain sentence: where it holds and where not (regimes), else the evidence's first sentence."""
    regimes = verdict.get("regimes") or []
    if regimes:
        lecture = next((r for r in regimes if r.get("lecture")), regimes[0])
        parts = [f"{str(verdict.get('status', '')).replace('_', ' ').capitalize()} in the lecture's regime ({lecture['name']})"]
        for status in ("holds", "does_not_hold", "inconclusive"):
            names = [r["name"] for r in regimes if r is not lecture and r.get("status") == status]
            if names:
                parts.append(f"{status.replace('_', ' ')} in {', '.join(names)}")
        return "; ".join(parts) + "."
    evidence = str(verdict.get("evidence") or "")
    end = re.search(r"[.!?] (?=[A-Z])", evidence)   # a sentence ends before a capital ("e.g. a" does not)
    return evidence if end is None else evidence[:end.start() + 1]


def _verdict_figure(verdict: dict[str, Any], figures: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The figure beside a verdict: the one it names, else its study's figure named after the claim, else (in a tour)
    its study's first; None on a single study's page when no figure is named after the claim."""
    if verdict.get("figure"):
        return next((f for f in figures if f["path"] == verdict["figure"]), None)
    source = str(verdict.get("source") or "")
    candidates = [f for f in figures if not source or str(f["path"]).startswith(f"{source}/")]
    stem = str(verdict.get("claim", "")).replace("-", "_")
    fallback = candidates[0] if source and candidates else None   # in a tour: the study's first figure
    return next((f for f in candidates if stem and stem in str(f["path"])), fallback)


def _card(v: dict[str, Any], figures: list[dict[str, Any]]) -> dict[str, Any]:
    numbers = v.get("numbers") or {}
    return {**{key: v.get(key) for key in ("claim", "text", "evidence", "rule", "source")}, "id": v.get("id") or v.get("claim"),
            "status": str(v.get("status", "")), "tone": _VERDICT.get(str(v.get("status")), "warn"), "why": _why(v),
            "regimes": [{**r, "tone": _VERDICT.get(str(r.get("status")), "warn")} for r in v.get("regimes") or []],
            "numbers": numbers, "figure": _verdict_figure(v, figures)}


def render_study(path: str | Path) -> str:
    """The HTML report of a study (or tour) folder: one card per verdict (statement, verdict and why in one sentence,
    its regimes or numbers in a small table, its figure beside it), then the other figures and the tables."""
    path = Path(path)
    study = _read_json(path / "study.json") or {}
    figures = [_study_figure(path, entry) for entry in study.get("figures", [])]
    verdicts = [_card(v, figures) for v in study.get("verdicts", [])]
    shown = {id(v["figure"]) for v in verdicts if v["figure"] is not None}
    context = {
        "kind": "study", "title": study.get("title") or study.get("name") or path.name, "generated": _generated(),
        "path": str(path.resolve()), "study": study, "verdicts": verdicts, "summary": study.get("summary") or {},
        "counts": {status: sum(v["status"] == status for v in verdicts) for status in _VERDICT},
        "figures": [f for f in figures if id(f) not in shown],
        "tables": [_study_table(path, entry) for entry in study.get("tables", [])], "table_rows": TABLE_ROWS,
    }
    return _ENVIRONMENT.get_template("report.html.j2").render(**context)
