"""Missing input values (NaN, from blank CSV cells): filled from the training split, or their rows dropped.

``data.impute`` picks what happens to them:

- ``none``: missing values are an error naming the file, the columns and the first CSV line;
- ``mean`` / ``median``: each feature's blanks get that feature's mean / median over the training
  split (fitted on it only, like preprocessing, and saved with the model so ``predict`` fills new
  blanks the same way; scikit-learn's ``SimpleImputer`` does the same);
- ``drop``: rows with a blank are removed from every split before training; such rows cannot be
  predicted, so ``predict`` refuses them.

An :class:`Imputer` is a :class:`~deepwell.data.preprocess.Preprocessor`: its statistics are saved
and loaded the same way (``impute.*`` tensors in ``model.safetensors``).

Example::

    imputer = build_imputer("median").fit(x_train)   # x_train may hold NaN
    x_test = imputer(x_test)                          # NaN -> the training medians
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from deepwell.data.preprocess import Preprocessor
from deepwell.errors import DataError

__all__ = ["ImputeChoice", "Imputer", "build_imputer", "drop_missing_rows"]

ImputeChoice = Literal["none", "mean", "median", "drop"]


class Imputer(Preprocessor):
    """Fills NaN inputs with per-feature statistics of the training split (``mean``, ``median``), or refuses them.

    Args:
        how: ``none``, ``mean``, ``median`` or ``drop`` (rows are dropped by :func:`drop_missing_rows`
            before fitting; what reaches this transform afterwards must be complete).
    """

    def __init__(self, how: ImputeChoice) -> None:
        super().__init__(f"impute={how}", ("fill",) if how in ("mean", "median") else ())
        self.how = how

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        if not self.state_keys:
            return {}
        flat = x.reshape(len(x), -1)  # (N, D): every position of one example is a feature
        empty = torch.isnan(flat).all(dim=0)
        if bool(empty.any()):
            raise DataError(f"Input feature {int(empty.nonzero()[0, 0])} is blank in every training example, so "
                            f"data.impute={self.how} has nothing to fill it from; remove that column or fill it in.")
        fill = flat.nanmean(dim=0) if self.how == "mean" else flat.nanmedian(dim=0).values
        return {"fill": fill.reshape(x.shape[1:])}

    def _transform(self, x: Tensor) -> Tensor:
        missing = torch.isnan(x)
        if not bool(missing.any()):
            return x
        if self.how in ("none", "drop"):
            raise DataError(
                f"The inputs have {int(missing.sum())} missing (NaN, blank) values, and this run was trained with "
                f"data.impute={self.how}, which cannot fill them. Fill them in, or train with data.impute=mean or median."
            )
        self._check_shape(x, tuple(self.fill.shape))
        return torch.where(missing, self.fill, x)


def build_imputer(how: ImputeChoice) -> Imputer:
    """An unfitted :class:`Imputer`; call ``.fit(x_train)`` (a no-op for ``none`` and ``drop``)."""
    return Imputer(how)


def drop_missing_rows(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The examples of (x, y) whose inputs have no NaN (the ``drop`` strategy)."""
    keep = ~torch.isnan(x.reshape(len(x), -1)).any(dim=1)
    return x[keep], y[keep]
