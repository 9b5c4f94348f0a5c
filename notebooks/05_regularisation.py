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
# # 5. Penalties, early stopping, dropout and DropConnect
#
# A network with more parameters than examples can memorise its training set. Regularisation trades
# a little training fit for a better test error: **L2** shrinks every weight, **L1** drives many to
# zero, **early stopping** keeps the weights of the best validation epoch, **dropout** drops hidden
# units at random in training (scaled so the mean is kept), **DropConnect** drops weights instead.

# %%
import deepwell

# 200 MNIST-1D examples, a wide network, many epochs: the recipe for overfitting.
SMALL = ["data.n_train=200", "train.epochs=20", "output.report=false", "output.dir=runs/05", "model.arch=mlp",
         "model.depth=2", "model.width=256", "model.norm=none", "train.schedule=constant"]

# %%
results = {}
for name, keys in [("none", []), ("L2", ["train.penalty=l2:1e-2"]), ("dropout", ["model.dropout=dropout:0.5"]),
                   ("DropConnect", ["model.dropout=dropconnect:0.5"])]:
    run = deepwell.train(overrides=[*SMALL, *keys], progress="none")
    last = run.history[-1]
    results[name] = (last["train/acc_clean"], run.summary["test"]["test/acc"], min(r["val/loss"] for r in run.history),
                     last["val/loss"])
    print(f"{name:12s} train acc {last['train/acc_clean']:.1%}  test acc {results[name][1]:.1%}  "
          f"val loss best {results[name][2]:.3f} -> last {results[name][3]:.3f}")

# %% [markdown]
# ## Early stopping
# The same unregularised network, stopped when the validation loss has not improved for 3 epochs,
# with the best epoch's weights restored.

# %%
stopped = deepwell.train(overrides=[*SMALL, "train.early_stopping={monitor: val/loss, patience: 3, restore_best: true}"])
print(stopped.summary["message"])
stopped

# %% [markdown]
# ## The measured verdict

# %%
overfit = results["none"][3] - results["none"][2]
print(f"Without regularisation the validation loss rose {overfit:.2f} above its best -> overfitting "
      f"{'holds' if overfit > 0.05 else 'does not hold'}.")
for name in ("L2", "dropout", "DropConnect"):
    lower = results["none"][3] - results[name][3]
    print(f"{name}: final validation loss {results[name][3]:.3f} vs {results['none'][3]:.3f} without -> "
          f"{'holds' if lower > 0 else 'does not hold'} (regularisation keeps it lower); test accuracy "
          f"{results[name][1] - results['none'][1]:+.1%}.")
print(f"Early stopping ran {stopped.summary['epochs_run']} of 20 epochs and kept the best epoch's weights.")

# %% [markdown]
# ## Try this
# Predict: with dropout on, is the training loss (as trained) above or below the validation loss?

# %%
dropout = deepwell.train(overrides=[*SMALL, "model.dropout=dropout:0.5"], progress="none")
last = dropout.history[-1]
print(f"train loss as trained {last['train/loss']:.3f}, clean {last['train/loss_clean']:.3f}, validation {last['val/loss']:.3f}")

# %% [markdown]
# More: `train.penalty=l1:1e-3` (how many weights end near zero?); `model.dropout=dropout:0.5,mode=classic`.
