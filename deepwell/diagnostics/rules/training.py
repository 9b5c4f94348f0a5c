"""The doctor's rules on how training went: a non-finite loss, the learning rate, under- and overfitting."""

from __future__ import annotations

from deepwell.diagnostics.evidence import TINY as _TINY, Finding, RunEvidence, Unchecked
from deepwell.diagnostics.rules.wording import _g, _lower_lr, _norm_remedy, _pct

__all__ = ["non_finite_loss", "lr_too_high", "lr_too_low", "underfitting", "overfitting", "val_below_train"]

# --- thresholds (why each value) -------------------------------------------------------------
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
# Underfitting: final clean training loss >= 90% of the loss of guessing uniformly (ln C) ...
UNDERFIT_CHANCE_FRACTION = 0.9
# ... or the clean training accuracy has covered less than 2/3 of the way from chance (1/C) to what
# the data allows (100%, less the labels noise made wrong: only memorising fits those). A network
# that can learn the data fits its training split almost perfectly (default cnn1d 100%, paper MLP
# 100%, moons MLPs 97%+); 2/3 of the way is 70% on 10 classes, 83% on 2 (a dropout-0.5 moons MLP
# after 5 epochs: ~88%).
UNDERFIT_FIT_FRACTION = 2 / 3
# Stuck: the clean training accuracy gained less than 1 point over the last third of the epochs.
STUCK_GAIN = 0.01
# No validation split: the final clean training loss vs the test loss (measured once at the end).
# Over 0.25 nats and 1.5x apart is a generalisation gap worth naming (default-like runs: 0.001 vs
# 0.04; the paper MLP without validation: 4e-5 vs 3.3); for regression (MSE) only the ratio, 2x.
GAP_MIN_NATS = 0.25
GAP_RATIO = 1.5
GAP_RATIO_REGRESSION = 2.0
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


def _largest_update(evidence: RunEvidence) -> tuple[float, str, int] | None:
    """The largest per-step update ratio of any layer (layers that started at zero excluded)."""
    zero = set(evidence.zero_layers())
    best = None
    for sample in evidence.probes.samples:
        for name, ratio, grad in zip(sample["layers"], sample["update_ratio"], sample["grad_norm"]):
            if ratio is not None and grad and name not in zero and (best is None or ratio > best[0]):
                best = (ratio, name, sample["step"])
    return best


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


def _reachable_accuracy(evidence: RunEvidence, classes: int) -> float:
    """The training accuracy the data allows without memorising noise: 1 minus the labels label noise made wrong."""
    noise = evidence.spec.data.label_noise
    return 1 - noise * (1 if evidence.spec.data.label_noise_mode == "incorrect" else (classes - 1) / classes)


def _fit_shortfall(evidence: RunEvidence) -> tuple[float, float, float, bool] | None:
    """(accuracy, chance, reachable, stuck) when the clean training accuracy is far below what the data allows."""
    acc, classes = evidence.metric("train/acc_clean"), evidence.meta.get("num_classes")
    if evidence.meta.get("task") != "classification" or not acc or not classes or classes < 2:
        return None
    chance, reachable, value = 1 / classes, _reachable_accuracy(evidence, classes), acc[-1][1]
    if value >= chance + UNDERFIT_FIT_FRACTION * (reachable - chance):
        return None
    third = acc[-max(2, len(acc) // 3):]
    stuck = len(acc) >= 3 and third[-1][1] - third[0][1] < STUCK_GAIN
    return value, chance, reachable, stuck


def underfitting(evidence: RunEvidence) -> Finding | None:
    """The network does not fit its training data: loss near guessing, or accuracy far from what the data allows."""
    chance = evidence.chance_loss
    loss = evidence.metric("train/loss_clean") or evidence.metric("train/loss")
    near_chance = chance is not None and loss and loss[-1][1] >= UNDERFIT_CHANCE_FRACTION * chance
    shortfall = _fit_shortfall(evidence)
    if not near_chance and shortfall is None:
        return None
    epoch, value = loss[-1] if loss else (int(evidence.history[-1]["epoch"]) if evidence.history else 0, float("nan"))
    numbers, parts = {"train_loss": value}, []
    if near_chance:
        verdict = "worse than guessing" if value > _WORSE_THAN_CHANCE * chance else "no better than guessing"
        numbers["chance_loss"] = chance
        parts.append(f"After epoch {epoch} the training loss is {_g(value)}, against {_g(chance)} for guessing uniformly "
                     f"among {evidence.meta.get('num_classes')} classes: it fits its training data {verdict}.")
    stuck = False
    if shortfall is not None:
        accuracy, chance_acc, reachable, stuck = shortfall
        numbers |= {"train_acc": accuracy, "chance_acc": chance_acc, "reachable_acc": reachable}
        noise = " (the labels label noise made wrong excluded)" if reachable < 1 else ""
        parts.append(f"The training accuracy (clean, eval mode) is {_pct(accuracy)} after epoch {epoch}: chance is "
                     f"{_pct(chance_acc)} and the data allows about {_pct(reachable)}{noise}; "
                     + ("it has stopped improving (stuck)." if stuck else "it was still rising."))
    return Finding(
        "underfitting", "warning", "The network has not learned the training data",
        " ".join(parts), steps=[int(evidence.history[-1].get("step", 0))] if evidence.history else [],
        numbers=numbers, remedies=_underfit_remedies(evidence, stuck))


def _underfit_remedies(evidence: RunEvidence, stuck: bool) -> list[str]:
    """What makes a network fit its training data: the other findings, less regularisation, time, width."""
    spec, remedies = evidence.spec, ["fix the findings above first, if any (init, gradients, learning rate)"]
    if spec.model.dropout.name != "none":
        remedies.append(f"remove regularisation: model.dropout=none (now {spec.model.dropout})")
    if spec.train.penalty.name != "none":
        remedies.append(f"remove regularisation: train.penalty=none (now {spec.train.penalty})")
    if not stuck:
        remedies.append(f"train longer (train.epochs={2 * spec.train.epochs})")
    else:
        remedies.append(f"try another learning rate (train.lr is {spec.train.lr:g}) or train.optimizer=adam")
    remedies.append(f"use a wider network (model.width={2 * spec.model.width})")
    return remedies


def overfitting(evidence: RunEvidence) -> Finding | Unchecked | None:
    """Validation loss rising since epoch k while the training loss keeps falling; without validation, the train/test gap."""
    if not evidence.has_validation:
        return _train_test_gap(evidence)
    val = evidence.metric("val/loss")
    if len(val) < OVERFIT_MIN_EPOCHS + OVERFIT_TAIL:
        return Unchecked(f"{len(val)} epochs of validation loss; a rise needs {OVERFIT_MIN_EPOCHS + OVERFIT_TAIL}")
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


def _train_test_gap(evidence: RunEvidence) -> Finding | Unchecked | None:
    """No validation split: compare the final clean training loss with the test loss measured at the end."""
    train, test = evidence.metric("train/loss_clean") or evidence.metric("train/loss"), evidence.test.get("test/loss")
    if not train or test is None:
        return Unchecked("no validation data and no test loss")
    epoch, fit = train[-1]
    classification = evidence.meta.get("task") == "classification"
    gap = test - fit > GAP_MIN_NATS and test > GAP_RATIO * fit if classification else test > GAP_RATIO_REGRESSION * fit
    if not gap:
        return None
    numbers = {"train_loss": fit, "test_loss": test}
    accuracy = ""
    acc, test_acc = evidence.metric("train/acc_clean"), evidence.test.get("test/acc")
    if acc and test_acc is not None:
        numbers |= {"train_acc": acc[-1][1], "test_acc": test_acc}
        accuracy = f" (accuracy {_pct(acc[-1][1])} vs {_pct(test_acc)})"
    return Finding(
        "overfitting", "warning", "The network overfits: its training loss is far below its test loss",
        f"This run has no validation split (data.val_fraction={evidence.spec.data.val_fraction:g}), so the doctor compared "
        f"with the test split, measured once at the end: training loss {_g(fit)} (clean, epoch {epoch}) vs test loss "
        f"{_g(test)}{accuracy}. When it started cannot be told without validation data.",
        steps=[int(evidence.history[-1].get("step", 0))] if evidence.history else [], numbers=numbers,
        remedies=["hold out validation data (data.val_fraction=0.1) and set train.early_stopping.patience=5",
                  "add model.dropout=dropout:0.3", "add train.penalty=l2:1e-4",
                  "get more training data or augment it; or use a smaller network"])


def val_below_train(evidence: RunEvidence) -> Finding | Unchecked | None:
    """Validation loss below the training loss, explained by dropout (train/loss as trained vs clean) or a penalty."""
    if not evidence.has_validation:
        return Unchecked("no validation data")
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
