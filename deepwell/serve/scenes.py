"""Lecture scenes: one click loads a configuration that shows one idea of the lecture, with what to look at.

A scene is spec keys on top of the playground's defaults (:data:`PLAYGROUND`), a two-line caption,
and the claim it shows as a check the tests run: a doctor's finding that fires (``finding``) or
one that must not (``absent``), or a measurement of the model (``metric``, one of :data:`METRICS`)
that lands above or below a bound, after ``epochs`` epochs (0: at initialisation). Scenes are a
registry like every other variant: add one by adding an entry.

Example::

    spec = scene_spec("vanishing")        # RunSpec of a deep sigmoid net on moons
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from deepwell.config import RunSpec, load_spec
from deepwell.errors import unknown_name

__all__ = ["METRICS", "PLAYGROUND", "SCENES", "Scene", "playground_spec", "scene_spec"]

# The playground's starting point (no spec file given): a small net on 2-D data that trains in seconds.
PLAYGROUND = ("data.source=moons", "data.val_fraction=0.2", "model.hidden=[8, 8]", "model.norm=none", "train.epochs=300",
              "train.batch_size=32", "train.optimizer=adam", "train.lr=0.01", "train.schedule=constant", "diagnostics.every=5")


def _near_zero_weights(model: nn.Module) -> float:
    """Share of dense weights with |w| < 1e-3: the regularisation study's sparsity measure (imported there when used)."""
    from deepwell.studies.regularization import dense_weights, weight_statistics

    return weight_statistics(dense_weights(model))["near_zero"]


# Measurements of the trained model a scene's claim can be checked by (name -> function of the model).
METRICS: dict[str, Callable[[nn.Module], float]] = {"near_zero_weights": _near_zero_weights}


@dataclass(frozen=True)
class Scene:
    """One lecture idea: keys on top of PLAYGROUND, a caption, and the check that it shows."""

    name: str
    title: str
    caption: str
    keys: tuple[str, ...]
    epochs: int = 0
    finding: str | None = None       # this doctor's rule fires after ``epochs`` epochs
    absent: tuple[str, ...] = field(default_factory=tuple)  # these rules do not
    stop: str | None = None          # training ends by itself within ``epochs`` with this StopReason value
    metric: str | None = None        # a METRICS name, checked against the bounds below after ``epochs``
    above: float | None = None
    below: float | None = None


_DEEP = "model.hidden=[8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"
_SPARSE = ("train.optimizer=sgd:momentum=0.9", "train.lr=0.05")  # SGD: L1's steps land near 0 (Adam's would not)
_TABLE = ("data.source=breast_cancer", "model.hidden=[16, 16]", "train.optimizer=sgd", "train.lr=0.01")
SCENES: dict[str, Scene] = {scene.name: scene for scene in [
    Scene("vanishing", "Vanishing gradients", "Ten sigmoid layers: each multiplies the back-propagated gradient by at most 0.25. "
          "Watch the network: the first layers get almost no gradient, and the loss barely moves.",
          (_DEEP, "model.activation=sigmoid", "model.init=xavier"), finding="vanishing_gradient"),
    Scene("relu_he", "The ReLU + He fix", "The same ten layers with ReLU and He init (std sqrt(2/fan_in)): the gradient "
          "reaches the first layer at full strength and the loss falls.", (_DEEP, "model.activation=relu", "model.init=he"),
          epochs=0, absent=("vanishing_gradient",)),
    Scene("zero_init", "Zero init: nothing learns", "Every weight starts at 0: all units of a layer compute the same thing "
          "and get the same (zero) gradient. Press play: the boundary never bends.", ("model.init=zeros",), finding="zero_init"),
    Scene("constant_init", "Constant init: units herd", "Every weight starts at 0.1: the units of a layer start equal, get "
          "equal gradients and move together; each layer acts like one unit.", ("model.init=constant:0.1",), epochs=3,
          finding="identical_units"),
    Scene("small_sigma", "Too-small sigma", "Weights drawn with std 0.01 in six tanh layers: activations shrink layer by "
          "layer towards 0, and so does the gradient.", ("model.hidden=[32, 32, 32, 32, 32, 32]", "model.activation=tanh",
                                                         "model.init=normal:std=0.01"), finding="activation_collapse"),
    Scene("large_sigma", "Too-large sigma", "Weights drawn with std 1 in six tanh layers of 32: most units sit on their "
          "flat tails (saturated), where the derivative is ~0.", ("model.hidden=[32, 32, 32, 32, 32, 32]",
                                                                  "model.activation=tanh", "model.init=normal:std=1.0"),
          finding="saturation"),
    Scene("dead_relu", "Dead ReLUs at a high learning rate", "SGD with lr 3 kicks ReLU units into the region where they "
          "output 0 for every input; a dead unit gets no gradient and never comes back. Compare with leaky ReLU.",
          ("model.hidden=[16, 16]", "train.optimizer=sgd", "train.lr=3.0"), epochs=3, finding="dead_relu"),
    Scene("leaky_relu", "Leaky ReLU keeps units alive", "The same high learning rate with leaky ReLU: a small slope below 0 "
          "keeps a gradient flowing, so units recover.", ("model.hidden=[16, 16]", "train.optimizer=sgd", "train.lr=3.0",
                                                          "model.activation=leaky_relu:0.01"), epochs=3, absent=("dead_relu",)),
    Scene("overfitting", "Overfitting a small noisy set", "30 training points, 20% of their labels wrong, a wide net: "
          "training loss goes to 0 while validation loss turns up. Try dropout, L2 or early stopping.",
          ("data.n_train=30", "data.label_noise=0.2", "data.val_fraction=0.5", "model.hidden=[64, 64]"), epochs=150,
          finding="overfitting"),
    Scene("dropout", "Dropout: validation below training loss", "Dropout 0.5 is on while training and off while validating, "
          "so the training loss (as trained) sits above the validation loss: compare train clean with validation.",
          ("model.hidden=[64, 64]", "model.dropout=dropout:0.5"), epochs=20, finding="val_below_train"),
    Scene("early_stopping", "Early stopping restores the best epoch", "The overfitting set with patience 10: training "
          "stops when validation loss has not improved for 10 epochs, and the best epoch's weights come back.",
          ("data.n_train=30", "data.label_noise=0.2", "data.val_fraction=0.5", "model.hidden=[64, 64]",
           "train.early_stopping={patience: 10}"), epochs=300, stop="early_stopping"),
    Scene("l1", "L1: sparse weights", "An L1 penalty pulls every weight towards 0 at the same rate, so weights the data "
          "does not need reach ~0: watch the network's edges fade; within 40 epochs over 30% of weights have |w| < 0.001.",
          _SPARSE + ("train.penalty=l1:3e-3",), epochs=40, metric="near_zero_weights", above=0.3),
    Scene("l2", "L2: small, not sparse, weights", "The same net and strength with L2: the pull is proportional to the "
          "weight, so weights shrink but stop short of 0; compare the edges with the L1 scene (under 5% near 0).",
          _SPARSE + ("train.penalty=l2:3e-3",), epochs=40, metric="near_zero_weights", below=0.05),
    Scene("preprocess_off", "Uncentred inputs, no preprocessing", "Breast-cancer features range from 0.001 to 4000: "
          "the first layer's sums are huge, SGD's steps are wrong by orders of magnitude, and the net guesses.",
          _TABLE + ("data.preprocess=none",), epochs=20, finding="underfitting"),
    Scene("preprocess_on", "The same inputs standardised", "Each feature shifted to mean 0 and scaled to std 1 (fitted on "
          "the training split only): the same net and optimiser now reach ~92% validation accuracy.",
          _TABLE + ("data.preprocess=standardize",), epochs=20, absent=("underfitting",)),
    Scene("batchnorm", "Batch norm in a deep net", "Ten sigmoid layers again, now with batch norm before each activation: "
          "every layer's inputs are re-centred and re-scaled, so the sigmoids stay out of their flat tails (without it, "
          "they saturate within 10 epochs).",
          (_DEEP, "model.activation=sigmoid", "model.init=xavier", "model.norm=batchnorm"), epochs=10, absent=("saturation", "underfitting")),
]}


def playground_spec(path: str | None = None, overrides: tuple[str, ...] = ()) -> RunSpec:
    """The playground's starting spec: a spec file as given, else PLAYGROUND on deepwell's defaults."""
    return load_spec(path, overrides) if path is not None else load_spec(None, PLAYGROUND + tuple(overrides))


def scene_spec(name: str) -> RunSpec:
    """The spec of a scene. Raises ConfigError for an unknown scene (listing the known ones)."""
    if name not in SCENES:
        raise unknown_name("scene", name, SCENES)
    return load_spec(None, PLAYGROUND + SCENES[name].keys)
