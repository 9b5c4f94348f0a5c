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
# # 3. Initialisation
#
# The weights' initial scale decides whether a signal survives the trip through the layers. Too
# small, and activations shrink layer after layer towards 0; too large, and they grow (or saturate
# tanh/sigmoid). **Xavier/Glorot** (Var = 2 / (fan_in + fan_out)) keeps tanh layers balanced, **He**
# (std = sqrt(2 / fan_in); the lecture's "2/sqrt(N_in)" is a typo) keeps ReLU layers balanced.
# All-zero (or constant) weights make every unit of a layer compute the same thing forever: symmetry.

# %%
import deepwell

SMALL = ["data.n_train=500", "train.epochs=3", "output.report=false", "output.dir=runs/03", "model.arch=mlp",
         "model.depth=6", "model.width=64", "model.norm=none"]

# %% [markdown]
# Six tanh layers, three initial scales. The probes record every layer's activation spread at
# initialisation; the first probe sample is the untrained network.

# %%
import json


def spread_at_init(run):
    """Activation std per layer, measured on the probe batch before the first step."""
    first = json.loads((run.path / "probes.jsonl").read_text().splitlines()[0])
    return first["act_std"]


spreads = {}
for init in ["normal:std=0.01", "xavier", "normal:std=1.0"]:
    run = deepwell.train(overrides=[*SMALL, "model.activation=tanh", f"model.init={init}"], progress="none")
    spreads[init] = spread_at_init(run)
    print(f"{init:16s} activation std per layer: " + "  ".join(f"{s:.3f}" for s in spreads[init]))

# %% [markdown]
# ReLU with He initialisation: the spread stays constant with depth.

# %%
he = deepwell.train(overrides=[*SMALL, "model.activation=relu", "model.init=he"])
he

# %% [markdown]
# ## Symmetry: all-zero weights

# %%
zero = deepwell.train(overrides=[*SMALL, "model.activation=tanh", "model.init=zeros"], progress="none")
zero.diagnose()

# %% [markdown]
# ## The measured verdict

# %%
small, xavier, large = spreads["normal:std=0.01"], spreads["xavier"], spreads["normal:std=1.0"]
print(f"std 0.01: last/first layer spread {small[-1] / small[0]:.2g} (collapses); Xavier: {xavier[-1] / xavier[0]:.2g} "
      f"(kept); std 1.0: last layer {large[-1]:.2f} (saturated tanh sits near 1).")
holds = small[-1] / small[0] < 0.1 and 0.3 < xavier[-1] / xavier[0] < 3
print("Initialisation scale decides the signal's fate:", "holds" if holds else "does not hold")

# %% [markdown]
# ## Try this
# deepwell's Xavier takes its gain from the activation (sqrt(2) for ReLU), so it suits ReLU too. Predict: what
# happens to a ReLU network's spread with depth with gain 1 (plain Glorot, as in the CS231n plot)?

# %%
relu_xavier = deepwell.train(overrides=[*SMALL, "model.activation=relu", "model.init=xavier:gain=1.0"], progress="none")
print("ReLU + Xavier (gain 1) activation std per layer:", "  ".join(f"{s:.3f}" for s in spread_at_init(relu_xavier)))

# %% [markdown]
# More: `model.init=constant:0.1`; `model.init=he:mode=fan_out`; `deepwell.study("init")` runs the full CS231n experiment.
