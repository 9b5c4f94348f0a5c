"""The doctor's rules: each reads a run's evidence and returns one :class:`Finding`, or None.

A rule is a small pure function ``rule(evidence) -> Finding | None`` named after the problem it
finds (its name is the finding's ``rule`` id); :data:`RULES` lists them in the order they run.
Thresholds are named constants below, each with the reason for its value. The lecture's
"challenges" (vanishing/exploding gradients, saturation, dead ReLUs, initialisation, overfitting,
dropout) each have a rule; so do the learning rate and a non-finite loss.

What the rules read (see :class:`RunEvidence`): the run's resolved spec, meta.json, summary.json,
metrics.jsonl (one row per epoch), probes.jsonl (per-layer samples, the first taken at
initialisation; see :mod:`deepwell.diagnostics.probes`) and, lazily, the final weights.

This file is longer than most on purpose: it is fourteen independent ~25-line rules under one
table of thresholds, and reading a rule next to the threshold it uses is the point; the data
they read lives in :mod:`deepwell.diagnostics.evidence`.
"""

from __future__ import annotations

from collections.abc import Callable

from deepwell.diagnostics.evidence import SEVERITIES, TINY as _TINY, Finding, RunEvidence

__all__ = ["Finding", "RunEvidence", "RULES", "SEVERITIES"]


# --- thresholds (why each value) -------------------------------------------------------------
# Gradients at init, first hidden layer vs last, measured on the back-propagated signal dL/dh
# (not the weight gradient, whose size also depends on the layer's shape: a first conv layer has
# 100x fewer weights). Healthy 20-layer nets stay within ~5x (ReLU+He 0.85, tanh+Xavier 0.19);
# sigmoid depth 20 gives ~1e-12. Two orders of magnitude either way is a real problem.
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
# Final weight rows equal to this relative tolerance: units that compute the same function.
# Random inits never come close; symmetric units stay bitwise equal (equal gradients).
IDENTICAL_TOLERANCE = 1e-6
# One optimisation step that changes a layer's weights by more than their own norm: the learning
# rate is far too high (a healthy step changes them by ~1e-3, at most a few % on the first steps).
LR_HIGH_UPDATE_RATIO = 1.0
# Activations (act_std) that grow 1000x during training: the weights blew up.
LR_HIGH_ACTIVATION_GROWTH = 1e3
# The final training loss 1.5x above its best epoch: the optimiser climbed back out of the valley.
LR_HIGH_LOSS_RISE = 1.5
# Learning rate too low: even the fastest-moving layer changes by < 1e-5 of its norm per step
# (healthy: 1e-3, Karpathy's rule of thumb) ...
LR_LOW_UPDATE_RATIO = 1e-5
# ... and the training loss moved by < 5% from the first epoch to the last.
LR_LOW_LOSS_CHANGE = 0.05
# Underfitting: final clean training loss >= 90% of the loss of guessing uniformly (ln C).
UNDERFIT_CHANCE_FRACTION = 0.9
# Overfitting: validation loss (mean of the last OVERFIT_TAIL epochs, so one noisy epoch does not
# count) more than 15% above its best, and the best at least OVERFIT_MIN_EPOCHS before the end.
# The default cnn1d run ends within 2% of its best val loss.
OVERFIT_RISE = 0.15
OVERFIT_MIN_EPOCHS = 3
OVERFIT_TAIL = 3
# ... and at least 0.02 nats: a near-perfect model's val loss moves that much by seed noise (0.038 -> 0.045 is fine).
OVERFIT_MIN_RISE = 0.02
# Validation loss below the as-trained training loss by more than 10% is worth explaining.
VAL_BELOW_TRAIN_MARGIN = 0.1
_WORSE_THAN_CHANCE = 1.05  # wording only: a loss 5% above ln(C) is "worse than guessing", not "no better"

# --- wording helpers -----------------------------------------------------------------------------
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


RULES: list[Callable[[RunEvidence], Finding | None]] = []


def _rule(function: Callable[[RunEvidence], Finding | None]) -> Callable[[RunEvidence], Finding | None]:
    RULES.append(function)
    return function


# --- the rules -------------------------------------------------------------------------------------
@_rule
def non_finite_loss(evidence: RunEvidence) -> Finding | None:
    """The loss became NaN/Inf: where it started, from summary.json and the last metrics row."""
    if evidence.summary.get("status") != "non_finite":
        return None
    row = evidence.history[-1] if evidence.history else {}
    epoch, step = int(row.get("epoch", 0)), int(row.get("step", 0))
    return Finding(
        "non_finite_loss", "error", "The training loss became NaN or infinite",
        evidence.summary.get("message") or f"The training loss was {row.get('train/loss')} in epoch {epoch}.",
        steps=[step] if step else [], numbers={"epoch": float(epoch), "lr": evidence.spec.train.lr},
        remedies=[_lower_lr(evidence), "set train.clip_grad_norm=1.0 (caps each step)", *_norm_remedy(evidence),
                  "check the data for NaN or infinite values"])


@_rule
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


@_rule
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


def _gradient_ratio(evidence: RunEvidence) -> tuple[list[float], str] | None:
    """Per-layer initial gradient signal relative to the last hidden layer, and the quantity used.

    An exactly-zero gradient is left out: it means zero weights or dead ReLUs, which zero_init and dead_relu name.
    """
    for quantity in ("signal_grad_norm", "grad_norm"):
        values = evidence.initial(quantity)
        if values and len(values) > 1 and None not in values and values[-1] > _TINY and values[0] > _TINY:
            return [v / values[-1] for v in values], quantity
    return None


@_rule
def vanishing_gradient(evidence: RunEvidence) -> Finding | None:
    """At init the first layers get a tiny fraction of the gradient the last hidden layer gets."""
    found = _gradient_ratio(evidence)
    if found is None or found[0][0] >= VANISHING_RATIO:
        return None
    ratios, quantity = found
    names = evidence.probes.layers
    layers = [name for name, r in zip(names, ratios) if r < VANISHING_RATIO]
    grads = evidence.initial("grad_norm")
    remedies = []
    if _activation(evidence) in ("sigmoid", "tanh"):
        remedies.append(f"use model.activation=relu with model.init=he (the {_activation(evidence)} derivative is at most "
                        f"{'0.25' if _activation(evidence) == 'sigmoid' else '1'} and shrinks the gradient at every layer)")
    remedies += [*_norm_remedy(evidence), "add model.residual=true (skip connections carry the gradient past layers)",
                 f"use fewer layers (model.depth is {len(names)})"]
    return Finding(
        "vanishing_gradient", "warning", "Gradients vanish in the first layers",
        f"At initialisation (step 0) the gradient reaching {names[0]} is {_g(ratios[0])}x the one at {names[-1]} "
        f"({quantity}; weight gradients {_g(grads[0])} vs {_g(grads[-1])}); {_names(layers, names)} get less than "
        f"{_g(VANISHING_RATIO)}x, so they barely learn.",
        layers=layers, steps=[0],
        numbers={"ratio_first_last": ratios[0], "grad_norm_first": grads[0], "grad_norm_last": grads[-1]},
        remedies=remedies)


@_rule
def exploding_gradient(evidence: RunEvidence) -> Finding | None:
    """At init the gradient grows going back: the first layers get far larger gradients than the last."""
    found = _gradient_ratio(evidence)
    if found is None or found[0][0] <= EXPLODING_RATIO:
        return None
    ratios, quantity = found
    names = evidence.probes.layers
    layers = [name for name, r in zip(names, ratios) if r > EXPLODING_RATIO]
    return Finding(
        "exploding_gradient", "warning", "Gradients explode towards the first layers",
        f"At initialisation (step 0) the gradient reaching {names[0]} is {_g(ratios[0])}x the one at {names[-1]} "
        f"({quantity}); it grows at every layer going back, and {_names(layers, names)} get more than "
        f"{_g(EXPLODING_RATIO)}x.",
        layers=layers, steps=[0], numbers={"ratio_first_last": ratios[0]},
        remedies=[f"{_init_remedy(evidence)} instead of init={evidence.spec.model.init}", *_norm_remedy(evidence),
                  "set train.clip_grad_norm=1.0 (caps each step)"])


@_rule
def saturation(evidence: RunEvidence) -> Finding | None:
    """Sigmoid/tanh units stuck in the flat tails, where their derivative is ~0 (at init or at the end)."""
    if not evidence.probes.samples:
        return None
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


@_rule
def dead_relu(evidence: RunEvidence) -> Finding | None:
    """ReLU units that never fire on any training example during the last epoch."""
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


def _activation_scale(evidence: RunEvidence) -> tuple[list[float], list[str], list[float]] | None:
    """act_std at init relative to the first layer's, for the layers that are not dead ReLUs (dead_relu's finding)."""
    stds, dead = evidence.initial("act_std"), evidence.initial("dead")
    if not stds or None in stds or dead is None:
        return None
    alive = [(name, std) for name, std, d in zip(evidence.probes.layers, stds, dead) if (d or 0.0) <= DEAD_FRACTION]
    if len(alive) < 2 or alive[0][1] <= _TINY:
        return None
    return [std / alive[0][1] for _, std in alive], [name for name, _ in alive], [std for _, std in alive]


@_rule
def activation_collapse(evidence: RunEvidence) -> Finding | None:
    """At init the activations shrink layer after layer (weights too small for the depth)."""
    found = _activation_scale(evidence)
    if found is None or found[0][-1] >= 1 / ACTIVATION_SCALE_FACTOR:
        return None
    ratios, names, stds = found
    layers = [name for name, r in zip(names, ratios) if r < 1 / ACTIVATION_SCALE_FACTOR]
    return Finding(
        "activation_collapse", "warning", "Activations collapse towards zero across the layers",
        f"At initialisation the activation std falls from {_g(stds[0])} in {names[0]} to {_g(stds[-1])} in {names[-1]} "
        f"({_g(ratios[-1])}x); from {layers[0]} on it is below 1/{ACTIVATION_SCALE_FACTOR:g} of the first layer's, "
        "so the deep layers see almost no signal (init too small for this depth).",
        layers=layers, steps=[0], numbers={"std_first": stds[0], "std_last": stds[-1], "ratio": ratios[-1]},
        remedies=[_init_remedy(evidence), *_norm_remedy(evidence)])


@_rule
def activation_growth(evidence: RunEvidence) -> Finding | None:
    """At init the activations grow layer after layer (weights too large for the depth)."""
    found = _activation_scale(evidence)
    if found is None or found[0][-1] <= ACTIVATION_SCALE_FACTOR:
        return None
    ratios, names, stds = found
    layers = [name for name, r in zip(names, ratios) if r > ACTIVATION_SCALE_FACTOR]
    return Finding(
        "activation_growth", "warning", "Activations grow layer after layer",
        f"At initialisation the activation std grows from {_g(stds[0])} in {names[0]} to {_g(stds[-1])} in {names[-1]} "
        f"({_g(ratios[-1])}x); from {layers[0]} on it is above {ACTIVATION_SCALE_FACTOR:g}x the first layer's "
        "(init too large for this depth).",
        layers=layers, steps=[0], numbers={"std_first": stds[0], "std_last": stds[-1], "ratio": ratios[-1]},
        remedies=[_init_remedy(evidence), *_norm_remedy(evidence)])


def _largest_update(evidence: RunEvidence) -> tuple[float, str, int] | None:
    """The largest per-step update ratio of any layer (layers that started at zero excluded)."""
    zero = set(evidence.zero_layers())
    best = None
    for sample in evidence.probes.samples:
        for name, ratio, grad in zip(sample["layers"], sample["update_ratio"], sample["grad_norm"]):
            if ratio is not None and grad and name not in zero and (best is None or ratio > best[0]):
                best = (ratio, name, sample["step"])
    return best


@_rule
def lr_too_high(evidence: RunEvidence) -> Finding | None:
    """Steps larger than the weights, weights blowing up, or a training loss that climbs back up."""
    signs, layers, steps, numbers = [], [], [], {"lr": evidence.spec.train.lr}
    if evidence.summary.get("status") == "non_finite":
        signs.append("the loss became non-finite")
    first, last = evidence.probes.initial(), evidence.probes.samples[-1] if evidence.probes.samples else None
    if first and last and last is not first:
        # relative to at least 1 (healthy activations are O(1)): a collapsed layer recovering from 1e-8 is not a blow-up
        growth = [(b / max(a, 1.0), name, a, b) for a, b, name in zip(first["act_std"], last["act_std"], last["layers"])
                  if a is not None and b is not None]
        if growth and max(growth)[0] > LR_HIGH_ACTIVATION_GROWTH:
            factor, name, before, after = max(growth)
            signs.append(f"the activation std of {name} grew from {_g(before)} at init to {_g(after)} (step {last['step']})")
            layers.append(name), steps.append(last["step"])
            numbers["activation_growth"] = factor
    loss = evidence.metric("train/loss")
    if len(loss) >= 2:
        best_epoch, best = min(loss, key=lambda item: item[1])
        if best_epoch < loss[-1][0] and loss[-1][1] > LR_HIGH_LOSS_RISE * best:
            end_epoch, end = loss[-1]
            signs.append(f"the training loss rose from {_g(best)} (epoch {best_epoch}) to {_g(end)} (epoch {end_epoch})")
            numbers["loss_rise"] = loss[-1][1] / best
    if not signs:
        return None
    update = _largest_update(evidence)  # supporting evidence only: tiny-init weights also see large first Adam steps
    if update and update[0] > LR_HIGH_UPDATE_RATIO:
        signs.append(f"one step changed {update[1]}'s weights by {_g(update[0])}x their norm (step {update[2]})")
        layers.append(update[1]), steps.append(update[2])
        numbers["max_update_ratio"] = update[0]
    return Finding(
        "lr_too_high", "warning", "The learning rate is too high",
        f"With train.lr={evidence.spec.train.lr:g}: " + "; ".join(signs) + ".",
        layers=list(dict.fromkeys(layers)), steps=sorted(set(steps)), numbers=numbers,
        remedies=[_lower_lr(evidence), "set train.clip_grad_norm=1.0",
                  "warm up: train.schedule=onecycle or train.warmup_epochs=1",
                  *_norm_remedy(evidence)])


@_rule
def lr_too_low(evidence: RunEvidence) -> Finding | None:
    """Every step is tiny relative to the weights and the loss hardly moves."""
    update, loss = _largest_update(evidence), evidence.metric("train/loss")
    if update is None or update[0] >= LR_LOW_UPDATE_RATIO or len(loss) < 2:
        return None
    change = abs(loss[0][1] - loss[-1][1]) / max(abs(loss[0][1]), _TINY)
    if change >= LR_LOW_LOSS_CHANGE:
        return None
    lr = evidence.spec.train.lr
    return Finding(
        "lr_too_low", "warning", "The learning rate is too low: the weights hardly move",
        f"With train.lr={lr:g} no step changed any layer's weights by more than {_g(update[0])}x their norm "
        f"(largest: {update[1]} at step {update[2]}; healthy is ~1e-3), and the training loss moved only "
        f"{_pct(change)} ({_g(loss[0][1])} -> {_g(loss[-1][1])}).",
        layers=[update[1]], steps=[update[2]], numbers={"lr": lr, "max_update_ratio": update[0], "loss_change": change},
        remedies=[f"set train.lr={lr * 100:g} (100x higher), or use train.optimizer=adam with train.lr=0.001",
                  "use train.schedule=onecycle to find a good range quickly"])


@_rule
def underfitting(evidence: RunEvidence) -> Finding | None:
    """The network does not even fit its training data: training loss near that of guessing."""
    chance = evidence.chance_loss
    loss = evidence.metric("train/loss_clean") or evidence.metric("train/loss")
    if chance is None or not loss or loss[-1][1] < UNDERFIT_CHANCE_FRACTION * chance:
        return None
    acc = evidence.metric("train/acc_clean")
    epoch, value = loss[-1]
    accuracy = f" (training accuracy {_pct(acc[-1][1])})" if acc else ""
    verdict = "worse than guessing" if value > _WORSE_THAN_CHANCE * chance else "no better than guessing"
    return Finding(
        "underfitting", "warning", "The network has not learned the training data",
        f"After epoch {epoch} the training loss is {_g(value)}{accuracy}, against {_g(chance)} for guessing uniformly among "
        f"{evidence.meta.get('num_classes')} classes: it fits its training data {verdict}.",
        steps=[int(evidence.history[-1].get("step", 0))] if evidence.history else [],
        numbers={"train_loss": value, "chance_loss": chance},
        remedies=["fix the other findings first (init, gradients, learning rate)",
                  f"train longer (train.epochs={2 * evidence.spec.train.epochs})",
                  "use a larger network (model.width, model.depth) or remove regularisation"])


@_rule
def overfitting(evidence: RunEvidence) -> Finding | None:
    """Validation loss rising since epoch k while the training loss keeps falling."""
    val = evidence.metric("val/loss")
    if len(val) < OVERFIT_MIN_EPOCHS + OVERFIT_TAIL:
        return None
    best_epoch, best = min(val, key=lambda item: item[1])
    tail = sum(v for _, v in val[-OVERFIT_TAIL:]) / OVERFIT_TAIL
    end_epoch, end = val[-1]
    if end_epoch - best_epoch < OVERFIT_MIN_EPOCHS or tail <= (1 + OVERFIT_RISE) * best or tail - best < OVERFIT_MIN_RISE:
        return None
    by_epoch = {int(row["epoch"]): row for row in evidence.history}
    numbers = {"best_epoch": float(best_epoch), "best_val_loss": best, "final_val_loss": end}
    accuracy = ""
    if "val/acc" in by_epoch[best_epoch] and "val/acc" in by_epoch[end_epoch]:
        numbers |= {"best_val_acc": by_epoch[best_epoch]["val/acc"], "final_val_acc": by_epoch[end_epoch]["val/acc"]}
        accuracy = f", val accuracy {_pct(numbers['best_val_acc'])} there vs {_pct(numbers['final_val_acc'])} at the end"
    train = dict(evidence.metric("train/loss_clean") or evidence.metric("train/loss"))
    fitting = (f" while the training loss fell from {_g(train[best_epoch])} to {_g(train[end_epoch])}"
               if best_epoch in train and end_epoch in train else "")
    return Finding(
        "overfitting", "warning", f"The network overfits: validation loss rising since epoch {best_epoch}",
        f"Validation loss was lowest at epoch {best_epoch} ({_g(best)}) and rose to {_g(end)} by epoch {end_epoch} "
        f"(+{_pct(end / best - 1)}){fitting}. Early stopping would have kept epoch {best_epoch}{accuracy}.",
        steps=[int(by_epoch[best_epoch].get("step", 0)), int(by_epoch[end_epoch].get("step", 0))], numbers=numbers,
        remedies=["set train.early_stopping.patience=5 (stops and restores the best epoch's weights)",
                  "add model.dropout=dropout:0.3", "add train.penalty=l2:1e-4",
                  "get more training data or augment it; or use a smaller network"])


@_rule
def val_below_train(evidence: RunEvidence) -> Finding | None:
    """Validation loss below the training loss, explained by dropout (train/loss as trained vs clean) or a penalty."""
    if not evidence.history:
        return None
    row = evidence.history[-1]
    trained, clean, val = row.get("train/loss"), row.get("train/loss_clean"), row.get("val/loss")
    dropout = evidence.spec.model.dropout.name != "none"
    penalty = row.get("train/penalty")
    if None in (trained, val) or not (dropout or penalty) or val >= (1 - VAL_BELOW_TRAIN_MARGIN) * trained:
        return None
    parts = [f"At epoch {row['epoch']} the training loss as trained is {_g(trained)} but the validation loss is {_g(val)}."]
    numbers = {"train_loss": trained, "val_loss": val}
    if clean is not None:
        numbers["train_loss_clean"] = clean
        parts.append(f"Measured like validation (eval mode: model.dropout={evidence.spec.model.dropout} off), the training "
                     f"loss is {_g(clean)}: dropout accounts for {_g(trained - clean)} of the {_g(trained - val)} gap"
                     + (f"; the rest is the epoch average (weights still improving) and a small validation set "
                        f"({evidence.meta.get('n_val')} examples)." if clean > val else "."))
    if penalty:
        numbers["penalty"] = penalty
        parts.append(f"The penalty ({evidence.spec.train.penalty}, {_g(penalty)} per step) also keeps the training fit loose.")
    return Finding(
        "val_below_train", "info", "Validation loss is below the training loss: explained by "
        + ("dropout" if dropout else "the penalty"),
        " ".join(parts), steps=[int(row.get("step", 0))], numbers=numbers,
        remedies=["nothing to fix: compare val/loss with train/loss_clean (dropout off), not with train/loss"])
