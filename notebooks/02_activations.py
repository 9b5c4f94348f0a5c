# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Activations, vanishing gradients and dead ReLUs
#
# Back-propagation multiplies, layer by layer, by the activation's derivative. The sigmoid's is at
# most 0.25, so through many layers the gradient shrinks geometrically: the first layers stop
# learning (**vanishing gradients**). ReLU's derivative is 1 where the unit is on, so the gradient
# survives -- but a unit whose input is negative for every example is off for good: a **dead ReLU**,
# typically after a too large step.

# %%
import deepwell

SMALL = ["data.n_train=500", "train.epochs=4", "output.report=false", "output.dir=runs/02", "model.arch=mlp",
         "model.depth=10", "model.width=32", "model.norm=none"]

# %% [markdown]
# Ten layers, three activations, each with its matching initialisation. The doctor compares the
# gradient of the first and the last layer at initialisation (`grad_ratio` = first / last).

# %%
ratios = {}
for activation, init in [("sigmoid", "xavier"), ("tanh", "xavier"), ("relu", "he")]:
    run = deepwell.train(overrides=[*SMALL, f"model.activation={activation}", f"model.init={init}"], progress="none")
    ratios[activation] = run.diagnose().vitals["grad_ratio"]
    print(f"{activation:8s} first/last layer gradient at init: {ratios[activation]:.2g}   test accuracy "
          f"{run.summary['test']['test/acc']:.1%}")

# %% [markdown]
# The sigmoid network's doctor report, with what to try:

# %%
sigmoid = deepwell.train(overrides=[*SMALL, "model.activation=sigmoid", "model.init=xavier"], progress="none")
sigmoid.diagnose()

# %% [markdown]
# ## Dead ReLUs
# The same ReLU network with a learning rate 300 times too large (plain SGD): many units never fire again.

# %%
dead = deepwell.train(overrides=[*SMALL, "model.activation=relu", "model.init=he", "train.optimizer=sgd", "train.lr=1.0",
                                 "train.schedule=constant"])
dead.diagnose()

# %% [markdown]
# ## The measured verdict

# %%
dead_fraction = dead.diagnose().vitals.get("max_dead", 0.0)
print(f"Vanishing gradients: sigmoid {ratios['sigmoid']:.2g} vs ReLU {ratios['relu']:.2g} (first/last layer) -> "
      f"{'holds' if ratios['sigmoid'] < 0.1 * ratios['relu'] else 'does not hold'}.")
print(f"Dead ReLUs at a high learning rate: up to {dead_fraction:.0%} of a layer's units dead -> "
      f"{'holds' if dead_fraction > 0.2 else 'does not hold'}.")

# %% [markdown]
# ## Try this
# Predict first: does `model.activation=leaky_relu:0.1` keep units alive at the same learning rate?

# %%
leaky = deepwell.train(overrides=[*SMALL, "model.activation=leaky_relu:0.1", "model.init=he", "train.optimizer=sgd",
                                  "train.lr=1.0", "train.schedule=constant"], progress="none")
leaky.diagnose()

# %% [markdown]
# More: `model.depth=20` for the sigmoid net; `model.norm=batchnorm`; `train.lr=0.1` for the dead ReLUs.
