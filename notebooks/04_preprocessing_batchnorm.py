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
# # 4. Preprocessing and batch normalisation
#
# Gradient descent takes one step size for every weight. When input features live on very
# different scales, the loss surface is a long narrow valley and a step that suits one direction is
# far too large or small for another. **Standardising** each feature (subtract the training mean,
# divide by the training std; fitted on the training set only) rounds the valley. **Batch
# normalisation** does the same for every hidden layer, with the batch's statistics in training and
# running statistics at test.

# %%
import deepwell

# The Wisconsin breast-cancer data: 30 features, from ~0.001 (smoothness) to ~2500 (area).
SMALL = ["data.source=breast_cancer", "train.epochs=15", "output.report=false", "output.dir=runs/04", "model.arch=mlp",
         "model.depth=2", "model.width=32", "model.norm=none", "train.optimizer=sgd:momentum=0.9", "train.lr=0.01",
         "train.schedule=constant"]

# %%
raw = deepwell.train(overrides=[*SMALL, "data.preprocess=none"], progress="none")
standardised = deepwell.train(overrides=[*SMALL, "data.preprocess=standardize"])

# %%
for name, run in [("raw", raw), ("standardised", standardised)]:
    print(f"{name:13s} test accuracy {run.summary['test']['test/acc']:.1%}, final train loss {run.history[-1]['train/loss']:.3g}")

# %% [markdown]
# ## Batch normalisation in a deep network
# Eight layers on MNIST-1D, same learning rate, without and with BatchNorm.

# %%
DEEP = ["data.n_train=500", "train.epochs=5", "output.report=false", "output.dir=runs/04", "model.arch=mlp", "model.depth=8",
        "model.width=64", "model.activation=relu", "model.init=he", "train.optimizer=sgd:momentum=0.9", "train.lr=0.05"]
plain = deepwell.train(overrides=[*DEEP, "model.norm=none"], progress="none")
normalised = deepwell.train(overrides=[*DEEP, "model.norm=batchnorm"], progress="none")
normalised

# %% [markdown]
# ## The measured verdict

# %%
gain = standardised.summary["test"]["test/acc"] - raw.summary["test"]["test/acc"]
bn_gain = normalised.summary["test"]["test/acc"] - plain.summary["test"]["test/acc"]
print(f"Standardising the inputs: test accuracy {gain:+.1%} -> {'holds' if gain > 0 else 'does not hold'} (inputs on "
      "comparable scales train better).")
print(f"BatchNorm in an 8-layer net at lr 0.05: test accuracy {bn_gain:+.1%} -> {'holds' if bn_gain > 0 else 'does not hold'}.")

# %% [markdown]
# ## Try this
# Predict: is whitening (decorrelating the features too) better still than standardising?

# %%
whitened = deepwell.train(overrides=[*SMALL, "data.preprocess=zca_whiten"], progress="none")
print(f"whitened test accuracy {whitened.summary['test']['test/acc']:.1%}")

# %% [markdown]
# More: `model.norm=layernorm`; `train.lr=0.2` for the plain and the BatchNorm net; `deepwell.study("batchnorm")`.
