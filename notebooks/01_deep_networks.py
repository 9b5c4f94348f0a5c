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
# # 1. Deep networks and their two challenges
#
# A deep network stacks layers; each adds capacity. Two things can go wrong, and the lecture
# spends the rest of its time on them:
#
# 1. **Optimisation**: the training loss does not go down (gradients vanish or explode, units die).
# 2. **Generalisation**: the training loss goes down but the test error does not (overfitting).
#
# We train on MNIST-1D (ten 1-D digit templates, shifted, scaled and noised; 40 values each) with
# small settings so that every cell runs in seconds on a laptop CPU.

# %%
import deepwell

SMALL = ["data.n_train=500", "train.epochs=8", "output.report=false", "output.dir=runs/01"]

# %% [markdown]
# A 4-layer MLP. While it trains, one display updates in place: progress, the learning curves and
# the latest per-layer health the probes measured.

# %%
run = deepwell.train(overrides=[*SMALL, "model.arch=mlp", "model.depth=4", "model.width=64"])

# %% [markdown]
# The run shows itself: status, final metrics, the spec keys that differ from the defaults, and its curves.

# %%
run

# %% [markdown]
# ## Challenge 1: optimisation
# Twelve sigmoid layers without normalisation: the gradient reaching the first layer is a tiny
# fraction of the last layer's, so the first layers barely learn. The doctor measures it.

# %%
deep = deepwell.train(overrides=[*SMALL, "model.arch=mlp", "model.depth=12", "model.width=32", "model.activation=sigmoid",
                                 "model.norm=none", "model.init=xavier"], progress="none")
findings = deep.diagnose()
findings

# %% [markdown]
# ## Challenge 2: generalisation
# Few examples, a wide network, many epochs and no regularisation: the network learns the
# training set by heart, and the validation loss turns up.

# %%
memorise = deepwell.train(overrides=["data.n_train=150", "train.epochs=40", "output.report=false", "output.dir=runs/01",
                                     "model.arch=mlp", "model.depth=2", "model.width=256", "model.norm=none",
                                     "train.schedule=constant"], progress="none")
memorise.plot()

# %% [markdown]
# ## The measured verdict

# %%
rules = {f.rule for f in findings}
final = memorise.history[-1]
gap = final["train/acc_clean"] - final["val/acc"]
print(f"Optimisation: 12 sigmoid layers -> doctor found {sorted(rules) or 'nothing'}; "
      f"test accuracy {deep.summary['test']['test/acc']:.1%} vs {run.summary['test']['test/acc']:.1%} for the 4-layer ReLU net.")
print(f"Generalisation: 150 examples -> train accuracy {final['train/acc_clean']:.1%}, validation {final['val/acc']:.1%} "
      f"(gap {gap:.1%}): {'overfitting holds' if gap > 0.2 else 'no clear overfitting'}.")

# %% [markdown]
# ## Try this
# Change one key, predict what happens, then run the cell. For example: does `model.norm=batchnorm`
# rescue the 12-layer sigmoid net? (Prediction first!)

# %%
rescued = deepwell.train(overrides=[*SMALL, "model.arch=mlp", "model.depth=12", "model.width=32", "model.activation=sigmoid",
                                    "model.norm=batchnorm", "model.init=xavier"], progress="none")
rescued.diagnose()

# %% [markdown]
# More: `model.activation=relu` with `model.init=he`; `data.n_train=2000` for the memorising net.
