"""Input preprocessing fitted on the training split only, then applied to every split.

Each entry of :data:`PREPROCESSORS` builds an unfitted :class:`Preprocessor`. ``fit(x_train)``
computes its statistics (mean, scale, whitening matrix) and stores them as buffers; its
``state_tensors()`` can be saved next to the model weights (safetensors) and loaded into a
freshly built instance, so predictions see the same transform as training.

Whitening follows CS231n: centre, rotate onto the covariance eigenvectors U, scale each
direction by ``1/sqrt(lambda + eps)`` (PCA whitening), and for ZCA rotate back with U^T, which
gives the whitened data closest to the input (Bell & Sejnowski 1997; Kessy et al. 2018).

Example::

    preprocessor = PREPROCESSORS.build("standardize").fit(x_train)
    x_test = preprocessor(x_test)
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from deepwell.errors import CheckpointError, ConfigError, DataError
from deepwell.registry import Registry

__all__ = ["PREPROCESSORS", "Preprocessor", "target_scale", "target_scaler"]


class Preprocessor(nn.Module):
    """A fitted, invertible-in-spirit input transform; subclasses define the statistics and forward.

    Args:
        name: the registry name, used in messages.
        state_keys: names of the tensors ``fit`` computes; all must be present to transform.
    """

    def __init__(self, name: str, state_keys: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.name = name
        self.state_keys = state_keys

    @property
    def fitted(self) -> bool:
        """Whether every statistic is present (after ``fit`` or ``load_state_tensors``)."""
        return all(key in self._buffers for key in self.state_keys)

    def fit(self, x: Tensor) -> Preprocessor:
        """Compute the statistics from training inputs (N, ...) and return ``self``.

        Raises:
            DataError: fewer than 2 examples, or data without a feature dimension.
        """
        if x.ndim < 2 or len(x) < 2:
            raise DataError(f"Preprocessing '{self.name}' needs at least 2 examples of shape (N, ...); got {tuple(x.shape)}.")
        for key, value in self._statistics(x.detach().float()).items():
            self.register_buffer(key, value.float().contiguous())
        return self

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        return {}

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            raise DataError(
                f"Preprocessing '{self.name}' is not fitted; call .fit(x_train) (or load_state_tensors from a run) before transforming."
            )
        return self._transform(x)

    def _transform(self, x: Tensor) -> Tensor:
        return x

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one transformed example given the shape of one input example."""
        return tuple(input_shape)

    def inverse(self, x: Tensor) -> Tensor:
        """Map transformed values back (used for regression targets: predictions in the target's units).

        Raises:
            ConfigError: the preprocessing has no inverse here (only none, center and standardize do).
        """
        if self.state_keys:
            raise ConfigError(f"Preprocessing '{self.name}' has no inverse; use none, center or standardize.")
        return x

    def state_tensors(self) -> dict[str, Tensor]:
        """The fitted statistics by name (empty for ``none``), ready for safetensors."""
        return {key: self._buffers[key].detach().cpu().contiguous() for key in self.state_keys if key in self._buffers}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> Preprocessor:
        """Load statistics saved by :meth:`state_tensors` (strict) and return ``self``.

        Raises:
            CheckpointError: a statistic is missing or an unexpected one is present.
        """
        missing = sorted(set(self.state_keys) - set(tensors))
        unexpected = sorted(set(tensors) - set(self.state_keys))
        if missing or unexpected:
            raise CheckpointError(
                f"Saved state does not match preprocessing '{self.name}': missing {missing or 'none'}, "
                f"unexpected {unexpected or 'none'}. Build the preprocessing the run was trained with."
            )
        for key in self.state_keys:
            self.register_buffer(key, tensors[key].detach().float().clone())
        return self

    def _check_shape(self, x: Tensor, expected: tuple[int, ...]) -> None:
        if tuple(x.shape[1:]) != expected:
            raise DataError(
                f"Preprocessing '{self.name}' was fitted on examples of shape {expected}; got {tuple(x.shape[1:])}. "
                "Give inputs shaped like the training data."
            )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, fitted={self.fitted}"


class _Identity(Preprocessor):
    def __init__(self) -> None:
        super().__init__("none")


class _Affine(Preprocessor):
    """(x - mean) / scale with per-feature statistics (every position of one example is a feature)."""

    def __init__(self, name: str, scale: bool, eps: float = 1e-8) -> None:
        super().__init__(name, ("mean", "scale") if scale else ("mean",))
        self.divide, self.eps = scale, eps

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        statistics = {"mean": x.mean(dim=0)}
        if self.divide:
            std = x.std(dim=0, unbiased=False)
            # A constant feature (e.g. an always-blank pixel) keeps its scale instead of blowing up
            # test values by 1/eps, as scikit-learn's StandardScaler does.
            statistics["scale"] = torch.where(std > self.eps, std, torch.ones_like(std))
        return statistics

    def _transform(self, x: Tensor) -> Tensor:
        self._check_shape(x, tuple(self.mean.shape))
        centred = x - self.mean
        return centred / self.scale if self.divide else centred

    def inverse(self, x: Tensor) -> Tensor:
        self._check_shape(x, tuple(self.mean.shape))
        return (x * self.scale if self.divide else x) + self.mean


class _PerChannelMean(Preprocessor):
    """Subtract one mean per channel (dimension 1), averaged over examples and positions."""

    def __init__(self) -> None:
        super().__init__("per_channel_mean", ("mean",))

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        dims = [0, *range(2, x.ndim)]
        return {"mean": x.mean(dim=dims)}  # (C,)

    def _transform(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != len(self.mean):
            raise DataError(f"Preprocessing 'per_channel_mean' was fitted on {len(self.mean)} channels; got shape {tuple(x.shape)}.")
        return x - self.mean.view(1, -1, *([1] * (x.ndim - 2)))


class _Whitening(Preprocessor):
    """Linear whitening on flattened examples: (x - mean) @ W, W from the train covariance."""

    def __init__(self, name: str, zca: bool, eps: float, components: int | None = None) -> None:
        super().__init__(name, ("mean", "matrix", "input_shape"))
        self.zca, self.eps, self.components = zca, eps, components

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        flat = x.reshape(len(x), -1).double()  # (N, D); float64 keeps small eigenvalues accurate
        features = flat.shape[1]
        if self.components is not None and self.components > features:
            raise ConfigError(f"pca_whiten components={self.components} exceeds the {features} input features; choose at most {features}.")
        mean = flat.mean(dim=0)
        centred = flat - mean
        covariance = centred.T @ centred / len(flat)  # (D, D)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0.0), eigenvectors.flip(1)  # largest variance first
        matrix = eigenvectors / torch.sqrt(eigenvalues + self.eps)  # U diag(1/sqrt(lambda+eps)), (D, D)
        if self.zca:
            matrix = matrix @ eigenvectors.T
        elif self.components is not None:
            matrix = matrix[:, : self.components]
        return {"mean": mean, "matrix": matrix, "input_shape": torch.tensor(x.shape[1:], dtype=torch.float32)}

    @property
    def _input_shape(self) -> tuple[int, ...]:
        return tuple(int(size) for size in self.input_shape.tolist())

    def _transform(self, x: Tensor) -> Tensor:
        self._check_shape(x, self._input_shape)
        whitened = (x.reshape(len(x), -1) - self.mean) @ self.matrix
        return whitened if self._flattens else whitened.reshape(x.shape)

    @property
    def _flattens(self) -> bool:
        return not self.zca and self.components is not None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.components,) if self._flattens else tuple(input_shape)


PREPROCESSORS: Registry[Preprocessor] = Registry("preprocessing")

Epsilon = Annotated[float, Field(gt=0.0)]


@PREPROCESSORS.register("none")
def none() -> Preprocessor:
    """No preprocessing: inputs pass through unchanged."""
    return _Identity()


@PREPROCESSORS.register("standardize", aliases=("standardise", "zscore"))
def standardize(eps: Epsilon = 1e-8) -> Preprocessor:
    """Per feature: subtract the train mean, divide by the train std (features with std <= eps keep scale 1)."""
    return _Affine("standardize", scale=True, eps=eps)


@PREPROCESSORS.register("center", aliases=("centre", "mean_image"))
def center() -> Preprocessor:
    """Per feature: subtract the train mean; for images this is subtracting the mean image (CS231n)."""
    return _Affine("center", scale=False)


@PREPROCESSORS.register("per_channel_mean")
def per_channel_mean() -> Preprocessor:
    """Per channel (dimension 1): subtract the train mean over examples and positions (VGG-style)."""
    return _PerChannelMean()


@PREPROCESSORS.register("pca_whiten")
def pca_whiten(eps: Epsilon = 1e-5, components: Annotated[int, Field(ge=1)] | None = None) -> Preprocessor:
    """PCA whitening: decorrelate and scale to unit variance; with ``components`` keep the top ones, output (N, components)."""
    return _Whitening("pca_whiten", zca=False, eps=eps, components=components)


@PREPROCESSORS.register("zca_whiten")
def zca_whiten(eps: Epsilon = 1e-5) -> Preprocessor:
    """ZCA whitening: PCA whitening rotated back, the whitened data closest to the input (shape kept)."""
    return _Whitening("zca_whiten", zca=True, eps=eps)


def target_scaler(y_train: Tensor, standardize: bool) -> Preprocessor:
    """The regression target's standardisation fitted on the training targets (N, k), or the identity.

    Standardised targets give the output layer unit-scale values to fit whatever the target's units
    (scikit-learn users wrap their model in ``TransformedTargetRegressor(transformer=StandardScaler())``);
    ``inverse`` maps predictions back, and ``state_tensors()`` are saved with the model.

    Example::

        scaler = target_scaler(y_train, standardize=True)
        y = scaler.inverse(model(x))  # predictions in the target's units
    """
    return PREPROCESSORS.build("standardize").fit(y_train) if standardize else PREPROCESSORS.build("none")


def target_scale(scaler: Preprocessor) -> Tensor | None:
    """The std per target column a scaler divides by (so metrics such as MAE can be given in the target's units), or None."""
    return scaler.state_tensors().get("scale")
