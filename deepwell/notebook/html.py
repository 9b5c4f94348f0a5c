"""HTML and plain-text views of deepwell's objects, for notebooks (``_repr_html_``) and terminals (``__repr__``).

Every view is one self-contained HTML fragment: figures are base64 PNG (or GIF) ``data:`` URIs, styles
are inline attributes (Jupyter keeps those on untrusted outputs and GitHub's renderer; ``<style>`` tags
are stripped by both), and there are no scripts. Colours are chosen to read on Jupyter's light and
dark themes alike: text inherits the theme's colour, borders and badges are translucent, and figures
sit on a white card of their own (matplotlib draws dark ink on white).

The fragments are jinja2 templates with autoescape, like the reports (deepwell.reporting.html), so
every piece of text from a run folder is escaped.

Example::

    run = deepwell.Run.load("runs/mnist1d-cnn1d-20261127-101500")
    html = run_html(run)          # what Jupyter shows for ``run``
    print(run_text(run))          # what a terminal shows
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["run_html", "run_text", "findings_html", "findings_text", "verdicts_html", "figure_uri", "file_uri",
           "rows_html", "changed_keys", "fmt", "render", "BOX", "TONES"]

# Inline styles shared by every view. Translucent tones read on white and on Jupyter's dark grey.
BOX = ("font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; font-size: 13px; line-height: 1.45;"
       " color: inherit; max-width: 1000px; border: 1px solid rgba(128,128,128,.35); border-radius: 8px; padding: 10px 14px;")
TONES = {"good": "color: #2e9d4f; background: rgba(46,157,79,.16);", "bad": "color: #e5534b; background: rgba(229,83,75,.16);",
         "warn": "color: #c08a1e; background: rgba(212,160,23,.18);", "info": "color: #4c8ed9; background: rgba(76,142,217,.16);"}
_SEVERITY_TONE = {"error": "bad", "warning": "warn", "info": "info"}
_STATUS_TONE = {"completed": "good", "early_stopping": "good", "non_finite": "bad", "requested": "warn", "running": "info",
                "holds": "good", "does_not_hold": "bad", "inconclusive": "warn"}
_MACROS = """
{%- macro badge(text, tone) -%}
<span style="display:inline-block; padding:0 8px; border-radius:999px; font-weight:600; font-size:12px; {{ tones[tone] }}">{{ text }}</span>
{%- endmacro -%}
{%- macro image(uri, alt) -%}
<img src="{{ uri }}" alt="{{ alt }}" style="max-width:100%; height:auto; background:#fff; border-radius:6px; padding:4px; margin:6px 0;">
{%- endmacro -%}
{%- macro table(header, rows) -%}
<table style="border-collapse:collapse; margin:6px 0; font-size:12.5px;">
<tr>{% for cell in header %}<th style="text-align:left; padding:3px 10px 3px 0; border-bottom:1px solid rgba(128,128,128,.45);">{{ cell }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for cell in row %}<td style="text-align:left; padding:3px 10px 3px 0; border-bottom:1px solid rgba(128,128,128,.2); vertical-align:top;">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
{%- endmacro -%}
"""
_ENVIRONMENT = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    """Render a fragment template (with the badge/image/table macros and ``box``) with autoescaped ``context``."""
    return _ENVIRONMENT.from_string(_MACROS + template).render(box=BOX, tones=TONES, **context)


def fmt(value: Any, percent: bool = False) -> str:
    """Numbers for people, as the HTML reports write them (:func:`deepwell.reporting.html.format_number`)."""
    from deepwell.reporting.html import format_number  # the reports' one formatting; imported late (matplotlib)

    return format_number(value, percent)


def figure_uri(figure: Any) -> str | None:
    """A matplotlib figure as a base64 PNG data URI (None stays None)."""
    if figure is None:
        return None
    from deepwell.reporting.figures import png_data_uri

    return png_data_uri(figure)


def file_uri(path: Path) -> str | None:
    """A PNG or GIF file as a data URI, None when missing or another format."""
    from deepwell.reporting.figures import image_file_uri

    return image_file_uri(path) if Path(path).is_file() else None


def changed_keys(spec: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys whose value differs from the defaults: ``[("model.depth", 6), ("train.lr", 0.01)]``."""
    changed = []
    for key, value in spec.items():
        name, default = f"{prefix}{key}", defaults.get(key) if isinstance(defaults, Mapping) else None
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            changed += changed_keys(value, default, name + ".")
        elif value != default:
            changed.append((name, value))
    return changed


def rows_html(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain table fragment (cells formatted with :func:`fmt`)."""
    return render("{{ table(header, rows) }}", header=list(header), rows=[[fmt(c) for c in row] for row in rows])


# --- runs -----------------------------------------------------------------------------------------
_FINAL = ("train/loss", "train/loss_clean", "train/acc_clean", "val/loss", "val/acc")
_RUN = """<div style="{{ box }}">
<div style="font-size:15px; font-weight:600;">Run {{ name }} {{ badge(status, tone) }}</div>
<div style="opacity:.75;">{{ message }}</div>
{{ table(metrics | map(attribute=0) | list, [metrics | map(attribute=1) | list]) }}
{% if changed %}<div><b>Spec</b> (keys that differ from the defaults): {% for key, value in changed %}<code>{{ key }}={{ value }}</code>{% if not loop.last %}, {% endif %}{% endfor %}</div>{% endif %}
{% if curves %}{{ image(curves, "learning curves") }}{% endif %}
{% if findings is not none %}{{ findings | safe }}{% endif %}
<div style="opacity:.65; font-size:12px;">folder: <code>{{ path }}</code></div>
</div>"""


def _run_parts(run: Any) -> dict[str, Any]:
    from deepwell.config import RunSpec

    summary = run.summary if (run.path / "summary.json").is_file() else {}
    test, final = summary.get("test", {}), summary.get("final", {})
    metrics = [(key, fmt(value, percent=key.endswith("acc"))) for key, value in test.items()]
    metrics += [(key, fmt(final[key], percent=key.endswith("acc") or key.endswith("acc_clean"))) for key in _FINAL if key in final]
    if summary:
        metrics += [("epochs", fmt(summary.get("epochs_run"))), ("seconds", fmt(summary.get("train_seconds")))]
    metrics.append(("parameters", fmt(run.meta.get("parameters"))))
    changed = [(k, v) for k, v in changed_keys(run.spec.to_dict(), RunSpec().to_dict()) if not k.startswith("output.")]
    status = summary.get("status", "unfinished")
    return {"name": run.path.name, "status": status.replace("_", " "), "tone": _STATUS_TONE.get(status, "warn"),
            "message": summary.get("message", "The run has no summary.json yet (still training, or killed)."),
            "metrics": metrics, "changed": changed, "test": test, "path": str(run.path)}


def _run_findings(run: Any) -> Any:
    from deepwell.diagnostics.doctor import load_findings

    path = run.path / "findings.json"
    return load_findings(path) if path.is_file() else None


def run_html(run: Any) -> str:
    """The notebook view of a :class:`deepwell.Run`: status, final metrics, changed spec keys, curves, findings."""
    from deepwell.reporting.figures import learning_curves_figure

    parts = _run_parts(run)
    findings = _run_findings(run)
    curves = figure_uri(learning_curves_figure(run.history, parts["test"]))
    return render(_RUN, curves=curves, findings=None if findings is None else findings_html(findings, boxed=False), **parts)


def run_text(run: Any) -> str:
    """The terminal view of a Run: one line of status and metrics, the health line."""
    from deepwell.diagnostics.doctor import health_line

    parts = _run_parts(run)
    shown = ", ".join(f"{key} {value}" for key, value in parts["metrics"][:4])
    lines = [f"Run({str(run.path)!r}): {parts['status']}; {shown}"]
    findings = _run_findings(run)
    if findings is not None:
        lines.append(health_line(findings))
    return "\n".join(lines)


# --- the doctor's findings ------------------------------------------------------------------------
_FINDINGS = """{% if boxed %}<div style="{{ box }}">{% endif %}
<div style="margin:6px 0;">{{ badge("healthy" if healthy else "problems", "good" if healthy else "bad") }} {{ line }}</div>
{% for f in findings %}
<div style="border-left:4px solid {{ colours[f.severity] }}; padding:4px 10px; margin:6px 0;">
<div>{{ badge(f.severity, tones_of[f.severity]) }} <b>{{ f.title }}</b></div>
<div>{{ f.evidence }}</div>
{% if f.numbers %}<div style="opacity:.75; font-size:12px;">{% for key, value in f.numbers.items() %}{{ key }} = {{ fmt(value) }}{% if not loop.last %}; {% endif %}{% endfor %}</div>{% endif %}
{% for remedy in f.remedies %}<div><span style="{{ tones.good }} padding:0 5px; border-radius:4px;">try</span> {{ remedy }}</div>{% endfor %}
</div>
{% endfor %}
{% if boxed %}</div>{% endif %}"""


def findings_html(findings: Any, boxed: bool = True) -> str:
    """The doctor's findings (a :class:`~deepwell.diagnostics.doctor.Findings`): health line, then each finding."""
    from deepwell.diagnostics.doctor import health_line

    return render(_FINDINGS, boxed=boxed, healthy=getattr(findings, "healthy", not findings), line=health_line(findings),
                  findings=list(findings), fmt=fmt, tones_of=_SEVERITY_TONE,
                  colours={"error": "#e5534b", "warning": "#d4a017", "info": "#4c8ed9"})


def findings_text(findings: Any) -> str:
    """Findings for a terminal: the health line, then one line per finding."""
    from deepwell.diagnostics.doctor import health_line

    return "\n".join([health_line(findings), *(f"{f.severity.upper()}: {f.title}" for f in findings)])


# --- verdicts (studies, tours) --------------------------------------------------------------------
_VERDICTS = """<table style="border-collapse:collapse; margin:6px 0; font-size:12.5px;">
<tr><th style="text-align:left; padding:3px 10px 3px 0; border-bottom:1px solid rgba(128,128,128,.45);">claim</th>
<th style="text-align:left; padding:3px 10px 3px 0; border-bottom:1px solid rgba(128,128,128,.45);">verdict</th>
<th style="text-align:left; padding:3px 10px 3px 0; border-bottom:1px solid rgba(128,128,128,.45);">evidence and numbers</th></tr>
{% for v in verdicts %}<tr style="vertical-align:top;">
<td style="padding:4px 10px 4px 0; border-bottom:1px solid rgba(128,128,128,.2);"><b>{{ v.claim }}</b><br><span style="opacity:.8;">{{ v.text }}</span></td>
<td style="padding:4px 10px 4px 0; border-bottom:1px solid rgba(128,128,128,.2); white-space:nowrap;">{{ badge(v.status | replace("_", " "), tone[v.status]) }}</td>
<td style="padding:4px 10px 4px 0; border-bottom:1px solid rgba(128,128,128,.2);">{{ v.evidence }}
{% if v.numbers %}<details><summary style="cursor:pointer; opacity:.75;">numbers</summary><span style="font-size:12px;">{% for key, value in v.numbers.items() %}<span class="number" data-key="{{ key }}">{{ key }} = {{ fmt(value) }}</span>{% if not loop.last %}; {% endif %}{% endfor %}</span></details>{% endif %}</td>
</tr>{% endfor %}
</table>"""


def verdicts_html(verdicts: Sequence[Any]) -> str:
    """A table of verdicts: claim, status badge, evidence, and the measured numbers (folded)."""
    return render(_VERDICTS, verdicts=verdicts, fmt=fmt, tone=_STATUS_TONE)
