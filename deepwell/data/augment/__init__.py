"""Data augmentation for training batches: images (B, C, H, W), 1-D signals (B, C, L) or (B, L),
token ids of texts (B, L) and audio waveforms (B, S).

Each augmentation follows torchvision v2's split: ``make_params(batch_size, generator, device)``
draws the random numbers (one set per example), and ``apply(x, params)`` is deterministic given
them, so a test can force a parameter (a 90 degree rotation) and compare against torch. Labels are
never touched. Augmentation runs on training batches only, after preprocessing (the model sees
``augment(preprocess(x))``); validation and test data are never augmented.

Option strings (``AUGMENTATIONS`` registry)::

    images:  rotate:15  crop:0.6  scale:0.2  translate:0.1  hflip  vflip
             brightness:0.3  contrast:0.3  saturation:0.3  hue:0.1   (saturation/hue need 3 channels)
    signals: shift:5[,mode=zero]  stretch:0.2  amplitude:0.3  noise:0.05
    text:    synonym:0.1[,synonyms=PATH]  delete:0.1  swap:2          (token ids, through the vocabulary)
    audio:   pitch:2  speed:0.1  (and the signal ones, on the waveform)

Example::

    augment = build_augmentation(["rotate:15", "translate:0.1"], input_shape=(1, 8, 8), seed=0)
    x, y = augment(x, y)          # x: (B, 1, 8, 8), a new random draw per call

Geometry is one affine warp (``affine_grid`` + ``grid_sample``) with a per-example matrix rather
than ``torchvision.transforms.v2.functional.affine``: that takes one angle per call, so per-example
angles would need a Python loop over the batch. The colour operations are written as the same
blends torchvision uses (``adjust_brightness``/``contrast``/``saturation``), per example and without
the clamp to [0, 1], because preprocessing may have moved the data out of that range. ``hue`` rotates
the chroma plane in YIQ space (linear, any value range) instead of torchvision's HSV round trip,
which needs data in [0, 1].

Text and audio augmentations need the data's encoding (``build_augmentation(..., inputs=splits.encoding)``):
the vocabulary for synonyms, the sample rate for pitch; each kind of data accepts only the augmentations
that fit it (see :mod:`deepwell.data.augment.text` and :mod:`deepwell.data.augment.audio` for where they run and why).

Not yet: a resumable augmentation RNG (the generator is seeded, but a resumed run restarts its stream).
"""

from deepwell.data.augment import audio, image, signal, text  # noqa: F401 - importing registers the entries
from deepwell.data.augment.base import AUGMENTATIONS, Augmentation, BatchAugmenter, Compose, build_augmentation

__all__ = ["AUGMENTATIONS", "Augmentation", "Compose", "BatchAugmenter", "build_augmentation"]
