"""The doctor's rules on the network itself: initialisation, gradients and activations (from the probes and the weights)."""

from __future__ import annotations

from typing import Any

from deepwell.diagnostics.evidence import TINY as _TINY, Finding, RunEvidence, Unchecked
from deepwell.diagnostics.rules.wording import _activation, _g, _init_remedy, _lower_lr, _names, _norm_remedy, _pct

__all__ = [
    "zero_init", "identical_units", "vanishing_gradient", "exploding_gradient", "saturation", "dead_relu",
    "activation_collapse", "activation_growth",
]

# --- thresholds (why each value) -------------------------------------------------------------
# Gradients at init, first hidden layer vs last, measured on the back-propagated signal dL/dh
# (not the weight gradient, whose size also depends on the layer's shape: a first conv layer has
# 100x fewer weights). Healthy 20-layer nets stay within ~5x (ReLU+He 0.85, tanh+Xavier 0.19);
# sigmoid depth 20 gives ~1e-12. Two orders of magnitude either way is a real problem.
# In a lower precision (train.precision=bf16, tf32) a reading must pass the bound by more than
# what rounding alone can move it (RunEvidence.rounding: up to 16% for 20 layers in bf16), so a
# ratio that fp32 reads just inside the bound never becomes a finding by bf16 rounding alone.
VANISHING_RATIO = 1e-2
EXPLODING_RATIO = 1e2
# Saturated = output within probes.SATURATION of an asymptote, where the derivative is < 2% of its
# maximum. CS231n's sick example (tanh, sigma 0.05) has 33% saturated; healthy Xavier nets ~0%.
SATURATED_FRACTION = 0.25
# A ReLU layer where more than half the units never fired on any training example in an epoch
# has lost most of its width; a healthy ReLU+He net has 0-20%.
DEAD_FRACTION = 0.5
# act_std of the last hidden layer vs the first, at init: He/Xavier keep it within ~2x; a 10x fall
# (collapse towards 0) or rise (growth) over the depth is what the lecture's bad inits produce.
ACTIVATION_SCALE_FACTOR = 10.0
# A finding read at initialisation is only a warning while it persists: when the last probe sample
# (after training) is back within the healthy bounds above, training overcame it and the finding
# becomes an info (e.g. a deep sigmoid net with batchnorm: 1e-12 at step 0, ~1 from step 21 on).
# Final weight rows equal to this relative tolerance: units that compute the same function.
# Random inits never come close; symmetric units stay bitwise equal (equal gradients).
IDENTICAL_TOLERANCE = 1e-6


def zero_init(evidence: RunEvidence) -> Finding | None:
    """Weights all zero at init: every unit of a layer computes the same thing; nothing flows back."""
    layers = evidence.zero_layers()
    if not layers:
        return None
    weights = evidence.weights
    still_zero = [name for name in layers if name in weights and not weights[name].any()]
    names = evidence.probes.layers or list(weights)
    fate = (f"after training, {_names(still_zero, names)} still have all-zero weights: they never learned"
            if still_zero else "after training, the units of each layer are still identical copies")
    when = "had weight norm 0 at initialisation" if evidence.probes.initial() else "have all-zero weights"
    return Finding(
        "zero_init", "error", "All weights start at zero, so the hidden units are symmetric and cannot learn",
        f"{_names(layers, names)} {when} (init={evidence.spec.model.init}): "
        f"every unit gets the same (here zero) gradient; {fate}.",
        layers=layers, steps=[0], numbers={"zero_layers": float(len(layers)), "still_zero_layers": float(len(still_zero))},
        remedies=[_init_remedy(evidence), "never initialise weights to a constant: random weights break the symmetry"])


def identical_units(evidence: RunEvidence) -> Finding | None:
    """Herding: after training, every unit of a hidden layer has the same weights (constant init)."""
    zero = set(evidence.zero_layers())
    layers = []
    for name, weight in evidence.weights.items():
        rows = weight.reshape(weight.shape[0], -1).float()
        scale = rows.abs().max()
        if name not in zero and len(rows) > 1 and scale > 0 and (rows - rows[0]).abs().max() <= IDENTICAL_TOLERANCE * scale:
            layers.append(name)
    if not layers:
        return None
    return Finding(
        "identical_units", "error", "Hidden units are identical copies of each other (herding)",
        f"In the final weights, every unit of {_names(layers, list(evidence.weights))} has exactly the same weights "
        f"(init={evidence.spec.model.init}): the units started equal, got equal gradients and moved together, "
        "so each layer acts like a single unit.",
        layers=layers, steps=[int(evidence.summary["steps"])] if "steps" in evidence.summary else [],
        numbers={"identical_layers": float(len(layers))},
        remedies=[_init_remedy(evidence), "use a random init, never a constant: units must start different to specialise"])


def _no_probes(evidence: RunEvidence) -> Unchecked | None:
    """Unchecked when the run recorded no probe samples (probes off, or a model without deepwell blocks)."""
    if evidence.probes.samples:
        return None
    why = "diagnostics.probes=false" if not evidence.spec.diagnostics.probes else "the model has no probed layers"
    return Unchecked(f"no probes recorded ({why})")


def _gradient_ratio(sample: dict[str, Any] | None) -> tuple[list[float], str] | None:
    """Per-layer gradient signal of one probe sample relative to the last hidden layer, and the quantity used.

    An exactly-zero gradient is left out: it means zero weights or dead ReLUs, which zero_init and dead_relu name.
    """
    for quantity in ("signal_grad_norm", "grad_norm"):
        values = sample.get(quantity) if sample else None
        if values and len(values) > 1 and None not in values and values[-1] > _TINY and values[0] > _TINY:
            return [v / values[-1] for v in values], quantity
    return None


def _rounding_note(evidence: RunEvidence, margin: float) -> str:
    """For a run in a lower precision: the reading passed its bound by more than rounding can explain."""
    if evidence.precision == "fp32":
        return ""
    return (f" (The run computed in {evidence.precision}, whose rounding can move this ratio by up to "
            f"{_pct(margin - 1)}; it is past the bound by more than that.)")


def _recovered(evidence: RunEvidence, healthy: Any) -> tuple[float, int] | None:
    """(first/last gradient ratio, step) of the last sample when it is back within bounds (``healthy(ratio)``)."""
    later = _gradient_ratio(evidence.latest())
    if later is None or not healthy(later[0][0]):
        return None
    return later[0][0], evidence.latest()["step"]


def _init_finding(finding: Finding, recovered: tuple[float, int] | None, what: str) -> Finding:
    """A finding read at step 0, kept as a warning while it persists, downgraded to info once training overcame it."""
    if recovered is None:
        return finding
    ratio, step = recovered
    return Finding(
        finding.rule, "info", finding.title + " at initialisation only: training overcame it",
        finding.evidence + f" By step {step} (the last probe sample) {what} was {_g(ratio)}: back within the healthy "
        "range, so this slowed only the start.",
        layers=finding.layers, steps=[*finding.steps, step], numbers={**finding.numbers, "ratio_last": ratio},
        remedies=["nothing to fix now; for a faster start: " + finding.remedies[0]])


def vanishing_gradient(evidence: RunEvidence) -> Finding | Unchecked | None:
    """At init the first layers get a tiny fraction of the gradient the last hidden layer gets (and still do later?)."""
    if (missing := _no_probes(evidence)) is not None:
        return missing
    found = _gradient_ratio(evidence.probes.initial())
    margin = evidence.rounding(len(evidence.probes.layers))
    if found is None or found[0][0] * margin >= VANISHING_RATIO:
        return None
    ratios, quantity = found
    names = evidence.probes.layers
    layers = [name for name, r in zip(names, ratios) if r * margin < VANISHING_RATIO]
    grads = evidence.initial("grad_norm")
    remedies = []
    if _activation(evidence) in ("sigmoid", "tanh"):
        remedies.append(f"use model.activation=relu with model.init=he (the {_activation(evidence)} derivative is at most "
                        f"{'0.25' if _activation(evidence) == 'sigmoid' else '1'} and shrinks the gradient at every layer)")
    remedies += [*_norm_remedy(evidence), "add model.residual=true (skip connections carry the gradient past layers)",
                 f"use fewer layers (model.depth is {len(names)})"]
    finding = Finding(
        "vanishing_gradient", "warning", "Gradients vanish in the first layers",
        f"At initialisation (step 0) the gradient reaching {names[0]} is {_g(ratios[0])}x the one at {names[-1]} "
        f"({quantity}; weight gradients {_g(grads[0])} vs {_g(grads[-1])}); {_names(layers, names)} get less than "
        f"{_g(VANISHING_RATIO)}x, so they barely learn.{_rounding_note(evidence, margin)}",
        layers=layers, steps=[0],
        numbers={"ratio_first_last": ratios[0], "grad_norm_first": grads[0], "grad_norm_last": grads[-1]},
        remedies=remedies)
    return _init_finding(finding, _recovered(evidence, lambda r: r >= VANISHING_RATIO), f"the first/last ratio ({quantity})")


def exploding_gradient(evidence: RunEvidence) -> Finding | Unchecked | None:
    """At init the gradient grows going back: the first layers get far larger gradients than the last (and still do later?)."""
    if (missing := _no_probes(evidence)) is not None:
        return missing
    found = _gradient_ratio(evidence.probes.initial())
    margin = evidence.rounding(len(evidence.probes.layers))
    if found is None or found[0][0] / margin <= EXPLODING_RATIO:
        return None
    ratios, quantity = found
    names = evidence.probes.layers
    layers = [name for name, r in zip(names, ratios) if r / margin > EXPLODING_RATIO]
    finding = Finding(
        "exploding_gradient", "warning", "Gradients explode towards the first layers",
        f"At initialisation (step 0) the gradient reaching {names[0]} is {_g(ratios[0])}x the one at {names[-1]} "
        f"({quantity}); it grows at every layer going back, and {_names(layers, names)} get more than "
        f"{_g(EXPLODING_RATIO)}x.{_rounding_note(evidence, margin)}",
        layers=layers, steps=[0], numbers={"ratio_first_last": ratios[0]},
        remedies=[f"{_init_remedy(evidence)} instead of init={evidence.spec.model.init}", *_norm_remedy(evidence),
                  "set train.clip_grad_norm=1.0 (caps each step)"])
    return _init_finding(finding, _recovered(evidence, lambda r: r <= EXPLODING_RATIO), f"the first/last ratio ({quantity})")


def saturation(evidence: RunEvidence) -> Finding | Unchecked | None:
    """Sigmoid/tanh units stuck in the flat tails, where their derivative is ~0 (at init or at the end)."""
    if (missing := _no_probes(evidence)) is not None:
        return missing
    first, last = evidence.probes.initial() or evidence.probes.samples[0], evidence.probes.samples[-1]
    names = evidence.probes.layers
    worst = [max(a or 0.0, b or 0.0) for a, b in zip(first["saturated"], last["saturated"])]
    layers = [name for name, s in zip(names, worst) if s > SATURATED_FRACTION]
    if not layers:
        return None
    top = max(range(len(worst)), key=worst.__getitem__)
    smaller = "use a smaller init (model.init=xavier:gain=0.5)"
    remedies = [_init_remedy(evidence) if evidence.spec.model.init.name != "xavier" else smaller,
                *_norm_remedy(evidence), "use model.activation=relu with model.init=he (ReLU does not saturate for x > 0)"]
    return Finding(
        "saturation", "warning", f"{_activation(evidence).capitalize()} units saturate",
        f"{_names(layers, names)} have more than {_pct(SATURATED_FRACTION)} of their outputs in the flat tails "
        f"(worst {names[top]}: {_pct(first['saturated'][top] or 0)} at initialisation, {_pct(last['saturated'][top] or 0)} "
        f"at step {last['step']}); there the derivative is ~0 and the gradient dies.",
        layers=layers, steps=[first["step"], last["step"]],
        numbers={"max_saturated": worst[top], "saturated_at_init": first["saturated"][top] or 0.0}, remedies=remedies)


def dead_relu(evidence: RunEvidence) -> Finding | Unchecked | None:
    """ReLU units that never fire on any training example during the last epoch."""
    if (missing := _no_probes(evidence)) is not None:
        return missing
    if not evidence.probes.epochs:
        return None
    last = evidence.probes.epochs[-1]
    zero = set(evidence.zero_layers())
    names = last["layers"]
    layers = [name for name, d in zip(names, last["dead_epoch"]) if d > DEAD_FRACTION and name not in zero]
    if not layers:
        return None
    top = max(range(len(names)), key=lambda i: last["dead_epoch"][i] if names[i] in layers else -1.0)
    dead = last["dead_epoch"][top]
    at_init = (evidence.initial("dead") or [0.0] * len(names))[top] or 0.0
    rose = dead - at_init > DEAD_FRACTION / 2  # they died while training (large steps), not at init
    cause = (f"up from {_pct(at_init)} at initialisation: large updates pushed them below zero" if rose
             else f"already {_pct(at_init)} at initialisation: the pre-activations start negative")
    remedies = ["use model.activation=leaky_relu:0.01 (a small slope for x < 0 keeps units alive)"]
    remedies.append(_lower_lr(evidence) if rose else "use model.init=he with model.bias_init=zeros")
    remedies += _norm_remedy(evidence)
    return Finding(
        "dead_relu", "error" if dead >= 1.0 else "warning", "ReLU units are dead",
        f"In epoch {last['epoch'] + 1} (step {last['step']}) {_pct(dead)} of {names[top]}'s units never fired on any "
        f"training example ({cause}); dead layers: {_names(layers, names)}. A dead unit gets no gradient and never recovers.",
        layers=layers, steps=[last["step"]], numbers={"max_dead": dead, "dead_at_init": at_init}, remedies=remedies)


def _activation_scale(evidence: RunEvidence, sample: dict[str, Any] | None) -> tuple[list[float], list[str], list[float]] | None:
    """act_std of one sample relative to the first layer's, for the layers not dead at init (dead_relu's finding)."""
    stds, dead = (sample or {}).get("act_std"), evidence.initial("dead")
    if not stds or None in stds or dead is None:
        return None
    alive = [(name, std) for name, std, d in zip(evidence.probes.layers, stds, dead) if (d or 0.0) <= DEAD_FRACTION]
    if len(alive) < 2 or alive[0][1] <= _TINY:
        return None
    return [std / alive[0][1] for _, std in alive], [name for name, _ in alive], [std for _, std in alive]


def activation_collapse(evidence: RunEvidence) -> Finding | Unchecked | None:
    """At init the activations shrink layer after layer (weights too small for the depth)."""
    return _activation_scale_finding(evidence, grows=False)


def activation_growth(evidence: RunEvidence) -> Finding | Unchecked | None:
    """At init the activations grow layer after layer (weights too large for the depth)."""
    return _activation_scale_finding(evidence, grows=True)


def _activation_scale_finding(evidence: RunEvidence, grows: bool) -> Finding | Unchecked | None:
    """The finding of activation_growth (``grows``) or activation_collapse: the last layer's std beyond the factor."""
    if (missing := _no_probes(evidence)) is not None:
        return missing
    found = _activation_scale(evidence, evidence.probes.initial())
    if found is None:
        return None
    ratios, names, stds = found
    beyond = (lambda r: r > ACTIVATION_SCALE_FACTOR) if grows else (lambda r: r < 1 / ACTIVATION_SCALE_FACTOR)
    if not beyond(ratios[-1]):
        return None
    layers = [name for name, r in zip(names, ratios) if beyond(r)]
    if grows:
        rule, title, verb, bound = ("activation_growth", "Activations grow layer after layer", "grows",
                                    f"above {ACTIVATION_SCALE_FACTOR:g}x the first layer's (init too large for this depth)")
    else:
        rule, title, verb, bound = ("activation_collapse", "Activations collapse towards zero across the layers", "falls",
                                    f"below 1/{ACTIVATION_SCALE_FACTOR:g} of the first layer's, so the deep layers see "
                                    "almost no signal (init too small for this depth)")
    finding = Finding(
        rule, "warning", title,
        f"At initialisation (step 0) the activation std {verb} from {_g(stds[0])} in {names[0]} to {_g(stds[-1])} in {names[-1]} "
        f"({_g(ratios[-1])}x); from {layers[0]} on it is {bound}.",
        layers=layers, steps=[0], numbers={"std_first": stds[0], "std_last": stds[-1], "ratio": ratios[-1]},
        remedies=[_init_remedy(evidence), *_norm_remedy(evidence)])
    later = _activation_scale(evidence, evidence.latest())
    recovered = (later[0][-1], evidence.latest()["step"]) if later and not beyond(later[0][-1]) else None
    return _init_finding(finding, recovered, "the last/first activation std ratio")
