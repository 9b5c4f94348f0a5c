"""Wording shared by the rules: numbers, layer lists and the usual remedies."""

from __future__ import annotations

from deepwell.diagnostics.evidence import RunEvidence


def _g(value: float) -> str:
    return f"{value:.3g}"


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _names(layers: list[str], of: list[str] | None = None) -> str:
    """'dense.0', 'dense.0 and dense.3', 'dense.0 to dense.15 (16 of 20 layers)'."""
    if len(layers) <= 2:
        return " and ".join(layers)
    if of is not None and layers == of[of.index(layers[0]):of.index(layers[0]) + len(layers)]:
        return f"{layers[0]} to {layers[-1]} ({len(layers)} of {len(of)} layers)"
    return ", ".join(layers[:-1]) + " and " + layers[-1]


def _activation(evidence: RunEvidence) -> str:
    return evidence.spec.model.activation.name


def _init_remedy(evidence: RunEvidence) -> str:
    """Set the init that keeps the variance for this activation (He for the ReLU family, else Xavier)."""
    if _activation(evidence) in ("relu", "leaky_relu", "prelu", "elu", "gelu", "silu"):
        return "use model.init=he (std sqrt(2/fan_in): keeps the activation variance of ReLU layers)"
    return "use model.init=xavier (Glorot: keeps the activation variance of tanh/sigmoid layers)"


def _norm_remedy(evidence: RunEvidence) -> list[str]:
    return ["add model.norm=batchnorm (re-centres and re-scales every layer's inputs)"] \
        if evidence.spec.model.norm.name == "none" else []


def _lower_lr(evidence: RunEvidence, factor: float = 10.0) -> str:
    return f"set train.lr={evidence.spec.train.lr / factor:g} ({factor:g}x lower than {evidence.spec.train.lr:g})"
