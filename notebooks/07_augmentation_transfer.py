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
# # 7. Data augmentation and transfer learning
#
# Two ways to get more out of little data. **Augmentation** shows the network transformed copies
# of the training examples (small rotations and rescalings of a digit keep its label), so it learns
# what does not matter. **Transfer learning** starts from a network trained on a related task and
# retrains only its head (or fine-tunes it all): features learned on plenty of data carry over.

# %%
import deepwell

DIGITS = ["data.source=digits", "data.n_train=150", "train.epochs=30", "output.report=false", "output.dir=runs/07",
          "model.arch=mlp", "model.depth=2", "model.width=128"]

# %%
plain = deepwell.train(overrides=DIGITS, progress="none")
augmented = deepwell.train(overrides=[*DIGITS, "data.augment=[rotate:10, scale:0.1]"])
for name, run in [("no augmentation", plain), ("rotate + scale", augmented)]:
    print(f"{name:16s} test accuracy {run.summary['test']['test/acc']:.1%}")

# %% [markdown]
# An MLP sees the 64 pixels without their neighbourhood, so a rotated digit is a rather different
# input to it; convolutional networks profit more (`deepwell.study("augmentation")` uses one).
#
# ## Transfer
# A source network trained on 2000 MNIST-1D examples; the target is MNIST-1D drawn with another
# data seed (other shifts, noise and scales), with only 100 training examples.

# %%
source = deepwell.train(overrides=["data.n_train=2000", "train.epochs=8", "output.report=false", "output.dir=runs/07",
                                   "model.arch=mlp", "model.depth=2", "model.width=128"], progress="none")
TARGET = ["data.source=mnist1d:data_seed=7", "data.n_train=100", "train.epochs=20", "output.report=false",
          "output.dir=runs/07", "model.arch=mlp", "model.depth=2", "model.width=128"]
scratch = deepwell.train(overrides=TARGET, progress="none")
head_only = deepwell.train(overrides=[*TARGET, f"model.backbone=run:{source.path}", "model.freeze=head_only"])
head_only

# %% [markdown]
# ## The measured verdict

# %%
aug_gain = augmented.summary["test"]["test/acc"] - plain.summary["test"]["test/acc"]
transfer_gain = head_only.summary["test"]["test/acc"] - scratch.summary["test"]["test/acc"]
print(f"Augmentation on 150 digits: {aug_gain:+.1%} test accuracy -> {'holds' if aug_gain > 0 else 'does not hold'}.")
print(f"Transfer (head only) vs scratch on 100 examples: {transfer_gain:+.1%} -> "
      f"{'holds' if transfer_gain > 0 else 'does not hold'}.")

# %% [markdown]
# ## Try this
# Predict: does fine-tuning every layer (`model.freeze=none`) beat training only the head here?

# %%
fine_tuned = deepwell.train(overrides=[*TARGET, f"model.backbone=run:{source.path}", "model.freeze=none"], progress="none")
print(f"fine-tune all {fine_tuned.summary['test']['test/acc']:.1%} vs head only {head_only.summary['test']['test/acc']:.1%}")

# %% [markdown]
# More: `data.augment=[rotate:20]` (too much?); `model.lr_mult_backbone=0.1`; `deepwell.study("transfer")`.
