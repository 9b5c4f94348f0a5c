"""The double-descent study's settings (quick and full) and the sweep tasks they make.

What :mod:`deepwell.studies.double_descent` runs: the MNIST-1D notebook's MLP 40-h-h-10 and CNN, the
width grids, the label noise, and the model-wise, sample-wise, epoch-wise and CNN tasks. Its numbers,
verdicts and ``run`` live there; the figures in :mod:`deepwell.studies.double_descent_figures`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from deepwell.config import DataSpec, ModelSpec, TrainSpec
from deepwell.models import build_model
from deepwell.sweep import SweepTask

__all__ = ["Settings", "QUICK", "FULL", "LABEL_NOISE", "EPOCH_NOISE", "NOISE_MODES", "INTERPOLATED", "SMOOTH", "smooth",
           "geometric_widths", "notebook_widths", "mlp_params", "model_wise_tasks", "sample_wise_tasks", "epoch_wise_tasks",
           "cnn_tasks"]

LABEL_NOISE = 0.15
NOISE_MODES = ("uniform", "incorrect")
EPOCH_NOISE = 0.2       # the epoch-wise run: Nakkiran et al.'s 20% label noise
INTERPOLATED = 1e-3     # training error at or below this counts as interpolating (fits every noisy label)
SMOOTH = 3              # the epoch-wise curve's moving average (evaluations), as the verdict and the figure read it


def smooth(values: list[float]) -> list[float]:
    """A centred moving average over SMOOTH points (shorter at the ends)."""
    half = SMOOTH // 2
    return [statistics.fmean(values[max(0, i - half):i + half + 1]) for i in range(len(values))]


@dataclass(frozen=True)
class Settings:
    """One size of the study (quick or full)."""

    n_train: int
    n_test: int
    widths: tuple[int, ...]
    epochs: int
    seeds: int
    eval_every: int
    sample_width: int
    sample_sizes: tuple[int, ...]
    sample_epochs: int
    init: str = "torch_default"  # weights and biases; the notebook's nets keep torch's default
    epoch_width: int = 0            # the epoch-wise run: one MLP (0: none) trained on epoch_n_train examples
    epoch_n_train: int = 0          # with EPOCH_NOISE label noise for epoch_epochs at epoch_lr (SGD, momentum 0.9)
    epoch_epochs: int = 0
    epoch_lr: float = 0.01
    epoch_seeds: int = 5            # its seeds (the verdict needs MIN_SEEDS for a standard error)
    cnn_channels: tuple[int, ...] = ()  # the notebook's CNN sweep (full mode only: minutes per width on a CPU)
    cnn_epochs: int = 0

    @property
    def bias_init(self) -> str:
        """torch's default init draws biases too; the others start them at zero."""
        return "torch_default" if self.init == "torch_default" else "zeros"

    def model(self, width: int) -> ModelSpec:
        """The notebook's net: MLP 40-h-h-10 of Linear/ReLU (drawn from the run's seed here)."""
        return ModelSpec(arch="mlp", depth=2, width=width, norm="none", activation="relu", init=self.init,
                         bias_init=self.bias_init)

    def cnn_model(self, channels: int) -> ModelSpec:
        """The notebook's CNN, in deepwell's blocks: three conv layers of ``channels`` (kernel 3), each
        followed by a max-pool (40 -> 5 positions; the notebook uses stride 2), flattened into the head."""
        return ModelSpec(arch="cnn1d", channels=[channels, "pool"] * 3, kernel_size=3, norm="none", global_pool=False,
                         activation="relu", init=self.init, bias_init=self.bias_init)

    def data(self, mode: str, n_train: int | None = None, noise: float = LABEL_NOISE) -> DataSpec:
        """MNIST-1D with n_test test examples and a training split of ``max(self.n_train, n_train)``, of which
        ``n_train`` are used (default: all); the split equals the model-wise sweep's unless n_train exceeds it."""
        split = max(self.n_train, n_train or 0)
        total = split + self.n_test
        return DataSpec(source=f"mnist1d:num_samples={total},train_split={split / total:g}", val_fraction=0.0,
                        n_train=n_train, label_noise=noise, label_noise_mode=mode)

    def train(self, epochs: int) -> TrainSpec:
        return TrainSpec(epochs=epochs, batch_size=100, optimizer="sgd:momentum=0.9", lr=0.01, schedule="constant",
                         eval_every=self.eval_every if epochs == self.epochs else epochs)


def notebook_widths(low: int, high: int, count: int) -> tuple[int, ...]:
    """The notebook's grid: ``np.unique(np.geomspace(low, high, count, dtype=int))`` (truncated, duplicates dropped)."""
    return tuple(sorted({int(low * (high / low) ** (i / (count - 1)) + 1e-9) for i in range(count)}))


def geometric_widths(low: int, high: int, count: int) -> tuple[int, ...]:
    """``count`` distinct integers spaced geometrically from ``low`` to ``high`` (rounded, duplicates bumped)."""
    widths: list[int] = []
    for i in range(count):
        value = max(round(low * (high / low) ** (i / (count - 1))), widths[-1] + 1 if widths else low)
        widths.append(value)
    return tuple(widths)


def mlp_params(width: int, inputs: int = 40, outputs: int = 10) -> int:
    """Parameters of the MLP inputs-width-width-outputs (weights and biases)."""
    return inputs * width + width + width * width + width + width * outputs + outputs


# The epoch-wise run (both modes): MLP 40-128-128-10 on n=4000 with 20% label noise, SGD lr 0.05 (momentum 0.9), 60
# epochs, 5 seeds (each mode's init: He in quick mode, torch's default in full mode, where it measured 46.0% -> 49.8%
# -> 47.2%). The net fits every label at epoch ~40, a little after the peak; narrower nets fit too late (h=100: not
# within 60 epochs, h=112: at ~55); at n=2000 the bump stays under 2 points (h=100: 1.5 +- 0.6) and h=256 shows none.
EPOCH_WISE = {"epoch_width": 128, "epoch_n_train": 4000, "epoch_epochs": 60, "epoch_lr": 0.05, "epoch_seeds": 5}
FULL = Settings(n_train=4000, n_test=12000, widths=notebook_widths(2, 300, 20), epochs=500, seeds=3, eval_every=10,
                sample_width=43, sample_sizes=(500, 1000, 1500, 2000, 3000, 4000), sample_epochs=500,
                cnn_channels=(2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64), cnn_epochs=500, **EPOCH_WISE)
# Quick mode: He init (zero biases), n=2000 for 240 epochs (the cost of n=4000 for 120). With n=4000 and 120 epochs
# the nets were under-trained: the peak sat at h=63 while training error first reached 0 at h=112 (3 steps apart);
# at n=2000 the net near the peak (h=45, params 2.2 n) fits its noisy labels, as in full mode. Sample-wise: h=32 puts
# its interpolation threshold inside the sizes (train error 0 up to n=750, 2.2% at 1000). h=18 (1270 params, so
# n = params inside the sizes) fitted none of them in 240 epochs (13% train error at n=500): no threshold to see.
# No width fits n = params within the budget (the nets fit about params / 2.2 examples in 240 epochs).
QUICK = Settings(n_train=2000, n_test=3000, widths=geometric_widths(8, 128, 9), epochs=240, seeds=2, eval_every=6,
                 sample_width=32, sample_sizes=(250, 500, 750, 1000, 2000), sample_epochs=240, init="he:distribution=uniform",
                 **EPOCH_WISE)


def model_wise_tasks(settings: Settings, seed: int) -> list[SweepTask]:
    """Every width x noise mode x seed of the model-wise sweep."""
    return [SweepTask(settings.data(mode), settings.model(w), settings.train(settings.epochs), seed=seed + s,
                      params={"experiment": "model_wise", "mode": mode, "width": w, "params": mlp_params(w),
                              "n_train": settings.n_train})
            for mode in NOISE_MODES for w in settings.widths for s in range(settings.seeds)]


def sample_wise_tasks(settings: Settings, seed: int) -> list[SweepTask]:
    """One width, several training-set sizes (``uniform`` noise, the notebook's mode)."""
    return [SweepTask(settings.data("uniform", n), settings.model(settings.sample_width), settings.train(settings.sample_epochs),
                      seed=seed + s, params={"experiment": "sample_wise", "mode": "uniform", "width": settings.sample_width,
                                             "params": mlp_params(settings.sample_width), "n_train": n})
            for n in settings.sample_sizes for s in range(settings.seeds)]


def epoch_wise_tasks(settings: Settings, seed: int) -> list[SweepTask]:
    """The epoch-wise run: one MLP, EPOCH_NOISE label noise, a learning curve per seed (none if epoch_width is 0)."""
    if not settings.epoch_width:
        return []
    train = TrainSpec(epochs=settings.epoch_epochs, batch_size=100, optimizer="sgd:momentum=0.9", lr=settings.epoch_lr,
                      schedule="constant", eval_every=max(1, settings.epoch_epochs // 60))
    return [SweepTask(settings.data("uniform", settings.epoch_n_train, EPOCH_NOISE), settings.model(settings.epoch_width), train,
                      seed=seed + s, params={"experiment": "epoch_wise", "mode": "uniform", "width": settings.epoch_width,
                                             "params": mlp_params(settings.epoch_width), "n_train": settings.epoch_n_train,
                                             "lr": settings.epoch_lr})
            for s in range(settings.epoch_seeds)]


def cnn_tasks(settings: Settings, seed: int) -> list[SweepTask]:
    """The CNN width sweep (``uniform`` noise, one seed): the notebook's second model-wise curve."""
    tasks = []
    for channels in settings.cnn_channels:
        spec = settings.cnn_model(channels)
        params = sum(p.numel() for p in build_model(spec, (1, 40), 10).parameters())
        tasks.append(SweepTask(settings.data("uniform"), spec, settings.train(settings.cnn_epochs), seed=seed,
                               params={"experiment": "cnn_model_wise", "mode": "uniform", "width": channels, "params": params,
                                       "n_train": settings.n_train}))
    return tasks
