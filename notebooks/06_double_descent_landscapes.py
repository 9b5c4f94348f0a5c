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
# # 6. Double descent and loss landscapes
#
# Classical wisdom says: more parameters than data points means overfitting. Yet huge networks
# generalise. **Double descent** reconciles both: the test error falls, rises to a peak where the
# model can just barely fit every training point (parameters ~ examples, the interpolation
# threshold), and falls again beyond it, because among the many interpolating solutions the
# training finds a smooth one (the minimum-norm one, for least squares).
#
# The cleanest case: fitting polynomials of growing degree to n = 20 noisy points.

# %%
import deepwell

poly = deepwell.study("polynomial", out="studies")
poly

# %% [markdown]
# The animation: the fit as the degree grows, beside the test error with a moving marker.

# %%
poly.figures[-1]

# %% [markdown]
# ## Model-wise double descent in a network
# MLPs 40-h-h-10 of growing width h on 300 MNIST-1D examples with 15% of the labels wrong, each
# trained for 60 epochs; all widths train together as one batched ensemble.

# %%
grid = deepwell.sweep(overrides=["model.arch=mlp", "model.norm=none", "data.n_train=300", "data.label_noise=0.15",
                                 "train.epochs=60", "train.schedule=constant", "train.batch_size=100"],
                      over={"model.width": [2, 4, 8, 16, 64, 256]}, out="sweeps")
grid

# %% [markdown]
# ## The measured verdict

# %%
verdict = poly.verdicts[0]
print(f"{verdict.claim}: {verdict.status} -- {verdict.evidence}")
errors = list(grid.table["test_error_mean"])
peak = max(range(1, len(errors) - 1), key=lambda i: errors[i] - min(errors[:i]))
print(f"Network sweep: test error {errors[0]:.1%} at h=2, peak {errors[peak]:.1%} at h={grid.table['model.width'][peak]}, "
      f"{errors[-1]:.1%} at h=256 -> double descent "
      f"{'visible' if errors[peak] > min(errors[:peak]) + 0.02 and errors[-1] < errors[peak] - 0.02 else 'not visible at this size'}.")

# %% [markdown]
# ## Loss landscapes
# `deepwell.study("landscape")` (about a minute) draws filter-normalised slices of the loss around
# trained plain and residual networks, the barriers between minima, and animates the training path
# over the loss on its own PCA plane. Run it when you have the time:
#
# ```python
# landscape = deepwell.study("landscape")
# landscape
# ```

# %% [markdown]
# ## Try this
# Predict: with no label noise, is the peak higher or lower?

# %%
clean = deepwell.sweep(overrides=["model.arch=mlp", "model.norm=none", "data.n_train=300", "train.epochs=60",
                                  "train.schedule=constant", "train.batch_size=100"],
                       over={"model.width": [4, 64]}, out="sweeps", name="width-clean")
clean

# %% [markdown]
# More: `deepwell.study("double-descent")` runs the MNIST-1D reference sweep (quick mode, minutes).
