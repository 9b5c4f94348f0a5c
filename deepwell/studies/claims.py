"""The lecture's claims, each with the experiment that checks it and what "holds" means.

The same table as the project's CLAIMS.md; ``deepwell tour`` reports a verdict for every row.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Claim", "CLAIMS"]


@dataclass(frozen=True)
class Claim:
    """One claim of the lecture: its id, its words, the experiment, and when it holds."""

    id: str
    text: str
    experiment: str
    holds_when: str


CLAIMS: tuple[Claim, ...] = (
    Claim('depth', 'deeper nets compose functions and need fewer units than one wide hidden layer',
          'same parameter budget: 1 hidden layer vs several, on a compositional target (e.g. a sawtooth made by composing a tent map) and on MNIST-1D',
          'deep reaches clearly lower test loss at equal parameters'),
    Claim('nonconvex', 'the loss is a non-convex function of all the weights',
          '1-D path between two minima from different seeds; 2-D filter-normalised slice',
          'a barrier on the path, or a non-convex slice (measured)'),
    Claim('double-descent', 'test error peaks near the interpolation threshold and falls again for much bigger models',
          'model-wise width sweep, MNIST-1D, 15% label noise',
          'peak near params ~ n, above the first minimum; largest model below the peak'),
    Claim('poly-descent', 'polynomial fits: underfit, blow-up at d = n, smooth again far beyond n (min-norm)',
          'degree sweep with min-norm least squares, n noisy points',
          'spike at d+1 = n; high degree back near the best low-degree error'),
    Claim('augmentation', 'augmentation helps generalisation',
          'small training set, with and without augmentation',
          'test accuracy higher with augmentation (mean over seeds, beyond noise)'),
    Claim('transfer-similar', 'similar source task: tuning only the head is enough',
          'pretrain on a source task, then head-only vs full fine-tune vs scratch on a small similar target',
          'head-only within a small margin of fine-tune; both beat scratch'),
    Claim('transfer-dissimilar', 'less related source: fine-tune more layers',
          'same with a dissimilar source',
          'fine-tuning more layers beats head-only'),
    Claim('sigmoid-grad', "sigmoid's gradient is at most 0.25; deep sigmoid nets' gradients vanish; tanh somewhat better",
          'measured derivative max; per-layer gradient norms at init, 20 layers',
          'max = 0.25; layer-1/top ratio tiny for sigmoid, larger for tanh, ~1 for ReLU+He'),
    Claim('exploding', 'gradients can also explode',
          'large-sigma init, per-layer gradient norms',
          'ratio grows far above 1 going back'),
    Claim('relu-faster', 'ReLU converges faster than sigmoid/tanh',
          'same net and budget, three activations',
          'ReLU reaches a loss threshold in fewer steps'),
    Claim('dead-relu', 'ReLUs can die; leaky ReLU does not',
          'high learning rate or negative bias shift; dead-unit fraction over training',
          'large dead fraction for ReLU, ~0 for leaky'),
    Claim('init-zero', 'all-zero weights: the network does not learn',
          'train from zeros',
          'loss stays at chance level'),
    Claim('init-constant', 'constant weights: hidden units herd (move together)',
          'train from a constant',
          'hidden units of a layer stay identical'),
    Claim('init-scale', 'large sigma saturates/explodes; small sigma collapses activations in deep nets; Xavier suits tanh, He suits ReLU',
          'per-layer activation std and histograms at init (6 x 4096, as in CS231n)',
          'std falls with depth for small sigma, saturation for large, stable for Xavier/tanh and He/ReLU'),
    Claim('preprocess', 'zero-centring and scaling (or whitening) make the loss surface nicer',
          'correlated, uncentred inputs; raw vs standardised vs whitened',
          'fewer steps to a loss threshold; lower condition number'),
    Claim('batchnorm', 'BN uses batch statistics in training and fixed statistics at test; it helps deep nets train',
          'outputs in train vs eval mode; deep net with and without BN across learning rates',
          'statistics differ as stated; BN trains faster / at higher learning rates'),
    Claim('penalties', 'L1/L2/ElasticNet penalise weight norms',
          'same net under each penalty',
          'L1 gives many exact-or-near zeros; L2 shrinks norms without sparsity'),
    Claim('early-stopping', 'stop when validation loss stops improving; risk of stopping too early',
          'overfitting run with patience sweep',
          'restored best beats last epoch; too-small patience measurably worse'),
    Claim('dropout-gap', 'with dropout, validation loss can be below training loss',
          'train loss as trained vs clean vs validation',
          'val < train-as-trained while train-clean < val'),
    Claim('dropout', 'dropout reduces overfitting; test-time scaling',
          'with/without dropout; classic vs inverted scaling',
          'smaller train-test gap; classic and inverted give identical test outputs'),
    Claim('dropconnect', 'DropConnect (zero weights) regularises too',
          'with/without DropConnect',
          'smaller train-test gap'),
    Claim('layers-converge', 'early and late layers converge to their final weights first',
          'per-layer distance to final weights over training',
          'first and last layers settle before middle ones'),
    Claim('early-linear', 'early stopping keeps many units in the linear region of the activation',
          'fraction of tanh units in the linear region over epochs',
          'that fraction falls as training goes on'),
)
